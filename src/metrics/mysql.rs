//! What one round of the exporter asks a MySQL or MariaDB server: the standard families from
//! `information_schema` (one row of sizes and counters, sessions by state from the process
//! list joined to InnoDB's open transactions, one lookup per key table) and the replica
//! status, then the probe and custom queries with every value read as text. The families
//! themselves (names, help, types) are the core's (`metrics/mod.rs`).

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use super::{zero_states, Round, Rows};
use crate::catalog::TableRef;
use crate::engine::mysql::{my_err, MyConn};
use crate::engine::Driver;

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
    v.and_then(|s| s.parse::<f64>().ok())
}

/// The standard families' values.
pub async fn round(c: &MyConn, key_tables: &[TableRef]) -> Result<Round> {
    let version = c.server_version().await?;
    let mut g = c.conn().await;
    let row: Option<Row> = g
        .query_first(
            "SELECT DATABASE(),
                    (SELECT SUM(data_length + index_length) FROM information_schema.TABLES WHERE table_schema = DATABASE()),
                    @@max_connections,
                    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'),
                    UNIX_TIMESTAMP(),
                    (SELECT MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())) FROM information_schema.INNODB_TRX)",
        )
        .await
        .map_err(my_err)?;
    let row = row.ok_or_else(|| anyhow!("no row"))?;
    let t = |i: usize| text(row.as_ref(i));
    let uptime = num(t(3));
    let now = num(t(4));
    let mut r = Round {
        version,
        database: t(0).unwrap_or_default(),
        database_size: Some(num(t(1)).unwrap_or(0.0)),
        connections_max: num(t(2)),
        start_time: match (now, uptime) {
            (Some(n), Some(u)) => Some(n - u),
            _ => None,
        },
        longest_transaction: Some(num(t(5)).unwrap_or(0.0)),
        ..Round::default()
    };
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
    r.connections = zero_states(
        states
            .iter()
            .map(|s| {
                (
                    text(s.as_ref(0)).unwrap_or_default(),
                    num(text(s.as_ref(1))).unwrap_or(0.0),
                )
            })
            .collect(),
    );
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
            r.tables.push((
                t.to_string(),
                num(text(row.as_ref(0))).unwrap_or(0.0),
                num(text(row.as_ref(1))).unwrap_or(0.0),
            ));
        }
    }
    let replica: Vec<Row> = g
        .query(if c.mariadb() {
            "SHOW ALL SLAVES STATUS"
        } else {
            "SHOW REPLICA STATUS"
        })
        .await
        .map_err(my_err)?;
    if let Some(row) = replica.first() {
        let col = row.columns_ref().iter().position(|c| {
            c.name_str() == "Seconds_Behind_Master" || c.name_str() == "Seconds_Behind_Source"
        });
        r.replication_lag = col.and_then(|i| num(text(row.as_ref(i))));
    }
    Ok(r)
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
