//! How SQL Server measures each check of the table (`health/mod.rs`): the dynamic
//! management views (`sys.dm_exec_sessions`, `sys.dm_exec_requests`,
//! `sys.dm_os_performance_counters`, `sys.dm_hadr_database_replica_states`),
//! `sys.database_files` and the statistics dates. Vacuum and wraparound are PostgreSQL's
//! concerns and do not apply.

use anyhow::Result;

use super::{human_duration, pct, round_trip, Answer, Check, Probe};
use crate::catalog::TableRef;
use crate::engine::mssql::{self, MsConn};
use crate::engine::Driver;

/// Measures one check on the connection; every arm says how, or that it does not apply.
pub(super) async fn measure(c: &MsConn, check: Check, key_tables: &[TableRef]) -> Result<Answer> {
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
                if let Some(b) = c.scalar_i64(&sql).await? {
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
        // Vacuum and transaction ID wraparound are PostgreSQL's: nothing to watch here.
        Check::Wraparound | Check::Vacuum => return Ok(Answer::DoesNotApply),
        // Read from the backup directory, whatever the engine (`health/mod.rs`).
        Check::BackupDirSpace | Check::BackupAge => return Ok(Answer::DoesNotApply),
    };
    Ok(Answer::Probe(probe))
}
