//! Where a feature keeps things in a bucket, as its configuration says: `s3://bucket/prefix`
//! and its `s3:` options (never credentials). The backups' `dir`, the PITR `archive_dir` and
//! `base_dir`, and the monitor's `validated_dir` each become one when they are a URL.

use anyhow::Result;

use super::{BlockingStore, S3Options, S3Store, S3Url};

#[derive(Debug, Clone)]
pub struct S3Place {
    pub url: S3Url,
    pub options: S3Options,
}

impl S3Place {
    /// `dir` when it is `s3://bucket/prefix`, with the options given (absent: the defaults);
    /// None for anything else (a directory).
    pub fn parse(dir: &std::path::Path, options: Option<&S3Options>) -> Option<S3Place> {
        Some(S3Place {
            url: S3Url::parse(dir.to_str()?)?,
            options: options.cloned().unwrap_or_default(),
        })
    }

    /// `s3://bucket/prefix`, as messages name it.
    pub fn shown(&self) -> String {
        self.url.display(&self.url.key(""))
    }

    /// The store, for async code. No request is made.
    pub async fn open(&self) -> Result<S3Store> {
        S3Store::open(&self.url, &self.options).await
    }

    /// The store, for synchronous code in the multi-thread runtime. No request is made.
    pub fn open_blocking(&self) -> Result<BlockingStore> {
        BlockingStore::open(&self.url, &self.options)
    }
}
