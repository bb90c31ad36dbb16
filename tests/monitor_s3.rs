//! The monitor's validated store in object storage (`validated_dir: s3://bucket/prefix`)
//! against the project's SeaweedFS: promotion (backup, manifest, record last), UNCHANGED,
//! keep_validated pruning that never touches a foreign key, archived reports, `monitor
//! verify` re-hashing every object, an object without its record (never a validated backup,
//! removed by a later scan), wrong credentials, a scan killed mid-upload or before it
//! cleaned the deposit, and a prefix another monitor's lease holds. Each test has a bucket
//! of its own, removed after it; the history is SQLite.

mod common;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use common::monitor::{daily, noise, sha, t, Backend, Mon, Serve, CENTRE, SETTINGS};
use common::s3::{
    credentials, endpoint, lease_body, runtime, sigterm, wait_for_upload, TestBucket,
};
use mairie_dba::storage::{ObjectInfo, S3Store};

const PREFIX: &str = "mon";
/// Where the centre's `mairie` backups go, under the prefix.
const DB_DIR: &str = "mon/ville/marseille/centre/mairie";

/// `monitor verify --now NOW --format json`, which must pass.
fn verified(m: &Mon, now: &str) -> common::Run {
    let r = m.run(&["monitor", "verify", "--now", now, "--format", "json"]);
    r.code(0);
    r
}

/// A monitor (SQLite history) expecting the centre's daily `mairie` backup, its validated
/// store in `s3://<bucket>/mon` with `settings` (lines under `monitor:`), the dev keys in its
/// environment.
fn monitor(bucket: &TestBucket, settings: &str) -> Mon {
    let c = credentials();
    let m = Mon::new(
        Backend::Sqlite,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    )
    .env("AWS_ACCESS_KEY_ID", &c.access_key_id)
    .env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    // The scan lock of a bucket store is in the state directory: the test's own.
    let state = m.dir.join("state").display().to_string();
    let m = m.env("MAIRIE_DBA_STATE_DIR", &state);
    m.configure_store(
        &format!("s3://{}/{PREFIX}", bucket.name),
        &format!(
            "{settings}  s3:\n    endpoint: {}\n    region: us-east-1\n    sse: AES256\n",
            endpoint()
        ),
    );
    m
}

/// Every object of the bucket, by key.
fn objects(store: &S3Store, rt: &tokio::runtime::Runtime) -> BTreeMap<String, ObjectInfo> {
    rt.block_on(store.list(""))
        .unwrap()
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect()
}

fn keys(store: &S3Store, rt: &tokio::runtime::Runtime) -> Vec<String> {
    objects(store, rt).into_keys().collect()
}

