//! The command line itself: help, completions, configuration errors, connection failures
//! and secrets.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn bin(args: &[&str]) -> Run {
    Run::from(std::process::Command::new(BIN).args(args).output().unwrap())
}

/// The command names listed in the `Commands:` section of a help text (`help` left out):
/// the section runs from `Commands:` to the first blank line, one command per line indented
/// by two spaces; deeper lines continue a description.
fn commands_in_help(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path the binary's help lists, found by walking `--help` from the top; each
/// help must succeed, print `Usage:` on stdout and name its own command path in the usage line.
fn help_tree(path: &[String], found: &mut Vec<Vec<String>>) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let out = bin(&args);
    out.success();
    let usage = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .unwrap_or_else(|| panic!("{args:?}: no `Usage:` line\n{}", out.stdout));
    let mut expected = String::from("mairie-dba");
    for p in path {
        expected.push(' ');
        expected.push_str(p);
    }
    assert!(
        usage == expected || usage.starts_with(&format!("{expected} ")),
        "{args:?}: the usage line does not name `{expected}`: {usage:?}\n{}",
        out.stdout
    );
    for name in commands_in_help(&out.stdout) {
        let mut sub = path.to_vec();
        sub.push(name);
        assert!(
            !found.contains(&sub),
            "{sub:?} is listed twice\n{}",
            out.stdout
        );
        found.push(sub.clone());
        help_tree(&sub, found);
    }
}

#[test]
fn every_command_has_help() {
    let mut found = Vec::new();
    help_tree(&[], &mut found);
    let found: Vec<String> = found.iter().map(|p| p.join(" ")).collect();
    // Known commands: a parse that finds nothing (or too little) must not pass.
    for known in [
        "schema",
        "schema apply",
        "schema status",
        "load-csv",
        "backup",
        "backup run",
        "backup list",
        "backup verify",
        "backup check",
        "restore",
        "health",
        "audit",
        "maintenance",
        "maintenance analyze",
        "maintenance vacuum",
        "maintenance index-report",
        "maintenance slow-queries",
        "maintenance cleanup",
        "metrics",
        "metrics serve",
        "metrics collect",
        "completions",
    ] {
        assert!(
            found.iter().any(|f| f == known),
            "`{known}` was not found in the help; found: {found:?}"
        );
    }
    bin(&["load-csv", "--help"])
        .stdout_has("--decimal-comma")
        .stdout_has("--date-order");
}

#[test]
fn commands_in_help_reads_the_commands_section() {
    let help = "About.\n\nUsage: x <COMMAND>\n\nCommands:\n  one    First\n  two-words  Second, whose\n             description wraps\n  help   Print help\n\nOptions:\n  -h, --help  Print help\n";
    assert_eq!(commands_in_help(help), ["one", "two-words"]);
    assert!(commands_in_help("Usage: x\n\nOptions:\n  -h\n").is_empty());
}

/// `one_line_error` accepts one clean error among other stderr lines and refuses the rest.
#[test]
fn one_line_error_checks_what_it_says() {
    fn run(code: i32, stderr: &str) -> Run {
        Run {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
    fn refused(code: i32, stderr: &str) -> bool {
        let r = run(code, stderr);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.one_line_error();
        }))
        .is_err()
    }
    run(1, "error: target `postgres`: it broke\n").one_line_error();
    run(
        2,
        "postgres: waited for another schema apply to finish\nwarning: mysql: no backup in /b\nerror: target `mysql`: it broke\nmysql: removed x.partial\n",
    )
    .one_line_error();
    run(1, "error: it broke\n\nsummary: 1 failed\n").one_line_error();

    let cases = [
        (0, "error: it broke\n"),
        (-1, "error: it broke\n"),
        (1, ""),
        (1, "warning: only a warning\n"),
        (1, "error:\n"),
        (1, "error:   \n"),
        (1, "error: one\nerror: two\n"),
        (1, "error: one\nError: two\n"),
        (1, "Error: it broke\n"),
        (1, "error: it broke\n\nCaused by:\n    0: deeper\n"),
        (1, "error: it broke\n  because of this\n"),
        (1, "error: it broke\n\tbecause of this\n"),
        (1, "error: it broke\n\n  tip: try that\n"),
        (
            101,
            "thread 'main' panicked at src/lib.rs:1:1:\nerror: oops\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        ),
        (1, "error: it broke\nstack backtrace:\n"),
    ];
    let accepted: Vec<_> = cases
        .iter()
        .filter(|(code, stderr)| !refused(*code, stderr))
        .collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
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

/// A command line the parser refuses still gives a monitoring system or a script what it
/// reads on stdout: one plugin line (`--format nagios`) or one JSON document (`--format
/// json`), UNKNOWN and exit 3 for a check, `failed` and exit 2 for an operation.
#[test]
fn usage_errors_under_nagios_and_json_still_answer_on_stdout() {
    let nagios_cases: [&[&str]; 5] = [
        &["--format", "nagios", "backup", "check", "--bogus"],
        &["backup", "check", "--format=nagios", "--deep=yes"],
        &["--format", "nagios", "health", "--check"],
        &["health", "--no-such-option", "--format", "nagios"],
        &["--format", "nagios", "audit", "--fail-on", "whenever"],
    ];
    for args in nagios_cases {
        let out = bin(args);
        out.code(3);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line: {:?}", out.stdout);
        assert!(
            lines[0].starts_with("MAIRIE-DBA UNKNOWN - ") && !lines[0].contains(" | "),
            "{args:?}: {:?}",
            lines[0]
        );
        assert!(
            !out.stderr.is_empty(),
            "{args:?}: the error is on stderr too"
        );
    }
    let line = bin(&["--format", "nagios", "backup", "check", "--bogus"]).stdout;
    assert!(
        line.contains("--bogus"),
        "the line says what is wrong: {line}"
    );

    let json_cases: [(&[&str], i32, &str); 4] = [
        (
            &["--format", "json", "backup", "check", "--bogus"],
            3,
            "unknown",
        ),
        (&["health", "--format=json", "--check"], 3, "unknown"),
        (&["--format", "json", "backup", "--bogus"], 2, "failed"),
        (
            &["--format", "json", "restore", "--latest", "--jobs", "many"],
            2,
            "failed",
        ),
    ];
    for (args, code, status) in json_cases {
        let out = bin(args);
        out.code(code);
        let doc = out.json();
        assert_eq!(doc["status"], status, "{args:?}: {}", out.stdout);
        assert!(
            doc["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{args:?}: {}",
            out.stdout
        );
    }
    // Without a machine format, stdout stays empty; --help is no error.
    let out = bin(&["backup", "check", "--bogus"]);
    out.code(3);
    assert_eq!(out.stdout, "");
    bin(&["--format", "nagios", "backup", "check", "--help"])
        .success()
        .stdout_has("--deep");
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
