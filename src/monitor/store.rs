//! The validated store: `<validated_dir>/<company>/<city>/<site>/<database>/`, holding the
//! last `keep_validated` healthy backups of each database.
//!
//! Beside each backup, `<file>.validated.json` records what the monitor itself measured
//! (size, SHA-256, when, for which job and occurrence): it is what UNCHANGED compares with,
//! what `monitor verify` checks the bytes against (HASH_MISMATCH, see `verify`), and what
//! orders the versions kept.
//!
//! Promotion never leaves a half-copied file under a final name. On one filesystem the
//! deposit's file is renamed into place (atomic; the inode is checked to be the one hashed);
//! across filesystems it is copied into a hidden temporary name in the destination, hashed
//! again as it is copied, fsynced, then renamed. The record is written (temporary name,
//! fsync, rename) before the backup, the directory fsynced after. A scan killed at any point
//! leaves the backup in the deposit or promoted, and hidden temporary files that the next
//! scan removes. Old versions are removed only after the new one is in place, so a failed
//! deposit never replaces a good backup.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::Job;
use super::hash::{self, Hashed};

/// The suffix of a backup's record.
pub const RECORD_SUFFIX: &str = ".validated.json";

/// What the monitor measured of a validated backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub validated_at: DateTime<Utc>,
    pub job: String,
    pub due: DateTime<Utc>,
}

/// The directory of a job's validated backups.
pub fn db_dir(validated_dir: &Path, job: &Job) -> PathBuf {
    validated_dir.join(job.site_path()).join(&job.database)
}

fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", std::process::id())
}

/// A hidden temporary name (`.<name>.tmp-<pid>`), the monitor's own.
pub(crate) fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// The validated backups of a directory, oldest first: those whose record and file are both
/// there (a regular file of the recorded size).
pub fn list(dir: &Path) -> Vec<Record> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Record> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(RECORD_SUFFIX)?;
            if is_temp(&name) {
                return None;
            }
            let f = hash::open_no_follow(&e.path()).ok()?;
            let mut text = Vec::new();
            f.take(64 * 1024).read_to_end(&mut text).ok()?;
            let r: Record = serde_json::from_slice(&text).ok()?;
            let meta = std::fs::symlink_metadata(dir.join(&r.file)).ok()?;
            (meta.is_file()
                && meta.len() == r.size_bytes
                && format!("{}{RECORD_SUFFIX}", r.file) == name)
                .then_some(r)
        })
        .collect();
    out.sort_by(|a, b| (a.validated_at, &a.file).cmp(&(b.validated_at, &b.file)));
    out
}

/// Reads a record, no link followed, at most 64 KiB (the scan's limit).
fn read_record(path: &Path) -> Result<Record, String> {
    let f = hash::open_no_follow(path).map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    f.take(64 * 1024)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&text).map_err(|e| format!("not a record: {e}"))
}

/// A directory's records (hidden temporary ones aside), by backup name (the record's name
/// without its suffix), and its other entries' names: what a verification looks at.
#[allow(clippy::type_complexity)]
pub fn inventory(dir: &Path) -> (Vec<(String, Result<Record, String>)>, Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut found = Vec::new();
    let mut others = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        match name.strip_suffix(RECORD_SUFFIX) {
            Some(backup) if !is_temp(&name) => {
                found.push((backup.to_string(), read_record(&e.path())))
            }
            _ => others.push(name),
        }
    }
    others.sort();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    (found, others)
}

/// Removes what a killed scan left: hidden temporary files, and records whose backup is not
/// there. Returns their paths.
pub fn clean_leftovers(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let orphan = name
            .strip_suffix(RECORD_SUFFIX)
            .is_some_and(|f| !is_temp(&name) && std::fs::symlink_metadata(dir.join(f)).is_err());
        if (is_temp(&name) || orphan) && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path().display().to_string());
        }
    }
    removed
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    write_renamed(dir, name, bytes, true)
}

/// Writes `name` through a temporary name; fsynced first when `sync`, else left to
/// [`sync_filesystem`].
fn write_renamed(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = dir.join(temp_name(name));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, dir.join(name))
}

