//! The Prometheus exporter against real servers: what it emits, that promtool finds it
//! clean, that a dead target answers `up 0` quickly while the others report, that many
//! scrapers cost one connection and one round of queries, and that it tells the truth: a
//! lock costs one family (and leaves nothing of ours waiting on the server), a role that
//! cannot see every session is not made to count them, an unreachable target fails
//! `collect`.

mod common;
#[path = "common/pg_sessions.rs"]
mod pg_sessions;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

per_engine!(
    collect_emits_the_families_and_promtool_finds_them_clean,
    serve_answers_metrics_openmetrics_and_healthz,
    custom_metrics_come_from_yaml,
);

/// The families every scrape of a live target has, whatever the engine and the role (the
/// dashboards rely on them).
const FAMILIES: &[&str] = &[
    "mairie_dba_up",
    "mairie_dba_scrape_duration_seconds",
    "mairie_dba_scrape_error",
    "mairie_dba_activity_visibility",
    "mairie_dba_server_info",
    "mairie_dba_server_start_time_seconds",
    "mairie_dba_database_size_bytes",
    "mairie_dba_table_size_bytes",
    "mairie_dba_table_rows_estimated",
    "mairie_dba_table_rows_written_total",
    "mairie_dba_transactions_total",
    "mairie_dba_deadlocks_total",
    "mairie_dba_sequence_used_ratio",
    "mairie_dba_connections_max",
    "mairie_dba_probe_duration_seconds",
    "mairie_dba_scrapes_total",
    "mairie_dba_scrape_errors_total",
];

/// The families of one engine only (on the project's servers, with the demo data).
const POSTGRES_FAMILIES: &[&str] = &[
    "mairie_dba_recovery_conflicts_total",
    "mairie_dba_temp_bytes_total",
    "mairie_dba_temp_files_total",
    "mairie_dba_database_xid_age",
    "mairie_dba_database_mxid_age",
    "mairie_dba_checkpoints_total",
    "mairie_dba_checkpoint_write_seconds_total",
    "mairie_dba_checkpoint_sync_seconds_total",
    "mairie_dba_buffers_written_total",
    "mairie_dba_bgwriter_maxwritten_clean_total",
    "mairie_dba_buffers_allocated_total",
    "mairie_dba_wal_bytes_total",
    "mairie_dba_archiver_archived_total",
    "mairie_dba_archiver_failed_total",
    "mairie_dba_archiver_failing",
    "mairie_dba_table_scans_total",
    "mairie_dba_table_rows_read_total",
    "mairie_dba_table_dead_rows",
    "mairie_dba_locks",
    "mairie_dba_locks_waiting",
];
const MYSQL_FAMILIES: &[&str] = &[
    "mairie_dba_threads",
    "mairie_dba_threads_created_total",
    "mairie_dba_lock_waits_total",
    "mairie_dba_lock_wait_seconds_total",
    "mairie_dba_locks_waiting",
    "mairie_dba_table_rows_read_total",
    // The project's `mairie` user has PROCESS: it sees every session.
    "mairie_dba_connections",
    "mairie_dba_longest_transaction_seconds",
];

