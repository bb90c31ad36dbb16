//! One scan: every expected job's open occurrences judged from what the agents deposited.
//!
//! For each job, each occurrence whose collection window has opened (and that is not yet
//! judged for good) looks at its site's `STATUS.json`: none, unreadable, stale, outside the
//! occurrence's window, silent about the database, or reporting a failure gives MISSING,
//! UNKNOWN or FAILED; a success names a file, which the monitor hashes itself (all of them
//! in parallel) and compares with the agent's size and SHA-256: TRANSFER_INTEGRITY_FAILED,
//! or OK (UNCHANGED when identical to the previous validated backup), promoted at once.
//!
//! A good judgement is final at once; any other waits for the occurrence's deadline, so that
//! an agent that retries within the grace is not reported down. Deposits no job expects are
//! listed as unexpected and never make a job OK.
//!
//! [`ScanLock`] keeps two scans from running at once; everything a scan does can be redone,
//! so a scan killed midway is finished by the next one.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::config::Job;
use super::hash::{self, Hashed};
use super::report::{self, BackupOutcome, StatusReport, REPORT_NAME};
use super::schedule::{self, Occurrence};
use super::store::Record;
use super::validated::Store;
use super::{JobStatus, MonitorConfig};

/// What the history knows of a job before a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub first_seen: DateTime<Utc>,
    /// The latest occurrence judged for good.
    pub last_final_due: Option<DateTime<Utc>>,
    /// Occurrences judged for good from [`recheck_from`] on: an earlier occurrence may still
    /// have been open when a later one became OK, so those are looked at again, these
    /// skipped.
    pub recorded: HashSet<DateTime<Utc>>,
}

/// From when a job's occurrences must be looked at again: an occurrence due before
/// `last_final_due - window - grace` had its deadline passed when the later one's window
/// opened, so it was judged for good then; later ones may still be open.
pub fn recheck_from(
    job: &Job,
    last_final_due: DateTime<Utc>,
    window_minutes: u32,
) -> DateTime<Utc> {
    last_final_due - Duration::minutes(i64::from(window_minutes) + i64::from(job.grace_minutes))
}

/// One occurrence judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub job: String,
    pub due: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub status: JobStatus,
    /// False: before the deadline and not good; shown, not recorded.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub message: String,
    pub report: Option<String>,
    pub report_generated_at: Option<DateTime<Utc>>,
    pub file: Option<String>,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub backup_seconds: Option<f64>,
    pub compression_seconds: Option<f64>,
    pub transfer_seconds: Option<f64>,
    pub last_drill_at: Option<DateTime<Utc>>,
    pub last_drill_status: Option<String>,
    pub promoted: bool,
}

impl Judgement {
    fn new(job: &Job, occ: &Occurrence) -> Self {
        Judgement::unjudged(job.id.clone(), occ.due, occ.deadline)
    }

    /// An occurrence of `job` not judged yet: UNKNOWN, not final, nothing reported.
    pub(crate) fn unjudged(job: String, due: DateTime<Utc>, deadline: DateTime<Utc>) -> Self {
        Judgement {
            job,
            due,
            deadline,
            status: JobStatus::Unknown,
            is_final: false,
            message: String::new(),
            report: None,
            report_generated_at: None,
            file: None,
            size_bytes: None,
            sha256: None,
            started_at: None,
            finished_at: None,
            backup_seconds: None,
            compression_seconds: None,
            transfer_seconds: None,
            last_drill_at: None,
            last_drill_status: None,
            promoted: false,
        }
    }

    fn set(&mut self, status: JobStatus, message: impl Into<String>, now: DateTime<Utc>) {
        self.status = status;
        self.message = message.into();
        self.is_final = status.is_good() || now >= self.deadline;
    }
}

/// A deposit no job expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unexpected {
    pub path: String,
    pub reason: String,
}

/// What a scan found and did.
#[derive(Debug, Default, Serialize)]
pub struct ScanOutcome {
    /// Judgements to record: final ones.
    pub judged: Vec<Judgement>,
    /// Occurrences open but not judged yet (before their deadline), with what was found.
    pub pending: Vec<Judgement>,
    pub unexpected: Vec<Unexpected>,
    /// Files removed: leftovers of killed scans, versions beyond `keep_validated`.
    pub cleaned: Vec<String>,
    /// Site reports archived by this scan.
    pub archived: Vec<String>,
}

