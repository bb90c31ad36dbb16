//! `health` on Redis targets, against real throwaway redis-server instances (one per test):
//! memory against maxmemory, the hit rate over an interval with its traffic guard,
//! evictions, clients against maxclients, persistence, replication, and backup age; in
//! JSON and as a Nagios line.

#[path = "common/redis_server.rs"]
mod redis_server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_server::*;
use serde_json::Value;

/// `mairie-dba --format json health --check …` on the server's target: (exit code, the
/// checks by name).
fn health(s: &RedisServer, extra: &[&str]) -> (Option<i32>, Vec<Value>) {
    let mut args = vec!["--format", "json", "health"];
    args.extend_from_slice(extra);
    let out = s.run(&args);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    let checks = doc["targets"][0]["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (out.status.code(), checks)
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

fn info_field(s: &RedisServer, section: &str, field: &str) -> String {
    s.cli(&["INFO", section])
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{field}:"))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn memory_near_maxmemory_is_warning_or_critical_and_evictions_are_counted() {
    let s = RedisServer::start(
        "mem",
        &["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"],
    );
    s.write_config("", "");
    fill(&s, 0, 4000, 1000);
    let evicted: u64 = info_field(&s, "stats", "evicted_keys").parse().unwrap();
    assert!(evicted > 0, "4 MB into 2 MB evicts keys");
    let (code, checks) = health(&s, &["--check", "memory", "--check", "evictions"]);
    let m = check(&checks, "memory");
    let pct = m["value"].as_f64().unwrap();
    assert!(pct >= 85.0, "{m}");
    let expected = if pct >= 95.0 { "critical" } else { "warning" };
    assert_eq!(m["status"], expected, "{m}");
    assert_eq!(m["unit"], "%");
    let msg = m["message"].as_str().unwrap();
    assert!(msg.contains(&format!("({pct}%)")), "{msg}");
    assert!(
        msg.contains("maxmemory 2.00 MiB") && msg.contains("allkeys-lru"),
        "{msg}"
    );
    assert_eq!(code, Some(if pct >= 95.0 { 2 } else { 1 }));
    // The keys evicted by the fill are counted since the start; none during the interval.
    let e = check(&checks, "evictions");
    assert_eq!(e["status"], "ok", "{e}");
    assert_eq!(e["value"].as_f64(), Some(0.0));
    let msg = e["message"].as_str().unwrap();
    let since: u64 = info_field(&s, "stats", "evicted_keys").parse().unwrap();
    assert!(
        msg.contains(&format!("{since} since the server started")),
        "{msg}"
    );

    // The thresholds are the command line's when it gives them.
    let (code, checks) = health(
        &s,
        &[
            "--check",
            "memory",
            "--warning",
            "memory=99.9",
            "--critical",
            "memory=100",
        ],
    );
    let m = check(&checks, "memory");
    if m["value"].as_f64().unwrap() < 99.9 {
        assert_eq!(m["status"], "ok", "{m}");
        assert_eq!(code, Some(0));
    }
    assert_eq!(m["warning"].as_f64(), Some(99.9), "{m}");
}

#[test]
fn without_maxmemory_memory_is_unknown_with_the_reason_in_json_and_nagios() {
    let s = RedisServer::start("nomax", &[]);
    s.write_config("", "");
    let (code, checks) = health(&s, &["--check", "memory"]);
    let m = check(&checks, "memory");
    assert_eq!(m["status"], "unknown", "{m}");
    assert!(m["value"].is_null(), "no percentage of nothing: {m}");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .starts_with("no maxmemory set: memory use cannot be judged against a limit"),
        "{m}"
    );
    assert_eq!(code, Some(3));
    let out = s.run(&["--format", "nagios", "health", "--check", "memory"]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{}", text(&out));
    assert!(line.contains("UNKNOWN"), "{line}");
    assert!(line.contains("no maxmemory set"), "{line}");
    assert_eq!(out.status.code(), Some(3));
}

/// Sends GETs until told to stop: of every 20, `hits` of existing keys, the others of
/// missing ones.
fn traffic(port: u16, hits: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut batch = String::new();
        let mut reply_len = 0;
        for i in 0..20 {
            if i < hits {
                batch.push_str(&format!("GET key:0:{i}\r\n"));
                reply_len += "$10\r\nxxxxxxxxxx\r\n".len();
            } else {
                batch.push_str(&format!("GET missing:{i}\r\n"));
                reply_len += "$-1\r\n".len();
            }
        }
        let mut buf = vec![0u8; reply_len];
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            c.write_all(batch.as_bytes()).unwrap();
            c.read_exact(&mut buf).unwrap();
            n += 20;
        }
        n
    })
}