/// A running `metrics serve`, stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(env: &Env) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = env
            .command(&[], &["metrics", "serve", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the exporter");
        let s = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if s.get("/healthz", "")
                .map(|(_, b)| b == "ok\n")
                .unwrap_or(false)
            {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the exporter did not answer /healthz on {listen}");
    }

    /// A plain HTTP/1.1 GET: (headers, body).
    fn get(&self, path: &str, accept: &str) -> std::io::Result<(String, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let accept = if accept.is_empty() {
            String::new()
        } else {
            format!("Accept: {accept}\r\n")
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        Ok((head.to_string(), body.to_string()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn promtool_clean(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool is needed (Debian package prometheus; scripts/dev-services.sh installs it)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}"
    );
}

fn collect_emits_the_families_and_promtool_finds_them_clean(engine: Engine) {
    let env = Env::with_schema(engine);
    env.run(&["load-csv", "--all"]).success();
    let out = env.run(&["metrics", "collect"]);
    out.success();
    let text = out.stdout.clone();
    let fams = families(&text);
    let own = match engine {
        Engine::Postgres => POSTGRES_FAMILIES,
        Engine::Mysql => MYSQL_FAMILIES,
    };
    for f in FAMILIES.iter().chain(own) {
        assert!(fams.iter().any(|x| x == f), "{f} missing from:\n{text}");
    }
    let t = engine.name();
    // Every family measured: no scrape error.
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("mairie_dba_scrape_error{") && !l.ends_with(" 0"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{}", out.stderr);
    for family in [
        "server",
        "database_size",
        "table_sizes",
        "table_stats",
        "sequences",
    ] {
        assert_eq!(
            sample(
                &text,
                &format!("mairie_dba_scrape_error{{family=\"{family}\",target=\"{t}\"}}")
            ),
            Some(0.0),
            "{family}"
        );
    }
    // The demo data's inserts are counted, and its ids used a little of their range.
    assert!(
        sample(
            &text,
            &format!("mairie_dba_table_rows_written_total{{op=\"insert\",table=\"metier.citoyens\",target=\"{t}\"}}")
        )
        .unwrap_or(0.0)
            > 0.0,
        "{text}"
    );
    let used = text
        .lines()
        .filter(|l| l.starts_with("mairie_dba_sequence_used_ratio{") && l.contains("citoyens"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(used > 0.0 && used < 0.01, "{used}\n{text}");
    assert_eq!(
        sample(
            &text,
            &format!("mairie_dba_up{{engine=\"{t}\",target=\"{t}\"}}")
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            &format!("mairie_dba_table_rows_estimated{{table=\"metier.citoyens\",target=\"{t}\"}}")
        )
        .unwrap()
            > 0.0
    );
    assert!(sample(&text, "mairie_dba_database_size_bytes{").unwrap() > 0.0);
    promtool_clean(&text);

    // --output writes the textfile atomically, readable by node_exporter.
    let file = env.path("mairie_dba.prom");
    env.run(&["metrics", "collect", "--output", file.to_str().unwrap()])
        .success();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    promtool_clean(&std::fs::read_to_string(&file).unwrap());
}

fn serve_answers_metrics_openmetrics_and_healthz(engine: Engine) {
    let env = Env::with_schema(engine);
    let server = Server::start(&env);
    let (head, body) = server.get("/metrics", "").unwrap();
    assert!(
        head.contains("200 OK") && head.to_lowercase().contains("text/plain; version=0.0.4"),
        "{head}"
    );
    promtool_clean(&body);
    let (head, body) = server
        .get("/metrics", "application/openmetrics-text; version=1.0.0")
        .unwrap();
    assert!(
        head.to_lowercase().contains("application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE mairie_dba_scrapes counter")
            && body.contains("mairie_dba_scrapes_total ")
    );
    let (head, _) = server.get("/nope", "").unwrap();
    assert!(head.contains("404"), "{head}");
}

fn custom_metrics_come_from_yaml(engine: Engine) {
    let env = Env::with_schema(engine);
    env.run(&["load-csv", "--all"]).success();
    let table = match engine {
        Engine::Postgres => "metier.demandes",
        Engine::Mysql => "metier_demandes",
    };
    env.write_global(&format!(
        "metrics:\n  custom:\n    - name: demandes_par_statut\n      help: Requests by status.\n      sql: SELECT statut, count(*) AS n FROM {table} GROUP BY statut\n      labels: [statut]\n      values: [n]\n    - name: broken\n      help: A query that fails.\n      sql: SELECT nope FROM nowhere\n      values: [nope]\n"
    ));
    let out = env.run(&["metrics", "collect"]);
    out.success();
    let t = engine.name();
    let total: f64 = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("mairie_dba_demandes_par_statut{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 400.0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("statut=\"cloturee\",target=\"{t}\"")),
        "{}",
        out.stdout
    );
    // A failing custom query costs its own metric, not the target, and says so.
    assert_eq!(
        sample(
            &out.stdout,
            &format!("mairie_dba_scrape_error{{family=\"custom:broken\",target=\"{t}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &out.stdout,
            &format!(
                "mairie_dba_scrape_error{{family=\"custom:demandes_par_statut\",target=\"{t}\"}}"
            )
        ),
        Some(0.0)
    );
    out.stderr_has("custom:broken");
    assert_eq!(
        sample(
            &out.stdout,
            &format!("mairie_dba_up{{engine=\"{t}\",target=\"{t}\"}}")
        ),
        Some(1.0)
    );
    promtool_clean(&out.stdout);

    env.write_global("metrics:\n  custom:\n    - name: bad-name\n      help: x\n      sql: SELECT 1\n      values: [x]\n");
    env.run(&["metrics", "collect"])
        .code(2)
        .stderr_has("bad-name");
}

/// A config with the live PostgreSQL target, a refused one and a silent one.
fn three_targets(env: &Env, silent_port: u16) {
    env.write(
        "config_dead.yml",
        "connection:\n  host: 127.0.0.1\n  port: 1\n  database: x\n  user: x\n  connect_timeout: 10\n",
    );
    env.write(
        "config_silent.yml",
        format!("connection:\n  host: 127.0.0.1\n  port: {silent_port}\n  database: x\n  user: x\n  connect_timeout: 10\n"),
    );
    env.write(
        "config_global.yml",
        format!(
            "base_dir: {ROOT}\ntargets:\n  postgres:\n    engine: postgres\n    config: config_postgres.yml\n  dead:\n    engine: postgres\n    config: config_dead.yml\n  silent:\n    engine: postgres\n    config: config_silent.yml\nmetrics:\n  scrape_timeout: 2\n  min_interval: 30\n"
        ),
    );
}

#[test]
fn a_dead_target_reports_up_0_quickly_while_the_others_answer() {
    let env = Env::with_schema(Engine::Postgres);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    three_targets(&env, silent.local_addr().unwrap().port());
    let server = Server::start(&env);
    let start = Instant::now();
    let (_, body) = server.get("/metrics", "").unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(3500), "a scrape took {took:?}");
    assert_eq!(
        sample(
            &body,
            "mairie_dba_up{engine=\"postgres\",target=\"postgres\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "mairie_dba_up{engine=\"postgres\",target=\"dead\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &body,
            "mairie_dba_up{engine=\"postgres\",target=\"silent\"}"
        ),
        Some(0.0)
    );
    assert!(sample(&body, "mairie_dba_scrape_errors_total{target=\"silent\"}").unwrap() >= 1.0);
    // The next scrape does not start a second connection attempt to the silent server while
    // the first is still waiting: it is not slower, and the live target is still answered.
    let start = Instant::now();
    let (_, body) = server.get("/metrics", "").unwrap();
    assert!(start.elapsed() < Duration::from_millis(3500));
    assert_eq!(
        sample(
            &body,
            "mairie_dba_up{engine=\"postgres\",target=\"postgres\"}"
        ),
        Some(1.0)
    );
    drop(silent);
}

#[test]
fn two_hundred_concurrent_scrapes_cost_one_connection_and_one_round() {
    let env = Env::with_schema(Engine::Postgres);
    env.write_global("metrics:\n  min_interval: 60\n");
    let server = Server::start(&env);
    let port = server.port;
    let handles: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let s = Server::get_on(port);
                s.contains("mairie_dba_up{engine=\"postgres\",target=\"postgres\"} 1")
            })
        })
        .collect();
    let ups = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    assert_eq!(ups, 200);
    let db = env.db();
    let conns: i64 = db
        .scalar(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mairie-dba' AND datname = '{}'",
            db.name()
        ))
        .unwrap()
        .parse()
        .unwrap();
    assert!(conns <= 1, "{conns} connections for one target");
    let (_, body) = server.get("/metrics", "").unwrap();
    assert_eq!(
        sample(
            &body,
            "mairie_dba_probe_duration_seconds_count{probe=\"select_1\",target=\"postgres\"}"
        ),
        Some(1.0),
        "one round of queries served every scrape"
    );
    assert!(sample(&body, "mairie_dba_scrapes_total").unwrap() >= 201.0);
}

impl Server {
    fn get_on(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    }
}

/// The value of every sample of `family` whose labels include all of `labels`.
fn values(text: &str, family: &str, labels: &[&str]) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

fn scrape_error(text: &str, target: &str, family: &str) -> Option<f64> {
    sample(
        text,
        &format!("mairie_dba_scrape_error{{family=\"{family}\",target=\"{target}\"}}"),
    )
}

/// Sessions of the tool (application_name `mairie-dba`) in `db` waiting for a lock.
fn ours_waiting(db: &str) -> i64 {
    pg_sessions::pg_su_scalar(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mairie-dba'
             AND datname = '{db}' AND wait_event_type = 'Lock'"
        ),
    )
    .unwrap()
    .parse()
    .unwrap()
}