/// An exclusive lock on `<dir>/.monitor.lock`, held for the whole scan: `dir` is the
/// validated directory, or the state directory when the store is a bucket (one monitor
/// per prefix).
pub struct ScanLock {
    _file: File,
}

impl ScanLock {
    pub fn acquire(dir: &Path) -> Result<ScanLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(".monitor.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("opening the scan lock {}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another scan is running (lock {} held by pid {})",
                path.display(),
                holder.trim()
            );
        }
        use std::io::Write;
        let _ = file.set_len(0);
        let _ = write!(file, "{}", std::process::id());
        Ok(ScanLock { _file: file })
    }
}

type SiteReport = Result<Option<(PathBuf, StatusReport)>, String>;

/// Reads a site's report once, and checks it speaks for the site whose directory holds it.
fn site_report(deposit_dir: &Path, job: &Job) -> SiteReport {
    let path = deposit_dir.join(job.site_path()).join(REPORT_NAME);
    if !real_dirs(deposit_dir, &[&job.company, &job.city, &job.site])? {
        return Ok(None);
    }
    let Some(r) = report::read(&path)? else {
        return Ok(None);
    };
    let a = &r.agent;
    if (a.company.as_str(), a.city.as_str(), a.site.as_str())
        != (job.company.as_str(), job.city.as_str(), job.site.as_str())
    {
        return Err(format!(
            "{}: the report speaks for {}/{}/{}, not for the site whose directory holds it",
            path.display(),
            a.company,
            a.city,
            a.site
        ));
    }
    Ok(Some((path, r)))
}

/// Whether `base/a/b/…` are real directories: Ok(false) when one is absent, Err when one is a
/// symbolic link or not a directory (never followed: it could lead anywhere).
fn real_dirs(base: &Path, parts: &[&str]) -> Result<bool, String> {
    let mut p = base.to_path_buf();
    for part in parts {
        p.push(part);
        match std::fs::symlink_metadata(&p) {
            Err(_) => return Ok(false),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("{}: a symbolic link, not followed", p.display()))
            }
            Ok(m) if !m.is_dir() => return Err(format!("{}: not a directory", p.display())),
            Ok(_) => {}
        }
    }
    Ok(true)
}

/// An occurrence whose backup must be hashed before it is judged.
struct ToValidate<'a> {
    judgement: Judgement,
    path: PathBuf,
    job: &'a Job,
    file: String,
    size_bytes: u64,
    sha256: String,
}

