//! The `pitr` commands' view of a bucket: the WAL archive (`archive_dir: s3://…`) and the
//! base backups (`base_dir: s3://…`) read and written from the commands' synchronous code.
//!
//! The commands run in the multi-thread runtime; the code that reads archives is synchronous
//! (it runs on blocking threads, or on a thread blocked with `block_in_place`), so a
//! [`Bucket`] drives each request on the runtime's handle. Objects are streamed through a
//! buffer ([`Bucket::reader`]): memory stays bounded whatever their size.
//!
//! The layout is the one on disk: the archive's keys are documented in `remote`, the base
//! backups are `<prefix>/base-<time>.tar.zst` and their manifest `<…>.tar.zst.json`, written
//! last, so an object without its manifest is never a base backup.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use super::archive::{self, ArchiveInfo, Archived, Listing};
use super::base::{self, BaseManifest, Found};
pub use crate::storage::BlockingStore as Bucket;

/// `archive.json` of an archive in a bucket, if written yet.
pub fn archive_info(b: &Bucket) -> Result<Option<ArchiveInfo>> {
    let key = b.key(archive::INFO_FILE);
    match b.small(&key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading {}", b.shown(&key))),
    }
}

/// The whole archive in a bucket, as [`archive::list`] lists a directory: each archived
/// file's `path` is its full key. There are no temporary names in a bucket (a push writes
/// its object whole or not at all); anything else under `wal/` is stray. Also returns the
/// objects' total size.
pub fn list_archive(b: &Bucket) -> Result<(Listing, u64)> {
    let dir = format!("{}/", b.key(archive::WAL_DIR));
    let mut out = Listing::default();
    let mut bytes = 0;
    for o in b.list(archive::WAL_DIR)? {
        let rest = o.key.strip_prefix(&dir).unwrap_or(&o.key);
        let ours = rest.split_once('/').and_then(|(sub, name)| {
            archive::parse_archived(name).filter(|(w, _)| w.subdir() == sub)
        });
        match ours {
            Some((wal, sha256)) => {
                bytes += o.size;
                out.files.push(Archived {
                    wal,
                    sha256,
                    path: PathBuf::from(&o.key),
                })
            }
            None => out.stray.push(PathBuf::from(b.shown(&o.key))),
        }
    }
    out.files.sort_by(|a, b| a.wal.name.cmp(&b.wal.name));
    Ok((out, bytes))
}

/// When each object under `under` was written, by full key.
pub fn modified(b: &Bucket, under: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
    Ok(b.list(under)?
        .into_iter()
        .map(|o| (o.key, o.modified))
        .collect())
}

/// The base backups of a bucket prefix, oldest first, as [`base::scan`] finds them in a
/// directory: `path` is the object's full key. An object whose manifest is missing, is
/// another target's, or records another size is not usable.
pub fn scan_bases(b: &Bucket, target: &str) -> Result<Vec<Found>> {
    let prefix = b.key("");
    let dir = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let objects = b.list("")?;
    let manifests: std::collections::BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o.key.strip_suffix(".json"))
        .collect();
    let mut out = Vec::new();
    for o in &objects {
        let Some(name) = o.key.strip_prefix(&dir) else {
            continue;
        };
        if name.contains('/') || base::parse_name(name).is_none() {
            continue;
        }
        let manifest_key = format!("{}.json", o.key);
        let manifest = if !manifests.contains(o.key.as_str()) {
            Err("no manifest: not a finished base backup".to_string())
        } else {
            match b.small(&manifest_key).and_then(|bytes| {
                BaseManifest::parse(&bytes.unwrap_or_default(), &b.shown(&manifest_key))
            }) {
                Err(e) => Err(format!("{e:#}")),
                Ok(m) => base::judge_manifest(m, target, name, o.size).and_then(|m| {
                    match (&m.etag, &o.etag) {
                        (Some(want), Some(got)) if want != got => Err(format!(
                            "ETag {got}, the manifest says {want}: the object was replaced"
                        )),
                        _ => Ok(m),
                    }
                }),
            }
        };
        out.push(Found {
            path: PathBuf::from(&o.key),
            manifest,
        });
    }
    base::sort_found(&mut out);
    Ok(out)
}

/// Deletes a base backup from the bucket: its manifest first (what is left, if anything, is
/// no longer taken for a backup).
pub fn delete_base(b: &Bucket, name: &str) -> Result<()> {
    let key = b.key(name);
    b.delete(&format!("{key}.json"))?;
    b.delete(&key)
}

/// What a killed base backup left in the bucket: multipart uploads of base backups never
/// completed (aborted), and base backup objects without a manifest written more than a
/// minute ago (deleted). Run under the target's lock, so no other base backup of ours is
/// running. Returns what was removed.
pub fn clean_bases(b: &Bucket, now: DateTime<Utc>) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let prefix = b.key("");
    let name_of = |key: &str| -> Option<String> {
        let name = if prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&prefix)?.strip_prefix('/')?
        };
        (!name.contains('/') && base::parse_name(name).is_some()).then(|| name.to_string())
    };
    for p in b.block(b.store.pending_uploads(""))? {
        if name_of(&p.key).is_some() {
            b.block(b.store.abort_pending(&p))?;
            removed.push(format!("{} (unfinished upload)", b.shown(&p.key)));
        }
    }
    let objects = b.list("")?;
    let keys: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    for o in &objects {
        if name_of(&o.key).is_none() || keys.contains(format!("{}.json", o.key).as_str()) {
            continue;
        }
        if now - o.modified > chrono::Duration::minutes(1) {
            b.delete(&o.key)?;
            removed.push(b.shown(&o.key));
        }
    }
    Ok(removed)
}

