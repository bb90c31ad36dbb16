//! Base backups, restores to a point in time, drills and retention, against real throwaway
//! PostgreSQL 15 clusters (see tests/common/pitr_cluster.rs): each test makes its own
//! cluster, archive and base-backup directory, and its restored servers are stopped and
//! removed when it ends.

#[path = "common/pitr_cluster.rs"]
mod cluster;

use cluster::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn ok(out: Output) -> Output {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    out
}

/// A restored server (stopped when dropped), reachable through the cluster's socket
/// directory on the port its restore chose.
struct Copy {
    data: PathBuf,
    sock: PathBuf,
    port: u16,
}

impl Copy {
    fn psql(&self, sql: &str) -> String {
        let out = Command::new(format!("{PG_BIN}/psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        stop_now(&self.data);
    }
}

/// `pitr restore ARGS --pgdata <ws>/<name> --start`, which must succeed.
fn restore(c: &Cluster, name: &str, args: &[&str]) -> (Copy, serde_json::Value) {
    let data = c.ws.dir.join(name);
    let mut all = vec!["--format", "json", "pitr", "restore"];
    all.extend_from_slice(args);
    let d = data.display().to_string();
    all.extend_from_slice(&["--pgdata", &d, "--start", "--timeout", "120"]);
    let out = run(c, &all);
    let copy = Copy {
        data: data.clone(),
        sock: c.ws.dir.join("sock"),
        port: json_port(&out),
    };
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["ending"]["state"], "promoted", "{doc}");
    (copy, doc)
}

fn json_port(out: &Output) -> u16 {
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|d| d["port"].as_u64())
        .unwrap_or(0) as u16
}

fn base_backup(c: &Cluster) -> serde_json::Value {
    let out = ok(run(c, &["--format", "json", "pitr", "base-backup"]));
    json(&out)
}

