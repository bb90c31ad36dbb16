//! What the exporter reads from each engine in one round: a few catalogue queries batched
//! into as few round trips as the engine allows, the configured probe queries (timed), and
//! the custom metrics' queries. Rendering as Prometheus metrics is `metrics/`'s job.

use std::time::Instant;

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;

use crate::catalog::TableRef;
use crate::config::{CustomMetric, ProbeQuery};
use crate::engine::Driver;
use crate::engine::{mssql, mysql, postgres, Conn};

/// A sample of a custom metric: its label values and value.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomSample {
    pub metric: usize,
    pub value_column: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// One round of measurements of a target.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub version: String,
    pub start_time: Option<f64>,
    pub database: String,
    pub database_size: Option<f64>,
    /// (model table name, total size in bytes, estimated rows)
    pub tables: Vec<(String, f64, f64)>,
    /// (state, sessions)
    pub connections: Vec<(String, f64)>,
    pub connections_max: Option<f64>,
    pub longest_transaction: Option<f64>,
    pub replication_lag: Option<f64>,
    /// (probe name, seconds)
    pub probes: Vec<(String, f64)>,
    pub custom: Vec<CustomSample>,
    /// Custom metrics whose query failed: (index, error).
    pub custom_errors: Vec<(usize, String)>,
}

pub async fn collect(
    conn: &Conn,
    key_tables: &[TableRef],
    probes: &[&ProbeQuery],
    custom: &[(usize, &CustomMetric)],
) -> Result<Round> {
    let mut r = match conn {
        Conn::Postgres(c) => pg(c, key_tables).await?,
        Conn::Mysql(c) => my(c, key_tables).await?,
        Conn::Mssql(c) => ms(c, key_tables).await?,
    };
    for p in probes {
        let start = Instant::now();
        run_rows(conn, &p.sql)
            .await
            .map_err(|e| anyhow!("probe {}: {e:#}", p.name))?;
        r.probes
            .push((p.name.clone(), start.elapsed().as_secs_f64()));
    }
    for (i, m) in custom {
        match run_rows(conn, &m.sql).await {
            Ok(rows) => match samples(*i, m, &rows) {
                Ok(s) => r.custom.extend(s),
                Err(e) => r.custom_errors.push((*i, e)),
            },
            Err(e) => r.custom_errors.push((*i, format!("{e:#}"))),
        }
    }
    Ok(r)
}

/// Rows as (column name, text value) pairs.
type Rows = Vec<Vec<(String, Option<String>)>>;

