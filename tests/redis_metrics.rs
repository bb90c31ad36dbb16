//! The exporter on a Redis target, against a real throwaway redis-server: the families and
//! their values, and promtool's opinion of the exposition.

#[path = "common/redis_server.rs"]
mod redis_server;

use std::io::Write;
use std::process::{Command, Stdio};

use redis_server::*;

/// The value of the one sample of `name` whose line contains every `labels` pair.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn collect_exposes_the_redis_families_with_the_servers_values() {
    let s = RedisServer::start(
        "metrics",
        &["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"],
    );
    s.write_config("", "");
    fill(&s, 0, 4000, 1000);
    // Redis's LRU clock counts whole seconds: written in the same second, db 2's keys could
    // be the ones evicted when they arrive. Two seconds later, db 0's are always older.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    fill(&s, 2, 5, 10);
    s.cli(&["-n", "2", "EXPIRE", "key:2:0", "600"]);
    for _ in 0..3 {
        s.cli(&["-n", "2", "GET", "key:2:1"]);
    }
    s.cli(&["GET", "missing"]);
    let out = s.run(&["metrics", "collect"]);
    assert!(out.status.success(), "{}", text(&out));
    let m = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = |name: &str, labels: &[&str]| {
        value(&m, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{m}"))
    };
    assert_eq!(v("mairie_dba_up", &["engine=\"redis\""]), 1.0);
    assert_eq!(v("mairie_dba_memory_max_bytes", &[]), 2.0 * 1024.0 * 1024.0);
    let used = v("mairie_dba_memory_used_bytes", &[]);
    assert!(used > 1.7e6 && used <= 2.2e6, "{used}");
    assert!(v("mairie_dba_memory_used_rss_bytes", &[]) > 0.0);
    assert!(v("mairie_dba_mem_fragmentation_ratio", &[]) > 0.0);
    assert!(
        v("mairie_dba_evicted_keys_total", &[]) > 0.0,
        "4 MB into 2 MB"
    );
    assert_eq!(v("mairie_dba_keyspace_hits_total", &[]), 3.0);
    assert_eq!(v("mairie_dba_keyspace_misses_total", &[]), 1.0);
    assert_eq!(v("mairie_dba_db_keys", &["database=\"db2\""]), 5.0);
    assert_eq!(v("mairie_dba_db_keys_expiring", &["database=\"db2\""]), 1.0);
    let db0: f64 = s.cli(&["DBSIZE"]).parse().unwrap();
    assert_eq!(v("mairie_dba_db_keys", &["database=\"db0\""]), db0);
    assert_eq!(v("mairie_dba_connections_max", &[]), 10000.0);
    assert!(v("mairie_dba_connected_clients", &[]) >= 1.0);
    assert_eq!(v("mairie_dba_rdb_last_bgsave_ok", &[]), 1.0);
    assert_eq!(v("mairie_dba_aof_enabled", &[]), 0.0);
    assert!(v("mairie_dba_rdb_changes_since_last_save", &[]) >= 4000.0);
    assert_eq!(v("mairie_dba_replication_role", &["role=\"primary\""]), 1.0);
    assert_eq!(v("mairie_dba_replication_role", &["role=\"replica\""]), 0.0);
    assert_eq!(v("mairie_dba_connected_replicas", &[]), 0.0);
    assert!(v("mairie_dba_commands_processed_total", &[]) > 4000.0);
    assert!(m.contains("mairie_dba_server_info{engine=\"redis\",target=\"redis\",version=\"7."));
    // Every family measured; the SQL probe is not this engine's, and not a failure.
    assert!(!m.contains("probe:select_1"), "{m}");
    for l in m
        .lines()
        .filter(|l| l.starts_with("mairie_dba_scrape_error{"))
    {
        assert!(l.ends_with(" 0"), "{l}");
    }
    // No time series of the SQL engines' families.
    assert!(!m.contains("mairie_dba_transactions_total{"), "{m}");

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let said = child.wait_with_output().unwrap();
    assert!(
        said.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&said.stdout),
        String::from_utf8_lossy(&said.stderr)
    );
}

#[test]
fn a_replica_reports_its_role_link_and_lag() {
    let primary = RedisServer::start("mprimary", &[]);
    let port = primary.port.to_string();
    let replica = RedisServer::start("mreplica", &["--replicaof", "127.0.0.1", &port]);
    replica.write_config("", "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(std::time::Instant::now() < deadline, "no replication link");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = replica.run(&["metrics", "collect"]);
    assert!(out.status.success(), "{}", text(&out));
    let m = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        value(&m, "mairie_dba_replication_role", &["role=\"replica\""]),
        Some(1.0)
    );
    assert_eq!(value(&m, "mairie_dba_replica_link_up", &[]), Some(1.0));
    let lag = value(&m, "mairie_dba_replication_lag_seconds", &[]).expect("lag");
    assert!((0.0..30.0).contains(&lag), "{lag}");
}
