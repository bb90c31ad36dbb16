//! The S3 tests' harness: the project's SeaweedFS (made and started by
//! `scripts/dev-services.sh`; endpoint and throwaway keys read from `scripts/dev-servers.env`)
//! and a bucket of its own for each test, emptied and removed when the test ends, passed or
//! failed. A store that cannot be reached fails the test: it is never skipped. Buckets left by
//! test processes that were killed before their guard ran are removed by the next test (each
//! holds one of the store's 50 volumes).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use mairie_dba::storage::{S3Credentials, S3Options, S3Store, S3Url};

use super::dev_server;

static BUCKETS: AtomicU32 = AtomicU32::new(0);

/// `http://127.0.0.1:<MAIRIE_DEV_S3_PORT>`.
pub fn endpoint() -> String {
    format!("http://127.0.0.1:{}", dev_server("MAIRIE_DEV_S3_PORT"))
}

/// The dev store's options: its endpoint and region, path style and http (loopback) by
/// default.
pub fn options() -> S3Options {
    S3Options {
        endpoint: Some(endpoint()),
        region: Some(dev_server("MAIRIE_DEV_S3_REGION").to_string()),
        ..S3Options::default()
    }
}

/// The dev store's static keys (no session token: SeaweedFS refuses static keys with one).
pub fn credentials() -> S3Credentials {
    S3Credentials::new(
        dev_server("MAIRIE_DEV_S3_ACCESS_KEY"),
        dev_server("MAIRIE_DEV_S3_SECRET_KEY"),
    )
}

/// A bucket made for one test (`mairie-test-<pid>-<n>-<nanos>`); dropped, everything in it
/// (objects and pending uploads) and the bucket itself are deleted.
pub struct TestBucket {
    pub name: String,
}

impl TestBucket {
    /// Creates the bucket; panics, saying how to start the store, when it cannot.
    pub fn new() -> TestBucket {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "mairie-test-{}-{}-{nanos}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::SeqCst)
        );
        sweep_stale_buckets();
        let url = S3Url::parse(&format!("s3://{name}")).unwrap();
        on_own_runtime(async move {
            let store = S3Store::open_with(&url, &options(), &credentials())
                .await
                .unwrap();
            if let Err(e) = store.create_bucket().await {
                panic!(
                    "cannot create a bucket on the dev S3 store {} (start it with: bash scripts/dev-services.sh): {e:#}",
                    endpoint()
                );
            }
        });
        TestBucket { name }
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> S3Url {
        S3Url::parse(&format!("s3://{}/{prefix}", self.name)).unwrap()
    }

    /// The store at `s3://<bucket>/<prefix>` with the dev options and keys.
    pub async fn store(&self, prefix: &str) -> S3Store {
        self.store_with(prefix, &options()).await
    }

    pub async fn store_with(&self, prefix: &str, opts: &S3Options) -> S3Store {
        S3Store::open_with(&self.url(prefix), opts, &credentials())
            .await
            .unwrap()
    }
}

impl Drop for TestBucket {
    /// On a runtime of its own (the test's may be the one dropping, or gone): aborts the
    /// pending uploads, deletes the objects, then the bucket.
    fn drop(&mut self) {
        match remove_bucket(&self.name) {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !std::thread::panicking() => {
                panic!("removing the test bucket {}: {e:#}", self.name)
            }
            Ok(Err(e)) => eprintln!("removing the test bucket {}: {e:#}", self.name),
            Err(_) => eprintln!("removing the test bucket {}: panicked", self.name),
        }
    }
}

/// Aborts the pending uploads of bucket `name`, deletes its objects, then the bucket.
fn remove_bucket(name: &str) -> std::thread::Result<anyhow::Result<()>> {
    let url = S3Url::parse(&format!("s3://{name}")).unwrap();
    run_on_own_runtime(async move {
        let store = S3Store::open_with(&url, &options(), &credentials()).await?;
        for p in store.pending_uploads("").await? {
            store.abort_pending(&p).await?;
        }
        for o in store.list("").await? {
            store.delete(&o.key).await?;
        }
        store.delete_bucket().await
    })
}

/// Removes, best effort, the `mairie-test-<pid>-…` buckets whose process is gone.
fn sweep_stale_buckets() {
    for name in bucket_names() {
        let pid = name
            .strip_prefix("mairie-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_bucket(&name);
        }
    }
}

/// The store's buckets (ListBuckets).
fn bucket_names() -> Vec<String> {
    let out = signed_curl(&["--fail"], "/");
    String::from_utf8_lossy(&out.stdout)
        .split("<Name>")
        .skip(1)
        .filter_map(|s| s.split_once("</Name>").map(|(n, _)| n.to_string()))
        .collect()
}