/// Makes everything a scan wrote under `dir` durable at once (`syncfs`): one flush of the
/// filesystem instead of three fsyncs per backup promoted. Called before the history
/// records any promotion.
pub fn sync_filesystem(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir)?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes the record of a backup already in `dir` (after a crash lost it).
pub fn rewrite_record(dir: &Path, record: &Record) -> std::io::Result<()> {
    let body = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    write_renamed(
        dir,
        &format!("{}{RECORD_SUFFIX}", record.file),
        &body,
        false,
    )
}

/// Promotes `src` (already hashed as `hashed`, through the open `file`) into `dest_dir` under
/// `record.file`, with its record, and its manifest `<file>.json` when the deposit has one.
pub fn promote(
    src: &Path,
    file: &File,
    hashed: &Hashed,
    dest_dir: &Path,
    record: &Record,
) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("promoting {}: {what}: {e}", src.display());
    std::fs::create_dir_all(dest_dir).map_err(|e| err("creating the directory", e))?;
    let name = &record.file;
    let dest = dest_dir.join(name);
    let body = serde_json::to_vec_pretty(record).map_err(|e| err("the record", e.into()))?;
    // Durability comes from one sync_filesystem after the scan's promotions: renaming moves
    // no data, and a record lost in a crash is rewritten by the next scan (`rewrite_record`).
    write_renamed(dest_dir, &format!("{name}{RECORD_SUFFIX}"), &body, false)
        .map_err(|e| err("writing the record", e))?;
    match std::fs::rename(src, &dest) {
        Ok(()) => {
            // The deposit is the agents' to write: make sure what was renamed is what was
            // hashed, else put it back.
            let now = hash::open_no_follow(&dest).map_err(|e| err("reopening", e))?;
            let same = {
                use std::os::unix::fs::MetadataExt;
                let m = now.metadata().map_err(|e| err("reopening", e))?;
                (m.dev(), m.ino()) == hashed.dev_ino && m.len() == hashed.size_bytes
            };
            if !same {
                let _ = std::fs::rename(&dest, src);
                return Err(format!(
                    "promoting {}: the file changed while it was validated; left in the deposit",
                    src.display()
                ));
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            // A real copy, whose source is then deleted: durable before that.
            copy_verified(file, hashed, dest_dir, name).map_err(|e| err("copying", e))?;
            fsync_dir(dest_dir).map_err(|e| err("fsync of the directory", e))?;
            std::fs::remove_file(src).map_err(|e| err("removing the deposit's copy", e))?;
        }
        Err(e) => return Err(err("renaming", e)),
    }
    carry_manifest(src, dest_dir, name).map_err(|e| err("writing the manifest", e))
}

/// The manifest travels with its backup (a file without a manifest is not a backup): the
/// deposit's `<name>.json`, when there, is written beside the promoted backup and removed
/// from the deposit. Also for a backup an earlier scan promoted but was killed before its
/// manifest followed.
pub fn carry_manifest(src: &Path, dest_dir: &Path, name: &str) -> std::io::Result<()> {
    let manifest = src.with_file_name(format!("{name}.json"));
    if let Ok(m) = hash::open_no_follow(&manifest) {
        let mut text = Vec::new();
        if m.take(1024 * 1024).read_to_end(&mut text).is_ok() {
            write_renamed(dest_dir, &format!("{name}.json"), &text, false)?;
            let _ = std::fs::remove_file(&manifest);
        }
    }
    Ok(())
}

/// Copies across filesystems into a temporary name, checking the bytes copied are the bytes
/// hashed, then renames into place.
fn copy_verified(mut file: &File, hashed: &Hashed, dir: &Path, name: &str) -> std::io::Result<()> {
    let tmp = dir.join(temp_name(name));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.rewind()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    if size != hashed.size_bytes || hex::encode(h.finalize()) != hashed.sha256 {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::other(
            "the file changed while it was copied",
        ));
    }
    out.sync_all()?;
    drop(out);
    std::fs::rename(&tmp, dir.join(name))
}

/// How many processed site reports are archived per site.
pub const REPORTS_KEPT: usize = 1000;

