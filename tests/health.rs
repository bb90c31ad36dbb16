//! `health` against real PostgreSQL and MariaDB servers, each test written once and run on
//! both: a healthy server is OK in every format, `--check` narrows the run, thresholds come
//! from the configuration (per target first), a long query, a session idle in transaction
//! and a blocked session are reported, a dead or silent server is CRITICAL quickly without
//! delaying the others, `health.timeout` cuts a target short, configuration mistakes are
//! UNKNOWN (exit 3), and the age of the latest backup is judged from its manifest.
//!
//! `long_queries`, `idle_in_transaction` and `locks` look at the whole server, so the tests
//! that provoke them and the tests that expect them quiet take turns on a lock file (tests run
//! as threads under `cargo test` and as processes under nextest). Activity from other suites
//! on the shared development servers is waited out, never ignored.

mod common;

use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

per_engine!(
    a_healthy_server_is_ok_in_json_and_nagios,
    check_narrows_the_run_to_the_named_checks,
    thresholds_come_from_the_config_and_a_target_override_wins,
    a_long_query_is_a_warning_that_names_it,
    a_session_idle_in_transaction_is_a_warning,
    a_blocked_session_is_a_lock_warning,
    an_unreachable_target_is_critical_at_once,
    a_dead_target_does_not_delay_the_live_one,
    a_server_that_never_answers_is_critical_after_connect_timeout,
    a_target_over_health_timeout_is_critical,
    configuration_mistakes_are_unknown,
    backup_age_follows_the_latest_backup,
    activity_checks_need_to_see_every_session,
    a_check_that_does_not_apply_is_skipped_unless_named,
    thresholds_on_the_command_line_win_over_the_config,
    sequences_near_their_maximum_are_reported,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `health` with `--format json` and the given arguments.
fn health(env: &Env, args: &[&str]) -> Run {
    let mut all = vec!["--format", "json", "health"];
    all.extend_from_slice(args);
    env.run(&all)
}

/// The checks of a target in a health document.
fn checks_of<'a>(doc: &'a Value, target: &str) -> &'a Vec<Value> {
    doc["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target} in {doc:#}"))["checks"]
        .as_array()
        .expect("checks")
}

fn target_of<'a>(doc: &'a Value, target: &str) -> &'a Value {
    doc["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["target"] == target)
        .unwrap_or_else(|| panic!("no target {target} in {doc:#}"))
}

/// One check of a target.
fn check<'a>(doc: &'a Value, target: &str, name: &str) -> &'a Value {
    checks_of(doc, target)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} for {target} in {doc:#}"))
}

