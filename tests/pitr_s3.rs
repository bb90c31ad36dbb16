//! The WAL archive in object storage (`pitr.<target>.archive_dir: s3://bucket/prefix`)
//! against the project's SeaweedFS: `wal push` writes the same names and format as on disk,
//! create-only; `wal fetch` hands back the bytes pushed, hash checked, and answers with the
//! exit statuses PostgreSQL acts on; wrong credentials are named, never shown. Then a real
//! cluster archiving into a bucket with its base backups beside: list, verify, check,
//! restore, drill and retention read and write the bucket only; a flipped byte is found; a
//! killed base backup's upload is cleaned by the next run.

#[path = "common/pitr_cluster.rs"]
mod cluster;
mod common;

use cluster::{fake_segment, run, text, Cluster};
use common::s3::{credentials, endpoint, runtime, sigterm, wait_for_upload, TestBucket};
use common::*;
use mairie_dba::storage::S3Store;
use sha2::{Digest, Sha256};

const PREFIX: &str = "walarchive";
const SYSID: u64 = 7_300_000_000_000_000_001;
const NAME: &str = "000000010000000000000003";
const NOT_FOUND: i32 = 1;
const ABORT: i32 = 255;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A config whose target `postgres` archives into `s3://<bucket>/walarchive`, with the dev
/// store's keys in the environment. `wal` commands run in the env's directory.
fn env_in(bucket: &TestBucket) -> Env {
    let mut env = Env::empty();
    env.write_pg_config("postgres", "");
    env.write_global(&format!(
        "pitr:\n  postgres:\n    archive_dir: s3://{b}/{PREFIX}\n    base_dir: s3://{b}/base\n    \
         s3:\n      endpoint: {ep}\n      region: us-east-1\n",
        b = bucket.name,
        ep = endpoint()
    ));
    let c = credentials();
    env.set_env("AWS_ACCESS_KEY_ID", &c.access_key_id);
    env.set_env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    std::fs::create_dir_all(env.path("pg_wal")).unwrap();
    env
}

