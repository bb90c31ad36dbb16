//! `audit` against real PostgreSQL and MariaDB servers: checks are made to fail on purpose
//! (a superuser without password expiry, a SECURITY DEFINER function without search_path,
//! CREATE on schema public for PUBLIC; an anonymous account, a password equal to the user
//! name, FILE held by an application account) and must name the offenders; this machine's
//! own pg_hba `trust` lines must be reported with their line numbers; exit codes follow
//! `--fail-on`; `--check` narrows the run; an unknown id is UNKNOWN (exit 3); errors alone
//! are a WARNING; `audit.ignore` accepts a risk; JUnit output is well-formed XML with one
//! test case per check; an unreachable target is CRITICAL without hiding the others; and
//! the audit changes nothing on the server.
//!
//! Server-wide objects are created as superusers: on PostgreSQL the superuser of
//! [`pg_superuser_dsn`], on MariaDB the admin of [`mysql_admin_url`] through the `mariadb`
//! client over TCP (both `mairie_admin`, made by `scripts/dev-services.sh`, unless the
//! environment names others; no test relies on `trust` authentication). Every object has
//! a unique name and is dropped by a guard, even when an assertion fails. The tests that
//! create or fingerprint server-wide objects take turns on a lock file (tests run as threads
//! under `cargo test` and as processes under nextest).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use serde_json::Value;

per_engine!(
    junit_output_is_well_formed_with_one_case_per_check,
    an_unreachable_target_is_critical_and_does_not_hide_the_others,
    unknown_check_ids_are_unknown,
);

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The catalogue size of an engine, as the binary knows it.
fn catalogue_len(engine: Engine) -> usize {
    match engine {
        Engine::Postgres => mairie_dba::audit::postgres::CHECKS.len(),
        Engine::Mysql => mairie_dba::audit::mysql::CHECKS.len(),
    }
}

fn audit_json(env: &Env, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["--format", "json", "audit"];
    all.extend_from_slice(args);
    let run = env.run(&all);
    let v = run.json();
    (run, v)
}

/// The finding `id` of the first target.
fn finding<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["targets"][0]["findings"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["id"] == id))
        .unwrap_or_else(|| panic!("no finding {id} in {doc:#}"))
}

