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

/// The store's buckets (ListBuckets, signed by curl; the keys on its standard input).
fn bucket_names() -> Vec<String> {
    let creds = credentials();
    let mut curl = Command::new("curl")
        .args([
            "-K",
            "-",
            "-sS",
            "--fail",
            "--max-time",
            "10",
            "--aws-sigv4",
        ])
        .arg(format!("aws:amz:{}:s3", dev_server("MAIRIE_DEV_S3_REGION")))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .arg(format!("{}/", endpoint()))
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
    let out = curl.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split("<Name>")
        .skip(1)
        .filter_map(|s| s.split_once("</Name>").map(|(n, _)| n.to_string()))
        .collect()
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