fn names(doc: &Value, target: &str) -> Vec<String> {
    checks_of(doc, target)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Runs `health` until `done` accepts the result, or `timeout` passes; the last run either
/// way. Activity of other suites on the shared servers comes and goes: the tests wait for the
/// state they set up (or for quiet) instead of reading one moment.
fn health_until(env: &Env, args: &[&str], timeout: Duration, done: impl Fn(&Run) -> bool) -> Run {
    let start = Instant::now();
    loop {
        let r = health(env, args);
        if done(&r) || start.elapsed() > timeout {
            return r;
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A check's status in a run, if the run printed a document with it.
fn status_of(r: &Run, target: &str, name: &str) -> Option<String> {
    let doc: Value = serde_json::from_str(&r.stdout).ok()?;
    let t = doc["targets"]
        .as_array()?
        .iter()
        .find(|t| t["target"] == target)?;
    let c = t["checks"].as_array()?.iter().find(|c| c["name"] == name)?;
    c["status"].as_str().map(str::to_string)
}

/// Waits until `check` is OK under the env's thresholds. MySQL's messages do not name the
/// sessions, so on MySQL the tests first wait for quiet: the warning that follows is theirs.
fn wait_for_quiet(env: &Env, check: &str) {
    if env.engine != Engine::Mysql {
        return;
    }
    let t = env.engine.name();
    let ok = |r: &Run| status_of(r, t, check).as_deref() == Some("ok");
    let r = health_until(env, &["--check", check], Duration::from_secs(120), ok);
    assert!(
        ok(&r),
        "the server never went quiet for {check}: {}",
        r.stdout
    );
}

/// The engine file of the env's target with explicit host, port and connect timeout.
fn write_connection(env: &Env, file: &str, port: u16, connect_timeout: u64) {
    let db = env.db().name();
    let var = env.engine.password_var();
    env.write(
        file,
        format!(
            "connection:\n  host: 127.0.0.1\n  port: {port}\n  database: {db}\n  user: mairie\n  password_env: {var}\n  connect_timeout: {connect_timeout}\n"
        ),
    );
}

/// A TCP port that accepts connections (the kernel completes the handshake) and never says
/// a word: a hung server.
fn silent_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

type Reply = mpsc::Sender<Result<(), String>>;

enum Client {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

/// A database session of its own, on its own thread: statements are sent to it and run in
/// order; `start` does not wait for the statement to finish (a sleep, a blocked UPDATE).
/// Every session bounds its lock waits, so a test that fails midway cannot hang forever.
struct Session {
    /// The server's id of the session: backend pid or connection id.
    id: String,
    tx: Option<mpsc::Sender<(String, Reply)>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Session {
    /// A session of the test user on database `db`.
    fn open(engine: Engine, db: &str) -> Session {
        let login = match engine {
            Engine::Postgres => format!("{} dbname={db}", pg_admin_dsn()),
            Engine::Mysql => format!("{}/{db}", mysql_url()),
        };
        Session::open_as(engine, login)
    }

    /// A session logged in with `login`: a libpq-style DSN (PostgreSQL) or a URL (MySQL).
    fn open_as(engine: Engine, login: String) -> Session {
        let (tx, rx) = mpsc::channel::<(String, Reply)>();
        let (id_tx, id_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (mut client, id) = rt.block_on(async {
                match engine {
                    Engine::Postgres => {
                        let (c, conn) = tokio_postgres::connect(&login, tokio_postgres::NoTls)
                            .await
                            .unwrap_or_else(|e| panic!("connect {login}: {e}"));
                        tokio::spawn(conn);
                        c.batch_execute("SET lock_timeout = '30s'").await.unwrap();
                        let pid: i32 = c
                            .query_one("SELECT pg_backend_pid()", &[])
                            .await
                            .unwrap()
                            .get(0);
                        (Client::Pg(c), pid.to_string())
                    }
                    Engine::Mysql => {
                        use mysql_async::prelude::Queryable;
                        let opts = mysql_async::Opts::from_url(&login).unwrap();
                        let mut c = mysql_async::Conn::new(opts).await.unwrap();
                        c.query_drop("SET SESSION innodb_lock_wait_timeout = 30")
                            .await
                            .unwrap();
                        let id: Option<u64> =
                            c.query_first("SELECT CONNECTION_ID()").await.unwrap();
                        (Client::My(c), id.unwrap().to_string())
                    }
                }
            });
            id_tx.send(id).unwrap();
            while let Ok((sql, reply)) = rx.recv() {
                let res = rt.block_on(async {
                    match &mut client {
                        Client::Pg(c) => c.batch_execute(&sql).await.map_err(|e| format!("{e:?}")),
                        Client::My(c) => {
                            use mysql_async::prelude::Queryable;
                            c.query_drop(&sql).await.map_err(|e| e.to_string())
                        }
                    }
                });
                let _ = reply.send(res.map_err(|e| format!("{sql}: {e}")));
            }
            if let Client::My(c) = client {
                let _ = rt.block_on(c.disconnect());
            }
        });
        let id = id_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the session connects");
        Session {
            id,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Sends a statement; its outcome arrives on the receiver.
    fn start(&self, sql: &str) -> mpsc::Receiver<Result<(), String>> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .as_ref()
            .unwrap()
            .send((sql.to_string(), reply))
            .unwrap();
        rx
    }

    /// Runs a statement and waits for it.
    fn exec(&self, sql: &str) {
        self.start(sql)
            .recv_timeout(Duration::from_secs(60))
            .expect("the statement finishes")
            .unwrap();
    }

    /// Closes the connection (an open transaction is rolled back) and ends the thread.
    fn close(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            t.join().expect("the session thread ends cleanly");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // On a failed assertion: hang up; the thread ends once its statement is over.
        self.tx.take();
    }
}

// ---------------------------------------------------------------------------------------------
// Accounts of a test's own

/// The password of every account the tests create, and the variable that hands it over.
const ACCOUNT_PASSWORD: &str = "mdba-test-account";
const ACCOUNT_PASSWORD_VAR: &str = "MAIRIE_TEST_ACCOUNT_PASSWORD";

fn unique_name(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        nanos % 100_000
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs SQL (several statements allowed) as the PostgreSQL superuser on `db`; rows as text.
fn pg_super(db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let dsn = format!("{} dbname={db}", pg_superuser_dsn());
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect {dsn}: {e}"));
        tokio::spawn(conn);
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()
    })
}

/// Runs SQL (several statements allowed) as the MySQL administrator; the rows of the last
/// statement, as text.
fn my_admin(sql: &str) -> Vec<Vec<Option<String>>> {
    use mysql_async::prelude::Queryable;
    let url = mysql_admin_url();
    runtime().block_on(async {
        let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let mut result = c
            .query_iter(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut rows = Vec::new();
        while !result.is_empty() {
            let set: Vec<mysql_async::Row> = result
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows = set
                .into_iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| match r.as_ref(i) {
                            Some(mysql_async::Value::Bytes(b)) => {
                                Some(String::from_utf8_lossy(b).into_owned())
                            }
                            None | Some(mysql_async::Value::NULL) => None,
                            Some(v) => Some(v.as_sql(true)),
                        })
                        .collect()
                })
                .collect();
        }
        drop(result);
        let _ = c.disconnect().await;
        rows
    })
}

/// Runs one statement as the MySQL administrator, whatever comes of it (a thread already
/// gone cannot be killed).
fn my_admin_quiet(sql: &str) {
    use mysql_async::prelude::Queryable;
    let url = mysql_admin_url();
    runtime().block_on(async {
        if let Ok(mut c) = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap()).await
        {
            let _ = c.query_drop(sql).await;
            let _ = c.disconnect().await;
        }
    });
}

/// A login role (PostgreSQL) or user (MySQL) a test created; at the end its sessions are
/// ended and it is dropped with its grants.
struct Account {
    engine: Engine,
    name: String,
    /// The database it was granted things in.
    db: String,
}

impl Account {
    /// A login with nothing but `grants`, SQL run as the administrator after creating it,
    /// `{name}` standing for the account (PostgreSQL: the role; MySQL: `'name'@'%'`).
    fn new(engine: Engine, db: &str, grants: &str) -> Account {
        let name = unique_name("mdba_acct");
        match engine {
            Engine::Postgres => {
                pg_super(
                    db,
                    &format!("CREATE ROLE {name} LOGIN PASSWORD '{ACCOUNT_PASSWORD}'"),
                );
                if !grants.is_empty() {
                    pg_super(db, &grants.replace("{name}", &name));
                }
            }
            Engine::Mysql => {
                my_admin(&format!(
                    "CREATE USER '{name}'@'%' IDENTIFIED BY '{ACCOUNT_PASSWORD}'"
                ));
                if !grants.is_empty() {
                    my_admin(&grants.replace("{name}", &format!("'{name}'@'%'")));
                }
            }
        }
        Account {
            engine,
            name,
            db: db.to_string(),
        }
    }

    /// The monitoring account of `deploy/monitoring-role/`, made by running the shipped
    /// script (as its header says) with the account and database renamed.
    fn monitoring(engine: Engine, db: &str) -> Account {
        let name = unique_name("mdba_mon");
        match engine {
            Engine::Postgres => {
                let sql = std::fs::read_to_string(project("deploy/monitoring-role/postgres.sql"))
                    .unwrap()
                    .replace("mairie_monitor", &name);
                pg_super(db, &sql);
                pg_super(
                    db,
                    &format!("ALTER ROLE {name} PASSWORD '{ACCOUNT_PASSWORD}'"),
                );
            }
            Engine::Mysql => {
                let sql = std::fs::read_to_string(project("deploy/monitoring-role/mysql.sql"))
                    .unwrap()
                    .replace("mairie_monitor", &name)
                    .replace("`mairie`.*", &format!("`{db}`.*"));
                my_admin(&sql);
                my_admin(&format!(
                    "ALTER USER '{name}'@'%' IDENTIFIED BY '{ACCOUNT_PASSWORD}' ACCOUNT UNLOCK"
                ));
            }
        }
        Account {
            engine,
            name,
            db: db.to_string(),
        }
    }

    /// How a session logs in as this account on `db` (None: no default database).
    fn login(&self, db: Option<&str>) -> String {
        match self.engine {
            Engine::Postgres => format!(
                "host=127.0.0.1 port={} user={} password={ACCOUNT_PASSWORD} dbname={}",
                pg_port(),
                self.name,
                db.unwrap_or("postgres")
            ),
            Engine::Mysql => format!(
                "mysql://{}:{ACCOUNT_PASSWORD}@127.0.0.1:{}/{}",
                self.name,
                mysql_port(),
                db.unwrap_or("")
            ),
        }
    }

    /// Points the env's target at this account.
    fn use_in(&self, env: &mut Env) {
        let t = env.engine.name();
        let port = match self.engine {
            Engine::Postgres => pg_port(),
            Engine::Mysql => mysql_port(),
        };
        env.write(
            &format!("config_{t}.yml"),
            format!(
                "connection:\n  host: 127.0.0.1\n  port: {port}\n  database: {}\n  user: {}\n  password_env: {ACCOUNT_PASSWORD_VAR}\n  connect_timeout: 5\n",
                self.db, self.name
            ),
        );
        env.set_env(ACCOUNT_PASSWORD_VAR, ACCOUNT_PASSWORD);
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let name = &self.name;
        match self.engine {
            Engine::Postgres => {
                let exists = !pg_super(
                    "postgres",
                    &format!("SELECT 1 FROM pg_database WHERE datname = '{}'", self.db),
                )
                .is_empty();
                let db = if exists { self.db.as_str() } else { "postgres" };
                pg_super(
                    db,
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}';
                         DROP OWNED BY {name}; DROP ROLE {name}"
                    ),
                );
            }
            Engine::Mysql => {
                let ids = my_admin(&format!(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{name}'"
                ));
                for id in ids
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                {
                    my_admin_quiet(&format!("KILL {id}"));
                }
                my_admin(&format!("DROP USER IF EXISTS '{name}'@'%'"));
            }
        }
    }
}

