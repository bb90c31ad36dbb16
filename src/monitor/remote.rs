//! The validated store in S3-compatible object storage: a `validated_dir` of
//! `s3://bucket/prefix`.
//!
//! The layout is the directory's, as keys: `<prefix>/<company>/<city>/<site>/<database>/` holds
//! each backup `<file>`, its manifest `<file>.json` and the monitor's record
//! `<file>.validated.json`; processed site reports go under `<prefix>/.reports/`. As on disk,
//! a validated backup is a record *and* the backup it names, of the recorded size.
//!
//! A promotion streams the deposit's file into a multipart upload (memory bounded by the
//! part size and the parts in flight) while hashing it again: the bytes uploaded must be the
//! bytes the scan measured, else the upload is aborted and the file stays in the deposit.
//! The manifest follows, and the record is written last, so that an object without its
//! record is never a validated backup; only then is the deposit's copy removed. Old versions
//! go after the new one is in place, record first (what remains of an interrupted removal is
//! no longer a validated backup).
//!
//! A scan killed mid-way leaves a pending multipart upload, or a backup object without a
//! record: the next scan aborts the uploads pending in the jobs' directories and removes
//! backup objects without a record that are more than a minute old and that a promotion
//! left (their manifest is beside them, or the deposit still holds the file). Nothing else
//! of the prefix is ever deleted: keys outside the jobs' directories, and keys in them that
//! no promotion wrote, are left alone (`monitor verify` lists them). Only one monitor may
//! write to a prefix: the scan lock is local (in the state directory).
//!
//! Scans and verifications run on blocking threads (hashing, file reads): the operations
//! here wait on the runtime from there ([`Remote::wait`]).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::config::Job;
use super::hash::{self, Hashed};
use super::store::{Record, RECORD_SUFFIX, REPORTS_KEPT};
use crate::storage::{AlreadyExists, BlockingStore, Lease, ObjectInfo, SyncUpload};

/// A backup object without a record modified less than this ago may be a promotion under
/// way: left alone.
const LEFTOVER_MINUTES: i64 = 1;
/// The most a record or a manifest may weigh (the directory store's limits).
const RECORD_MAX_BYTES: u64 = 64 * 1024;
const MANIFEST_MAX_BYTES: u64 = 1024 * 1024;
/// Objects hashed at once by a verification.
const VERIFY_STREAMS: usize = 4;
const BUFFER: usize = 1024 * 1024;

/// A `validated_dir` of `s3://bucket/prefix` and its `s3:` options, as configured.
pub type Bucket = crate::storage::S3Place;

/// The bucket opened (credentials from the environment), with the runtime to wait on.
pub struct Remote {
    bucket: BlockingStore,
    /// The scan's lease on the prefix ([`Remote::hold`]): one scanning monitor at a time.
    lease: Option<Lease>,
}

/// A job's directory relative to the prefix: `company/city/site/database`.
fn db_dir(job: &Job) -> String {
    format!("{}/{}/{}/{}", job.company, job.city, job.site, job.database)
}

/// The objects directly in a folder, by name (sorted: what is reported comes in order).
type Listing = BTreeMap<String, ObjectInfo>;

impl Remote {
    /// Opens the bucket; must be called on the runtime the scan's threads will wait on. No
    /// request is made.
    pub async fn open(b: &Bucket) -> Result<Remote> {
        Ok(Remote {
            bucket: BlockingStore::open_async(&b.url, &b.options).await?,
            lease: None,
        })
    }

    /// Keeps the scan's lease on the prefix: promotions and pruning stop once it is lost.
    pub fn hold(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }

    /// An error once the lease held is lost (another monitor took the prefix over).
    fn leased(&self) -> Result<(), String> {
        match &self.lease {
            Some(l) => l.check().map_err(|e| format!("{e:#}")),
            None => Ok(()),
        }
    }

    /// Runs `f` to its end from a blocking thread (a scan's or a verification's).
    fn wait<F: std::future::Future>(&self, f: F) -> F::Output {
        self.bucket.block(f)
    }

    /// The full key of `name` in a job's directory.
    fn key(&self, job: &Job, name: &str) -> String {
        self.bucket
            .store
            .url()
            .key(&format!("{}/{name}", db_dir(job)))
    }

    /// `s3://bucket/key` of `name` in a job's directory.
    pub fn shown(&self, job: &Job, name: &str) -> String {
        self.bucket.store.url().display(&self.key(job, name))
    }

