//! What the exporter asks a SQL Server, one probe per family group: the server and database
//! from the catalogue, sessions by state from `sys.dm_exec_sessions` (only with `VIEW SERVER
//! STATE`), transactions, deadlocks and lock waits from `sys.dm_os_performance_counters`,
//! locks by mode from `sys.dm_tran_locks`, each key table's pages, rows and use from the
//! partition, index usage and operational statistics, and the headroom of identity columns
//! and sequences. No SQL Server runs where the tests do: the statements and the reading of
//! their rows are unit-tested here. The families themselves are `families.rs`'s.

use anyhow::{anyhow, Result};

use super::families as f;
use super::{zero_states, Group, Rows, Samples};
use crate::catalog::TableRef;
use crate::engine::mssql::nstring;
use crate::engine::mssql::{quoted_table, MsConn};

/// The groups measured on SQL Server, in the order a round asks them.
pub const GROUPS: &[Group] = &[
    Group::Server,
    Group::DatabaseSize,
    Group::Counters,
    Group::Sessions,
    Group::Locks,
    Group::TableStats,
    Group::TableSizes,
    Group::Sequences,
];

pub const SERVER_SQL: &str =
    "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version,
        CAST(@@MAX_CONNECTIONS AS float) AS maxc";

/// The start time, in UTC (`sqlserver_start_time` is the server's local time). Needs VIEW
/// SERVER STATE: without it the start time alone is absent.
pub const START_SQL: &str = "SELECT CAST(DATEDIFF_BIG(SECOND, '19700101',
            DATEADD(SECOND, DATEDIFF(SECOND, SYSDATETIME(), SYSUTCDATETIME()), sqlserver_start_time)) AS float) AS started
     FROM sys.dm_os_sys_info";

pub const DATABASE_SIZE_SQL: &str = "SELECT DB_NAME() AS db,
        CAST(SUM(CAST(size AS bigint)) * 8192 AS float) AS size FROM sys.database_files";

pub const SESSIONS_SQL: &str = "SELECT CASE WHEN s.status = 'running' THEN 'active'
             WHEN s.status = 'sleeping' AND s.open_transaction_count > 0 THEN 'idle_in_transaction'
             WHEN s.status = 'sleeping' THEN 'idle' ELSE 'other' END AS state,
        CAST(COUNT(*) AS float) AS n
 FROM sys.dm_exec_sessions s WHERE s.is_user_process = 1
 GROUP BY CASE WHEN s.status = 'running' THEN 'active'
             WHEN s.status = 'sleeping' AND s.open_transaction_count > 0 THEN 'idle_in_transaction'
             WHEN s.status = 'sleeping' THEN 'idle' ELSE 'other' END";

/// The oldest transaction of a session other than this one.
pub const LONGEST_SQL: &str = "SELECT CAST(COALESCE(MAX(DATEDIFF(SECOND, a.transaction_begin_time, SYSDATETIME())), 0) AS float) AS longest
 FROM sys.dm_tran_active_transactions a
 JOIN sys.dm_tran_session_transactions s ON s.transaction_id = a.transaction_id
 WHERE s.session_id <> @@SPID";

/// Cumulative performance counters, despite their `/sec` names: per-database transactions,
/// and the server's deadlocks and lock waits (`_Total` of every lock type).
pub const COUNTERS_SQL: &str =
    "SELECT RTRIM(counter_name) AS counter, RTRIM(instance_name) AS instance,
        CAST(cntr_value AS float) AS value
 FROM sys.dm_os_performance_counters
 WHERE (object_name LIKE '%:Databases%' AND counter_name = 'Transactions/sec'
        AND instance_name NOT IN ('_Total', 'mssqlsystemresource'))
    OR (object_name LIKE '%:Locks%' AND instance_name = '_Total'
        AND counter_name IN ('Number of Deadlocks/sec', 'Lock Waits/sec', 'Lock Wait Time (ms)'))";

pub const LOCKS_SQL: &str =
    "SELECT request_mode AS mode, request_status AS status, CAST(COUNT(*) AS float) AS n
 FROM sys.dm_tran_locks GROUP BY request_mode, request_status";