fn assert_fails_naming(doc: &Value, id: &str, names: &[&str]) {
    let f = finding(doc, id);
    assert_eq!(f["status"], "fail", "{id}: {f:#}");
    let detail = f["detail"].as_str().unwrap_or_default();
    for n in names {
        assert!(detail.contains(n), "{id} does not name {n}: {detail}");
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL as a superuser

fn pg_su_dsn() -> String {
    pg_superuser_dsn()
}

fn dsn_part(dsn: &str, key: &str) -> Option<String> {
    dsn.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Runs SQL on `db` as the superuser; rows as text.
fn pg_su(db: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let dsn = format!("{} dbname={db}", pg_su_dsn());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(async {
            let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("PostgreSQL superuser `{dsn}`: {e}"))?;
            tokio::spawn(conn);
            let msgs = client
                .simple_query(sql)
                .await
                .map_err(|e| format!("{sql}: {e:?}"))?;
            Ok(msgs
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect())
        })
}

fn pg_su_ok(db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    pg_su(db, sql).unwrap_or_else(|e| panic!("{e}"))
}

/// An Env whose PostgreSQL target connects as the superuser (to its fresh database).
fn pg_env_as_superuser() -> Env {
    let mut env = Env::new(Engine::Postgres);
    let dsn = pg_su_dsn();
    let host = dsn_part(&dsn, "host").unwrap_or_else(|| "127.0.0.1".into());
    let port = dsn_part(&dsn, "port").unwrap_or_else(|| "5432".into());
    let user = dsn_part(&dsn, "user").expect("the superuser's DSN names its user");
    let mut text = format!(
        "connection:\n  host: {host}\n  port: {port}\n  database: {}\n  user: {user}\n  connect_timeout: 5\n",
        env.db().name()
    );
    if let Some(pw) = dsn_part(&dsn, "password") {
        text.push_str("  password_env: MAIRIE_DBA_TEST_PG_SU_PASSWORD\n");
        env.set_env("MAIRIE_DBA_TEST_PG_SU_PASSWORD", &pw);
    }
    env.write("config_postgres.yml", text);
    env
}

/// Server-wide PostgreSQL objects made for a test, dropped on drop.
struct PgObjects {
    roles: Vec<String>,
}

impl Drop for PgObjects {
    fn drop(&mut self) {
        for r in &self.roles {
            if let Err(e) = pg_su("postgres", &format!("DROP ROLE IF EXISTS {r}")) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// What an audit could conceivably change, server-wide and in the test database: roles and
/// their attributes (other suites' `mdba_` roles excluded), ALTER SYSTEM settings, the
/// database's schema and function privileges.
fn pg_fingerprint(db: &str) -> Vec<Vec<Option<String>>> {
    pg_su_ok(
        db,
        "SELECT 'role', rolname || ':' || rolsuper || rolcanlogin || rolcreaterole || rolcreatedb || rolreplication || rolbypassrls || ':' || coalesce(rolvaliduntil::text, '') || ':' || rolconnlimit FROM pg_roles WHERE rolname NOT LIKE 'mdba\\_%' OR rolname LIKE 'mdba\\_audit\\_%'
         UNION ALL SELECT 'file', name || '=' || setting FROM pg_file_settings
         UNION ALL SELECT 'schema', nspname || ':' || coalesce(nspacl::text, '') FROM pg_namespace
         UNION ALL SELECT 'proc', oid::regprocedure::text || ':' || coalesce(proconfig::text, '') || ':' || coalesce(proacl::text, '') FROM pg_proc WHERE pronamespace = 'public'::regnamespace
         UNION ALL SELECT 'lang', lanname || ':' || lanpltrusted FROM pg_language
         ORDER BY 1, 2",
    )
}

#[test]
fn postgres_failures_name_the_offenders_and_nothing_changes() {
    let _serial = serial(&format!("audit-tests-{}", Engine::Postgres.name()));
    let env = pg_env_as_superuser();
    let db = env.db().name().to_string();
    let su = unique("mdba_audit_su");
    let objects = PgObjects {
        roles: vec![su.clone()],
    };
    pg_su_ok(
        "postgres",
        &format!("CREATE ROLE {su} SUPERUSER LOGIN PASSWORD 'Audit-Test-{su}'"),
    );
    pg_su_ok(
        &db,
        "CREATE FUNCTION public.mdba_audit_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
         GRANT CREATE ON SCHEMA public TO PUBLIC",
    );
    // This machine's trust rules, read as the audit reads them.
    let trust = pg_su_ok(
        &db,
        "SELECT line_number::text, type FROM pg_hba_file_rules WHERE auth_method = 'trust' AND error IS NULL ORDER BY 1",
    );
    let before = pg_fingerprint(&db);

    let (run, doc) = audit_json(&env, &[]);
    run.code(2);
    assert_eq!(doc["status"], "critical");
    let t = &doc["targets"][0];
    assert_eq!(t["target"], "postgres");
    assert_eq!(t["engine"], "postgres");
    assert_eq!(t["status"], "critical");
    let findings = t["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), catalogue_len(Engine::Postgres));
    for f in findings {
        for key in [
            "id",
            "title",
            "severity",
            "status",
            "detail",
            "remediation",
            "cis",
            "rationale",
        ] {
            assert!(f.get(key).is_some(), "{key} missing in {f:#}");
        }
        assert!(
            ["pass", "fail", "error"].contains(&f["status"].as_str().unwrap_or_default()),
            "{f:#}"
        );
        // Run as a superuser, every check can look.
        assert_ne!(f["status"], "error", "{f:#}");
    }
    let s = &t["summary"];
    let sum: u64 = ["pass", "fail", "error", "ignored"]
        .iter()
        .map(|k| s[k].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sum as usize, findings.len(), "{s}");

    assert_fails_naming(&doc, "PG-AUTH-01", &[&su]);
    assert_fails_naming(&doc, "PG-AUTH-02", &[&su]);
    let fix = finding(&doc, "PG-AUTH-01")["fix"].to_string();
    assert!(
        fix.contains(&format!("ALTER ROLE {su} NOSUPERUSER;")),
        "{fix}"
    );
    assert_fails_naming(&doc, "PG-PRIV-03", &["mdba_audit_definer()"]);
    assert_fails_naming(&doc, "PG-PRIV-02", &["mdba_audit_definer()"]);
    assert_fails_naming(&doc, "PG-PRIV-01", &["schema public"]);

    for (id, local) in [("PG-NET-01", false), ("PG-NET-02", true)] {
        let lines: Vec<String> = trust
            .iter()
            .filter(|r| (r[1].as_deref() == Some("local")) == local)
            .map(|r| format!("line {}:", r[0].as_deref().unwrap_or_default()))
            .collect();
        if lines.is_empty() {
            assert_eq!(finding(&doc, id)["status"], "pass", "{id}");
        } else {
            let names: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert_fails_naming(&doc, id, &names);
        }
    }

    assert_eq!(pg_fingerprint(&db), before, "the audit changed the server");
    drop(objects);
    let left = pg_su_ok(
        "postgres",
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{su}'"),
    );
    assert_eq!(left[0][0].as_deref(), Some("0"));
}

#[test]
fn postgres_exit_codes_follow_fail_on_and_check_narrows() {
    let env = pg_env_as_superuser();
    let db = env.db().name().to_string();
    pg_su_ok(
        &db,
        "CREATE FUNCTION public.mdba_audit_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
    );
    // A high-severity failure: CRITICAL by default, WARNING with --fail-on critical.
    let (run, doc) = audit_json(&env, &["--check", "PG-PRIV-03"]);
    run.code(2);
    assert_eq!(
        doc["targets"][0]["findings"].as_array().map(Vec::len),
        Some(1)
    );
    let (run, doc) = audit_json(&env, &["--check", "PG-PRIV-03", "--fail-on", "critical"]);
    run.code(1);
    assert_eq!(doc["status"], "warning");
    assert_eq!(doc["fail_on"], "critical");
    // Every selected check passes: OK.
    let (run, doc) = audit_json(&env, &["--check", "PG-PRIV-04", "--check", "pg-conf-05"]);
    run.code(0);
    assert_eq!(doc["status"], "ok");
    let ids: Vec<&str> = doc["targets"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["PG-PRIV-04", "PG-CONF-05"]);
    // A group selects its checks.
    let (_, doc) = audit_json(&env, &["--check", "PG-LOG"]);
    let n = doc["targets"][0]["findings"].as_array().unwrap().len();
    assert!(n >= 5, "{doc:#}");
    // The table lists failing checks first.
    let table = env.run(&["audit", "--check", "PG-PRIV-03", "--check", "PG-PRIV-04"]);
    table.code(2);
    let fail_at = table.stdout.find("PG-PRIV-03").unwrap();
    let pass_at = table.stdout.find("PG-PRIV-04").unwrap();
    assert!(fail_at < pass_at, "{}", table.stdout);
    table.stdout_has("AUDIT CRITICAL - postgres");
    // An accepted risk is reported as ignored and counts for nothing.
    env.write_global("audit:\n  ignore: [PG-PRIV-03]\n");
    let (run, doc) = audit_json(&env, &["--check", "PG-PRIV-03"]);
    run.code(0);
    assert_eq!(finding(&doc, "PG-PRIV-03")["status"], "ignored");
    assert_eq!(doc["targets"][0]["summary"]["ignored"], 1);
}

#[test]
fn postgres_checks_that_cannot_look_are_errors_and_a_warning() {
    // The test role is no superuser: pg_authid and pg_hba_file_rules are closed to it.
    let env = Env::new(Engine::Postgres);
    let (run, doc) = audit_json(&env, &["--check", "PG-AUTH-02", "--check", "PG-NET-01"]);
    run.code(1);
    assert_eq!(doc["status"], "warning");
    let f = finding(&doc, "PG-AUTH-02");
    assert_eq!(f["status"], "error");
    assert!(f["detail"].as_str().unwrap().contains("pg_authid"), "{f:#}");
    let f = finding(&doc, "PG-NET-01");
    assert_eq!(f["status"], "error");
    assert!(
        f["detail"].as_str().unwrap().contains("pg_hba_file_rules"),
        "{f:#}"
    );
    assert_eq!(doc["targets"][0]["summary"]["error"], 2);
}

// ---------------------------------------------------------------------------------------------
// MariaDB as root

/// Runs SQL as MariaDB's admin (`mysql_admin_url`) through the `mariadb` client over TCP,
/// the password in its environment, no option file read.
fn my_root(sql: &str) -> Result<String, String> {
    let url = mysql_admin_url();
    let opts = mysql_async::Opts::from_url(&url).map_err(|e| format!("{url}: {e}"))?;
    let user = opts.user().unwrap_or("root").to_string();
    let out = std::process::Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--host={}", opts.ip_or_hostname()))
        .arg(format!("--port={}", opts.tcp_port()))
        .arg(format!("--user={user}"))
        .args(["--protocol=tcp", "-N", "-B", "-e", sql])
        .env("MYSQL_PWD", opts.pass().unwrap_or_default())
        .output()
        .map_err(|e| format!("running `mariadb`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "mariadb -u{user} -e {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn my_root_ok(sql: &str) -> String {
    my_root(sql).unwrap_or_else(|e| panic!("{e}"))
}

/// MariaDB accounts made for a test (`'user'@'host'`), dropped on drop.
struct MyAccounts {
    accounts: Vec<String>,
}

impl Drop for MyAccounts {
    fn drop(&mut self) {
        for a in &self.accounts {
            if let Err(e) = my_root(&format!("DROP USER IF EXISTS {a}")) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Accounts and their global privileges (other suites' `mdba_` accounts excluded), the
/// variables an audit reads, and the grants on databases.
fn my_fingerprint() -> String {
    let mut s = my_root_ok(
        "SELECT User, Host, plugin, authentication_string, File_priv, Super_priv, Grant_priv, Process_priv FROM mysql.user WHERE User NOT LIKE 'mdba!_%' ESCAPE '!' OR User LIKE 'mdba!_audit!_%' ESCAPE '!' ORDER BY User, Host",
    );
    s.push_str(&my_root_ok(
        "SELECT Host, Db, User FROM mysql.db WHERE Db NOT LIKE 'mdba!_%' ESCAPE '!' ORDER BY 1, 2, 3",
    ));
    s.push_str(&my_root_ok(
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('local_infile', 'general_log', 'sql_mode', 'require_secure_transport', 'default_password_lifetime', 'max_connect_errors', 'old_passwords', 'secure_auth', 'log_bin', 'performance_schema')",
    ));
    s
}

#[test]
fn mysql_failures_name_the_offenders_and_nothing_changes() {
    let _serial = serial(&format!("audit-tests-{}", Engine::Mysql.name()));
    let env = Env::new(Engine::Mysql);
    let pw_user = unique("mdba_audit_pw");
    let file_user = unique("mdba_audit_file");
    let anonymous_existed =
        my_root_ok("SELECT COUNT(*) FROM mysql.user WHERE User = '' AND Host = 'localhost'").trim()
            != "0";
    let mut accounts = MyAccounts {
        accounts: vec![
            format!("'{pw_user}'@'localhost'"),
            format!("'{file_user}'@'localhost'"),
        ],
    };
    if !anonymous_existed {
        accounts.accounts.push("''@'localhost'".into());
        my_root_ok("CREATE USER ''@'localhost'");
    }
    my_root_ok(&format!(
        "CREATE USER '{pw_user}'@'localhost' IDENTIFIED BY '{pw_user}';
         CREATE USER '{file_user}'@'localhost' IDENTIFIED BY 'Audit-Test-9-{file_user}';
         GRANT FILE ON *.* TO '{file_user}'@'localhost'"
    ));
    let before = my_fingerprint();

    let (run, doc) = audit_json(&env, &[]);
    run.code(2);
    assert_eq!(doc["status"], "critical");
    let t = &doc["targets"][0];
    assert_eq!(t["engine"], "mysql");
    assert_eq!(
        t["findings"].as_array().map(Vec::len),
        Some(catalogue_len(Engine::Mysql))
    );
    assert_fails_naming(&doc, "MY-AUTH-01", &["''@localhost"]);
    assert_fails_naming(&doc, "MY-AUTH-03", &[&format!("{pw_user}@localhost")]);
    assert_fails_naming(&doc, "MY-PRIV-01", &[&format!("{file_user}@localhost")]);
    let fix = finding(&doc, "MY-PRIV-01")["fix"].to_string();
    assert!(
        fix.contains(&format!(
            "REVOKE FILE ON *.* FROM '{file_user}'@'localhost';"
        )),
        "{fix}"
    );
    // The password check compares hashes on the server: no hash is ever shown.
    let hash = my_root_ok(&format!(
        "SELECT authentication_string FROM mysql.user WHERE User = '{pw_user}'"
    ));
    assert!(hash.trim().starts_with('*'), "{hash}");
    assert!(!run.stdout.contains(hash.trim()), "{}", run.stdout);

    // --fail-on: the anonymous account and the password are critical, FILE is high.
    let (run, _) = audit_json(&env, &["--check", "MY-PRIV-01", "--fail-on", "critical"]);
    run.code(1);
    let (run, _) = audit_json(&env, &["--check", "MY-PRIV-01"]);
    run.code(2);
    let (run, _) = audit_json(&env, &["--check", "MY-AUTH-03", "--fail-on", "critical"]);
    run.code(2);

    assert_eq!(my_fingerprint(), before, "the audit changed the server");
    drop(accounts);
    let left = my_root_ok(&format!(
        "SELECT COUNT(*) FROM mysql.user WHERE User IN ('{pw_user}', '{file_user}')"
    ));
    assert_eq!(left.trim(), "0");
    if !anonymous_existed {
        let anon = my_root_ok("SELECT COUNT(*) FROM mysql.user WHERE User = ''");
        assert_eq!(anon.trim(), "0");
    }
}

#[test]
fn mysql_an_accepted_risk_and_an_ok_run() {
    let env = Env::new(Engine::Mysql);
    // Checks that pass on any server fit for the suite: OK, exit 0.
    let (run, doc) = audit_json(&env, &["--check", "MY-AUTH-06", "--check", "MY-AUTH-08"]);
    run.code(0);
    assert_eq!(doc["status"], "ok");
    // local_infile is on for the suite (load-csv needs it): a failure, unless accepted.
    let (run, doc) = audit_json(&env, &["--check", "MY-CONF-01"]);
    run.code(1);
    assert_eq!(finding(&doc, "MY-CONF-01")["status"], "fail");
    env.write_global("audit:\n  ignore: [my-conf-01]\n");
    let (run, doc) = audit_json(&env, &["--check", "MY-CONF-01"]);
    run.code(0);
    assert_eq!(finding(&doc, "MY-CONF-01")["status"], "ignored");
}

// ---------------------------------------------------------------------------------------------
// Both engines

/// A small well-formedness check: declaration, balanced tags, quoted attributes, entities
/// only where allowed. Returns the start tags' names in order.
fn xml_elements(xml: &str) -> Result<Vec<String>, String> {
    fn entity_ok(s: &str) -> bool {
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            let tail = &rest[i + 1..];
            let Some(end) = tail.find(';') else {
                return false;
            };
            let name = &tail[..end];
            let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                || name
                    .strip_prefix('#')
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !ok {
                return false;
            }
            rest = &tail[end + 1..];
        }
        true
    }
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .ok_or("no XML declaration")?;
    let mut stack: Vec<String> = Vec::new();
    let mut starts = Vec::new();
    let mut rest = body;
    let mut seen_root = false;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        if text.contains('>') || !entity_ok(text) {
            return Err(format!("bad text {text:?}"));
        }
        if stack.is_empty() && !text.trim().is_empty() {
            return Err(format!("text outside the root: {text:?}"));
        }
        let gt = rest[lt..].find('>').ok_or("unclosed tag")? + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("stray </{name}>"))?;
            if open != name {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad element name {name:?}"));
        }
        while !attrs.trim().is_empty() {
            let a = attrs.trim_start();
            let eq = a
                .find("=\"")
                .ok_or(format!("bad attribute in <{name}>: {a:?}"))?;
            let after = &a[eq + 2..];
            let close = after.find('"').ok_or("unterminated attribute")?;
            let value = &after[..close];
            if value.contains('<') || !entity_ok(value) {
                return Err(format!("bad attribute value {value:?}"));
            }
            attrs = &after[close + 1..];
        }
        if stack.is_empty() {
            if seen_root {
                return Err("two root elements".into());
            }
            seen_root = true;
        }
        starts.push(name.to_string());
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    if !stack.is_empty() || !rest.trim().is_empty() {
        return Err(format!("unclosed {stack:?}"));
    }
    Ok(starts)
}

fn junit_output_is_well_formed_with_one_case_per_check(engine: Engine) {
    let env = Env::new(engine);
    let (_, doc) = audit_json(&env, &[]);
    let s = &doc["targets"][0]["summary"];
    let run = env.run(&["--format", "junit", "audit"]);
    assert!(run.code == 1 || run.code == 2, "{}", run.stderr);
    let elements = xml_elements(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.stdout));
    let count = |n: &str| elements.iter().filter(|e| *e == n).count();
    assert_eq!(count("testsuites"), 1);
    assert_eq!(count("testsuite"), 1);
    assert_eq!(count("testcase"), catalogue_len(engine));
    assert_eq!(count("failure") as u64, s["fail"].as_u64().unwrap());
    assert_eq!(count("error") as u64, s["error"].as_u64().unwrap());
    assert_eq!(count("skipped") as u64, s["ignored"].as_u64().unwrap());
    let class = format!("classname=\"mairie-dba.audit.{}\"", engine.name());
    assert_eq!(run.stdout.matches(&class).count(), catalogue_len(engine));
    let first = match engine {
        Engine::Postgres => "name=\"PG-AUTH-01 ",
        Engine::Mysql => "name=\"MY-AUTH-01 ",
    };
    assert!(run.stdout.contains(first), "{}", run.stdout);
    // JUnit belongs to audit.
    env.run(&["--format", "junit", "schema", "status"]).code(2);
}

fn an_unreachable_target_is_critical_and_does_not_hide_the_others(engine: Engine) {
    let env = Env::new(engine);
    let e = engine.name();
    // A second target on a port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let text = std::fs::read_to_string(env.path(&format!("config_{e}.yml"))).unwrap();
    let dead = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("port:") {
                format!("  port: {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    env.write("config_dead.yml", dead + "\n");
    env.write_global(&format!(
        "  dead:\n    engine: {e}\n    config: config_dead.yml\n"
    ));
    let started = std::time::Instant::now();
    let check = match engine {
        Engine::Postgres => "PG-PRIV-04",
        Engine::Mysql => "MY-AUTH-06",
    };
    let (run, doc) = audit_json(&env, &["--check", check]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    run.code(2);
    assert_eq!(doc["status"], "critical");
    let targets = doc["targets"].as_array().unwrap();
    let live = targets.iter().find(|t| t["target"] == e).unwrap();
    let dead = targets.iter().find(|t| t["target"] == "dead").unwrap();
    assert_eq!(live["status"], "ok", "{live:#}");
    assert_eq!(live["findings"].as_array().map(Vec::len), Some(1));
    assert_eq!(dead["status"], "critical");
    assert!(dead["error"].as_str().unwrap().contains("dead"), "{dead:#}");
    let junit = env.run(&["--format", "junit", "audit", "--check", check]);
    junit.code(2);
    let elements = xml_elements(&junit.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(elements.iter().filter(|e| *e == "testsuite").count(), 2);
    assert!(
        junit.stdout.contains("name=\"connect\""),
        "{}",
        junit.stdout
    );
}

fn unknown_check_ids_are_unknown(engine: Engine) {
    let env = Env::new(engine);
    let run = env.run(&["audit", "--check", "PG-NOPE-01"]);
    run.code(3)
        .stderr_has("PG-NOPE-01")
        .stderr_has("--format json");
    let run = env.run(&["--format", "json", "audit", "--check", "MY-AUTH-99"]);
    run.code(3);
    assert_eq!(run.json()["status"], "unknown");
    run.stderr_has("MY-AUTH-01");
    // A checks of another engine selects nothing here: OK, and no connection is needed.
    let other = match engine {
        Engine::Postgres => "MY-AUTH-01",
        Engine::Mysql => "PG-AUTH-01",
    };
    let (run, doc) = audit_json(&env, &["--check", other]);
    run.code(0);
    assert_eq!(
        doc["targets"][0]["findings"].as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn the_xml_checker_rejects_broken_documents() {
    let ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a x=\"1&amp;2\"><b/>t&lt;</a>\n";
    assert_eq!(xml_elements(ok).unwrap(), ["a", "b"]);
    for bad in [
        "<a></a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a><b></a></b>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a x=\"<\"></a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>&nope;</a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/><b/>",
    ] {
        assert!(xml_elements(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// SQL Server (run when MAIRIE_DBA_TEST_MSSQL holds an ADO.NET connection string for a sysadmin)

mod mssql {
    use super::{finding, Run, BIN, ROOT};
    use crate::common::mssql_ado as ado;

    fn sql(text: &str) -> Result<(), String> {
        let a = ado();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(async {
                use tokio_util::compat::TokioAsyncWriteCompatExt;
                let cfg = tiberius::Config::from_ado_string(&a.raw).map_err(|e| e.to_string())?;
                let tcp = tokio::net::TcpStream::connect(cfg.get_addr())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut client = tiberius::Client::connect(cfg, tcp.compat_write())
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .simple_query(text)
                    .await
                    .map_err(|e| format!("{text}: {e}"))?
                    .into_results()
                    .await
                    .map_err(|e| format!("{text}: {e}"))?;
                Ok(())
            })
    }

    struct Login(String);

    impl Drop for Login {
        fn drop(&mut self) {
            if let Err(e) = sql(&format!("DROP LOGIN [{}]", self.0)) {
                eprintln!("cleanup: {e}");
            }
        }
    }

    #[test]
    #[cfg_attr(
        not(mssql_tests),
        ignore = "set MAIRIE_DBA_TEST_MSSQL (an ADO.NET connection string) to run against SQL Server"
    )]
    fn sql_server_failures_name_the_offenders() {
        let a = ado();
        let login = Login(format!("mdba_audit_np_{}", std::process::id()));
        sql(&format!(
            "CREATE LOGIN [{}] WITH PASSWORD = N'Audit-Test-42-x', CHECK_POLICY = OFF",
            login.0
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!("mdba-audit-ms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config_mssql.yml"),
            format!(
                "connection:\n  host: {}\n  port: {}\n  database: master\n  user: {}\n  password_env: MAIRIE_MSSQL_PASSWORD\n  encrypt: true\n  trust_server_certificate: true\n",
                a.host, a.port, a.user
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("config_global.yml"),
            format!("base_dir: {ROOT}\ntargets:\n  mssql:\n    engine: mssql\n    config: config_mssql.yml\n"),
        )
        .unwrap();
        let run = |args: &[&str]| {
            Run::from(
                std::process::Command::new(BIN)
                    .arg("-c")
                    .arg(dir.join("config_global.yml"))
                    .args(args)
                    .env("MAIRIE_MSSQL_PASSWORD", &a.password)
                    .output()
                    .unwrap(),
            )
        };
        let out = run(&["--format", "json", "audit"]);
        let doc = out.json();
        let findings = doc["targets"][0]["findings"].as_array().expect("findings");
        assert_eq!(
            findings.len(),
            mairie_dba::audit::mssql::CHECKS.len(),
            "{doc:#}"
        );
        for f in findings {
            let d = f["detail"].as_str().unwrap_or_default();
            assert!(!d.contains("no evaluation for"), "{f:#}");
            if f["status"] == "error" {
                eprintln!("{}: {d}", f["id"]);
            }
        }
        let f = finding(&doc, "MS-AUTH-03");
        assert_eq!(f["status"], "fail", "{f:#}");
        assert!(f["detail"].as_str().unwrap().contains(&login.0), "{f:#}");
        for id in ["MS-SURF-01", "MS-CONF-01", "MS-PRIV-03", "MS-AUTH-01"] {
            assert_ne!(finding(&doc, id)["status"], "error", "{id}");
        }
        let junit = run(&["--format", "junit", "audit"]);
        assert_eq!(
            junit.stdout.matches("<testcase ").count(),
            mairie_dba::audit::mssql::CHECKS.len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
