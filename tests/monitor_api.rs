//! `monitor serve`'s JSON API, `/health` and `/metrics` over real HTTP, on a history made by
//! real scans of real deposits (SQLite and PostgreSQL): every answer checked against the
//! OpenAPI document the server publishes, bad requests answered with JSON 4xx, a history
//! that disappears answered 503, and the metrics accepted by `promtool`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::monitor::{daily, line, t, Backend, Mon, Serve, CENTRE};

const NORD: (&str, &str, &str) = ("ville", "marseille", "nord");

/// Checks `value` against the OpenAPI document's schema `name`.
fn conforms(doc: &Value, name: &str, value: &Value) {
    let errors = violations(doc, name, value);
    assert!(
        errors.is_empty(),
        "does not match {name}: {errors:#?}\n{value:#}"
    );
}

fn violations(doc: &Value, name: &str, value: &Value) -> Vec<String> {
    let schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "$ref": format!("#/components/schemas/{name}"),
    });
    let v = jsonschema::validator_for(&schema).expect("the OpenAPI schemas compile");
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    errors
}

/// Three jobs on two sites; two days of scans: day 5 all good but the north site missing;
/// day 6 the town hall's dump failed, the civil registry's is fine; an unexpected deposit.
fn populated(b: Backend) -> Mon {
    let jobs = daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00")
        + &daily("centre-etat", CENTRE, "etat_civil", "mysql", "02:00")
        + &daily("nord-mairie", NORD, "mairie", "postgres", "03:00");
    let m = Mon::new(b, &jobs);
    assert_eq!(m.scan(&t(5, "00:30")).0, 0, "nothing is due yet");
    let a = m.deposit(
        CENTRE,
        "mairie",
        "postgres",
        "mairie_5.dump",
        b"day five of the town hall",
    );
    let e = m.deposit(
        CENTRE,
        "etat_civil",
        "mysql",
        "etat_5.sql.zst",
        b"day five of the registry",
    );
    m.report(CENTRE, &t(5, "02:05"), vec![a, e]);
    assert_eq!(m.scan(&t(5, "04:30")).0, 2, "nord is missing");
    let mut failed = line("mairie", "postgres", "mairie_6.dump", b"");
    failed["status"] = "failed".into();
    failed["error"] = "pg_dump: connection refused".into();
    failed["file"] = Value::Null;
    let e = m.deposit(
        CENTRE,
        "etat_civil",
        "mysql",
        "etat_6.sql.zst",
        b"day six of the registry",
    );
    m.report(CENTRE, &t(6, "02:05"), vec![failed, e]);
    let stray = m.deposit(("autre", "aix", "x"), "db", "postgres", "x.dump", b"stray");
    m.report(("autre", "aix", "x"), &t(6, "02:05"), vec![stray]);
    assert_eq!(m.scan(&t(6, "04:30")).0, 2);
    m
}