/// Judges every job at `now`, promoting into `store` (`cfg`'s, open). `states`: what the
/// history knows (jobs absent from it are seen for the first time now). The caller holds the
/// [`ScanLock`].
pub fn scan(
    cfg: &MonitorConfig,
    store: &Store,
    now: DateTime<Utc>,
    states: &HashMap<String, JobState>,
) -> ScanOutcome {
    let mut out = ScanOutcome::default();
    let mut reports: HashMap<PathBuf, SiteReport> = HashMap::new();
    let mut todo: Vec<ToValidate> = Vec::new();
    let max_age = Duration::days(cfg.report_max_age_days.into());
    let mut dirs_cleaned = HashSet::new();

    for job in &cfg.jobs {
        if dirs_cleaned.insert(store.path_of(job, "")) {
            out.cleaned.extend(store.clean_leftovers(job));
        }
        let fresh = JobState {
            first_seen: now,
            last_final_due: None,
            recorded: HashSet::new(),
        };
        let state = states.get(&job.id).unwrap_or(&fresh);
        let occurrences: Vec<Occurrence> = schedule::open_occurrences(
            job,
            state.first_seen,
            state
                .last_final_due
                .map(|d| recheck_from(job, d, cfg.collection_window_minutes)),
            now,
            cfg.collection_window_minutes,
        )
        .into_iter()
        .filter(|o| !state.recorded.contains(&o.due))
        .collect();
        if occurrences.is_empty() {
            continue;
        }
        let site = reports
            .entry(job.site_path())
            .or_insert_with(|| site_report(&cfg.deposit_dir, job))
            .clone();
        for occ in occurrences {
            let mut j = Judgement::new(job, &occ);
            let (path, r) = match &site {
                Err(reason) => {
                    j.set(JobStatus::Unknown, reason.clone(), now);
                    push(&mut out, j);
                    continue;
                }
                Ok(None) => {
                    j.set(
                        JobStatus::Missing,
                        format!("no report from site {}", job.site_path().display()),
                        now,
                    );
                    push(&mut out, j);
                    continue;
                }
                Ok(Some(pr)) => pr,
            };
            j.report = Some(path.display().to_string());
            j.report_generated_at = Some(r.generated_at);
            if now - r.generated_at > max_age {
                j.set(
                    JobStatus::Missing,
                    format!(
                        "the latest report, {} generated at {}, is stale (older than {} days)",
                        path.display(),
                        super::stamp(r.generated_at),
                        cfg.report_max_age_days
                    ),
                    now,
                );
                push(&mut out, j);
                continue;
            }
            if schedule::attributed_due(job, r.generated_at, cfg.collection_window_minutes)
                != Some(occ.due)
            {
                j.set(
                    JobStatus::Missing,
                    format!(
                        "no report for this occurrence: the latest, {}, was generated at {} (window {} to {})",
                        path.display(),
                        super::stamp(r.generated_at),
                        super::stamp(occ.window_start),
                        super::stamp(occ.deadline)
                    ),
                    now,
                );
                push(&mut out, j);
                continue;
            }
            let lines: Vec<_> = r
                .databases
                .iter()
                .filter(|d| d.database == job.database)
                .collect();
            let line = match lines.as_slice() {
                [] => {
                    j.set(
                        JobStatus::Missing,
                        format!(
                            "{} has no line for database `{}`",
                            path.display(),
                            job.database
                        ),
                        now,
                    );
                    push(&mut out, j);
                    continue;
                }
                [one] => *one,
                _ => {
                    j.set(
                        JobStatus::Unknown,
                        format!(
                            "{} has {} lines for database `{}`",
                            path.display(),
                            lines.len(),
                            job.database
                        ),
                        now,
                    );
                    push(&mut out, j);
                    continue;
                }
            };
            j.started_at = line.started_at;
            j.finished_at = line.finished_at;
            j.backup_seconds = line.backup_seconds;
            j.compression_seconds = line.compression_seconds;
            j.transfer_seconds = line.transfer_seconds;
            j.last_drill_at = line.last_drill.as_ref().map(|d| d.at);
            j.last_drill_status = line.last_drill.as_ref().map(|d| d.status.clone());
            j.file = line.file.clone();
            j.size_bytes = line.size_bytes;
            j.sha256 = line.sha256.clone();
            if line.engine != job.engine {
                j.set(
                    JobStatus::Unknown,
                    format!(
                        "the report says database `{}` is {}, the job expects {}",
                        job.database, line.engine, job.engine
                    ),
                    now,
                );
                push(&mut out, j);
                continue;
            }
            if line.status == BackupOutcome::Failed {
                let why = line
                    .error
                    .clone()
                    .unwrap_or_else(|| "no error given".into());
                j.set(
                    JobStatus::Failed,
                    format!("the agent reports a failed backup: {why}"),
                    now,
                );
                push(&mut out, j);
                continue;
            }
            let claimed = match line.claimed() {
                Ok(c) => c,
                Err(e) => {
                    j.set(JobStatus::Unknown, e, now);
                    push(&mut out, j);
                    continue;
                }
            };
            if let Err(e) = real_dirs(
                &cfg.deposit_dir,
                &[&job.company, &job.city, &job.site, &job.database],
            ) {
                j.set(JobStatus::TransferIntegrityFailed, e, now);
                push(&mut out, j);
                continue;
            }
            todo.push(ToValidate {
                path: cfg
                    .deposit_dir
                    .join(job.site_path())
                    .join(&job.database)
                    .join(claimed.file),
                job,
                file: claimed.file.to_string(),
                size_bytes: claimed.size_bytes,
                sha256: claimed.sha256.clone(),
                judgement: j,
            });
        }
    }

    // Hash every deposited file once, in parallel.
    let mut paths: Vec<PathBuf> = todo.iter().map(|t| t.path.clone()).collect();
    paths.sort();
    paths.dedup();
    let hashes: HashMap<PathBuf, Result<Hashed, String>> =
        paths.iter().cloned().zip(hash::hash_all(&paths)).collect();

    let mut finished: Vec<Judgement> = todo
        .into_iter()
        .map(|t| finish(cfg, store, now, t, &hashes, &mut out.cleaned))
        .collect();
    // Nothing promoted is recorded before it is durable: one flush of the filesystem.
    if finished.iter().any(|j| j.promoted) {
        if let Err(e) = store.sync() {
            for j in finished.iter_mut().filter(|j| j.promoted) {
                j.status = JobStatus::Unknown;
                j.message = format!("promoted, but {e}");
                j.is_final = false;
            }
        }
    }
    for j in finished {
        push(&mut out, j);
    }
    out.unexpected = unexpected(cfg, &reports);
    // Processed reports are archived beside the validated store (the deposit's copy is the
    // agent's to overwrite).
    for (site, r) in &reports {
        if let Ok(Some((_, report))) = r {
            let bytes = serde_json::to_vec_pretty(report).unwrap_or_default();
            match store.archive_report(site, report.generated_at, &bytes) {
                Ok(Some(p)) => out.archived.push(p),
                Ok(None) => {}
                Err(e) => out
                    .archived
                    .push(format!("{}: not archived: {e}", site.display())),
            }
        }
    }
    out
}

