//! What the exporter asks a MySQL or MariaDB server, one probe per family group: the server
//! and its status counters (`SHOW GLOBAL STATUS`: transactions, deadlocks, threads, InnoDB
//! row lock waits), sessions by state from the process list joined to InnoDB's open
//! transactions (only with `PROCESS`), the replica status, the key tables from
//! `information_schema` (sizes) and `performance_schema` (rows read and written), and the
//! AUTO_INCREMENT headroom of every table. The families themselves are `families.rs`'s.

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use super::families as f;
use super::{zero_states, Group, Rows, Samples};
use crate::catalog::TableRef;
use crate::engine::mysql::{my_err, MyConn};

/// The groups measured on MySQL and MariaDB, in the order a round asks them.
pub const GROUPS: &[Group] = &[
    Group::Server,
    Group::DatabaseSize,
    Group::Status,
    Group::Sessions,
    Group::Replication,
    Group::TableStats,
    Group::TableSizes,
    Group::Sequences,
];

/// The status variables the [`Group::Status`] probe reads.
const STATUS: &[&str] = &[
    "Com_commit",
    "Com_rollback",
    "Innodb_deadlocks",
    "Threads_connected",
    "Threads_running",
    "Threads_cached",
    "Threads_created",
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
    "Innodb_row_lock_current_waits",
];

/// A value as the text the server would print; None for NULL.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true)),
    }
}

fn num(v: Option<String>) -> Option<f64> {
    v.and_then(|s| s.trim().parse::<f64>().ok())
}

fn col(row: &Row, i: usize) -> Option<String> {
    text(row.as_ref(i))
}

