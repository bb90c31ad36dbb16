//! `mairie_dba::storage` against a real S3 service: the project's SeaweedFS
//! (`scripts/dev-services.sh`). Each test works in a bucket of its own, removed at its end.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::s3::{self, TestBucket};
use mairie_dba::storage::{
    AlreadyExists, Lease, LeaseTiming, S3Credentials, S3Options, S3Place, S3Store, SyncUpload,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;

/// Deterministic bytes that do not compress: a xorshift stream.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// The process's peak resident memory so far, in bytes (VmHWM).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// SHA-256 and length of everything `get_reader` gives, read 64 KiB at a time.
async fn read_all_hashed(store: &S3Store, key: &str) -> (String, u64) {
    let mut reader = store.get_reader(key).await.unwrap();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    (hex::encode(hash.finalize()), total)
}

/// The headers of a signed HEAD of `key`.
fn signed_head(bucket: &str, key: &str) -> String {
    let out = s3::signed_curl(&["-I"], &format!("/{bucket}/{key}"));
    assert!(out.status.success(), "curl -I {bucket}/{key}");
    String::from_utf8(out.stdout).unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn put_new_refuses_an_existing_key_and_leaves_it_unchanged() {
    let bucket = TestBucket::new();
    let store = bucket.store("backups/pg").await;
    let key = store.url().key("base/manifest.json");
    assert_eq!(key, "backups/pg/base/manifest.json");

    store.put_new(&key, b"first".to_vec()).await.unwrap();
    let err = store.put_new(&key, b"second".to_vec()).await.unwrap_err();
    let exists = err
        .downcast_ref::<AlreadyExists>()
        .unwrap_or_else(|| panic!("not AlreadyExists: {err:#}"));
    let url = format!("s3://{}/backups/pg/base/manifest.json", bucket.name);
    assert_eq!(exists.url, url);
    assert_eq!(
        err.to_string(),
        format!("{url}: exists and is not overwritten")
    );
    assert_eq!(store.get_bytes(&key, 1024).await.unwrap(), b"first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_25_mib_stream_through_sync_upload_in_bounded_memory() {
    let bucket = TestBucket::new();
    let store = bucket.store("stream").await;
    let key = store.url().key("dump.bin");
    let total = 25 * MIB;

    let upload = store.upload(&key).await.unwrap();
    let part_size = upload.part_size();
    assert_eq!(part_size, 8 * MIB);
    let mut writer = SyncUpload::new(upload);
    let before = peak_rss();
    // Written as a zstd encoder or a hashing writer would: synchronous writes of 64 KiB from
    // the runtime's worker thread.
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut hash = Sha256::new();
    for _ in 0..total / chunk.len() {
        noise.fill(&mut chunk);
        hash.update(&chunk);
        writer.write_all(&chunk).unwrap();
    }
    writer.flush().unwrap();
    assert_eq!(writer.written(), total as u64);
    let peak_buffered = writer.peak_buffered();
    let info = writer.finish().unwrap();
    let growth = peak_rss().saturating_sub(before);

    assert!(
        peak_buffered <= 3 * part_size,
        "the upload held {peak_buffered} bytes at once, more than 3 parts of {part_size}"
    );
    assert!(
        peak_buffered >= 2 * part_size,
        "the upload never had a part on its way while filling the next ({peak_buffered} bytes)"
    );
    eprintln!(
        "uploaded {} MiB: the upload held at most {:.1} MiB, peak RSS grew by {:.1} MiB",
        total / MIB,
        peak_buffered as f64 / MIB as f64,
        growth as f64 / MIB as f64
    );
    // The process's memory is this test's alone under nextest (a process per test); under
    // `cargo test` other tests' buffers count too, and the upload's own count above decides.
    if std::env::var_os("NEXTEST_EXECUTION_MODE").is_some_and(|m| m == "process-per-test") {
        assert!(
            growth < 64 * MIB as u64,
            "peak RSS grew by {} MiB while uploading {} MiB",
            growth / MIB as u64,
            total / MIB
        );
    }
    assert_eq!(info.key, key);
    assert_eq!(info.size, total as u64);

    let (sha, size) = read_all_hashed(&store, &key).await;
    assert_eq!(size, total as u64);
    assert_eq!(sha, hex::encode(hash.finalize()));
    assert!(store.pending_uploads("").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_sync_upload_on_a_current_thread_runtime_fails_without_panicking() {
    let bucket = TestBucket::new();
    let store = bucket.store("").await;
    let mut writer = SyncUpload::new(store.upload("x").await.unwrap());
    // A whole part must be sent, which would block the only thread.
    let err = writer.write_all(&vec![1u8; 8 * MIB]).unwrap_err();
    assert!(err.to_string().contains("multi-thread runtime"), "{err}");
    assert!(writer.abort().is_err());
}

#[tokio::test]
async fn an_empty_upload_makes_an_empty_object() {
    let bucket = TestBucket::new();
    let store = bucket.store("p").await;
    let info = store
        .upload("p/empty")
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!((info.key.as_str(), info.size), ("p/empty", 0));
    assert_eq!(store.get_bytes("p/empty", 0).await.unwrap(), b"");
    assert_eq!(store.head("p/empty").await.unwrap().unwrap().size, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_leaves_no_pending_upload_and_no_object() {
    let bucket = TestBucket::new();
    let store = bucket.store("").await;
    let mut upload = store.upload("aborted.bin").await.unwrap();
    upload.write(&vec![7u8; 6 * MIB]).await.unwrap();
    upload.write(&vec![8u8; 6 * MIB]).await.unwrap();
    let pending = store.pending_uploads("").await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].key, "aborted.bin");

    upload.abort().await.unwrap();
    assert_eq!(store.pending_uploads("").await.unwrap(), vec![]);
    assert_eq!(store.head("aborted.bin").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_is_named_by_its_number_and_the_service_code() {
    let bucket = TestBucket::new();
    let store = bucket.store("").await;
    let mut upload = store.upload("gone.bin").await.unwrap();
    // A clean-up of pending uploads aborts it before its first part is sent.
    let pending = store.pending_uploads("").await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    store.abort_pending(&pending[0]).await.unwrap();
    upload.write(&vec![1u8; 8 * MIB + 1]).await.unwrap();
    let err = upload.finish().await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "s3://{}/gone.bin: upload part 1: NoSuchUpload (404)",
            bucket.name
        )
    );
    assert_eq!(store.head("gone.bin").await.unwrap(), None);
    assert_eq!(store.pending_uploads("").await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_dropped_unfinished_is_aborted() {
    let bucket = TestBucket::new();
    let store = bucket.store("dropped").await;
    let mut upload = store.upload("dropped/half.bin").await.unwrap();
    upload.write(&vec![3u8; 9 * MIB]).await.unwrap();
    let pending = store.pending_uploads("").await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    drop(upload);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = store.pending_uploads("").await.unwrap();
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still pending 10 s after the drop: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(store.head("dropped/half.bin").await.unwrap(), None);
}

#[tokio::test]
async fn pending_uploads_finds_what_a_crash_left_and_abort_pending_removes_it() {
    let bucket = TestBucket::new();
    let store = bucket.store("pg").await;
    let started = chrono::Utc::now();
    let mut crashed = store.upload("pg/base/data.tar.zst").await.unwrap();
    crashed.write(b"partial").await.unwrap();
    // A writer that dies does not run its destructors.
    std::mem::forget(crashed);
    let finished = store.upload("pg/base/done.tar.zst").await.unwrap();
    finished.finish().await.unwrap();

    let pending = store.pending_uploads("base").await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let p = &pending[0];
    assert_eq!(p.key, "pg/base/data.tar.zst");
    assert!(!p.upload_id.is_empty());
    if let Some(initiated) = p.initiated {
        assert!(
            (initiated - started).num_seconds().abs() < 120,
            "initiated {initiated}, started {started}"
        );
    }
    assert_eq!(store.pending_uploads("").await.unwrap(), pending);
    assert_eq!(store.pending_uploads("wal").await.unwrap(), vec![]);
    // `base` is a folder: `bas` is not a prefix of it.
    assert_eq!(store.pending_uploads("bas").await.unwrap(), vec![]);

    store.abort_pending(p).await.unwrap();
    assert_eq!(store.pending_uploads("").await.unwrap(), vec![]);
    assert_eq!(store.head("pg/base/data.tar.zst").await.unwrap(), None);
    assert!(store.head("pg/base/done.tar.zst").await.unwrap().is_some());
}

#[tokio::test]
async fn list_head_get_bytes_and_delete() {
    let bucket = TestBucket::new();
    let store = bucket.store("site/").await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(60);
    for (name, body) in [
        ("base/1", "one"),
        ("base/2/x", "two-x"),
        ("basement", "b"),
        ("wal/000000010000000000000001", "wal segment"),
    ] {
        store
            .put_new(&store.url().key(name), body.as_bytes().to_vec())
            .await
            .unwrap();
    }
    // Another prefix of the bucket is not listed.
    bucket
        .store("other")
        .await
        .put_new("other/x", b"x".to_vec())
        .await
        .unwrap();

    let keys = |v: Vec<mairie_dba::storage::ObjectInfo>| -> Vec<String> {
        v.into_iter().map(|o| o.key).collect()
    };
    assert_eq!(
        keys(store.list("").await.unwrap()),
        [
            "site/base/1",
            "site/base/2/x",
            "site/basement",
            "site/wal/000000010000000000000001"
        ]
    );
    assert_eq!(
        keys(store.list("base").await.unwrap()),
        ["site/base/1", "site/base/2/x"]
    );
    assert_eq!(
        keys(store.list("nothing").await.unwrap()),
        Vec::<String>::new()
    );

    let head = store.head("site/base/2/x").await.unwrap().unwrap();
    assert_eq!((head.key.as_str(), head.size), ("site/base/2/x", 5));
    assert!(head.etag.is_some());
    assert!(head.modified > before, "{}", head.modified);
    let listed = store.list("base/2").await.unwrap();
    assert_eq!(listed, vec![head.clone()]);
    assert_eq!(store.head("site/base/3").await.unwrap(), None);

    assert_eq!(store.get_bytes("site/base/2/x", 5).await.unwrap(), b"two-x");
    let err = store
        .get_bytes("site/base/2/x", 4)
        .await
        .unwrap_err()
        .to_string();
    let url = format!("s3://{}/site/base/2/x", bucket.name);
    assert_eq!(
        err,
        format!("{url}: get: 5 bytes, more than the 4 it may have")
    );
    let err = store
        .get_bytes("site/base/3", 10)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("s3://{}/site/base/3: get: NoSuchKey (404)", bucket.name)
    );
    let err = match store.get_reader("site/base/3").await {
        Ok(_) => panic!("a reader of a missing object"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("site/base/3: get: NoSuchKey (404)"), "{err}");
    let (_, size) = read_all_hashed(&store, "site/wal/000000010000000000000001").await;
    assert_eq!(size, 11);

    store.delete("site/base/1").await.unwrap();
    store.delete("site/base/1").await.unwrap(); // already gone: not an error
    assert_eq!(store.head("site/base/1").await.unwrap(), None);
    assert_eq!(keys(store.list("base").await.unwrap()), ["site/base/2/x"]);

    let err = store.head("site//x").await.unwrap_err().to_string();
    assert!(err.contains("not a usable object key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_named_by_the_service_code_and_never_shown() {
    let bucket = TestBucket::new();
    let good = bucket.store("p").await;
    good.put_new("p/k", b"x".to_vec()).await.unwrap();
    let secret = "wrong-secret-Zq8xK2";
    let creds = S3Credentials::new(&s3::credentials().access_key_id, secret);
    let store = S3Store::open_with(&bucket.url("p"), &s3::options(), &creds)
        .await
        .unwrap();
    let object = format!("s3://{}/p/k", bucket.name);

    let mut errors = vec![
        store.put_new("p/k2", b"x".to_vec()).await.unwrap_err(),
        store.get_bytes("p/k", 10).await.unwrap_err(),
        store.list("").await.unwrap_err(),
        store.pending_uploads("").await.unwrap_err(),
        store.upload("p/big").await.unwrap_err(),
        store.delete("p/k").await.unwrap_err(),
        store.head("p/k").await.unwrap_err(),
    ];
    // A part refused in the middle of an upload that was started with the right keys is
    // not covered here: the keys are the store's, fixed when it is opened.
    for e in &errors[..6] {
        let msg = format!("{e:#}");
        assert!(msg.contains(&format!("s3://{}/p", bucket.name)), "{msg}");
        assert!(msg.contains("SignatureDoesNotMatch (403)"), "{msg}");
    }
    // HEAD answers have no body, hence no code: the status only.
    let head = errors.pop().unwrap().to_string();
    assert_eq!(head, format!("{object}: head: HTTP 403"));
    assert_eq!(
        errors[1].to_string(),
        format!("{object}: get: SignatureDoesNotMatch (403)")
    );
    assert_eq!(
        errors[4].to_string(),
        format!(
            "s3://{}/p/big: start upload: SignatureDoesNotMatch (403)",
            bucket.name
        )
    );
    for e in &errors {
        // Debug may carry a backtrace (RUST_BACKTRACE): searched, not required on one line.
        let all = format!("{e:#} {e:?}");
        assert!(!all.contains(secret), "the secret shows in: {all}");
        let shown = format!("{e:#}");
        assert!(!shown.contains('\n'), "not one line: {shown}");
    }
    assert!(!format!("{store:?}").contains(secret));
    // Nothing was changed by the refused requests.
    assert_eq!(good.get_bytes("p/k", 10).await.unwrap(), b"x");
    assert_eq!(good.head("p/k2").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_aes256_and_storage_class_on_put_new_and_upload() {
    let bucket = TestBucket::new();
    let opts = S3Options {
        sse: Some("AES256".into()),
        storage_class: Some("STANDARD_IA".into()),
        ..s3::options()
    };
    let store = bucket.store_with("enc", &opts).await;
    store
        .put_new("enc/manifest.json", b"{\"ok\":true}".to_vec())
        .await
        .unwrap();
    let mut upload = store.upload("enc/data.bin").await.unwrap();
    let mut noise = Noise(42);
    let mut data = vec![0u8; 6 * MIB + 123];
    noise.fill(&mut data);
    upload.write(&data).await.unwrap();
    let info = upload.finish().await.unwrap();
    assert_eq!(info.size, data.len() as u64);

    for key in ["enc/manifest.json", "enc/data.bin"] {
        let headers = signed_head(&bucket.name, key);
        assert!(
            headers.contains("x-amz-server-side-encryption: aes256"),
            "{key}: {headers}"
        );
        assert!(
            headers.contains("x-amz-storage-class: standard_ia"),
            "{key}: {headers}"
        );
    }
    // Read back through the same store: decrypted by the service.
    assert_eq!(
        store.get_bytes("enc/manifest.json", 100).await.unwrap(),
        b"{\"ok\":true}"
    );
    let mut back = Vec::new();
    store
        .get_reader("enc/data.bin")
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert!(back == data, "the 6 MiB object came back different");
}

/// Leases that renew twice a second and go stale after 3 s.
fn quick() -> LeaseTiming {
    LeaseTiming {
        ttl: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
    }
}

/// The lease `name` of `s3://bucket/backups`, as the dev store's keys.
fn lease(b: &TestBucket, name: &str, wait: bool) -> anyhow::Result<Lease> {
    let place = S3Place {
        url: b.url("backups"),
        options: s3::options(),
    };
    Lease::acquire_with(
        &place,
        name,
        &format!("backup of target {name}"),
        wait,
        quick(),
        Some(&s3::credentials()),
    )
}

/// Another holder's lease of `mairie`.
fn foreign_lease(host: &str, pid: u32) -> Vec<u8> {
    s3::lease_body(host, pid, "backup of target mairie", "2026-12-06T02:00:00Z")
}

#[test]
fn a_lease_keeps_a_second_writer_out_past_its_ttl_and_goes_when_dropped() {
    let b = TestBucket::new();
    let rt = s3::runtime();
    let store = rt.block_on(b.store(""));
    let key = "backups/.mairie.lease";
    let first = lease(&b, "mairie", false).unwrap();
    let held: serde_json::Value =
        serde_json::from_slice(&rt.block_on(store.get_bytes(key, 65536)).unwrap()).unwrap();
    assert_eq!(held["pid"], std::process::id());
    assert_eq!(held["what"], "backup of target mairie");
    // Renewed: older than its 3 s, still held, still refusing.
    std::thread::sleep(Duration::from_secs(4));
    first.check().unwrap();
    let e = format!("{:#}", lease(&b, "mairie", false).unwrap_err());
    assert!(
        e.starts_with(&format!(
            "s3://{}/{key}: this prefix is in use by backup of target mairie (pid {} on ",
            b.name,
            std::process::id()
        )),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // Another name is another lease.
    drop(lease(&b, "etat_civil", false).unwrap());
    // A writer told to wait gets it once the holder lets go.
    let t0 = Instant::now();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(first);
    });
    let second = lease(&b, "mairie", true).unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(1500));
    holder.join().unwrap();
    drop(second);
    let left = rt.block_on(store.list("")).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_stale_lease_is_taken_over_and_its_old_holder_learns_it_has_lost_it() {
    let b = TestBucket::new();
    let rt = s3::runtime();
    let store = rt.block_on(b.store(""));
    let key = "backups/.mairie.lease";
    // Another machine's lease, no longer renewed: refused while young, taken once stale.
    rt.block_on(store.put_new(key, foreign_lease("db-annexe", 1)))
        .unwrap();
    let e = format!("{:#}", lease(&b, "mairie", false).unwrap_err());
    assert!(
        e.contains("(pid 1 on db-annexe since 2026-12-06T02:00:00Z)"),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(3300));
    let ours = lease(&b, "mairie", false).unwrap();
    ours.check().unwrap();
    let held = rt.block_on(store.get_bytes(key, 65536)).unwrap();
    assert!(!String::from_utf8_lossy(&held).contains("db-annexe"));

    // Now another writer takes it from us: we learn it at the next renewal, and leave its
    // lease in place when we let go.
    rt.block_on(store.delete(key)).unwrap();
    rt.block_on(store.put_new(key, foreign_lease("db-annexe", 2)))
        .unwrap();
    let t0 = Instant::now();
    while ours.check().is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the loss went unseen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let e = format!("{:#}", ours.check().unwrap_err());
    assert!(e.contains("lease on the prefix was lost"), "{e}");
    drop(ours);
    let held = rt.block_on(store.get_bytes(key, 65536)).unwrap();
    assert_eq!(held, foreign_lease("db-annexe", 2));
}

#[test]
fn the_lease_of_a_gone_process_of_this_host_is_taken_at_once() {
    let b = TestBucket::new();
    let rt = s3::runtime();
    let store = rt.block_on(b.store(""));
    rt.block_on(store.put_new(
        "backups/.mairie.lease",
        foreign_lease(&s3::this_host(), 0x3f_ffff),
    ))
    .unwrap();
    let t0 = Instant::now();
    let ours = lease(&b, "mairie", false).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2));
    ours.check().unwrap();
}

#[test]
fn a_lease_that_cannot_be_read_is_judged_by_its_age_and_taken_over_once_stale() {
    let b = TestBucket::new();
    let rt = s3::runtime();
    let store = rt.block_on(b.store(""));
    // Not a lease: more than a lease may weigh, so its body is never read.
    rt.block_on(store.put_new("backups/.mairie.lease", vec![b'x'; 100_000]))
        .unwrap();
    let e = format!("{:#}", lease(&b, "mairie", false).unwrap_err());
    assert!(
        e.contains("in use by a writer whose lease cannot be read (") && e.contains("100000 bytes"),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(3300));
    let ours = lease(&b, "mairie", false).unwrap();
    ours.check().unwrap();
    let held = rt
        .block_on(store.get_bytes("backups/.mairie.lease", 65536))
        .unwrap();
    assert!(String::from_utf8_lossy(&held).contains("backup of target mairie"));
    drop(ours);
    assert!(rt.block_on(store.list("")).unwrap().is_empty());
}