/// A test database whose target logs in as the monitoring account of
/// `deploy/monitoring-role/` (it sees every session). Keep the account until the end:
/// `let (env, _monitor) = monitored(engine);`.
fn monitored(engine: Engine) -> (Env, Account) {
    let mut env = Env::new(engine);
    let account = Account::monitoring(engine, env.db().name());
    account.use_in(&mut env);
    (env, account)
}

/// The number of sessions a long_queries message counts: `…; 3 active` (PostgreSQL) or
/// `3 running queries, …` (MySQL).
fn active_count(message: &str) -> Option<f64> {
    let words: Vec<&str> = message
        .split([' ', ';', ','])
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|w| w[1] == "active" || w[1] == "running")
        .find_map(|w| w[0].parse().ok())
}

// ---------------------------------------------------------------------------------------------
// 1. A healthy server

fn a_healthy_server_is_ok_in_json_and_nagios(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    let _serial = serial(&format!("health-tests-{}", engine.name()));

    let r = health_until(&env, &[], Duration::from_secs(60), |r| r.code == 0);
    r.code(0);
    let doc = r.json();
    assert_eq!(doc["status"], "ok", "{doc:#}");
    let target = target_of(&doc, t);
    assert_eq!(target["status"], "ok");
    assert!(target["seconds"].as_f64().is_some(), "{target:#}");
    let checks = checks_of(&doc, t);
    for c in checks {
        for key in ["name", "status", "unit", "message"] {
            assert!(c[key].is_string(), "check without {key}: {c:#}");
        }
        assert!(c.get("value").is_some(), "check without value: {c:#}");
        // Durations and counts are never below zero (clock skew between now() and the
        // moment a row is read once made long_queries slightly negative).
        if let Some(v) = c["value"].as_f64() {
            assert!(v >= 0.0, "{c:#}");
        }
        assert_eq!(c["status"], "ok", "{c:#}");
        assert!(!c["message"].as_str().unwrap().is_empty(), "{c:#}");
    }
    let conn = check(&doc, t, "connectivity");
    assert_eq!(conn["unit"], "ms");
    let ms = conn["value"].as_f64().expect("connectivity has a value");
    assert!((0.0..1000.0).contains(&ms), "{conn:#}");
    let connections = check(&doc, t, "connections");
    assert_eq!(connections["unit"], "%");
    assert_eq!(connections["warning"], 80.0);
    assert_eq!(connections["critical"], 95.0);
    let mut expected = vec![
        "connectivity",
        "version",
        "connections",
        "long_queries",
        "idle_in_transaction",
        "locks",
        "database_size",
        "table_sizes",
        "cache_hit",
    ];
    if engine == Engine::Postgres {
        expected.push("wraparound");
    }
    expected.extend(["sequences", "replication"]);
    if engine == Engine::Postgres {
        expected.extend(["vacuum", "analyze"]);
    }
    expected.push("backup_age");
    assert_eq!(names(&doc, t), expected);
    // What does not apply is listed as skipped, with why, and judged nowhere.
    let skipped: Vec<&str> = target["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| {
            assert!(!s["reason"].as_str().unwrap().is_empty(), "{s:#}");
            s["name"].as_str().unwrap()
        })
        .collect();
    // Redis's own checks (memory against maxmemory, key hit rate, snapshots) too.
    let redis = [
        "memory",
        "fragmentation",
        "hit_rate",
        "evictions",
        "rejected_connections",
        "persistence",
    ];
    match engine {
        Engine::Postgres => assert_eq!(skipped, [&redis[..], &["backup_dir_space"]].concat()),
        Engine::Mysql => assert_eq!(
            skipped,
            [
                &["wraparound", "vacuum", "analyze"][..],
                &redis,
                &["backup_dir_space"]
            ]
            .concat()
        ),
    }

    // The plugin line: one line, status, summary, then performance data.
    let r = env.run(&["--format", "nagios", "health"]);
    r.code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", r.stdout);
    let line = lines[0];
    assert!(line.starts_with("MAIRIE-DBA OK - "), "{line}");
    let (_, perf) = line
        .split_once(" | ")
        .expect("performance data after ` | `");
    let label = format!("'{t}_connections'=");
    let item = perf
        .split(' ')
        .find(|p| p.starts_with(&label))
        .unwrap_or_else(|| panic!("no {label} in {perf}"));
    let rest = &item[label.len()..];
    let (value, limits) = rest.split_once('%').expect("connections in %");
    assert!(value.parse::<f64>().is_ok(), "{item}");
    assert_eq!(limits, ";80;95", "{item}");
    assert!(
        perf.split(' ')
            .any(|p| p.starts_with(&format!("'{t}_connectivity_ms'="))),
        "{perf}"
    );
    assert!(
        perf.split(' ')
            .any(|p| p.starts_with(&format!("'{t}_time'="))),
        "{perf}"
    );
    // Every item is 'label'=value[uom][;warn;crit].
    for p in perf.split(' ') {
        assert!(p.starts_with('\'') && p.contains("'="), "{p}");
    }

    // The table for people ends with the summary.
    env.run(&["health"])
        .code(0)
        .stdout_has("HEALTH OK")
        .stdout_has("connectivity");
}