/// One group's probe.
pub async fn probe(c: &MyConn, group: Group, key_tables: &[TableRef]) -> Result<Samples> {
    let mut s = Samples::default();
    let mut g = c.conn().await;
    match group {
        Group::Server => {
            let row: Row = g
                .query_first("SELECT VERSION(), @@max_connections, UNIX_TIMESTAMP()")
                .await
                .map_err(my_err)?
                .ok_or_else(|| anyhow!("no row"))?;
            let uptime: Vec<Row> = g
                .query("SHOW GLOBAL STATUS LIKE 'Uptime'")
                .await
                .map_err(my_err)?;
            let version = col(&row, 0).unwrap_or_default();
            s.push(&f::SERVER_INFO, &["mysql", &version], 1.0);
            s.opt(&f::CONNECTIONS_MAX, &[], num(col(&row, 1)));
            let uptime = uptime.first().and_then(|r| num(col(r, 1)));
            if let (Some(now), Some(up)) = (num(col(&row, 2)), uptime) {
                s.push(&f::SERVER_START_TIME, &[], now - up);
            }
        }
        Group::DatabaseSize => {
            let row: Row = g
                .query_first(
                    "SELECT DATABASE(), COALESCE(SUM(data_length + index_length), 0)
                     FROM information_schema.TABLES WHERE table_schema = DATABASE()",
                )
                .await
                .map_err(my_err)?
                .ok_or_else(|| anyhow!("no row"))?;
            let db = col(&row, 0).unwrap_or_default();
            s.opt(&f::DATABASE_SIZE, &[&db], num(col(&row, 1)));
        }
        Group::Status => {
            let sql = format!(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ({})",
                STATUS
                    .iter()
                    .map(|v| format!("'{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let rows: Vec<Row> = g.query(sql).await.map_err(my_err)?;
            let mut vars: HashMap<String, f64> = rows
                .iter()
                .filter_map(|r| Some((col(r, 0)?, num(col(r, 1))?)))
                .collect();
            // MySQL 8 counts deadlocks in INNODB_METRICS, not in a status variable.
            if !vars.contains_key("Innodb_deadlocks") {
                let n: Option<Row> = g
                    .query_first(
                        "SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = 'lock_deadlocks'",
                    )
                    .await
                    .unwrap_or(None);
                if let Some(n) = n.and_then(|r| num(col(&r, 0))) {
                    vars.insert("Innodb_deadlocks".into(), n);
                }
            }
            status_samples(&vars, &mut s);
        }
        Group::Sessions => {
            let states: Vec<Row> = g
                .query(
                    "SELECT CASE WHEN p.COMMAND = 'Sleep' AND t.trx_id IS NOT NULL THEN 'idle_in_transaction'
                                 WHEN p.COMMAND = 'Sleep' THEN 'idle' WHEN p.COMMAND IN ('Query', 'Execute') THEN 'active'
                                 ELSE 'other' END, COUNT(*)
                     FROM information_schema.PROCESSLIST p
                     LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
                     WHERE p.COMMAND <> 'Daemon' GROUP BY 1",
                )
                .await
                .map_err(my_err)?;
            let found = states
                .iter()
                .map(|r| (col(r, 0).unwrap_or_default(), num(col(r, 1)).unwrap_or(0.0)))
                .collect();
            for (state, n) in zero_states(found) {
                s.push(&f::CONNECTIONS, &[&state], n);
            }
            let longest: Option<Row> = g
                .query_first(
                    "SELECT MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())) FROM information_schema.INNODB_TRX
                     WHERE trx_mysql_thread_id <> CONNECTION_ID()",
                )
                .await
                .map_err(my_err)?;
            let longest = longest.and_then(|r| num(col(&r, 0))).unwrap_or(0.0);
            s.push(&f::LONGEST_TRANSACTION, &[], longest);
        }
        Group::Replication => {
            let replica: Vec<Row> = g
                .query(if c.mariadb() {
                    "SHOW ALL SLAVES STATUS"
                } else {
                    "SHOW REPLICA STATUS"
                })
                .await
                .map_err(my_err)?;
            if let Some(row) = replica.first() {
                let i = row.columns_ref().iter().position(|c| {
                    c.name_str() == "Seconds_Behind_Master"
                        || c.name_str() == "Seconds_Behind_Source"
                });
                s.opt(&f::REPLICATION_LAG, &[], i.and_then(|i| num(col(row, i))));
            }
        }
        Group::TableStats => {
            // performance_schema's table I/O summaries: rows fetched through no index (whole
            // table scans) or an index, rows written. Empty when performance_schema is off.
            let names: Vec<String> = key_tables.iter().map(|t| t.prefixed()).collect();
            if names.is_empty() {
                return Ok(s);
            }
            let marks = vec!["?"; names.len()].join(", ");
            // performance_schema is readable only with a grant on it, which a least-privilege
            // account (deploy/monitoring-role/mysql.sql) does not have: left out, not failed.
            let denied = |e: anyhow::Error| match crate::engine::DbError::find(&e)
                .and_then(|d| d.number)
            {
                Some(1142 | 1143) => super::NotGranted {
                    what: "rows read and written per key table (performance_schema)".into(),
                    grant: "GRANT SELECT ON performance_schema.table_io_waits_summary_by_table \
                            and performance_schema.table_io_waits_summary_by_index_usage"
                        .into(),
                }
                .into(),
                _ => e,
            };
            let read: Vec<Row> = g
                .exec(
                    format!(
                        "SELECT OBJECT_NAME, IF(INDEX_NAME IS NULL, 'seq', 'index'), SUM(COUNT_FETCH)
                         FROM performance_schema.table_io_waits_summary_by_index_usage
                         WHERE OBJECT_SCHEMA = DATABASE() AND OBJECT_NAME IN ({marks}) GROUP BY 1, 2"
                    ),
                    names.clone(),
                )
                .await
                .map_err(my_err)
                .map_err(denied)?;
            let written: Vec<Row> = g
                .exec(
                    format!(
                        "SELECT OBJECT_NAME, COUNT_INSERT, COUNT_UPDATE, COUNT_DELETE
                         FROM performance_schema.table_io_waits_summary_by_table
                         WHERE OBJECT_SCHEMA = DATABASE() AND OBJECT_NAME IN ({marks})"
                    ),
                    names.clone(),
                )
                .await
                .map_err(my_err)
                .map_err(denied)?;
            for t in key_tables {
                let (model, physical) = (t.to_string(), t.prefixed());
                for r in read.iter().filter(|r| col(r, 0) == Some(physical.clone())) {
                    let method = col(r, 1).unwrap_or_default();
                    s.opt(&f::TABLE_ROWS_READ, &[&model, &method], num(col(r, 2)));
                }
                if let Some(r) = written.iter().find(|r| col(r, 0) == Some(physical.clone())) {
                    s.opt(&f::TABLE_ROWS_WRITTEN, &[&model, "insert"], num(col(r, 1)));
                    s.opt(&f::TABLE_ROWS_WRITTEN, &[&model, "update"], num(col(r, 2)));
                    s.opt(&f::TABLE_ROWS_WRITTEN, &[&model, "delete"], num(col(r, 3)));
                }
            }
        }
        Group::TableSizes => {
            for t in key_tables {
                let row: Option<Row> = g
                    .exec_first(
                        "SELECT data_length + index_length, table_rows FROM information_schema.TABLES
                         WHERE table_schema = DATABASE() AND table_name = ?",
                        (t.prefixed(),),
                    )
                    .await
                    .map_err(my_err)?;
                if let Some(row) = row {
                    let model = t.to_string();
                    s.push(&f::TABLE_SIZE, &[&model], num(col(&row, 0)).unwrap_or(0.0));
                    s.push(&f::TABLE_ROWS, &[&model], num(col(&row, 1)).unwrap_or(0.0));
                }
            }
        }
        Group::Sequences => {
            // MySQL 8 caches information_schema.TABLES statistics for a day by default:
            // this session wants the current AUTO_INCREMENT.
            if !c.mariadb() {
                let _ = g
                    .query_drop("SET SESSION information_schema_stats_expiry = 0")
                    .await;
            }
            let rows: Vec<Row> = g
                .query(
                    "SELECT CONCAT(t.TABLE_NAME, '.', c.COLUMN_NAME), t.AUTO_INCREMENT, c.DATA_TYPE, c.COLUMN_TYPE
                     FROM information_schema.TABLES t
                     JOIN information_schema.COLUMNS c
                       ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
                      AND c.EXTRA LIKE '%auto_increment%'
                     WHERE t.TABLE_SCHEMA = DATABASE() AND t.AUTO_INCREMENT IS NOT NULL",
                )
                .await
                .map_err(my_err)?;
            for r in rows {
                let (Some(name), Some(next)) = (col(&r, 0), num(col(&r, 1))) else {
                    continue;
                };
                let data_type = col(&r, 2).unwrap_or_default();
                let column_type = col(&r, 3).unwrap_or_default();
                s.opt(
                    &f::SEQUENCE_USED,
                    &[&name],
                    auto_increment_used(next, &data_type, &column_type),
                );
            }
        }
        other => anyhow::bail!("{} is not measured on MySQL", other.name()),
    }
    Ok(s)
}

/// The status families from `SHOW GLOBAL STATUS` values. The counters are server-wide:
/// their `database` label is empty.
pub fn status_samples(vars: &HashMap<String, f64>, s: &mut Samples) {
    let v = |k: &str| vars.get(k).copied();
    s.opt(&f::TRANSACTIONS, &["", "commit"], v("Com_commit"));
    s.opt(&f::TRANSACTIONS, &["", "rollback"], v("Com_rollback"));
    s.opt(&f::DEADLOCKS, &[""], v("Innodb_deadlocks"));
    s.opt(&f::THREADS, &["connected"], v("Threads_connected"));
    s.opt(&f::THREADS, &["running"], v("Threads_running"));
    s.opt(&f::THREADS, &["cached"], v("Threads_cached"));
    s.opt(&f::THREADS_CREATED, &[], v("Threads_created"));
    s.opt(&f::LOCK_WAITS, &[], v("Innodb_row_lock_waits"));
    // Innodb_row_lock_time is in milliseconds.
    s.opt(
        &f::LOCK_WAIT_TIME,
        &[],
        v("Innodb_row_lock_time").map(|ms| ms / 1000.0),
    );
    s.opt(&f::LOCKS_WAITING, &[], v("Innodb_row_lock_current_waits"));
}

/// The share of an AUTO_INCREMENT column's range used, from the table's next value and the
/// column's type (`int`, `int(11) unsigned` …); None for a type without a known range.
pub fn auto_increment_used(next: f64, data_type: &str, column_type: &str) -> Option<f64> {
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    let max = match (data_type.to_ascii_lowercase().as_str(), unsigned) {
        ("tinyint", false) => 127.0,
        ("tinyint", true) => 255.0,
        ("smallint", false) => 32_767.0,
        ("smallint", true) => 65_535.0,
        ("mediumint", false) => 8_388_607.0,
        ("mediumint", true) => 16_777_215.0,
        ("int" | "integer", false) => 2_147_483_647.0,
        ("int" | "integer", true) => 4_294_967_295.0,
        ("bigint", false) => 9_223_372_036_854_775_807.0,
        ("bigint", true) => 18_446_744_073_709_551_615.0,
        _ => return None,
    };
    Some(((next - 1.0) / max).clamp(0.0, 1.0))
}

/// A probe's or a custom metric's rows, every value as text.
pub async fn rows(c: &MyConn, sql: &str) -> Result<Rows> {
    let mut g = c.conn().await;
    let rows: Vec<Row> = g.query(sql).await.map_err(my_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            r.columns_ref()
                .iter()
                .enumerate()
                .map(|(i, col)| (col.name_str().to_string(), text(r.as_ref(i))))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_increment_headroom_by_type() {
        assert_eq!(auto_increment_used(1.0, "int", "int(11)"), Some(0.0));
        assert_eq!(
            auto_increment_used(128.0, "tinyint", "tinyint(4)"),
            Some(1.0)
        );
        assert_eq!(
            auto_increment_used(128.0, "tinyint", "tinyint(3) unsigned"),
            Some(127.0 / 255.0)
        );
        let half = auto_increment_used(1_073_741_824.0, "INT", "int(10)").unwrap();
        assert!((half - 0.5).abs() < 1e-6, "{half}");
        assert!(auto_increment_used(10.0, "bigint", "bigint(20) unsigned").unwrap() < 1e-15);
        assert_eq!(auto_increment_used(10.0, "decimal", "decimal(10,0)"), None);
    }

    #[test]
    fn status_counters_become_families() {
        let vars: HashMap<String, f64> = [
            ("Com_commit", 10.0),
            ("Com_rollback", 2.0),
            ("Threads_running", 3.0),
            ("Innodb_row_lock_time", 1500.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut s = Samples::default();
        status_samples(&vars, &mut s);
        let find = |name: &str, labels: &[&str]| {
            s.0.iter()
                .find(|x| x.family.name == name && x.labels == labels)
                .map(|x| x.value)
        };
        assert_eq!(
            find("mairie_dba_transactions_total", &["", "commit"]),
            Some(10.0)
        );
        assert_eq!(
            find("mairie_dba_transactions_total", &["", "rollback"]),
            Some(2.0)
        );
        assert_eq!(find("mairie_dba_threads", &["running"]), Some(3.0));
        assert_eq!(find("mairie_dba_lock_wait_seconds_total", &[]), Some(1.5));
        assert_eq!(
            find("mairie_dba_deadlocks_total", &[""]),
            None,
            "absent, not 0"
        );
    }
}
