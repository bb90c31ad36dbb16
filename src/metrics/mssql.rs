//! What one round of the exporter asks a SQL Server: the standard families from the
//! catalogue and the dynamic management views (one row of sizes and settings, user sessions
//! by state from `sys.dm_exec_sessions`, each key table's pages and rows from
//! `sys.dm_db_partition_stats`), then the probe and custom queries, every value read as text.
//! The families themselves (names, help, types) are the core's (`metrics/mod.rs`).

use anyhow::{anyhow, Result};

use super::{zero_states, Round, Rows};
use crate::catalog::TableRef;
use crate::engine::mssql::nstring;
use crate::engine::mssql::{quoted_table, MsConn};
use crate::engine::Driver;

/// Column `i` of a row, as a number.
fn number(row: &[(String, Option<String>)], i: usize) -> Option<f64> {
    row.get(i)
        .and_then(|(_, v)| v.as_ref())
        .and_then(|s| s.parse::<f64>().ok())
}

/// The standard families' values.
pub async fn round(c: &MsConn, key_tables: &[TableRef]) -> Result<Round> {
    let version = c.server_version().await?;
    let rows = c
        .named_rows(
            "SELECT DB_NAME() AS db,
                    CAST((SELECT SUM(CAST(size AS bigint)) * 8192 FROM sys.database_files) AS float) AS size,
                    CAST(@@MAX_CONNECTIONS AS float) AS maxc,
                    CAST(DATEDIFF_BIG(SECOND, '19700101', (SELECT sqlserver_start_time FROM sys.dm_os_sys_info)) AS float) AS started,
                    CAST((SELECT COALESCE(MAX(DATEDIFF(SECOND, transaction_begin_time, SYSDATETIME())), 0)
                          FROM sys.dm_tran_active_transactions) AS float) AS longest",
        )
        .await?;
    let first = rows.first().ok_or_else(|| anyhow!("no row"))?;
    let f = |i: usize| number(first, i);
    let mut r = Round {
        version,
        database: first
            .first()
            .and_then(|(_, v)| v.clone())
            .unwrap_or_default(),
        database_size: f(1),
        connections_max: f(2),
        start_time: f(3),
        longest_transaction: f(4),
        ..Round::default()
    };
    let states = c
        .named_rows(
            "SELECT CASE WHEN s.status = 'running' THEN 'active'
                         WHEN s.status = 'sleeping' AND s.open_transaction_count > 0 THEN 'idle_in_transaction'
                         WHEN s.status = 'sleeping' THEN 'idle' ELSE 'other' END AS state,
                    CAST(COUNT(*) AS float) AS n
             FROM sys.dm_exec_sessions s WHERE s.is_user_process = 1
             GROUP BY CASE WHEN s.status = 'running' THEN 'active'
                         WHEN s.status = 'sleeping' AND s.open_transaction_count > 0 THEN 'idle_in_transaction'
                         WHEN s.status = 'sleeping' THEN 'idle' ELSE 'other' END",
        )
        .await?;
    r.connections = zero_states(
        states
            .iter()
            .map(|row| {
                (
                    row.first().and_then(|(_, v)| v.clone()).unwrap_or_default(),
                    number(row, 1).unwrap_or(0.0),
                )
            })
            .collect(),
    );
    for t in key_tables {
        let sql = format!(
            "SELECT CAST(SUM(reserved_page_count) * 8192 AS float), CAST(SUM(CASE WHEN index_id IN (0, 1) THEN row_count ELSE 0 END) AS float)
             FROM sys.dm_db_partition_stats WHERE object_id = OBJECT_ID({})",
            nstring(&quoted_table(t))
        );
        let rows = c.named_rows(&sql).await?;
        if let Some(row) = rows.first() {
            if let (Some(size), Some(n)) = (number(row, 0), number(row, 1)) {
                r.tables.push((t.to_string(), size, n));
            }
        }
    }
    Ok(r)
}

/// A probe's or a custom metric's rows, every value as text.
pub async fn rows(c: &MsConn, sql: &str) -> Result<Rows> {
    c.named_rows(sql).await
}
