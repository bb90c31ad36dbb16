//! Backups in object storage (`dir: s3://bucket/prefix`) against the project's SeaweedFS and
//! real PostgreSQL and MariaDB servers: backup, list, check, verify, restore, drill and
//! retention read and write the bucket; an altered object is caught; a killed upload and a
//! backup object left without its manifest are cleaned by the next run; another machine's
//! lease on the prefix refuses a backup; wrong credentials are named, never shown.

mod common;

use common::s3::{
    credentials, endpoint, lease_body, runtime, sigterm, this_host, wait_for_upload, TestBucket,
};
use common::*;
use mairie_dba::storage::S3Store;

per_engine!(
    a_backup_in_a_bucket_lists_checks_verifies_restores_and_drills,
    retention_in_a_bucket_keeps_keep_min_and_touches_nothing_foreign,
    an_altered_object_is_caught_by_check_verify_and_restore,
    the_next_run_aborts_a_killed_upload_and_removes_an_object_without_manifest,
    wrong_credentials_are_named_and_never_shown,
    bad_object_storage_settings_are_configuration_errors,
);

const PREFIX: &str = "nightly";

/// An env with the demo data whose backups go to `s3://<bucket>/nightly`, with the dev
/// store's keys in the environment.
fn env_in(engine: Engine, bucket: &TestBucket, retention: &str) -> Env {
    let mut env = Env::with_schema(engine);
    env.run(&["load-csv", "--all"]).success();
    env.write_global(&format!(
        "backup:\n  {e}:\n    dir: s3://{b}/{PREFIX}\n    s3:\n      endpoint: {ep}\n      \
         region: us-east-1\n      sse: AES256\n      storage_class: STANDARD_IA\n{retention}",
        e = engine.name(),
        b = bucket.name,
        ep = endpoint()
    ));
    let c = credentials();
    env.set_env("AWS_ACCESS_KEY_ID", &c.access_key_id);
    env.set_env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    env
}

fn store(bucket: &TestBucket, rt: &tokio::runtime::Runtime) -> S3Store {
    rt.block_on(bucket.store(PREFIX))
}

fn keys(store: &S3Store, rt: &tokio::runtime::Runtime) -> Vec<String> {
    let mut k: Vec<String> = rt
        .block_on(store.list(""))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    k.sort();
    k
}

fn a_backup_in_a_bucket_lists_checks_verifies_restores_and_drills(engine: Engine) {
    let bucket = TestBucket::new();
    let env = env_in(engine, &bucket, "    keep_min: 2\n");
    let out = env.run(&["--format", "json", "backup"]);
    out.success().lacks(&credentials().secret_access_key);
    let done = &out.json()["backups"][0];
    let file = done["file"].as_str().unwrap().to_string();
    assert_eq!(
        done["path"].as_str().unwrap(),
        format!("s3://{}/{PREFIX}/{file}", bucket.name)
    );
    let rt = runtime();
    let s = store(&bucket, &rt);
    // The object and its manifest, nothing else; nothing written locally but run records.
    assert_eq!(
        keys(&s, &rt),
        vec![format!("{PREFIX}/{file}"), format!("{PREFIX}/{file}.json")]
    );
    assert!(rt.block_on(s.pending_uploads("")).unwrap().is_empty());
    let manifest: serde_json::Value = serde_json::from_slice(
        &rt.block_on(s.get_bytes(&format!("{PREFIX}/{file}.json"), 1 << 20))
            .unwrap(),
    )
    .unwrap();
    let object = rt
        .block_on(s.head(&format!("{PREFIX}/{file}")))
        .unwrap()
        .unwrap();
    assert_eq!(manifest["size_bytes"], object.size);
    assert_eq!(manifest["etag"].as_str(), object.etag.as_deref());
    assert!(manifest["tables"].as_object().unwrap().len() > 5);

    let list = env.run(&["--format", "json", "backup", "list"]);
    list.success();
    assert_eq!(list.json()["backups"][0]["status"], "good");
    assert_eq!(list.json()["backups"][0]["file"], file.as_str());
    env.run(&["backup", "check"]).code(0);
    env.run(&["backup", "check", "--deep"]).code(0);
    env.run(&["--format", "json", "backup", "verify"])
        .success()
        .stdout_has(&file);

    let copy = format!("{}_s3copy", env.db().name());
    let _copy = other_db(&env, &copy);
    env.run(&["restore", "--latest", "--into", &copy, "--compare"])
        .success();
    let restored = other_db(&env, &copy);
    assert_eq!(
        restored.count("metier.citoyens"),
        env.db().count("metier.citoyens")
    );
    std::mem::forget(restored);
    env.run(&["--format", "json", "restore", "--drill"])
        .success()
        .stdout_has("\"status\": \"success\"");
    // The temporary copies are gone.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(&format!("mairie-dba-fetch-{}", std::process::id()))
        })
        .collect();
    assert!(leftovers.is_empty());
    // health reads the bucket too.
    let health = env.run(&["--format", "json", "health", "--check", "backup_age"]);
    health.success();
    let check = &health.json()["targets"][0]["checks"][0];
    assert_eq!(check["status"], "ok");
    assert!(
        check["message"].as_str().unwrap().contains(&file),
        "{check}"
    );
}

