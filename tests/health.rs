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
    fn open(engine: Engine, db: &str) -> Session {
        let (tx, rx) = mpsc::channel::<(String, Reply)>();
        let (id_tx, id_rx) = mpsc::channel();
        let db = db.to_string();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (mut client, id) = rt.block_on(async {
                match engine {
                    Engine::Postgres => {
                        let dsn = format!("{} dbname={db}", pg_admin_dsn());
                        let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                            .await
                            .unwrap_or_else(|e| panic!("connect {dsn}: {e}"));
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
                        let opts = mysql_async::OptsBuilder::from_opts(
                            mysql_async::Opts::from_url(&mysql_url()).unwrap(),
                        )
                        .db_name(Some(db));
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
// 1. A healthy server

fn a_healthy_server_is_ok_in_json_and_nagios(engine: Engine) {
    let env = Env::new(engine);
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
    expected.push("replication");
    if engine == Engine::Postgres {
        expected.extend(["vacuum", "analyze"]);
    }
    expected.push("backup_age");
    assert_eq!(names(&doc, t), expected);

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
    let env = Env::new(engine);
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
    let env = Env::new(engine);
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
    let env = Env::new(engine);
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
    let env = Env::new(engine);
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
    let env = Env::new(engine);
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
    let env = Env::new(engine);
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

    // PostgreSQL: a reachable server whose check is slow (the size of a table that another
    // session holds locked) is cut at the same budget.
    if engine == Engine::Postgres {
        env.write_pg_config(env.db().name(), "");
        env.db().query("CREATE TABLE lent (id int)");
        env.write_global("health:\n  timeout: 1\n  key_tables: [public.lent]\n");
        health(&env, &["--check", "table_sizes"]).code(0);
        let _serial = serial(&format!("health-tests-{}", engine.name()));
        let s = Session::open(engine, env.db().name());
        s.exec("BEGIN");
        s.exec("LOCK TABLE lent IN ACCESS EXCLUSIVE MODE");
        let start = Instant::now();
        let r = health(&env, &[]);
        let took = start.elapsed();
        s.exec("ROLLBACK");
        s.close();
        r.code(2);
        assert!(took < Duration::from_millis(2500), "took {took:?}");
        let doc = r.json();
        // What was measured before the budget ran out is kept: the connection was fine; the
        // slow check is CRITICAL, the ones after it were not run.
        assert_eq!(check(&doc, t, "connectivity")["status"], "ok");
        let c = check(&doc, t, "table_sizes").clone();
        assert_eq!(c["status"], "critical", "{c:#}");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("did not finish within 1 s"),
            "{c:#}"
        );
        let later = check(&doc, t, "cache_hit").clone();
        assert_eq!(later["status"], "unknown", "{later:#}");
        assert!(
            later["message"].as_str().unwrap().contains("not run"),
            "{later:#}"
        );
    }
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