fn statuses(v: &Value) -> Vec<(String, String)> {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap().into(),
                j["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

both!(
    the_api_answers_what_the_scans_recorded_as_the_openapi_document_says,
    bad_requests_get_json_4xx,
);

fn the_api_answers_what_the_scans_recorded_as_the_openapi_document_says(b: Backend) {
    let m = populated(b);
    let s = Serve::start(&m, &["--no-scan"]);
    let (code, doc) = s.json("/api/openapi.json");
    assert_eq!(code, 200);

    let (code, jobs) = s.json("/api/jobs");
    assert_eq!(code, 200);
    conforms(&doc, "JobList", &jobs);
    // The check can fail: an extra key, a status nobody knows, a bad time.
    for (pointer, bad) in [
        ("/jobs/0/colour", Value::from("red")),
        ("/jobs/0/status", Value::from("FINE")),
        ("/jobs/0/last_ok", Value::from("yesterday")),
    ] {
        let mut wrong = jobs.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        wrong.pointer_mut(parent).unwrap()[key] = bad;
        assert!(!violations(&doc, "JobList", &wrong).is_empty(), "{pointer}");
    }
    assert_eq!(
        statuses(&jobs),
        [
            ("centre-mairie".to_string(), "FAILED".to_string()),
            ("centre-etat".into(), "OK".into()),
            ("nord-mairie".into(), "MISSING".into()),
        ]
    );
    // The same statuses as `monitor status`.
    let cli = m.json(&["monitor", "status"]);
    assert_eq!(statuses(&cli), statuses(&jobs));
    let etat = &jobs["jobs"][1];
    assert_eq!(etat["last_ok"], t(6, "02:00"));
    assert_eq!(etat["size_bytes"], b"day six of the registry".len());
    assert_eq!(etat["last_drill"]["status"], "success");
    let mairie = &jobs["jobs"][0];
    assert_eq!(
        mairie["last_ok"],
        t(5, "02:00"),
        "the last good one is kept"
    );
    assert!(mairie["message"]
        .as_str()
        .unwrap()
        .contains("connection refused"));

    // Filters.
    let (_, f) = s.json("/api/jobs?status=missing");
    conforms(&doc, "JobList", &f);
    assert_eq!(
        statuses(&f),
        [("nord-mairie".to_string(), "MISSING".to_string())]
    );
    let (_, f) = s.json("/api/jobs?q=ETAT_CIVIL");
    assert_eq!(
        statuses(&f),
        [("centre-etat".to_string(), "OK".to_string())]
    );
    let (_, f) = s.json("/api/jobs?status=OK&q=nord");
    assert_eq!(f["count"], 0);

    let (code, one) = s.json("/api/jobs/centre-mairie");
    assert_eq!(code, 200);
    conforms(&doc, "JobDetail", &one);
    assert_eq!(one["job"], jobs["jobs"][0]);

    let (code, h) = s.json("/api/jobs/centre-mairie/history");
    assert_eq!(code, 200);
    conforms(&doc, "History", &h);
    let rows: Vec<(&str, &str)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["due"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            (t(6, "02:00").as_str(), "FAILED"),
            (t(5, "02:00").as_str(), "OK")
        ]
    );
    assert_eq!(h["history"][0]["previous_status"], "OK");
    let (_, h) = s.json(&format!(
        "/api/jobs/centre-mairie/history?limit=1&since={}",
        t(5, "00:00")
    ));
    assert_eq!(h["count"], 1);
    let (_, h) = s.json("/api/jobs/centre-mairie/history?since=2026-12-06%2000:00");
    assert_eq!(h["count"], 1);
    assert_eq!(h["history"][0]["status"], "FAILED");

    let (code, st) = s.json("/api/status");
    assert_eq!(code, 200);
    conforms(&doc, "Summary", &st);
    assert_eq!(st["status"], "MISSING");
    assert_eq!(st["nagios"], "critical");
    assert_eq!(st["counts"]["OK"], 1);
    assert_eq!(st["counts"]["FAILED"], 1);
    assert_eq!(st["counts"]["MISSING"], 1);
    assert_eq!(st["counts"]["PENDING"], 0);
    assert_eq!(st["unexpected"], 1);
    assert_eq!(st["last_scan"]["error"], Value::Null);

    let (code, u) = s.json("/api/unexpected");
    assert_eq!(code, 200);
    conforms(&doc, "UnexpectedList", &u);
    assert!(u["unexpected"][0]["path"]
        .as_str()
        .unwrap()
        .contains("autre"));

    // Without a scanner in this process the health is the history's.
    let (code, hl) = s.json("/health");
    assert_eq!(code, 200, "{hl:#}");
    conforms(&doc, "Health", &hl);
    assert_eq!(hl["history"]["reachable"], true);

    let (code, e) = s.json("/api/jobs/nobody");
    assert_eq!(code, 404);
    conforms(&doc, "Error", &e);
    let (code, e) = s.json("/api/jobs/nobody/history");
    assert_eq!(code, 404);
    conforms(&doc, "Error", &e);
}

fn bad_requests_get_json_4xx(b: Backend) {
    let m = populated(b);
    let s = Serve::start(&m, &["--no-scan"]);
    let (_, doc) = s.json("/api/openapi.json");
    for (path, code, says) in [
        ("/api/jobs?status=BROKEN", 400, "BROKEN"),
        ("/api/jobs?colour=red", 400, "colour"),
        ("/api/jobs?q=a&q=b", 400, "twice"),
        ("/api/jobs?q=%ff", 400, "UTF-8"),
        ("/api/jobs/centre-mairie/history?limit=0", 400, "limit"),
        ("/api/jobs/centre-mairie/history?limit=1001", 400, "limit"),
        ("/api/jobs/centre-mairie/history?limit=-3", 400, "limit"),
        (
            "/api/jobs/centre-mairie/history?since=yesterday",
            400,
            "since",
        ),
        ("/api/status?x=1", 400, "takes none"),
        ("/api/nothing", 404, "no such API endpoint"),
        ("/api/jobs/a/b/c", 404, "no such API endpoint"),
        ("/api/jobs/%3Cscript%3E", 404, "<script>"),
        ("/api/jobs/%ff", 400, "job id"),
        ("/api/jobs/%ff/history", 400, "job id"),
    ] {
        let (got, v) = s.json(path);
        assert_eq!(got, code, "{path}: {v:#}");
        conforms(&doc, "Error", &v);
        assert!(v["error"].as_str().unwrap().contains(says), "{path}: {v:#}");
    }
    // A method the API does not have.
    assert_eq!(
        common::curl_status(&format!("{}/api/jobs", s.base), &["-X", "DELETE"]),
        "405"
    );
}

/// A PostgreSQL history that disappears under the server: 503 with the reason, never a 500,
/// and `/health` says so; `/metrics` still answers with `history_up 0`.
#[test]
fn a_history_that_disappears_is_503() {
    let m = populated(Backend::Postgres);
    let s = Serve::start(&m, &["--no-scan"]);
    assert_eq!(s.json("/api/jobs").0, 200);
    let name = m.pg.as_ref().unwrap().name.clone();
    common::drop_pg_database(&name);
    // A snapshot is served for 2 s, then while its successor is built for at most 10 s in
    // all; once a rebuild has failed, the error is the answer.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (code, v) = loop {
        let (code, v) = s.json("/api/jobs");
        if code != 200 || Instant::now() > deadline {
            break (code, v);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 503, "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("history"), "{v:#}");
    let (code, v) = s.json("/health");
    assert_eq!(code, 503, "{v:#}");
    assert_eq!(v["history"]["reachable"], false);
    assert!(!v["problems"].as_array().unwrap().is_empty());
    let (code, _, text) = s.get("/metrics");
    assert_eq!(code, 200);
    assert!(text.contains("mairie_dba_monitor_history_up 0"), "{text}");
}

/// The scanner in the same process: its scans become the heartbeat, `/health` is 200 once
/// one has run, and the metrics carry each job, pass `promtool check metrics`, and say the
/// last scan.
#[test]
fn serve_scans_and_its_metrics_pass_promtool() {
    let m = populated(Backend::Sqlite);
    let s = Serve::start(&m, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (code, v) = s.json("/health");
        if code == 200 && v["scanner"]["scans_ok"].as_u64() >= Some(1) {
            break v;
        }
        assert!(Instant::now() < deadline, "no healthy scan: {v:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(health["scanner"]["running"], true);
    assert_eq!(health["scanner"]["last_error"], Value::Null);

    let (code, ctype, text) = s.get("/metrics");
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    for want in [
        "mairie_dba_monitor_history_up 1",
        "mairie_dba_monitor_job_status{city=\"marseille\",company=\"ville\",database=\"mairie\",engine=\"postgres\",job_id=\"centre-mairie\",site=\"centre\",status=\"FAILED\"} 1",
        "mairie_dba_monitor_job_status{city=\"marseille\",company=\"ville\",database=\"mairie\",engine=\"postgres\",job_id=\"centre-mairie\",site=\"centre\",status=\"OK\"} 0",
        "mairie_dba_monitor_jobs{status=\"MISSING\"} 1",
        "mairie_dba_monitor_unexpected_deposits 1",
        "mairie_dba_monitor_scans_total{result=\"ok\"}",
        "mairie_dba_monitor_last_scan_duration_seconds",
        "mairie_dba_monitor_last_scan_success 1",
    ] {
        assert!(text.contains(want), "missing `{want}` in\n{text}");
    }
    let last_ok = text
        .lines()
        .find(|l| {
            l.starts_with("mairie_dba_monitor_job_last_success_timestamp_seconds{")
                && l.contains("job_id=\"centre-etat\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    let ts: f64 = last_ok.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(ts as i64, chrono_ts(&t(6, "02:00")));

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: scripts/dev-services.sh installs it");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chrono_ts(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

/// Off loopback the server needs TLS or `--insecure-listen`: a configuration error (exit 2)
/// before it binds.
#[test]
fn clear_text_off_loopback_is_refused() {
    let m = Mon::new(
        Backend::Sqlite,
        &daily("a", CENTRE, "mairie", "postgres", "02:00"),
    );
    let r = m.run(&["monitor", "serve", "--listen", "0.0.0.0:0", "--no-scan"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--insecure-listen"), "{}", r.stderr);
}

/// Bit rot found by `monitor verify` is what the API and the metrics show: the job is
/// HASH_MISMATCH, its history has the verification, both as the OpenAPI document says.
#[test]
fn a_hash_mismatch_found_by_verify_is_what_the_api_shows() {
    let m = populated(Backend::Sqlite);
    let stored = m
        .site("validated", CENTRE)
        .join("etat_civil")
        .join("etat_6.sql.zst");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&stored, bytes).unwrap();
    let r = m.run(&["monitor", "verify", "--now", &t(6, "05:00")]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let s = Serve::start(&m, &["--no-scan"]);
    let (_, doc) = s.json("/api/openapi.json");
    let (_, jobs) = s.json("/api/jobs?status=HASH_MISMATCH");
    conforms(&doc, "JobList", &jobs);
    assert_eq!(
        statuses(&jobs),
        [("centre-etat".to_string(), "HASH_MISMATCH".to_string())]
    );
    assert!(
        jobs["jobs"][0]["message"]
            .as_str()
            .unwrap()
            .contains("etat_6.sql.zst"),
        "{jobs:#}"
    );
    let cli = m.json(&["monitor", "status"]);
    let (_, all) = s.json("/api/jobs");
    assert_eq!(statuses(&cli), statuses(&all));
    let (_, h) = s.json("/api/jobs/centre-etat/history");
    conforms(&doc, "History", &h);
    assert_eq!(h["history"][0]["kind"], "verification", "{h:#}");
    assert_eq!(h["history"][0]["status"], "HASH_MISMATCH");
    assert_eq!(h["history"][0]["previous_status"], "OK");
    let (_, _, text) = s.get("/metrics");
    assert!(
        text.contains("mairie_dba_monitor_jobs{status=\"HASH_MISMATCH\"} 1"),
        "{text}"
    );
}
