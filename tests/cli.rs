//! The command line itself: help, completions, configuration errors, connection failures
//! and secrets.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn bin(args: &[&str]) -> Run {
    Run::from(std::process::Command::new(BIN).args(args).output().unwrap())
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["schema", "--help"],
        vec!["schema", "apply", "--help"],
        vec!["schema", "status", "--help"],
        vec!["load-csv", "--help"],
        vec!["completions", "--help"],
    ] {
        let out = bin(&args);
        out.success();
        assert!(out.stdout.contains("Usage:"), "{args:?}: {}", out.stdout);
    }
    bin(&["load-csv", "--help"])
        .stdout_has("--decimal-comma")
        .stdout_has("--date-order");
}

#[test]
fn completions_for_each_shell() {
    bin(&["completions", "bash"])
        .success()
        .stdout_has("load-csv");
    bin(&["completions", "zsh"])
        .success()
        .stdout_has("#compdef mairie-dba");
    bin(&["completions", "fish"])
        .success()
        .stdout_has("complete -c mairie-dba");
}

#[test]
fn usage_errors_exit_2() {
    bin(&["schema", "frobnicate"]).code(2);
    bin(&["load-csv", "x.csv"]).code(2).stderr_has("--table");
}

#[test]
fn a_missing_config_file_is_exit_2_with_a_hint() {
    let env = Env::empty();
    let out = Run::from(
        std::process::Command::new(BIN)
            .args(["schema", "status"])
            .env_remove("MAIRIE_DBA_CONFIG")
            .current_dir(&env.dir)
            .output()
            .unwrap(),
    );
    out.code(2)
        .stderr_has("config/config_global.yml")
        .stderr_has("--config");
}

#[test]
fn the_config_env_variable_is_honoured() {
    let env = Env::empty();
    env.write("elsewhere.yml", "targets: [oops\n");
    let out = Run::from(
        std::process::Command::new(BIN)
            .args(["schema", "status"])
            .env("MAIRIE_DBA_CONFIG", env.path("elsewhere.yml"))
            .output()
            .unwrap(),
    );
    out.code(2).stderr_has("elsewhere.yml:");
}

#[test]
fn malformed_yaml_unknown_keys_and_type_errors_name_file_line_and_key() {
    let env = Env::empty();
    env.write_pg_config("x", "");
    env.write("config_global.yml", "targets:\n  postgres:\n    engine: postgres\n    config: config_postgres.yml\n   bad_indent: 1\n");
    env.run(&["schema", "status"])
        .code(2)
        .stderr_has("config_global.yml:5:");

    env.write_global("");
    env.write_pg_config("x", "  sslmod: require\n");
    env.run(&["schema", "status"])
        .code(2)
        .one_line_error()
        .stderr_has("config_postgres.yml:8:")
        .stderr_has("connection: unknown field `sslmod`");

    env.write_pg_config("x", "  statement_timeout: soon\n");
    env.run(&["schema", "status"])
        .code(2)
        .stderr_has("connection.statement_timeout");

    env.write_pg_config("x", "");
    env.write_global("colour: blue\n");
    env.run(&["schema", "status"])
        .code(2)
        .stderr_has("unknown field `colour`");
}

#[test]
fn unknown_target_is_exit_2_listing_the_targets() {
    let env = Env::empty();
    env.write_pg_config("x", "");
    env.write_global("");
    env.run(&["-t", "prod", "schema", "status"])
        .code(2)
        .stderr_has("unknown target `prod`")
        .stderr_has("postgres");
}

#[test]
fn an_unset_password_env_is_exit_2_naming_the_variable() {
    let mut env = Env::empty();
    env.write_pg_config("x", "");
    env.write_global("");
    env.remove_env("MAIRIE_PG_PASSWORD");
    let out = env.run(&["schema", "status", "--format", "json"]);
    out.code(2).stderr_has("MAIRIE_PG_PASSWORD is not set");
    assert_eq!(out.json()["status"], "failed");
}

#[test]
fn a_wrong_password_is_refused_and_never_echoed() {
    let (role, password) = pg_pwtest();
    let mut env = Env::empty();
    env.write(
        "config_postgres.yml",
        format!(
            "connection:\n  host: 127.0.0.1\n  port: {}\n  database: postgres\n  user: {role}\n  password_env: MAIRIE_PG_PASSWORD\n",
            pg_port()
        ),
    );
    env.write_global("");
    env.set_env("MAIRIE_PG_PASSWORD", "Wr0ng-S3cret-Value");
    let out = env.run(&["schema", "status", "--format", "json"]);
    out.code(1)
        .one_line_error()
        .stderr_has(&format!(
            "password authentication failed for user \"{role}\""
        ))
        .lacks("Wr0ng-S3cret-Value");

    env.set_env("MAIRIE_PG_PASSWORD", password);
    env.run(&["schema", "status"]).success();
}

#[test]
fn a_refused_connection_fails_fast_naming_the_target() {
    let env = Env::empty();
    env.write(
        "config_postgres.yml",
        "connection:\n  host: 127.0.0.1\n  port: 1\n  database: mairie\n  user: mairie\n",
    );
    env.write_global("");
    let out = env.run(&["schema", "status"]);
    out.code(1)
        .stderr_has("target `postgres`")
        .stderr_has("127.0.0.1:1");
}

#[test]
fn a_server_that_never_answers_fails_within_the_connect_timeout() {
    // A listener that accepts TCP connections and never speaks: the handshake hangs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = Env::empty();
    env.write(
        "config_postgres.yml",
        format!("connection:\n  host: 127.0.0.1\n  port: {port}\n  database: mairie\n  user: mairie\n  connect_timeout: 2\n"),
    );
    env.write_global("");
    let start = Instant::now();
    let out = env.run(&["schema", "status"]);
    let took = start.elapsed();
    out.code(1).stderr_has("timed out after 2 s");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    drop(listener);
}

#[test]
fn a_password_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::empty();
    let pw = env.write("pw.txt", "hunter2-secret\n");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.write(
        "config_postgres.yml",
        "connection:\n  host: 127.0.0.1\n  database: x\n  user: mairie\n  password_file: pw.txt\n",
    );
    env.write_global("");
    env.run(&["schema", "status"])
        .code(2)
        .stderr_has("chmod 600")
        .lacks("hunter2-secret");
}