/// A request to the dev store at `path`, signed by curl's SigV4 with the dev keys (given on
/// curl's standard input, never its command line); `extra`: more curl options.
pub fn signed_curl(extra: &[&str], path: &str) -> std::process::Output {
    let creds = credentials();
    let mut curl = Command::new("curl")
        .args(["-K", "-", "-sS", "--max-time", "10", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", dev_server("MAIRIE_DEV_S3_REGION")))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(extra)
        .arg(format!("{}{path}", endpoint()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    writeln!(
        curl.stdin.take().unwrap(),
        "user = \"{}:{}\"",
        creds.access_key_id,
        creds.secret_access_key
    )
    .unwrap();
    curl.wait_with_output().unwrap()
}

/// Runs `f` to completion on a new current-thread runtime, in a thread of its own (so that
/// it may be called from inside a test's runtime); a panic in it is raised here.
fn on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    run_on_own_runtime(f).unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn run_on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> std::thread::Result<T> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
}

/// A SeaweedFS of one test's own, on free loopback ports, in a directory of its own, with
/// the dev store's keys: for the tests that stop the server. Killed (SIGKILL) and removed
/// when dropped.
pub struct PrivateS3 {
    pub dir: std::path::PathBuf,
    ports: [u16; 4],
    child: Option<std::process::Child>,
}

impl PrivateS3 {
    /// Starts it and waits (at most 60 s) until a bucket can be created.
    pub fn start() -> PrivateS3 {
        let dir = std::env::temp_dir().join(format!(
            "mairie-dba-weed-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("config/master.toml"),
            "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("s3.json"),
            format!(
                "{{\"identities\":[{{\"name\":\"mairie\",\"credentials\":[{{\"accessKey\":\"{}\",\"secretKey\":\"{}\"}}],\"actions\":[\"Admin\",\"Read\",\"List\",\"Tagging\",\"Write\"]}}]}}",
                dev_server("MAIRIE_DEV_S3_ACCESS_KEY"),
                dev_server("MAIRIE_DEV_S3_SECRET_KEY")
            ),
        )
        .unwrap();
        // Four ports whose gRPC twins (+10000) are free too.
        let mut ports = [0u16; 4];
        for p in ports.iter_mut() {
            *p = loop {
                let candidate = 20000 + (super::free_port() % 20000);
                if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", candidate + 10000)).is_ok()
                {
                    break candidate;
                }
            };
        }
        let mut s = PrivateS3 {
            dir,
            ports,
            child: None,
        };
        s.launch();
        s
    }

    /// `http://127.0.0.1:<its S3 port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    fn launch(&mut self) {
        let weed = [
            format!("{}/bin/weed", dev_server("MAIRIE_DEV_S3_VENV")),
            "weed".to_string(),
        ]
        .into_iter()
        .find(|w| Command::new(w).arg("version").output().is_ok())
        .expect("no weed: run scripts/dev-services.sh");
        let d = self.dir.display().to_string();
        let [m, v, f, s] = self.ports;
        let log = std::fs::File::create(self.dir.join("weed.log")).unwrap();
        let child = Command::new(weed)
            .env_clear()
            .env("WEED_S3_SSE_KEY", dev_server("MAIRIE_DEV_S3_SSE_KEY"))
            .args([
                "-logtostderr".to_string(),
                format!("-config_dir={d}/config"),
                "server".into(),
                format!("-dir={d}/data"),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-master.port={m}"),
                format!("-master.port.grpc={}", m + 10000),
                "-master.telemetry=false".into(),
                "-master.volumeSizeLimitMB=64".into(),
                format!("-volume.port={v}"),
                format!("-volume.port.grpc={}", v + 10000),
                "-volume.max=8".into(),
                "-volume.preStopSeconds=0".into(),
                "-filer".into(),
                format!("-filer.port={f}"),
                format!("-filer.port.grpc={}", f + 10000),
                format!("-filer.localSocket={d}/filer.sock"),
                "-s3".into(),
                format!("-s3.port={s}"),
                format!("-s3.port.grpc={}", s + 10000),
                format!("-s3.config={d}/s3.json"),
                format!("-s3.localSocket={d}/s3.sock"),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
                "-s3.autoCreateBucket=false".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting weed");
        self.child = Some(child);
    }

    /// Waits until `bucket` can be created (or exists) on it.
    pub fn wait_ready(&self, bucket: &str) {
        let url = S3Url::parse(&format!("s3://{bucket}")).unwrap();
        let opts = S3Options {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            ..S3Options::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (url, opts) = (url.clone(), opts.clone());
            let ok = on_own_runtime(async move {
                let store = S3Store::open_with(&url, &opts, &credentials()).await?;
                match store.create_bucket().await {
                    Ok(()) => Ok(()),
                    Err(_) => store.list("").await.map(drop),
                }
            });
            if ok.is_ok() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the private SeaweedFS did not start: {:#}\n{}",
                ok.unwrap_err(),
                std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// Stops it at once (SIGKILL), as a crash or a cut cable would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same directory and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        for p in self.ports {
            for kind in ["master", "volume", "filer", "s3"] {
                let _ =
                    std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-grpc-{}.sock", p + 10000));
            }
        }
    }
}

/// Waits, at most 60 s, until a multipart upload is pending under `under` in `store` (a
/// writer started in another process has begun sending).
pub fn wait_for_upload(store: &S3Store, rt: &tokio::runtime::Runtime, under: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while rt
        .block_on(store.pending_uploads(under))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "no upload started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Stops `child` (its output piped) with SIGTERM; its exit status and standard error, which
/// must say it was stopped.
pub fn sigterm(child: std::process::Child) -> (Option<i32>, String) {
    // SAFETY: kill on a child of this test.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    (out.status.code(), stderr)
}

/// A runtime for a test's own requests to the store.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A lease object as another holder writes it (see `mairie_dba::storage::Lease`).
pub fn lease_body(host: &str, pid: u32, what: &str, since: &str) -> Vec<u8> {
    serde_json::json!({"host": host, "pid": pid, "what": what, "since": since, "token": "f00d"})
        .to_string()
        .into_bytes()
}

/// This machine's host name, as a lease names it.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
