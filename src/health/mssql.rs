//! How SQL Server measures each check of the table (`health/mod.rs`): the dynamic
//! management views (`sys.dm_exec_sessions`, `sys.dm_exec_requests`,
//! `sys.dm_os_performance_counters`, `sys.dm_hadr_database_replica_states`),
//! `sys.database_files` and the statistics dates; `sys.sequences` and
//! `sys.identity_columns` for exhaustion. Vacuum and wraparound are PostgreSQL's concerns
//! and do not apply.
//!
//! Without `VIEW SERVER STATE` a login sees only its own sessions and requests in the
//! `sys.dm_exec_*` views and may not read the other server-wide views: the checks that read
//! them ([`reads_server_state`]) are not run then.

use anyhow::{Context, Result};

use super::{
    human_duration, pct, round_trip, unless_all_seen, Answer, Check, Probe, Reading, Sight,
};
use crate::catalog::TableRef;
use crate::engine::mssql::{self, MsConn};
use crate::engine::Driver;

/// Whether a check reads the server's state (`sys.dm_exec_*`, `sys.dm_os_*`,
/// `sys.dm_hadr_*`), which shows only the login's own sessions, or nothing, without
/// `VIEW SERVER STATE`.
fn reads_server_state(check: Check) -> bool {
    match check {
        Check::Version
        | Check::Connections
        | Check::LongQueries
        | Check::IdleInTransaction
        | Check::Locks
        | Check::CacheHit
        | Check::Replication => true,
        Check::Connectivity
        | Check::DatabaseSize
        | Check::TableSizes
        | Check::Wraparound
        | Check::Sequences
        | Check::Vacuum
        | Check::Analyze
        | Check::Memory
        | Check::Fragmentation
        | Check::HitRate
        | Check::Evictions
        | Check::RejectedConnections
        | Check::Persistence
        | Check::BackupDirSpace
        | Check::BackupAge
        | Check::WalArchiving
        | Check::WalReadyFiles => false,
    }
}

/// Sequence exhaustion: of the non-cycling sequences and the identity columns (integer or
/// decimal) of the database, the one that has used the most of its range, in %, with the
/// number looked at. One row: name, percentage, count (no row: there are none).
pub(crate) const SEQUENCES_SQL: &str = "
WITH used AS (
    SELECT N'sequence ' + QUOTENAME(SCHEMA_NAME(q.schema_id)) + N'.' + QUOTENAME(q.name) AS name,
           100.0 * CASE WHEN CAST(q.increment AS float) > 0
                        THEN CAST(COALESCE(q.current_value, q.start_value) AS float) - CAST(q.minimum_value AS float)
                        ELSE CAST(q.maximum_value AS float) - CAST(COALESCE(q.current_value, q.start_value) AS float) END
                 / NULLIF(CAST(q.maximum_value AS float) - CAST(q.minimum_value AS float), 0) AS pct
    FROM sys.sequences q
    WHERE q.is_cycling = 0
    UNION ALL
    SELECT N'identity ' + QUOTENAME(SCHEMA_NAME(t.schema_id)) + N'.' + QUOTENAME(t.name) + N'.' + QUOTENAME(ic.name)
               + N' ' + TYPE_NAME(ic.system_type_id),
           100.0 * CAST(ic.last_value AS float)
                 / CASE TYPE_NAME(ic.system_type_id)
                       WHEN N'tinyint' THEN 255.0
                       WHEN N'smallint' THEN 32767.0
                       WHEN N'int' THEN 2147483647.0
                       WHEN N'bigint' THEN 9223372036854775807.0
                       ELSE POWER(CAST(10 AS float), ic.precision) - 1 END
    FROM sys.identity_columns ic
    JOIN sys.tables t ON t.object_id = ic.object_id
    WHERE t.is_ms_shipped = 0 AND ic.last_value IS NOT NULL AND CAST(ic.increment_value AS float) > 0
)
SELECT TOP (1) name, CAST(CASE WHEN pct > 100 THEN 100 WHEN pct < 0 THEN 0 ELSE pct END AS float) AS pct,
       CAST(COUNT(*) OVER () AS bigint) AS total
FROM used
ORDER BY pct DESC";

