//! Re-verification of the validated store: are the promoted backups still the bytes the
//! monitor measured when it promoted them? (HASH_MISMATCH)
//!
//! A scan validates a backup once, on arrival; years of disks, copies and restores of the
//! store come after. `monitor verify` reads every record `<file>.validated.json` of each
//! expected job's directory, hashes the backups it names (in parallel, one thread per core,
//! a 1 MiB buffer each: the scan's hashing) and compares size and SHA-256 with the record.
//! In a bucket ([`super::remote`]) each recorded object is read whole from the service and
//! hashed as it streams, a few at once: a size or an ETag would not show a flipped byte.
//!
//! What a killed scan leaves is told apart from a loss, so that a crash is never reported as
//! bit rot (see `store` for the order in which a promotion writes its files):
//!
//! - a record whose backup is not in the store but still in the deposit: a promotion not
//!   finished (the next scan finishes it) — a leftover;
//! - a record without its backup, older than the `keep_validated` newest records: a removal
//!   of an old version that was interrupted — a leftover (the next scan removes it);
//! - a record among the `keep_validated` newest whose backup is gone: a validated backup
//!   lost — HASH_MISMATCH;
//! - hidden temporary files, backups without a record, manifests without their backup:
//!   leftovers.
//!
//! The history is the second witness: the latest backup it records as promoted for a job
//! must be in the store unless a newer one is. Without it, a lost backup would be forgotten
//! once the next scan removed its record (a record without its backup is, to a scan, the
//! leftover of a killed promotion), and the next verification would find nothing wrong.
//!
//! Verification reads the store and changes nothing in it; the caller holds the scan lock,
//! so that no scan moves files meanwhile.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::Job;
use super::store::{self, Record, RECORD_SUFFIX};
use super::validated::{Inventory, Store};
use super::{stamp, JobStatus, MonitorConfig};

/// What became of one promoted backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileVerdict {
    /// The recorded size and SHA-256.
    Intact,
    /// Other bytes (or another size) than recorded.
    Mismatch,
    /// Recorded among the kept versions, not in the store any more.
    Missing,
    /// There, but it cannot be read: a read error, not a regular file, or a record that
    /// cannot be read beside a backup.
    Unreadable,
}

impl FileVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            FileVerdict::Intact => "intact",
            FileVerdict::Mismatch => "mismatch",
            FileVerdict::Missing => "missing",
            FileVerdict::Unreadable => "unreadable",
        }
    }
}

/// One promoted backup checked.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub file: String,
    pub path: String,
    pub verdict: FileVerdict,
    /// What the record says (None: the record itself could not be read).
    pub recorded_size_bytes: Option<u64>,
    pub recorded_sha256: Option<String>,
    pub validated_at: Option<DateTime<Utc>>,
    /// What the store holds now (None: not read).
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub message: String,
}

impl FileCheck {
    /// A file (or the job's directory) that could not be read: nothing recorded or measured.
    fn unreadable(file: String, path: String, message: String) -> FileCheck {
        FileCheck {
            file,
            path,
            verdict: FileVerdict::Unreadable,
            recorded_size_bytes: None,
            recorded_sha256: None,
            validated_at: None,
            size_bytes: None,
            sha256: None,
            message,
        }
    }
}

/// One job's store checked.
#[derive(Debug, Clone, Serialize)]
pub struct JobCheck {
    pub job: String,
    /// `OK`, or `HASH_MISMATCH` when a backup is not intact.
    pub status: JobStatus,
    pub files: Vec<FileCheck>,
    /// The files not intact, named; empty when all are.
    pub message: String,
}

impl JobCheck {
    pub fn bad(&self) -> impl Iterator<Item = &FileCheck> {
        self.files
            .iter()
            .filter(|f| f.verdict != FileVerdict::Intact)
    }
}

/// Something in the store that is not a validated backup: reported, never removed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    pub path: String,
    pub reason: String,
}

/// What a verification found.
#[derive(Debug, Default, Serialize)]
pub struct Verification {
    pub jobs: Vec<JobCheck>,
    pub leftovers: Vec<Leftover>,
}