/// Identity columns (their type's range; never used: no last value) and sequences that do
/// not cycle.
pub const SEQUENCES_SQL: &str = "SELECT s.name + '.' + t.name + '.' + ic.name AS seq,
        CAST(ic.last_value AS float)
          / CASE TYPE_NAME(ic.system_type_id) WHEN 'tinyint' THEN 255.0 WHEN 'smallint' THEN 32767.0
                 WHEN 'int' THEN 2147483647.0 WHEN 'bigint' THEN 9223372036854775807.0
                 ELSE POWER(CAST(10 AS float), ic.precision) - 1 END AS used
 FROM sys.identity_columns ic
 JOIN sys.tables t ON t.object_id = ic.object_id
 JOIN sys.schemas s ON s.schema_id = t.schema_id
 WHERE ic.last_value IS NOT NULL
 UNION ALL
 SELECT s.name + '.' + q.name,
        CASE WHEN CAST(q.increment AS float) > 0
             THEN CAST(q.current_value AS float) - CAST(q.minimum_value AS float)
             ELSE CAST(q.maximum_value AS float) - CAST(q.current_value AS float) END
          / NULLIF(CAST(q.maximum_value AS float) - CAST(q.minimum_value AS float), 0)
 FROM sys.sequences q JOIN sys.schemas s ON s.schema_id = q.schema_id
 WHERE q.is_cycling = 0";

/// A key table's pages and rows (what a lock on the table does not hide).
pub fn table_size_sql(t: &TableRef) -> String {
    format!(
        "SELECT CAST(SUM(reserved_page_count) * 8192 AS float) AS size,
                CAST(SUM(CASE WHEN index_id IN (0, 1) THEN row_count ELSE 0 END) AS float) AS n
         FROM sys.dm_db_partition_stats WHERE object_id = OBJECT_ID({})",
        nstring(&quoted_table(t))
    )
}

/// A key table's use since the server started: whole-table scans (of the heap or the
/// clustered index), index seeks, lookups and scans, and rows written (leaf level of the
/// heap or clustered index). `id` is NULL when the table does not exist.
pub fn table_stats_sql(t: &TableRef) -> String {
    let name = nstring(&quoted_table(t));
    format!(
        "SELECT OBJECT_ID({name}) AS id,
            (SELECT CAST(COALESCE(SUM(CASE WHEN u.index_id IN (0, 1) THEN u.user_scans ELSE 0 END), 0) AS float)
               FROM sys.dm_db_index_usage_stats u
              WHERE u.database_id = DB_ID() AND u.object_id = OBJECT_ID({name})) AS seq_scans,
            (SELECT CAST(COALESCE(SUM(u.user_seeks + u.user_lookups
                                      + CASE WHEN u.index_id > 1 THEN u.user_scans ELSE 0 END), 0) AS float)
               FROM sys.dm_db_index_usage_stats u
              WHERE u.database_id = DB_ID() AND u.object_id = OBJECT_ID({name})) AS index_scans,
            (SELECT CAST(COALESCE(SUM(o.leaf_insert_count), 0) AS float)
               FROM sys.dm_db_index_operational_stats(DB_ID(), OBJECT_ID({name}), NULL, NULL) o
              WHERE o.object_id = OBJECT_ID({name}) AND o.index_id IN (0, 1)) AS inserted,
            (SELECT CAST(COALESCE(SUM(o.leaf_update_count), 0) AS float)
               FROM sys.dm_db_index_operational_stats(DB_ID(), OBJECT_ID({name}), NULL, NULL) o
              WHERE o.object_id = OBJECT_ID({name}) AND o.index_id IN (0, 1)) AS updated,
            (SELECT CAST(COALESCE(SUM(o.leaf_delete_count), 0) AS float)
               FROM sys.dm_db_index_operational_stats(DB_ID(), OBJECT_ID({name}), NULL, NULL) o
              WHERE o.object_id = OBJECT_ID({name}) AND o.index_id IN (0, 1)) AS deleted"
    )
}

/// Column `i` of a row, as a number.
fn number(row: &[(String, Option<String>)], i: usize) -> Option<f64> {
    row.get(i)
        .and_then(|(_, v)| v.as_ref())
        .and_then(|s| s.trim().parse::<f64>().ok())
}

fn text(row: &[(String, Option<String>)], i: usize) -> Option<&str> {
    row.get(i).and_then(|(_, v)| v.as_deref())
}