fn pgbench(c: &Cluster, args: &[&str]) {
    let out = Command::new(format!("{PG_BIN}/pgbench"))
        .args(args)
        .arg("-h")
        .arg(c.ws.dir.join("sock"))
        .args(["-p", &c.port.to_string(), "-U", "postgres", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pgbench: {}", text(&out));
}

/// Switches to a new segment and waits until the one switched from is archived.
fn flush_archive(c: &Cluster) -> String {
    let last = c.psql("SELECT pg_walfile_name(pg_switch_wal())");
    c.wait_archived(&last);
    last
}

#[test]
fn a_restore_to_a_time_between_two_markers_keeps_the_first_and_not_the_second() {
    let c = Cluster::new("time", true);
    pgbench(&c, &["-i", "-s", "2", "-q"]);
    let doc = base_backup(&c);
    let b = &doc["targets"][0]["backup"];
    assert_eq!(b["kind"], "pitr-base-backup", "{doc}");
    assert!(b["checked_files"].as_u64().unwrap() > 900, "{doc}");
    assert!(b["start_lsn"].as_str().unwrap().contains('/'), "{doc}");
    let file = c.ws.dir.join("base").join(b["file"].as_str().unwrap());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // A workload after the base backup, then two markers one second apart.
    pgbench(&c, &["-c", "2", "-T", "3"]);
    c.psql("CREATE TABLE marker(n int, at timestamptz DEFAULT clock_timestamp())");
    c.psql("INSERT INTO marker(n) VALUES (1)");
    std::thread::sleep(Duration::from_millis(1100));
    let between = c.psql("SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(1100));
    c.psql("INSERT INTO marker(n) VALUES (2)");
    let history = c.psql("SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history");
    flush_archive(&c);

    let (copy, doc) = restore(&c, "r-time", &["--target-time", &between]);
    assert!(
        doc["ending"]["reached"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l
                .as_str()
                .unwrap()
                .contains("recovery stopping before commit")),
        "{doc}"
    );
    assert_eq!(
        copy.psql("SELECT string_agg(n::text, ',') FROM marker"),
        "1"
    );
    assert_eq!(
        copy.psql("SELECT count(*), coalesce(sum(delta), 0) FROM pgbench_history"),
        history
    );
    drop(copy);

    let (copy, _) = restore(&c, "r-latest", &["--latest"]);
    assert_eq!(
        copy.psql("SELECT string_agg(n::text, ',' ORDER BY n) FROM marker"),
        "1,2"
    );
    // The copy never writes into the production archive.
    let before = c.ws.archived().len();
    copy.psql("CREATE TABLE after_restore AS SELECT 1; SELECT pg_switch_wal()");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.ws.archived().len(), before, "the restored copy archived");
    drop(copy);

    // list and verify state the window; a non-empty directory is refused, untouched.
    let out = ok(run(&c, &["--format", "json", "pitr", "list"]));
    let doc = json(&out);
    assert_eq!(
        doc["targets"][0]["base_backups"][0]["status"], "good",
        "{doc}"
    );
    assert!(
        doc["targets"][0]["window"]["to_segment"].is_string(),
        "{doc}"
    );
    let out = ok(run(&c, &["pitr", "verify"]));
    assert!(text(&out).contains("restorable from"), "{}", text(&out));
    let busy = c.ws.dir.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let out = run(
        &c,
        &[
            "pitr",
            "restore",
            "--latest",
            "--pgdata",
            busy.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(busy.join("keep.txt")).unwrap(),
        "mine"
    );
    // A time before the oldest base backup has nothing to start from.
    let out = run(
        &c,
        &[
            "pitr",
            "restore",
            "--target-time",
            "2001-01-01 00:00:00+00",
            "--pgdata",
            c.ws.dir.join("r-early").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no base backup ended before"),
        "{}",
        text(&out)
    );
    assert!(!c.ws.dir.join("r-early").exists());
    // A bad time is a usage error, before anything is written.
    let out = run(
        &c,
        &["pitr", "restore", "--target-time", "soon", "--pgdata", "x"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!c.ws.dir.join("x").exists());
}

#[test]
fn a_missing_segment_fails_loudly_and_a_corrupt_one_stops_recovery() {
    let c = Cluster::new("gap", true);
    c.psql("CREATE TABLE marker(n int)");
    base_backup(&c);
    let mut segs = Vec::new();
    for i in 0..4 {
        c.psql(&format!("INSERT INTO marker VALUES ({i})"));
        segs.push(flush_archive(&c));
    }
    c.psql("INSERT INTO marker VALUES (99)");
    flush_archive(&c);
    // A corrupt segment (same name, other bytes): verify names it, recovery stops on it.
    let victim = c.ws.path_of(&segs[1]);
    let saved = std::fs::read(&victim).unwrap();
    let other = zstd::encode_all(&vec![7u8; 16 << 20][..], 1).unwrap();
    std::fs::write(&victim, other).unwrap();
    let out = run(&c, &["pitr", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&segs[1]), "{}", text(&out));
    let data = c.ws.dir.join("r-corrupt");
    let out = run(
        &c,
        &[
            "pitr",
            "restore",
            "--latest",
            "--start",
            "--pgdata",
            data.to_str().unwrap(),
        ],
    );
    let _stop = Copy {
        data: data.clone(),
        sock: c.ws.dir.join("sock"),
        port: 0,
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("recovery stopped by the archive") && text(&out).contains(&segs[1]),
        "{}",
        text(&out)
    );
    std::fs::write(&victim, saved).unwrap();

    // A deleted segment: verify reports the gap, --latest refuses, a time past it fails.
    std::fs::remove_file(c.ws.path_of(&segs[2])).unwrap();
    let out = run(&c, &["--format", "json", "pitr", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(
        doc["targets"][0]["timelines"][0]["gaps"][0]["from"], segs[2],
        "{doc}"
    );
    assert_eq!(doc["targets"][0]["window"]["gap_after"], segs[2], "{doc}");
    let out = run(
        &c,
        &[
            "pitr",
            "restore",
            "--latest",
            "--pgdata",
            c.ws.dir.join("r-gap").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("gaps"), "{}", text(&out));
    assert!(!c.ws.dir.join("r-gap").exists());
    let now = c.psql("SELECT clock_timestamp()");
    let data = c.ws.dir.join("r-past");
    let out = run(
        &c,
        &[
            "pitr",
            "restore",
            "--target-time",
            &now,
            "--start",
            "--pgdata",
            data.to_str().unwrap(),
        ],
    );
    let _stop = Copy {
        data,
        sock: c.ws.dir.join("sock"),
        port: 0,
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("target not reached"), "{}", text(&out));
}

#[test]
fn a_copy_promoted_to_timeline_two_and_the_original_each_restore_their_own() {
    let c = Cluster::new("timeline", true);
    c.psql("CREATE TABLE who(what text)");
    c.psql("INSERT INTO who VALUES ('before')");
    base_backup(&c);
    flush_archive(&c);
    // The copy becomes a production of its own, archiving into the same archive.
    let (copy, _) = restore(&c, "r-tl2", &["--latest", "--keep-archiving"]);
    assert_eq!(
        copy.psql("SELECT timeline_id FROM pg_control_checkpoint()"),
        "2"
    );
    copy.psql("INSERT INTO who VALUES ('copy')");
    let tl2 = copy.psql("SELECT pg_walfile_name(pg_switch_wal())");
    // The original goes on, on timeline 1.
    c.psql("INSERT INTO who VALUES ('original')");
    flush_archive(&c);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !c.ws.archived().iter().any(|(n, _)| *n == tl2) {
        assert!(std::time::Instant::now() < deadline, "{tl2} never archived");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(copy);
    let out = ok(run(&c, &["--format", "json", "pitr", "verify"]));
    let doc = json(&out);
    let tls: Vec<u64> = doc["targets"][0]["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_u64().unwrap())
        .collect();
    assert_eq!(tls, vec![1, 2], "{doc}");
    let (tl2copy, _) = restore(&c, "r-follow2", &["--latest", "--timeline", "2"]);
    assert_eq!(
        tl2copy.psql("SELECT string_agg(what, ',' ORDER BY what) FROM who"),
        "before,copy"
    );
    drop(tl2copy);
    let (tl1copy, _) = restore(&c, "r-follow1", &["--latest", "--timeline", "1"]);
    assert_eq!(
        tl1copy.psql("SELECT string_agg(what, ',' ORDER BY what) FROM who"),
        "before,original"
    );
}

#[test]
fn retention_keeps_keep_base_backups_and_the_wal_they_need() {
    let c = Cluster::new("retention", true);
    let mut starts = Vec::new();
    for _ in 0..3 {
        c.switch(2);
        let doc = base_backup(&c);
        starts.push(
            doc["targets"][0]["backup"]["start_wal"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        flush_archive(&c);
    }
    let base = c.ws.dir.join("base");
    let backups = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar.zst"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(backups(&base).len(), 2, "keep_base 2");
    let segments: Vec<String> =
        c.ws.archived()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.len() == 24)
            .collect();
    assert!(
        segments.iter().all(|s| s.as_str() >= starts[1].as_str()),
        "WAL older than the oldest kept backup ({}) is left: {segments:?}",
        starts[1]
    );
    assert!(segments.contains(&starts[1]), "{segments:?}");
    // A killed run's leftovers: a .partial is removed by the next run; a file without a
    // manifest is never taken for a backup (nor deleted).
    std::fs::write(base.join("base-20000101T000000Z.tar.zst.partial"), "x").unwrap();
    std::fs::write(base.join("base-20000101T000001Z.tar.zst"), "x").unwrap();
    let out = ok(run(&c, &["--format", "json", "pitr", "list"]));
    let doc = json(&out);
    assert_eq!(
        doc["targets"][0]["base_backups"][0]["status"], "unusable",
        "{doc}"
    );
    let out = ok(run(
        &c,
        &[
            "--format",
            "json",
            "pitr",
            "base-backup",
            "--prune-only",
            "--dry-run",
        ],
    ));
    let doc = json(&out);
    assert_eq!(
        doc["targets"][0]["retention"]["deleted_backups"],
        serde_json::json!([]),
        "{doc}"
    );
    base_backup(&c);
    assert!(!base.join("base-20000101T000000Z.tar.zst.partial").exists());
    assert!(base.join("base-20000101T000001Z.tar.zst").exists());
    assert_eq!(
        backups(&base).len(),
        3,
        "two good ones and the unusable one"
    );
    // The oldest kept backup restores (with the WAL retention left).
    let oldest = backups(&base)[1].clone();
    let (copy, doc) = restore(&c, "r-oldest", &["--latest", "--backup", &oldest]);
    assert_eq!(doc["base_backup"], oldest.as_str(), "{doc}");
    assert_eq!(copy.psql("SELECT pg_is_in_recovery()"), "f");
}

#[test]
fn a_drill_under_writes_matches_the_counts_and_leaves_nothing() {
    let c = Cluster::new("drill", true);
    pgbench(&c, &["-i", "-s", "1", "-q"]);
    base_backup(&c);
    let tmp_before = drill_dirs();
    // Writes go on during the drill: the restore point is taken with the tables locked, so
    // the copy's counts are exact.
    let port = c.port;
    let sock = c.ws.dir.join("sock");
    let writer = std::thread::spawn(move || {
        Command::new(format!("{PG_BIN}/pgbench"))
            .args(["-c", "2", "-T", "6", "-h"])
            .arg(sock)
            .args(["-p", &port.to_string(), "-U", "postgres", "postgres"])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_secs(1));
    let out = run(&c, &["--format", "json", "pitr", "drill"]);
    let bench = writer.join().unwrap();
    assert!(bench.status.success(), "{}", text(&bench));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    let tables = doc["targets"][0]["tables"].as_array().unwrap();
    assert!(tables.len() >= 4, "{doc}");
    assert!(tables.iter().all(|t| t["ok"] == true), "{doc}");
    let hist = tables
        .iter()
        .find(|t| t["table"] == "public.pgbench_history")
        .unwrap();
    assert!(hist["production"].as_u64().unwrap() > 0, "{doc}");
    assert_eq!(drill_dirs(), tmp_before, "the drill left its copy behind");
    // Without a base backup there is nothing to drill, and production is not touched.
    let base = c.ws.dir.join("base");
    std::fs::remove_dir_all(&base).unwrap();
    let points = c.psql("SELECT count(*) FROM pg_stat_activity");
    let out = run(&c, &["pitr", "drill"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no usable base backup"),
        "{}",
        text(&out)
    );
    assert_eq!(c.psql("SELECT count(*) FROM pg_stat_activity"), points);
}

fn drill_dirs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mairie-dba-drill-"))
        .collect();
    v.sort();
    v
}
