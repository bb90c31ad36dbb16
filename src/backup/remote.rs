//! Backups in S3-compatible object storage: a backup `dir:` of `s3://bucket/prefix`.
//!
//! The same rules as on disk, with objects: a backup is the object `<prefix>/<name>` *and*
//! its manifest `<prefix>/<name>.json`, written last and only if absent (a conditional
//! put), so that an object without a manifest is never a backup. The dump streams to the
//! bucket while it is hashed (a multipart upload: memory bounded by the part size and the
//! parts in flight, no local copy); an upload that fails is aborted, and the next run
//! aborts any it finds for the target's database and removes backup objects left without a
//! manifest (one writer per prefix: the lock that makes this safe is the target's, local).
//! Every key is made from the prefix and the backup name pattern, never from a
//! manifest; keys of the prefix that are not this target's backups are never touched.
//!
//! Reading a backup (verify, restore, drills, anonymize) streams the object into a private
//! temporary file while re-hashing it, and refuses it before anything else reads it when
//! its size or SHA-256 differs from the manifest's: the engines' tools then read a local
//! file, as for a backup on disk (pg_restore needs to seek for a parallel restore).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{
    dated_ahead, file_component, BackupName, Entry, HashingWriter, Manifest, MANIFEST_MAX_BYTES,
};
use crate::config::{BackupEntry, Target};
use crate::engine;
use crate::storage::{S3Place, S3Store, SyncUpload};

/// A backup object without a manifest named less than this ago may be the run that is
/// writing it (as on disk): left alone.
const LEFTOVER_MINUTES: i64 = 1;

/// Where a target's backups are, when they are in a bucket.
pub type RemoteDir = S3Place;

/// A target's backup `dir` when it is `s3://bucket/prefix` (with its `s3:` options), else
/// None.
pub fn remote_dir(cfg: &BackupEntry) -> Option<RemoteDir> {
    S3Place::parse(&cfg.dir, cfg.s3.as_ref())
}

/// What the keys of the backups start with: `prefix/` (nothing for a whole bucket).
fn dir_prefix(store: &S3Store) -> String {
    let p = store.url().key("");
    if p.is_empty() {
        p
    } else {
        format!("{p}/")
    }
}

/// The display path of an object: `s3://bucket/key`.
fn object_path(store: &S3Store, key: &str) -> PathBuf {
    PathBuf::from(store.url().display(key))
}

/// The key of an entry listed by [`scan_at`] (its path is `s3://bucket/key`).
fn key_of(store: &S3Store, e: &Entry) -> Result<String> {
    let p = e.path.to_string_lossy();
    let head = format!("s3://{}/", store.url().bucket);
    p.strip_prefix(&head)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{p}: not an object of s3://{}", store.url().bucket))
}

/// The backups of `target` under the store's prefix, newest first, as [`super::scan_at`]
/// gives them for a directory. Only direct children of the prefix named like a backup of
/// the target's database are entries; the manifests are read (bounded in size).
pub async fn scan_at(store: &S3Store, target: &Target, now: DateTime<Utc>) -> Result<Vec<Entry>> {
    let database = file_component(&target.connection.database);
    let objects = store.list("").await?;
    let prefix = dir_prefix(store);
    let mut out = Vec::new();
    for o in &objects {
        let Some(rest) = o.key.strip_prefix(&prefix) else {
            continue;
        };
        if rest.contains('/') {
            continue;
        }
        let Some(name) = BackupName::parse(rest) else {
            continue;
        };
        if name.database != database {
            continue;
        }
        let mkey = format!("{}.json", o.key);
        let manifest = if objects.iter().any(|x| x.key == mkey) {
            match store.get_bytes(&mkey, MANIFEST_MAX_BYTES).await {
                Ok(bytes) => serde_json::from_slice::<Manifest>(&bytes).map_err(|e| {
                    format!("{}: not a valid manifest: {e}", store.url().display(&mkey))
                }),
                Err(e) => Err(format!("{e:#}")),
            }
        } else {
            Err("no manifest: not a finished backup".to_string())
        };
        let mut entry = Entry {
            path: object_path(store, &o.key),
            dated_ahead: dated_ahead(&name, &manifest, now),
            name,
            size: o.size,
            manifest,
            foreign: None,
            present: true,
        };
        entry.check_belongs(target, None);
        out.push(entry);
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.name.taken));
    Ok(out)
}

/// Before a backup, with the target's lock held: aborts the multipart uploads left under
/// the prefix for the target's database (a run killed mid-upload), and removes its backup
/// objects that have no manifest (named more than a minute ago). Returns what it did.
pub async fn clean(store: &S3Store, database: &str, now: DateTime<Utc>) -> Result<Vec<String>> {
    let database = file_component(database);
    let prefix = dir_prefix(store);
    let ours = |key: &str| {
        key.strip_prefix(&prefix)
            .filter(|rest| !rest.contains('/'))
            .and_then(BackupName::parse)
            .filter(|n| n.database == database)
    };
    let mut done = Vec::new();
    for p in store.pending_uploads("").await? {
        if ours(&p.key).is_some() {
            store.abort_pending(&p).await?;
            done.push(format!(
                "aborted the unfinished upload of {}",
                store.url().display(&p.key)
            ));
        }
    }
    let objects = store.list("").await?;
    for o in &objects {
        let Some(name) = ours(&o.key) else { continue };
        let has_manifest = objects.iter().any(|x| x.key == format!("{}.json", o.key));
        let old = name.taken.and_utc() < now - chrono::Duration::minutes(LEFTOVER_MINUTES);
        if !has_manifest && old {
            store.delete(&o.key).await?;
            done.push(format!(
                "removed {}, left without a manifest by a run that did not finish",
                store.url().display(&o.key)
            ));
        }
    }
    Ok(done)
}

