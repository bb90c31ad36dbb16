//! Point-in-time recovery against real, throwaway PostgreSQL 15 clusters made by the tests:
//! `initdb` into a temporary directory (owned by `postgres` when the tests run as root: the
//! server refuses root), a free port, the socket in the temporary directory, and
//! `archive_command` calling this build's `wal push`. Each [`Cluster`] stops its server and
//! removes its directory when dropped, even when the test fails.

#[path = "common/pitr_cluster.rs"]
mod cluster;

use cluster::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_workload_is_archived_whole_and_fetch_and_verify_check_every_byte() {
    let c = Cluster::new("workload", true);
    let out = Command::new(format!("{PG_BIN}/pgbench"))
        .args(["-i", "-s", "2", "-q", "-h"])
        .arg(c.ws.dir.join("sock"))
        .args(["-p", &c.port.to_string(), "-U", "postgres", "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pgbench: {}", text(&out));
    let last = c.switch(5);
    c.wait_archived(&last);

    // Every segment from the first archived to the last is there, once.
    let archived = c.ws.archived();
    let segments: Vec<&String> = archived
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.len() == 24)
        .collect();
    assert!(segments.len() >= 6, "{archived:?}");
    assert_eq!(segments.last().unwrap().as_str(), last);
    let first = u64::from_str_radix(&segments[0][16..], 16).unwrap();
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(
            u64::from_str_radix(&s[16..], 16).unwrap(),
            first + i as u64,
            "{segments:?}"
        );
    }
    let info = std::fs::read_to_string(c.ws.archive().join("archive.json")).unwrap();
    assert!(info.contains("\"wal_segment_size\": 16777216"), "{info}");

    let out = c.ws.run(&c.ws.dir, &["--format", "json", "pitr", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &doc["targets"][0];
    assert_eq!(t["corrupt"].as_array().unwrap().len(), 0, "{doc}");
    assert_eq!(t["timelines"][0]["last"], last.as_str(), "{doc}");
    assert_eq!(
        t["timelines"][0]["gaps"].as_array().unwrap().len(),
        0,
        "{doc}"
    );

    // Fetch gives back the bytes the server wrote, hash checked, into %p.
    let work = c.ws.dir.join("work");
    std::fs::create_dir_all(work.join("pg_wal")).unwrap();
    let name = segments[1].clone();
    let out =
        c.ws.run(&work, &["wal", "fetch", &name, "pg_wal/RECOVERYXLOG"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let fetched = std::fs::read(work.join("pg_wal/RECOVERYXLOG")).unwrap();
    assert_eq!(fetched.len(), 16 << 20);
    let leftovers: Vec<_> = std::fs::read_dir(work.join("pg_wal"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    // Pushing the same segment again: exit 0, already archived, nothing new.
    std::fs::write(work.join("pg_wal").join(&name), &fetched).unwrap();
    let before = c.ws.archived();
    let out = c.ws.run(&work, &["wal", "push", &format!("pg_wal/{name}")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already archived"),
        "{}",
        text(&out)
    );
    assert_eq!(c.ws.archived(), before);

    // Different content under an archived name: refused, the original untouched.
    let original = std::fs::read(c.ws.path_of(&name)).unwrap();
    let mut changed = fetched.clone();
    changed[100_000] ^= 0xff;
    std::fs::write(work.join("pg_wal").join(&name), &changed).unwrap();
    let out = c.ws.run(&work, &["wal", "push", &format!("pg_wal/{name}")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("different content"),
        "{}",
        text(&out)
    );
    assert_eq!(c.ws.archived(), before);
    assert_eq!(std::fs::read(c.ws.path_of(&name)).unwrap(), original);

    // A name that is not a WAL file name is refused.
    std::fs::write(work.join("notwal"), b"x").unwrap();
    let out = c.ws.run(&work, &["wal", "push", "notwal"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A segment the archive does not hold: exit 1, one line at most, nothing written.
    let out = c.ws.run(
        &work,
        &["wal", "fetch", "0000000100000000000000FE", "pg_wal/MISSING"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).lines().count() <= 1,
        "{}",
        text(&out)
    );
    assert!(!work.join("pg_wal/MISSING").exists());
    let out = c.ws.run(
        &work,
        &["wal", "fetch", "00000009.history", "pg_wal/RECOVERYHISTORY"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A corrupted archived file: recovery must stop, nothing at %p.
    let victim = segments[2].clone();
    let vpath = c.ws.path_of(&victim);
    let mut bytes = std::fs::read(&vpath).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::set_permissions(&vpath, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&vpath, &bytes).unwrap();
    let out =
        c.ws.run(&work, &["wal", "fetch", &victim, "pg_wal/CORRUPT"]);
    assert_eq!(out.status.code(), Some(ABORT), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recovery stopped"),
        "{}",
        text(&out)
    );
    assert!(!work.join("pg_wal/CORRUPT").exists());
    let leftovers: Vec<_> = std::fs::read_dir(work.join("pg_wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A deleted segment is a gap; verify names it and the corrupt file, and fails.
    let gone = segments[3].clone();
    std::fs::remove_file(c.ws.path_of(&gone)).unwrap();
    let out = c.ws.run(&c.ws.dir, &["--format", "json", "pitr", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &doc["targets"][0];
    assert_eq!(doc["status"], "failed");
    let gaps = t["timelines"][0]["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{doc}");
    assert_eq!(gaps[0]["from"], gone.as_str());
    assert_eq!(gaps[0]["missing"], 1);
    assert_eq!(t["timelines"][0]["continuous_to"], segments[2].as_str());
    let corrupt = t["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{doc}");
    assert!(
        corrupt[0]["file"].as_str().unwrap().contains(&victim),
        "{doc}"
    );
    let out = c.ws.run(&c.ws.dir, &["pitr", "verify"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&gone) && table.contains("1 gap(s), 1 corrupt"),
        "{table}"
    );
}

#[test]
fn an_unwritable_archive_fails_the_archive_command_and_the_server_keeps_the_segment() {
    let c = Cluster::new("unwritable", true);
    std::fs::set_permissions(c.ws.archive(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let wal = c.switch(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let failed: i64 = c
            .psql("SELECT failed_count FROM pg_stat_archiver")
            .parse()
            .unwrap();
        if failed > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "archive_command never failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        c.data
            .join("pg_wal/archive_status")
            .join(format!("{wal}.ready"))
            .exists(),
        "{wal}.ready is gone"
    );
    assert!(c.ws.archived().is_empty());
    let log = std::fs::read_to_string(c.ws.dir.join("sock/server.log")).unwrap();
    assert!(log.contains("wal push:"), "{log}");
    // Once the archive is writable again, the backlog goes through.
    std::fs::set_permissions(c.ws.archive(), std::fs::Permissions::from_mode(0o700)).unwrap();
    c.psql("SELECT pg_switch_wal()");
    c.wait_archived(&wal);
    assert!(c.ws.archived().iter().any(|(n, _)| *n == wal));
}

#[test]
fn a_push_killed_half_way_publishes_nothing_and_a_retry_succeeds() {
    // The slowest zstd level on incompressible bytes keeps the push busy for a while.
    let ws = Workspace::new("killed", 19);
    let mut seed = 0x2545F4914F6CDD1Du64;
    let noise: Vec<u8> = (0..(16usize << 20))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let seg = fake_segment(7_000_000_000_000_000_001, |i| noise[i]);
    let pg_wal = ws.dir.join("pg_wal");
    std::fs::create_dir_all(&pg_wal).unwrap();
    let name = "000000010000000000000010";
    std::fs::write(pg_wal.join(name), &seg).unwrap();
    let mut child = Command::new(BIN)
        .current_dir(&ws.dir)
        .arg("-c")
        .arg(ws.config())
        .args(["wal", "push", &format!("pg_wal/{name}")])
        .spawn()
        .unwrap();
    // Kill it once its temporary file exists (it is writing), and before it could finish.
    let dir = ws.archive().join("wal/0000000100000000");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tmp = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .unwrap_or(false);
        if tmp {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it was killed"
        );
        assert!(Instant::now() < deadline, "no temporary file");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(ws.archived().is_empty(), "{:?}", ws.archived());

    let out = ws.run(&ws.dir, &["wal", "push", &format!("pg_wal/{name}")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "the killed push's temporary file stayed: {names:?}"
    );
    let out = ws.run(&ws.dir, &["wal", "fetch", name, "back"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(std::fs::read(ws.dir.join("back")).unwrap() == seg);

    // Another cluster's segment (another system identifier) is refused.
    let other = fake_segment(42, |_| 0);
    std::fs::write(pg_wal.join("000000010000000000000011"), other).unwrap();
    let out = ws.run(&ws.dir, &["wal", "push", "pg_wal/000000010000000000000011"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("system identifier"),
        "{}",
        text(&out)
    );
}

#[test]
fn wal_commands_need_only_the_config_and_fetch_stops_recovery_on_any_doubt() {
    let ws = Workspace::new("config", 3);
    // No password variable set, no server: push of a missing file fails with 1, not 2.
    let out = ws.run(&ws.dir, &["wal", "push", "000000010000000000000001"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // No archive yet (nothing pushed): not "the end of the WAL", a stop.
    let out = ws.run(&ws.dir, &["wal", "fetch", "000000010000000000000001", "x"]);
    assert_eq!(out.status.code(), Some(ABORT), "{}", text(&out));
    // An unreadable config, a bad name, a bad command line: a stop too.
    let out = Command::new(BIN)
        .args([
            "-c",
            "/nonexistent/config.yml",
            "wal",
            "fetch",
            "000000010000000000000001",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(ABORT), "{}", text(&out));
    let out = ws.run(&ws.dir, &["wal", "fetch", "../../etc/passwd", "x"]);
    assert_eq!(out.status.code(), Some(ABORT), "{}", text(&out));
    let out = ws.run(&ws.dir, &["wal", "fetch", "000000010000000000000001"]);
    assert_eq!(out.status.code(), Some(ABORT), "{}", text(&out));
    // push: a configuration error is 2; a target without a pitr section is one.
    let out = ws.run(&ws.dir, &["-t", "nope", "wal", "push", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // verify reads only the archive (no password either): empty is fine, missing is not.
    let out = ws.run(&ws.dir, &["--format", "json", "pitr", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["targets"][0]["files"], 0, "{doc}");
    std::fs::remove_dir_all(ws.archive()).unwrap();
    let out = ws.run(&ws.dir, &["pitr", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        text(&out)
    );
}

#[test]
fn pitr_setup_reports_what_to_change_and_apply_changes_it() {
    let c = Cluster::new("setup", false);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("-c")
            .arg(c.ws.config())
            .args(args)
            .env("MAIRIE_PITR_TEST_UNSET_PASSWORD", "unused");
        cmd.output().unwrap()
    };
    let out = run(&["--format", "json", "pitr", "setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let settings = doc["targets"][0]["settings"].as_array().unwrap();
    let get = |name: &str| {
        settings
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {doc}"))
            .clone()
    };
    assert_eq!(get("wal_level")["current"], "minimal");
    assert_eq!(get("wal_level")["status"], "change");
    assert_eq!(get("archive_mode")["status"], "change");
    let wanted = get("archive_command")["wanted"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        wanted.contains("wal push %p") && wanted.contains(BIN),
        "{wanted}"
    );

    // --apply as a role that is not a superuser: a clear refusal, nothing changed.
    c.psql("CREATE ROLE plain LOGIN");
    let engine_file = c.ws.dir.join("config_pg.yml");
    let as_postgres = std::fs::read_to_string(&engine_file).unwrap();
    std::fs::write(
        &engine_file,
        as_postgres.replace("user: postgres", "user: plain"),
    )
    .unwrap();
    let out = run(&["--format", "json", "pitr", "setup", "--apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = doc["targets"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("superuser") && error.contains("plain"),
        "{doc}"
    );
    assert_eq!(c.psql("SHOW wal_level"), "minimal");
    std::fs::write(&engine_file, as_postgres).unwrap();

    let out = run(&["--format", "json", "pitr", "setup", "--apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["targets"][0]["restart_needed"], true, "{doc}");
    c.restart();
    assert_eq!(c.psql("SHOW wal_level"), "replica");
    assert_eq!(c.psql("SHOW archive_mode"), "on");
    assert_eq!(c.psql("SHOW archive_command"), wanted);
    let out = run(&["--format", "json", "pitr", "setup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // And the settings it wrote archive for real.
    let wal = c.switch(1);
    c.wait_archived(&wal);
    assert!(c.ws.archived().iter().any(|(n, _)| *n == wal));
}

#[test]
fn recovery_replays_through_wal_fetch_and_stops_at_a_corrupt_segment() {
    let c = Cluster::new("recovery", true);
    c.psql("CREATE TABLE marker(i int); INSERT INTO marker VALUES (1)");
    let backup = c.ws.dir.join("base");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown_server(&backup);
    let out = as_server(&format!("{PG_BIN}/pg_basebackup"))
        .arg("-h")
        .arg(c.ws.dir.join("sock"))
        .args([
            "-p",
            &c.port.to_string(),
            "-U",
            "postgres",
            "-X",
            "none",
            "-c",
            "fast",
            "-D",
        ])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_basebackup: {}", text(&out));
    for i in 2..=4 {
        c.psql(&format!("INSERT INTO marker VALUES ({i})"));
        c.switch(1);
    }
    let last = c.switch(1);
    c.wait_archived(&last);

    // Every segment comes back through wal fetch, hash checked: all the markers are there.
    let (good, port) = Restored::new(&c, &backup, "restored");
    let out = good.start();
    assert!(
        out.status.success(),
        "start: {}\n{}",
        text(&out),
        good.log()
    );
    let sock = c.ws.dir.join("sock");
    good.wait_recovery_end(&sock, port).unwrap();
    let q = Command::new(format!("{PG_BIN}/psql"))
        .args(["-X", "-A", "-t", "-h"])
        .arg(c.ws.dir.join("sock"))
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-c", "SELECT count(*) FROM marker"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&q.stdout).trim(),
        "4",
        "{}\n{}",
        text(&q),
        good.log()
    );
    drop(good);

    // A segment recovery needs is corrupted: the server must not start with data missing.
    let segments: Vec<(String, PathBuf)> =
        c.ws.archived()
            .into_iter()
            .filter(|(n, _)| n.len() == 24)
            .collect();
    let (_, victim) = &segments[segments.len() - 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(victim, &bytes).unwrap();
    let (bad, port) = Restored::new(&c, &backup, "corrupt");
    let _ = bad.start();
    let log = bad
        .wait_recovery_end(&sock, port)
        .expect_err("recovery went past a corrupt segment");
    assert!(
        log.contains("wal fetch:") && log.contains("recovery stopped"),
        "{log}"
    );
    assert!(log.contains("FATAL"), "{log}");
}