fn push(out: &mut ScanOutcome, j: Judgement) {
    if j.is_final {
        out.judged.push(j);
    } else {
        out.pending.push(j);
    }
}

/// Judges a success from the file's hash, and promotes it when good.
fn finish(
    cfg: &MonitorConfig,
    store: &Store,
    now: DateTime<Utc>,
    t: ToValidate,
    hashes: &HashMap<PathBuf, Result<Hashed, String>>,
    cleaned: &mut Vec<String>,
) -> Judgement {
    let mut j = t.judgement;
    let shown = t.path.display().to_string();
    let kept = match store.list(t.job) {
        Ok(kept) => kept,
        Err(e) => {
            j.status = JobStatus::Unknown;
            j.message = format!("the validated store cannot be read: {e}");
            j.is_final = now >= j.deadline;
            return j;
        }
    };
    // The previous validated backup: the newest other than this file.
    let previous = kept.iter().rev().find(|r| r.file != t.file);
    let verdict_good = |previous: Option<&Record>| {
        match previous {
        Some(p) if p.sha256 == t.sha256 => (
            JobStatus::Unchanged,
            format!("identical to the previous validated backup {} (same SHA-256): is the database still written to?", p.file),
        ),
        _ => (JobStatus::Ok, String::new()),
    }
    };
    let hashed = match hashes.get(&t.path) {
        Some(Ok(h)) if std::fs::symlink_metadata(&t.path).is_ok() => h.clone(),
        other => {
            // Not in the deposit: promoted by an earlier scan (killed before it recorded)?
            let gone = std::fs::symlink_metadata(&t.path).is_err();
            if gone {
                if let Some(r) = kept.iter().find(|r| r.file == t.file) {
                    if r.sha256 == t.sha256 && r.size_bytes == t.size_bytes {
                        // Killed before the manifest followed: it follows now.
                        store.carry_manifest(&t.path, t.job, &t.file);
                        let (s, m) = verdict_good(previous);
                        j.set(
                            s,
                            if m.is_empty() {
                                "validated and promoted by an earlier scan".to_string()
                            } else {
                                m
                            },
                            now,
                        );
                        j.promoted = true;
                        return j;
                    }
                }
                // Promoted by a scan whose record a crash lost: the bytes decide.
                if !kept.iter().any(|r| r.file == t.file) {
                    if let Ok(h) = store.hash_stored(t.job, &t.file) {
                        if h.size_bytes == t.size_bytes && h.sha256 == t.sha256 {
                            let record = Record {
                                file: t.file.clone(),
                                size_bytes: h.size_bytes,
                                sha256: h.sha256,
                                validated_at: now.max(Utc::now()),
                                job: j.job.clone(),
                                due: j.due,
                            };
                            if store.rewrite_record(t.job, &record).is_ok() {
                                store.carry_manifest(&t.path, t.job, &t.file);
                                let (s, m) = verdict_good(previous);
                                let m = if m.is_empty() {
                                    "promoted by an earlier scan; its record rewritten".to_string()
                                } else {
                                    m
                                };
                                j.set(s, m, now);
                                j.promoted = true;
                                return j;
                            }
                        }
                    }
                }
                j.set(
                    JobStatus::TransferIntegrityFailed,
                    format!("{shown}: named by the report, not in the deposit"),
                    now,
                );
                return j;
            }
            let why = match other {
                Some(Err(e)) => e.clone(),
                _ => "not hashed".into(),
            };
            j.set(
                JobStatus::TransferIntegrityFailed,
                format!("{shown}: {why}"),
                now,
            );
            return j;
        }
    };
    if hashed.size_bytes != t.size_bytes || hashed.sha256 != t.sha256 {
        j.set(
            JobStatus::TransferIntegrityFailed,
            format!(
                "{shown}: the agent sent {} bytes with SHA-256 {}, the monitor finds {} bytes with SHA-256 {}; not promoted",
                t.size_bytes, t.sha256, hashed.size_bytes, hashed.sha256
            ),
            now,
        );
        return j;
    }
    let (status, message) = verdict_good(previous);
    let record = Record {
        file: t.file.clone(),
        size_bytes: hashed.size_bytes,
        sha256: hashed.sha256.clone(),
        validated_at: now.max(Utc::now()),
        job: j.job.clone(),
        due: j.due,
    };
    let promoted = hash::open_no_follow(&t.path)
        .map_err(|e| format!("{shown}: {e}"))
        .and_then(|f| store.promote(&t.path, &f, &hashed, t.job, &record, &kept));
    match promoted {
        Ok(()) => {
            j.promoted = true;
            j.set(status, message, now);
            cleaned.extend(store.prune(t.job, cfg.keep_validated));
        }
        Err(e) => {
            // Valid, but not stored: the next scan tries again.
            j.status = JobStatus::Unknown;
            j.message = format!("valid, but could not be promoted: {e}");
            j.is_final = now >= j.deadline;
        }
    }
    j
}