#[test]
fn the_hit_rate_is_judged_over_the_interval_and_not_without_traffic() {
    let s = RedisServer::start("hits", &[]);
    s.write_config("", "");
    fill(&s, 0, 20, 10);
    // 17 hits in 20 lookups: 85 %, under the 90 % warning, over the 80 % critical.
    let stop = Arc::new(AtomicBool::new(false));
    let t = traffic(s.port, 17, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let (code, checks) = health(&s, &["--check", "hit_rate"]);
    stop.store(true, Ordering::Relaxed);
    let sent = t.join().unwrap();
    assert!(sent > 1000, "{sent}");
    let h = check(&checks, "hit_rate");
    assert_eq!(h["status"], "warning", "{h}");
    assert_eq!(h["value"].as_f64(), Some(85.0), "{h}");
    let msg = h["message"].as_str().unwrap();
    assert!(msg.contains("lookups found their key over 1.0 s"), "{msg}");
    assert!(msg.contains("; lifetime 85% of"), "{msg}");
    assert_eq!(code, Some(1));

    // Nobody asks anything: the guard, not a false alarm.
    let (code, checks) = health(&s, &["--check", "hit_rate"]);
    let h = check(&checks, "hit_rate");
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h["value"].is_null(), "{h}");
    let msg = h["message"].as_str().unwrap();
    assert!(
        msg.starts_with("too little traffic to judge: 0 lookups"),
        "{msg}"
    );
    assert!(msg.contains("lifetime 85%"), "{msg}");
    assert_eq!(code, Some(0));
}

#[test]
fn clients_are_judged_against_maxclients_and_rejections_counted() {
    let s = RedisServer::start("clients", &["--maxclients", "20"]);
    s.write_config("", "");
    let held: Vec<TcpStream> = (0..17)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.write_all(b"PING\r\n").unwrap();
            let mut b = [0u8; 7];
            c.read_exact(&mut b).unwrap();
            c
        })
        .collect();
    // 17 held and the check's own: 18 of 20.
    let (code, checks) = health(&s, &["--check", "connections"]);
    let c = check(&checks, "connections");
    assert_eq!(c["value"].as_f64(), Some(90.0), "{c}");
    assert_eq!(c["status"], "warning", "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("18 of 20 clients connected"),
        "{c}"
    );
    assert_eq!(code, Some(1));
    let (code, checks) = health(
        &s,
        &["--check", "connections", "--critical", "connections=85"],
    );
    assert_eq!(check(&checks, "connections")["status"], "critical");
    assert_eq!(code, Some(2));

    // Past the limit, the server refuses: rejected connections are counted.
    let extra: Vec<TcpStream> = (0..5)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", s.port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Room for redis-cli again.
    drop(extra);
    drop(held);
    wait_for("rejections", || {
        info_field(&s, "stats", "rejected_connections")
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    });
    wait_for("the clients to go", || {
        info_field(&s, "clients", "connected_clients") == "1"
    });
    let (_, checks) = health(&s, &["--check", "rejected_connections"]);
    let r = check(&checks, "rejected_connections");
    assert_eq!(r["status"], "ok", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("connections rejected (maxclients)"), "{msg}");
    assert!(!msg.contains(", 0 since the server started"), "{msg}");
}

