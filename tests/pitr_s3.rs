//! The WAL archive in object storage (`pitr.<target>.archive_dir: s3://bucket/prefix`)
//! against the project's SeaweedFS: `wal push` writes the same names and format as on disk,
//! create-only; `wal fetch` hands back the bytes pushed, hash checked, and answers with the
//! exit statuses PostgreSQL acts on; wrong credentials are named, never shown; the `pitr`
//! commands that read the archive refuse one in a bucket.

#[path = "common/pitr_cluster.rs"]
mod cluster;
mod common;

use cluster::fake_segment;
use common::s3::{credentials, endpoint, TestBucket};
use common::*;
use mairie_dba::storage::S3Store;
use sha2::{Digest, Sha256};

const PREFIX: &str = "walarchive";
const SYSID: u64 = 7_300_000_000_000_000_001;
const NAME: &str = "000000010000000000000003";
const NOT_FOUND: i32 = 1;
const ABORT: i32 = 255;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A config whose target `postgres` archives into `s3://<bucket>/walarchive`, with the dev
/// store's keys in the environment. `wal` commands run in the env's directory.
fn env_in(bucket: &TestBucket) -> Env {
    let mut env = Env::empty();
    env.write_pg_config("postgres", "");
    env.write_global(&format!(
        "pitr:\n  postgres:\n    archive_dir: s3://{b}/{PREFIX}\n    s3:\n      endpoint: {ep}\n      \
         region: us-east-1\n",
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
fn wrong_credentials_are_named_never_shown_and_the_pitr_commands_refuse_a_bucket() {
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

    // The commands that read the archive as a directory say so, on one line.
    for args in [
        &["pitr", "verify"][..],
        &["pitr", "list"],
        &["pitr", "check"],
    ] {
        let out = env.run(args);
        assert_ne!(out.code, 0, "{args:?}");
        out.stderr_has("object storage")
            .stderr_has("wal push")
            .lacks(wrong);
    }
}
