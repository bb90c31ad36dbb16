//! `backup`, `backup verify|check|list` and `restore` against real PostgreSQL and MariaDB
//! servers, each test written once and run on both: a backup restores to the same rows, a
//! damaged or unfinished file never passes for a backup, retention only ever deletes old good
//! backups of its own target, failures leave nothing behind, two runs of one target take
//! turns, and the password never shows on a command line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

per_engine!(
    round_trip_backup_manifest_and_restore_into_a_new_database,
    a_damaged_or_unfinished_backup_is_caught_by_verify_restore_and_check,
    retention_deletes_only_old_good_backups_of_its_own_target,
    a_failed_backup_leaves_nothing_and_check_says_failed,
    a_killed_backup_leaves_no_backup_and_the_next_run_cleans_up,
    a_file_size_limit_fails_cleanly_and_keeps_earlier_backups,
    a_second_backup_of_the_same_target_is_refused_or_waits,
    the_password_is_on_no_command_line_during_a_dump,
    a_drill_restores_compares_and_drops_its_scratch_database,
    restoring_over_a_database_that_holds_tables_needs_force,
    the_compression_level_trades_size_and_is_checked,
    backup_check_speaks_nagios_in_one_line_with_age_and_size,
    a_backup_dated_in_the_future_is_reported_and_never_the_latest,
    a_failed_run_is_critical_whatever_stopped_it,
    a_backup_that_failed_verification_is_damaged_until_a_newer_one,
    an_old_backup_not_verified_since_is_a_warning,
);

// ---------------------------------------------------------------------------------------------
// Helpers

/// The extension of this engine's backups.
fn ext(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "dump",
        Engine::Mysql => "sql.zst",
    }
}

/// The manifest's name for `metier.citoyens`.
fn citoyens_key(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "metier.citoyens",
        Engine::Mysql => "metier_citoyens",
    }
}

fn backup_dir(env: &Env) -> PathBuf {
    env.path("backups")
}

/// Rewrites the global config with a `backup:` section for the env's target.
fn configure_backups(env: &Env, retention_days: u32, keep_min: u32) {
    env.write_global(&format!(
        "backup:\n  {}:\n    dir: {}\n    retention_days: {retention_days}\n    keep_min: {keep_min}\n    max_age_hours: 26\n",
        env.engine.name(),
        backup_dir(env).display()
    ));
}

/// A database with the mairie schema and the demo data, and backups configured.
fn loaded(engine: Engine) -> Env {
    let env = Env::with_schema(engine);
    env.run(&["load-csv", "--all"]).success();
    configure_backups(&env, 14, 3);
    env
}

/// Runs `backup` and returns the new file's path.
fn take_backup(env: &Env) -> PathBuf {
    let out = env.run(&["--format", "json", "backup"]);
    out.success();
    let j = out.json();
    backup_dir(env).join(j["backups"][0]["file"].as_str().expect("a file name"))
}