async fn run_rows(conn: &Conn, sql: &str) -> Result<Rows> {
    match conn {
        Conn::Postgres(c) => {
            let msgs = c
                .client()
                .simple_query(sql)
                .await
                .map_err(|e| anyhow!(postgres::describe(&e)))?;
            Ok(msgs
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(
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
        Conn::Mysql(c) => {
            let mut g = c.conn().await;
            let rows: Vec<mysql_async::Row> = g
                .query(sql)
                .await
                .map_err(|e| anyhow!(mysql::describe(&e)))?;
            Ok(rows
                .iter()
                .map(|r| {
                    r.columns_ref()
                        .iter()
                        .enumerate()
                        .map(|(i, col)| (col.name_str().to_string(), my_text(r.as_ref(i))))
                        .collect()
                })
                .collect())
        }
        Conn::Mssql(c) => c.named_rows(sql).await,
    }
}

fn my_text(v: Option<&mysql_async::Value>) -> Option<String> {
    use mysql_async::Value;
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

/// Turns a custom metric's rows into samples; a missing column or a non-number is an error
/// naming it.
pub fn samples(index: usize, m: &CustomMetric, rows: &Rows) -> Result<Vec<CustomSample>, String> {
    let mut out = Vec::new();
    for row in rows {
        let get = |col: &str| {
            row.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(col))
                .map(|(_, v)| v.clone())
        };
        let mut labels = Vec::with_capacity(m.labels.len());
        for l in &m.labels {
            let v = get(l)
                .ok_or_else(|| format!("metric {}: the query has no column `{l}`", m.name))?;
            labels.push((l.clone(), v.unwrap_or_default()));
        }
        for vc in &m.values {
            let v = get(vc)
                .ok_or_else(|| format!("metric {}: the query has no column `{vc}`", m.name))?;
            let Some(text) = v else { continue }; // NULL: no sample
            let value = text.trim().parse::<f64>().map_err(|_| {
                format!(
                    "metric {}: column `{vc}` holds `{text}`, not a number",
                    m.name
                )
            })?;
            out.push(CustomSample {
                metric: index,
                value_column: vc.clone(),
                labels: labels.clone(),
                value,
            });
        }
    }
    Ok(out)
}

fn pg_err(e: tokio_postgres::Error) -> anyhow::Error {
    anyhow!(postgres::describe(&e))
}

async fn pg(c: &postgres::PgConn, key_tables: &[TableRef]) -> Result<Round> {
    let client = c.client();
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), extract(epoch FROM pg_postmaster_start_time())::float8,
                    current_database(), pg_database_size(current_database())::float8,
                    current_setting('max_connections')::float8,
                    (SELECT max(extract(epoch FROM now() - xact_start)) FROM pg_stat_activity
                      WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid())::float8,
                    CASE WHEN pg_is_in_recovery()
                         THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())
                         ELSE (SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication) END::float8",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let mut r = Round {
        version: row.get(0),
        start_time: row.get(1),
        database: row.get(2),
        database_size: row.get(3),
        connections_max: row.get(4),
        longest_transaction: Some(row.get::<_, Option<f64>>(5).unwrap_or(0.0)),
        replication_lag: row.get(6),
        ..Round::default()
    };
    let states = client
        .query(
            "SELECT CASE WHEN state = 'active' THEN 'active' WHEN state = 'idle' THEN 'idle'
                         WHEN state LIKE 'idle in transaction%' THEN 'idle_in_transaction' ELSE 'other' END,
                    count(*)::float8
             FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1",
            &[],
        )
        .await
        .map_err(pg_err)?;
    r.connections = zero_states(
        states
            .iter()
            .map(|s| (s.get::<_, String>(0), s.get::<_, f64>(1)))
            .collect(),
    );
    let names: Vec<String> = key_tables.iter().map(postgres::quoted_table).collect();
    let rows = client
        .query(
            "SELECT t, pg_total_relation_size(c.oid)::float8,
                    (CASE WHEN c.reltuples < 0 THEN coalesce(s.n_live_tup, 0) ELSE c.reltuples END)::float8
             FROM unnest($1::text[]) AS t JOIN pg_class c ON c.oid = to_regclass(t)
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid",
            &[&names],
        )
        .await
        .map_err(pg_err)?;
    for (t, row) in key_tables.iter().filter_map(|t| {
        rows.iter()
            .find(|row| row.get::<_, String>(0) == postgres::quoted_table(t))
            .map(|row| (t, row))
    }) {
        r.tables.push((t.to_string(), row.get(1), row.get(2)));
    }
    Ok(r)
}

/// Every state present, with zero for those without sessions, so series do not vanish.
fn zero_states(found: Vec<(String, f64)>) -> Vec<(String, f64)> {
    ["active", "idle", "idle_in_transaction", "other"]
        .iter()
        .map(|s| {
            let n = found
                .iter()
                .filter(|(f, _)| f == s)
                .fold(0.0, |acc, (_, n)| acc + n);
            (s.to_string(), n)
        })
        .collect()
}

