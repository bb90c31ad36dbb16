//! Turns on the SQL Server integration tests (`cfg(mssql_tests)`) when
//! `MAIRIE_DBA_TEST_MSSQL` holds a connection string; without it they are reported as
//! ignored, with the reason, by the test runner.

fn main() {
    println!("cargo::rerun-if-env-changed=MAIRIE_DBA_TEST_MSSQL");
    println!("cargo::rustc-check-cfg=cfg(mssql_tests)");
    if std::env::var_os("MAIRIE_DBA_TEST_MSSQL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mssql_tests");
    }
}