fn judged(v: &Value) -> Vec<(String, String)> {
    v["judged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["due"].as_str().unwrap().to_string(),
                j["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Deposits `file` for the centre's `mairie` with its report generated on `day` at 02:05.
/// The settings, with two validated versions kept.
fn keeping_two() -> String {
    SETTINGS.replace("keep_validated: 1", "keep_validated: 2")
}

fn deposit(m: &Mon, day: u32, file: &str, bytes: &[u8]) {
    let line = m.deposit(CENTRE, "mairie", "postgres", file, bytes);
    m.report(CENTRE, &t(day, "02:05"), vec![line]);
}

#[test]
fn a_scan_promotes_into_the_bucket_then_unchanged_pruning_and_archived_reports() {
    let bucket = TestBucket::new();
    let m = monitor(&bucket, &keeping_two());
    let rt = runtime();
    let s = rt.block_on(bucket.store(""));
    // Keys that are not the monitor's: beside the prefix, in it, and in a job's directory.
    let foreign = [
        "elsewhere/keep.txt".to_string(),
        format!("{PREFIX}/README.txt"),
        format!("{DB_DIR}/notes.txt"),
    ];
    for k in &foreign {
        rt.block_on(s.put_new(k, b"not the monitor's".to_vec()))
            .unwrap();
    }

    // Day 5: more than one part (8 MiB parts), streamed up and re-hashed.
    let one = noise(5, 9 * 1024 * 1024 + 17);
    deposit(&m, 5, "d1.dump", &one);
    let (code, v) = m.scan(&t(5, "03:30"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(judged(&v), [(t(5, "02:00"), "OK".to_string())], "{v:#}");
    assert_eq!(v["judged"][0]["promoted"], true);
    let o = objects(&s, &rt);
    let backup = &o[&format!("{DB_DIR}/d1.dump")];
    let record = &o[&format!("{DB_DIR}/d1.dump.validated.json")];
    let manifest = &o[&format!("{DB_DIR}/d1.dump.json")];
    assert_eq!(backup.size, one.len() as u64);
    assert!(
        record.modified >= backup.modified && record.modified >= manifest.modified,
        "the record is written last: {o:#?}"
    );
    let stored = rt
        .block_on(s.get_bytes(&format!("{DB_DIR}/d1.dump"), 64 << 20))
        .unwrap();
    assert!(stored == one, "the object holds other bytes");
    let r: Value = serde_json::from_slice(
        &rt.block_on(s.get_bytes(&format!("{DB_DIR}/d1.dump.validated.json"), 65536))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&r["file"], &r["sha256"], &r["size_bytes"], &r["job"]),
        (
            &json!("d1.dump"),
            &json!(sha(&one)),
            &json!(one.len()),
            &json!("centre-mairie")
        )
    );
    assert_eq!(
        rt.block_on(s.get_bytes(&format!("{DB_DIR}/d1.dump.json"), 65536))
            .unwrap(),
        b"{\"manifest\": true}"
    );
    assert!(
        m.deposited(CENTRE, "mairie").is_empty(),
        "{:?}",
        m.deposited(CENTRE, "mairie")
    );
    let report = format!("{PREFIX}/.reports/ville/marseille/centre/STATUS-20261205T020500Z.json");
    assert!(o.contains_key(&report), "{o:#?}");
    assert_eq!(
        v["archived"][0],
        format!("s3://{}/{report}", bucket.name),
        "{v:#}"
    );
    let h = m.json(&["monitor", "history", "centre-mairie"]);
    assert_eq!(h["history"][0]["status"], "OK", "{h:#}");
    assert_eq!(h["history"][0]["sha256"], sha(&one), "{h:#}");
    let st = m.json(&["monitor", "status"]);
    assert_eq!(
        (&st["status"], &st["jobs"][0]["status"]),
        (&json!("ok"), &json!("OK")),
        "{st:#}"
    );
    // Scanned again: nothing new, nothing sent again.
    let (code, v) = m.scan(&t(5, "04:00"));
    assert_eq!(code, 0, "{v:#}");
    assert!(judged(&v).is_empty(), "{v:#}");
    assert_eq!(
        objects(&s, &rt)[&format!("{DB_DIR}/d1.dump")].modified,
        backup.modified
    );

    // Day 6: the same bytes again, read from the bucket's records: UNCHANGED.
    deposit(&m, 6, "d2.dump", &one);
    let (code, v) = m.scan(&t(6, "02:10"));
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(judged(&v), [(t(6, "02:00"), "UNCHANGED".to_string())]);
    assert!(v["judged"][0]["message"]
        .as_str()
        .unwrap()
        .contains("d1.dump"));

    // Day 7: new bytes; keep_validated 2 removes day 5's backup, and only its keys.
    let three = noise(7, 300_000);
    deposit(&m, 7, "d3.dump", &three);
    let (code, v) = m.scan(&t(7, "02:10"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(judged(&v), [(t(7, "02:00"), "OK".to_string())]);
    assert_eq!(
        v["cleaned"],
        json!([format!("s3://{}/{DB_DIR}/d1.dump", bucket.name)]),
        "{v:#}"
    );
    let k = keys(&s, &rt);
    let mut want: Vec<String> = foreign.to_vec();
    for f in ["d2.dump", "d3.dump"] {
        for suffix in ["", ".json", ".validated.json"] {
            want.push(format!("{DB_DIR}/{f}{suffix}"));
        }
    }
    for day in 5..=7 {
        want.push(format!(
            "{PREFIX}/.reports/ville/marseille/centre/STATUS-202612{day:02}T020500Z.json"
        ));
    }
    want.sort();
    assert_eq!(k, want);
    // Nothing pending; verification finds both kept versions intact.
    assert!(rt.block_on(s.pending_uploads("")).unwrap().is_empty());
    let r = verified(&m, &t(7, "03:00"));
    let v = r.json();
    assert_eq!(v["jobs"][0]["files"].as_array().unwrap().len(), 2, "{v:#}");
    // The foreign key in the job's directory is listed, never removed.
    assert!(v["leftovers"].to_string().contains("notes.txt"), "{v:#}");
}

#[test]
fn verify_streams_every_object_and_finds_a_flipped_byte_and_a_lost_one() {
    let bucket = TestBucket::new();
    let m = monitor(&bucket, &keeping_two());
    let rt = runtime();
    let s = rt.block_on(bucket.store(""));
    let one = noise(1, 100_000);
    let two = noise(2, 9 * 1024 * 1024);
    deposit(&m, 5, "d1.dump", &one);
    assert_eq!(m.scan(&t(5, "03:30")).0, 0);
    deposit(&m, 6, "d2.dump", &two);
    assert_eq!(m.scan(&t(6, "03:30")).0, 0);
    let verify = |now: &str| {
        let r = m.run(&["monitor", "verify", "--now", now, "--format", "json"]);
        (r.code, r.json())
    };
    let (code, v) = verify(&t(6, "04:00"));
    assert_eq!(code, 0, "{v:#}");
    let files = &v["jobs"][0]["files"];
    assert_eq!(
        (&files[0]["verdict"], &files[1]["verdict"]),
        (&json!("intact"), &json!("intact")),
        "{v:#}"
    );
    assert_eq!(files[1]["sha256"], sha(&two));
    assert_eq!(
        files[1]["path"],
        format!("s3://{}/{DB_DIR}/d2.dump", bucket.name)
    );

    // One bit flipped in the newest object, its size unchanged: only a full read finds it.
    let key = format!("{DB_DIR}/d2.dump");
    let mut flipped = two.clone();
    flipped[5_000_000] ^= 0x01;
    rt.block_on(async {
        s.delete(&key).await.unwrap();
        s.put_new(&key, flipped.clone()).await.unwrap();
    });
    let (code, v) = verify(&t(6, "05:00"));
    assert_eq!(code, 2, "{v:#}");
    let j = &v["jobs"][0];
    assert_eq!(j["status"], "HASH_MISMATCH", "{v:#}");
    assert_eq!(j["files"][1]["verdict"], "mismatch", "{v:#}");
    assert_eq!(j["files"][1]["recorded_sha256"], sha(&two));
    assert_eq!(j["files"][1]["sha256"], sha(&flipped));
    assert_eq!(j["files"][0]["verdict"], "intact");
    let st = m.run(&["monitor", "status", "--format", "json"]);
    st.code(2);
    assert_eq!(st.json()["jobs"][0]["status"], "HASH_MISMATCH");
    // The page and the API read the history, whatever the store.
    {
        let web = Serve::start(&m, &["--no-scan"]);
        let (code, one) = web.json("/api/jobs/centre-mairie");
        assert_eq!(code, 200);
        assert_eq!(one["job"]["status"], "HASH_MISMATCH", "{one:#}");
        let (code, _, page) = web.get("/");
        assert_eq!(code, 200);
        assert!(page.contains("HASH_MISMATCH"));
    }

    // The older object deleted, its record left: missing.
    rt.block_on(s.delete(&format!("{DB_DIR}/d1.dump"))).unwrap();
    let (code, v) = verify(&t(6, "06:00"));
    assert_eq!(code, 2, "{v:#}");
    let verdicts: Vec<_> = v["jobs"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["file"].clone(), f["verdict"].clone()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (json!("d1.dump"), json!("missing")),
            (json!("d2.dump"), json!("mismatch"))
        ],
        "{v:#}"
    );
    // Verification changed nothing in the bucket.
    assert!(keys(&s, &rt).contains(&format!("{DB_DIR}/d1.dump.validated.json")));
}

#[test]
fn wrong_credentials_are_one_line_naming_the_bucket_and_nothing_is_promoted() {
    let bucket = TestBucket::new();
    let wrong = "Wr0ngSecretThatMustNeverShow";
    let m = monitor(&bucket, SETTINGS).env("AWS_SECRET_ACCESS_KEY", wrong);
    deposit(&m, 5, "d1.dump", b"a good backup");
    let r = m.run(&["monitor", "scan", "--now", &t(5, "03:30")]);
    r.one_line_error();
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(&bucket.name))
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(lines[0].contains("SignatureDoesNotMatch"), "{}", r.stderr);
    assert!(
        !r.stderr.contains(wrong) && !r.stdout.contains(wrong),
        "{}",
        r.stderr
    );
    // Nothing promoted, nothing recorded: the file waits in the deposit.
    assert_eq!(
        m.deposited(CENTRE, "mairie"),
        ["d1.dump", "d1.dump.json"],
        "{}",
        r.stderr
    );
    let rt = runtime();
    assert!(keys(&rt.block_on(bucket.store("")), &rt).is_empty());
    let r = m.run(&["monitor", "verify", "--now", &t(5, "04:00")]);
    r.one_line_error();
    assert!(r.stderr.contains(&bucket.name) && !r.stderr.contains(wrong));
    // With the right keys, the next scan promotes it.
    let c = credentials();
    let m = m.env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    assert_eq!(m.scan(&t(5, "03:40")).0, 0);
    assert!(m.deposited(CENTRE, "mairie").is_empty());
}

#[test]
fn a_scan_killed_mid_upload_leaves_no_validated_backup_and_the_next_scan_cleans_up() {
    let bucket = TestBucket::new();
    let m = monitor(&bucket, SETTINGS);
    let rt = runtime();
    let s = rt.block_on(bucket.store(""));
    let big = noise(9, 160 * 1024 * 1024);
    deposit(&m, 5, "d1.dump", &big);
    let mut child = m
        .command(&["monitor", "scan", "--now", &t(5, "03:30")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_upload(&s, &rt, "");
    assert!(child.try_wait().unwrap().is_none(), "the scan ended first");
    // Killed as a crash would: no chance to abort.
    child.kill().unwrap();
    child.wait().unwrap();
    let pending = rt.block_on(s.pending_uploads("")).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].key, format!("{DB_DIR}/d1.dump"));
    // No validated backup visible: not in the bucket, still in the deposit, not OK.
    let k = keys(&s, &rt);
    assert!(
        !k.iter().any(|k| k.starts_with(DB_DIR)),
        "a backup object or record: {k:?}"
    );
    assert_eq!(m.deposited(CENTRE, "mairie"), ["d1.dump", "d1.dump.json"]);
    let st = m.json(&["monitor", "status"]);
    assert_ne!(st["jobs"][0]["status"], "OK", "{st:#}");

    // The next scan aborts what the killed one left, then promotes the file whole.
    let (code, v) = m.scan(&t(5, "03:40"));
    assert_eq!(code, 0, "{v:#}");
    assert!(
        v["cleaned"][0]
            .as_str()
            .unwrap()
            .contains("aborted the unfinished upload"),
        "{v:#}"
    );
    assert!(rt.block_on(s.pending_uploads("")).unwrap().is_empty());
    let o = objects(&s, &rt);
    assert_eq!(o[&format!("{DB_DIR}/d1.dump")].size, big.len() as u64);
    assert!(o.contains_key(&format!("{DB_DIR}/d1.dump.validated.json")));
    let r = verified(&m, &t(5, "04:00"));
    assert_eq!(r.json()["jobs"][0]["files"][0]["sha256"], sha(&big));
}

/// Stopped by SIGTERM mid-upload: the promotion's thread is refused its next write, the
/// upload is aborted before the process ends, and the file stays in the deposit.
#[test]
fn a_scan_stopped_mid_upload_aborts_it_before_exiting() {
    let bucket = TestBucket::new();
    let m = monitor(&bucket, SETTINGS);
    let rt = runtime();
    let s = rt.block_on(bucket.store(""));
    let big = noise(11, 160 * 1024 * 1024);
    deposit(&m, 5, "d1.dump", &big);
    let child = m
        .command(&["monitor", "scan", "--now", &t(5, "03:30")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_upload(&s, &rt, "");
    let (code, stderr) = sigterm(child);
    // A check stopped is UNKNOWN (3).
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        rt.block_on(s.pending_uploads("")).unwrap().is_empty(),
        "an upload left behind: {stderr}"
    );
    let k = keys(&s, &rt);
    assert!(
        !k.iter().any(|k| k.starts_with(DB_DIR)),
        "a backup object or record: {k:?}"
    );
    assert_eq!(m.deposited(CENTRE, "mairie"), ["d1.dump", "d1.dump.json"]);
}

#[test]
fn object_storage_settings_of_the_monitor_are_checked() {
    let m = Mon::new(
        Backend::Sqlite,
        &daily("centre-mairie", CENTRE, "mairie", "postgres", "02:00"),
    );
    m.configure_store(
        "s3://validated/mon",
        &format!(
            "{SETTINGS}  s3:\n    endpoint: {}\n    bucket_key: x\n",
            endpoint()
        ),
    );
    m.run(&["monitor", "status"])
        .code(3)
        .one_line_error()
        .stderr_has("unknown field `bucket_key`");
    m.configure_store(
        "validated",
        &format!("{SETTINGS}  s3:\n    region: eu-west-3\n"),
    );
    m.run(&["monitor", "status"])
        .code(3)
        .one_line_error()
        .stderr_has("monitor.s3: options for object storage, but validated_dir");
}

#[test]
fn an_object_without_its_record_is_never_a_validated_backup() {
    let bucket = TestBucket::new();
    let m = monitor(&bucket, SETTINGS);
    let rt = runtime();
    let s = rt.block_on(bucket.store(""));
    // What a promotion killed between its upload and its record leaves: the backup and its
    // manifest, no record.
    let same = b"the same bytes as the deposit".to_vec();
    rt.block_on(async {
        s.put_new(&format!("{DB_DIR}/d0.dump"), same.clone())
            .await
            .unwrap();
        s.put_new(&format!("{DB_DIR}/d0.dump.json"), b"{}".to_vec())
            .await
            .unwrap();
    });
    deposit(&m, 5, "d1.dump", &same);
    let (code, v) = m.scan(&t(5, "03:30"));
    // Not UNCHANGED: d0.dump was never validated.
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(judged(&v), [(t(5, "02:00"), "OK".to_string())], "{v:#}");
    let r = verified(&m, &t(5, "04:00"));
    let v = r.json();
    let files: Vec<_> = v["jobs"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].clone())
        .collect();
    assert_eq!(files, [json!("d1.dump")], "{v:#}");
    assert!(
        v["leftovers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["path"] == format!("s3://{}/{DB_DIR}/d0.dump", bucket.name)),
        "{v:#}"
    );
    // Not removed by keep_validated (1): only recorded versions are.
    let k = keys(&s, &rt);
    assert!(k.contains(&format!("{DB_DIR}/d0.dump")), "{k:?}");
    assert!(
        k.contains(&format!("{DB_DIR}/d1.dump.validated.json")),
        "{k:?}"
    );

    // Once more than a minute old, a later scan removes it with its manifest (a promotion
    // left it: its manifest is beside it); a key of that directory no promotion wrote stays.
    rt.block_on(s.put_new(&format!("{DB_DIR}/notes.txt"), b"mine".to_vec()))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(62));
    let (code, v) = m.scan(&t(5, "04:30"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        v["cleaned"],
        json!([format!(
            "removed s3://{}/{DB_DIR}/d0.dump, left without a record by a scan that did not finish",
            bucket.name
        )]),
        "{v:#}"
    );
    let k = keys(&s, &rt);
    let mut want: Vec<String> = [
        "d1.dump",
        "d1.dump.json",
        "d1.dump.validated.json",
        "notes.txt",
    ]
    .iter()
    .map(|f| format!("{DB_DIR}/{f}"))
    .collect();
    want.insert(
        0,
        format!("{PREFIX}/.reports/ville/marseille/centre/STATUS-20261205T020500Z.json"),
    );
    assert_eq!(k, want);
}

/// The file rewritten in place between the scan's hash and its upload (an agent writing
/// again): the bytes sent are hashed on the way, the upload is aborted before it completes,
/// and the file stays in the deposit. Through the library, to choose the moment.
#[test]
fn bytes_other_than_those_validated_abort_the_upload_and_stay_in_the_deposit() {
    use mairie_dba::monitor::hash;
    use mairie_dba::monitor::remote::{Bucket, Remote};
    use mairie_dba::monitor::store::Record;
    use std::io::{Seek, SeekFrom, Write};

    let bucket = TestBucket::new();
    let m = monitor(&bucket, SETTINGS);
    let c = credentials();
    // One test per process (nextest): the process's environment is the test's own.
    std::env::set_var("AWS_ACCESS_KEY_ID", &c.access_key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    let cfg = mairie_dba::config::Config::load(&m.dir.join("config_global.yml")).unwrap();
    let job = cfg.monitor.unwrap().jobs[0].clone();
    let bytes = noise(3, 9 * 1024 * 1024);
    deposit(&m, 5, "d1.dump", &bytes);
    let path = m.site("deposits", CENTRE).join("mairie/d1.dump");
    let hashed = hash::hash_file(&path).unwrap();
    // The same inode, the same size, one byte changed after it was measured.
    let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    w.seek(SeekFrom::Start(8_500_000)).unwrap();
    w.write_all(&[bytes[8_500_000] ^ 0x01]).unwrap();
    drop(w);
    let record = Record {
        file: "d1.dump".into(),
        size_bytes: hashed.size_bytes,
        sha256: hashed.sha256.clone(),
        validated_at: chrono::Utc::now(),
        job: job.id.clone(),
        due: chrono::Utc::now(),
    };
    let rt = runtime();
    let b = Bucket {
        url: bucket.url(PREFIX),
        options: common::s3::options(),
    };
    let remote = rt.block_on(Remote::open(&b)).unwrap();
    let src = path.clone();
    let err = rt
        .block_on(rt.spawn_blocking(move || {
            let file = hash::open_no_follow(&src).unwrap();
            remote.promote(&src, &file, &hashed, &job, &record, false)
        }))
        .unwrap()
        .unwrap_err();
    assert!(
        err.contains("not those validated") && err.contains("upload aborted, left in the deposit"),
        "{err}"
    );
    assert!(
        err.contains(&format!("s3://{}/{DB_DIR}/d1.dump", bucket.name)),
        "{err}"
    );
    assert_eq!(m.deposited(CENTRE, "mairie"), ["d1.dump", "d1.dump.json"]);
    let s = rt.block_on(bucket.store(""));
    assert!(keys(&s, &rt).is_empty());
    assert!(rt.block_on(s.pending_uploads("")).unwrap().is_empty());
}

/// A scan killed after it wrote the record but before it cleaned the deposit (and before
/// the history heard of it): the next scan finds the deposit's file already recorded in the
/// bucket with the same bytes, sends nothing again, cleans the deposit and judges it OK.
#[test]
fn a_scan_killed_before_cleaning_the_deposit_is_finished_without_sending_again() {
    let bucket = TestBucket::new();
    let m = monitor(&bucket, SETTINGS);
    let rt = runtime();
    let s = rt.block_on(bucket.store(""));
    let one = noise(5, 300_000);
    deposit(&m, 5, "d1.dump", &one);
    let (code, v) = m.scan(&t(5, "03:30"));
    assert_eq!(code, 0, "{v:#}");
    let before = objects(&s, &rt);
    // What the kill leaves: the deposit whole (file, manifest, report) and a history that
    // never heard of the judgement, beside the bucket's backup, manifest and record.
    deposit(&m, 5, "d1.dump", &one);
    let db = rusqlite::Connection::open(m.dir.join("history/monitor.db")).unwrap();
    for table in ["monitor_occurrences", "monitor_status_changes"] {
        let n = db
            .execute(
                &format!("DELETE FROM {table} WHERE job_id = 'centre-mairie'"),
                [],
            )
            .unwrap();
        assert!(n > 0, "{table}: no row of the first scan");
    }
    drop(db);
    let st = m.json(&["monitor", "status"]);
    assert_ne!(st["jobs"][0]["status"], "OK", "{st:#}");

    let (code, v) = m.scan(&t(5, "03:40"));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(judged(&v), [(t(5, "02:00"), "OK".to_string())], "{v:#}");
    assert_eq!(v["judged"][0]["promoted"], true, "{v:#}");
    assert!(
        m.deposited(CENTRE, "mairie").is_empty(),
        "{:?}",
        m.deposited(CENTRE, "mairie")
    );
    let after = objects(&s, &rt);
    for f in ["d1.dump", "d1.dump.validated.json"] {
        let k = format!("{DB_DIR}/{f}");
        assert_eq!(
            (after[&k].size, &after[&k].modified),
            (before[&k].size, &before[&k].modified),
            "{k} was sent again"
        );
    }
    assert!(rt.block_on(s.pending_uploads("")).unwrap().is_empty());
    let h = m.json(&["monitor", "history", "centre-mairie"]);
    assert_eq!(
        (&h["history"][0]["status"], &h["history"][0]["sha256"]),
        (&json!("OK"), &json!(sha(&one))),
        "{h:#}"
    );
    let r = verified(&m, &t(5, "04:00"));
    assert_eq!(r.json()["jobs"][0]["files"][0]["sha256"], sha(&one));
}

/// A second monitor scanning the same prefix from another machine is refused while the
/// first holds the prefix's lease, with one line naming it; nothing is promoted.
#[test]
fn a_prefix_scanned_by_another_monitor_is_refused_naming_it() {
    let bucket = TestBucket::new();
    let m = monitor(&bucket, SETTINGS);
    let rt = runtime();
    let s = rt.block_on(bucket.store(""));
    let key = format!("{PREFIX}/.scan.lease");
    let lease = lease_body("supervision-2", 777, "monitor scan", "2026-12-05T03:29:00Z");
    rt.block_on(s.put_new(&key, lease)).unwrap();
    deposit(&m, 5, "d1.dump", b"a good backup");
    let r = m.run(&["monitor", "scan", "--now", &t(5, "03:30")]);
    r.code(3).one_line_error().stderr_has(&format!(
        "s3://{}/{key}: this prefix is in use by monitor scan (pid 777 on supervision-2 since \
         2026-12-05T03:29:00Z)",
        bucket.name
    ));
    assert_eq!(m.deposited(CENTRE, "mairie"), ["d1.dump", "d1.dump.json"]);
    assert_eq!(keys(&s, &rt), std::slice::from_ref(&key));
    // Once the other monitor has let go, the scan promotes, and leaves no lease behind.
    rt.block_on(s.delete(&key)).unwrap();
    assert_eq!(m.scan(&t(5, "03:40")).0, 0);
    assert!(m.deposited(CENTRE, "mairie").is_empty());
    assert!(!keys(&s, &rt).contains(&key));
}
