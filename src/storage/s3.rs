//! [`S3Store`]: the operations the features use on an `s3://bucket/prefix`, over
//! object_store's S3 client.
//!
//! Every key given to and returned by the store is a full key (prefix included): listing
//! gives keys that go straight back into `head`, `get_*` or `delete`. Each operation is
//! bounded in time (connect 10 s, no 2 minutes without a byte, 5 minutes for a request that is
//! not a streamed read), with object_store's retries inside those bounds.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::{HttpConnector, ReqwestConnector};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutOptions, RetryConfig, UpdateVersion,
};
use tokio::io::AsyncRead;

use super::credentials::S3Credentials;
use super::errors::{store_error, AlreadyExists};
use super::options::S3Options;
use super::pending::Signed;
use super::upload::{Upload, DEFAULT_PART_SIZE};
use super::url::S3Url;

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for the next bytes of a response: a stalled connection, not a slow one.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a request other than a streamed read may take, retries included: a part of a
/// multipart upload at 8 MiB is 5 minutes at 28 KB/s.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// An open `s3://bucket/prefix`. Cheap to share by reference; the operations take `&self`.
#[derive(Debug)]
pub struct S3Store {
    url: S3Url,
    store: AmazonS3,
    signed: Signed,
    attributes: Attributes,
}

/// An object, as listed or examined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full key, prefix included.
    pub key: String,
    pub size: u64,
    /// As the service gives it, quotes included (`"5d41…"`, `"…-3"` for a multipart object).
    pub etag: Option<String>,
    pub modified: DateTime<Utc>,
}

/// A multipart upload started and neither completed nor aborted: a writer that crashed, or
/// one still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The full key, prefix included.
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

/// What [`S3Store::replace`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// Written; the new version's ETag (when the service gives one).
    Done(Option<String>),
    /// Another writer changed or removed the object since its ETag was read: nothing written.
    Changed,
}

impl S3Store {
    /// Opens `url` with the credentials of the environment ([`S3Credentials::from_env`]). No
    /// request is made: a wrong bucket or key shows at the first operation.
    pub async fn open(url: &S3Url, opts: &S3Options) -> Result<S3Store> {
        let credentials = S3Credentials::from_env().with_context(|| format!("opening {url}"))?;
        S3Store::open_with(url, opts, &credentials).await
    }