/// One group's probe.
pub async fn probe(c: &MsConn, group: Group, key_tables: &[TableRef]) -> Result<Samples> {
    let mut s = Samples::default();
    match group {
        Group::Server => {
            let rows = c.named_rows(SERVER_SQL).await?;
            let row = rows.first().ok_or_else(|| anyhow!("no row"))?;
            s.push(&f::SERVER_INFO, &["mssql", text(row, 0).unwrap_or("")], 1.0);
            s.opt(&f::CONNECTIONS_MAX, &[], number(row, 1));
            if let Ok(rows) = c.named_rows(START_SQL).await {
                s.opt(
                    &f::SERVER_START_TIME,
                    &[],
                    rows.first().and_then(|r| number(r, 0)),
                );
            }
        }
        Group::DatabaseSize => {
            let rows = c.named_rows(DATABASE_SIZE_SQL).await?;
            let row = rows.first().ok_or_else(|| anyhow!("no row"))?;
            s.opt(
                &f::DATABASE_SIZE,
                &[text(row, 0).unwrap_or("")],
                number(row, 1),
            );
        }
        Group::Counters => counter_samples(&c.named_rows(COUNTERS_SQL).await?, &mut s),
        Group::Sessions => {
            let states = c.named_rows(SESSIONS_SQL).await?;
            let found = states
                .iter()
                .map(|r| {
                    (
                        text(r, 0).unwrap_or_default().to_string(),
                        number(r, 1).unwrap_or(0.0),
                    )
                })
                .collect();
            for (state, n) in zero_states(found) {
                s.push(&f::CONNECTIONS, &[&state], n);
            }
            let rows = c.named_rows(LONGEST_SQL).await?;
            s.opt(
                &f::LONGEST_TRANSACTION,
                &[],
                rows.first().and_then(|r| number(r, 0)),
            );
        }
        Group::Locks => lock_samples(&c.named_rows(LOCKS_SQL).await?, &mut s),
        Group::TableStats => {
            for t in key_tables {
                let rows = c.named_rows(&table_stats_sql(t)).await?;
                let Some(row) = rows.first().filter(|r| number(r, 0).is_some()) else {
                    continue;
                };
                let model = t.to_string();
                s.opt(&f::TABLE_SCANS, &[&model, "seq"], number(row, 1));
                s.opt(&f::TABLE_SCANS, &[&model, "index"], number(row, 2));
                s.opt(&f::TABLE_ROWS_WRITTEN, &[&model, "insert"], number(row, 3));
                s.opt(&f::TABLE_ROWS_WRITTEN, &[&model, "update"], number(row, 4));
                s.opt(&f::TABLE_ROWS_WRITTEN, &[&model, "delete"], number(row, 5));
            }
        }
        Group::TableSizes => {
            for t in key_tables {
                let rows = c.named_rows(&table_size_sql(t)).await?;
                if let Some(row) = rows.first() {
                    if let (Some(size), Some(n)) = (number(row, 0), number(row, 1)) {
                        let model = t.to_string();
                        s.push(&f::TABLE_SIZE, &[&model], size);
                        s.push(&f::TABLE_ROWS, &[&model], n);
                    }
                }
            }
        }
        Group::Sequences => {
            for row in c.named_rows(SEQUENCES_SQL).await? {
                if let Some(name) = text(&row, 0) {
                    s.opt(&f::SEQUENCE_USED, &[name], number(&row, 1));
                }
            }
        }
        other => anyhow::bail!("{} is not measured on SQL Server", other.name()),
    }
    Ok(s)
}

/// The performance counters' rows (counter, instance, value) as families.
pub fn counter_samples(rows: &Rows, s: &mut Samples) {
    for row in rows {
        let (Some(counter), Some(instance), Some(value)) =
            (text(row, 0), text(row, 1), number(row, 2))
        else {
            continue;
        };
        match counter {
            "Transactions/sec" => s.push(&f::TRANSACTIONS, &[instance, "started"], value),
            "Number of Deadlocks/sec" => s.push(&f::DEADLOCKS, &[""], value),
            "Lock Waits/sec" => s.push(&f::LOCK_WAITS, &[], value),
            "Lock Wait Time (ms)" => s.push(&f::LOCK_WAIT_TIME, &[], value / 1000.0),
            _ => {}
        }
    }
}