/// Where base backups go: a directory, or a bucket prefix.
#[derive(Debug)]
pub enum BaseLoc {
    Dir(PathBuf),
    Bucket(Box<Bucket>),
}

impl BaseLoc {
    pub fn shown(&self) -> String {
        match self {
            BaseLoc::Dir(d) => d.display().to_string(),
            BaseLoc::Bucket(b) => b.store.url().to_string(),
        }
    }

    pub fn scan(&self, target: &str) -> Result<Vec<Found>> {
        match self {
            BaseLoc::Dir(d) => base::scan(d, target),
            BaseLoc::Bucket(b) => scan_bases(b, target),
        }
    }

    pub fn delete(&self, name: &str) -> Result<()> {
        match self {
            BaseLoc::Dir(d) => base::delete(d, name),
            BaseLoc::Bucket(b) => delete_base(b, name),
        }
    }

    /// Reads a base backup back: hashed against its manifest, each tar entry handed to
    /// `each` (see [`base::read_back`]).
    pub fn read_back(
        &self,
        f: &Found,
        m: &BaseManifest,
        each: Option<&mut base::EntryFn<'_>>,
    ) -> Result<()> {
        match self {
            BaseLoc::Dir(_) => base::read_back(&f.path, m, each),
            BaseLoc::Bucket(b) => {
                let key = f.path.to_string_lossy();
                let shown = b.shown(&key);
                let reader = b.reader(&key)?;
                base::read_back_from(reader, &shown, m, each)
            }
        }
    }

    /// How a person names a base backup found here.
    pub fn shown_of(&self, f: &Found) -> String {
        match self {
            BaseLoc::Dir(_) => f.path.display().to_string(),
            BaseLoc::Bucket(b) => b.shown(&f.path.to_string_lossy()),
        }
    }
}

/// Where the WAL archive is, opened: a directory, or a bucket prefix.
#[derive(Debug)]
pub enum WalLoc {
    Dir(PathBuf),
    Bucket(Box<Bucket>),
}

impl WalLoc {
    pub fn shown(&self) -> String {
        match self {
            WalLoc::Dir(d) => d.display().to_string(),
            WalLoc::Bucket(b) => b.store.url().to_string(),
        }
    }

    pub fn info(&self) -> Result<Option<ArchiveInfo>> {
        match self {
            WalLoc::Dir(d) => ArchiveInfo::read(d),
            WalLoc::Bucket(b) => archive_info(b),
        }
    }

    /// The archive's files; for a directory that is not there, an error (an unmounted disk
    /// is not an empty archive). A bucket prefix with nothing under it is an empty archive.
    pub fn list(&self) -> Result<(Listing, Option<u64>)> {
        match self {
            WalLoc::Dir(d) => {
                if !d.is_dir() {
                    bail!(
                        "the archive {} does not exist or is not a directory",
                        d.display()
                    );
                }
                Ok((archive::list(d)?, None))
            }
            WalLoc::Bucket(b) => list_archive(b).map(|(l, n)| (l, Some(n))),
        }
    }

    /// An archived file, as a reader.
    pub fn open(&self, f: &Archived) -> Result<Box<dyn Read + '_>> {
        match self {
            WalLoc::Dir(_) => Ok(Box::new(
                std::fs::File::open(&f.path)
                    .with_context(|| format!("opening {}", f.path.display()))?,
            )),
            WalLoc::Bucket(b) => Ok(Box::new(b.reader(&f.path.to_string_lossy())?)),
        }
    }

    /// How a person names an archived file.
    pub fn shown_of(&self, f: &Archived) -> String {
        match self {
            WalLoc::Dir(_) => f.path.display().to_string(),
            WalLoc::Bucket(b) => b.shown(&f.path.to_string_lossy()),
        }
    }

    pub fn delete(&self, f: &Archived) -> Result<()> {
        match self {
            WalLoc::Dir(_) => std::fs::remove_file(&f.path)
                .with_context(|| format!("deleting {}", f.path.display())),
            WalLoc::Bucket(b) => b.delete(&f.path.to_string_lossy()),
        }
    }

    /// The published versions of `name`.
    pub fn versions(&self, name: &archive::WalName) -> Result<Vec<Archived>> {
        match self {
            WalLoc::Dir(d) => {
                archive::versions(&d.join(archive::WAL_DIR).join(name.subdir()), name)
            }
            WalLoc::Bucket(b) => {
                let under = format!("{}/{}", archive::WAL_DIR, name.subdir());
                let dir = format!("{}/", b.key(&under));
                let mut out: Vec<Archived> = b
                    .list(&under)?
                    .into_iter()
                    .filter_map(|o| {
                        let rest = o.key.strip_prefix(&dir)?;
                        let (wal, sha256) = archive::parse_archived(rest)?;
                        (wal == *name).then(|| Archived {
                            wal,
                            sha256,
                            path: PathBuf::from(&o.key),
                        })
                    })
                    .collect();
                out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
                Ok(out)
            }
        }
    }

    /// When an archived file was written (its modification time, or the object's).
    pub fn written_at(&self, f: &Archived) -> Option<DateTime<Utc>> {
        match self {
            WalLoc::Dir(_) => std::fs::metadata(&f.path)
                .ok()?
                .modified()
                .ok()
                .map(DateTime::<Utc>::from),
            WalLoc::Bucket(b) => {
                let key = f.path.to_string_lossy();
                b.block(b.store.head(&key)).ok()??.modified.into()
            }
        }
    }
}