fn check_narrows_the_run_to_the_named_checks(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let r = health(&env, &["--check", "connections", "--check", "locks"]);
    let doc = r.json();
    assert_eq!(names(&doc, engine.name()), ["connections", "locks"]);
    assert!(matches!(r.code, 0 | 1), "{}", r.stdout);
    let r = health(&env, &["--check", "backup_age"]);
    r.code(0);
    assert_eq!(names(&r.json(), engine.name()), ["backup_age"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Thresholds

fn thresholds_come_from_the_config_and_a_target_override_wins(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    env.write_global(
        "health:\n  thresholds:\n    connections:\n      warning: 0\n      critical: 99\n",
    );
    let r = health(&env, &["--check", "connections"]);
    r.code(1);
    let doc = r.json();
    assert_eq!(doc["status"], "warning");
    let c = check(&doc, t, "connections");
    assert_eq!(c["status"], "warning", "{c:#}");
    assert_eq!(c["warning"], 0.0);
    assert_eq!(c["critical"], 99.0);
    env.run(&["--format", "nagios", "health", "--check", "connections"])
        .code(1)
        .stdout_has("MAIRIE-DBA WARNING - ")
        .stdout_has(&format!("{t}: connections"))
        .stdout_has(";0;99");

    // The same global setting, and a per-target override that wins over it.
    env.write_global(&format!(
        "health:\n  thresholds:\n    connections:\n      warning: 0\n      critical: 99\n  targets:\n    {t}:\n      connections: {{warning: 0, critical: 0}}\n"
    ));
    let r = health(&env, &["--check", "connections"]);
    r.code(2);
    let doc = r.json();
    assert_eq!(doc["status"], "critical");
    let c = check(&doc, t, "connections");
    assert_eq!(c["status"], "critical", "{c:#}");
    assert_eq!(c["critical"], 0.0);

    // The full run honours the override too.
    let r = health(&env, &[]);
    r.code(2);
    assert_eq!(check(&r.json(), t, "connections")["status"], "critical");
}

// ---------------------------------------------------------------------------------------------
// 3. Activity: long queries, idle transactions, locks

fn a_long_query_is_a_warning_that_names_it(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    env.write_global("health:\n  thresholds:\n    long_queries: {warning: 1, critical: 100}\n");
    let _serial = serial(&format!("health-tests-{}", engine.name()));
    wait_for_quiet(&env, "long_queries");
    let s = Session::open(engine, env.db().name());
    let sleep = match engine {
        Engine::Postgres => "SELECT pg_sleep(5)",
        Engine::Mysql => "SELECT SLEEP(5)",
    };
    let started = Instant::now();
    let done = s.start(sleep);
    let pid = format!("pid {} ", s.id);
    let r = health_until(
        &env,
        &["--check", "long_queries"],
        Duration::from_secs(4),
        |r| {
            status_of(r, t, "long_queries").as_deref() == Some("warning")
                && (engine == Engine::Mysql || r.stdout.contains(&pid))
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the query ended before it was seen"
    );
    r.code(1);
    let doc = r.json();
    let c = check(&doc, t, "long_queries");
    assert_eq!(c["status"], "warning", "{c:#}");
    assert_eq!(c["unit"], "s");
    assert!(c["value"].as_f64().unwrap() >= 1.0, "{c:#}");
    let msg = c["message"].as_str().unwrap();
    assert!(msg.contains("longest"), "{msg}");
    if engine == Engine::Postgres {
        // The session and its statement are named.
        assert!(msg.contains(&pid), "{msg}");
        assert!(msg.contains("pg_sleep(5)"), "{msg}");
    }
    done.recv_timeout(Duration::from_secs(30))
        .expect("the sleep ends")
        .unwrap();
    s.close();
}

fn a_session_idle_in_transaction_is_a_warning(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    env.write_global(
        "health:\n  thresholds:\n    idle_in_transaction: {warning: 1, critical: 100}\n",
    );
    env.db().query("CREATE TABLE oubli (id int PRIMARY KEY)");
    let _serial = serial(&format!("health-tests-{}", engine.name()));
    wait_for_quiet(&env, "idle_in_transaction");
    let s = Session::open(engine, env.db().name());
    s.exec("BEGIN");
    s.exec("SELECT count(*) FROM oubli");
    thread::sleep(Duration::from_secs(2));
    let r = health_until(
        &env,
        &["--check", "idle_in_transaction"],
        Duration::from_secs(10),
        |r| {
            status_of(r, t, "idle_in_transaction").as_deref() == Some("warning")
                && (engine == Engine::Mysql || r.stdout.contains(&s.id))
        },
    );
    r.code(1);
    let doc = r.json();
    let c = check(&doc, t, "idle_in_transaction");
    assert_eq!(c["status"], "warning", "{c:#}");
    assert!(c["value"].as_f64().unwrap() >= 1.0, "{c:#}");
    let msg = c["message"].as_str().unwrap();
    assert!(msg.contains("idle in transaction"), "{msg}");
    if engine == Engine::Postgres {
        assert!(msg.contains(&format!("{} mairie", s.id)), "{msg}");
    }
    s.exec("ROLLBACK");
    s.close();

    // Once the transaction is over, the check is quiet again.
    health_until(
        &env,
        &["--check", "idle_in_transaction"],
        Duration::from_secs(30),
        |r| r.code == 0,
    )
    .code(0);
}

fn a_blocked_session_is_a_lock_warning(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    env.db()
        .query("CREATE TABLE verrou (id int PRIMARY KEY, n int NOT NULL)");
    env.db().query("INSERT INTO verrou VALUES (1, 0)");
    let _serial = serial(&format!("health-tests-{}", engine.name()));
    wait_for_quiet(&env, "locks");
    let a = Session::open(engine, env.db().name());
    let b = Session::open(engine, env.db().name());
    a.exec("BEGIN");
    a.exec("UPDATE verrou SET n = n + 1 WHERE id = 1");
    let blocked = b.start("UPDATE verrou SET n = n + 10 WHERE id = 1");
    let waits = format!("{} waits for {}", b.id, a.id);
    let r = health_until(&env, &["--check", "locks"], Duration::from_secs(10), |r| {
        status_of(r, t, "locks").as_deref() == Some("warning")
            && (engine == Engine::Mysql || r.stdout.contains(&waits))
    });
    assert!(
        blocked.try_recv().is_err(),
        "the second UPDATE should still be waiting"
    );
    r.code(1);
    let doc = r.json();
    let c = check(&doc, t, "locks");
    assert_eq!(c["status"], "warning", "{c:#}");
    assert!(c["value"].as_f64().unwrap() >= 1.0, "{c:#}");
    if engine == Engine::Postgres {
        assert!(c["message"].as_str().unwrap().contains(&waits), "{c:#}");
    }

    // Release: A gives up its row, B's UPDATE goes through.
    a.exec("ROLLBACK");
    blocked
        .recv_timeout(Duration::from_secs(20))
        .expect("the blocked UPDATE finishes once the lock is released")
        .unwrap();
    a.close();
    b.close();
    assert_eq!(
        env.db()
            .scalar("SELECT n FROM verrou WHERE id = 1")
            .as_deref(),
        Some("10")
    );
    health_until(&env, &["--check", "locks"], Duration::from_secs(30), |r| {
        r.code == 0
    })
    .code(0);
}

// ---------------------------------------------------------------------------------------------
// 4. Dead, silent and slow servers

fn an_unreachable_target_is_critical_at_once(engine: Engine) {
    let env = Env::new(engine);
    let t = engine.name();
    // Nothing listens on port 1.
    write_connection(&env, &format!("config_{t}.yml"), 1, 5);
    let start = Instant::now();
    let r = health(&env, &[]);
    let took = start.elapsed();
    r.code(2);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let doc = r.json();
    assert_eq!(doc["status"], "critical");
    assert_eq!(target_of(&doc, t)["status"], "critical");
    let c = check(&doc, t, "connectivity");
    assert_eq!(c["status"], "critical", "{c:#}");
    assert!(!c["message"].as_str().unwrap().is_empty());
    env.run(&["--format", "nagios", "health"])
        .code(2)
        .stdout_has("MAIRIE-DBA CRITICAL - ")
        .stdout_has(&format!("{t}: connectivity"));
}

fn a_dead_target_does_not_delay_the_live_one(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    let (_listener, port) = silent_listener();
    write_connection(&env, "config_dead.yml", port, 2);
    env.write(
        "config_global.yml",
        format!(
            "base_dir: {ROOT}\ntargets:\n  {t}:\n    engine: {t}\n    config: config_{t}.yml\n  dead:\n    engine: {t}\n    config: config_dead.yml\n"
        ),
    );
    let _serial = serial(&format!("health-tests-{}", engine.name()));
    let r = health_until(&env, &[], Duration::from_secs(60), |r| {
        serde_json::from_str::<Value>(&r.stdout)
            .map(|d| target_of(&d, t)["status"] == "ok")
            .unwrap_or(false)
    });
    r.code(2);
    let doc = r.json();
    assert_eq!(doc["status"], "critical");
    let live = target_of(&doc, t);
    assert_eq!(live["status"], "ok", "{live:#}");
    for c in checks_of(&doc, t) {
        assert_eq!(c["status"], "ok", "{c:#}");
    }
    assert!(checks_of(&doc, t).len() > 5, "{live:#}");
    let dead = target_of(&doc, "dead");
    assert_eq!(dead["status"], "critical", "{dead:#}");
    assert_eq!(check(&doc, "dead", "connectivity")["status"], "critical");
    // Checked at the same time: the live target took its own time, not the dead one's.
    let live_s = live["seconds"].as_f64().unwrap();
    let dead_s = dead["seconds"].as_f64().unwrap();
    assert!(live_s < 1.5, "live target took {live_s} s");
    assert!(dead_s >= 1.5, "dead target gave up after {dead_s} s");

    let start = Instant::now();
    let r = health(&env, &[]);
    let took = start.elapsed();
    r.code(2);
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

fn a_server_that_never_answers_is_critical_after_connect_timeout(engine: Engine) {
    let env = Env::new(engine);
    let t = engine.name();
    let (_listener, port) = silent_listener();
    write_connection(&env, &format!("config_{t}.yml"), port, 2);
    let start = Instant::now();
    let r = health(&env, &[]);
    let took = start.elapsed();
    r.code(2);
    assert!(took >= Duration::from_millis(1900), "took {took:?}");
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    let doc = r.json();
    let c = check(&doc, t, "connectivity");
    assert_eq!(c["status"], "critical", "{c:#}");
    assert!(
        c["message"].as_str().unwrap().contains("timed out"),
        "{c:#}"
    );
}

fn a_target_over_health_timeout_is_critical(engine: Engine) {
    // A server that never answers, with a connect timeout longer than health's budget: the
    // budget decides.
    let env = Env::new(engine);
    let t = engine.name();
    let (_listener, port) = silent_listener();
    write_connection(&env, &format!("config_{t}.yml"), port, 5);
    env.write_global("health:\n  timeout: 1\n");
    let start = Instant::now();
    let r = health(&env, &[]);
    let took = start.elapsed();
    r.code(2);
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let doc = r.json();
    assert_eq!(doc["status"], "critical");
    let c = check(&doc, t, "connectivity");
    assert_eq!(c["status"], "critical", "{c:#}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("did not finish within 1 s"),
        "{c:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Configuration mistakes: UNKNOWN

fn configuration_mistakes_are_unknown(engine: Engine) {
    let mut env = Env::new(engine);
    let t = engine.name();
    let var = engine.password_var();
    // (what, extra global YAML, arguments, a word the error must name); every case is tried
    // and the mismatches are reported together.
    let typo = "health:\n  thresholds:\n    conections:\n      warning: 1\n      critical: 2\n";
    let nowhere =
        "health:\n  targets:\n    nowhere:\n      connections: {warning: 1, critical: 2}\n";
    let target_typo =
        format!("health:\n  targets:\n    {t}:\n      conections: {{warning: 1, critical: 2}}\n");
    let half = "health:\n  thresholds:\n    connections: {warning: 1}\n";
    let cases: Vec<(&str, &str, Vec<&str>, &str)> = vec![
        (
            "unknown check in health.thresholds (json)",
            typo,
            vec!["--format", "json", "health"],
            "health.thresholds.conections",
        ),
        (
            "unknown check in health.thresholds (nagios)",
            typo,
            vec!["--format", "nagios", "health"],
            "conections",
        ),
        (
            "health.targets names no target",
            nowhere,
            vec!["--format", "json", "health"],
            "nowhere",
        ),
        (
            "unknown check in health.targets",
            &target_typo,
            vec!["--format", "json", "health"],
            "conections",
        ),
        (
            "threshold without critical",
            half,
            vec!["--format", "json", "health"],
            "critical",
        ),
        (
            "--check nope",
            "",
            vec!["--format", "json", "health", "--check", "nope"],
            "nope",
        ),
        (
            "--format junit",
            "",
            vec!["--format", "junit", "health"],
            "junit",
        ),
        (
            "--warning naming no check (nagios)",
            "",
            vec!["--format", "nagios", "health", "--warning", "conections=80"],
            "--warning conections=80: no such check",
        ),
        (
            "--critical without a number",
            "",
            vec![
                "--format",
                "json",
                "health",
                "--critical",
                "connections=lots",
            ],
            "`lots` is not a number",
        ),
        (
            "--warning without =",
            "",
            vec!["--format", "nagios", "health", "--warning", "connections"],
            "expected CHECK=VALUE",
        ),
        (
            "--warning past the critical threshold",
            "",
            vec![
                "--format",
                "nagios",
                "health",
                "--warning",
                "connections=99",
            ],
            "connections: warning 99 is above critical 95",
        ),
        (
            "--warning on a fact without --critical",
            "",
            vec![
                "--format",
                "json",
                "health",
                "--warning",
                "database_size=1000",
            ],
            "give --critical database_size=VALUE too",
        ),
        (
            "unknown option",
            "",
            vec!["health", "--no-such-option"],
            "--no-such-option",
        ),
    ];
    let mut wrong = Vec::new();
    let mut try_case = |env: &Env, what: &str, args: &[&str], needle: &str| {
        let r = env.run(args);
        if r.code != 3 {
            wrong.push(format!("{what}: exit {} (expected 3 UNKNOWN)", r.code));
        }
        if args
            .iter()
            .any(|a| a.starts_with("--warning") || a.starts_with("--critical"))
        {
            // One clear line, and the plugin line names the same mistake.
            r.one_line_error();
            if args.contains(&"nagios") && !r.stdout.contains(needle) {
                wrong.push(format!(
                    "{what}: plugin line lacks {needle:?}: {}",
                    r.stdout
                ));
            }
        }
        if !r.stderr.contains(needle) {
            wrong.push(format!(
                "{what}: stderr does not name {needle:?}: {}",
                r.stderr.trim()
            ));
        }
        if args.contains(&"json") {
            match serde_json::from_str::<Value>(&r.stdout) {
                Ok(doc) if doc["status"] == "unknown" => {}
                _ => wrong.push(format!(
                    "{what}: JSON status is not \"unknown\": {}",
                    r.stdout.trim()
                )),
            }
        }
        if args.contains(&"nagios") && !r.stdout.starts_with("MAIRIE-DBA UNKNOWN - ") {
            wrong.push(format!("{what}: plugin line is {:?}", r.stdout.trim()));
        }
    };
    for (what, yaml, args, needle) in &cases {
        env.write_global(yaml);
        try_case(&env, what, args, needle);
    }
    env.write_global("");
    env.remove_env(var);
    try_case(
        &env,
        "password variable not set",
        &["--format", "json", "health"],
        var,
    );
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 6. Backup age

fn backup_age_follows_the_latest_backup(engine: Engine) {
    let env = Env::new(engine);
    let t = engine.name();

    let r = health(&env, &["--check", "backup_age"]);
    r.code(0);
    let c = check(&r.json(), t, "backup_age").clone();
    assert_eq!(c["status"], "ok", "{c:#}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("no backup configured"),
        "{c:#}"
    );
    assert!(c["value"].is_null(), "{c:#}");

    let dir = env.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    env.write_global(&format!(
        "backup:\n  {t}:\n    dir: {}\n    max_age_hours: 26\n",
        dir.display()
    ));
    let r = health(&env, &["--check", "backup_age"]);
    r.code(2);
    let c = check(&r.json(), t, "backup_age").clone();
    assert_eq!(c["status"], "critical", "{c:#}");
    assert!(
        c["message"].as_str().unwrap().contains("no backup"),
        "{c:#}"
    );

    env.run(&["backup"]).success();
    let r = health(&env, &["--check", "backup_age"]);
    r.code(0);
    let c = check(&r.json(), t, "backup_age").clone();
    assert_eq!(c["status"], "ok", "{c:#}");
    assert_eq!(c["unit"], "h");
    let hours = c["value"].as_f64().expect("an age in hours");
    assert!((0.0..1.0).contains(&hours), "{c:#}");
    assert_eq!(c["warning"], 26.0);
    assert_eq!(c["critical"], 52.0);

    // The free space of the backup directory is judged too once backups are configured.
    let r = health(&env, &["--check", "backup_dir_space"]);
    let c = check(&r.json(), t, "backup_dir_space").clone();
    assert_eq!(c["unit"], "%");
    assert!(c["value"].as_f64().is_some(), "{c:#}");
}

// ---------------------------------------------------------------------------------------------
// 7. Seeing every session: visibility is measured, never assumed

fn activity_checks_need_to_see_every_session(engine: Engine) {
    let mut env = Env::new(engine);
    let t = engine.name();
    let db = env.db().name().to_string();
    let _serial = serial(&format!("health-tests-{}", engine.name()));
    // Three sessions of another account, each running a long query.
    let sleeper = Account::new(engine, &db, "");
    let sleep = match engine {
        Engine::Postgres => "SELECT pg_sleep(20)",
        Engine::Mysql => "SELECT SLEEP(20)",
    };
    // (On MySQL it may use no database: it has no privilege on any.)
    let home = (engine == Engine::Postgres).then_some(db.as_str());
    let sessions: Vec<Session> = (0..3)
        .map(|_| Session::open_as(engine, sleeper.login(home)))
        .collect();
    let _running: Vec<_> = sessions.iter().map(|s| s.start(sleep)).collect();

    // An account that sees only its own sessions: PostgreSQL's `mairie` (no pg_monitor), a
    // MySQL user without PROCESS.
    let _blind = match engine {
        Engine::Postgres => None,
        Engine::Mysql => {
            let a = Account::new(
                engine,
                &db,
                &format!("GRANT REFERENCES ON `{db}`.* TO {{name}}"),
            );
            a.use_in(&mut env);
            Some(a)
        }
    };
    let grant = match engine {
        Engine::Postgres => "GRANT pg_monitor",
        Engine::Mysql => "PROCESS",
    };
    let r = health(&env, &["--check", "connections", "--check", "long_queries"]);
    r.code(3);
    let doc = r.json();
    assert_eq!(doc["status"], "unknown", "{doc:#}");
    let long = check(&doc, t, "long_queries").clone();
    assert_eq!(long["status"], "unknown", "{long:#}");
    assert!(long["value"].is_null(), "{long:#}");
    assert!(
        long["message"].as_str().unwrap().contains(grant),
        "{long:#}"
    );
    let conn = check(&doc, t, "connections").clone();
    match engine {
        // pg_stat_activity hides even the backend type of other roles' sessions.
        Engine::Postgres => {
            assert_eq!(conn["status"], "unknown", "{conn:#}");
            assert!(
                conn["message"].as_str().unwrap().contains(grant),
                "{conn:#}"
            );
        }
        // Threads_connected counts every connection, whatever the privileges.
        Engine::Mysql => assert!(conn["value"].as_f64().is_some(), "{conn:#}"),
    }
    env.run(&["--format", "nagios", "health", "--check", "long_queries"])
        .code(3)
        .stdout_has("MAIRIE-DBA UNKNOWN - ")
        .stdout_has(grant);
    if engine == Engine::Postgres {
        // Locks come from the lock manager, which shows every backend to every role.
        let r = health(&env, &["--check", "locks"]);
        assert_ne!(
            status_of(&r, t, "locks").as_deref(),
            Some("unknown"),
            "{}",
            r.stdout
        );
    }

    // The monitoring account of deploy/monitoring-role/ sees them all.
    let monitor = Account::monitoring(engine, &db);
    monitor.use_in(&mut env);
    let seen = |r: &Run| {
        serde_json::from_str::<Value>(&r.stdout)
            .ok()
            .is_some_and(|d| {
                let c = check(&d, t, "long_queries");
                c["value"].as_f64().is_some_and(|v| v >= 1.0)
                    && active_count(c["message"].as_str().unwrap_or("")).is_some_and(|n| n >= 3.0)
            })
    };
    let r = health_until(
        &env,
        &["--check", "connections", "--check", "long_queries"],
        Duration::from_secs(10),
        seen,
    );
    assert!(seen(&r), "{}", r.stdout);
    let doc = r.json();
    let long = check(&doc, t, "long_queries");
    assert_ne!(long["status"], "unknown", "{long:#}");
    let conn = check(&doc, t, "connections");
    assert_ne!(conn["status"], "unknown", "{conn:#}");
    assert!(conn["value"].as_f64().unwrap() > 0.0, "{conn:#}");
    drop(monitor);
    drop(sleeper);
}

// ---------------------------------------------------------------------------------------------
// 8. Probes never queue behind a lock

#[test]
fn a_locked_key_table_is_unknown_and_nothing_of_ours_is_left_waiting() {
    let engine = Engine::Postgres;
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    let db = env.db().name().to_string();
    env.db().query("CREATE TABLE verrouillee (id int)");
    env.write_global("health:\n  key_tables: [public.verrouillee]\n");
    let ours_waiting = || {
        pg_super(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mairie-dba' AND datname = '{db}'"
            ),
        )[0][0]
            .clone()
    };
    let _serial = serial(&format!("health-tests-{}", engine.name()));
    let holder = Session::open(engine, &db);
    holder.exec("BEGIN");
    holder.exec("LOCK TABLE verrouillee IN ACCESS EXCLUSIVE MODE");

    let start = Instant::now();
    let r = health(&env, &[]);
    let took = start.elapsed();
    assert_ne!(r.code, 2, "the lock made the target CRITICAL: {}", r.stdout);
    let doc = r.json();
    assert_eq!(check(&doc, t, "connectivity")["status"], "ok");
    let sizes = check(&doc, t, "table_sizes").clone();
    assert_eq!(sizes["status"], "unknown", "{sizes:#}");
    assert_eq!(
        sizes["message"],
        "table public.verrouillee is locked by another session; gave up after 2 s (connection.lock_timeout)"
    );
    // The checks after it ran.
    for name in ["cache_hit", "wraparound", "sequences", "vacuum", "analyze"] {
        let c = check(&doc, t, name);
        assert!(c["value"].is_number() || c["status"] == "ok", "{c:#}");
    }
    assert!(took >= Duration::from_secs(2), "took {took:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
    thread::sleep(Duration::from_secs(2));
    assert_eq!(ours_waiting().as_deref(), Some("0"));

    // With a budget too short for the lock timeout, the check is cut at its share of
    // health.timeout, cancelled on the server, and the others still run.
    env.write_global("health:\n  timeout: 1\n  key_tables: [public.verrouillee]\n");
    let start = Instant::now();
    let r = health(&env, &[]);
    let took = start.elapsed();
    assert_ne!(r.code, 2, "{}", r.stdout);
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let doc = r.json();
    assert_eq!(check(&doc, t, "connectivity")["status"], "ok");
    let sizes = check(&doc, t, "table_sizes").clone();
    assert_eq!(sizes["status"], "unknown", "{sizes:#}");
    assert_eq!(
        sizes["message"],
        "no answer within 0.3 s (its share of health.timeout, 1 s); the query was cancelled on the server"
    );
    let later = check(&doc, t, "analyze");
    assert!(
        !later["message"].as_str().unwrap().contains("not run"),
        "{later:#}"
    );
    thread::sleep(Duration::from_secs(2));
    assert_eq!(ours_waiting().as_deref(), Some("0"));

    holder.exec("ROLLBACK");
    holder.close();
    health(&env, &["--check", "table_sizes"]).code(0);
}

/// The monitoring account has no privilege on the application's schemas, even those made
/// after it: the key tables are found in the catalogue, never through the schema.
#[test]
fn postgres_key_tables_of_any_schema_are_measured_by_the_monitoring_account() {
    let (env, _monitor) = monitored(Engine::Postgres);
    env.db().query(
        "CREATE SCHEMA ailleurs; CREATE TABLE ailleurs.registre (id int); \
         INSERT INTO ailleurs.registre SELECT generate_series(1, 100); ANALYZE ailleurs.registre",
    );
    env.write_global("health:\n  key_tables: [ailleurs.registre]\n");
    let r = health(
        &env,
        &[
            "--check",
            "table_sizes",
            "--check",
            "vacuum",
            "--check",
            "analyze",
        ],
    );
    r.code(0);
    let doc = r.json();
    let sizes = check(&doc, "postgres", "table_sizes");
    assert!(sizes["value"].as_f64().unwrap() > 0.0, "{sizes:#}");
    assert!(
        sizes["message"]
            .as_str()
            .unwrap()
            .starts_with("ailleurs.registre "),
        "{sizes:#}"
    );
    let analyze = check(&doc, "postgres", "analyze");
    assert_eq!(analyze["value"], 0.0, "{analyze:#}");
}

// ---------------------------------------------------------------------------------------------
// 9. Not applicable is not OK

fn a_check_that_does_not_apply_is_skipped_unless_named(engine: Engine) {
    let env = Env::new(engine);
    let t = engine.name();
    // No backup configured: the backup directory's free space does not apply.
    let r = health(&env, &["--check", "backup_dir_space"]);
    r.code(3);
    let c = check(&r.json(), t, "backup_dir_space").clone();
    assert_eq!(c["status"], "unknown", "{c:#}");
    assert_eq!(
        c["message"],
        "does not apply: no enabled backup section for this target"
    );
    let r = health(&env, &["--check", "backup_age", "--check", "connectivity"]);
    r.code(0);
    assert_eq!(r.json()["targets"][0]["skipped"], serde_json::json!([]));

    if engine == Engine::Mysql {
        let r = env.run(&[
            "--format",
            "nagios",
            "health",
            "-t",
            t,
            "--check",
            "wraparound",
        ]);
        r.code(3);
        let line = r.stdout.trim_end();
        assert!(
            line.starts_with(
                "MAIRIE-DBA UNKNOWN - mysql: wraparound does not apply to mysql: InnoDB has no transaction ID wraparound to watch | "
            ),
            "{line}"
        );
        let (_, perf) = line.split_once(" | ").unwrap();
        assert!(
            perf.starts_with("'mysql_time'=") && perf.ends_with('s'),
            "{line}"
        );
        // Unnamed, it is listed as skipped and not judged.
        let doc = health(&env, &[]).json();
        assert!(
            !names(&doc, t).contains(&"wraparound".to_string()),
            "{doc:#}"
        );
        let skipped = &target_of(&doc, t)["skipped"];
        assert!(
            skipped
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "wraparound"
                    && s["reason"] == "InnoDB has no transaction ID wraparound to watch"),
            "{doc:#}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Thresholds on the command line

fn thresholds_on_the_command_line_win_over_the_config(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    let r = health(
        &env,
        &["--check", "connections", "--warning", "connections=0"],
    );
    r.code(1);
    let c = check(&r.json(), t, "connections").clone();
    assert_eq!(c["status"], "warning", "{c:#}");
    assert_eq!(c["warning"], 0.0);
    assert_eq!(c["critical"], 95.0);
    env.run(&[
        "--format",
        "nagios",
        "health",
        "--check",
        "connections",
        "--warning",
        "connections=0%",
    ])
    .code(1)
    .stdout_has(&format!("'{t}_connections'="))
    .stdout_has("%;0;95");

    // Over the configuration's, for every target; the side not given keeps the config's.
    env.write_global(&format!(
        "health:\n  targets:\n    {t}:\n      connections: {{warning: 0, critical: 0}}\n"
    ));
    health(&env, &["--check", "connections"]).code(2);
    let r = health(
        &env,
        &["--check", "connections", "--critical", "connections=100"],
    );
    r.code(1);
    let c = check(&r.json(), t, "connections").clone();
    assert_eq!(
        (c["warning"].clone(), c["critical"].clone()),
        (0.0.into(), 100.0.into())
    );

    // A fact gets thresholds when both are given.
    let r = health(
        &env,
        &[
            "--check",
            "database_size",
            "--warning",
            "database_size=0",
            "--critical",
            "database_size=1e15",
        ],
    );
    r.code(1);
    assert_eq!(check(&r.json(), t, "database_size")["status"], "warning");
}

// ---------------------------------------------------------------------------------------------
// 11. Sequences and wraparound

fn sequences_near_their_maximum_are_reported(engine: Engine) {
    let (env, _monitor) = monitored(engine);
    let t = engine.name();
    let db = env.db().name().to_string();
    let r = health(&env, &["--check", "sequences"]);
    r.code(0);
    let c = check(&r.json(), t, "sequences").clone();
    assert_eq!(
        (c["value"].clone(), c["unit"].clone()),
        (0.0.into(), "%".into())
    );
    assert_eq!(
        (c["warning"].clone(), c["critical"].clone()),
        (75.0.into(), 90.0.into())
    );

    match engine {
        Engine::Postgres => {
            env.db().query(
                "CREATE SCHEMA jauge;
                 CREATE SEQUENCE jauge.petite MAXVALUE 1000;
                 SELECT setval('jauge.petite', 950);
                 CREATE TABLE jauge.compteur (id integer);
                 CREATE SEQUENCE jauge.large OWNED BY jauge.compteur.id;
                 SELECT setval('jauge.large', 1000)",
            );
        }
        Engine::Mysql => {
            env.db().query(
                "CREATE TABLE petite (id SMALLINT AUTO_INCREMENT PRIMARY KEY) AUTO_INCREMENT = 31130",
            );
            env.db().query(
                "CREATE TABLE large (id TINYINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, x int) AUTO_INCREMENT = 3",
            );
        }
    }
    let r = health(&env, &["--check", "sequences"]);
    r.code(2);
    let c = check(&r.json(), t, "sequences").clone();
    assert_eq!(c["status"], "critical", "{c:#}");
    assert_eq!(c["value"], 95.0, "{c:#}");
    let worst: &[&str] = match engine {
        Engine::Postgres => &["jauge.petite has used 95% of its range; 2 sequence(s)"],
        // MySQL 8 writes `smallint`, MariaDB `smallint(6)`.
        Engine::Mysql => &[
            "`petite`.`id` smallint",
            "(next value 31130 of 32767) has used 95% of its range; 2 AUTO_INCREMENT column(s)",
        ],
    };
    for w in worst {
        assert!(c["message"].as_str().unwrap().contains(w), "{c:#}");
    }

    // Narrower than its own range: the column's type bounds it.
    match engine {
        Engine::Postgres => {
            env.db().query(
                "ALTER SEQUENCE jauge.petite RESTART; SELECT setval('jauge.large', 1717986918)",
            );
        }
        Engine::Mysql => {
            env.db().query("DROP TABLE petite");
            env.db().query("ALTER TABLE large AUTO_INCREMENT = 205");
        }
    }
    let r = env.run(&["--format", "nagios", "health", "--check", "sequences"]);
    r.code(1);
    let named: &[&str] = match engine {
        Engine::Postgres => {
            &["jauge.large (column jauge.compteur.id integer) has used 80% of its range"]
        }
        Engine::Mysql => &[
            "`large`.`id` tinyint",
            "unsigned (next value 205 of 255) has used 80% of its range",
        ],
    };
    r.stdout_has("MAIRIE-DBA WARNING - ")
        .stdout_has(&format!("'{t}_sequences'=80%;75;90"));
    for n in named {
        r.stdout_has(n);
    }

    if engine == Engine::Postgres {
        // A role that may not read the sequences does not call them fine.
        let mut env = env;
        let blind = Account::new(engine, &db, "GRANT pg_monitor TO {name}");
        blind.use_in(&mut env);
        let r = health(&env, &["--check", "sequences"]);
        r.code(3);
        let c = check(&r.json(), t, "sequences").clone();
        assert_eq!(c["status"], "unknown", "{c:#}");
        let msg = c["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!(
                "2 sequence(s) this role may not read: GRANT SELECT ON ALL SEQUENCES IN SCHEMA jauge TO \"{}\"",
                blind.name
            )),
            "{msg}"
        );
    }
}

#[test]
fn postgres_wraparound_covers_every_database_and_names_the_worst() {
    let (env, _monitor) = monitored(Engine::Postgres);
    let db = env.db().name().to_string();
    // Our database freshly frozen: the oldest transaction IDs are in other databases.
    pg_super(&db, "VACUUM (FREEZE)");
    let ages = || -> Vec<(String, f64)> {
        pg_super(
            "postgres",
            "SELECT datname, age(datfrozenxid) FROM pg_database ORDER BY 2 DESC",
        )
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[1].clone().unwrap().parse().unwrap(),
            )
        })
        .collect()
    };
    let before = ages();
    let r = health(&env, &["--check", "wraparound"]);
    r.code(0);
    let c = check(&r.json(), "postgres", "wraparound").clone();
    let msg = c["message"].as_str().unwrap().to_string();
    let after = ages();
    // "oldest transaction ID age N (p% of the 2^31 limit) in database D; oldest multixact …"
    let age: f64 = msg
        .strip_prefix("oldest transaction ID age ")
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    let named = msg
        .split(" in database ")
        .nth(1)
        .and_then(|m| m.split(';').next())
        .unwrap_or_else(|| panic!("{msg}"));
    let max_before = before[0].1;
    let max_after = after[0].1;
    assert!(
        age >= max_before && age <= max_after,
        "{age} not in {max_before}..{max_after}: {msg}"
    );
    assert_ne!(named, db, "{msg}");
    let own = after.iter().find(|(d, _)| *d == db).unwrap().1;
    assert!(own < age, "own database {own}, reported {age}: {msg}");
    assert!(msg.contains("; oldest multixact age "), "{msg}");
    assert!(msg.ends_with(" databases"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// 12. The monitoring role scripts

#[test]
fn the_monitoring_role_scripts_grant_what_the_checks_ask_for() {
    let read =
        |f: &str| std::fs::read_to_string(project(&format!("deploy/monitoring-role/{f}"))).unwrap();
    let pg = read("postgres.sql");
    assert!(pg.contains("GRANT pg_monitor TO mairie_monitor;"));
    assert!(pg.contains("GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO mairie_monitor"));
    let my = read("mysql.sql");
    assert!(my.contains("GRANT PROCESS, REPLICATION CLIENT /*M!100509 , SLAVE MONITOR */ ON *.* TO 'mairie_monitor'@'%';"));
    assert!(my.contains("GRANT REFERENCES ON `mairie`.* TO 'mairie_monitor'@'%';"));
    assert!(!my.contains("GRANT SELECT"), "the account reads no table");
    // SQL Server has no server here: its script is checked for what the engine asks
    // (HAS_PERMS_BY_NAME … 'VIEW SERVER STATE') and for a password kept out of the file.
    let ms = read("mssql.sql");
    for grant in [
        "GRANT VIEW SERVER STATE TO mairie_monitor;",
        "GRANT VIEW DATABASE STATE TO mairie_monitor;",
        "GRANT VIEW DEFINITION TO mairie_monitor;",
        "CREATE USER mairie_monitor FOR LOGIN mairie_monitor;",
    ] {
        assert!(ms.contains(grant), "{grant}");
    }
    assert!(ms.contains("PASSWORD = N'$(MAIRIE_MONITOR_PASSWORD)'"));
    let engine = std::fs::read_to_string(project("src/engine/mssql/mod.rs")).unwrap();
    assert!(engine.contains("HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE')"));
    // No password in any of them: set at a prompt, or read from the environment.
    assert!(pg.contains("CREATE ROLE mairie_monitor LOGIN CONNECTION LIMIT 5;"));
    assert!(!pg.contains("PASSWORD '"));
    assert!(my.contains("CREATE USER IF NOT EXISTS 'mairie_monitor'@'%' ACCOUNT LOCK;"));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL TLS: `sslmode` as libpq reads it.

/// A port whose "server" answers every SSLRequest with `N` (no TLS here) and then hangs up.
fn plaintext_only_listener() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in l.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let mut request = [0u8; 8];
            if s.read_exact(&mut request).is_ok() && request == [0, 0, 0, 8, 4, 210, 22, 47] {
                let _ = s.write_all(b"N");
            }
        }
    });
    port
}

#[test]
fn postgres_sslmode_disable_prefer_and_require_connect_and_require_needs_tls() {
    let env = Env::new(Engine::Postgres);
    let db = env.db().name().to_string();
    // The local server offers TLS: every mode connects.
    for mode in ["disable", "prefer", "require"] {
        env.write_pg_config(&db, &format!("  sslmode: {mode}\n"));
        let r = health(&env, &["--check", "connectivity"]);
        r.code(0);
        assert_eq!(
            check(&r.json(), "postgres", "connectivity")["status"],
            "ok",
            "sslmode {mode}: {}",
            r.stdout
        );
    }
    // A server without TLS: `require` refuses to go on in clear text, and says why.
    let port = plaintext_only_listener();
    env.write(
        "config_postgres.yml",
        format!(
            "connection:\n  host: 127.0.0.1\n  port: {port}\n  database: {db}\n  user: mairie\n  password_env: MAIRIE_PG_PASSWORD\n  connect_timeout: 5\n  sslmode: require\n"
        ),
    );
    let r = health(&env, &["--check", "connectivity"]);
    r.code(2);
    let c = check(&r.json(), "postgres", "connectivity").clone();
    assert_eq!(c["status"], "critical", "{c:#}");
    let msg = c["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(msg.contains("tls"), "{c:#}");
}