/// A record as found in a directory.
struct Found {
    /// The backup's name (the record's name without its suffix).
    name: String,
    record: Result<Record, String>,
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// The latest backup the history records as promoted for a job (OK or UNCHANGED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub due: DateTime<Utc>,
    pub judged_at: DateTime<Utc>,
}

/// A backup to hash.
struct ToHash<'a> {
    job: usize,
    of: &'a Job,
    path: String,
    record: Record,
}

/// Verifies the stores of `cfg`'s jobs (only `only` when given) in `store` (`cfg`'s, open),
/// `promoted` being what the history says each job's latest promoted backup is. Backups are
/// hashed in parallel (a bucket's streamed whole from the service); nothing is changed.
pub fn verify(
    cfg: &MonitorConfig,
    store: &Store,
    only: Option<&str>,
    promoted: &HashMap<String, Promoted>,
) -> Verification {
    let mut out = Verification::default();
    let mut todo: Vec<ToHash> = Vec::new();
    let mut seen_dirs = HashSet::new();
    let keep = cfg.keep_validated.max(1) as usize;
    for job in cfg.jobs.iter().filter(|j| only.is_none_or(|id| j.id == id)) {
        let index = out.jobs.len();
        out.jobs.push(JobCheck {
            job: job.id.clone(),
            status: JobStatus::Ok,
            files: Vec::new(),
            message: String::new(),
        });
        // Two jobs on one directory: its files are checked for each, its leftovers listed once.
        let first_look = seen_dirs.insert(store.path_of(job, ""));
        let inv = match store.inventory(job) {
            Ok(inv) => inv,
            Err(e) => {
                out.jobs[index].files.push(FileCheck::unreadable(
                    String::new(),
                    store.path_of(job, ""),
                    format!("the validated store cannot be read: {e}"),
                ));
                continue;
            }
        };
        let found: Vec<Found> = inv
            .records
            .iter()
            .map(|(name, record)| Found {
                name: name.clone(),
                record: record.clone(),
            })
            .collect();
        let at = |name: &str| store.path_of(job, name);
        let mut records: Vec<(&Found, &Record)> = Vec::new();
        for f in &found {
            match &f.record {
                Ok(r) if r.file == f.name => records.push((f, r)),
                Ok(r) => {
                    let reason = format!(
                        "a record naming `{}`, not the backup it stands beside",
                        r.file
                    );
                    leftover_or_bad(&mut out, index, &inv, &at, &f.name, reason, first_look);
                }
                Err(e) => {
                    let reason = format!("its record cannot be read: {e}");
                    leftover_or_bad(&mut out, index, &inv, &at, &f.name, reason, first_look);
                }
            }
        }
        // The newest first: those a scan keeps.
        records.sort_by(|a, b| (b.1.validated_at, &b.1.file).cmp(&(a.1.validated_at, &a.1.file)));
        for (rank, (_, r)) in records.iter().enumerate() {
            let path = at(&r.file);
            if inv.has(&r.file) {
                todo.push(ToHash {
                    job: index,
                    of: job,
                    path,
                    record: (*r).clone(),
                });
                continue;
            }
            let in_deposit = deposit_path(cfg, job, &r.file);
            let leftover = if exists(&in_deposit) {
                Some(format!(
                    "the record of a promotion not finished: {} is still in the deposit (the next scan finishes it)",
                    in_deposit.display()
                ))
            } else if rank >= keep {
                Some(format!(
                    "the record of a version beyond keep_validated ({keep}) whose removal was interrupted (the next scan removes it)"
                ))
            } else {
                None
            };
            match leftover {
                Some(reason) if first_look => out.leftovers.push(Leftover {
                    path: at(&format!("{}{RECORD_SUFFIX}", r.file)),
                    reason,
                }),
                Some(_) => {}
                None => out.jobs[index].files.push(FileCheck {
                    file: r.file.clone(),
                    path,
                    verdict: FileVerdict::Missing,
                    recorded_size_bytes: Some(r.size_bytes),
                    recorded_sha256: Some(r.sha256.clone()),
                    validated_at: Some(r.validated_at),
                    size_bytes: None,
                    sha256: None,
                    message: format!(
                        "{}: missing from the validated store (promoted on {}, {} bytes, SHA-256 {})",
                        r.file,
                        stamp(r.validated_at),
                        r.size_bytes,
                        r.sha256
                    ),
                }),
            }
        }
        // The history's latest promoted backup, when no record stands for it or for a newer
        // one: checked against the history, or missing.
        let mut checked_by_history = None;
        if let Some(p) = promoted.get(&job.id) {
            let covered = records
                .iter()
                .any(|(_, r)| r.file == p.file || r.due >= p.due || r.validated_at >= p.judged_at);
            let path = at(&p.file);
            if !covered && inv.has(&p.file) {
                checked_by_history = Some(p.file.clone());
                todo.push(ToHash {
                    job: index,
                    of: job,
                    path,
                    record: Record {
                        file: p.file.clone(),
                        size_bytes: p.size_bytes,
                        sha256: p.sha256.clone(),
                        validated_at: p.judged_at,
                        job: job.id.clone(),
                        due: p.due,
                    },
                });
            } else if !covered {
                out.jobs[index].files.push(FileCheck {
                    file: p.file.clone(),
                    path,
                    verdict: FileVerdict::Missing,
                    recorded_size_bytes: Some(p.size_bytes),
                    recorded_sha256: Some(p.sha256.clone()),
                    validated_at: Some(p.judged_at),
                    size_bytes: None,
                    sha256: None,
                    message: format!(
                        "{}: missing from the validated store, record included (the history has it promoted for the occurrence due {}, {} bytes, SHA-256 {})",
                        p.file,
                        stamp(p.due),
                        p.size_bytes,
                        p.sha256
                    ),
                });
            }
        }
        if first_look {
            let mut recorded: HashSet<&str> = found.iter().map(|f| f.name.as_str()).collect();
            if let Some(f) = &checked_by_history {
                recorded.insert(f);
            }
            for name in &inv.others {
                let reason = if store::is_temp(name) {
                    "a temporary file of a killed scan (the next scan removes it)".to_string()
                } else if let Some(backup) = name.strip_suffix(".json") {
                    if inv.has(backup) {
                        continue; // a backup's manifest
                    }
                    "a manifest without its backup".to_string()
                } else if recorded.contains(name.as_str()) {
                    continue;
                } else {
                    "a file without a record: not a validated backup (a scan rewrites the record of a backup its report still names)".to_string()
                };
                out.leftovers.push(Leftover {
                    path: at(name),
                    reason,
                });
            }
        }
    }

    // Every backup hashed once, in parallel.
    let items: Vec<(&Job, String)> = todo.iter().map(|t| (t.of, t.record.file.clone())).collect();
    let hashes = store.hash_all(&items);
    for (t, h) in todo.into_iter().zip(hashes) {
        let r = &t.record;
        let mut check = FileCheck {
            file: r.file.clone(),
            path: t.path,
            verdict: FileVerdict::Intact,
            recorded_size_bytes: Some(r.size_bytes),
            recorded_sha256: Some(r.sha256.clone()),
            validated_at: Some(r.validated_at),
            size_bytes: None,
            sha256: None,
            message: String::new(),
        };
        match h {
            Ok(h) => {
                if h.size_bytes != r.size_bytes || h.sha256 != r.sha256 {
                    check.verdict = FileVerdict::Mismatch;
                    check.message = format!(
                        "{}: {} bytes with SHA-256 {} when promoted on {}, now {} bytes with SHA-256 {}",
                        r.file,
                        r.size_bytes,
                        r.sha256,
                        stamp(r.validated_at),
                        h.size_bytes,
                        h.sha256
                    );
                }
                check.size_bytes = Some(h.size_bytes);
                check.sha256 = Some(h.sha256);
            }
            Err(e) => {
                check.verdict = FileVerdict::Unreadable;
                check.message = format!("{}: cannot be read: {e}", r.file);
            }
        }
        out.jobs[t.job].files.push(check);
    }
    for j in &mut out.jobs {
        j.files.sort_by(|a, b| a.file.cmp(&b.file));
        let bad: Vec<String> = j.bad().map(|f| f.message.clone()).collect();
        if bad.is_empty() {
            j.message = format!(
                "re-verification of the validated store: {} backup(s) intact",
                j.files.len()
            );
        } else {
            j.status = JobStatus::HashMismatch;
            j.message = format!("re-verification of the validated store: {}", bad.join("; "));
        }
    }
    out
}

