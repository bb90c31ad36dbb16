//! SQL Server, end to end. There is no SQL Server on the development machines: these tests
//! run when `MAIRIE_DBA_TEST_MSSQL` holds an ADO.NET connection string for a login that may
//! create databases (e.g. `Server=tcp:127.0.0.1,1433;User Id=sa;Password=…;TrustServerCertificate=true`,
//! see docker-compose.yml), and are reported as ignored otherwise. The T-SQL the tool
//! generates is unit-tested in src/engine/mssql/ either way.

mod common;

use common::{mssql_ado as ado, Run, BIN, ROOT};

fn sql(db: Option<&str>, text: &str) -> Vec<Vec<Option<String>>> {
    let a = ado();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use tokio_util::compat::TokioAsyncWriteCompatExt;
            let mut cfg = tiberius::Config::from_ado_string(&a.raw).expect("ADO connection string");
            if let Some(db) = db {
                cfg.database(db);
            }
            let tcp = tokio::net::TcpStream::connect(cfg.get_addr())
                .await
                .unwrap_or_else(|e| {
                    panic!("SQL Server is not reachable at {}:{} ({e})", a.host, a.port)
                });
            tcp.set_nodelay(true).unwrap();
            let mut client = tiberius::Client::connect(cfg, tcp.compat_write())
                .await
                .expect("login");
            let rows = client
                .simple_query(text)
                .await
                .unwrap_or_else(|e| panic!("{text}: {e}"))
                .into_first_result()
                .await
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<&str, _>(i)
                                .ok()
                                .flatten()
                                .map(str::to_string)
                                .or_else(|| {
                                    r.try_get::<i32, _>(i).ok().flatten().map(|n| n.to_string())
                                })
                                .or_else(|| {
                                    r.try_get::<i64, _>(i).ok().flatten().map(|n| n.to_string())
                                })
                        })
                        .collect()
                })
                .collect()
        })
}

struct MsEnv {
    dir: std::path::PathBuf,
    db: String,
}

impl MsEnv {
    fn new() -> MsEnv {
        let a = ado();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let db = format!("mdba_t_{}_{n}", std::process::id());
        sql(None, &format!("CREATE DATABASE [{db}]"));
        let dir = std::env::temp_dir().join(&db);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config_mssql.yml"),
            format!(
                "connection:\n  host: {}\n  port: {}\n  database: {db}\n  user: {}\n  password_env: MAIRIE_MSSQL_PASSWORD\n  encrypt: true\n  trust_server_certificate: true\n",
                a.host, a.port, a.user
            ),
        )
        .unwrap();
        let datasets = common::project_section("datasets");
        std::fs::write(
            dir.join("config_global.yml"),
            format!("base_dir: {ROOT}\ntargets:\n  mssql:\n    engine: mssql\n    config: config_mssql.yml\n{datasets}"),
        )
        .unwrap();
        MsEnv { dir, db }
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = std::process::Command::new(BIN)
            .arg("-c")
            .arg(self.dir.join("config_global.yml"))
            .args(args)
            .env("MAIRIE_MSSQL_PASSWORD", ado().password)
            .output()
            .unwrap();
        Run::from(out)
    }

    fn count(&self, table: &str) -> i64 {
        sql(Some(&self.db), &format!("SELECT COUNT_BIG(*) FROM {table}"))[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for MsEnv {
    fn drop(&mut self) {
        sql(
            None,
            &format!(
                "ALTER DATABASE [{0}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{0}]",
                self.db
            ),
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[cfg_attr(
    not(mssql_tests),
    ignore = "set MAIRIE_DBA_TEST_MSSQL (an ADO.NET connection string) to run against SQL Server"
)]
fn schema_and_demo_data_on_sql_server() {
    let env = MsEnv::new();
    env.run(&["schema", "apply"])
        .success()
        .stdout_has("migration(s) applied");
    env.run(&["schema", "apply"])
        .success()
        .stdout_has("schema is up to date");
    assert_eq!(env.count("referentiel.arrondissements"), 16);
    env.run(&["load-csv", "--all"]).success();
    assert_eq!(env.count("metier.citoyens"), 300);
    assert_eq!(env.count("metier.demandes"), 400);
    assert!(
        env.count("metier.journal_audit") >= 700,
        "the audit triggers fired during the bulk load"
    );
    env.run(&["load-csv", "--all", "--truncate"]).success();
    assert_eq!(env.count("metier.citoyens"), 300);
}

#[test]
#[cfg_attr(
    not(mssql_tests),
    ignore = "set MAIRIE_DBA_TEST_MSSQL (an ADO.NET connection string) to run against SQL Server"
)]
fn bulk_loads_obey_the_constraints_and_fail_whole() {
    let env = MsEnv::new();
    env.run(&["schema", "apply"]).success();
    let header = "id,civilite,nom,prenom,date_naissance,email,telephone,adresse,code_postal,arrondissement,quotient_familial\n";
    for (name, row, needle) in [
        (
            "check.csv",
            "2,Dr,A,B,1990-01-01,,,x,13001,1,\n",
            "CHECK constraint",
        ),
        (
            "fk.csv",
            "2,M,A,B,1990-01-01,,,x,13001,99,\n",
            "FOREIGN KEY",
        ),
        (
            "date.csv",
            "2,M,A,B,1990-02-30,,,x,13001,1,\n",
            "date.csv:3: column date_naissance: invalid date",
        ),
    ] {
        let f = env.dir.join(name);
        std::fs::write(
            &f,
            format!("{header}1,M,A,B,1990-01-01,,,x,13001,1,\n{row}"),
        )
        .unwrap();
        env.run(&[
            "load-csv",
            "--table",
            "metier.citoyens",
            f.to_str().unwrap(),
        ])
        .code(1)
        .stderr_has(needle);
        assert_eq!(env.count("metier.citoyens"), 0, "{name}: nothing committed");
    }
}

#[test]
#[cfg_attr(
    not(mssql_tests),
    ignore = "set MAIRIE_DBA_TEST_MSSQL (an ADO.NET connection string) to run against SQL Server"
)]
fn a_failing_migration_is_rolled_back_on_sql_server() {
    let env = MsEnv::new();
    let dir = env.dir.join("sql/mssql");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(format!("{ROOT}/sql/mssql")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    std::fs::write(
        dir.join("V100__broken.sql"),
        "CREATE TABLE metier.half_done (id int);\nGO\nCREATE TABL metier.oops (id int);\n",
    )
    .unwrap();
    let sql_dir = env.dir.join("sql");
    let out = env.run(&[
        "schema",
        "apply",
        "--migrations-dir",
        sql_dir.to_str().unwrap(),
    ]);
    out.code(1).stderr_has("V100__broken.sql:3:");
    assert_eq!(
        sql(
            Some(&env.db),
            "SELECT CASE WHEN OBJECT_ID('metier.half_done') IS NULL THEN 'gone' ELSE 'left' END"
        )[0][0]
            .as_deref(),
        Some("gone")
    );
}
