//! What happened to a target's backups, kept outside the backup directory: the outcome of the
//! last `backup` run and, per backup file, the last `backup verify` and the last time its
//! bytes were hashed.
//!
//! It lives in the state directory (`state_dir`), not beside the backups, because the
//! failures it must report are those of the backup directory itself: a directory that became
//! read-only, a file in its place, a full disk. One small JSON file per target and backup
//! directory, `<state_dir>/<target>-<hash of the directory>.json`, so that two configurations
//! with a target of the same name never share a record. It is rewritten atomically (a
//! temporary file created exclusively, fsynced, renamed) under an exclusive lock, and read
//! without following symbolic links.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{private_dir, write_atomic, LastRun};

/// The record of one target's backup directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetState {
    pub target: String,
    /// The backup directory this record is about.
    pub dir: PathBuf,
    /// The last `backup` run (not `--prune-only`), successful or not.
    #[serde(default)]
    pub last_run: Option<LastRun>,
    /// Per backup file name.
    #[serde(default)]
    pub files: BTreeMap<String, FileRecord>,
    /// The last `restore --drill` of the target, whatever its outcome (read by `agent push`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillRecord>,
}

/// The outcome of a `restore --drill`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillRecord {
    pub at: DateTime<Utc>,
    /// `success` or `failed`.
    pub status: String,
    /// The backup restored, when one was.
    #[serde(default)]
    pub file: Option<String>,
}

/// What is known of one backup file beyond its manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// The last `backup verify` of this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyRecord>,
    /// The last time its bytes were hashed against the manifest (by `backup verify` or
    /// `backup check`), with the size and modification time they had then: while both are
    /// unchanged, `backup check` trusts that result instead of reading the file again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashed: Option<HashRecord>,
}

/// The outcome of a `backup verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifyRecord {
    pub at: DateTime<Utc>,
    /// `success` or `failed`.
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
}

impl VerifyRecord {
    pub fn failed(&self) -> bool {
        self.status != "success"
    }
}

/// A file's bytes compared with its manifest's SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HashRecord {
    pub at: DateTime<Utc>,
    pub size: u64,
    pub mtime: DateTime<Utc>,
    pub intact: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// Where one target's record is kept.
#[derive(Debug, Clone)]
pub struct StateStore {
    state_dir: PathBuf,
    path: PathBuf,
    target: String,
    backup_dir: PathBuf,
}

impl StateStore {
    pub fn new(state_dir: &Path, target: &str, backup_dir: &Path) -> StateStore {
        // The directory as written, made absolute without resolving links: it still names
        // the same record when it is missing or has become a file.
        let backup_dir = std::path::absolute(backup_dir).unwrap_or_else(|_| backup_dir.into());
        let digest = hex::encode(Sha256::digest(backup_dir.as_os_str().as_encoded_bytes()));
        StateStore {
            state_dir: state_dir.to_path_buf(),
            path: state_dir.join(format!("{target}-{}.json", &digest[..12])),
            target: target.to_string(),
            backup_dir,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record, or None when there is none yet. A record that cannot be read is an error
    /// (the caller says so) rather than an empty one.
    pub fn read(&self) -> Result<Option<TargetState>> {
        let mut f = match open_nofollow(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        let mut text = String::new();
        f.read_to_string(&mut text)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let state: TargetState = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid state record", self.path.display()))?;
        Ok(Some(state))
    }

    /// Reads, changes and rewrites the record under an exclusive lock, so that a backup, a
    /// verify and a check running at once never lose each other's updates. Records of
    /// files that are gone from the backup directory are dropped on the way.
    pub fn update(&self, change: impl FnOnce(&mut TargetState)) -> Result<()> {
        private_dir(&self.state_dir)?;
        let lock_path = self.path.with_extension("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        // A damaged record is replaced rather than blocking every later run.
        let mut state = self.read().ok().flatten().unwrap_or_default();
        state.target = self.target.clone();
        state.dir = self.backup_dir.clone();
        change(&mut state);
        let dir = &self.backup_dir;
        state.files.retain(|name, _| {
            let p = dir.join(name);
            p.exists() || super::Manifest::path_for(&p).exists()
        });
        let mut text = serde_json::to_vec_pretty(&state)?;
        text.push(b'\n');
        write_atomic(&self.path, &text)
    }
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mairie-dba-state-unit-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn records_are_per_target_and_directory_and_survive_updates() {
        let d = tmp();
        let a = StateStore::new(&d.join("state"), "pg", &d.join("b1"));
        let b = StateStore::new(&d.join("state"), "pg", &d.join("b2"));
        assert_ne!(a.path(), b.path(), "same target, other directory");
        assert_eq!(a.read().unwrap(), None);
        let run = LastRun {
            target: "pg".into(),
            status: "failed".into(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            file: None,
            error: Some("disk full".into()),
        };
        a.update(|s| s.last_run = Some(run.clone())).unwrap();
        a.update(|s| {
            s.files.insert("gone.dump".into(), FileRecord::default());
        })
        .unwrap();
        let s = a.read().unwrap().unwrap();
        assert_eq!(s.last_run, Some(run));
        assert_eq!(s.target, "pg");
        assert!(s.files.is_empty(), "records of missing files are dropped");
        assert_eq!(b.read().unwrap(), None);

        // A symbolic link in place of the record is not followed.
        let c = StateStore::new(&d.join("state"), "my", &d.join("b3"));
        std::fs::write(d.join("elsewhere"), "{}").unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere"), c.path()).unwrap();
        assert!(c.read().is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