/// What a backup written to the bucket is.
pub struct Written {
    pub info: engine::DumpInfo,
    pub sha256: String,
    pub size: u64,
    pub etag: Option<String>,
    pub path: PathBuf,
}

/// Streams the target's dump into `<prefix>/<name>` while hashing it. On failure the upload
/// is aborted: nothing of it stays in the bucket.
pub async fn write_backup(
    store: &S3Store,
    target: &Target,
    cfg: &BackupEntry,
    name: &BackupName,
) -> Result<Written> {
    let key = store.url().key(&name.file_name());
    if store.head(&key).await?.is_some() {
        bail!(
            "{} already exists (two backups in the same second?)",
            store.url().display(&key)
        );
    }
    let upload = store.upload(&key).await?;
    let mut w = HashingWriter::new(SyncUpload::new(upload));
    let dumped = engine::dump(target, cfg, &mut w).await;
    let (upload, sha, size) = w.finish();
    let info = match dumped {
        Ok(info) => info,
        Err(e) => {
            let _ = upload.abort();
            return Err(e);
        }
    };
    let object = upload
        .finish()
        .with_context(|| format!("completing the upload of {}", store.url().display(&key)))?;
    if object.size != size {
        let _ = store.delete(&key).await;
        bail!(
            "{}: the bucket holds {} bytes, {size} were sent",
            store.url().display(&key),
            object.size
        );
    }
    Ok(Written {
        info,
        sha256: sha,
        size,
        etag: object.etag,
        path: object_path(store, &key),
    })
}

/// Writes the manifest object, only if none is there: the backup exists from this moment.
pub async fn write_manifest(store: &S3Store, m: &Manifest) -> Result<()> {
    let key = format!("{}.json", store.url().key(&m.file));
    let mut text = serde_json::to_vec_pretty(m)?;
    text.push(b'\n');
    store.put_new(&key, text).await
}

/// Deletes a backup object, then its manifest (as on disk: a manifest left alone by a crash
/// still marks the backup as ours).
pub async fn delete(store: &S3Store, e: &Entry) -> Result<()> {
    let key = key_of(store, e)?;
    store.delete(&key).await?;
    store.delete(&format!("{key}.json")).await
}

/// The cheap check of a backup object: there, of the manifest's size and with the ETag the
/// upload returned, by one HEAD (no byte read).
pub async fn quick_check(store: &S3Store, e: &Entry) -> Result<()> {
    if let Some(why) = &e.foreign {
        bail!("{why}");
    }
    let m = e
        .manifest
        .as_ref()
        .map_err(|why| anyhow!("{}: {why}", e.path.display()))?;
    let key = key_of(store, e)?;
    let Some(o) = store.head(&key).await? else {
        bail!(
            "{}: the object is missing (its manifest is there)",
            e.path.display()
        );
    };
    if o.size != m.size_bytes {
        bail!(
            "{}: size {} bytes, the manifest says {} (truncated or altered)",
            e.path.display(),
            o.size,
            m.size_bytes
        );
    }
    if let (Some(want), Some(got)) = (&m.etag, &o.etag) {
        if want != got {
            bail!(
                "{}: ETag {got} is not the manifest's {want} (rewritten since the backup)",
                e.path.display()
            );
        }
    }
    Ok(())
}

/// A backup object copied into a private temporary directory, re-hashed on the way; the
/// directory goes with it.
pub struct LocalCopy {
    dir: PathBuf,
    pub entry: Entry,
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Streams the object of `e` into a private temporary directory (with its manifest beside
/// it), checking its size and SHA-256 against the manifest: a damaged object is refused
/// before any tool reads it. The copy's entry keeps the manifest (and its checks).
pub async fn fetch(store: &S3Store, e: &Entry) -> Result<LocalCopy> {
    if let Some(why) = &e.foreign {
        bail!("{why}");
    }
    let m = e
        .manifest
        .clone()
        .map_err(|why| anyhow!("{}: {why}", e.path.display()))?;
    let key = key_of(store, e)?;
    let dir = std::env::temp_dir().join(format!(
        "mairie-dba-fetch-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    super::private_dir(&dir)?;
    // Removes the directory on any failure below.
    let mut copy = LocalCopy {
        dir: dir.clone(),
        entry: e.clone(),
    };
    let path = dir.join(e.file_name());
    let mut file = tokio::fs::File::from_std(super::create_private(&path)?);
    let mut reader = store.get_reader(&key).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .with_context(|| format!("reading {}", e.path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        tokio::io::AsyncWriteExt::write_all(&mut file, &buf[..n])
            .await
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    drop(file);
    super::matches_manifest(&e.path, size, &hex::encode(hasher.finalize()), &m)?;
    m.write(&Manifest::path_for(&path))?;
    copy.entry = Entry::for_file(&path)?;
    Ok(copy)
}

/// The local directory's equivalent for the record of a remote place: the state records
/// and the lock of a target whose backups are in a bucket live in the state directory.
pub fn lock_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("locks")
}