fn retention_in_a_bucket_keeps_keep_min_and_touches_nothing_foreign(engine: Engine) {
    let bucket = TestBucket::new();
    let env = env_in(engine, &bucket, "    retention_days: 1\n    keep_min: 1\n");
    let file = backup_now(&env);
    let rt = runtime();
    let s = store(&bucket, &rt);
    // Two older copies of that backup with their manifests (good backups of the target,
    // ten and twenty days old), a foreign key and another database's backup name.
    let bytes = rt
        .block_on(s.get_bytes(&format!("{PREFIX}/{file}"), 1 << 30))
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &rt.block_on(s.get_bytes(&format!("{PREFIX}/{file}.json"), 1 << 20))
            .unwrap(),
    )
    .unwrap();
    let (stem, ext) = file.split_once("_full_").unwrap();
    let ext = ext.split_once('.').unwrap().1;
    let mut old = Vec::new();
    for day in ["20261101", "20261120"] {
        let name = format!("{stem}_full_{day}_020000.{ext}");
        let mut m = manifest.clone();
        m["file"] = name.clone().into();
        m["started_at"] = format!("{}-{}-{}T02:00:00Z", &day[..4], &day[4..6], &day[6..]).into();
        m["finished_at"] = m["started_at"].clone();
        m.as_object_mut().unwrap().remove("etag");
        rt.block_on(s.put_new(&format!("{PREFIX}/{name}"), bytes.clone()))
            .unwrap();
        rt.block_on(s.put_new(
            &format!("{PREFIX}/{name}.json"),
            serde_json::to_vec(&m).unwrap(),
        ))
        .unwrap();
        old.push(name);
    }
    let foreign = [
        format!("{PREFIX}/notes.txt"),
        format!("{PREFIX}/autre_full_20200101_000000.{ext}"),
        format!("{PREFIX}/sub/{stem}_full_20200101_000000.{ext}"),
    ];
    for k in &foreign {
        rt.block_on(s.put_new(k, b"not ours".to_vec())).unwrap();
    }
    let dry = env.run(&["--format", "json", "backup", "--prune-only", "--dry-run"]);
    dry.success();
    for name in &old {
        dry.stdout_has(name);
    }
    assert_eq!(
        keys(&s, &rt).len(),
        2 + 4 + foreign.len(),
        "dry run deletes nothing"
    );
    env.run(&["backup", "--prune-only"]).success();
    let mut expected: Vec<String> = foreign.to_vec();
    expected.push(format!("{PREFIX}/{file}"));
    expected.push(format!("{PREFIX}/{file}.json"));
    expected.sort();
    assert_eq!(keys(&s, &rt), expected);
}

