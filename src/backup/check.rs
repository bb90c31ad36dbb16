//! `backup check`'s judgement of one target, engine-free: shared by the command and by the
//! exporter's backup metrics, which must never disagree with it.
//!
//! A judgement lists every problem it finds, worst first; the target's state is the worst
//! one's. It reads only what is cheap to read: the directory's listing, the manifests, the
//! state record, and whatever the caller's `intact` says about the latest backup (a `stat`
//! against the manifest for `backup check`, a full re-hash with `--deep`).

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::state::TargetState;
use super::{Entry, LastRun};
use crate::output::Status;

/// What `backup check` found for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The worst problem's state, or `OK`.
    pub state: &'static str,
    pub status: Status,
    /// Hours since the latest good backup finished (never negative).
    pub age_hours: Option<f64>,
    pub latest: Option<String>,
    /// The latest good backup's size, per its manifest.
    pub size_bytes: Option<u64>,
    /// When the latest good backup was last fully verified (its own run hashed it as it
    /// was written: that counts).
    pub verified_at: Option<DateTime<Utc>>,
    /// Every problem's message, worst first, or what was found when there is none.
    pub message: String,
    /// Every problem found, worst first.
    pub problems: Vec<Problem>,
}

/// One thing wrong with a target's backups.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub state: &'static str,
    pub status: Status,
    pub message: String,
}

/// Everything a judgement reads besides the backup files themselves.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub target: &'a str,
    /// The last `backup` run of the target, if recorded.
    pub last_run: Option<&'a LastRun>,
    pub max_age_hours: u32,
    /// None: the age of the last full verification is not judged.
    pub verify_max_age_hours: Option<u32>,
    /// The state record (verifications), when there is one.
    pub record: Option<&'a TargetState>,
    /// Why the backup directory cannot be written, when it cannot (None: not looked at).
    pub unwritable: Option<String>,
    /// Whether backups dated in the future are reported (they are never the latest).
    pub report_future: bool,
    pub now: DateTime<Utc>,
}

/// Judges a target's backups: MISSING, FAILED, HASH_MISMATCH, STALE or OK, the cheap way
/// the exporter reads them (no state record, no verification age, no clock warnings).
pub fn judge(
    entries: &[Entry],
    target: &str,
    last_run: Option<&LastRun>,
    max_age_hours: u32,
    now: DateTime<Utc>,
    hash_ok: impl Fn(&Entry) -> Result<()>,
) -> Finding {
    let facts = Facts {
        target,
        last_run,
        max_age_hours,
        verify_max_age_hours: None,
        record: None,
        unwritable: None,
        report_future: false,
        now,
    };
    assess(Ok(entries), &facts, hash_ok)
}