fn manifest_path(backup: &Path) -> PathBuf {
    let mut s = backup.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

fn read_json(p: &Path) -> Value {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", p.display()))
}

fn sha256_hex(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The files of a backup directory other than the run's bookkeeping (lock, last run, status).
fn backup_files(env: &Env) -> BTreeSet<String> {
    let t = env.engine.name();
    let bookkeeping = [
        format!(".{t}.lock"),
        format!(".{t}.last_run.json"),
        "STATUS.json".to_string(),
    ];
    names_in(&backup_dir(env))
        .into_iter()
        .filter(|n| !bookkeeping.contains(n))
        .collect()
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .map(|n| dir.join(n))
        .collect()
}

/// Polls `f` every few milliseconds until it gives something or `timeout` passes.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs SQL in a database of the engine, written with the model's `schema.table` names.
fn query_in(engine: Engine, db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    match engine {
        Engine::Postgres => pg_query(db, sql),
        Engine::Mysql => {
            let mut mapped = sql.to_string();
            for schema in ["referentiel", "metier", "reporting"] {
                mapped = mapped.replace(&format!("{schema}."), &format!("{schema}_"));
            }
            my_query(Some(db), &mapped)
        }
    }
}

/// Every table of a database with its row count, named as the manifests name them.
fn table_counts(engine: Engine, db: &str) -> BTreeMap<String, u64> {
    let list = match engine {
        Engine::Postgres => {
            "SELECT n.nspname || '.' || c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
        }
        Engine::Mysql => {
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1"
        }
    };
    let names: Vec<String> = query_in(engine, db, list)
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    names
        .into_iter()
        .map(|t| {
            let quoted = match engine {
                Engine::Postgres => t.clone(),
                Engine::Mysql => format!("`{t}`"),
            };
            let n = query_in(engine, db, &format!("SELECT count(*) FROM {quoted}"))[0][0]
                .clone()
                .unwrap()
                .parse()
                .unwrap();
            (t, n)
        })
        .collect()
}

/// Tables whose whole content, in primary-key order, must survive a backup and restore.
const FINGERPRINTED: [&str; 5] = [
    "referentiel.services",
    "metier.citoyens",
    "metier.demandes",
    "metier.rendez_vous",
    "metier.journal_audit",
];

fn content(engine: Engine, db: &str, table: &str) -> Vec<Vec<Option<String>>> {
    query_in(engine, db, &format!("SELECT * FROM {table} ORDER BY 1"))
}

fn database_exists(engine: Engine, name: &str) -> bool {
    let n = match engine {
        Engine::Postgres => pg_query(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        ),
        Engine::Mysql => my_query(
            None,
            &format!(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{name}'"
            ),
        ),
    };
    n[0][0].as_deref() != Some("0")
}

/// Drops a database the test (or the tool under test) may have created, even on failure.
struct DropDb {
    engine: Engine,
    name: String,
}

impl DropDb {
    fn new(engine: Engine, name: &str) -> DropDb {
        DropDb {
            engine,
            name: name.to_string(),
        }
    }
}

impl Drop for DropDb {
    fn drop(&mut self) {
        match self.engine {
            Engine::Postgres => drop_pg_database(&self.name),
            Engine::Mysql => {
                my_query(None, &format!("DROP DATABASE IF EXISTS `{}`", self.name));
            }
        }
    }
}

/// A table of incompressible rows (2^rows_log2 of them), to make a dump large and slow
/// enough to be watched, killed or cut short.
fn add_bulk(env: &Env, rows_log2: u32) {
    let db = env.db();
    match env.engine {
        Engine::Postgres => {
            db.query(&format!(
                "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b
                 FROM generate_series(1, {}) g",
                1u64 << rows_log2
            ));
        }
        Engine::Mysql => {
            db.query("CREATE TABLE bulk (id INT AUTO_INCREMENT PRIMARY KEY, a CHAR(32) NOT NULL, b CHAR(32) NOT NULL)");
            db.query("INSERT INTO bulk (a, b) VALUES (MD5('1'), MD5('2'))");
            for i in 0..rows_log2 {
                db.query(&format!(
                    "INSERT INTO bulk (a, b) SELECT MD5(id + {}), MD5(id * 7 + {i}) FROM bulk",
                    (i + 1) * 1_000_003
                ));
            }
        }
    }
}

/// An exclusive lock on `metier.citoyens`, held by another session until released (or for
/// 30 s at most): a backup started meanwhile holds its target's lock and waits on the table,
/// with its `.partial` file created.
struct TableLock {
    release: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TableLock {
    fn take(env: &Env) -> TableLock {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let engine = env.engine;
        let db = env.db().name().to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let wait = tokio::time::timeout(Duration::from_secs(30), released);
                match engine {
                    Engine::Postgres => {
                        let dsn = format!("{} dbname={db}", pg_admin_dsn());
                        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                            .await
                            .unwrap();
                        tokio::spawn(conn);
                        client
                            .batch_execute(
                                "BEGIN; LOCK TABLE metier.citoyens IN ACCESS EXCLUSIVE MODE",
                            )
                            .await
                            .unwrap();
                        ready_tx.send(()).unwrap();
                        let _ = wait.await;
                        client.batch_execute("COMMIT").await.unwrap();
                    }
                    Engine::Mysql => {
                        use mysql_async::prelude::Queryable;
                        let opts = mysql_async::OptsBuilder::from_opts(
                            mysql_async::Opts::from_url(&mysql_url()).unwrap(),
                        )
                        .db_name(Some(db));
                        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                        conn.query_drop("LOCK TABLES metier_citoyens WRITE")
                            .await
                            .unwrap();
                        ready_tx.send(()).unwrap();
                        let _ = wait.await;
                        conn.query_drop("UNLOCK TABLES").await.unwrap();
                        let _ = conn.disconnect().await;
                    }
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(15))
            .expect("locking metier.citoyens");
        TableLock {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        if let Some(r) = self.release.take() {
            let _ = r.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits for a background run, killing it after `timeout` so that a hang fails the test.
fn finish(mut child: Child, timeout: Duration, what: &str) -> Run {
    if poll(timeout, || child.try_wait().unwrap()).is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "{what} still running after {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Run::from(child.wait_with_output().unwrap())
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(&[], args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mairie-dba")
}

/// Sleeps into the next wall-clock second, so that the next backup gets a new file name.
fn next_second() {
    let now = Utc::now();
    let left = 1_000 - now.timestamp_subsec_millis().min(999) as u64;
    std::thread::sleep(Duration::from_millis(left + 20));
}

/// Writes a fake backup `days` old and, for `Some(target)`, its manifest.
fn fixture(
    env: &Env,
    days: i64,
    database: &str,
    manifest: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> String {
    let taken = now - chrono::Duration::days(days);
    let name = format!(
        "{database}_full_{}.{}",
        taken.format("%Y%m%d_%H%M%S"),
        ext(env.engine)
    );
    let path = backup_dir(env).join(&name);
    std::fs::write(&path, b"fixture").unwrap();
    if let Some((target, status)) = manifest {
        let stamp = taken.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let m = json!({
            "engine": env.engine.name(), "target": target, "database": database, "file": name,
            "size_bytes": 7, "sha256": "0".repeat(64), "started_at": stamp, "finished_at": stamp,
            "status": status, "tool": "fixture", "tables": {},
        });
        std::fs::write(manifest_path(&path), m.to_string()).unwrap();
    }
    name
}

fn rotated(j: &Value) -> BTreeSet<String> {
    j["rotated"]
        .as_array()
        .unwrap_or_else(|| panic!("no rotated list in {j}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn check_state(env: &Env, expected_code: i32, state: &str) -> Run {
    let out = env.run(&["--format", "json", "backup", "check"]);
    out.code(expected_code);
    let j = out.json();
    assert_eq!(
        j["targets"][0]["checks"][0]["state"], state,
        "{}",
        out.stdout
    );
    assert_eq!(j["targets"][0]["target"], env.engine.name());
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Round trip

fn round_trip_backup_manifest_and_restore_into_a_new_database(engine: Engine) {
    let env = loaded(engine);
    let db = env.db().name().to_string();
    let dir = backup_dir(&env);
    let before = Utc::now();
    let out = env.run(&["--format", "json", "backup"]);
    out.success();
    let after = Utc::now();
    let j = out.json();
    assert_eq!(j["status"], "success", "{}", out.stdout);
    assert_eq!(j["rotated"], json!([]), "{}", out.stdout);
    let backups = j["backups"].as_array().expect("backups[]");
    assert_eq!(backups.len(), 1, "{}", out.stdout);
    let b = &backups[0];
    assert_eq!(b["target"], engine.name());
    assert_eq!(b["status"], "success");
    assert!(b["seconds"].as_f64().expect("seconds") >= 0.0);

    // <db>_full_YYYYMMDD_HHMMSS.<ext>, in UTC.
    let file = b["file"].as_str().expect("file").to_string();
    let stamp = file
        .strip_prefix(&format!("{db}_full_"))
        .and_then(|s| s.strip_suffix(&format!(".{}", ext(engine))))
        .unwrap_or_else(|| panic!("{file}: not {db}_full_YYYYMMDD_HHMMSS.{}", ext(engine)));
    assert!(
        stamp.len() == 15
            && stamp.char_indices().all(|(i, c)| if i == 8 {
                c == '_'
            } else {
                c.is_ascii_digit()
            }),
        "{file}"
    );
    let taken = NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S")
        .unwrap()
        .and_utc();
    assert!(
        taken >= before - chrono::Duration::seconds(1) && taken <= after,
        "{file}: the stamp is not the UTC start time ({before} .. {after})"
    );

    // The file, its manifest and the directory are private.
    let path = dir.join(&file);
    let mpath = manifest_path(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    let sha = sha256_hex(&path);
    assert_eq!(b["sha256"], sha);
    assert_eq!(b["size_bytes"], size);
    assert_eq!(mode(&path), 0o600, "backup file mode");
    assert_eq!(mode(&mpath), 0o600, "manifest mode");
    assert_eq!(mode(&dir), 0o700, "backup dir mode");
    assert!(partials(&dir).is_empty(), "{:?}", names_in(&dir));

    // The manifest.
    let m = read_json(&mpath);
    assert_eq!(m["engine"], engine.name(), "{m}");
    assert_eq!(m["target"], engine.name(), "{m}");
    assert_eq!(m["database"], db.as_str(), "{m}");
    assert_eq!(m["file"], file.as_str(), "{m}");
    assert_eq!(m["size_bytes"], size, "{m}");
    assert_eq!(m["sha256"], sha, "{m}");
    assert_eq!(m["status"], "success", "{m}");
    let tool = m["tool"].as_str().unwrap_or_default();
    let tool_name = match engine {
        Engine::Postgres => "pg_dump",
        Engine::Mysql => "dump",
    };
    assert!(tool.contains(tool_name), "tool: {m}");
    let started: DateTime<Utc> = m["started_at"].as_str().unwrap().parse().unwrap();
    let finished: DateTime<Utc> = m["finished_at"].as_str().unwrap().parse().unwrap();
    assert!(
        before - chrono::Duration::seconds(1) <= started
            && started <= finished
            && finished <= after,
        "{m}"
    );
    assert_eq!(m["tables"][citoyens_key(engine)], 300, "{m}");
    let source = table_counts(engine, &db);
    assert_eq!(
        m["tables"],
        json!(source),
        "the manifest counts every table"
    );

    // Restored into a new database: the same tables, the same rows.
    let into = format!("{db}_r");
    let _drop = DropDb::new(engine, &into);
    let out = env.run(&[
        "--format",
        "json",
        "restore",
        "--latest",
        "--into",
        &into,
        "--compare",
    ]);
    out.success();
    let r = out.json();
    assert_eq!(r["status"], "success", "{}", out.stdout);
    assert_eq!(r["restores"][0]["file"], file.as_str());
    assert_eq!(r["restores"][0]["differences"], json!([]), "{}", out.stdout);
    assert_eq!(
        table_counts(engine, &into),
        source,
        "row counts after restore"
    );
    for t in FINGERPRINTED {
        let a = content(engine, &db, t);
        assert!(!a.is_empty(), "{t} is empty in the source");
        assert!(
            content(engine, &into, t) == a,
            "{t}: content differs after restore"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Damage

fn a_damaged_or_unfinished_backup_is_caught_by_verify_restore_and_check(engine: Engine) {
    let env = loaded(engine);
    let db = env.db().name().to_string();
    let dir = backup_dir(&env);
    let path = take_backup(&env);
    let p = path.display().to_string();
    env.run(&["backup", "verify", &p]).success();
    assert!(
        read_json(&manifest_path(&path))["verified_at"].is_string(),
        "a good verify is recorded in the manifest"
    );
    check_state(&env, 0, "OK");

    // One byte changed in the middle.
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x5a;
    std::fs::write(&path, &bad).unwrap();
    env.run(&["backup", "verify", &p])
        .code(1)
        .one_line_error()
        .stderr_has(&p)
        .stderr_has("SHA-256");
    env.run(&["backup", "verify", "--latest"])
        .code(1)
        .stderr_has("SHA-256");
    let x = format!("{db}_x");
    let _drop = DropDb::new(engine, &x);
    env.run(&["restore", &p, "--into", &x])
        .code(1)
        .one_line_error()
        .stderr_has("refusing to restore a damaged backup");
    assert!(!database_exists(engine, &x), "{x} was created");
    env.run(&["restore", "--latest", "--into", &x])
        .code(1)
        .stderr_has("refusing to restore a damaged backup");
    assert!(!database_exists(engine, &x), "{x} was created");
    let out = check_state(&env, 2, "HASH_MISMATCH");
    assert_eq!(out.json()["status"], "critical");
    let status = read_json(&dir.join("STATUS.json"));
    assert_eq!(status["state"], "HASH_MISMATCH", "{status}");
    assert_eq!(status["target"], engine.name(), "{status}");

    // Cut short.
    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    env.run(&["backup", "verify", &p])
        .code(1)
        .one_line_error()
        .stderr_has(&p)
        .stderr_has("size");
    check_state(&env, 2, "HASH_MISMATCH");

    // Whole again: it verifies.
    std::fs::write(&path, &good).unwrap();
    env.run(&["backup", "verify", &p]).success();
    check_state(&env, 0, "OK");

    // A well-named file without a manifest is not a backup.
    let orphan = dir.join(format!("{db}_full_20200101_000000.{}", ext(engine)));
    std::fs::copy(&path, &orphan).unwrap();
    let o = orphan.display().to_string();
    env.run(&["backup", "verify", &o])
        .code(1)
        .one_line_error()
        .stderr_has("no manifest");
    env.run(&["restore", &o, "--into", &x])
        .code(1)
        .stderr_has("no manifest");
    assert!(!database_exists(engine, &x), "{x} was created");
}

// ---------------------------------------------------------------------------------------------
// 3. Retention

fn retention_deletes_only_old_good_backups_of_its_own_target(engine: Engine) {
    let env = Env::new(engine);
    configure_backups(&env, 14, 3);
    let dir = backup_dir(&env);
    std::fs::create_dir_all(&dir).unwrap();
    let db = env.db().name().to_string();
    let t = engine.name();
    let now = Utc::now();
    let ours: BTreeMap<i64, String> = [1, 2, 10, 20, 30, 40]
        .into_iter()
        .map(|d| (d, fixture(&env, d, &db, Some((t, "success")), now)))
        .collect();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "sauvegardes de la mairie\n").unwrap();
    // A backup file without its manifest: what a run killed between the rename of the file
    // and that of its manifest leaves. Never a finished backup: the next run removes it.
    let orphan = fixture(&env, 90, &db, None, now);
    let foreign = [
        "notes.txt".to_string(),
        fixture(&env, 91, &db, Some(("staging", "success")), now),
        fixture(&env, 92, &db, Some((t, "failed")), now),
        fixture(&env, 93, "autre_base", Some((t, "success")), now),
    ];
    let mut foreign_files: BTreeSet<String> = foreign.iter().cloned().collect();
    for f in &foreign[1..] {
        foreign_files.insert(format!("{f}.json"));
    }
    let old: BTreeSet<String> = [20, 30, 40].iter().map(|d| ours[d].clone()).collect();
    let mut all_before = backup_files(&env);

    // --dry-run lists, deletes nothing. Of 1, 2, 10, 20, 30, 40 days, keep_min 3 keeps the
    // three newest; 20, 30, 40 are past 14 days.
    env.run(&["backup", "--prune-only", "--dry-run"])
        .success()
        .stdout_has("would delete 3 backup(s)");
    let out = env.run(&["--format", "json", "backup", "--prune-only", "--dry-run"]);
    out.success();
    let j = out.json();
    assert_eq!(rotated(&j), old, "{}", out.stdout);
    assert_eq!(j["dry_run"], true, "{}", out.stdout);
    assert_eq!(
        backup_files(&env),
        all_before,
        "a dry run deleted something"
    );

    // A real run: a new backup (which removes the orphan, saying so), then retention.
    let out = env.run(&["--format", "json", "backup"]);
    out.success().stderr_has(&format!(
        "{orphan}, left by a backup killed before it finished (no manifest)"
    ));
    assert!(!backup_files(&env).contains(&orphan));
    all_before.remove(&orphan);
    let j = out.json();
    assert_eq!(rotated(&j), old, "{}", out.stdout);
    let new = j["backups"][0]["file"].as_str().unwrap().to_string();
    let left = backup_files(&env);
    for f in &old {
        assert!(!left.contains(f), "{f} kept: {left:?}");
        assert!(
            !left.contains(&format!("{f}.json")),
            "{f}.json kept: {left:?}"
        );
    }
    for d in [1, 2, 10] {
        assert!(left.contains(&ours[&d]), "{d} days deleted: {left:?}");
        assert!(left.contains(&format!("{}.json", ours[&d])), "{left:?}");
    }
    assert!(left.contains(&new) && left.contains(&format!("{new}.json")));
    assert!(
        foreign_files.is_subset(&left),
        "foreign files deleted: {:?}",
        foreign_files.difference(&left).collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read(&notes).unwrap(),
        b"sauvegardes de la mairie\n"
    );

    // keep_min 10: nothing old goes.
    for d in [20, 30, 40] {
        fixture(&env, d, &db, Some((t, "success")), now);
    }
    configure_backups(&env, 14, 10);
    let all_before = backup_files(&env);
    let out = env.run(&["--format", "json", "backup", "--prune-only"]);
    out.success();
    assert_eq!(rotated(&out.json()), BTreeSet::new(), "{}", out.stdout);
    assert_eq!(backup_files(&env), all_before);
}

// ---------------------------------------------------------------------------------------------
// 4. Failures

/// The engine file with explicit connection settings.
fn write_connection(env: &Env, port: u16, user: &str) {
    let db = env.db().name();
    let var = env.engine.password_var();
    env.write(
        &format!("config_{}.yml", env.engine.name()),
        format!(
            "connection:\n  host: 127.0.0.1\n  port: {port}\n  database: {db}\n  user: {user}\n  password_env: {var}\n  connect_timeout: 5\n"
        ),
    );
}

fn a_failed_backup_leaves_nothing_and_check_says_failed(engine: Engine) {
    let mut env = Env::new(engine);
    configure_backups(&env, 14, 3);
    let t = engine.name();

    // Nothing listens on port 1.
    write_connection(&env, 1, "mairie");
    env.run(&["backup"])
        .code(1)
        .one_line_error()
        .stderr_has(&format!("target `{t}`"));
    assert_eq!(backup_files(&env), BTreeSet::new(), "files left behind");
    let out = check_state(&env, 2, "FAILED");
    assert_eq!(out.json()["status"], "critical");
    env.run(&["backup", "check"])
        .code(2)
        .stdout_has("BACKUP CRITICAL");

    // A wrong password.
    let wrong = "Wrong-Secret-4417";
    let (port, user, says) = match engine {
        Engine::Postgres => (pg_port(), pg_pwtest().0, "password authentication failed"),
        Engine::Mysql => (mysql_port(), "mairie", "Access denied"),
    };
    write_connection(&env, port, user);
    env.set_env(engine.password_var(), wrong);
    env.run(&["--format", "json", "backup"])
        .code(1)
        .stderr_has(says)
        .lacks(wrong);
    assert_eq!(backup_files(&env), BTreeSet::new(), "files left behind");
    check_state(&env, 2, "FAILED").lacks(wrong);
    let last_run = std::fs::read_to_string(backup_dir(&env).join(format!(".{t}.last_run.json")))
        .expect("the failed run is recorded");
    assert!(!last_run.contains(wrong), "{last_run}");
}

fn a_killed_backup_leaves_no_backup_and_the_next_run_cleans_up(engine: Engine) {
    let env = Env::new(engine);
    configure_backups(&env, 14, 3);
    add_bulk(&env, 18);
    let dir = backup_dir(&env);
    let mut child = spawn(&env, &["backup"]);
    // Killed once the partial file holds data: in the middle of the dump.
    let partial = poll(Duration::from_secs(30), || {
        partials(&dir)
            .into_iter()
            .find(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let partial = partial.expect("no .partial with data appeared");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the backup finished before it was killed ({status}): the dump is too quick for this test"
    );
    assert!(partial.exists(), "the killed run's partial file is there");

    // Nothing there passes for a backup.
    let out = env.run(&["--format", "json", "backup", "list"]);
    out.success();
    let listed = out.json()["backups"].as_array().unwrap().clone();
    assert!(
        listed.iter().all(|b| b["status"] != "good"),
        "{}",
        out.stdout
    );
    env.run(&["backup", "verify", "--latest"])
        .code(1)
        .stderr_has("no backup");
    check_state(&env, 2, "MISSING");

    // The next run succeeds and removes the stale partial file.
    let out = env.run(&["--format", "json", "backup"]);
    out.success();
    assert!(!partial.exists(), "stale {} kept", partial.display());
    assert!(partials(&dir).is_empty(), "{:?}", names_in(&dir));
    env.run(&["backup", "verify", "--latest"]).success();
    check_state(&env, 0, "OK");
}

fn a_file_size_limit_fails_cleanly_and_keeps_earlier_backups(engine: Engine) {
    let env = loaded(engine);
    add_bulk(&env, 14);
    let dir = backup_dir(&env);
    let first = take_backup(&env);
    let first_bytes = std::fs::read(&first).unwrap();
    let first_manifest = std::fs::read(manifest_path(&first)).unwrap();
    assert!(
        first_bytes.len() > 4 * 65_536,
        "the dump must exceed the limit"
    );
    let before = backup_files(&env);
    next_second();

    let out = Run::from(
        env.command(
            &["bash", "-c", "ulimit -f 64; exec \"$@\"", "bash"],
            &["backup"],
        )
        .output()
        .unwrap(),
    );
    out.code(1).one_line_error().stderr_has("File too large");
    assert!(partials(&dir).is_empty(), "{:?}", names_in(&dir));
    assert_eq!(backup_files(&env), before, "files added or removed");
    assert_eq!(std::fs::read(&first).unwrap(), first_bytes);
    assert_eq!(
        std::fs::read(manifest_path(&first)).unwrap(),
        first_manifest
    );
    env.run(&["backup", "verify", "--latest"]).success();
    check_state(&env, 2, "FAILED");
}

// ---------------------------------------------------------------------------------------------
// 5. One backup at a time per target

fn a_second_backup_of_the_same_target_is_refused_or_waits(engine: Engine) {
    let env = Env::with_schema(engine);
    configure_backups(&env, 14, 3);
    let dir = backup_dir(&env);
    let t = engine.name();
    let lock = TableLock::take(&env);
    let started = Instant::now();
    let mut first = spawn(&env, &["--format", "json", "backup"]);
    let first_pid = first.id();
    poll(Duration::from_secs(15), || partials(&dir).first().cloned())
        .expect("the first backup never started writing");

    let t0 = Instant::now();
    env.run(&["backup"])
        .code(1)
        .one_line_error()
        .stderr_has(&format!(
            "another backup of target `{t}` is running (pid {first_pid}"
        ))
        .stderr_has("--wait");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the second run did not fail at once"
    );

    let mut waiting = spawn(&env, &["--format", "json", "backup", "--wait"]);
    // Both stay blocked while the table is locked (at least 300 ms here, and 1.2 s in all,
    // so that the second run's file name, taken when it gets the lock, differs).
    std::thread::sleep(
        Duration::from_millis(1200)
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(300)),
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first backup did not wait for the locked table"
    );
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "--wait did not wait for the running backup"
    );
    drop(lock);

    let a = finish(first, Duration::from_secs(30), "the first backup");
    a.success();
    let b = finish(waiting, Duration::from_secs(30), "the waiting backup");
    b.success();
    let (fa, fb) = (
        a.json()["backups"][0]["file"].as_str().unwrap().to_string(),
        b.json()["backups"][0]["file"].as_str().unwrap().to_string(),
    );
    assert_ne!(fa, fb);
    let out = env.run(&["--format", "json", "backup", "list"]);
    let good: BTreeSet<String> = out.json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] == "good")
        .map(|b| b["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(good, [fa, fb].into_iter().collect(), "{}", out.stdout);
}

// ---------------------------------------------------------------------------------------------
// 6. Secrets

/// A MariaDB account with a distinctive password and read access to one database, dropped
/// at the end. The test user may create accounts but holds no GRANT OPTION, so the
/// database-level privileges go straight into `mysql.db`.
struct MyUser {
    name: &'static str,
}

impl MyUser {
    fn create(name: &'static str, password: &str, db: &str) -> MyUser {
        my_query(None, &format!("DROP USER IF EXISTS '{name}'@'%'"));
        my_query(
            None,
            &format!("CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"),
        );
        my_query(
            None,
            &format!(
                "INSERT INTO mysql.db SET Host = '%', Db = '{db}', User = '{name}', Select_priv = 'Y',
                 Lock_tables_priv = 'Y', Show_view_priv = 'Y', Trigger_priv = 'Y', Event_priv = 'Y',
                 Execute_priv = 'Y'"
            ),
        );
        my_query(None, "FLUSH PRIVILEGES");
        MyUser { name }
    }
}

impl Drop for MyUser {
    fn drop(&mut self) {
        my_query(None, &format!("DROP USER IF EXISTS '{}'@'%'", self.name));
    }
}

fn the_password_is_on_no_command_line_during_a_dump(engine: Engine) {
    let mut env = Env::with_schema(engine);
    add_bulk(&env, 18);
    configure_backups(&env, 14, 3);
    let db = env.db().name().to_string();
    let mut _user = None;
    let (secret, dumper) = match engine {
        Engine::Postgres => {
            // The role of the wrong-password test, whose password the server always checks.
            let (role, password) = pg_pwtest();
            env.db().query(&format!(
                "GRANT USAGE ON SCHEMA referentiel, metier, reporting TO {role};
                 GRANT SELECT ON ALL TABLES IN SCHEMA public, referentiel, metier, reporting TO {role};
                 GRANT SELECT ON ALL SEQUENCES IN SCHEMA public, referentiel, metier TO {role}"
            ));
            write_connection(&env, pg_port(), role);
            (password, "pg_dump")
        }
        Engine::Mysql => {
            _user = Some(MyUser::create("mdba_ps_test", "Ps-Secret-9931", &db));
            write_connection(&env, mysql_port(), "mdba_ps_test");
            ("Ps-Secret-9931", "dump")
        }
    };
    env.set_env(engine.password_var(), secret);

    let mut child = spawn(&env, &["-v", "--format", "json", "backup"]);
    let mut saw_dumper = false;
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(secret) {
                let _ = child.kill();
                panic!("the password shows in `ps`: {cmdline}");
            }
            if cmdline.contains(dumper) && cmdline.contains(&db) {
                saw_dumper = true;
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    let out = finish(child, Duration::from_secs(60), "the backup");
    out.success().lacks(secret);
    assert!(
        saw_dumper,
        "{dumper} was never seen running: the dump is too quick for this test"
    );
    assert_eq!(out.json()["status"], "success");
    let m = std::fs::read_to_string(manifest_path(
        &backup_dir(&env).join(out.json()["backups"][0]["file"].as_str().unwrap()),
    ))
    .unwrap();
    assert!(!m.contains(secret), "{m}");
}

// ---------------------------------------------------------------------------------------------
// 7. Drill

fn a_drill_restores_compares_and_drops_its_scratch_database(engine: Engine) {
    let env = loaded(engine);
    let path = take_backup(&env);
    let file = path.file_name().unwrap().to_string_lossy().into_owned();
    let tables = read_json(&manifest_path(&path))["tables"]
        .as_object()
        .unwrap()
        .len();

    let out = env.run(&["--format", "json", "restore", "--drill"]);
    out.success();
    let j = out.json();
    assert_eq!(j["status"], "success", "{}", out.stdout);
    let d = &j["drills"][0];
    assert_eq!(d["status"], "success", "{}", out.stdout);
    assert_eq!(d["file"], file.as_str());
    assert_eq!(d["tables"], tables, "{}", out.stdout);
    assert!(tables > 0);
    assert_eq!(d["differences"], json!([]));
    let scratch = d["database"].as_str().expect("the scratch database");
    let _drop = DropDb::new(engine, scratch);
    assert!(!database_exists(engine, scratch), "{scratch} left behind");

    // The manifest is not hashed: a wrong count there makes a mismatch.
    let mpath = manifest_path(&path);
    let mut m = read_json(&mpath);
    m["tables"][citoyens_key(engine)] = json!(301);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let out = env.run(&["--format", "json", "restore", "--drill"]);
    out.code(1).stderr_has(citoyens_key(engine));
    let j = out.json();
    assert_eq!(j["status"], "failed", "{}", out.stdout);
    let d = &j["drills"][0];
    assert_eq!(d["status"], "failed", "{}", out.stdout);
    let diffs = d["differences"].as_array().expect("differences");
    assert_eq!(diffs.len(), 1, "{}", out.stdout);
    let diff = diffs[0].as_str().unwrap();
    assert!(
        diff.contains(citoyens_key(engine)) && diff.contains("300") && diff.contains("301"),
        "{diff}"
    );
    let scratch = d["database"].as_str().expect("the scratch database");
    let _drop2 = DropDb::new(engine, scratch);
    assert!(!database_exists(engine, scratch), "{scratch} left behind");
}

// ---------------------------------------------------------------------------------------------
// 8. Restoring over the source

fn restoring_over_a_database_that_holds_tables_needs_force(engine: Engine) {
    let env = loaded(engine);
    let db = env.db().name().to_string();
    take_backup(&env);
    let counts = table_counts(engine, &db);
    let snapshot: Vec<_> = FINGERPRINTED
        .iter()
        .map(|t| content(engine, &db, t))
        .collect();

    let out = env.run(&["restore", "--latest"]);
    out.code(1)
        .one_line_error()
        .stderr_has(&format!("database {db} holds "))
        .stderr_has("--force");
    let n: u32 = out.stderr[out.stderr.find(" holds ").unwrap() + 7..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("holds N tables: {}", out.stderr));
    assert!(n >= counts.len() as u32, "{}", out.stderr);
    assert_eq!(
        table_counts(engine, &db),
        counts,
        "the refused restore changed data"
    );

    // Changed since the backup; --force puts it back.
    env.db()
        .query("DELETE FROM metier.rendez_vous WHERE id > 100");
    env.db()
        .query("UPDATE metier.citoyens SET nom = 'Altéré' WHERE id = 1");
    assert_ne!(table_counts(engine, &db), counts);
    let out = env.run(&[
        "--format",
        "json",
        "restore",
        "--latest",
        "--force",
        "--compare",
    ]);
    out.success();
    let j = out.json();
    assert_eq!(j["status"], "success", "{}", out.stdout);
    assert_eq!(j["restores"][0]["into"], db.as_str());
    assert_eq!(j["restores"][0]["differences"], json!([]), "{}", out.stdout);
    assert_eq!(
        table_counts(engine, &db),
        counts,
        "row counts after --force"
    );
    for (t, before) in FINGERPRINTED.iter().zip(&snapshot) {
        assert!(
            &content(engine, &db, t) == before,
            "{t}: content differs after restore --force"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a table too big for pg_restore's jobs to balance is loaded over several
// connections.

/// A fingerprint of a whole table, in primary-key order.
fn pg_table_md5(db: &str, table: &str) -> String {
    pg_query(
        db,
        &format!("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {table} t"),
    )[0][0]
        .clone()
        .expect("a fingerprint")
}

#[test]
fn postgres_parallel_restore_splits_a_big_table_and_restores_the_same_data() {
    let engine = Engine::Postgres;
    let env = loaded(engine);
    let db = env.db().name().to_string();
    // 150 000 rows (over the 100 000 from which a table is split) with what COPY escapes:
    // tabs, newlines, backslashes, NULLs and non-ASCII text; an identity column, a unique
    // index and a foreign key, which come back in the post-data section.
    env.db().query(
        "CREATE TABLE public.journal (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             citoyen_id integer REFERENCES metier.citoyens (id),
             texte text,
             montant numeric(12, 2));
         INSERT INTO public.journal (citoyen_id, texte, montant)
         SELECT 1 + g % 300,
                CASE g % 5 WHEN 0 THEN NULL
                           WHEN 1 THEN E'tab\\there ' || g
                           WHEN 2 THEN E'ligne\\nsuivante ' || g
                           WHEN 3 THEN E'anti\\\\slash ' || g
                           ELSE 'Élodie Müller ' || g END,
                g / 7.0
         FROM generate_series(1, 150000) g;
         CREATE UNIQUE INDEX journal_texte_id ON public.journal (texte, id);",
    );
    let before = pg_table_md5(&db, "public.journal");
    let counts = table_counts(engine, &db);
    take_backup(&env);

    let into = format!("{db}_j");
    let _drop = DropDb::new(engine, &into);
    let out = env.run(&[
        "--format",
        "json",
        "restore",
        "--latest",
        "--into",
        &into,
        "--jobs",
        "2",
        "--compare",
    ]);
    out.success();
    let j = out.json();
    let r = &j["restores"][0];
    assert_eq!(r["status"], "success", "{}", out.stdout);
    assert_eq!(
        r["parallel_tables"],
        json!(["public.journal"]),
        "{}",
        out.stdout
    );
    assert_eq!(r["differences"], json!([]), "{}", out.stdout);
    assert_eq!(
        table_counts(engine, &into),
        counts,
        "row counts after restore"
    );
    assert_eq!(
        pg_table_md5(&into, "public.journal"),
        before,
        "public.journal"
    );
    for t in FINGERPRINTED {
        assert!(
            content(engine, &into, t) == content(engine, &db, t),
            "{t}: content differs after restore"
        );
    }
    // The post-data section ran after the data: keys, indexes and the foreign key are there,
    // and the identity goes on after the last restored id.
    let constraints = pg_query(
        &into,
        "SELECT string_agg(conname || ':' || contype::text, ',' ORDER BY conname) FROM pg_constraint
         WHERE conrelid = 'public.journal'::regclass",
    );
    assert_eq!(
        constraints[0][0].as_deref(),
        Some("journal_citoyen_id_fkey:f,journal_pkey:p"),
        "constraints of public.journal"
    );
    let index = pg_query(
        &into,
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'journal_texte_id'",
    );
    assert_eq!(index[0][0].as_deref(), Some("1"));
    let next = pg_query(
        &into,
        "INSERT INTO public.journal (citoyen_id) VALUES (1) RETURNING id",
    );
    assert_eq!(
        next[0][0].as_deref(),
        Some("150001"),
        "identity after restore"
    );

    // The rows a split table received are checked against the manifest: a manifest that
    // promises one row more fails the restore, naming the table and both counts.
    let backup = backup_files(&env)
        .into_iter()
        .find(|f| f.ends_with(".dump"))
        .map(|f| backup_dir(&env).join(f))
        .expect("the backup");
    let mpath = manifest_path(&backup);
    let mut m = read_json(&mpath);
    m["tables"]["public.journal"] = json!(150_001);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let into2 = format!("{db}_k");
    let _drop2 = DropDb::new(engine, &into2);
    let out = env.run(&["restore", "--latest", "--into", &into2, "--jobs", "2"]);
    out.code(1)
        .stderr_has("public.journal: 150000 rows restored, the manifest says 150001");
    m["tables"]["public.journal"] = json!(150_000);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    // One job: a single pg_restore, nothing split.
    let into1 = format!("{db}_1");
    let _drop1 = DropDb::new(engine, &into1);
    let out = env.run(&["--format", "json", "restore", "--latest", "--into", &into1]);
    out.success();
    assert_eq!(
        out.json()["restores"][0]["parallel_tables"],
        json!([]),
        "{}",
        out.stdout
    );
    assert_eq!(pg_table_md5(&into1, "public.journal"), before);
}

/// The newest of PostgreSQL's own client tools installed (`pg_dump`, `pg_restore`).
fn pg_tool(name: &str) -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let major = e.file_name().to_string_lossy().parse().ok()?;
                    let p = e.path().join("bin").join(name);
                    p.is_file().then_some((major, p))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| PathBuf::from(name))
}

/// An archive as SQL (`pg_restore --file=-`), without the lines that differ between any two
/// dumps (`\restrict` and `\unrestrict` carry a random key).
fn archive_sql(archive: &Path) -> String {
    let out = std::process::Command::new(pg_tool("pg_restore"))
        .arg("--file=-")
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_restore {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn postgres_archive_reads_as_pg_dumps_own_and_its_counts_cover_every_kind_of_table() {
    let engine = Engine::Postgres;
    let env = loaded(engine);
    let db = env.db().name().to_string();
    // Partitions (one level sub-partitioned), a partitioned table without partitions,
    // inheritance, rows that look like COPY's end-of-data marker, an empty table, an
    // unlogged table, a materialized view and large objects (one empty).
    env.db().query(
        r#"CREATE TABLE public.mesures (id int, jour date, valeur text) PARTITION BY RANGE (jour);
           CREATE TABLE public.mesures_2025 PARTITION OF public.mesures
               FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY LIST (id);
           CREATE TABLE public.mesures_2025_tout PARTITION OF public.mesures_2025 DEFAULT;
           CREATE TABLE public.mesures_2026 PARTITION OF public.mesures
               FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
           INSERT INTO public.mesures
               SELECT g, date '2025-06-01' + (g % 400), 'v' || g FROM generate_series(1, 1000) g;
           CREATE TABLE public.sans_partition (id int) PARTITION BY LIST (id);
           CREATE TABLE public.archives (id int, texte text);
           CREATE TABLE public.archives_2024 () INHERITS (public.archives);
           INSERT INTO public.archives VALUES (1, 'parent');
           INSERT INTO public.archives_2024 VALUES (2, 'enfant'), (3, E'fin\\.');
           CREATE TABLE public.pieges (id int, t text);
           INSERT INTO public.pieges VALUES (1, E'\\.'), (2, E'a\nb'), (3, E'\\.\n\n'), (4, NULL),
               (5, ''), (6, E'x\\');
           CREATE TABLE public.vide (id int);
           CREATE UNLOGGED TABLE public.brouillon AS SELECT g AS id FROM generate_series(1, 42) g;
           CREATE MATERIALIZED VIEW public.resume AS SELECT count(*) AS n FROM public.pieges;
           SELECT lo_from_bytea(0, '\x00010a5c2e0a'::bytea), lo_from_bytea(0, ''::bytea);"#,
    );
    let counts = table_counts(engine, &db);
    let backup = take_backup(&env);

    // The manifest's counts are every table's count(*), parents counting their
    // descendants, partitions not listed on their own.
    let m = read_json(&manifest_path(&backup));
    let manifest: BTreeMap<String, u64> = serde_json::from_value(m["tables"].clone()).unwrap();
    assert_eq!(manifest, counts, "manifest counts");
    for (table, n) in [
        ("public.mesures", 1000),
        ("public.sans_partition", 0),
        ("public.archives", 3),
        ("public.archives_2024", 2),
        ("public.pieges", 6),
        ("public.vide", 0),
        ("public.brouillon", 42),
    ] {
        assert_eq!(manifest.get(table), Some(&n), "{table} in the manifest");
    }
    assert!(!manifest.contains_key("public.mesures_2026"));

    // pg_restore reads it as it reads pg_dump's own archive of the same database: the same
    // SQL, data and large objects included.
    let plain = env.path("plain.dump");
    let value = |k: &str| dsn_value(&pg_admin_dsn(), k).unwrap_or_default();
    let out = std::process::Command::new(pg_tool("pg_dump"))
        .args(["--format=custom", "--file"])
        .arg(&plain)
        .args([
            "-h",
            &value("host"),
            "-p",
            &value("port"),
            "-U",
            &value("user"),
            &db,
        ])
        .env("PGPASSWORD", password())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = archive_sql(&backup);
    assert!(ours.contains("COPY public.pieges"), "data in the archive");
    assert!(ours.contains("lo_open"), "large objects in the archive");
    assert!(
        ours == archive_sql(&plain),
        "the archive's SQL differs from pg_dump's own archive's"
    );

    // And it restores: every count, the large objects' bytes.
    let into = format!("{db}_a");
    let _drop = DropDb::new(engine, &into);
    env.run(&["restore", "--latest", "--into", &into, "--compare"])
        .success();
    assert_eq!(table_counts(engine, &into), counts, "counts after restore");
    let lo =
        "SELECT string_agg(encode(lo_get(oid), 'hex'), ',' ORDER BY encode(lo_get(oid), 'hex'))
              FROM pg_largeobject_metadata";
    assert_eq!(pg_query(&into, lo), pg_query(&db, lo), "large objects");
    assert_eq!(
        pg_query(&into, lo)[0][0].as_deref(),
        Some(",00010a5c2e0a"),
        "both large objects, the empty one too"
    );
}

#[test]
fn postgres_a_pg_dump_newer_than_the_known_archive_layouts_compresses_itself_and_rows_are_counted()
{
    let engine = Engine::Postgres;
    let mut env = loaded(engine);
    let db = env.db().name().to_string();
    env.db().query(
        "CREATE TABLE public.mesures (id int, jour date) PARTITION BY RANGE (jour);
         CREATE TABLE public.mesures_2025 PARTITION OF public.mesures
             FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         INSERT INTO public.mesures SELECT g, date '2025-01-01' + g % 300 FROM generate_series(1, 500) g;",
    );
    // A pg_dump on PATH that says it is version 99 (the real one underneath), and notes
    // its arguments: the newest found, and one whose archive layout mairie-dba cannot know.
    let bin = env.path("newer-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = env.path("pg_dump.args");
    let script = bin.join("pg_dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) 99.0'; exit 0; fi\n\
             echo \"$@\" > '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            pg_tool("pg_dump").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.set_env("PATH", &path);

    let counts = table_counts(engine, &db);
    let backup = take_backup(&env);
    let args = std::fs::read_to_string(&log).expect("the newer pg_dump ran");
    assert!(args.contains("--snapshot"), "{args}");
    assert!(
        !args.contains("--compress"),
        "pg_dump compresses itself: {args}"
    );
    let m = read_json(&manifest_path(&backup));
    assert_eq!(m["tool"], "pg_dump (PostgreSQL) 99.0");
    let manifest: BTreeMap<String, u64> = serde_json::from_value(m["tables"].clone()).unwrap();
    assert_eq!(
        manifest, counts,
        "counted with count(*) in the dump's snapshot"
    );
    assert_eq!(manifest.get("public.mesures"), Some(&500));
    let into = format!("{db}_n");
    let _drop = DropDb::new(engine, &into);
    env.run(&["restore", "--latest", "--into", &into, "--compare"])
        .success();
    assert_eq!(table_counts(engine, &into), counts, "counts after restore");
}

fn the_compression_level_trades_size_and_is_checked(engine: Engine) {
    let env = loaded(engine);
    let db = env.db().name().to_string();
    let with_level = |level: u32| {
        env.write_global(&format!(
            "backup:\n  {}:\n    dir: {}\n    keep_min: 10\n    compression_level: {level}\n",
            engine.name(),
            backup_dir(&env).display()
        ));
    };
    let counts = table_counts(engine, &db);
    with_level(1);
    let fast = take_backup(&env);
    next_second();
    let top = if engine == Engine::Postgres { 9 } else { 19 };
    with_level(top);
    let small = take_backup(&env);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&small) < size(&fast),
        "level {top}: {} bytes, level 1: {} bytes",
        size(&small),
        size(&fast)
    );
    env.run(&["backup", "verify", "--all"]).success();
    for (i, f) in [&fast, &small].into_iter().enumerate() {
        let into = format!("{db}_z{i}");
        let _drop = DropDb::new(engine, &into);
        env.run(&["restore", f.to_str().unwrap(), "--into", &into])
            .success();
        assert_eq!(table_counts(engine, &into), counts, "{}", f.display());
    }
    // Out of range: a configuration error naming the key, before anything is written.
    with_level(top + 1);
    let before = backup_files(&env);
    env.run(&["backup"]).code(2).stderr_has(&format!(
        "backup.{}.compression_level: {}",
        engine.name(),
        top + 1
    ));
    assert_eq!(backup_files(&env), before, "nothing written");
}

// ---------------------------------------------------------------------------------------------
// 9. Monitoring that tells the truth: one plugin line, trustworthy dates, visible failures,
//    a check whose cost does not grow with the backup.

/// The global config with a backup section for the env's target and extra keys in it.
fn configure_backups_with(env: &Env, extra: &str) {
    env.write_global(&format!(
        "backup:\n  {}:\n    dir: {}\n    retention_days: 14\n    keep_min: 3\n{extra}",
        env.engine.name(),
        backup_dir(env).display()
    ));
}

/// The check of the first target in a `backup check --format json` document.
fn backup_check_of(j: &Value) -> Value {
    j["targets"][0]["checks"][0].clone()
}

/// The states of every problem a check lists.
fn problem_states(c: &Value) -> Vec<String> {
    c["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems[] in {c}"))
        .iter()
        .map(|p| p["state"].as_str().unwrap().to_string())
        .collect()
}

/// The one line `--format nagios backup check` prints, with its exit code checked.
fn nagios_line(env: &Env, code: i32) -> String {
    let out = env.run(&["--format", "nagios", "backup", "check"]);
    out.code(code);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {:?}", out.stdout);
    assert!(
        lines[0].starts_with("MAIRIE-DBA ")
            && !lines[0].ends_with(" | ")
            && !lines[0].ends_with('|'),
        "{:?}",
        lines[0]
    );
    lines[0].to_string()
}

/// A backup moved in time by `shift`: renamed (`keep` false, its modification time kept) or
/// copied (`keep` true), with its manifest's name and times moved alike. Returns the new path.
fn shift_backup(env: &Env, path: &Path, shift: chrono::Duration, keep: bool) -> PathBuf {
    let name = path.file_name().unwrap().to_str().unwrap();
    let (db, rest) = name.split_once("_full_").unwrap();
    let taken = NaiveDateTime::parse_from_str(&rest[..15], "%Y%m%d_%H%M%S")
        .unwrap()
        .and_utc();
    let new_name = format!(
        "{db}_full_{}.{}",
        (taken + shift).format("%Y%m%d_%H%M%S"),
        ext(env.engine)
    );
    let new_path = backup_dir(env).join(&new_name);
    let mut m = read_json(&manifest_path(path));
    m["file"] = json!(new_name);
    for k in ["started_at", "finished_at"] {
        let t: DateTime<Utc> = m[k].as_str().unwrap().parse().unwrap();
        m[k] = json!((t + shift).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    }
    if keep {
        std::fs::copy(path, &new_path).unwrap();
    } else {
        std::fs::rename(path, &new_path).unwrap();
        std::fs::remove_file(manifest_path(path)).unwrap();
    }
    std::fs::write(manifest_path(&new_path), m.to_string()).unwrap();
    new_path
}

/// The state records of this test (`~/.local/state/mairie-dba`, HOME being the test's dir).
fn state_records(env: &Env) -> Vec<Value> {
    let dir = env.path(".local/state/mairie-dba");
    names_in(&dir)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{}-", env.engine.name())) && n.ends_with(".json"))
        .map(|n| read_json(&dir.join(n)))
        .collect()
}

/// The `name` check of the env's target in a `health --format json` document.
fn health_check(env: &Env, name: &str) -> (i32, Value) {
    let out = env.run(&["--format", "json", "health", "--check", name]);
    let j = out.json();
    let c = j["targets"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
        .clone();
    (out.code, c)
}

fn set_mtime(path: &Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

fn backup_check_speaks_nagios_in_one_line_with_age_and_size(engine: Engine) {
    let env = Env::new(engine);
    configure_backups(&env, 14, 3);
    let t = engine.name();

    // Nothing yet: CRITICAL, and no performance data to give (no trailing separator).
    let line = nagios_line(&env, 2);
    assert_eq!(
        line,
        format!("MAIRIE-DBA CRITICAL - backup: {t} MISSING: no backup with a manifest")
    );

    // One line, the plugin's, and nothing else: no table.
    let path = take_backup(&env);
    let size = std::fs::metadata(&path).unwrap().len();
    let line = nagios_line(&env, 0);
    assert_eq!(
        line,
        format!("MAIRIE-DBA OK - backup: {t} OK | '{t}_backup_age_hours'=0;26;52 '{t}_backup_size'={size}B")
    );
    // The table format keeps its table and summary line.
    env.run(&["backup", "check"])
        .success()
        .stdout_has("│")
        .stdout_has(&format!("BACKUP OK - {t} OK"));

    // A quote in a target's name is doubled in the labels, as the plugin guidelines say.
    let dir2 = env.path("annexe");
    env.write(
        "config_global.yml",
        format!(
            "base_dir: {ROOT}\ntargets:\n  l'annexe:\n    engine: {t}\n    config: config_{t}.yml\nbackup:\n  l'annexe:\n    dir: {}\n",
            dir2.display()
        ),
    );
    env.run(&["backup"]).success();
    let line = nagios_line(&env, 0);
    assert!(
        line.contains(" | 'l''annexe_backup_age_hours'=0;26;52 'l''annexe_backup_size'="),
        "{line}"
    );
}

fn a_backup_dated_in_the_future_is_reported_and_never_the_latest(engine: Engine) {
    let env = Env::with_schema(engine);
    configure_backups(&env, 14, 2);
    let db = env.db().name().to_string();
    let t = engine.name();
    let real = take_backup(&env);
    let real_name = real.file_name().unwrap().to_string_lossy().into_owned();
    // A copy dated a year ahead (a machine whose clock was wrong), and an older backup.
    let future = shift_backup(&env, &real, chrono::Duration::days(365), true);
    let future_name = future.file_name().unwrap().to_string_lossy().into_owned();
    let old = fixture(&env, 20, &db, Some((t, "success")), Utc::now());

    // backup check: WARNING naming it; the latest is still the real one.
    let out = env.run(&["--format", "json", "backup", "check"]);
    out.code(1);
    let c = backup_check_of(&out.json());
    assert_eq!(c["state"], "FUTURE_DATED", "{c:#}");
    assert_eq!(c["latest"], real_name.as_str(), "{c:#}");
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains(&future_name) && msg.contains("dated in the future, clock skew?"),
        "{msg}"
    );
    let age = c["value"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&age), "{c:#}");
    let line = nagios_line(&env, 1);
    assert!(line.starts_with("MAIRIE-DBA WARNING - "), "{line}");
    assert!(
        line.contains(&format!("'{t}_backup_age_hours'=0;")),
        "{line}"
    );

    // backup list: no negative age; the file says what it is.
    let out = env.run(&["--format", "json", "backup", "list"]);
    out.success();
    for b in out.json()["backups"].as_array().unwrap() {
        assert!(b["age_hours"].as_f64().unwrap() >= 0.0, "{b}");
        let expected = if b["file"] == future_name.as_str() {
            "dated in the future"
        } else {
            "good"
        };
        assert_eq!(b["status"], expected, "{b}");
    }
    env.run(&["backup", "list"]).success().lacks("-52");

    // restore --latest and verify --latest take the real one.
    let into = format!("{db}_f");
    let _drop = DropDb::new(engine, &into);
    let out = env.run(&["--format", "json", "restore", "--latest", "--into", &into]);
    out.success();
    assert_eq!(out.json()["restores"][0]["file"], real_name.as_str());
    let out = env.run(&["--format", "json", "backup", "verify", "--latest"]);
    out.success();
    assert_eq!(out.json()["verified"][0]["file"], real_name.as_str());

    // health's backup_age: the real one's age.
    let (code, c) = health_check(&env, "backup_age");
    assert_eq!(code, 0, "{c:#}");
    let hours = c["value"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&hours), "{c:#}");
    assert!(c["message"].as_str().unwrap().contains(&real_name), "{c:#}");

    // Retention (keep_min 2, 14 days): the real and the 20-day-old backup are the two kept;
    // the future one neither counts nor goes.
    let out = env.run(&["--format", "json", "backup", "--prune-only"]);
    out.success();
    assert_eq!(rotated(&out.json()), BTreeSet::new(), "{}", out.stdout);
    let left = backup_files(&env);
    for f in [&real_name, &future_name, &old] {
        assert!(left.contains(f.as_str()), "{f} deleted: {left:?}");
    }
}

fn a_failed_run_is_critical_whatever_stopped_it(engine: Engine) {
    let env = Env::new(engine);
    configure_backups(&env, 14, 3);
    let dir = backup_dir(&env);
    let t = engine.name();
    take_backup(&env);
    check_state(&env, 0, "OK");

    // A hung backup holds the target's lock: the next run fails at once, and says so.
    let held = std::fs::File::options()
        .read(true)
        .write(true)
        .open(dir.join(format!(".{t}.lock")))
        .unwrap();
    held.lock().unwrap();
    next_second();
    env.run(&["backup"])
        .code(1)
        .stderr_has("another backup of target");
    let out = check_state(&env, 2, "FAILED");
    let c = backup_check_of(&out.json());
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains(&format!("another backup of target `{t}` is running")),
        "{c:#}"
    );
    let line = nagios_line(&env, 2);
    assert!(
        line.starts_with(&format!(
            "MAIRIE-DBA CRITICAL - backup: {t} FAILED: the last backup run failed at "
        )),
        "{line}"
    );
    assert!(line.contains("another backup of target"), "{line}");
    drop(held);
    // A good backup since: the failure is history.
    next_second();
    take_backup(&env);
    check_state(&env, 0, "OK");

    // The backup directory replaced by a file (as root, a chmod would not stop a write).
    let moved = env.path("backups.moved");
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, "not a directory\n").unwrap();
    next_second();
    env.run(&["backup"])
        .code(1)
        .one_line_error()
        .stderr_has(&dir.display().to_string());
    let out = check_state(&env, 2, "FAILED");
    let c = backup_check_of(&out.json());
    assert_eq!(problem_states(&c), ["FAILED", "UNWRITABLE"], "{c:#}");
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("creating {}", dir.display())) && msg.contains("not a directory"),
        "{msg}"
    );
    // The run was recorded where the broken directory could not matter.
    let records = state_records(&env);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["last_run"]["status"], "failed",
        "{:#}",
        records[0]
    );
    assert_eq!(records[0]["target"], t);
    // health says the directory cannot take a backup.
    let (code, c) = health_check(&env, "backup_dir_space");
    assert_eq!(code, 2, "{c:#}");
    assert_eq!(c["status"], "critical", "{c:#}");
    assert!(
        c["message"].as_str().unwrap().contains("not writable"),
        "{c:#}"
    );

    // Put back: a backup, and all is well again.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&moved, &dir).unwrap();
    next_second();
    take_backup(&env);
    check_state(&env, 0, "OK");
    let (_, c) = health_check(&env, "backup_dir_space");
    assert!(
        !c["message"].as_str().unwrap().contains("not writable"),
        "{c:#}"
    );

    // Not root: a read-only directory fails the run the same way.
    if unsafe { libc::geteuid() } != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        next_second();
        env.run(&["backup"]).code(1);
        let out = check_state(&env, 2, "FAILED");
        assert!(problem_states(&backup_check_of(&out.json())).contains(&"UNWRITABLE".to_string()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}

fn a_backup_that_failed_verification_is_damaged_until_a_newer_one(engine: Engine) {
    let env = Env::new(engine);
    configure_backups(&env, 14, 3);
    let path = take_backup(&env);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();

    // Touched (same bytes, a new time): read once by the check, found intact, remembered.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&path, an_hour_ago);
    check_state(&env, 0, "OK");
    let records = state_records(&env);
    assert_eq!(
        records[0]["files"][&name]["hashed"]["intact"], true,
        "{:#}",
        records[0]
    );

    // Altered in place, its size and time kept: a stat cannot see it...
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    set_mtime(&path, an_hour_ago);
    check_state(&env, 0, "OK");
    // ...a full verification can, and its failure is remembered.
    env.run(&["backup", "verify", "--latest"])
        .code(1)
        .stderr_has("SHA-256");
    let out = check_state(&env, 2, "DAMAGED");
    let c = backup_check_of(&out.json());
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("{name} failed verification at ")) && msg.contains("SHA-256"),
        "{msg}"
    );
    let out = env.run(&["--format", "json", "backup", "list"]);
    let listed = out.json()["backups"][0].clone();
    assert_eq!(listed["status"], "damaged", "{listed:#}");
    assert!(
        listed["verify_error"].as_str().unwrap().contains("SHA-256"),
        "{listed:#}"
    );
    // --deep re-hashes it; that result is kept for these bytes.
    let out = env.run(&["--format", "json", "backup", "check", "--deep"]);
    out.code(2);
    assert_eq!(backup_check_of(&out.json())["state"], "HASH_MISMATCH");
    check_state(&env, 2, "HASH_MISMATCH");

    // A newer good backup replaces it as the latest; the damaged one stays marked.
    next_second();
    let newer = take_backup(&env);
    check_state(&env, 0, "OK");
    let out = env.run(&["--format", "json", "backup", "list"]);
    let listed = out.json()["backups"].as_array().unwrap().clone();
    let status_of = |f: &str| {
        listed
            .iter()
            .find(|b| b["file"] == f)
            .map(|b| b["status"].clone())
    };
    let newer_name = newer.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(status_of(&newer_name), Some(json!("good")));
    assert_eq!(status_of(&name), Some(json!("damaged")));
}

fn an_old_backup_not_verified_since_is_a_warning(engine: Engine) {
    let env = Env::new(engine);
    configure_backups_with(&env, "    max_age_hours: 400\n");
    let path = take_backup(&env);
    // 200 hours old, never verified since its own run: more than a week.
    let old = shift_backup(&env, &path, -chrono::Duration::hours(200), false);
    let out = check_state(&env, 1, "UNVERIFIED");
    let msg = backup_check_of(&out.json())["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("last verified 200.0 h ago (max 168 h)"),
        "{msg}"
    );
    // A longer limit in the config: no warning.
    configure_backups_with(
        &env,
        "    max_age_hours: 400\n    verify_max_age_hours: 240\n",
    );
    check_state(&env, 0, "OK");
    // The default limit again, and a full verification: OK, verified now.
    configure_backups_with(&env, "    max_age_hours: 400\n");
    env.run(&["backup", "verify", old.to_str().unwrap()])
        .success();
    let out = check_state(&env, 0, "OK");
    let verified: DateTime<Utc> = backup_check_of(&out.json())["verified_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(Utc::now() - verified < chrono::Duration::minutes(5));
}

/// Writes `size` pseudo-random bytes as a backup of `database` taken `hours_ago`, with a
/// manifest that matches it (size, SHA-256, modification time).
fn craft_backup(env: &Env, database: &str, size: usize, hours_ago: i64) -> PathBuf {
    use std::io::Write;
    let taken = Utc::now() - chrono::Duration::hours(hours_ago);
    let name = format!("{database}_full_{}.dump", taken.format("%Y%m%d_%H%M%S"));
    let path = backup_dir(env).join(&name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut h = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        h.update(&block[..n]);
        left -= n;
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let mtime: DateTime<Utc> = std::fs::metadata(&path).unwrap().modified().unwrap().into();
    let stamp = taken.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let m = json!({
        "engine": "postgres", "target": "postgres", "database": database, "file": name,
        "size_bytes": size, "sha256": hex::encode(h.finalize()), "started_at": stamp,
        "finished_at": stamp, "status": "success", "tool": "crafted", "tables": {},
        "mtime": mtime.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    });
    std::fs::write(manifest_path(&path), m.to_string()).unwrap();
    path
}

/// The median time of `n` runs of `backup check` (exit 0 expected), in seconds, each run
/// without the state record, so that none profits from a hash an earlier one remembered.
fn time_check(env: &Env, args: &[&str], n: usize) -> f64 {
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let _ = std::fs::remove_dir_all(env.path(".local/state"));
            let start = Instant::now();
            env.run(args).success();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

#[test]
fn backup_check_costs_the_same_for_1_mb_and_200_mb() {
    // Never connects: a config is enough, and crafted backups with valid manifests.
    let env = Env::empty();
    env.write_pg_config("mairie_bench", "");
    configure_backups(&env, 14, 3);
    std::fs::create_dir_all(backup_dir(&env)).unwrap();
    craft_backup(&env, "mairie_bench", 1 << 20, 2);
    let check = ["backup", "check"];
    let small = time_check(&env, &check, 5);
    craft_backup(&env, "mairie_bench", 200 << 20, 1);
    let large = time_check(&env, &check, 5);
    let deep = time_check(&env, &["backup", "check", "--deep"], 3);
    eprintln!("backup check: 1 MB {small:.3} s, 200 MB {large:.3} s; --deep 200 MB {deep:.3} s");
    // Reading 200 MB takes a few tenths of a second; starting the binary, a hundredth.
    assert!(
        large <= 3.0 * small + 0.1,
        "200 MB: {large:.3} s, 1 MB: {small:.3} s"
    );
    assert!(
        deep > 2.0 * large,
        "--deep reads the whole file: {deep:.3} s against {large:.3} s"
    );
}