fn an_altered_object_is_caught_by_check_verify_and_restore(engine: Engine) {
    let bucket = TestBucket::new();
    let env = env_in(engine, &bucket, "");
    let file = backup_now(&env);
    let rt = runtime();
    let s = store(&bucket, &rt);
    let key = format!("{PREFIX}/{file}");
    let mut bytes = rt.block_on(s.get_bytes(&key, 1 << 30)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    rt.block_on(s.delete(&key)).unwrap();
    rt.block_on(s.put_new(&key, bytes)).unwrap();
    // Same size: the cheap check sees the new ETag; the deep one and verify the hash.
    env.run(&["backup", "check"]).code(2).stdout_has("ETag");
    env.run(&["backup", "check", "--deep"])
        .code(2)
        .stdout_has("SHA-256");
    env.run(&["backup", "verify"])
        .code(1)
        .stderr_has("does not match the manifest");
    let copy = format!("{}_s3bad", env.db().name());
    env.run(&["restore", "--latest", "--into", &copy])
        .code(1)
        .stderr_has("refusing to restore a damaged backup");
}

fn the_next_run_aborts_a_killed_upload_and_removes_an_object_without_manifest(engine: Engine) {
    let bucket = TestBucket::new();
    let env = env_in(engine, &bucket, "");
    let rt = runtime();
    let s = store(&bucket, &rt);
    let database = env.db().name().to_string();
    let ext = match engine {
        Engine::Postgres => "dump",
        Engine::Mysql => "sql.zst",
    };
    // What a run killed mid-upload leaves: an upload in progress (one part sent).
    let pending = format!("{PREFIX}/{database}_full_20261201_020000.{ext}");
    rt.block_on(async {
        let mut u = s.upload(&pending).await.unwrap();
        u.write(&vec![7u8; 6 << 20]).await.unwrap();
        u.write(&[1]).await.unwrap();
        // Left as a killed process leaves it: neither finished nor aborted.
        std::mem::forget(u);
    });
    assert_eq!(rt.block_on(s.pending_uploads("")).unwrap().len(), 1);
    // And one killed between the end of the upload and the manifest.
    let orphan = format!("{PREFIX}/{database}_full_20261202_020000.{ext}");
    rt.block_on(s.put_new(&orphan, b"half a backup".to_vec()))
        .unwrap();
    // Not a backup meanwhile.
    let list = env.run(&["--format", "json", "backup", "list"]);
    list.success();
    assert_eq!(list.json()["backups"][0]["status"], "no manifest");
    env.run(&["backup"])
        .success()
        .stderr_has("aborted the unfinished upload")
        .stderr_has("left without a manifest");
    assert!(rt.block_on(s.pending_uploads("")).unwrap().is_empty());
    let k = keys(&s, &rt);
    assert!(!k.contains(&orphan), "{k:?}");
    assert!(!k.contains(&pending), "{k:?}");
    assert_eq!(k.len(), 2, "{k:?}");
}

fn wrong_credentials_are_named_and_never_shown(engine: Engine) {
    let bucket = TestBucket::new();
    let mut env = env_in(engine, &bucket, "");
    let wrong = "Wr0ngSecretThatMustNeverShow";
    env.set_env("AWS_SECRET_ACCESS_KEY", wrong);
    let out = env.run(&["backup"]);
    out.code(1)
        .stderr_has(&format!("s3://{}/", bucket.name))
        .stderr_has("SignatureDoesNotMatch")
        .lacks(wrong);
    env.run(&["backup", "list"]).code(1).lacks(wrong);
    // No credentials at all: the error says where they are looked for.
    let mut env = env_in(engine, &bucket, "");
    env.set_env("AWS_ACCESS_KEY_ID", "");
    env.set_env("AWS_SECRET_ACCESS_KEY", "");
    env.run(&["backup"]).code(1).stderr_has("AWS_ACCESS_KEY_ID");
    let rt = runtime();
    assert!(keys(&store(&bucket, &rt), &rt).is_empty());
}

/// A database of the env's server by name, dropped at the end of the test.
fn other_db(env: &Env, name: &str) -> Db {
    match env.engine {
        Engine::Postgres => Db::Pg(PgDb {
            name: name.to_string(),
        }),
        Engine::Mysql => Db::My(name.to_string()),
    }
}

/// The store stopped (killed) while a backup streams into it: the run fails naming the
/// object, no backup and no manifest are visible once the store is back, and the next run
/// aborts the upload the crash left and writes a good backup. On a SeaweedFS of its own.
#[test]
fn a_store_stopped_mid_upload_leaves_no_backup_and_the_next_run_cleans_up() {
    use common::s3::PrivateS3;
    let mut s3 = PrivateS3::start();
    let bucket = "midupload";
    s3.wait_ready(bucket);
    let mut env = Env::with_schema(Engine::Postgres);
    big_table(&env);
    env.write_global(&format!(
        "backup:\n  postgres:\n    dir: s3://{bucket}/{PREFIX}\n    s3:\n      endpoint: {}\n",
        s3.endpoint()
    ));
    let c = credentials();
    env.set_env("AWS_ACCESS_KEY_ID", &c.access_key_id);
    env.set_env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    let rt = runtime();
    let endpoint = s3.endpoint();
    let open = || {
        let opts = mairie_dba::storage::S3Options {
            endpoint: Some(endpoint.clone()),
            ..Default::default()
        };
        let url = mairie_dba::storage::S3Url::parse(&format!("s3://{bucket}/{PREFIX}")).unwrap();
        rt.block_on(S3Store::open_with(&url, &opts, &credentials()))
            .unwrap()
    };
    let store = open();
    let child = backup_started(&env, &store, &rt);
    // The moment the upload exists, the store goes.
    s3.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("s3://{bucket}/{PREFIX}/")),
        "{stderr}"
    );
    s3.restart();
    s3.wait_ready(bucket);
    let store = open();
    // No object, no manifest: only the run's lease, which it could not remove with the store
    // gone, and which the next run of this host takes over (its process is gone).
    let lease = format!("{PREFIX}/.postgres.lease");
    assert_eq!(keys(&store, &rt), std::slice::from_ref(&lease));
    // A restarted SeaweedFS lists at once, but serves an object's bytes only once its volume
    // server is registered again: wait for that (the lease's own bytes), at most 60 s.
    let t0 = std::time::Instant::now();
    while let Err(e) = rt.block_on(store.get_bytes(&lease, 65536)) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the restarted store never served the lease: {e:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let list = env.run(&["--format", "json", "backup", "list"]);
    list.success();
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 0);
    // The next run: whatever upload the crash left is aborted, and the backup is whole.
    let again = env.run(&["--format", "json", "backup"]);
    again.success();
    let file = again.json()["backups"][0]["file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rt.block_on(store.pending_uploads("")).unwrap().is_empty());
    assert_eq!(
        keys(&store, &rt),
        vec![format!("{PREFIX}/{file}"), format!("{PREFIX}/{file}.json")]
    );
    env.run(&["backup", "verify"]).success();
}

