//! How MySQL and MariaDB measure each check of the table (`health/mod.rs`): global status
//! variables, `information_schema` (`PROCESSLIST`, `INNODB_TRX`, `TABLES`) and the replica
//! status. InnoDB has no vacuum, analyze age or transaction ID wraparound to watch: those
//! checks do not apply.

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;

use super::{human_duration, pct, round_trip, Answer, Check, Probe};
use crate::catalog::TableRef;
use crate::engine::mysql::{self, MyConn};

/// A number out of whatever type the server chose (MySQL returns sums as DECIMAL text,
/// counts as integers): typed conversions in the driver would panic on a mismatch.
fn num_value(v: Option<&mysql_async::Value>) -> Option<f64> {
    use mysql_async::Value;
    match v? {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(f64::from(*f)),
        Value::Double(d) => Some(*d),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// The numeric columns of the first row of a query (None for NULL or no row).
async fn my_nums(
    g: &mut mysql_async::Conn,
    sql: &str,
    params: mysql_async::Params,
) -> Result<Vec<Option<f64>>> {
    let row: Option<mysql_async::Row> = g.exec_first(sql, params).await.map_err(mysql::my_err)?;
    Ok(match row {
        Some(r) => (0..r.len()).map(|i| num_value(r.as_ref(i))).collect(),
        None => Vec::new(),
    })
}

async fn my_num(g: &mut mysql_async::Conn, sql: &str) -> Result<Option<f64>> {
    Ok(my_nums(g, sql, mysql_async::Params::Empty)
        .await?
        .into_iter()
        .next()
        .flatten())
}

async fn my_status(g: &mut mysql_async::Conn, var: &str) -> Result<f64> {
    let row: Option<mysql_async::Row> = g
        .exec_first("SHOW GLOBAL STATUS WHERE Variable_name = ?", (var,))
        .await
        .map_err(mysql::my_err)?;
    row.and_then(|r| num_value(r.as_ref(1)))
        .ok_or_else(|| anyhow!("status variable {var} is not available"))
}

/// Measures one check on the connection; every arm says how, or that it does not apply.
pub(super) async fn measure(c: &MyConn, check: Check, key_tables: &[TableRef]) -> Result<Answer> {
    let mut guard = c.conn().await;
    let g = &mut *guard;
    let pair = |v: Vec<Option<f64>>| {
        (
            v.first().copied().flatten().unwrap_or(0.0),
            v.get(1).copied().flatten().unwrap_or(0.0),
        )
    };
    let probe = match check {
        Check::Connectivity => {
            round_trip(async { g.query_drop("SELECT 1").await.map_err(mysql::my_err) }).await?
        }
        Check::Version => {
            let v: Option<String> = g
                .query_first("SELECT VERSION()")
                .await
                .map_err(mysql::my_err)?;
            let up = my_status(g, "Uptime").await?;
            let flavour = if c.mariadb() { "MariaDB" } else { "MySQL" };
            Probe::new(
                check,
                up,
                format!(
                    "{flavour} {}, up {}",
                    v.unwrap_or_default(),
                    human_duration(up)
                ),
            )
        }
        Check::Connections => {
            let used = my_status(g, "Threads_connected").await?;
            let max = my_num(g, "SELECT @@max_connections").await?.unwrap_or(0.0);
            Probe::new(
                check,
                pct(used, max),
                format!("{used} of {max} connections in use"),
            )
        }
        Check::LongQueries => {
            let (longest, n) = pair(
                my_nums(
                    g,
                    "SELECT MAX(TIME), COUNT(*) FROM information_schema.PROCESSLIST
                     WHERE COMMAND = 'Query' AND ID <> CONNECTION_ID()",
                    mysql_async::Params::Empty,
                )
                .await?,
            );
            Probe::new(
                check,
                longest,
                format!("{n} running queries, longest {}", human_duration(longest)),
            )
        }
        Check::IdleInTransaction => {
            let (longest, n) = pair(
                my_nums(
                    g,
                    "SELECT MAX(TIMESTAMPDIFF(SECOND, t.trx_started, NOW())), COUNT(*)
                     FROM information_schema.INNODB_TRX t
                     JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
                     WHERE p.COMMAND = 'Sleep'",
                    mysql_async::Params::Empty,
                )
                .await?,
            );
            Probe::new(
                check,
                longest,
                format!(
                    "{n} session(s) idle in transaction, longest {}",
                    human_duration(longest)
                ),
            )
        }
        Check::Locks => {
            let n = my_num(
                g,
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
            )
            .await?
            .unwrap_or(0.0);
            Probe::new(check, n, format!("{n} transaction(s) waiting for a lock"))
        }
        Check::DatabaseSize => {
            let b = my_num(
                g,
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.TABLES WHERE table_schema = DATABASE()",
            )
            .await?
            .unwrap_or(0.0);
            Probe::new(
                check,
                b,
                format!(
                    "database {}: {}",
                    c_database(g).await,
                    indicatif::HumanBytes(b as u64)
                ),
            )
        }
        Check::TableSizes => {
            let mut total = 0.0;
            let mut parts = Vec::new();
            for t in key_tables {
                let b = my_nums(
                    g,
                    "SELECT data_length + index_length FROM information_schema.TABLES WHERE table_schema = DATABASE() AND table_name = ?",
                    mysql_async::Params::from((t.prefixed(),)),
                )
                .await?
                .into_iter()
                .next()
                .flatten();
                if let Some(b) = b {
                    total += b;
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
            let requests = my_status(g, "Innodb_buffer_pool_read_requests").await?;
            let reads = my_status(g, "Innodb_buffer_pool_reads").await?;
            if requests < 1000.0 {
                Probe::note(
                    check,
                    format!("too few buffer pool reads yet to judge ({requests})"),
                )
            } else {
                let ratio = pct(requests - reads, requests);
                Probe::new(
                    check,
                    ratio,
                    format!("{ratio}% of InnoDB reads served from the buffer pool"),
                )
            }
        }
        Check::Replication => {
            let sql = if c.mariadb() {
                "SHOW ALL SLAVES STATUS"
            } else {
                "SHOW REPLICA STATUS"
            };
            let rows: Vec<mysql_async::Row> = g.query(sql).await.map_err(mysql::my_err)?;
            match rows.first() {
                None => Probe::note(check, "not a replica"),
                Some(r) => {
                    let col = r.columns_ref().iter().position(|c| {
                        c.name_str() == "Seconds_Behind_Master"
                            || c.name_str() == "Seconds_Behind_Source"
                    });
                    match col.and_then(|i| num_value(r.as_ref(i))) {
                        Some(l) => Probe::new(
                            check,
                            l,
                            format!("replica, {} behind its primary", human_duration(l)),
                        ),
                        None => Probe::new(
                            check,
                            f64::from(u32::MAX),
                            "replica, replication is not running",
                        ),
                    }
                }
            }
        }
        // InnoDB has no vacuum, wraparound or analyze age to watch.
        Check::Wraparound | Check::Vacuum | Check::Analyze => return Ok(Answer::DoesNotApply),
        // Read from the backup directory, whatever the engine (`health/mod.rs`).
        Check::BackupDirSpace | Check::BackupAge => return Ok(Answer::DoesNotApply),
    };
    Ok(Answer::Probe(probe))
}

async fn c_database(g: &mut mysql_async::Conn) -> String {
    g.query_first::<Option<String>, _>("SELECT DATABASE()")
        .await
        .ok()
        .flatten()
        .flatten()
        .unwrap_or_default()
}
