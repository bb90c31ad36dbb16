//! Which backups retention deletes: those older than `retention_days`, except the
//! `keep_min` newest good ones (never fewer than one). Only good backups of the same target
//! are ever candidates: a file without a manifest, with a failed one, or of another target
//! is not ours to delete. A backup dated in the future is not good either: it neither counts
//! toward `keep_min` (it would push a real backup out) nor is ever deleted. Only a backup
//! whose file is there with its manifest's size counts toward `keep_min`: two lost files
//! must not let retention delete the last intact one.

use chrono::{DateTime, Duration, Utc};

use super::Entry;

/// The entries to delete, oldest last.
pub fn plan<'a>(
    entries: &'a [Entry],
    target: &str,
    now: DateTime<Utc>,
    retention_days: u32,
    keep_min: u32,
) -> Vec<&'a Entry> {
    let mut good: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.is_good_for(target) && e.is_whole())
        .collect();
    good.sort_by_key(|e| std::cmp::Reverse(e.name.taken));
    let keep = keep_min.max(1) as usize;
    let cutoff = now.naive_utc() - Duration::days(retention_days as i64);
    good.into_iter()
        .skip(keep)
        .filter(|e| e.name.taken < cutoff)
        .collect()
}

/// Deletes a backup and then its manifest (a manifest left alone by a crash still marks
/// the backup as ours, so the next run finishes the job).
pub fn delete(entry: &Entry) -> std::io::Result<()> {
    for p in [entry.path.clone(), super::Manifest::path_for(&entry.path)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::{BackupName, Manifest};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn entry(days_ago: i64, target: &str, manifest: bool, status: &str) -> Entry {
        let now = DateTime::parse_from_rfc3339("2026-11-21T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let taken = now - Duration::days(days_ago);
        let name = BackupName::new("mairie", taken, "dump");
        let m = Manifest {
            engine: "postgres".into(),
            target: target.into(),
            database: "mairie".into(),
            file: name.file_name(),
            size_bytes: 1,
            sha256: "0".repeat(64),
            started_at: taken,
            finished_at: taken,
            status: status.into(),
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
        };
        Entry {
            path: PathBuf::from(name.file_name()),
            dated_ahead: (taken > now + Duration::minutes(5)).then_some(taken),
            name,
            size: 1,
            foreign: None,
            present: true,
            manifest: if manifest {
                Ok(m)
            } else {
                Err("no manifest".into())
            },
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ages(v: Vec<&Entry>) -> Vec<i64> {
        v.iter()
            .map(|e| (now().naive_utc() - e.name.taken).num_days())
            .collect()
    }

    #[test]
    fn old_backups_go_but_keep_min_newest_stay() {
        let es: Vec<Entry> = [0, 1, 2, 20, 30, 40]
            .iter()
            .map(|&d| entry(d, "pg", true, "success"))
            .collect();
        assert_eq!(ages(plan(&es, "pg", now(), 14, 3)), vec![20, 30, 40]);
        assert_eq!(ages(plan(&es, "pg", now(), 14, 5)), vec![40]);
    }

    #[test]
    fn the_last_good_backup_is_never_deleted() {
        let es = vec![
            entry(100, "pg", true, "success"),
            entry(200, "pg", true, "success"),
        ];
        assert_eq!(ages(plan(&es, "pg", now(), 14, 0)), vec![200]);
        assert_eq!(ages(plan(&es, "pg", now(), 14, 3)), Vec::<i64>::new());
    }

    #[test]
    fn foreign_failed_and_other_target_files_are_never_candidates() {
        let es = vec![
            entry(1, "pg", true, "success"),
            entry(50, "pg", false, "success"),
            entry(60, "other", true, "success"),
            entry(70, "pg", true, "failed"),
            entry(80, "pg", true, "success"),
        ];
        assert_eq!(ages(plan(&es, "pg", now(), 14, 1)), vec![80]);
    }

    #[test]
    fn a_future_dated_backup_neither_counts_toward_keep_min_nor_goes() {
        // Without the clock check, the one dated next year would be among the three kept
        // and the 40-day-old backup deleted.
        let es = vec![
            entry(-365, "pg", true, "success"),
            entry(1, "pg", true, "success"),
            entry(20, "pg", true, "success"),
            entry(40, "pg", true, "success"),
        ];
        assert_eq!(ages(plan(&es, "pg", now(), 14, 3)), Vec::<i64>::new());
        assert_eq!(ages(plan(&es, "pg", now(), 14, 2)), vec![40]);
    }
}