    /// The objects directly in a job's directory, by name.
    async fn listing(&self, job: &Job) -> Result<Listing> {
        let head = format!("{}/", self.key(job, ""));
        Ok(self
            .bucket
            .store
            .list(&db_dir(job))
            .await?
            .into_iter()
            .filter_map(|o| {
                let name = o.key.strip_prefix(&head)?.to_string();
                (!name.is_empty() && !name.contains('/')).then_some((name, o))
            })
            .collect())
    }

    async fn read_record(&self, job: &Job, name: &str) -> Result<Record, String> {
        let bytes = self
            .bucket
            .store
            .get_bytes(
                &self.key(job, &format!("{name}{RECORD_SUFFIX}")),
                RECORD_MAX_BYTES,
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not a record: {e}"))
    }

    /// Writes `key`, replacing what is there.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        match self.bucket.store.put_new(key, bytes.clone()).await {
            Err(e) if e.downcast_ref::<AlreadyExists>().is_some() => {
                self.bucket.store.delete(key).await?;
                self.bucket.store.put_new(key, bytes).await
            }
            other => other,
        }
    }

    /// A cheap request that fails as the scan would, with the bucket and the service's error
    /// code (unknown bucket, wrong keys): before a verification.
    pub async fn probe(&self, jobs: &[Job]) -> Result<()> {
        match jobs.first() {
            Some(j) => self.listing(j).await.map(drop),
            None => Ok(()),
        }
    }

    /// Before a scan, with its lock held: aborts the multipart uploads pending in the jobs'
    /// directories (a scan killed mid-upload), and removes the backup objects a promotion
    /// left without their record (see the module's header). Returns what it did; an error
    /// (the bucket unreachable, refused keys) stops the scan before anything is judged.
    pub async fn clean(&self, jobs: &[Job], deposit_dir: &Path) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut seen = HashSet::new();
        let old = Utc::now() - Duration::minutes(LEFTOVER_MINUTES);
        for job in jobs {
            if !seen.insert(db_dir(job)) {
                continue;
            }
            let head = format!("{}/", self.key(job, ""));
            for p in self.bucket.store.pending_uploads(&db_dir(job)).await? {
                if p.key.strip_prefix(&head).is_some_and(|n| !n.contains('/')) {
                    self.bucket.store.abort_pending(&p).await?;
                    done.push(format!(
                        "aborted the unfinished upload of {}",
                        self.bucket.store.url().display(&p.key)
                    ));
                }
            }
            let objects = self.listing(job).await?;
            let deposit = deposit_dir.join(job.site_path()).join(&job.database);
            for (name, o) in &objects {
                if name.ends_with(".json")
                    || objects.contains_key(&format!("{name}{RECORD_SUFFIX}"))
                    || o.modified > old
                {
                    continue;
                }
                let manifest = format!("{name}.json");
                let left_by_a_promotion = objects.contains_key(&manifest)
                    || std::fs::symlink_metadata(deposit.join(name)).is_ok();
                if !left_by_a_promotion {
                    continue;
                }
                self.bucket.store.delete(&o.key).await?;
                if objects.contains_key(&manifest) {
                    self.bucket.store.delete(&self.key(job, &manifest)).await?;
                }
                done.push(format!(
                    "removed {}, left without a record by a scan that did not finish",
                    self.shown(job, name)
                ));
            }
        }
        Ok(done)
    }

    /// The validated backups of a job's directory, oldest first: records whose backup is
    /// there, of the recorded size.
    pub fn list(&self, job: &Job) -> Result<Vec<Record>, String> {
        self.wait(async {
            let objects = self.listing(job).await.map_err(|e| format!("{e:#}"))?;
            let mut out = Vec::new();
            for name in objects.keys() {
                let Some(file) = name.strip_suffix(RECORD_SUFFIX) else {
                    continue;
                };
                let Ok(r) = self.read_record(job, file).await else {
                    continue;
                };
                if r.file == file && objects.get(file).is_some_and(|o| o.size == r.size_bytes) {
                    out.push(r);
                }
            }
            out.sort_by(|a, b| (a.validated_at, &a.file).cmp(&(b.validated_at, &b.file)));
            Ok::<_, String>(out)
        })
    }

    /// Promotes the deposit's `src` (hashed as `hashed`, open as `file`) into the job's
    /// directory under `record.file`: the upload re-hashed, the manifest, the record last,
    /// then the deposit's copies removed (its manifest too: until the record is written, a
    /// scan killed here leaves the deposit whole, and the next one starts again from it).
    /// `recorded`: an earlier scan already promoted these bytes under this name (killed
    /// before it removed the deposit's copy): not sent again.
    pub fn promote(
        &self,
        src: &Path,
        file: &File,
        hashed: &Hashed,
        job: &Job,
        record: &Record,
        recorded: bool,
    ) -> Result<(), String> {
        let name = &record.file;
        let key = self.key(job, name);
        let shown = self.bucket.store.url().display(&key);
        self.leased()?;
        if !recorded {
            self.upload(src, file, hashed, &key, &shown)?;
        }
        let manifest = self.send_manifest(src, job, name)?;
        if !recorded {
            self.leased()?;
            let body = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
            self.wait(self.put(&format!("{key}{RECORD_SUFFIX}"), body))
                .map_err(|e| format!("promoting {}: the record: {e:#}", src.display()))?;
        }
        if let Some(m) = manifest {
            let _ = std::fs::remove_file(m);
        }
        std::fs::remove_file(src).map_err(|e| {
            format!(
                "promoted to {shown}, but removing the deposit's copy {} failed: {e}",
                src.display()
            )
        })
    }

    /// Streams `file` into `key`, hashing what is sent; aborts unless it is what was hashed.
    fn upload(
        &self,
        src: &Path,
        mut file: &File,
        hashed: &Hashed,
        key: &str,
        shown: &str,
    ) -> Result<(), String> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            format!("promoting {} to {shown}: {what}: {e:#}", src.display())
        };
        {
            use std::os::unix::fs::MetadataExt;
            let m = file.metadata().map_err(|e| err("reopening", &e))?;
            if (m.dev(), m.ino()) != hashed.dev_ino {
                return Err(format!(
                    "promoting {}: the file changed while it was validated; left in the deposit",
                    src.display()
                ));
            }
        }
        let upload = self
            .wait(self.bucket.store.upload(key))
            .map_err(|e| err("starting the upload", &e))?;
        let mut out = SyncUpload::new(upload);
        let mut h = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; BUFFER];
        let sent: std::io::Result<()> = (|| {
            file.rewind()?;
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                h.update(&buf[..n]);
                size += n as u64;
                out.write_all(&buf[..n])?;
            }
        })();
        if let Err(e) = sent {
            let _ = out.abort();
            return Err(err("uploading (aborted; left in the deposit)", &e));
        }
        let sha = hex::encode(h.finalize());
        if size != hashed.size_bytes || sha != hashed.sha256 {
            let _ = out.abort();
            return Err(format!(
                "promoting {} to {shown}: the bytes read for the upload ({size} bytes, SHA-256 {sha}) are not those validated ({} bytes, SHA-256 {}): the file changed; upload aborted, left in the deposit",
                src.display(),
                hashed.size_bytes,
                hashed.sha256
            ));
        }
        let object = out
            .finish()
            .map_err(|e| err("completing the upload (left in the deposit)", &e))?;
        if object.size != size {
            let _ = self.wait(self.bucket.store.delete(key));
            return Err(format!(
                "promoting {} to {shown}: the bucket holds {} bytes, {size} were sent; removed, left in the deposit",
                src.display(),
                object.size
            ));
        }
        Ok(())
    }

    /// The manifest travels with its backup: the deposit's `<name>.json` beside `src`, when
    /// there, is written beside the backup in the bucket, then removed from the deposit.
    pub fn carry_manifest(&self, src: &Path, job: &Job, name: &str) -> Result<(), String> {
        if let Some(m) = self.send_manifest(src, job, name)? {
            let _ = std::fs::remove_file(m);
        }
        Ok(())
    }

    /// Writes the deposit's `<name>.json` beside `src`, when there, beside the backup in the
    /// bucket; returns its path in the deposit when it was written.
    fn send_manifest(&self, src: &Path, job: &Job, name: &str) -> Result<Option<PathBuf>, String> {
        let manifest = src.with_file_name(format!("{name}.json"));
        let Ok(m) = hash::open_no_follow(&manifest) else {
            return Ok(None);
        };
        let mut text = Vec::new();
        if m.take(MANIFEST_MAX_BYTES).read_to_end(&mut text).is_err() {
            return Ok(None);
        }
        let key = self.key(job, &format!("{name}.json"));
        self.wait(self.put(&key, text))
            .map_err(|e| format!("promoting {}: the manifest: {e:#}", src.display()))?;
        Ok(Some(manifest))
    }

    /// Writes a backup's record (after a crash lost it).
    pub fn write_record(&self, job: &Job, record: &Record) -> Result<(), String> {
        let body = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        let key = self.key(job, &format!("{}{RECORD_SUFFIX}", record.file));
        self.wait(self.put(&key, body))
            .map_err(|e| format!("{e:#}"))
    }

    /// Keeps the `keep` newest validated backups of a job; returns those removed. Each goes
    /// record first, then the backup and its manifest: never a key of another name.
    pub fn prune(&self, job: &Job, keep: u32) -> Vec<String> {
        let Ok(all) = self.list(job) else {
            return Vec::new();
        };
        if self.leased().is_err() {
            return Vec::new();
        }
        let excess = all.len().saturating_sub(keep.max(1) as usize);
        let mut removed = Vec::new();
        for r in &all[..excess] {
            let gone = self.wait(async {
                for f in [
                    format!("{}{RECORD_SUFFIX}", r.file),
                    r.file.clone(),
                    format!("{}.json", r.file),
                ] {
                    self.bucket.store.delete(&self.key(job, &f)).await?;
                }
                anyhow::Ok(())
            });
            if gone.is_ok() {
                removed.push(self.shown(job, &r.file));
            }
        }
        removed
    }

    /// Archives a processed site report as `<prefix>/.reports/<site>/STATUS-<generated_at>.json`
    /// (once; the oldest beyond [`REPORTS_KEPT`] removed). Returns its URL when written now.
    pub fn archive_report(
        &self,
        site: &Path,
        generated_at: DateTime<Utc>,
        bytes: &[u8],
    ) -> Result<Option<String>, String> {
        let folder = format!(".reports/{}", site.display());
        let name = format!("STATUS-{}.json", generated_at.format("%Y%m%dT%H%M%SZ"));
        let key = self.bucket.store.url().key(&format!("{folder}/{name}"));
        self.wait(async {
            match self.bucket.store.put_new(&key, bytes.to_vec()).await {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<AlreadyExists>().is_some() => {
                    return Ok::<_, String>(None)
                }
                Err(e) => return Err(format!("{e:#}")),
            }
            let head = format!("{}/", self.bucket.store.url().key(&folder));
            let mut all: Vec<String> = self
                .bucket
                .store
                .list(&folder)
                .await
                .map_err(|e| format!("{e:#}"))?
                .into_iter()
                .map(|o| o.key)
                .filter(|k| {
                    k.strip_prefix(&head).is_some_and(|n| {
                        n.starts_with("STATUS-") && n.ends_with(".json") && !n.contains('/')
                    })
                })
                .collect();
            all.sort();
            for old in &all[..all.len().saturating_sub(REPORTS_KEPT)] {
                let _ = self.bucket.store.delete(old).await;
            }
            Ok(Some(self.bucket.store.url().display(&key)))
        })
    }

    /// A job's directory for a verification: its records (by backup name, read), the names
    /// of its other objects, and every name there.
    #[allow(clippy::type_complexity)]
    pub fn inventory(
        &self,
        job: &Job,
    ) -> Result<
        (
            Vec<(String, Result<Record, String>)>,
            Vec<String>,
            HashSet<String>,
        ),
        String,
    > {
        self.wait(async {
            let objects = self.listing(job).await.map_err(|e| format!("{e:#}"))?;
            let mut found = Vec::new();
            let mut others = Vec::new();
            for name in objects.keys() {
                match name.strip_suffix(RECORD_SUFFIX) {
                    Some(backup) => {
                        found.push((backup.to_string(), self.read_record(job, backup).await))
                    }
                    None => others.push(name.clone()),
                }
            }
            others.sort();
            found.sort_by(|a, b| a.0.cmp(&b.0));
            Ok::<_, String>((found, others, objects.into_keys().collect()))
        })
    }

    /// Streams one object, hashing it.
    async fn hash_object(&self, key: &str) -> Result<Hashed, String> {
        let mut reader = self
            .bucket
            .store
            .get_reader(key)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let mut h = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = reader.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Hashed {
            size_bytes: size,
            sha256: hex::encode(h.finalize()),
            dev_ino: (0, 0),
        })
    }

    /// Hashes one backup of a job's directory, read whole from the bucket.
    pub fn hash_one(&self, job: &Job, name: &str) -> Result<Hashed, String> {
        self.wait(self.hash_object(&self.key(job, name)))
    }

    /// Hashes every `(job, name)`, a few streams at once; results in the given order.
    pub fn hash_all(&self, items: &[(&Job, String)]) -> Vec<Result<Hashed, String>> {
        let keys: Vec<String> = items.iter().map(|(j, n)| self.key(j, n)).collect();
        self.wait(
            futures_util::stream::iter(keys.iter().map(|k| self.hash_object(k)))
                .buffered(VERIFY_STREAMS)
                .collect(),
        )
    }
}