/// One writer per prefix across machines: a live lease of another host refuses the backup
/// with one line naming its holder, and nothing is written; the lease of a run of this host
/// that is gone (killed) is taken over at once, and removed when the backup ends.
#[test]
fn a_prefix_leased_by_another_machine_is_refused_and_a_gone_run_here_is_taken_over() {
    let bucket = TestBucket::new();
    let env = env_in(Engine::Postgres, &bucket, "");
    let rt = runtime();
    let s = store(&bucket, &rt);
    let key = format!("{PREFIX}/.postgres.lease");
    let lease = |host: &str, pid: u32| {
        lease_body(
            host,
            pid,
            "backup of target postgres",
            "2026-12-06T02:00:00Z",
        )
    };
    rt.block_on(s.put_new(&key, lease("db-annexe", 4242)))
        .unwrap();
    env.run(&["backup"])
        .code(1)
        .one_line_error()
        .stderr_has(&format!(
            "s3://{}/{key}: this prefix is in use by backup of target postgres (pid 4242 on \
             db-annexe since 2026-12-06T02:00:00Z); one writer at a time (use --wait",
            bucket.name
        ));
    assert_eq!(
        keys(&s, &rt),
        std::slice::from_ref(&key),
        "written beside the lease"
    );
    assert!(rt.block_on(s.pending_uploads("")).unwrap().is_empty());

    // This host's own lease, left by a run that is gone (a pid above pid_max).
    rt.block_on(s.delete(&key)).unwrap();
    rt.block_on(s.put_new(&key, lease(&this_host(), 0x3f_ffff)))
        .unwrap();
    let file = backup_now(&env);
    assert_eq!(
        keys(&s, &rt),
        [format!("{PREFIX}/{file}"), format!("{PREFIX}/{file}.json")],
        "the lease is removed when the backup ends"
    );
}

