//! What the exporter asks a PostgreSQL server, one probe per family group: each group is one
//! or two catalogue queries, so that a group that fails or meets a lock costs only its own
//! families. The statistics views (`pg_stat_*`, `pg_locks`, `pg_database`) take no table
//! lock; only the key tables' sizes open the tables, and are a group of their own. The
//! families themselves (names, help, types) are `families.rs`'s.

use anyhow::Result;
use tokio_postgres::{Row, SimpleQueryMessage};

use super::families as f;
use super::{zero_states, Group, PitrWatch, Rows, Samples};
use crate::catalog::TableRef;
use crate::engine::postgres::pitr::{ready_files, ReadyFiles};
use crate::engine::postgres::{db_err, PgConn};
use crate::pitr::check as pitr_check;

/// The groups measured on PostgreSQL, in the order a round asks them: the cheap views first,
/// what may wait for a lock (table sizes, sequences) last.
pub const GROUPS: &[Group] = &[
    Group::Server,
    Group::DatabaseSize,
    Group::Sessions,
    Group::Replication,
    Group::DatabaseStats,
    Group::Wraparound,
    Group::Checkpoints,
    Group::Wal,
    Group::Archiver,
    Group::Pitr,
    Group::ReplicationSlots,
    Group::Locks,
    Group::TableStats,
    Group::TableSizes,
    Group::Sequences,
];