    /// Opens `url` with the given credentials.
    pub async fn open_with(
        url: &S3Url,
        opts: &S3Options,
        credentials: &S3Credentials,
    ) -> Result<S3Store> {
        opts.validate()?;
        install_crypto_provider();
        let bucket_endpoint = opts.bucket_endpoint(&url.bucket)?;
        let client_options = ClientOptions::new()
            .with_allow_http(opts.allow_http())
            .with_connect_timeout(CONNECT_TIMEOUT)
            // No bound on a whole response: a streamed read of a large dump takes as long as
            // it takes. A stall is caught by the read timeout, a slow write by REQUEST_TIMEOUT.
            .with_timeout_disabled()
            .with_read_timeout(READ_TIMEOUT);
        // The bucket's URL is computed here (options.rs) for both addressing styles, and given
        // whole: object_store then uses it as it is ("virtual hosted" means exactly that).
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&url.bucket)
            .with_region(opts.region())
            .with_endpoint(&bucket_endpoint)
            .with_virtual_hosted_style_request(true)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig::default())
            .with_client_options(client_options.clone());
        if let Some(token) = &credentials.session_token {
            builder = builder.with_token(token);
        }
        match (opts.sse.as_deref(), &opts.sse_kms_key_id) {
            (Some("aws:kms"), Some(key_id)) => builder = builder.with_sse_kms_encryption(key_id),
            (Some(sse), _) => {
                let key = AmazonS3ConfigKey::from_str("aws_server_side_encryption")
                    .map_err(|e| anyhow!("{e}"))?;
                builder = builder.with_config(key, sse);
            }
            (None, _) => {}
        }
        let store = builder
            .build()
            .map_err(|e| store_error(&url.to_string(), "open", &e))?;
        let http = ReqwestConnector::default()
            .connect(&client_options)
            .map_err(|e| store_error(&url.to_string(), "open", &e))?;
        let signed = Signed::new(http, credentials, opts.region(), &bucket_endpoint)?;
        let mut attributes = Attributes::new();
        if let Some(class) = &opts.storage_class {
            attributes.insert(Attribute::StorageClass, class.clone().into());
        }
        Ok(S3Store {
            url: url.clone(),
            store,
            signed,
            attributes,
        })
    }

    pub fn url(&self) -> &S3Url {
        &self.url
    }

    /// Every object under `under` (a folder relative to the prefix; `""` is the whole
    /// prefix), at any depth, sorted by key. `under` names a folder: `"base"` lists
    /// `prefix/base/…`, not `prefix/basement`.
    pub async fn list(&self, under: &str) -> Result<Vec<ObjectInfo>> {
        let (shown, path) = self.folder(under)?;
        let mut stream = self.store.list(path.as_ref());
        let mut out = Vec::new();
        while let Some(item) = self.timed(&shown, "list", stream.next()).await? {
            let meta = item.map_err(|e| store_error(&shown, "list", &e))?;
            out.push(info(meta));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The folders directly under `under` (relative to the prefix), by name, sorted: one
    /// delimited listing, whatever the folders hold.
    pub async fn list_dirs(&self, under: &str) -> Result<Vec<String>> {
        let (shown, path) = self.folder(under)?;
        let got = self
            .timed(
                &shown,
                "list",
                self.store.list_with_delimiter(path.as_ref()),
            )
            .await?
            .map_err(|e| store_error(&shown, "list", &e))?;
        let mut out: Vec<String> = got
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// A folder relative to the prefix, as messages name it and as a listing asks for it
    /// (None: the whole bucket).
    fn folder(&self, under: &str) -> Result<(String, Option<Path>)> {
        let prefix = self.url.key(under);
        let path = if prefix.is_empty() {
            None
        } else {
            Some(self.path(&prefix)?)
        };
        Ok((self.url.display(&prefix), path))
    }

    /// The object `key` (a full key), or `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path(key)?;
        let shown = self.url.display(key);
        match self.timed(&shown, "head", self.store.head(&path)).await? {
            Ok(meta) => Ok(Some(info(meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&shown, "head", &e)),
        }
    }

    /// The whole object, refused when it is larger than `max` bytes (manifests and other
    /// small files: memory stays bounded whatever the bucket holds).
    pub async fn get_bytes(&self, key: &str, max: u64) -> Result<Vec<u8>> {
        match self.read_small(key, max).await? {
            Ok((bytes, _)) => Ok(bytes),
            Err(e) => Err(store_error(&self.url.display(key), "get", &e)),
        }
    }

    /// As [`S3Store::get_bytes`], with what the object is (its ETag, for a later
    /// [`S3Store::replace`]); `None` when there is no such object.
    pub async fn get_small(&self, key: &str, max: u64) -> Result<Option<(Vec<u8>, ObjectInfo)>> {
        match self.read_small(key, max).await? {
            Ok((bytes, meta)) => Ok(Some((bytes, info(meta)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.url.display(key), "get", &e)),
        }
    }

    /// The object whole if it has at most `max` bytes; the service's error as it came.
    async fn read_small(
        &self,
        key: &str,
        max: u64,
    ) -> Result<std::result::Result<(Vec<u8>, ObjectMeta), object_store::Error>> {
        let path = self.path(key)?;
        let shown = self.url.display(key);
        let read = async {
            let got = self.store.get_opts(&path, GetOptions::default()).await?;
            let meta = got.meta.clone();
            if meta.size > max {
                return Ok(Err(meta.size));
            }
            let mut out = Vec::with_capacity(meta.size as usize);
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if (out.len() + chunk.len()) as u64 > max {
                    return Ok(Err((out.len() + chunk.len()) as u64));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Ok((out, meta)))
        };
        match self.timed(&shown, "get", read).await? {
            Ok(Ok(got)) => Ok(Ok(got)),
            Ok(Err(size)) => Err(anyhow!(
                "{shown}: get: {size} bytes, more than the {max} it may have"
            )),
            Err(e) => Ok(Err(e)),
        }
    }

    /// The object as a stream: bytes are read from the service as they are consumed (memory
    /// bounded by a few network buffers). A read that fails mid-way is resumed by object_store
    /// where it stopped (a range request on the same ETag) within its retry budget; past
    /// that, the reader returns an error naming the object.
    pub async fn get_reader(&self, key: &str) -> Result<Box<dyn AsyncRead + Send + Unpin>> {
        let path = self.path(key)?;
        let shown = self.url.display(key);
        let got = self
            .timed(
                &shown,
                "get",
                self.store.get_opts(&path, GetOptions::default()),
            )
            .await?
            .map_err(|e| store_error(&shown, "get", &e))?;
        let stream = got.into_stream().map(move |chunk| {
            chunk.map_err(|e| std::io::Error::other(store_error(&shown, "read", &e).to_string()))
        });
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    /// Writes `key` only if there is no such object (`If-None-Match: *`): an existing key is
    /// an [`AlreadyExists`] error, and the object is left as it was. Server-side encryption
    /// and storage class as configured.
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.create(key, bytes).await.map(|_| ())
    }

    /// As [`S3Store::put_new`], giving the new object's ETag.
    pub async fn create(&self, key: &str, bytes: Vec<u8>) -> Result<Option<String>> {
        match self.put_mode(key, bytes, PutMode::Create).await? {
            Ok(etag) => Ok(etag),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(anyhow::Error::new(AlreadyExists {
                    url: self.url.display(key),
                }))
            }
            Err(e) => Err(store_error(&self.url.display(key), "put", &e)),
        }
    }

    /// Replaces `key` only if it is still the version `etag` (`If-Match`), giving the new
    /// version's ETag; [`Replaced::Changed`] when another writer changed or removed it
    /// since, and nothing was written.
    pub async fn replace(&self, key: &str, bytes: Vec<u8>, etag: &str) -> Result<Replaced> {
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(etag.to_string()),
            version: None,
        });
        match self.put_mode(key, bytes, mode).await? {
            Ok(etag) => Ok(Replaced::Done(etag)),
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => Ok(Replaced::Changed),
            Err(e) => Err(store_error(&self.url.display(key), "put", &e)),
        }
    }

    /// One PUT of `bytes` in `mode`: the new ETag, or the service's error as it came.
    async fn put_mode(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<std::result::Result<Option<String>, object_store::Error>> {
        let path = self.path(key)?;
        let shown = self.url.display(key);
        let opts = PutOptions {
            mode,
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        let put = self.store.put_opts(&path, Bytes::from(bytes).into(), opts);
        Ok(self.timed(&shown, "put", put).await?.map(|r| r.e_tag))
    }

    /// Deletes `key`; deleting a key that is not there is not an error (S3's own rule).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let shown = self.url.display(key);
        self.timed(&shown, "delete", self.store.delete(&path))
            .await?
            .map_err(|e| store_error(&shown, "delete", &e))
    }

    /// Starts a multipart upload of `key` in parts of [`DEFAULT_PART_SIZE`] (8 MiB).
    pub async fn upload(&self, key: &str) -> Result<Upload> {
        self.upload_with_part_size(key, DEFAULT_PART_SIZE).await
    }

    /// Starts a multipart upload of `key` in parts of `part_size` bytes (raised to
    /// [`super::MIN_PART_SIZE`], 5 MiB, S3's least). S3 allows 10,000 parts: 8 MiB parts
    /// make objects of up to 78 GiB.
    pub async fn upload_with_part_size(&self, key: &str, part_size: usize) -> Result<Upload> {
        let path = self.path(key)?;
        let shown = self.url.display(key);
        let opts = object_store::PutMultipartOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        };
        let id = self
            .timed(
                &shown,
                "start upload",
                self.store.create_multipart_opts(&path, opts),
            )
            .await?
            .map_err(|e| store_error(&shown, "start upload", &e))?;
        Ok(Upload::new(
            self.store.clone(),
            path,
            shown,
            key.to_string(),
            id,
            part_size,
        ))
    }

    /// The multipart uploads under `under` (a folder relative to the prefix, as for
    /// [`S3Store::list`]) that were started and neither completed nor aborted.
    pub async fn pending_uploads(&self, under: &str) -> Result<Vec<PendingUpload>> {
        let prefix = self.url.key(under);
        let shown = self.url.display(&prefix);
        let folder = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        self.timed_result(
            &shown,
            "list uploads",
            self.signed.list_uploads(&folder, &shown),
        )
        .await
    }

    /// Aborts a pending upload: its parts are deleted and its key never appears.
    pub async fn abort_pending(&self, p: &PendingUpload) -> Result<()> {
        let path = self.path(&p.key)?;
        let shown = self.url.display(&p.key);
        let op = format!("abort upload {}", p.upload_id);
        self.timed(&shown, &op, self.store.abort_multipart(&path, &p.upload_id))
            .await?
            .map_err(|e| store_error(&shown, &op, &e))
    }

    /// Creates the bucket (first-time setup, tests). An existing bucket of the same owner is
    /// not an error.
    pub async fn create_bucket(&self) -> Result<()> {
        let shown = format!("s3://{}", self.url.bucket);
        self.timed_result(&shown, "create bucket", self.signed.create_bucket(&shown))
            .await
    }

    /// Deletes the bucket, which must be empty (tests).
    pub async fn delete_bucket(&self) -> Result<()> {
        let shown = format!("s3://{}", self.url.bucket);
        self.timed_result(&shown, "delete bucket", self.signed.delete_bucket(&shown))
            .await
    }

    fn path(&self, key: &str) -> Result<Path> {
        Path::parse(key).map_err(|e| {
            anyhow!(
                "{}: not a usable object key: {}",
                self.url.display(key),
                one_line(&e.to_string())
            )
        })
    }

    /// `fut`, or a timeout error after [`REQUEST_TIMEOUT`].
    async fn timed<T>(&self, shown: &str, op: &str, fut: impl Future<Output = T>) -> Result<T> {
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| {
                anyhow!(
                    "{shown}: {op}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )
            })
    }

    async fn timed_result<T>(
        &self,
        shown: &str,
        op: &str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.timed(shown, op, fut).await?
    }
}

pub(crate) fn info(meta: ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.to_string(),
        size: meta.size,
        etag: meta.e_tag,
        modified: meta.last_modified,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// reqwest (under object_store) takes rustls's process-wide default crypto provider, and
/// panics when there is none. The project links rustls with ring only, and its other TLS
/// clients pass ring explicitly, so making ring the default changes nothing for them. A
/// default already installed (by a program embedding this library) is kept.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