/// A record that cannot be used: bad when its backup is there (the store can no longer vouch
/// for it), a leftover otherwise.
fn leftover_or_bad(
    out: &mut Verification,
    job: usize,
    inv: &Inventory,
    at: &dyn Fn(&str) -> String,
    name: &str,
    reason: String,
    first_look: bool,
) {
    if inv.has(name) {
        out.jobs[job].files.push(FileCheck::unreadable(
            name.to_string(),
            at(name),
            format!("{name}: {reason}"),
        ));
    } else if first_look {
        out.leftovers.push(Leftover {
            path: at(&format!("{name}{RECORD_SUFFIX}")),
            reason: format!("a record without its backup; {reason}"),
        });
    }
}

/// Where a job's backup named `file` sits in the deposit.
fn deposit_path(cfg: &MonitorConfig, job: &Job, file: &str) -> PathBuf {
    cfg.deposit_dir
        .join(job.site_path())
        .join(&job.database)
        .join(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::config::{HistorySetting, MonitorSection};

    fn setup(tag: &str, keep: u32) -> (PathBuf, MonitorConfig) {
        let d = std::env::temp_dir().join(format!(
            "mairie-dba-verify-{tag}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).unwrap();
        let yaml = format!(
            "deposit_dir: dep\nvalidated_dir: val\nkeep_validated: {keep}\njobs:\n  - {{id: j, company: c, city: x, site: s, database: db, engine: postgres, frequency: daily, at: \"02:00\"}}\n"
        );
        let section: MonitorSection = serde_norway::from_str(&yaml).unwrap();
        let cfg = MonitorConfig::resolve(section, &d, &d);
        assert!(matches!(cfg.history, HistorySetting::Sqlite(_)));
        (d, cfg)
    }

    fn dir_store(cfg: &MonitorConfig) -> Store {
        match &cfg.validated {
            crate::monitor::ValidatedStore::Dir(d) => Store::Dir(d.clone()),
            other => panic!("not a directory: {other:?}"),
        }
    }

    fn promote(dir: &Path, name: &str, bytes: &[u8], at: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        let h = crate::monitor::hash::hash_file(&dir.join(name)).unwrap();
        let t = crate::monitor::config::parse_utc(at).unwrap();
        let r = Record {
            file: name.into(),
            size_bytes: h.size_bytes,
            sha256: h.sha256,
            validated_at: t,
            job: "j".into(),
            due: t,
        };
        std::fs::write(
            dir.join(format!("{name}{RECORD_SUFFIX}")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn flipped_bytes_losses_and_leftovers_are_told_apart() {
        let (d, cfg) = setup("kinds", 2);
        let dir = d.join("val/c/x/s/db");
        promote(&dir, "a.dump", b"oldest", "2026-12-01 02:00");
        promote(&dir, "b.dump", b"middle", "2026-12-02 02:00");
        promote(&dir, "c.dump", b"newest", "2026-12-03 02:00");
        let v = verify(&cfg, &dir_store(&cfg), None, &HashMap::new());
        assert_eq!(v.jobs[0].status, JobStatus::Ok);
        assert_eq!(v.jobs[0].files.len(), 3);
        assert!(v.leftovers.is_empty(), "{:?}", v.leftovers);

        // A flipped byte; a kept version lost; an old version's removal interrupted.
        std::fs::write(dir.join("c.dump"), b"nEwest").unwrap();
        std::fs::remove_file(dir.join("b.dump")).unwrap();
        std::fs::remove_file(dir.join("a.dump")).unwrap();
        std::fs::write(dir.join(".d.dump.tmp-42"), b"half").unwrap();
        let v = verify(&cfg, &dir_store(&cfg), None, &HashMap::new());
        let j = &v.jobs[0];
        assert_eq!(j.status, JobStatus::HashMismatch);
        let verdicts: Vec<_> = j
            .files
            .iter()
            .map(|f| (f.file.as_str(), f.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("b.dump", FileVerdict::Missing),
                ("c.dump", FileVerdict::Mismatch)
            ]
        );
        assert!(j.message.contains("c.dump") && j.message.contains("b.dump"));
        let left: Vec<_> = v.leftovers.iter().map(|l| l.path.clone()).collect();
        assert_eq!(left.len(), 2, "{:?}", v.leftovers);
        assert!(left[0].ends_with("a.dump.validated.json"));
        assert!(left[1].ends_with(".d.dump.tmp-42"));
        // Nothing was changed.
        assert!(dir.join("a.dump.validated.json").exists() && dir.join(".d.dump.tmp-42").exists());

        // A promotion not finished: the record written, the backup still in the deposit.
        let (d2, cfg2) = setup("unfinished", 1);
        let dir2 = d2.join("val/c/x/s/db");
        promote(&dir2, "e.dump", b"deposited", "2026-12-03 02:00");
        let dep = d2.join("dep/c/x/s/db");
        std::fs::create_dir_all(&dep).unwrap();
        std::fs::rename(dir2.join("e.dump"), dep.join("e.dump")).unwrap();
        let v = verify(&cfg2, &dir_store(&cfg2), None, &HashMap::new());
        assert_eq!(v.jobs[0].status, JobStatus::Ok);
        assert!(v.jobs[0].files.is_empty());
        assert!(
            v.leftovers[0].reason.contains("not finished"),
            "{:?}",
            v.leftovers
        );
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::remove_dir_all(&d2).unwrap();
    }

    #[test]
    fn the_history_witnesses_a_backup_whose_record_is_gone_too() {
        let (d, cfg) = setup("history", 1);
        let dir = d.join("val/c/x/s/db");
        promote(&dir, "f.dump", b"promoted bytes", "2026-12-03 02:10");
        let at = crate::monitor::config::parse_utc("2026-12-03 02:10").unwrap();
        let due = crate::monitor::config::parse_utc("2026-12-03 02:00").unwrap();
        let h = crate::monitor::hash::hash_file(&dir.join("f.dump")).unwrap();
        let promoted: HashMap<String, Promoted> = [(
            "j".to_string(),
            Promoted {
                file: "f.dump".into(),
                size_bytes: h.size_bytes,
                sha256: h.sha256.clone(),
                due,
                judged_at: at,
            },
        )]
        .into();
        // The record gone (a scan took it for a leftover), the backup there: checked against
        // the history, and not a leftover.
        std::fs::remove_file(dir.join(format!("f.dump{RECORD_SUFFIX}"))).unwrap();
        let v = verify(&cfg, &dir_store(&cfg), None, &promoted);
        assert_eq!(v.jobs[0].status, JobStatus::Ok, "{v:?}");
        assert_eq!(v.jobs[0].files[0].verdict, FileVerdict::Intact);
        assert!(v.leftovers.is_empty(), "{:?}", v.leftovers);
        std::fs::write(dir.join("f.dump"), b"promoted bytEs").unwrap();
        assert_eq!(
            verify(&cfg, &dir_store(&cfg), None, &promoted).jobs[0].files[0].verdict,
            FileVerdict::Mismatch
        );
        // Both gone: missing.
        std::fs::remove_file(dir.join("f.dump")).unwrap();
        let v = verify(&cfg, &dir_store(&cfg), None, &promoted);
        assert_eq!(v.jobs[0].status, JobStatus::HashMismatch);
        assert_eq!(v.jobs[0].files[0].verdict, FileVerdict::Missing);
        // A newer backup in the store stands for it.
        promote(&dir, "g.dump", b"newer", "2026-12-04 02:10");
        let v = verify(&cfg, &dir_store(&cfg), None, &promoted);
        assert_eq!(v.jobs[0].status, JobStatus::Ok, "{v:?}");
        assert_eq!(v.jobs[0].files.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