/// Another session holds `BEGIN; LOCK metier.citoyens` (ACCESS EXCLUSIVE) while `collect`
/// runs: the table sizes (which open the table) hit the target's lock timeout and are
/// reported failed, every other family is there, the target is up, and nothing of ours is
/// left waiting on the server.
#[test]
fn a_locked_key_table_costs_its_family_only() {
    let env = Env::with_schema(Engine::Postgres);
    env.run(&["load-csv", "--all"]).success();
    let db = env.db().name().to_string();
    let holder = pg_sessions::PgSession::start(
        &format!("{} dbname={db}", pg_admin_dsn()),
        "BEGIN; LOCK metier.citoyens IN ACCESS EXCLUSIVE MODE",
    );
    pg_sessions::wait_until(
        &db,
        &format!("SELECT count(*) = 1 FROM pg_locks WHERE pid = {} AND mode = 'AccessExclusiveLock' AND granted AND relation = 'metier.citoyens'::regclass", holder.pid),
    );

    let start = Instant::now();
    let out = env.run(&["metrics", "collect"]);
    let took = start.elapsed();
    out.success();
    let text = &out.stdout;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "the lock timeout (2 s) bounds the wait: {took:?}"
    );
    assert_eq!(
        sample(
            text,
            "mairie_dba_up{engine=\"postgres\",target=\"postgres\"}"
        ),
        Some(1.0),
        "a lock is not down"
    );
    assert_eq!(scrape_error(text, "postgres", "table_sizes"), Some(1.0));
    assert!(
        !text.contains("mairie_dba_table_size_bytes{"),
        "a failed family is absent, not zero:\n{text}"
    );
    out.stderr_has("table_sizes").stderr_has("lock timeout");
    for family in [
        "server",
        "database_size",
        "database_stats",
        "wraparound",
        "checkpoints",
        "wal",
        "archiver",
        "locks",
        "table_stats",
        "sequences",
        "probe:select_1",
    ] {
        assert_eq!(
            scrape_error(text, "postgres", family),
            Some(0.0),
            "{family}: {}",
            out.stderr
        );
    }
    for family in [
        "mairie_dba_server_info",
        "mairie_dba_database_size_bytes",
        "mairie_dba_transactions_total",
        "mairie_dba_table_rows_written_total",
        "mairie_dba_database_xid_age",
    ] {
        assert!(!values(text, family, &[]).is_empty(), "{family} missing");
    }
    // The lock is seen for what it is: held, by the other session.
    assert!(
        values(
            text,
            "mairie_dba_locks",
            &["mode=\"AccessExclusiveLock\"", "granted=\"true\""]
        )[0] >= 1.0
    );
    let doc = env.run(&["--format", "json", "metrics", "collect"]);
    doc.success();
    let doc = doc.json();
    assert_eq!(doc["status"], "success");
    assert_eq!(doc["targets"][0]["up"], true);
    assert_eq!(
        doc["targets"][0]["scrape_errors"][0]["family"], "table_sizes",
        "{doc}"
    );

    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ours_waiting(&db), 0, "a probe of ours is still waiting");
    // The lock was still held all along: nothing waited it out.
    assert_eq!(
        pg_sessions::pg_su_scalar(
            &db,
            &format!("SELECT count(*) FROM pg_locks WHERE pid = {} AND granted AND mode = 'AccessExclusiveLock'", holder.pid)
        )
        .as_deref(),
        Some("1")
    );
    drop(holder);
}