/// Judges a target's backups from the directory's entries (or why they could not be read).
/// States, CRITICAL first: FAILED (the last run failed, and no good backup finished since
/// it started), UNWRITABLE, UNREADABLE, MISSING, HASH_MISMATCH (the latest good backup is
/// missing, truncated or altered), DAMAGED (its last `backup verify` failed), then STALE
/// (WARNING, CRITICAL past twice `max_age_hours`), UNVERIFIED and FUTURE_DATED (WARNING).
pub fn assess(
    entries: Result<&[Entry], String>,
    facts: &Facts<'_>,
    mut intact: impl FnMut(&Entry) -> Result<()>,
) -> Finding {
    let mut problems = Vec::new();
    let mut push = |state, status, message: String| {
        problems.push(Problem {
            state,
            status,
            message,
        })
    };
    let entries_ok = entries.as_ref().ok().copied().unwrap_or(&[]);
    let good = entries_ok.iter().find(|e| e.is_good_for(facts.target));
    let manifest = good.and_then(|e| e.manifest.as_ref().ok());

    if let Some(run) = facts.last_run.filter(|r| r.status != "success") {
        // A good backup that finished after the failed run started supersedes it.
        if manifest.is_none_or(|m| m.finished_at < run.started_at) {
            push(
                "FAILED",
                Status::Critical,
                format!(
                    "the last backup run failed at {}: {}",
                    run.started_at.format("%Y-%m-%d %H:%M UTC"),
                    run.error.as_deref().unwrap_or("no detail")
                ),
            );
        }
    }
    if let Some(why) = &facts.unwritable {
        push(
            "UNWRITABLE",
            Status::Critical,
            format!("the backup directory cannot take a new backup: {why}"),
        );
    }
    if let Err(e) = &entries {
        if facts.unwritable.is_none() {
            push("UNREADABLE", Status::Critical, e.clone());
        }
    }

    let mut age_hours = None;
    let mut verified_at = None;
    match (good, manifest) {
        (Some(good), Some(m)) => {
            let age = ((facts.now - m.finished_at).num_seconds().max(0) as f64) / 3600.0;
            age_hours = Some(age);
            let file = good.file_name();
            let record = facts
                .record
                .and_then(|r| r.files.get(&file))
                .and_then(|f| f.verify.as_ref());
            // Its own run hashed it as it was written (or, for SQL Server, had the server
            // verify it): a verification at its time.
            let mut last_ok = m.finished_at.max(m.verified_at.unwrap_or(m.finished_at));
            if let Some(v) = record.filter(|v| !v.failed()) {
                last_ok = last_ok.max(v.at);
            }
            verified_at = Some(last_ok);
            if let Err(e) = intact(good) {
                push("HASH_MISMATCH", Status::Critical, format!("{e:#}"));
            }
            if let Some(v) = record.filter(|v| v.failed() && v.at > last_ok) {
                push(
                    "DAMAGED",
                    Status::Critical,
                    format!(
                        "{file} failed verification at {}: {}",
                        v.at.format("%Y-%m-%d %H:%M UTC"),
                        v.error.as_deref().unwrap_or("no detail")
                    ),
                );
            }
            let max = facts.max_age_hours as f64;
            if age > max {
                push(
                    "STALE",
                    if age > 2.0 * max {
                        Status::Critical
                    } else {
                        Status::Warning
                    },
                    format!(
                        "latest backup is {age:.1} h old (max {} h)",
                        facts.max_age_hours
                    ),
                );
            }
            if let Some(limit) = facts.verify_max_age_hours {
                let since = ((facts.now - last_ok).num_seconds().max(0) as f64) / 3600.0;
                if since > limit as f64 {
                    push(
                        "UNVERIFIED",
                        Status::Warning,
                        format!(
                            "{file} was last verified {since:.1} h ago (max {limit} h): run `backup verify`"
                        ),
                    );
                }
            }
        }
        _ if entries.is_ok() => push(
            "MISSING",
            Status::Critical,
            "no backup with a manifest".into(),
        ),
        _ => {}
    }
    // Entries that claim to be this target's but are not (a manifest naming a location or
    // another database, a symbolic link): skipped, and said.
    let foreign: Vec<&str> = entries_ok
        .iter()
        .filter(|e| e.is_ours_or_unclaimed(facts.target))
        .filter_map(|e| e.foreign.as_deref())
        .collect();
    if !foreign.is_empty() {
        push(
            "FOREIGN",
            Status::Warning,
            format!("skipped: {}", foreign.join("; ")),
        );
    }
    if facts.report_future {
        let ahead: Vec<String> = entries_ok
            .iter()
            .filter(|e| e.is_ours_or_unclaimed(facts.target))
            .filter_map(|e| {
                e.dated_ahead
                    .map(|t| format!("{} ({})", e.file_name(), t.format("%Y-%m-%d %H:%M UTC")))
            })
            .collect();
        if !ahead.is_empty() {
            push(
                "FUTURE_DATED",
                Status::Warning,
                format!(
                    "dated in the future, clock skew? {} (never taken for the latest)",
                    ahead.join(", ")
                ),
            );
        }
    }

    // Worst first; among equals, the order above.
    problems.sort_by_key(|p| std::cmp::Reverse(p.status));
    let (state, status, message) = match problems.first() {
        Some(p) => (
            p.state,
            p.status,
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => {
            let (good, m) = (good.expect("no problem means a good backup"), manifest);
            (
                "OK",
                Status::Ok,
                format!(
                    "latest backup {} is {:.1} h old, {} intact",
                    good.file_name(),
                    age_hours.unwrap_or_default(),
                    indicatif::HumanBytes(m.map(|m| m.size_bytes).unwrap_or_default())
                ),
            )
        }
    };
    Finding {
        state,
        status,
        age_hours,
        latest: good.map(Entry::file_name),
        size_bytes: manifest.map(|m| m.size_bytes),
        verified_at,
        message,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use crate::backup::state::{FileRecord, VerifyRecord};
    use crate::backup::{BackupName, Manifest};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(hours_ago: i64) -> Entry {
        let t = now() - chrono::Duration::hours(hours_ago);
        let name = BackupName::new("mairie", t, "dump");
        let manifest = Ok(Manifest {
            engine: "postgres".into(),
            target: "pg".into(),
            database: "mairie".into(),
            file: name.file_name(),
            size_bytes: 10,
            sha256: "0".repeat(64),
            started_at: t,
            finished_at: t,
            status: "success".into(),
            tool: "pg_dump".into(),
            tables: BTreeMap::new(),
            format: String::new(),
            server_version: String::new(),
            host: String::new(),
            location: None,
            verified_at: None,
            mairie_dba_version: String::new(),
            mtime: None,
            etag: None,
        });
        Entry {
            path: PathBuf::from(name.file_name()),
            size: 10,
            dated_ahead: (t > now() + chrono::Duration::minutes(5)).then_some(t),
            manifest,
            name,
            foreign: None,
            present: true,
        }
    }

    fn ok(_: &Entry) -> Result<()> {
        Ok(())
    }

    fn facts(run: Option<&LastRun>) -> Facts<'_> {
        Facts {
            target: "pg",
            last_run: run,
            max_age_hours: 26,
            verify_max_age_hours: Some(168),
            record: None,
            unwritable: None,
            report_future: true,
            now: now(),
        }
    }

    #[test]
    fn states_and_their_nagios_status() {
        let j = |es: &[Entry], run: Option<&LastRun>| judge(es, "pg", run, 26, now(), ok);
        assert_eq!(j(&[], None).state, "MISSING");
        assert_eq!(j(&[], None).status, Status::Critical);
        assert_eq!(j(&[entry(2)], None).state, "OK");
        assert_eq!(j(&[entry(30)], None).status, Status::Warning);
        assert_eq!(j(&[entry(60)], None).status, Status::Critical);
        let failed = LastRun {
            target: "pg".into(),
            status: "failed".into(),
            started_at: now() - chrono::Duration::hours(1),
            finished_at: now(),
            file: None,
            error: Some("pg_dump failed".into()),
        };
        let f = j(&[entry(20)], Some(&failed));
        assert_eq!((f.state, f.status), ("FAILED", Status::Critical));
        assert!(f.message.contains("pg_dump failed"));
        // A failure older than the latest good backup is history, not news.
        let old = LastRun {
            started_at: now() - chrono::Duration::hours(30),
            ..failed
        };
        assert_eq!(j(&[entry(2)], Some(&old)).state, "OK");
        let bad = judge(&[entry(2)], "pg", None, 26, now(), |_| {
            Err(anyhow::anyhow!("SHA-256 mismatch"))
        });
        assert_eq!((bad.state, bad.status), ("HASH_MISMATCH", Status::Critical));
    }

    #[test]
    fn a_future_dated_backup_is_reported_and_never_the_latest() {
        let es = [entry(-24 * 365), entry(3)];
        let f = assess(Ok(&es), &facts(None), ok);
        assert_eq!((f.state, f.status), ("FUTURE_DATED", Status::Warning));
        assert_eq!(f.latest, Some(es[1].file_name()));
        assert!(f.message.contains(&es[0].file_name()), "{}", f.message);
        assert!(f.message.contains("clock skew?"), "{}", f.message);
        let age = f.age_hours.unwrap();
        assert!((2.9..3.1).contains(&age), "{age}");
        // Alone, it is no backup at all; and a few minutes ahead is only a clock's jitter.
        let f = assess(Ok(&es[..1]), &facts(None), ok);
        assert_eq!(f.state, "MISSING");
        let mut near = entry(0);
        if let Ok(m) = near.manifest.as_mut() {
            m.finished_at = now() + chrono::Duration::minutes(2);
        }
        let f = assess(Ok(std::slice::from_ref(&near)), &facts(None), ok);
        assert_eq!(f.state, "OK");
        assert_eq!(f.age_hours, Some(0.0), "never negative");
    }

    #[test]
    fn failed_verifications_unverified_backups_and_unwritable_directories() {
        let es = [entry(2)];
        let file = es[0].file_name();
        let mut record = TargetState::default();
        record.files.insert(
            file.clone(),
            FileRecord {
                verify: Some(VerifyRecord {
                    at: now() - chrono::Duration::hours(1),
                    status: "failed".into(),
                    error: Some("pg_restore: error: could not read".into()),
                }),
                hashed: None,
            },
        );
        let mut fx = facts(None);
        fx.record = Some(&record);
        let f = assess(Ok(&es), &fx, ok);
        assert_eq!((f.state, f.status), ("DAMAGED", Status::Critical));
        assert!(f.message.contains("could not read"), "{}", f.message);
        // A newer good backup replaces it.
        let newer = [entry(0), entry(2)];
        assert_eq!(assess(Ok(&newer), &fx, ok).state, "OK");

        // Not verified for longer than allowed (its own run counts as a verification).
        let old = [entry(200)];
        let mut fx = facts(None);
        fx.max_age_hours = 400;
        let f = assess(Ok(&old), &fx, ok);
        assert_eq!((f.state, f.status), ("UNVERIFIED", Status::Warning));
        fx.verify_max_age_hours = Some(240);
        assert_eq!(assess(Ok(&old), &fx, ok).state, "OK");

        let mut fx = facts(None);
        fx.unwritable = Some("/b is not a directory".into());
        let f = assess(Err("reading /b: Not a directory".into()), &fx, ok);
        assert_eq!((f.state, f.status), ("UNWRITABLE", Status::Critical));
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        let f = assess(Ok(&es), &fx, ok);
        assert_eq!(f.state, "UNWRITABLE");
    }
}