/// Deposits no job expects: sites, and databases of expected sites (their report lines and
/// their directories). Symbolic links are never followed, only reported.
fn unexpected(cfg: &MonitorConfig, reports: &HashMap<PathBuf, SiteReport>) -> Vec<Unexpected> {
    let mut out = Vec::new();
    let sites: HashSet<PathBuf> = cfg.jobs.iter().map(Job::site_path).collect();
    let expected_db = |site: &Path, db: &str| {
        cfg.jobs
            .iter()
            .any(|j| j.site_path() == site && j.database == db)
    };
    let entries = |dir: &Path| -> Vec<(String, std::fs::FileType)> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut v: Vec<_> = rd
            .filter_map(|e| e.ok())
            .take(10_000)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.file_type().ok()?)))
            .filter(|(n, _)| !n.starts_with('.'))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mut note = |path: PathBuf, reason: String| {
        let reason = if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            "a symbolic link, not followed".to_string()
        } else {
            reason
        };
        out.push(Unexpected {
            path: path.display().to_string(),
            reason,
        })
    };
    for (company, t1) in entries(&cfg.deposit_dir) {
        let p1 = PathBuf::from(&company);
        if !t1.is_dir() {
            note(
                cfg.deposit_dir.join(&p1),
                "not a company directory (ignored)".into(),
            );
            continue;
        }
        for (city, t2) in entries(&cfg.deposit_dir.join(&p1)) {
            let p2 = p1.join(&city);
            if !t2.is_dir() {
                note(
                    cfg.deposit_dir.join(&p2),
                    "not a city directory (ignored)".into(),
                );
                continue;
            }
            for (site, t3) in entries(&cfg.deposit_dir.join(&p2)) {
                let p3 = p2.join(&site);
                let full = cfg.deposit_dir.join(&p3);
                if !t3.is_dir() {
                    note(full, "not a site directory (ignored)".into());
                    continue;
                }
                if !sites.contains(&p3) {
                    note(full, format!("site {} has no expected job", p3.display()));
                    continue;
                }
                for (db, t4) in entries(&full) {
                    if db == REPORT_NAME {
                        continue;
                    }
                    if !t4.is_dir() {
                        note(full.join(&db), "not a database directory (ignored)".into());
                    } else if !expected_db(&p3, &db) {
                        note(
                            full.join(&db),
                            format!("no job expects database `{db}` of site {}", p3.display()),
                        );
                    }
                }
                if let Some(Ok(Some((path, r)))) = reports.get(&p3) {
                    for d in &r.databases {
                        if !expected_db(&p3, &d.database) {
                            note(
                                path.clone(),
                                format!("reports database `{}`, which no job expects", d.database),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}