/// With a lock timeout longer than the family's budget, the probe is cancelled on the server
/// when its budget runs out: nothing of ours stays queued behind the lock.
#[test]
fn a_probe_past_its_budget_is_cancelled_on_the_server() {
    let env = Env::with_schema(Engine::Postgres);
    let db = env.db().name().to_string();
    env.write_pg_config(&db, "  lock_timeout: 60\n");
    env.write_global("metrics:\n  family_timeout: 1\n  scrape_timeout: 10\n");
    let holder = pg_sessions::PgSession::start(
        &format!("{} dbname={db}", pg_admin_dsn()),
        "BEGIN; LOCK metier.demandes IN ACCESS EXCLUSIVE MODE",
    );
    pg_sessions::wait_until(
        &db,
        &format!("SELECT count(*) = 1 FROM pg_locks WHERE pid = {} AND mode = 'AccessExclusiveLock' AND granted AND relation = 'metier.demandes'::regclass", holder.pid),
    );
    let start = Instant::now();
    let out = env.run(&["metrics", "collect"]);
    out.success();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        scrape_error(&out.stdout, "postgres", "table_sizes"),
        Some(1.0)
    );
    out.stderr_has("did not finish within 1000 ms (cancelled on the server)");
    assert_eq!(
        scrape_error(&out.stdout, "postgres", "sequences"),
        Some(0.0)
    );
    // The process is gone, but a backend waiting for a lock would not notice: only the
    // cancel request ends its wait.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ours_waiting(&db), 0, "the cancelled probe is still waiting");
    drop(holder);
}

