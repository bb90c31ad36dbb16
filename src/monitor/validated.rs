//! Where validated backups are kept: a directory ([`super::store`]) or a bucket
//! ([`super::remote`]), behind the few operations a scan and a verification need, so that
//! both read the same whichever it is.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::config::Job;
use super::hash::{self, Hashed};
use super::remote::{Bucket, Remote};
use super::store::{self, Record};

/// The configured store.
#[derive(Debug, Clone)]
pub enum ValidatedStore {
    Dir(PathBuf),
    Bucket(Bucket),
}

impl ValidatedStore {
    /// As messages name it: the directory, or `s3://bucket/prefix`.
    pub fn shown(&self) -> String {
        match self {
            ValidatedStore::Dir(d) => d.display().to_string(),
            ValidatedStore::Bucket(b) => b.shown(),
        }
    }

    /// Opens it (a bucket with the environment's credentials; no request made). On the
    /// runtime whose blocking threads will use it.
    pub async fn open(&self) -> Result<Store> {
        Ok(match self {
            ValidatedStore::Dir(d) => Store::Dir(d.clone()),
            ValidatedStore::Bucket(b) => Store::Bucket(Box::new(Remote::open(b).await?)),
        })
    }
}

/// The store opened, for a scan or a verification (on a blocking thread).
pub enum Store {
    Dir(PathBuf),
    Bucket(Box<Remote>),
}

/// What a verification sees of one job's directory.
pub struct Inventory {
    /// Each record: the backup's name (the record's name without its suffix), the record.
    pub records: Vec<(String, Result<Record, String>)>,
    /// The names of the other entries.
    pub others: Vec<String>,
    /// Every name, for a bucket (a directory is asked).
    names: Option<HashSet<String>>,
    dir: PathBuf,
}

impl Inventory {
    /// Whether `name` is in the job's directory.
    pub fn has(&self, name: &str) -> bool {
        match &self.names {
            Some(names) => names.contains(name),
            None => std::fs::symlink_metadata(self.dir.join(name)).is_ok(),
        }
    }
}

impl Store {
    /// A job's directory, as messages name it (a directory, or `s3://bucket/key`).
    fn dir(&self, job: &Job) -> PathBuf {
        match self {
            Store::Dir(root) => store::db_dir(root, job),
            Store::Bucket(r) => PathBuf::from(r.shown(job, "").trim_end_matches('/')),
        }
    }

    /// `name` in a job's directory, as messages name it.
    pub fn path_of(&self, job: &Job, name: &str) -> String {
        match self {
            Store::Dir(root) => store::db_dir(root, job).join(name).display().to_string(),
            Store::Bucket(r) => r.shown(job, name),
        }
    }

    /// Removes what a killed scan left in a job's directory (a bucket is cleaned once before
    /// the scan: [`Remote::clean`]).
    pub fn clean_leftovers(&self, job: &Job) -> Vec<String> {
        match self {
            Store::Dir(root) => store::clean_leftovers(&store::db_dir(root, job)),
            Store::Bucket(_) => Vec::new(),
        }
    }

    /// The validated backups of a job, oldest first.
    pub fn list(&self, job: &Job) -> Result<Vec<Record>, String> {
        match self {
            Store::Dir(root) => Ok(store::list(&store::db_dir(root, job))),
            Store::Bucket(r) => r.list(job),
        }
    }

    /// Promotes a deposited backup with its record and manifest. `kept`: the job's validated
    /// backups before it.
    pub fn promote(
        &self,
        src: &Path,
        file: &File,
        hashed: &Hashed,
        job: &Job,
        record: &Record,
        kept: &[Record],
    ) -> Result<(), String> {
        match self {
            Store::Dir(root) => {
                store::promote(src, file, hashed, &store::db_dir(root, job), record)
            }
            Store::Bucket(r) => {
                let recorded = kept.iter().any(|k| {
                    k.file == record.file
                        && k.sha256 == record.sha256
                        && k.size_bytes == record.size_bytes
                });
                r.promote(src, file, hashed, job, record, recorded)
            }
        }
    }

    /// The deposit's manifest of `name` follows its promoted backup.
    pub fn carry_manifest(&self, src: &Path, job: &Job, name: &str) {
        let _ = match self {
            Store::Dir(root) => store::carry_manifest(src, &store::db_dir(root, job), name)
                .map_err(|e| e.to_string()),
            Store::Bucket(r) => r.carry_manifest(src, job, name),
        };
    }

    /// Hashes `name` of a job's directory as it is stored.
    pub fn hash_stored(&self, job: &Job, name: &str) -> Result<Hashed, String> {
        match self {
            Store::Dir(root) => {
                hash::hash_file(&store::db_dir(root, job).join(name)).map_err(|e| e.to_string())
            }
            Store::Bucket(r) => r.hash_one(job, name),
        }
    }

    /// Writes the record of a backup already stored (after a crash lost it).
    pub fn rewrite_record(&self, job: &Job, record: &Record) -> Result<(), String> {
        match self {
            Store::Dir(root) => {
                store::rewrite_record(&store::db_dir(root, job), record).map_err(|e| e.to_string())
            }
            Store::Bucket(r) => r.write_record(job, record),
        }
    }

    /// Keeps the `keep` newest backups of a job; returns those removed.
    pub fn prune(&self, job: &Job, keep: u32) -> Vec<String> {
        match self {
            Store::Dir(root) => store::prune(&store::db_dir(root, job), keep),
            Store::Bucket(r) => r.prune(job, keep),
        }
    }

    /// Makes the scan's promotions durable before the history records them (a completed
    /// upload already is).
    pub fn sync(&self) -> Result<(), String> {
        match self {
            Store::Dir(root) => store::sync_filesystem(root)
                .map_err(|e| format!("syncing {} failed: {e}", root.display())),
            Store::Bucket(_) => Ok(()),
        }
    }

    /// Archives a processed site report; its path or URL when written now.
    pub fn archive_report(
        &self,
        site: &Path,
        generated_at: DateTime<Utc>,
        bytes: &[u8],
    ) -> Result<Option<String>, String> {
        match self {
            Store::Dir(root) => store::archive_report(root, site, generated_at, bytes)
                .map(|p| p.map(|p| p.display().to_string()))
                .map_err(|e| e.to_string()),
            Store::Bucket(r) => r.archive_report(site, generated_at, bytes),
        }
    }

    /// A job's directory for a verification.
    pub fn inventory(&self, job: &Job) -> Result<Inventory, String> {
        let dir = self.dir(job);
        match self {
            Store::Dir(_) => {
                let (records, others) = store::inventory(&dir);
                Ok(Inventory {
                    records,
                    others,
                    names: None,
                    dir,
                })
            }
            Store::Bucket(r) => {
                let (records, others, names) = r.inventory(job)?;
                Ok(Inventory {
                    records,
                    others,
                    names: Some(names),
                    dir,
                })
            }
        }
    }

    /// Hashes every `(job, name)`; results in the given order.
    pub fn hash_all(&self, items: &[(&Job, String)]) -> Vec<Result<Hashed, String>> {
        match self {
            Store::Dir(root) => {
                let paths: Vec<PathBuf> = items
                    .iter()
                    .map(|(j, n)| store::db_dir(root, j).join(n))
                    .collect();
                hash::hash_all(&paths)
            }
            Store::Bucket(r) => r.hash_all(items),
        }
    }
}