async fn my(c: &mysql::MyConn, key_tables: &[TableRef]) -> Result<Round> {
    let version = c.server_version().await?;
    let mut g = c.conn().await;
    let e = |e: mysql_async::Error| anyhow!(mysql::describe(&e));
    let num = |v: Option<String>| v.and_then(|s| s.parse::<f64>().ok());
    let row: Option<mysql_async::Row> = g
        .query_first(
            "SELECT DATABASE(),
                    (SELECT SUM(data_length + index_length) FROM information_schema.TABLES WHERE table_schema = DATABASE()),
                    @@max_connections,
                    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'),
                    UNIX_TIMESTAMP(),
                    (SELECT MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())) FROM information_schema.INNODB_TRX)",
        )
        .await
        .map_err(e)?;
    let row = row.ok_or_else(|| anyhow!("no row"))?;
    let t = |i: usize| my_text(row.as_ref(i));
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
    let states: Vec<mysql_async::Row> = g
        .query(
            "SELECT CASE WHEN p.COMMAND = 'Sleep' AND t.trx_id IS NOT NULL THEN 'idle_in_transaction'
                         WHEN p.COMMAND = 'Sleep' THEN 'idle' WHEN p.COMMAND IN ('Query', 'Execute') THEN 'active'
                         ELSE 'other' END, COUNT(*)
             FROM information_schema.PROCESSLIST p
             LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID
             WHERE p.COMMAND <> 'Daemon' GROUP BY 1",
        )
        .await
        .map_err(e)?;
    r.connections = zero_states(
        states
            .iter()
            .map(|s| {
                (
                    my_text(s.as_ref(0)).unwrap_or_default(),
                    num(my_text(s.as_ref(1))).unwrap_or(0.0),
                )
            })
            .collect(),
    );
    for t in key_tables {
        let row: Option<mysql_async::Row> = g
            .exec_first(
                "SELECT data_length + index_length, table_rows FROM information_schema.TABLES
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (t.prefixed(),),
            )
            .await
            .map_err(e)?;
        if let Some(row) = row {
            r.tables.push((
                t.to_string(),
                num(my_text(row.as_ref(0))).unwrap_or(0.0),
                num(my_text(row.as_ref(1))).unwrap_or(0.0),
            ));
        }
    }
    let replica: Vec<mysql_async::Row> = g
        .query(if c.mariadb() {
            "SHOW ALL SLAVES STATUS"
        } else {
            "SHOW REPLICA STATUS"
        })
        .await
        .map_err(e)?;
    if let Some(row) = replica.first() {
        let col = row.columns_ref().iter().position(|c| {
            c.name_str() == "Seconds_Behind_Master" || c.name_str() == "Seconds_Behind_Source"
        });
        r.replication_lag = col.and_then(|i| num(my_text(row.as_ref(i))));
    }
    Ok(r)
}

async fn ms(c: &mssql::MsConn, key_tables: &[TableRef]) -> Result<Round> {
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
    let f = |i: usize| {
        first
            .get(i)
            .and_then(|(_, v)| v.as_ref())
            .and_then(|s| s.parse::<f64>().ok())
    };
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
                    row.get(1)
                        .and_then(|(_, v)| v.as_ref())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0.0),
                )
            })
            .collect(),
    );
    for t in key_tables {
        let sql = format!(
            "SELECT CAST(SUM(reserved_page_count) * 8192 AS float), CAST(SUM(CASE WHEN index_id IN (0, 1) THEN row_count ELSE 0 END) AS float)
             FROM sys.dm_db_partition_stats WHERE object_id = OBJECT_ID({})",
            crate::engine::mssql::backup::nstring(&mssql::quoted_table(t))
        );
        let rows = c.named_rows(&sql).await?;
        if let Some(row) = rows.first() {
            let v = |i: usize| {
                row.get(i)
                    .and_then(|(_, v)| v.as_ref())
                    .and_then(|s| s.parse::<f64>().ok())
            };
            if let (Some(size), Some(n)) = (v(0), v(1)) {
                r.tables.push((t.to_string(), size, n));
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CustomKind;

    fn metric() -> CustomMetric {
        CustomMetric {
            name: "demandes_ouvertes".into(),
            help: "h".into(),
            kind: CustomKind::Gauge,
            sql: String::new(),
            labels: vec!["statut".into()],
            values: vec!["n".into()],
            engines: vec![],
            targets: vec![],
        }
    }

    fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn custom_rows_become_samples() {
        let rows = vec![
            row(&[("statut", Some("en_cours")), ("n", Some("12"))]),
            row(&[("STATUT", Some("deposee")), ("N", None)]),
        ];
        let s = samples(0, &metric(), &rows).unwrap();
        assert_eq!(s.len(), 1, "a NULL value gives no sample");
        assert_eq!(
            s[0].labels,
            vec![("statut".to_string(), "en_cours".to_string())]
        );
        assert_eq!(s[0].value, 12.0);
    }

    #[test]
    fn custom_errors_name_the_column() {
        let e = samples(0, &metric(), &vec![row(&[("statut", Some("x"))])]).unwrap_err();
        assert!(e.contains("no column `n`"), "{e}");
        let e = samples(
            0,
            &metric(),
            &vec![row(&[("statut", Some("x")), ("n", Some("beaucoup"))])],
        )
        .unwrap_err();
        assert!(e.contains("`beaucoup`, not a number"), "{e}");
    }

    #[test]
    fn every_connection_state_is_present() {
        let z = zero_states(vec![
            ("active".into(), 2.0),
            ("idle".into(), 1.0),
            ("idle".into(), 1.0),
        ]);
        assert_eq!(
            z,
            vec![
                ("active".to_string(), 2.0),
                ("idle".to_string(), 2.0),
                ("idle_in_transaction".to_string(), 0.0),
                ("other".to_string(), 0.0)
            ]
        );
    }
}
