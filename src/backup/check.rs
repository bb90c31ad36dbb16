//! `backup check`'s judgement of one target, engine-free: shared by the command and by the
//! exporter's backup metrics, which must never disagree with it.

use anyhow::Result;
use chrono::Utc;

use super::{Entry, LastRun};
use crate::output::Status;

/// What `backup check` found for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub state: &'static str,
    pub status: Status,
    pub age_hours: Option<f64>,
    pub latest: Option<String>,
    pub message: String,
}

/// Judges a target's backups: MISSING, FAILED, HASH_MISMATCH, STALE or OK.
pub fn judge(
    entries: &[Entry],
    target: &str,
    last_run: Option<&LastRun>,
    max_age_hours: u32,
    now: chrono::DateTime<Utc>,
    hash_ok: impl Fn(&Entry) -> Result<()>,
) -> Finding {
    let good = entries.iter().find(|e| e.is_good_for(target));
    let good_started = good
        .and_then(|e| e.manifest.as_ref().ok())
        .map(|m| m.started_at);
    if let Some(run) = last_run.filter(|r| r.status == "failed") {
        if good_started.is_none_or(|s| run.started_at > s) {
            return Finding {
                state: "FAILED",
                status: Status::Critical,
                age_hours: None,
                latest: good.map(Entry::file_name),
                message: format!(
                    "the last backup run failed at {}: {}",
                    run.started_at.format("%Y-%m-%d %H:%M UTC"),
                    run.error.as_deref().unwrap_or("no detail")
                ),
            };
        }
    }
    let Some(good) = good else {
        return Finding {
            state: "MISSING",
            status: Status::Critical,
            age_hours: None,
            latest: None,
            message: "no backup with a manifest".into(),
        };
    };
    let m = good.manifest.as_ref().expect("a good entry has a manifest");
    let age = (now - m.finished_at).num_minutes() as f64 / 60.0;
    if let Err(e) = hash_ok(good) {
        return Finding {
            state: "HASH_MISMATCH",
            status: Status::Critical,
            age_hours: Some(age),
            latest: Some(good.file_name()),
            message: format!("{e:#}"),
        };
    }
    let max = max_age_hours as f64;
    if age > max {
        return Finding {
            state: "STALE",
            status: if age > 2.0 * max {
                Status::Critical
            } else {
                Status::Warning
            },
            age_hours: Some(age),
            latest: Some(good.file_name()),
            message: format!("latest backup is {age:.1} h old (max {max_age_hours} h)"),
        };
    }
    Finding {
        state: "OK",
        status: Status::Ok,
        age_hours: Some(age),
        latest: Some(good.file_name()),
        message: format!(
            "latest backup {} is {age:.1} h old, {} intact",
            good.file_name(),
            indicatif::HumanBytes(m.size_bytes)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use crate::backup::{BackupName, Manifest};

    fn now() -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(hours_ago: i64) -> Entry {
        let t = now() - chrono::Duration::hours(hours_ago);
        let name = BackupName::new("mairie", t, "dump");
        Entry {
            path: PathBuf::from(name.file_name()),
            size: 10,
            manifest: Ok(Manifest {
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
            }),
            name,
        }
    }

    fn ok(_: &Entry) -> Result<()> {
        Ok(())
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
}