/// `sys.dm_tran_locks` counted by mode and status as families: GRANT is held, WAIT and
/// CONVERT are awaited.
pub fn lock_samples(rows: &Rows, s: &mut Samples) {
    let mut waiting = 0.0;
    let mut counts: Vec<(String, &'static str, f64)> = Vec::new();
    for row in rows {
        let (Some(mode), Some(status), Some(n)) = (text(row, 0), text(row, 1), number(row, 2))
        else {
            continue;
        };
        let granted = if status.eq_ignore_ascii_case("GRANT") {
            "true"
        } else {
            waiting += n;
            "false"
        };
        match counts
            .iter_mut()
            .find(|(m, g, _)| m == mode && *g == granted)
        {
            Some(c) => c.2 += n,
            None => counts.push((mode.to_string(), granted, n)),
        }
    }
    for (mode, granted, n) in counts {
        s.push(&f::LOCKS, &[&mode, granted], n);
    }
    s.push(&f::LOCKS_WAITING, &[], waiting);
}

/// A probe's or a custom metric's rows, every value as text.
pub async fn rows(c: &MsConn, sql: &str) -> Result<Rows> {
    c.named_rows(sql).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        cells
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    fn value(s: &Samples, name: &str, labels: &[&str]) -> Option<f64> {
        s.0.iter()
            .find(|x| x.family.name == name && x.labels == labels)
            .map(|x| x.value)
    }

    #[test]
    fn performance_counters_become_families() {
        let rows = vec![
            row(&[
                ("counter", Some("Transactions/sec")),
                ("instance", Some("mairie")),
                ("value", Some("1234")),
            ]),
            row(&[
                ("counter", Some("Number of Deadlocks/sec")),
                ("instance", Some("_Total")),
                ("value", Some("3")),
            ]),
            row(&[
                ("counter", Some("Lock Waits/sec")),
                ("instance", Some("_Total")),
                ("value", Some("40")),
            ]),
            row(&[
                ("counter", Some("Lock Wait Time (ms)")),
                ("instance", Some("_Total")),
                ("value", Some("2500")),
            ]),
            row(&[
                ("counter", Some("Something else")),
                ("instance", Some("_Total")),
                ("value", Some("1")),
            ]),
        ];
        let mut s = Samples::default();
        counter_samples(&rows, &mut s);
        assert_eq!(s.0.len(), 4);
        assert_eq!(
            value(&s, "mairie_dba_transactions_total", &["mairie", "started"]),
            Some(1234.0)
        );
        assert_eq!(value(&s, "mairie_dba_deadlocks_total", &[""]), Some(3.0));
        assert_eq!(value(&s, "mairie_dba_lock_waits_total", &[]), Some(40.0));
        assert_eq!(
            value(&s, "mairie_dba_lock_wait_seconds_total", &[]),
            Some(2.5)
        );
    }

    #[test]
    fn locks_by_mode_and_waits() {
        let rows = vec![
            row(&[
                ("mode", Some("S")),
                ("status", Some("GRANT")),
                ("n", Some("5")),
            ]),
            row(&[
                ("mode", Some("X")),
                ("status", Some("WAIT")),
                ("n", Some("1")),
            ]),
            row(&[
                ("mode", Some("X")),
                ("status", Some("CONVERT")),
                ("n", Some("1")),
            ]),
        ];
        let mut s = Samples::default();
        lock_samples(&rows, &mut s);
        assert_eq!(value(&s, "mairie_dba_locks", &["S", "true"]), Some(5.0));
        assert_eq!(value(&s, "mairie_dba_locks", &["X", "false"]), Some(2.0));
        assert_eq!(value(&s, "mairie_dba_locks_waiting", &[]), Some(2.0));
    }

    #[test]
    fn statements_read_the_right_views() {
        assert!(COUNTERS_SQL.contains("sys.dm_os_performance_counters"));
        for c in [
            "'Transactions/sec'",
            "'Number of Deadlocks/sec'",
            "'Lock Waits/sec'",
            "'Lock Wait Time (ms)'",
        ] {
            assert!(COUNTERS_SQL.contains(c), "{c}");
        }
        assert!(START_SQL.contains("SYSUTCDATETIME()"), "start time in UTC");
        assert!(LONGEST_SQL.contains("<> @@SPID"), "not our own transaction");
        assert!(
            SEQUENCES_SQL.contains("sys.identity_columns")
                && SEQUENCES_SQL.contains("sys.sequences")
                && SEQUENCES_SQL.contains("is_cycling = 0")
        );
        let t = TableRef::new("metier", "cit'oyens");
        let stats = table_stats_sql(&t);
        assert!(
            stats.contains("OBJECT_ID(N'[metier].[cit''oyens]')"),
            "{stats}"
        );
        assert!(
            stats.contains("o.object_id = OBJECT_ID("),
            "a missing table (NULL object id) must not read every table's statistics"
        );
        assert!(table_size_sql(&t).contains("N'[metier].[cit''oyens]'"));
    }
}