/// As `mairie` (no pg_monitor), other roles' sessions are invisible: the session families
/// are left out rather than claiming "1 active session" (our own), visibility is 0, and the
/// missing grant is logged once. As a member of pg_monitor, they are counted.
#[test]
fn sessions_are_counted_only_by_a_role_that_sees_them_all() {
    // Declared first, dropped last: its database goes once the other roles' sessions have.
    let mut env = Env::with_schema(Engine::Postgres);
    let db = env.db().name().to_string();
    let other = pg_sessions::PgRole::new("mdba_t_sleeper", &[]);
    let sleepers: Vec<_> = (0..2)
        .map(|_| pg_sessions::PgSession::start(&other.dsn(&db), "SELECT pg_sleep(60)"))
        .collect();
    pg_sessions::wait_until(
        "postgres",
        &format!(
            "SELECT count(*) = 2 FROM pg_stat_activity WHERE usename = '{}' AND state = 'active' AND wait_event = 'PgSleep'",
            other.name
        ),
    );

    let out = env.run(&["metrics", "collect"]);
    out.success();
    let text = &out.stdout;
    assert_eq!(
        sample(text, "mairie_dba_activity_visibility{target=\"postgres\"}"),
        Some(0.0)
    );
    assert!(
        !text.contains("mairie_dba_connections{")
            && !text.contains("mairie_dba_longest_transaction_seconds{"),
        "session families from a role that sees only itself:\n{text}"
    );
    assert_eq!(
        scrape_error(text, "postgres", "sessions"),
        None,
        "left out, not failed"
    );
    assert_eq!(
        sample(
            text,
            "mairie_dba_up{engine=\"postgres\",target=\"postgres\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        out.stderr.matches("GRANT pg_monitor TO").count(),
        1,
        "the missing grant, once: {}",
        out.stderr
    );

    let monitor = pg_sessions::PgRole::new("mdba_t_monitor", &["pg_monitor"]);
    let admin = pg_admin_dsn();
    env.write(
        "config_postgres.yml",
        format!(
            "connection:\n  host: {}\n  port: {}\n  database: {db}\n  user: {}\n  password_env: MDBA_T_MONITOR_PASSWORD\n",
            dsn_value(&admin, "host").unwrap_or_else(|| "127.0.0.1".into()),
            pg_port(),
            monitor.name
        ),
    );
    env.set_env("MDBA_T_MONITOR_PASSWORD", &monitor.password);
    let out = env.run(&["metrics", "collect"]);
    out.success();
    let text = &out.stdout;
    assert_eq!(
        sample(text, "mairie_dba_activity_visibility{target=\"postgres\"}"),
        Some(1.0)
    );
    let active = sample(
        text,
        "mairie_dba_connections{state=\"active\",target=\"postgres\"}",
    )
    .expect("sessions counted");
    assert!(active >= 2.0, "the two sleeping sessions: {active}\n{text}");
    assert!(
        sample(
            text,
            "mairie_dba_longest_transaction_seconds{target=\"postgres\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(scrape_error(text, "postgres", "sessions"), Some(0.0));
    // The key tables are found by name: no privilege on their schema is needed.
    assert!(
        sample(
            text,
            "mairie_dba_table_size_bytes{table=\"metier.citoyens\",target=\"postgres\"}"
        )
        .is_some(),
        "{text}"
    );
    // pg_monitor also reads the WAL directory.
    assert!(sample(text, "mairie_dba_wal_size_bytes{target=\"postgres\"}").unwrap() > 0.0);
    out.lacks("GRANT pg_monitor");
    drop(sleepers);
}

/// `collect` is an operation: a target it cannot reach fails it (exit 1), and the file is
/// written all the same, that target `up 0`, the others measured.
#[test]
fn collect_fails_when_a_target_is_unreachable_and_writes_the_file() {
    let env = Env::with_schema(Engine::Postgres);
    env.write(
        "config_dead.yml",
        "connection:\n  host: 127.0.0.1\n  port: 1\n  database: x\n  user: x\n  connect_timeout: 2\n",
    );
    env.write(
        "config_global.yml",
        format!(
            "base_dir: {ROOT}\ntargets:\n  postgres:\n    engine: postgres\n    config: config_postgres.yml\n  dead:\n    engine: postgres\n    config: config_dead.yml\n"
        ),
    );
    let file = env.path("mairie_dba.prom");
    let out = env.run(&["metrics", "collect", "--output", file.to_str().unwrap()]);
    out.code(1).stderr_has("target dead");
    let text = std::fs::read_to_string(&file).expect("the file is written");
    assert_eq!(
        sample(&text, "mairie_dba_up{engine=\"postgres\",target=\"dead\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "mairie_dba_up{engine=\"postgres\",target=\"postgres\"}"
        ),
        Some(1.0)
    );
    promtool_clean(&text);
    let out = env.run(&["--format", "json", "metrics", "collect"]);
    out.code(1);
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["targets"][1]["target"], "dead");
    assert_eq!(doc["targets"][1]["up"], false);
    // The live target alone: done.
    env.run(&["-t", "postgres", "metrics", "collect"]).success();
}

/// Replication slots, sequences near their end and every database's transaction id age, as
/// the alerts read them.
#[test]
fn slots_sequences_and_wraparound_are_measured() {
    let env = Env::with_schema(Engine::Postgres);
    let db = env.db().name().to_string();
    env.db()
        .query("CREATE SEQUENCE public.presque_fini AS smallint; SELECT setval('public.presque_fini', 32000)");
    let slot = format!("mdba_t_slot_{}", std::process::id());
    pg_sessions::pg_su(
        "postgres",
        &format!("SELECT pg_create_physical_replication_slot('{slot}', true)"),
    );
    struct DropSlot(String);
    impl Drop for DropSlot {
        fn drop(&mut self) {
            pg_sessions::pg_su(
                "postgres",
                &format!("SELECT pg_drop_replication_slot('{}')", self.0),
            );
        }
    }
    let _slot = DropSlot(slot.clone());

    let out = env.run(&["metrics", "collect"]);
    out.success();
    let text = &out.stdout;
    assert_eq!(
        sample(
            text,
            &format!("mairie_dba_replication_slot_active{{slot=\"{slot}\",slot_type=\"physical\",target=\"postgres\"}}")
        ),
        Some(0.0)
    );
    assert!(
        sample(
            text,
            &format!("mairie_dba_replication_slot_retained_wal_bytes{{slot=\"{slot}\",slot_type=\"physical\",target=\"postgres\"}}")
        )
        .expect("a reserved slot retains WAL")
            >= 0.0
    );
    let used = sample(
        text,
        "mairie_dba_sequence_used_ratio{sequence=\"public.presque_fini\",target=\"postgres\"}",
    )
    .unwrap();
    assert!((used - 31999.0 / 32766.0).abs() < 1e-9, "{used}");
    let age = sample(
        text,
        &format!("mairie_dba_database_xid_age{{database=\"{db}\",target=\"postgres\"}}"),
    )
    .unwrap();
    assert!(age > 0.0 && age < 2_147_483_648.0, "{age}");
    assert!(sample(
        text,
        "mairie_dba_database_xid_age{database=\"template0\",target=\"postgres\"}"
    )
    .is_some());
    promtool_clean(text);
}

/// MySQL: a user without PROCESS sees only its own threads; its session families are left
/// out and the missing privilege named, the target still up.
#[test]
fn mysql_sessions_need_the_process_privilege() {
    let mut env = Env::with_schema(Engine::Mysql);
    let db = env.db().name().to_string();
    let user = format!("mdba_t_np_{}", std::process::id());
    let password = "Np-Metrics-4417";
    my_query(None, &format!("DROP USER IF EXISTS '{user}'@'%'"));
    my_query(
        None,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
    );
    struct DropUser(String);
    impl Drop for DropUser {
        fn drop(&mut self) {
            my_query(None, &format!("DROP USER IF EXISTS '{}'@'%'", self.0));
        }
    }
    let _user = DropUser(user.clone());
    // Database-level privileges straight into mysql.db: the test user has no GRANT OPTION.
    my_query(
        None,
        &format!(
            "INSERT INTO mysql.db SET Host = '%', Db = '{db}', User = '{user}', Select_priv = 'Y'"
        ),
    );
    my_query(None, "FLUSH PRIVILEGES");
    env.write_engine_config(&db, "");
    let text = std::fs::read_to_string(env.path("config_mysql.yml"))
        .unwrap()
        .replace(
            &format!(
                "user: {}\n",
                mysql_async::Opts::from_url(&mysql_url())
                    .unwrap()
                    .user()
                    .unwrap_or("mairie")
            ),
            &format!("user: {user}\n"),
        );
    env.write("config_mysql.yml", text);
    env.set_env("MAIRIE_MYSQL_PASSWORD", password);

    let out = env.run(&["metrics", "collect"]);
    out.success();
    let text = &out.stdout;
    assert_eq!(
        sample(text, "mairie_dba_up{engine=\"mysql\",target=\"mysql\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(text, "mairie_dba_activity_visibility{target=\"mysql\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(!text.contains("mairie_dba_connections{"), "{text}");
    assert!(!text.contains("mairie_dba_longest_transaction_seconds{"));
    out.stderr_has("lacks the PROCESS privilege");
    // Server-wide counters need no privilege: still there.
    assert!(sample(
        text,
        "mairie_dba_threads{state=\"connected\",target=\"mysql\"}"
    )
    .is_some()); // performance_schema is not granted: the table I/O families are left out, not failed,
                 // and the grant that would measure them said once.
    assert_eq!(scrape_error(text, "mysql", "table_stats"), None, "{text}");
    assert!(!text.contains("mairie_dba_table_rows_written_total{"));
    assert_eq!(
        out.stderr
            .matches("GRANT SELECT ON performance_schema.table_io_waits_summary_by_table")
            .count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(scrape_error(text, "mysql", "table_sizes"), Some(0.0));
    assert_eq!(scrape_error(text, "mysql", "sequences"), Some(0.0));
}

/// A lock that outlasts the scrape timeout (lock_timeout and family_timeout longer): the
/// scrape still answers in time, the server up, the groups measured before the lock present,
/// the blocked one and those after it reported as scrape errors; the blocked statement is
/// cancelled on the server.
#[test]
fn a_scrape_that_cannot_wait_reports_what_was_measured() {
    let env = Env::with_schema(Engine::Postgres);
    let db = env.db().name().to_string();
    env.write_pg_config(&db, "  lock_timeout: 60\n");
    env.write_global("metrics:\n  scrape_timeout: 2\n  family_timeout: 30\n");
    let holder = pg_sessions::PgSession::start(
        &format!("{} dbname={db}", pg_admin_dsn()),
        "BEGIN; LOCK metier.rendez_vous IN ACCESS EXCLUSIVE MODE",
    );
    pg_sessions::wait_until(
        &db,
        &format!("SELECT count(*) = 1 FROM pg_locks WHERE pid = {} AND mode = 'AccessExclusiveLock' AND granted AND relation = 'metier.rendez_vous'::regclass", holder.pid),
    );
    let start = Instant::now();
    let out = env.run(&["metrics", "collect"]);
    out.success();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let text = &out.stdout;
    assert_eq!(
        sample(
            text,
            "mairie_dba_up{engine=\"postgres\",target=\"postgres\"}"
        ),
        Some(1.0)
    );
    assert_eq!(scrape_error(text, "postgres", "server"), Some(0.0));
    assert!(text.contains("mairie_dba_server_info{"));
    assert_eq!(scrape_error(text, "postgres", "table_sizes"), Some(1.0));
    assert_eq!(
        scrape_error(text, "postgres", "sequences"),
        Some(1.0),
        "asked after the blocked group: not measured"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ours_waiting(&db),
        0,
        "the blocked statement is still waiting"
    );
    drop(holder);
}