/// One group's probe.
pub async fn probe(
    c: &PgConn,
    group: Group,
    key_tables: &[TableRef],
    pitr: Option<&PitrWatch>,
) -> Result<Samples> {
    let mut s = Samples::default();
    match group {
        Group::Server => {
            let r = one(
                c,
                "SELECT current_setting('server_version'),
                        extract(epoch FROM pg_postmaster_start_time())::float8,
                        current_setting('max_connections')::float8",
            )
            .await?;
            s.push(&f::SERVER_INFO, &["postgres", r.get(0)], 1.0);
            s.opt(&f::SERVER_START_TIME, &[], r.get(1));
            s.opt(&f::CONNECTIONS_MAX, &[], r.get(2));
        }
        Group::DatabaseSize => {
            let r = one(
                c,
                "SELECT current_database()::text, pg_database_size(current_database())::float8",
            )
            .await?;
            s.opt(&f::DATABASE_SIZE, &[r.get(0)], r.get(1));
        }
        Group::Sessions => {
            let states = all(
                c,
                "SELECT CASE WHEN state = 'active' THEN 'active' WHEN state = 'idle' THEN 'idle'
                             WHEN state LIKE 'idle in transaction%' THEN 'idle_in_transaction' ELSE 'other' END,
                        count(*)::float8
                 FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1",
            )
            .await?;
            let found = states.iter().map(|r| (r.get(0), r.get(1))).collect();
            for (state, n) in zero_states(found) {
                s.push(&f::CONNECTIONS, &[&state], n);
            }
            let r = one(
                c,
                "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8
                 FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()",
            )
            .await?;
            s.push(&f::LONGEST_TRANSACTION, &[], r.get(0));
        }
        Group::Replication => {
            let r = one(
                c,
                "SELECT CASE WHEN pg_is_in_recovery()
                             THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())
                             ELSE (SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication) END::float8",
            )
            .await?;
            s.opt(&f::REPLICATION_LAG, &[], r.get(0));
        }
        Group::DatabaseStats => {
            for r in all(
                c,
                "SELECT datname::text, xact_commit::float8, xact_rollback::float8, deadlocks::float8,
                        conflicts::float8, temp_bytes::float8, temp_files::float8
                 FROM pg_stat_database WHERE datname IS NOT NULL",
            )
            .await?
            {
                let db: &str = r.get(0);
                s.opt(&f::TRANSACTIONS, &[db, "commit"], r.get(1));
                s.opt(&f::TRANSACTIONS, &[db, "rollback"], r.get(2));
                s.opt(&f::DEADLOCKS, &[db], r.get(3));
                s.opt(&f::RECOVERY_CONFLICTS, &[db], r.get(4));
                s.opt(&f::TEMP_BYTES, &[db], r.get(5));
                s.opt(&f::TEMP_FILES, &[db], r.get(6));
            }
        }
        Group::Wraparound => {
            for r in all(
                c,
                "SELECT datname::text, age(datfrozenxid)::float8, mxid_age(datminmxid)::float8 FROM pg_database",
            )
            .await?
            {
                let db: &str = r.get(0);
                s.opt(&f::XID_AGE, &[db], r.get(1));
                s.opt(&f::MXID_AGE, &[db], r.get(2));
            }
        }
        Group::Checkpoints => {
            let v = one(c, "SELECT current_setting('server_version_num')::int").await?;
            let r = one(c, checkpoint_sql(v.get(0))).await?;
            s.opt(&f::CHECKPOINTS, &["timed"], r.get(0));
            s.opt(&f::CHECKPOINTS, &["requested"], r.get(1));
            s.opt(&f::CHECKPOINT_WRITE, &[], r.get(2));
            s.opt(&f::CHECKPOINT_SYNC, &[], r.get(3));
            s.opt(&f::BUFFERS_WRITTEN, &["checkpointer"], r.get(4));
            s.opt(&f::BUFFERS_WRITTEN, &["bgwriter"], r.get(5));
            s.opt(&f::BUFFERS_WRITTEN, &["backend"], r.get(6));
            s.opt(&f::BGWRITER_STOPS, &[], r.get(7));
            s.opt(&f::BUFFERS_ALLOCATED, &[], r.get(8));
        }
        Group::Wal => {
            let r = one(
                c,
                "SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                             ELSE pg_current_wal_lsn() END, '0/0')::float8,
                        pg_has_role(current_user, 'pg_monitor', 'USAGE')",
            )
            .await?;
            s.opt(&f::WAL_BYTES, &[], r.get(0));
            // pg_ls_waldir() is for pg_monitor only: without it, the size is not measured
            // (absent), which is not a failure of the group.
            if r.get::<_, bool>(1) {
                let w = one(c, "SELECT coalesce(sum(size), 0)::float8 FROM pg_ls_waldir()").await?;
                s.push(&f::WAL_SIZE, &[], w.get(0));
            }
        }
        Group::Archiver => {
            let r = one(
                c,
                "SELECT archived_count::float8, failed_count::float8,
                        extract(epoch FROM now() - last_archived_time)::float8,
                        (last_failed_time IS NOT NULL
                         AND (last_archived_time IS NULL OR last_failed_time > last_archived_time))
                 FROM pg_stat_archiver",
            )
            .await?;
            s.opt(&f::ARCHIVED, &[], r.get(0));
            s.opt(&f::ARCHIVE_FAILED, &[], r.get(1));
            s.opt(&f::LAST_ARCHIVED_AGE, &[], r.get(2));
            s.push(&f::ARCHIVER_FAILING, &[], flag(r.get(3)));
            // Counted only where pg_ls_archive_statusdir() may be called (pg_monitor,
            // PostgreSQL 12+): absent otherwise, which is not a failure of the group.
            if let ReadyFiles::Counted { count, .. } = ready_files(c).await? {
                s.push(&f::ARCHIVER_READY_FILES, &[], count as f64);
            }
        }
        Group::Pitr => {
            let Some(w) = pitr else {
                anyhow::bail!("no `pitr:` section for this target");
            };
            let facts = pitr_check::gather(c, &w.archive).await?;
            let lines = pitr_check::judge(&facts, &w.limits);
            s.opt(&f::PITR_ARCHIVE_MISSING, &[], facts.archive.missing_count());
            let status = crate::health::worst(lines.iter().map(|l| l.status));
            for state in f::PITR_STATES {
                let v = if status.as_str().eq_ignore_ascii_case(state) {
                    1.0
                } else {
                    0.0
                };
                s.push(&f::PITR_STATUS, &[state], v);
            }
        }
        Group::ReplicationSlots => {
            for r in all(
                c,
                "SELECT slot_name::text, slot_type, active,
                        pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                                             ELSE pg_current_wal_lsn() END, restart_lsn)::float8
                 FROM pg_replication_slots",
            )
            .await?
            {
                let (slot, kind): (&str, &str) = (r.get(0), r.get(1));
                s.push(&f::SLOT_ACTIVE, &[slot, kind], flag(r.get(2)));
                s.opt(&f::SLOT_RETAINED, &[slot, kind], r.get(3));
            }
        }
        Group::Locks => {
            let rows = all(
                c,
                "SELECT mode, granted, count(*)::float8 FROM pg_locks WHERE mode IS NOT NULL GROUP BY 1, 2",
            )
            .await?;
            let found: Vec<(String, bool, f64)> = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            for (mode, granted, n) in lock_series(&found) {
                s.push(&f::LOCKS, &[&mode, granted], n);
            }
            // Folded from +0.0: an empty f64 sum is -0.0, which the exposition would print.
            let waiting = found
                .iter()
                .filter(|(_, g, _)| !g)
                .fold(0.0, |acc, (_, _, n)| acc + n);
            s.push(&f::LOCKS_WAITING, &[], waiting);
        }
        Group::TableStats => {
            // By name, not to_regclass(): the statistics views need no privilege on the
            // schema, and a monitoring role often has none.
            let (nsp, rel) = names(key_tables);
            let rows = c
                .client()
                .query(
                    "SELECT k.nsp, k.rel, s.seq_scan::float8, s.idx_scan::float8, s.seq_tup_read::float8,
                            s.idx_tup_fetch::float8, s.n_tup_ins::float8, s.n_tup_upd::float8,
                            s.n_tup_del::float8, s.n_dead_tup::float8,
                            extract(epoch FROM s.last_vacuum)::float8,
                            extract(epoch FROM s.last_autovacuum)::float8,
                            extract(epoch FROM s.last_analyze)::float8,
                            extract(epoch FROM s.last_autoanalyze)::float8
                     FROM unnest($1::text[], $2::text[]) AS k(nsp, rel)
                     JOIN pg_stat_user_tables s ON s.schemaname = k.nsp AND s.relname = k.rel",
                    &[&nsp, &rel],
                )
                .await
                .map_err(db_err)?;
            for (t, r) in by_key_table(key_tables, &rows) {
                let t = t.as_str();
                s.opt(&f::TABLE_SCANS, &[t, "seq"], r.get(2));
                s.opt(&f::TABLE_SCANS, &[t, "index"], r.get(3));
                s.opt(&f::TABLE_ROWS_READ, &[t, "seq"], r.get(4));
                s.opt(&f::TABLE_ROWS_READ, &[t, "index"], r.get(5));
                s.opt(&f::TABLE_ROWS_WRITTEN, &[t, "insert"], r.get(6));
                s.opt(&f::TABLE_ROWS_WRITTEN, &[t, "update"], r.get(7));
                s.opt(&f::TABLE_ROWS_WRITTEN, &[t, "delete"], r.get(8));
                s.opt(&f::TABLE_DEAD_ROWS, &[t], r.get(9));
                s.opt(&f::TABLE_LAST_VACUUM, &[t], r.get(10));
                s.opt(&f::TABLE_LAST_AUTOVACUUM, &[t], r.get(11));
                s.opt(&f::TABLE_LAST_ANALYZE, &[t], r.get(12));
                s.opt(&f::TABLE_LAST_AUTOANALYZE, &[t], r.get(13));
            }
        }
        Group::TableSizes => {
            // pg_total_relation_size opens the table: behind an ACCESS EXCLUSIVE lock it
            // waits, until the session's lock_timeout. Looked up by name in the catalogue,
            // which a role without USAGE on the schema may read too.
            let (nsp, rel) = names(key_tables);
            let rows = c
                .client()
                .query(
                    "SELECT k.nsp, k.rel, pg_total_relation_size(c.oid)::float8,
                            (CASE WHEN c.reltuples < 0 THEN coalesce(s.n_live_tup, 0) ELSE c.reltuples END)::float8
                     FROM unnest($1::text[], $2::text[]) AS k(nsp, rel)
                     JOIN pg_namespace n ON n.nspname = k.nsp
                     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = k.rel
                     LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid",
                    &[&nsp, &rel],
                )
                .await
                .map_err(db_err)?;
            for (t, r) in by_key_table(key_tables, &rows) {
                s.push(&f::TABLE_SIZE, &[&t], r.get(2));
                s.push(&f::TABLE_ROWS, &[&t], r.get(3));
            }
        }
        Group::Sequences => {
            // Every sequence of the database the role may read (the others' last value is
            // not visible to it); a cycling sequence never runs out. The privilege test and
            // pg_sequence_last_value() fail on a relation that is not a sequence: CASE keeps
            // the planner from trying them on other rows of pg_class.
            for r in all(
                c,
                "SELECT format('%I.%I', n.nspname, c.relname),
                        CASE WHEN s.seqincrement > 0
                             THEN coalesce(v.last, s.seqstart)::float8 - s.seqmin::float8
                             ELSE s.seqmax::float8 - coalesce(v.last, s.seqstart)::float8 END
                        / nullif(s.seqmax::float8 - s.seqmin::float8, 0)
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_sequence s ON s.seqrelid = c.oid
                 CROSS JOIN LATERAL (SELECT CASE WHEN c.relkind = 'S'
                                                 THEN pg_sequence_last_value(c.oid) END AS last) v
                 WHERE c.relkind = 'S' AND NOT s.seqcycle AND c.relpersistence <> 't'
                   AND CASE WHEN c.relkind = 'S'
                            THEN has_sequence_privilege(c.oid, 'SELECT,USAGE') ELSE false END",
            )
            .await?
            {
                s.opt(&f::SEQUENCE_USED, &[r.get(0)], r.get(1));
            }
        }
        other => anyhow::bail!("{} is not measured on PostgreSQL", other.name()),
    }
    Ok(s)
}