#[test]
fn a_failed_snapshot_is_critical_and_unsaved_changes_age() {
    let s = RedisServer::start("persist", &[]);
    s.write_config("", "");
    s.cli(&["SET", "k", "v"]);
    std::thread::sleep(Duration::from_millis(2100));
    // One unsaved change, 2 s old: past a warning of 1 s.
    let (code, checks) = health(
        &s,
        &["--check", "persistence", "--warning", "persistence=1"],
    );
    let p = check(&checks, "persistence");
    assert_eq!(p["status"], "warning", "{p}");
    assert!(p["value"].as_f64().unwrap() >= 2.0, "{p}");
    assert_eq!(p["unit"], "s");
    let msg = p["message"].as_str().unwrap();
    assert!(msg.starts_with("1 changes not in a snapshot yet"), "{msg}");
    assert!(msg.ends_with("AOF off"), "{msg}");
    assert_eq!(code, Some(1));

    // The server's directory is gone: BGSAVE cannot write its file.
    std::fs::remove_dir_all(s.data_dir()).unwrap();
    s.cli(&["BGSAVE"]);
    wait_for("the snapshot to fail", || {
        info_field(&s, "persistence", "rdb_last_bgsave_status") == "err"
    });
    let (code, checks) = health(&s, &["--check", "persistence"]);
    let p = check(&checks, "persistence");
    assert_eq!(p["status"], "critical", "{p}");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .starts_with("the last snapshot (BGSAVE) failed"),
        "{p}"
    );
    assert_eq!(code, Some(2));
}

#[test]
fn replication_reports_role_and_lag_and_a_broken_link() {
    let primary = RedisServer::start("primary", &[]);
    let port = primary.port.to_string();
    let replica = RedisServer::start("replica", &["--replicaof", "127.0.0.1", &port]);
    primary.write_config("", "");
    replica.write_config("", "");
    wait_for("the replica's link", || {
        info_field(&replica, "replication", "master_link_status") == "up"
    });
    primary.cli(&["SET", "k", "v"]);
    wait_for("the primary to see its replica online", || {
        info_field(&primary, "replication", "slave0").contains("state=online")
    });

    let (code, checks) = health(&replica, &["--check", "replication"]);
    let r = check(&checks, "replication");
    assert_eq!(r["status"], "ok", "{r}");
    assert!(r["value"].as_f64().unwrap() < 30.0, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("replica of 127.0.0.1:{port}, link up")),
        "{r}"
    );
    assert_eq!(code, Some(0));

    let (_, checks) = health(&primary, &["--check", "replication"]);
    let r = check(&checks, "replication");
    assert_eq!(r["status"], "ok", "{r}");
    assert!(r["value"].as_f64().unwrap() <= 1.0, "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.starts_with("primary with 1 replica(s): 127.0.0.1:"),
        "{msg}"
    );
    assert!(msg.contains("online, lag "), "{msg}");

    drop(primary);
    wait_for("the link to break", || {
        info_field(&replica, "replication", "master_link_status") == "down"
    });
    let (code, checks) = health(&replica, &["--check", "replication"]);
    let r = check(&checks, "replication");
    assert_eq!(r["status"], "critical", "{r}");
    assert!(r["message"].as_str().unwrap().contains("link down"), "{r}");
    assert_eq!(code, Some(2));
}

#[test]
fn backup_age_reads_the_redis_manifests() {
    let s = RedisServer::start("bkage", &[]);
    let dir = s.dir.join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    s.write_config(
        &format!("backup:\n  redis:\n    dir: {}\n", dir.display()),
        "",
    );
    // No backup yet: CRITICAL.
    let (code, checks) = health(&s, &["--check", "backup_age"]);
    let b = check(&checks, "backup_age");
    assert_eq!(b["status"], "critical", "{b}");
    assert_eq!(code, Some(2));

    // A good one finished 3 hours ago.
    let finished = chrono::Utc::now() - chrono::Duration::hours(3);
    let started = finished - chrono::Duration::seconds(2);
    let file = format!("0_full_{}.rdb", started.format("%Y%m%d_%H%M%S"));
    let body = b"REDIS0010 not really a snapshot";
    std::fs::write(dir.join(&file), body).unwrap();
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(body));
    let manifest = serde_json::json!({
        "engine": "redis", "target": "redis", "database": "0", "file": file,
        "size_bytes": body.len(), "sha256": sha,
        "started_at": started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "finished_at": finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "status": "success", "tool": "redis-cli --rdb", "tables": {}
    });
    std::fs::write(
        dir.join(format!("{file}.json")),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    let (code, checks) = health(&s, &["--check", "backup_age"]);
    let b = check(&checks, "backup_age");
    assert_eq!(b["status"], "ok", "{b}");
    assert_eq!(b["value"].as_f64(), Some(3.0), "{b}");
    assert!(b["message"].as_str().unwrap().contains(&file), "{b}");
    assert_eq!(code, Some(0));
    let (code, _) = health(&s, &["--check", "backup_age", "--warning", "backup_age=2"]);
    assert_eq!(code, Some(1));
}
