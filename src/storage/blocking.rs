//! [`S3Store`] for synchronous code: the code that hashes, compresses and unpacks runs on
//! blocking threads (or a worker inside `block_in_place`) of the multi-thread runtime, and
//! waits there for each request ([`BlockingStore::block`]). Objects are read through a
//! buffer ([`BlockingStore::reader`]): memory stays bounded whatever their size.

use std::future::Future;
use std::io::{self, BufReader, Read};

use anyhow::{anyhow, Result};
use tokio::io::AsyncReadExt;
use tokio::runtime::{Handle, RuntimeFlavor};

use super::{ObjectInfo, S3Options, S3Store, S3Url, SyncUpload};

/// The largest object [`BlockingStore::small`] reads (manifests, `archive.json`).
const SMALL_MAX: u64 = 1024 * 1024;

/// An open bucket prefix, for synchronous callers inside the multi-thread runtime.
#[derive(Debug)]
pub struct BlockingStore {
    pub store: S3Store,
    handle: Handle,
}

impl BlockingStore {
    /// Opens `url` from synchronous code running in the multi-thread runtime (a command's
    /// blocking thread, or a worker inside `block_in_place`). No request is made.
    pub fn open(url: &S3Url, options: &S3Options) -> Result<BlockingStore> {
        let handle = Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
            .ok_or_else(|| anyhow!("{url}: object storage cannot be read from here"))?;
        let store = tokio::task::block_in_place(|| handle.block_on(S3Store::open(url, options)))?;
        Ok(BlockingStore { store, handle })
    }

    /// Opens `url` on the runtime, for synchronous code that runs later on its blocking
    /// threads. No request is made.
    pub async fn open_async(url: &S3Url, options: &S3Options) -> Result<BlockingStore> {
        Ok(BlockingStore {
            store: S3Store::open(url, options).await?,
            handle: Handle::current(),
        })
    }

    /// Runs `f` to its end on the runtime, blocking this thread.
    pub fn block<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.handle.block_on(f))
    }

    /// `s3://bucket/key` of a full key.
    pub fn shown(&self, key: &str) -> String {
        self.store.url().display(key)
    }

    /// The full key of `rel`, a name relative to the prefix.
    pub fn key(&self, rel: &str) -> String {
        self.store.url().key(rel)
    }

    pub fn list(&self, under: &str) -> Result<Vec<ObjectInfo>> {
        self.block(self.store.list(under))
    }

    /// A small object (a manifest, `archive.json`), or None when there is none.
    pub fn small(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if self.block(self.store.head(key))?.is_none() {
            return Ok(None);
        }
        self.block(self.store.get_bytes(key, SMALL_MAX)).map(Some)
    }

    /// The object `key` as a reader, streamed through a 1 MiB buffer.
    pub fn reader(&self, key: &str) -> Result<BufReader<ObjectReader<'_>>> {
        let inner = self.block(self.store.get_reader(key))?;
        Ok(BufReader::with_capacity(
            1 << 20,
            ObjectReader {
                bucket: self,
                inner,
            },
        ))
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.block(self.store.delete(key))
    }

    /// Writes a small object only if there is none under `key` (`If-None-Match: *`).
    pub fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.block(self.store.put_new(key, bytes))
    }

    /// A multipart upload of `key`, written from synchronous code.
    pub fn upload(&self, key: &str) -> Result<SyncUpload> {
        Ok(SyncUpload::new(self.block(self.store.upload(key))?))
    }
}

/// An object read from synchronous code, one request at a time on the runtime.
pub struct ObjectReader<'b> {
    bucket: &'b BlockingStore,
    inner: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.bucket.block(inner.read(buf))
    }
}