/// The query of the checkpoint and background writer counters, as nine columns: timed and
/// requested checkpoints, write and sync seconds, buffers written by the checkpointer, the
/// background writer and backends, the background writer's stops, buffers allocated.
/// PostgreSQL 17 moved the checkpointer's counters to `pg_stat_checkpointer` and backends'
/// writes to `pg_stat_io` (not read here: that column is NULL).
pub fn checkpoint_sql(version_num: i32) -> &'static str {
    if version_num >= 170000 {
        "SELECT c.num_timed::float8, c.num_requested::float8, (c.write_time / 1000)::float8,
                (c.sync_time / 1000)::float8, c.buffers_written::float8, b.buffers_clean::float8,
                NULL::float8, b.maxwritten_clean::float8, b.buffers_alloc::float8
         FROM pg_stat_checkpointer c, pg_stat_bgwriter b"
    } else {
        "SELECT checkpoints_timed::float8, checkpoints_req::float8,
                (checkpoint_write_time / 1000)::float8, (checkpoint_sync_time / 1000)::float8,
                buffers_checkpoint::float8, buffers_clean::float8, buffers_backend::float8,
                maxwritten_clean::float8, buffers_alloc::float8
         FROM pg_stat_bgwriter"
    }
}

/// Locks as (mode, granted, count), with every table-level mode present both granted and
/// awaited (zero when none), then any other mode found (advisory, predicate locks).
pub fn lock_series(found: &[(String, bool, f64)]) -> Vec<(String, &'static str, f64)> {
    let count = |mode: &str, granted: bool| {
        found
            .iter()
            .filter(|(m, g, _)| m == mode && *g == granted)
            .fold(0.0, |acc, (_, _, n)| acc + n)
    };
    let mut modes: Vec<String> = f::PG_LOCK_MODES.iter().map(|m| m.to_string()).collect();
    for (m, _, _) in found {
        if !modes.contains(m) {
            modes.push(m.clone());
        }
    }
    let mut out = Vec::new();
    for m in modes {
        for (granted, label) in [(true, "true"), (false, "false")] {
            out.push((m.clone(), label, count(&m, granted)));
        }
    }
    out
}