/// Measures one check on the connection; every arm says how, or that it does not apply.
pub(super) async fn measure(
    c: &MsConn,
    check: Check,
    key_tables: &[TableRef],
    sight: &Sight,
) -> Result<Answer> {
    if reads_server_state(check) {
        if let Some(blind) = unless_all_seen(sight) {
            return Ok(blind);
        }
    }
    let num = |sql: &'static str| async move {
        Ok::<f64, anyhow::Error>(c.scalar_i64(sql).await?.unwrap_or(0) as f64)
    };
    let probe = match check {
        Check::Connectivity => {
            round_trip(async { c.scalar_i64("SELECT 1").await.map(drop) }).await?
        }
        Check::Version => {
            let v = c.server_version().await?;
            let up = num("SELECT CAST(DATEDIFF(SECOND, sqlserver_start_time, SYSDATETIME()) AS bigint) FROM sys.dm_os_sys_info").await?;
            Probe::new(
                check,
                up,
                format!("SQL Server {v}, up {}", human_duration(up)),
            )
        }
        Check::Connections => {
            let used = num("SELECT CAST(COUNT(*) AS bigint) FROM sys.dm_exec_sessions WHERE is_user_process = 1").await?;
            let max = num("SELECT CAST(@@MAX_CONNECTIONS AS bigint)").await?;
            Probe::new(
                check,
                pct(used, max),
                format!("{used} of {max} connections in use"),
            )
        }
        Check::LongQueries => {
            let ms = num(
                "SELECT CAST(COALESCE(MAX(r.total_elapsed_time), 0) AS bigint) FROM sys.dm_exec_requests r
                 JOIN sys.dm_exec_sessions s ON s.session_id = r.session_id
                 WHERE s.is_user_process = 1 AND r.session_id <> @@SPID",
            )
            .await?;
            Probe::new(
                check,
                ms / 1000.0,
                format!("longest running request {}", human_duration(ms / 1000.0)),
            )
        }
        Check::IdleInTransaction => {
            let s = num(
                "SELECT CAST(COALESCE(MAX(DATEDIFF(SECOND, last_request_end_time, GETDATE())), 0) AS bigint)
                 FROM sys.dm_exec_sessions WHERE status = 'sleeping' AND open_transaction_count > 0",
            )
            .await?;
            Probe::new(
                check,
                s,
                format!(
                    "longest session idle in a transaction: {}",
                    human_duration(s)
                ),
            )
        }
        Check::Locks => {
            let n = num("SELECT CAST(COUNT(*) AS bigint) FROM sys.dm_exec_requests WHERE blocking_session_id <> 0").await?;
            Probe::new(check, n, format!("{n} blocked request(s)"))
        }
        Check::DatabaseSize => {
            let b = num(
                "SELECT CAST(SUM(CAST(size AS bigint)) * 8192 AS bigint) FROM sys.database_files",
            )
            .await?;
            Probe::new(
                check,
                b,
                format!("database files: {}", indicatif::HumanBytes(b as u64)),
            )
        }
        Check::TableSizes => {
            let mut total = 0.0;
            let mut parts = Vec::new();
            for t in key_tables {
                let sql = format!(
                    "SELECT CAST(SUM(reserved_page_count) * 8192 AS bigint) FROM sys.dm_db_partition_stats WHERE object_id = OBJECT_ID({})",
                    mssql::nstring(&mssql::quoted_table(t))
                );
                if let Some(b) = c
                    .scalar_i64(&sql)
                    .await
                    .context(Reading(format!("table {t}")))?
                {
                    total += b as f64;
                    parts.push(format!("{t} {}", indicatif::HumanBytes(b as u64)));
                }
            }
            if parts.is_empty() {
                Probe::note(check, "none of the key tables exists in this database")
            } else {
                Probe::new(check, total, parts.join(", "))
            }
        }
        Check::CacheHit => {
            let ratio = num(
                "SELECT CAST(100.0 * a.cntr_value / NULLIF(b.cntr_value, 0) AS bigint)
                 FROM sys.dm_os_performance_counters a JOIN sys.dm_os_performance_counters b
                   ON b.object_name = a.object_name AND b.counter_name = 'Buffer cache hit ratio base'
                 WHERE a.counter_name = 'Buffer cache hit ratio'",
            )
            .await?;
            Probe::new(check, ratio, format!("buffer cache hit ratio {ratio}%"))
        }
        Check::Replication => {
            let n = num("SELECT CAST(COUNT(*) AS bigint) FROM sys.dm_hadr_database_replica_states WHERE database_id = DB_ID()").await?;
            if n == 0.0 {
                Probe::note(check, "not in an availability group")
            } else {
                let lag = num(
                    "SELECT CAST(COALESCE(MAX(DATEDIFF(SECOND, last_commit_time, SYSDATETIME())), 0) AS bigint)
                     FROM sys.dm_hadr_database_replica_states WHERE database_id = DB_ID() AND is_local = 0",
                )
                .await?;
                Probe::new(
                    check,
                    lag,
                    format!(
                        "availability group, secondaries {} behind",
                        human_duration(lag)
                    ),
                )
            }
        }
        Check::Analyze => {
            let days = num(
                "SELECT CAST(COALESCE(MAX(DATEDIFF(DAY, STATS_DATE(s.object_id, s.stats_id), SYSDATETIME())), 0) AS bigint)
                 FROM sys.stats s JOIN sys.tables t ON t.object_id = s.object_id WHERE t.is_ms_shipped = 0",
            )
            .await?;
            Probe::new(
                check,
                days,
                format!("oldest statistics updated {days} days ago"),
            )
        }
        Check::Sequences => {
            let rows = c.text_rows(SEQUENCES_SQL).await?;
            let cell = |i: usize| rows.first().and_then(|r| r.get(i).cloned().flatten());
            let p = cell(1).and_then(|v| v.parse::<f64>().ok());
            match (cell(0), p) {
                (Some(name), Some(p)) => {
                    let p = (p * 10.0).round() / 10.0;
                    let n = cell(2).unwrap_or_default();
                    Probe::new(
                        check,
                        p,
                        format!("{name} has used {p}% of its range; {n} sequence(s) and identity column(s)"),
                    )
                }
                _ => Probe::new(
                    check,
                    0.0,
                    "no sequence or used identity column in this database",
                ),
            }
        }
        Check::Wraparound => {
            return Ok(Answer::DoesNotApply(
                "SQL Server has no transaction ID wraparound to watch",
            ))
        }
        Check::Vacuum => {
            return Ok(Answer::DoesNotApply(
                "SQL Server cleans up row versions itself: there is no vacuum",
            ))
        }
        // A key-value store's memory, hit rate and snapshots (`health/redis.rs`).
        Check::Memory
        | Check::Fragmentation
        | Check::HitRate
        | Check::Evictions
        | Check::RejectedConnections
        | Check::Persistence => {
            return Ok(Answer::DoesNotApply(
                "Redis's (memory limit, key hit rate, snapshots)",
            ))
        }
        // Read from the backup directory, whatever the engine (`health/mod.rs`).
        Check::BackupDirSpace | Check::BackupAge => {
            return Ok(Answer::DoesNotApply("read from the backup directory"))
        }
        // Point-in-time recovery is PostgreSQL's.
        Check::WalArchiving | Check::WalReadyFiles => {
            return Ok(Answer::DoesNotApply(
                "WAL archiving is PostgreSQL's (a `pitr:` section)",
            ))
        }
    };
    Ok(Answer::Probe(probe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequences_query_covers_sequences_and_identity_columns_against_their_type() {
        let sql = SEQUENCES_SQL;
        // Both kinds, cycling sequences left out (they never run out, they wrap).
        assert!(sql.contains("FROM sys.sequences q"), "{sql}");
        assert!(sql.contains("WHERE q.is_cycling = 0"), "{sql}");
        assert!(sql.contains("FROM sys.identity_columns ic"), "{sql}");
        // sql_variant values are cast before arithmetic; a never-used sequence counts
        // from its start value.
        assert!(sql.contains("CAST(COALESCE(q.current_value, q.start_value) AS float)"));
        assert!(sql.contains("CAST(ic.last_value AS float)"));
        // A descending sequence has used what lies between its maximum and its value.
        assert!(sql.contains("ELSE CAST(q.maximum_value AS float) - CAST(COALESCE("));
        // Identity columns against their type's maximum, decimal by its precision.
        for (ty, max) in [
            ("tinyint", "255.0"),
            ("smallint", "32767.0"),
            ("int", "2147483647.0"),
            ("bigint", "9223372036854775807.0"),
        ] {
            assert!(sql.contains(&format!("WHEN N'{ty}' THEN {max}")), "{ty}");
        }
        assert!(sql.contains("ELSE POWER(CAST(10 AS float), ic.precision) - 1 END"));
        // One row: the worst, clamped to 0..100, with how many were looked at.
        assert!(sql.contains("SELECT TOP (1) name,"));
        assert!(sql.contains("ORDER BY pct DESC"));
        assert!(sql.contains("COUNT(*) OVER ()"));
        // Names are quoted the server's way.
        assert!(sql.contains("QUOTENAME(SCHEMA_NAME(q.schema_id))"));
        // Balanced parentheses: the text is one statement the server can parse.
        assert_eq!(sql.matches('(').count(), sql.matches(')').count());
    }

    #[test]
    fn server_state_checks_are_the_dmv_ones() {
        let reading: Vec<&str> = super::super::CHECKS
            .iter()
            .filter(|d| reads_server_state(d.check))
            .map(|d| d.name)
            .collect();
        assert_eq!(
            reading,
            [
                "version",
                "connections",
                "long_queries",
                "idle_in_transaction",
                "locks",
                "cache_hit",
                "replication"
            ]
        );
    }
}
