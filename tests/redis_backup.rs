//! Redis backups, restores and drills against real throwaway redis-server instances: BGSAVE
//! and replication snapshots, the manifest's keys per database, verify, retention, a refused
//! corruption, `restore --into-dir`, and the drill on a throwaway server of its own.

#[path = "common/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_server::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The config of a backed-up instance: its backups in `<dir>/backups`, its state in
/// `<dir>/state`, and `extra` lines in its `backup.redis` section.
fn configure(s: &RedisServer, backup_extra: &str) {
    s.write_config(
        &format!(
            "state_dir: state\nbackup:\n  redis:\n    dir: backups\n    retention_days: 30\n    keep_min: 3\n{backup_extra}"
        ),
        "",
    );
}

fn backups(s: &RedisServer) -> PathBuf {
    s.dir.join("backups")
}

/// Runs `backup --format json`, which must succeed; the backup file's path.
fn take_backup(s: &RedisServer) -> PathBuf {
    let out = s.run(&["--format", "json", "backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(doc["backups"][0]["path"].as_str().unwrap())
}

fn manifest(backup: &Path) -> Value {
    let mut p = backup.as_os_str().to_owned();
    p.push(".json");
    serde_json::from_str(&std::fs::read_to_string(PathBuf::from(p)).unwrap()).unwrap()
}

fn sha256_hex(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What `redis-check-rdb` says of a file: success, and the keys it read.
fn check_rdb(p: &Path) -> (bool, u64) {
    let out = Command::new("redis-check-rdb").arg(p).output().unwrap();
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    let keys = t
        .lines()
        .find_map(|l| l.strip_prefix("[info] ")?.strip_suffix(" keys read"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (out.status.success(), keys)
}

/// Writes new keys into db0 of `s` over one connection until told to stop; returns how many.
fn writer(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut replies = BufReader::new(conn.try_clone().unwrap());
        let mut n = 0u64;
        let mut line = String::new();
        while !stop.load(Ordering::Relaxed) {
            let key = format!("written:{n}");
            write!(
                conn,
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$5\r\nvalue\r\n",
                key.len()
            )
            .unwrap();
            line.clear();
            replies.read_line(&mut line).unwrap();
            assert_eq!(line, "+OK\r\n");
            n += 1;
        }
        n
    })
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[test]
fn a_backup_under_writes_is_a_checked_snapshot_with_its_keys_per_database() {
    let s = RedisServer::start("bk-writes", &[]);
    fill(&s, 0, 20_000, 100);
    fill(&s, 2, 500, 10);
    configure(&s, "");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(s.port, stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let file = take_backup(&s);
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    assert!(written > 0, "the writer wrote while the backup ran");

    assert!(
        file.to_string_lossy().ends_with(".rdb"),
        "{}",
        file.display()
    );
    let m = manifest(&file);
    assert_eq!(m["engine"], "redis");
    assert_eq!(m["format"], "rdb");
    assert_eq!(m["status"], "success");
    assert_eq!(m["database"], "0");
    // `auto` on a local server: BGSAVE and a copy of the server's file.
    let tool = m["tool"].as_str().unwrap();
    assert!(
        tool.starts_with("BGSAVE, checked by redis-check-rdb"),
        "{tool}"
    );
    assert_eq!(m["sha256"], sha256_hex(&file));
    assert_eq!(m["size_bytes"], std::fs::metadata(&file).unwrap().len());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The keys per database are those of the file: db2 untouched, db0 between the fill and
    // everything written by the end.
    let db0 = m["tables"]["db0"].as_u64().unwrap();
    assert!((20_000..=20_000 + written).contains(&db0), "{m}");
    assert_eq!(m["tables"]["db2"], 500);
    assert_eq!(m["tables"].as_object().unwrap().len(), 2);
    let (ok, keys) = check_rdb(&file);
    assert!(ok);
    assert_eq!(
        keys,
        db0 + 500,
        "the manifest's counts add up to the file's keys"
    );
    assert!(
        !names_in(&backups(&s))
            .iter()
            .any(|n| n.ends_with(".partial")),
        "no partial file left"
    );

    // list, check, verify as for every engine.
    let out = s.run(&["--format", "json", "backup", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json_of(&out);
    assert_eq!(doc["backups"].as_array().unwrap().len(), 1);
    assert_eq!(doc["backups"][0]["status"], "good");
    let out = s.run(&["--format", "json", "backup", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = s.run(&["--format", "json", "backup", "verify", "--latest"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["verified"][0]["status"], "success");
}

#[test]
fn retention_keeps_the_newest_redis_backups() {
    let s = RedisServer::start("bk-retention", &[]);
    fill(&s, 0, 100, 10);
    s.write_config(
        "state_dir: state\nbackup:\n  redis:\n    dir: backups\n    retention_days: 0\n    keep_min: 2\n",
        "",
    );
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(take_backup(&s));
        std::thread::sleep(Duration::from_millis(1100));
    }
    let left: Vec<String> = names_in(&backups(&s))
        .into_iter()
        .filter(|n| n.ends_with(".rdb"))
        .collect();
    let newest: Vec<String> = taken[1..]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, newest, "the oldest went, with its manifest");
    assert!(!Path::new(&format!("{}.json", taken[0].display())).exists());
}

#[test]
fn a_corrupted_snapshot_is_refused_by_verify_naming_the_file() {
    let s = RedisServer::start("bk-corrupt", &[]);
    fill(&s, 0, 2000, 50);
    configure(&s, "");
    let file = take_backup(&s);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();

    // The hash says it first.
    let out = s.run(&["backup", "verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&name) && t.contains("SHA-256"), "{t}");

    // Damaged before it was hashed (the manifest agrees with the bytes): redis-check-rdb
    // refuses it.
    let mpath = PathBuf::from(format!("{}.json", file.display()));
    let mut m = manifest(&file);
    m["sha256"] = Value::String(sha256_hex(&file));
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let out = s.run(&["backup", "verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&name) && t.contains("redis-check-rdb"), "{t}");
    // Nor is it drilled.
    let out = s.run(&["restore", "--drill"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// The drill's servers and directories: redis-server processes whose command line names a
/// private directory of process `pid`, and those directories.
fn drill_leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("mairie-dba-{pid}-");
    let mut found: Vec<String> = names_in(&std::env::temp_dir())
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    for p in names_in(Path::new("/proc")) {
        if let Ok(cmd) = std::fs::read(format!("/proc/{p}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("redis-server") && cmd.contains(&prefix) {
                found.push(format!("process {p}: {cmd}"));
            }
        }
    }
    found
}

fn run_drill(s: &RedisServer) -> (std::process::Output, u32) {
    let mut cmd = Command::new(BIN);
    if let Some(pw) = &s.password {
        cmd.env("MAIRIE_TEST_REDIS_PW", pw);
    }
    let child = cmd
        .current_dir(&s.dir)
        .arg("-c")
        .arg(s.dir.join("config_global.yml"))
        .args(["--format", "json", "restore", "--drill"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

#[test]
fn a_drill_loads_the_snapshot_on_a_throwaway_server_and_leaves_nothing() {
    let s = RedisServer::start("bk-drill", &[]);
    fill(&s, 0, 3000, 20);
    fill(&s, 5, 40, 20);
    // Keys whose TTL passes between the backup and the drill still count: the manifest says
    // what the file holds, and so must the drill.
    for i in 0..30 {
        s.cli(&["-n", "5", "PEXPIRE", &format!("key:5:{i}"), "1500"]);
    }
    configure(&s, "");
    let file = take_backup(&s);
    assert_eq!(manifest(&file)["tables"]["db5"], 40);
    std::thread::sleep(Duration::from_millis(2000));

    let (out, pid) = run_drill(&s);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json_of(&out);
    let d = &doc["drills"][0];
    assert_eq!(d["status"], "success", "{doc}");
    assert_eq!(d["tables"], 2);
    assert!(
        d["database"].as_str().unwrap().contains("redis-server"),
        "{doc}"
    );
    assert!(
        drill_leftovers(pid).is_empty(),
        "{:?}",
        drill_leftovers(pid)
    );
    // The production server was not touched: its keys are where they were.
    assert_eq!(s.cli(&["-n", "0", "DBSIZE"]), "3000");

    // A manifest that says otherwise than the snapshot: the drill fails, naming the database.
    let mpath = PathBuf::from(format!("{}.json", file.display()));
    let mut m = manifest(&file);
    m["tables"]["db0"] = Value::from(3001);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let (out, pid) = run_drill(&s);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("db0: 3000 keys, the manifest says 3001"), "{t}");
    assert!(
        drill_leftovers(pid).is_empty(),
        "{:?}",
        drill_leftovers(pid)
    );
}

#[test]
fn restore_prepares_a_data_directory_and_never_a_running_server() {
    let s = RedisServer::start("bk-into-dir", &[]);
    fill(&s, 0, 1500, 20);
    fill(&s, 1, 25, 20);
    configure(&s, "");
    take_backup(&s);

    // Into the running server: refused, with what to do instead.
    let out = s.run(&["restore", "--latest"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("never restored into a running server") && t.contains("--into-dir"),
        "{t}"
    );

    // Into a directory that holds something: refused, and left as it was.
    let busy = s.dir.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "mine").unwrap();
    let out = s.run(&["restore", "--latest", "--into-dir", busy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
    assert_eq!(names_in(&busy), vec!["keep.txt"]);

    // Into a new directory: a dump.rdb that a redis-server loads with the same keys.
    let fresh = s.dir.join("restored");
    let out = s.run(&["restore", "--latest", "--into-dir", fresh.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(names_in(&fresh), vec!["dump.rdb", "redis.conf"]);
    let fresh_abs = fresh.canonicalize().unwrap();
    let loaded = RedisServer::start(
        "bk-into-dir-loaded",
        &[
            "--dir",
            fresh_abs.to_str().unwrap(),
            "--dbfilename",
            "dump.rdb",
        ],
    );
    assert_eq!(loaded.cli(&["-n", "0", "DBSIZE"]), "1500");
    assert_eq!(loaded.cli(&["-n", "1", "DBSIZE"]), "25");
    assert_eq!(loaded.cli(&["-n", "1", "GET", "key:1:7"]), "x".repeat(20));
}

#[test]
fn the_replication_method_reads_the_snapshot_over_the_wire() {
    // Diskless first (Redis 7's default): the snapshot ends with an EOF mark.
    let s = RedisServer::start(
        "bk-repl",
        &[
            "--requirepass",
            "Repl-s3cret",
            "--repl-diskless-sync-delay",
            "0",
        ],
    );
    fill(&s, 0, 4000, 64);
    fill(&s, 3, 10, 64);
    configure(&s, "    method: replication\n");
    let first = take_backup(&s);
    let m = manifest(&first);
    assert!(
        m["tool"].as_str().unwrap().starts_with("SYNC, checked by"),
        "{m}"
    );
    assert_eq!(m["tables"]["db0"], 4000);
    assert_eq!(m["tables"]["db3"], 10);
    assert_eq!(m["sha256"], sha256_hex(&first));
    assert!(check_rdb(&first).0);
    // Nothing was written in the server's own dir by a diskless snapshot.
    assert!(
        names_in(&s.data_dir()).is_empty(),
        "{:?}",
        names_in(&s.data_dir())
    );

    // Disk-based: `$<length>` and that many bytes.
    s.cli(&["CONFIG", "SET", "repl-diskless-sync", "no"]);
    std::thread::sleep(Duration::from_millis(1100));
    let second = take_backup(&s);
    let m2 = manifest(&second);
    assert_eq!(m2["tables"], m["tables"]);
    assert!(check_rdb(&second).0);

    let (out, _) = run_drill(&s);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("Repl-s3cret"));
}

#[test]
fn a_failed_bgsave_fails_the_backup_and_leaves_no_backup() {
    let s = RedisServer::start("bk-bgsave-err", &["--enable-protected-configs", "yes"]);
    fill(&s, 0, 100, 10);
    configure(&s, "    method: bgsave\n");
    // /proc takes no file, even from root.
    s.cli(&["CONFIG", "SET", "dir", "/proc"]);
    let out = s.run(&["--format", "json", "backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("BGSAVE failed"), "{t}");
    let left: Vec<String> = names_in(&backups(&s))
        .into_iter()
        .filter(|n| n.contains(".rdb"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let out = s.run(&["backup", "check"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_wrong_password_is_a_clear_error_without_the_password() {
    let s = RedisServer::start("bk-pw", &["--requirepass", "right-pw-R3dis"]);
    configure(&s, "    method: replication\n");
    let out = Command::new(BIN)
        .current_dir(&s.dir)
        .arg("-c")
        .arg(s.dir.join("config_global.yml"))
        .args(["backup"])
        .env("MAIRIE_TEST_REDIS_PW", "wrong-pw-Z9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("authentication failed"), "{t}");
    assert!(t.contains(&format!("127.0.0.1:{}", s.port)), "{t}");
    assert!(
        !t.contains("wrong-pw-Z9") && !t.contains("right-pw-R3dis"),
        "{t}"
    );
    assert!(
        !names_in(&backups(&s)).iter().any(|n| n.contains(".rdb")),
        "{:?}",
        names_in(&backups(&s))
    );
}

#[test]
fn an_unknown_method_is_a_configuration_error() {
    let s = RedisServer::start("bk-method", &[]);
    configure(&s, "    method: sometimes\n");
    let out = s.run(&["backup", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("method"), "{}", text(&out));
}