/// Archives a processed site report under `<validated_dir>/.reports/<company>/<city>/<site>/`
/// as `STATUS-<generated_at>.json` (once; the oldest beyond [`REPORTS_KEPT`] removed).
/// Returns the archive's path when it was written now.
pub fn archive_report(
    validated_dir: &Path,
    site: &Path,
    generated_at: DateTime<Utc>,
    bytes: &[u8],
) -> std::io::Result<Option<PathBuf>> {
    let dir = validated_dir.join(".reports").join(site);
    let name = format!("STATUS-{}.json", generated_at.format("%Y%m%dT%H%M%SZ"));
    if std::fs::symlink_metadata(dir.join(&name)).is_ok() {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir)?;
    write_atomically(&dir, &name, bytes)?;
    let mut all: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("STATUS-") && n.ends_with(".json"))
        .collect();
    all.sort();
    for old in &all[..all.len().saturating_sub(REPORTS_KEPT)] {
        let _ = std::fs::remove_file(dir.join(old));
    }
    Ok(Some(dir.join(name)))
}

/// Keeps the `keep` newest backups of a directory; returns the files removed.
pub fn prune(dir: &Path, keep: u32) -> Vec<String> {
    let all = list(dir);
    let excess = all.len().saturating_sub(keep.max(1) as usize);
    let mut removed = Vec::new();
    for r in &all[..excess] {
        for f in [
            r.file.clone(),
            format!("{}.json", r.file),
            format!("{}{RECORD_SUFFIX}", r.file),
        ] {
            let _ = std::fs::remove_file(dir.join(&f));
        }
        removed.push(dir.join(&r.file).display().to_string());
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mairie-dba-store-{tag}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn record(file: &str, h: &Hashed, at: &str) -> Record {
        Record {
            file: file.into(),
            size_bytes: h.size_bytes,
            sha256: h.sha256.clone(),
            validated_at: crate::monitor::config::parse_utc(at).unwrap(),
            job: "j".into(),
            due: crate::monitor::config::parse_utc(at).unwrap(),
        }
    }

    #[test]
    fn promote_keep_and_clean() {
        let dep = tmp("dep");
        let val = tmp("val").join("c/x/s/db");
        for (i, name) in ["a.dump", "b.dump", "c.dump"].iter().enumerate() {
            let src = dep.join(name);
            std::fs::write(&src, format!("backup {i}")).unwrap();
            std::fs::write(dep.join(format!("{name}.json")), "{}").unwrap();
            let f = hash::open_no_follow(&src).unwrap();
            let h = hash::hash_file(&src).unwrap();
            promote(
                &src,
                &f,
                &h,
                &val,
                &record(name, &h, &format!("2026-12-0{} 02:00", i + 1)),
            )
            .unwrap();
            assert!(!src.exists());
            assert!(val.join(format!("{name}.json")).exists());
        }
        assert_eq!(
            list(&val)
                .iter()
                .map(|r| r.file.as_str())
                .collect::<Vec<_>>(),
            ["a.dump", "b.dump", "c.dump"]
        );
        let removed = prune(&val, 2);
        assert_eq!(removed.len(), 1);
        assert_eq!(
            list(&val)
                .iter()
                .map(|r| r.file.as_str())
                .collect::<Vec<_>>(),
            ["b.dump", "c.dump"]
        );
        assert!(!val.join("a.dump").exists() && !val.join("a.dump.validated.json").exists());
        // Leftovers of a killed scan: a temporary copy and a record without its backup.
        std::fs::write(val.join(".d.dump.tmp-1234"), "half").unwrap();
        std::fs::write(val.join("d.dump.validated.json"), "{}").unwrap();
        assert_eq!(clean_leftovers(&val).len(), 2);
        assert_eq!(list(&val).len(), 2);
        assert!(val.join("c.dump").exists());
    }

    #[test]
    fn copy_checks_the_bytes_hashed() {
        let dep = tmp("copy");
        let src = dep.join("x.dump");
        std::fs::write(&src, "good bytes").unwrap();
        let f = hash::open_no_follow(&src).unwrap();
        let h = hash::hash_file(&src).unwrap();
        let dest = dep.join("out");
        std::fs::create_dir_all(&dest).unwrap();
        copy_verified(&f, &h, &dest, "x.dump").unwrap();
        assert_eq!(std::fs::read(dest.join("x.dump")).unwrap(), b"good bytes");
        std::fs::write(&src, "bad bytes!").unwrap();
        let f = hash::open_no_follow(&src).unwrap();
        let e = copy_verified(&f, &h, &dest, "y.dump").unwrap_err();
        assert!(e.to_string().contains("changed"), "{e}");
        assert!(!dest.join("y.dump").exists());
        assert!(clean_leftovers(&dest).is_empty());
    }
}
