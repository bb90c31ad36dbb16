//! The Prometheus exporter against real servers: what it emits, that promtool finds it
//! clean, that a dead target answers `up 0` quickly while the others report, and that many
//! scrapers cost one connection and one round of queries.

mod common;

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

/// The families every scrape of a live target has (the dashboards rely on them).
const FAMILIES: &[&str] = &[
    "mairie_dba_up",
    "mairie_dba_scrape_duration_seconds",
    "mairie_dba_server_info",
    "mairie_dba_server_start_time_seconds",
    "mairie_dba_database_size_bytes",
    "mairie_dba_table_size_bytes",
    "mairie_dba_table_rows_estimated",
    "mairie_dba_connections",
    "mairie_dba_connections_max",
    "mairie_dba_longest_transaction_seconds",
    "mairie_dba_probe_duration_seconds",
    "mairie_dba_scrapes_total",
    "mairie_dba_scrape_errors_total",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    for f in FAMILIES {
        assert!(fams.iter().any(|x| x == f), "{f} missing from:\n{text}");
    }
    let t = engine.name();
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
    // A failing custom query costs its own metric, not the target.
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