fn flag(b: Option<bool>) -> f64 {
    if b == Some(true) {
        1.0
    } else {
        0.0
    }
}

/// The key tables' schemas and names, as two arrays for `unnest`.
fn names(key_tables: &[TableRef]) -> (Vec<String>, Vec<String>) {
    key_tables
        .iter()
        .map(|t| (t.schema.clone(), t.name.clone()))
        .unzip()
}

/// The rows (schema and name first) of the key tables, as their model names, in the
/// configured order.
fn by_key_table<'a>(key_tables: &[TableRef], rows: &'a [Row]) -> Vec<(String, &'a Row)> {
    key_tables
        .iter()
        .filter_map(|t| {
            rows.iter()
                .find(|r| r.get::<_, &str>(0) == t.schema && r.get::<_, &str>(1) == t.name)
                .map(|r| (t.to_string(), r))
        })
        .collect()
}

async fn one(c: &PgConn, sql: &str) -> Result<Row> {
    c.client().query_one(sql, &[]).await.map_err(db_err)
}

async fn all(c: &PgConn, sql: &str) -> Result<Vec<Row>> {
    c.client().query(sql, &[]).await.map_err(db_err)
}

/// A probe's or a custom metric's rows, every value as text.
pub async fn rows(c: &PgConn, sql: &str) -> Result<Rows> {
    let msgs = c.client().simple_query(sql).await.map_err(db_err)?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| (col.name().to_string(), r.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_come_from_the_view_of_the_version() {
        let v15 = checkpoint_sql(150020);
        assert!(v15.contains("FROM pg_stat_bgwriter") && v15.contains("checkpoints_timed"));
        assert!(!v15.contains("pg_stat_checkpointer"));
        let v17 = checkpoint_sql(170000);
        assert!(v17.contains("pg_stat_checkpointer") && v17.contains("num_timed"));
        assert!(
            !v17.contains("checkpoints_timed") && !v17.contains("buffers_backend"),
            "columns PostgreSQL 17 removed from pg_stat_bgwriter"
        );
        // Nine columns each, in the same order.
        for sql in [v15, v17] {
            let select = sql.split(" FROM ").next().unwrap();
            assert_eq!(select.matches("::float8").count(), 9, "{sql}");
        }
    }

    #[test]
    fn every_lock_mode_is_present_granted_and_awaited() {
        let found = vec![
            ("AccessShareLock".to_string(), true, 3.0),
            ("AccessExclusiveLock".to_string(), false, 1.0),
            ("SIReadLock".to_string(), true, 2.0),
        ];
        let s = lock_series(&found);
        assert_eq!(s.len(), 2 * 9);
        assert!(s.contains(&("AccessShareLock".into(), "true", 3.0)));
        assert!(s.contains(&("AccessShareLock".into(), "false", 0.0)));
        assert!(s.contains(&("AccessExclusiveLock".into(), "false", 1.0)));
        assert!(s.contains(&("SIReadLock".into(), "true", 2.0)));
        let (_, _, none) = &lock_series(&[])[0];
        assert!(none.is_sign_positive(), "0, not -0");
    }
}