/// Stopped by SIGTERM while the dump streams up: the upload is aborted before the process
/// ends, so nothing is left in the bucket, not even parts (nor the run's lease).
#[test]
fn a_backup_stopped_mid_upload_aborts_it_before_exiting() {
    let bucket = TestBucket::new();
    let env = env_in(Engine::Postgres, &bucket, "");
    big_table(&env);
    let rt = runtime();
    let s = store(&bucket, &rt);
    let child = backup_started(&env, &s, &rt);
    let (code, stderr) = sigterm(child);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        rt.block_on(s.pending_uploads("")).unwrap().is_empty(),
        "an upload left behind: {stderr}"
    );
    assert!(keys(&s, &rt).is_empty());
}

fn bad_object_storage_settings_are_configuration_errors(engine: Engine) {
    let env = Env::new(engine);
    let e = engine.name();
    for (section, needle) in [
        (
            format!("backup:\n  {e}:\n    dir: s3://Not_A_Bucket/x\n"),
            format!("backup.{e}.dir: `s3://Not_A_Bucket/x` is not s3://BUCKET[/PREFIX]"),
        ),
        (
            format!("backup:\n  {e}:\n    dir: backups\n    s3:\n      region: eu-west-3\n"),
            format!("backup.{e}.s3: options for object storage, but dir `backups` is not s3://"),
        ),
        (
            format!(
                "backup:\n  {e}:\n    dir: s3://mairie-bucket/p\n    s3:\n      endpoint: http://s3.example.org\n"
            ),
            "allow_http".to_string(),
        ),
    ] {
        env.write_global(&section);
        env.run(&["backup", "list"]).code(2).stderr_has(&needle);
    }
    let env = Env::new(engine);
    env.write_global(&format!(
        "backup:\n  {e}:\n    dir: s3://mairie-bucket/p\n    s3:\n      colour: blue\n"
    ));
    env.run(&["backup", "list"]).code(2).stderr_has("colour");
}

/// About 60 MB of rows that compress to half: a dump of several parts of 8 MiB.
fn big_table(env: &Env) {
    env.db().query(
        "CREATE TABLE public.gros AS SELECT g, md5(g::text) || md5((g * 7)::text) \
         || md5((g * 13)::text) AS t FROM generate_series(1, 600000) g",
    );
}

/// `backup` running, once its multipart upload exists in `store` (at most 60 s).
fn backup_started(env: &Env, store: &S3Store, rt: &tokio::runtime::Runtime) -> std::process::Child {
    let child = env
        .command(&[], &["backup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_upload(store, rt, "");
    child
}

/// Runs `backup`, which must succeed; the new backup's file name.
fn backup_now(env: &Env) -> String {
    let out = env.run(&["--format", "json", "backup"]);
    out.success();
    out.json()["backups"][0]["file"]
        .as_str()
        .unwrap()
        .to_string()
}