fn keys(store: &S3Store, rt: &tokio::runtime::Runtime) -> Vec<String> {
    rt.block_on(store.list(""))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

fn segment_key(bytes: &[u8]) -> String {
    format!("{PREFIX}/wal/0000000100000000/{NAME}-{}.zst", sha256(bytes))
}

/// What is in `pg_wal/` besides `keep`: nothing, a fetch leaves no temporary file.
fn others_in_pg_wal(env: &Env, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(env.path("pg_wal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn a_pushed_segment_is_named_as_on_disk_pushed_again_is_success_and_fetched_byte_identical() {
    let bucket = TestBucket::new();
    let env = env_in(&bucket);
    let seg = fake_segment(SYSID, |i| (i / 4096 % 251) as u8);
    env.write(&format!("pg_wal/{NAME}"), &seg);
    env.run(&["wal", "push", &format!("pg_wal/{NAME}")])
        .success()
        .lacks(&credentials().secret_access_key);

    let rt = runtime();
    let store = rt.block_on(bucket.store(""));
    let key = segment_key(&seg);
    assert_eq!(
        keys(&store, &rt),
        vec![format!("{PREFIX}/archive.json"), key.clone()]
    );
    // zstd with its checksum, decompressing to the segment.
    let object = rt.block_on(store.get_bytes(&key, 32 << 20)).unwrap();
    assert!(object.len() < seg.len());
    assert_eq!(object[4] & 0x04, 0x04, "frame checksum flag");
    assert_eq!(zstd::decode_all(&object[..]).unwrap(), seg);
    let info: serde_json::Value = serde_json::from_slice(
        &rt.block_on(store.get_bytes(&format!("{PREFIX}/archive.json"), 1 << 16))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(info["system_identifier"], SYSID.to_string());
    assert_eq!(info["wal_segment_size"], 16 << 20);
    let before = rt.block_on(store.head(&key)).unwrap().unwrap();

    // Again, same content: success, nothing new, the object untouched.
    env.run(&["wal", "push", &format!("pg_wal/{NAME}")])
        .success()
        .stderr_has("already archived with the same content");
    assert_eq!(keys(&store, &rt).len(), 2);
    assert_eq!(rt.block_on(store.head(&key)).unwrap().unwrap(), before);

    // Fetch gives back every byte, into %p, and nothing else.
    env.run(&["wal", "fetch", NAME, "pg_wal/RECOVERYXLOG"])
        .code(0);
    assert_eq!(std::fs::read(env.path("pg_wal/RECOVERYXLOG")).unwrap(), seg);
    assert!(others_in_pg_wal(&env, &[NAME, "RECOVERYXLOG"]).is_empty());
}

#[test]
fn a_different_content_under_an_archived_name_or_from_another_cluster_is_refused() {
    let bucket = TestBucket::new();
    let env = env_in(&bucket);
    let seg = fake_segment(SYSID, |i| (i % 7) as u8);
    env.write(&format!("pg_wal/{NAME}"), &seg);
    env.run(&["wal", "push", &format!("pg_wal/{NAME}")])
        .success();
    let rt = runtime();
    let store = rt.block_on(bucket.store(""));
    let key = segment_key(&seg);
    let before = rt.block_on(store.head(&key)).unwrap().unwrap();

    let other = fake_segment(SYSID, |i| (i % 11) as u8);
    env.write(&format!("pg_wal/{NAME}"), &other);
    env.run(&["wal", "push", &format!("pg_wal/{NAME}")])
        .code(1)
        .stderr_has("already archived with different content")
        .stderr_has(&format!("s3://{}/{key}", bucket.name))
        .stderr_has("refusing to overwrite");
    assert_eq!(
        keys(&store, &rt),
        vec![format!("{PREFIX}/archive.json"), key.clone()]
    );
    assert_eq!(rt.block_on(store.head(&key)).unwrap().unwrap(), before);

    // A segment of another cluster is refused before anything is written.
    let foreign = "000000010000000000000004";
    env.write(
        &format!("pg_wal/{foreign}"),
        fake_segment(SYSID + 1, |i| (i % 5) as u8),
    );
    env.run(&["wal", "push", &format!("pg_wal/{foreign}")])
        .code(1)
        .stderr_has("refusing to mix two clusters");
    assert_eq!(keys(&store, &rt).len(), 2);
}

#[test]
fn fetch_of_a_missing_segment_is_the_end_of_the_archive_and_an_altered_object_stops_recovery() {
    let bucket = TestBucket::new();
    let env = env_in(&bucket);
    // Not there (an empty bucket, then an archive without it): "no such file" for PostgreSQL.
    env.run(&["wal", "fetch", NAME, "pg_wal/RECOVERYXLOG"])
        .code(NOT_FOUND);
    let seg = fake_segment(SYSID, |i| (i / 512 % 13) as u8);
    env.write(&format!("pg_wal/{NAME}"), &seg);
    env.run(&["wal", "push", &format!("pg_wal/{NAME}")])
        .success();
    std::fs::remove_file(env.path(&format!("pg_wal/{NAME}"))).unwrap();
    env.run(&[
        "wal",
        "fetch",
        "000000010000000000000009",
        "pg_wal/RECOVERYXLOG",
    ])
    .code(NOT_FOUND)
    .stderr_has("not in the archive");
    assert!(!env.path("pg_wal/RECOVERYXLOG").exists());

    let rt = runtime();
    let store = rt.block_on(bucket.store(""));
    let key = segment_key(&seg);
    let good = rt.block_on(store.get_bytes(&key, 32 << 20)).unwrap();
    // One byte flipped inside the compressed data.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    rt.block_on(store.delete(&key)).unwrap();
    rt.block_on(store.put_new(&key, flipped)).unwrap();
    env.run(&["wal", "fetch", NAME, "pg_wal/RECOVERYXLOG"])
        .code(ABORT)
        .stderr_has(&format!("s3://{}/{key}", bucket.name))
        .stderr_has("recovery stopped");
    assert!(others_in_pg_wal(&env, &[]).is_empty());

    // A valid zstd stream of other bytes under the name: the hash in the name refuses it.
    let mut other = seg.clone();
    other[1 << 20] ^= 1;
    rt.block_on(store.delete(&key)).unwrap();
    rt.block_on(store.put_new(&key, zstd::encode_all(&other[..], 3).unwrap()))
        .unwrap();
    env.run(&["wal", "fetch", NAME, "pg_wal/RECOVERYXLOG"])
        .code(ABORT)
        .stderr_has("its name says");
    assert!(others_in_pg_wal(&env, &[]).is_empty());

    // The original back: fetched.
    rt.block_on(store.delete(&key)).unwrap();
    rt.block_on(store.put_new(&key, good)).unwrap();
    env.run(&["wal", "fetch", NAME, "pg_wal/RECOVERYXLOG"])
        .code(0);
    assert_eq!(std::fs::read(env.path("pg_wal/RECOVERYXLOG")).unwrap(), seg);
}

#[test]
fn wrong_credentials_are_named_never_shown_by_wal_and_pitr_commands() {
    let bucket = TestBucket::new();
    let mut env = env_in(&bucket);
    let wrong = "Wr0ngSecretThatMustNeverShow";
    env.set_env("AWS_SECRET_ACCESS_KEY", wrong);
    env.write(&format!("pg_wal/{NAME}"), fake_segment(SYSID, |_| 0));
    env.run(&["wal", "push", &format!("pg_wal/{NAME}")])
        .code(1)
        .stderr_has(&format!("s3://{}/", bucket.name))
        .stderr_has("SignatureDoesNotMatch")
        .lacks(wrong);
    // A fetch that cannot read the archive must not end recovery as if the WAL ended.
    env.run(&["wal", "fetch", NAME, "pg_wal/RECOVERYXLOG"])
        .code(ABORT)
        .stderr_has(&format!("s3://{}/", bucket.name))
        .stderr_has("SignatureDoesNotMatch")
        .lacks(wrong);
    let rt = runtime();
    assert!(keys(&rt.block_on(bucket.store("")), &rt).is_empty());

    // The commands that read the archive fail on one line naming the bucket and the
    // service's refusal, never the secret.
    for args in [&["pitr", "verify"][..], &["pitr", "list"]] {
        env.run(args)
            .code(1)
            .stderr_has(&format!("s3://{}/", bucket.name))
            .stderr_has("SignatureDoesNotMatch")
            .lacks(wrong);
    }
}

// ---------------------------------------------------------------------------------------------
// A real cluster archiving into a bucket, its base backups beside.

fn in_bucket(tag: &str, bucket: &TestBucket) -> Cluster {
    let c = credentials();
    Cluster::in_bucket(
        tag,
        &bucket.name,
        &endpoint(),
        (&c.access_key_id, &c.secret_access_key),
    )
}

fn doc(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

fn ok(out: std::process::Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    doc(&out)
}

/// Stops a restored server when dropped.
struct Stopper(std::path::PathBuf);

impl Drop for Stopper {
    fn drop(&mut self) {
        cluster::stop_now(&self.0);
    }
}

fn objects(bucket: &TestBucket, rt: &tokio::runtime::Runtime, under: &str) -> Vec<String> {
    let store = rt.block_on(bucket.store(""));
    rt.block_on(store.list(under))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Replaces an object by the same bytes with one flipped.
fn flip_byte(bucket: &TestBucket, rt: &tokio::runtime::Runtime, key: &str, at: usize) {
    let store = rt.block_on(bucket.store(""));
    let mut bytes = rt.block_on(store.get_bytes(key, 1 << 30)).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x40;
    rt.block_on(store.delete(key)).unwrap();
    rt.block_on(store.put_new(key, bytes)).unwrap();
}

#[test]
fn base_backups_and_wal_in_a_bucket_list_verify_check_restore_drill_and_keep_base() {
    let bucket = TestBucket::new();
    let c = in_bucket("s3", &bucket);
    let rt = runtime();
    c.switch(2);
    let first = ok(run(&c, &["--format", "json", "pitr", "base-backup"]));
    let m = &first["targets"][0]["backup"];
    let file = m["file"].as_str().unwrap().to_string();
    assert!(m["etag"].is_string(), "{first}");
    let base_keys = objects(&bucket, &rt, "base");
    assert_eq!(
        base_keys,
        vec![format!("base/{file}"), format!("base/{file}.json")],
        "the backup and its manifest, nothing else"
    );
    assert!(rt
        .block_on(rt.block_on(bucket.store("")).pending_uploads(""))
        .unwrap()
        .is_empty());
    // Nothing of the base backups or the archive on the local disk.
    assert!(!c.ws.dir.join("base").exists() && !c.ws.dir.join("wal-archive").exists());

    c.psql("CREATE TABLE marker(v text); INSERT INTO marker VALUES ('after the base backup')");
    let last = c.psql("SELECT pg_walfile_name(pg_switch_wal())");
    c.wait_archived(&last);

    let list = ok(run(&c, &["--format", "json", "pitr", "list"]));
    let t = &list["targets"][0];
    assert_eq!(t["base_backups"][0]["status"], "good", "{list}");
    assert_eq!(t["window"]["from_backup"], file.as_str(), "{list}");
    assert!(t["window"]["gap_after"].is_null(), "{list}");

    let verify = ok(run(&c, &["--format", "json", "pitr", "verify"]));
    let t = &verify["targets"][0];
    assert_eq!(t["status"], "success", "{verify}");
    assert_eq!(t["base_backups"][0]["status"], "intact", "{verify}");
    assert!(t["files"].as_u64().unwrap() >= 3, "{verify}");
    assert_eq!(
        t["archive_dir"],
        format!("s3://{}/wal-archive", bucket.name),
        "{verify}"
    );

    let check = run(&c, &["--format", "json", "pitr", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(text(&check).contains(&bucket.name), "{}", text(&check));

    // A restore to the latest point reads the base backup and the WAL from the bucket.
    let data = c.ws.dir.join("restored");
    let out = run(
        &c,
        &[
            "--format",
            "json",
            "pitr",
            "restore",
            "--latest",
            "--pgdata",
            data.to_str().unwrap(),
            "--start",
            "--timeout",
            "120",
        ],
    );
    let _stop = Stopper(data.clone());
    let restored = ok(out);
    assert_eq!(restored["ending"]["state"], "promoted", "{restored}");
    let port = restored["port"].as_u64().unwrap() as u16;
    assert_eq!(
        c.psql_at(port, "SELECT v FROM marker"),
        "after the base backup"
    );
    drop(_stop);

    let drill = ok(run(&c, &["--format", "json", "pitr", "drill"]));
    assert_eq!(drill["targets"][0]["status"], "success", "{drill}");

    // Two more: keep_base (2) keeps the newest two, and the WAL from the oldest kept one.
    let mut starts = Vec::new();
    for _ in 0..2 {
        c.switch(1);
        let d = ok(run(&c, &["--format", "json", "pitr", "base-backup"]));
        starts.push(
            d["targets"][0]["backup"]["start_wal"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let kept: Vec<String> = objects(&bucket, &rt, "base");
    assert_eq!(kept.len(), 4, "two backups and their manifests: {kept:?}");
    assert!(!kept.iter().any(|k| k.contains(&file)), "{kept:?}");
    let segments: Vec<String> = objects(&bucket, &rt, "wal-archive/wal")
        .into_iter()
        .filter_map(|k| {
            let name = k.rsplit('/').next()?.split('-').next()?.to_string();
            (name.len() == 24).then_some(name)
        })
        .collect();
    assert!(
        segments.iter().all(|s| s.as_str() >= starts[0].as_str()),
        "WAL older than the oldest kept backup ({}) is left: {segments:?}",
        starts[0]
    );
    assert!(segments.contains(&starts[0]), "{segments:?}");

    // A flipped byte: in a base backup the ETag (and the hash) say so; in a segment the
    // hash in its name does.
    let newest = kept
        .iter()
        .find(|k| k.ends_with(".tar.zst"))
        .unwrap()
        .clone();
    flip_byte(&bucket, &rt, &newest, 4096);
    let seg_key = objects(&bucket, &rt, "wal-archive/wal")
        .into_iter()
        .find(|k| k.contains(&format!("/{}-", starts[1])))
        .unwrap();
    flip_byte(&bucket, &rt, &seg_key, 100);
    let out = run(&c, &["--format", "json", "pitr", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = doc(&out);
    let t = &v["targets"][0];
    let bad: Vec<&serde_json::Value> = t["base_backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["status"] != "intact")
        .collect();
    assert_eq!(bad.len(), 1, "{v}");
    assert!(newest.ends_with(bad[0]["file"].as_str().unwrap()), "{v}");
    assert_eq!(
        t["corrupt"][0]["file"],
        format!("s3://{}/{seg_key}", bucket.name),
        "{v}"
    );
}

#[test]
fn a_killed_base_backup_leaves_no_backup_and_the_next_run_cleans_its_upload() {
    let bucket = TestBucket::new();
    let c = in_bucket("s3-killed", &bucket);
    let rt = runtime();
    // What a killed run leaves: an upload begun and never completed, and an object without
    // a manifest (the run died between the two).
    let store = rt.block_on(bucket.store(""));
    let mut upload = rt
        .block_on(store.upload("base/base-20000101T000000.000Z.tar.zst"))
        .unwrap();
    rt.block_on(upload.write(&vec![7u8; 6 << 20])).unwrap();
    std::mem::forget(upload);
    rt.block_on(store.put_new("base/base-20000101T000001.000Z.tar.zst", b"x".to_vec()))
        .unwrap();
    rt.block_on(store.put_new("base/notes.txt", b"not ours".to_vec()))
        .unwrap();
    let pending = rt.block_on(store.pending_uploads("")).unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");

    let list = ok(run(&c, &["--format", "json", "pitr", "list"]));
    let t = &list["targets"][0];
    assert_eq!(t["base_backups"][0]["status"], "unusable", "{list}");
    assert!(t["window"].is_null(), "{list}");

    c.switch(1);
    ok(run(&c, &["--format", "json", "pitr", "base-backup"]));
    assert!(rt.block_on(store.pending_uploads("")).unwrap().is_empty());
    let keys = objects(&bucket, &rt, "base");
    // The manifest-less object is younger than a minute: left (another run might have
    // been finishing it); the foreign key is never touched.
    assert!(keys.contains(&"base/notes.txt".to_string()), "{keys:?}");
    assert!(
        keys.contains(&"base/base-20000101T000001.000Z.tar.zst".to_string()),
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".json")).count(),
        1,
        "{keys:?}"
    );
}

/// Stopped by SIGTERM while the base backup streams up: the upload is aborted before the
/// process ends; nothing is left under the base backups' prefix, not even parts.
#[test]
fn a_base_backup_stopped_mid_upload_aborts_it_before_exiting() {
    let bucket = TestBucket::new();
    let c = in_bucket("s3-stop", &bucket);
    c.psql(
        "CREATE TABLE gros AS SELECT g, md5(g::text) || md5((g * 7)::text) \
         || md5((g * 13)::text) AS t FROM generate_series(1, 1200000) g",
    );
    let rt = runtime();
    let store = rt.block_on(bucket.store(""));
    let child = std::process::Command::new(cluster::BIN)
        .current_dir(&c.ws.dir)
        .arg("-c")
        .arg(c.ws.config())
        .args(["pitr", "base-backup"])
        .env("MAIRIE_PITR_TEST_UNSET_PASSWORD", "unused")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .envs(c.ws.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_upload(&store, &rt, "base");
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (code, stderr) = sigterm(child);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        rt.block_on(store.pending_uploads("")).unwrap().is_empty(),
        "an upload left behind: {stderr}"
    );
    assert!(objects(&bucket, &rt, "base").is_empty(), "{stderr}");
}
