//! How MySQL and MariaDB measure each check of the table (`health/mod.rs`): global status
//! variables, `information_schema` (`PROCESSLIST`, `INNODB_TRX`, `TABLES`) and the replica
//! status. InnoDB has no vacuum, analyze age or transaction ID wraparound to watch: those
//! checks do not apply.
//!
//! Without the `PROCESS` privilege a user sees only its own threads in the process list and
//! cannot read `INNODB_TRX`: the checks that read them ([`reads_activity`]) are not run
//! then. `Threads_connected` counts every connection whatever the privileges.

use anyhow::{anyhow, Context, Result};
use mysql_async::prelude::Queryable;

use super::{
    human_duration, pct, round_trip, unless_all_seen, Answer, Check, Probe, Reading, Sight,
};
use crate::catalog::TableRef;
use crate::engine::mysql::{self, MyConn};

/// Whether a check reads other sessions' threads or transactions (`PROCESSLIST`,
/// `INNODB_TRX`), which need the `PROCESS` privilege.
fn reads_activity(check: Check) -> bool {
    match check {
        Check::LongQueries | Check::IdleInTransaction | Check::Locks => true,
        Check::Connectivity
        | Check::Version
        | Check::Connections
        | Check::DatabaseSize
        | Check::TableSizes
        | Check::CacheHit
        | Check::Wraparound
        | Check::Sequences
        | Check::Replication
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
pub(super) async fn measure(
    c: &MyConn,
    check: Check,
    key_tables: &[TableRef],
    sight: &Sight,
) -> Result<Answer> {
    if reads_activity(check) {
        if let Some(blind) = unless_all_seen(sight) {
            return Ok(blind);
        }
    }
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
                .await
                .context(Reading(format!("table {t}")))?
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
        Check::Sequences => auto_increments(g, c.mariadb()).await?,
        Check::Wraparound => {
            return Ok(Answer::DoesNotApply(
                "InnoDB has no transaction ID wraparound to watch",
            ))
        }
        Check::Vacuum => {
            return Ok(Answer::DoesNotApply(
                "InnoDB purges old row versions itself: there is no vacuum",
            ))
        }
        Check::Analyze => {
            return Ok(Answer::DoesNotApply(
                "InnoDB recalculates persistent statistics itself: no analyze age to watch",
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

async fn c_database(g: &mut mysql_async::Conn) -> String {
    g.query_first::<Option<String>, _>("SELECT DATABASE()")
        .await
        .ok()
        .flatten()
        .flatten()
        .unwrap_or_default()
}

/// The largest value an integer column of `data_type` holds (`column_type` says whether it
/// is unsigned); None for a type that is not an integer.
fn int_max(data_type: &str, column_type: &str) -> Option<f64> {
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    let bits = match data_type.to_ascii_lowercase().as_str() {
        "tinyint" => 8,
        "smallint" => 16,
        "mediumint" => 24,
        "int" | "integer" => 32,
        "bigint" => 64,
        _ => return None,
    };
    Some(if unsigned {
        2f64.powi(bits) - 1.0
    } else {
        2f64.powi(bits - 1) - 1.0
    })
}

/// How much of its column type's range an AUTO_INCREMENT has used: the last value handed
/// out (`next` - 1) over the type's maximum, in %, at most 100.
fn used_pct(next: f64, max: f64) -> f64 {
    (pct((next - 1.0).max(0.0), max)).min(100.0)
}

/// AUTO_INCREMENT headroom: of the database's tables with an AUTO_INCREMENT column, the one
/// nearest its column type's maximum.
async fn auto_increments(g: &mut mysql_async::Conn, mariadb: bool) -> Result<Probe> {
    if !mariadb {
        // MySQL 8 caches information_schema.TABLES for a day by default: read it fresh.
        let _ = g
            .query_drop("SET SESSION information_schema_stats_expiry = 0")
            .await;
    }
    let rows: Vec<mysql_async::Row> = g
        .query(
            "SELECT t.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, t.AUTO_INCREMENT
             FROM information_schema.TABLES t
             JOIN information_schema.COLUMNS c
               ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
              AND c.EXTRA LIKE '%auto_increment%'
             WHERE t.TABLE_SCHEMA = DATABASE() AND t.AUTO_INCREMENT IS NOT NULL",
        )
        .await
        .map_err(mysql::my_err)?;
    let text = |r: &mysql_async::Row, i: usize| match r.as_ref(i) {
        Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let mut worst: Option<(f64, String)> = None;
    let mut n = 0;
    for r in &rows {
        let (table, column, data_type, column_type) =
            (text(r, 0), text(r, 1), text(r, 2), text(r, 3));
        let (Some(max), Some(next)) = (int_max(&data_type, &column_type), num_value(r.as_ref(4)))
        else {
            continue;
        };
        n += 1;
        let p = used_pct(next, max);
        if worst.as_ref().is_none_or(|(w, _)| p > *w) {
            worst = Some((
                p,
                format!(
                    "{}.{} {column_type} (next value {next} of {max})",
                    mysql::quote_ident(&table),
                    mysql::quote_ident(&column)
                ),
            ));
        }
    }
    Ok(match worst {
        Some((p, what)) => Probe::new(
            Check::Sequences,
            p,
            format!("{what} has used {p}% of its range; {n} AUTO_INCREMENT column(s)"),
        ),
        None => Probe::new(
            Check::Sequences,
            0.0,
            "no AUTO_INCREMENT column in this database",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_types_have_their_maximum_and_others_none() {
        assert_eq!(int_max("tinyint", "tinyint(4)"), Some(127.0));
        assert_eq!(int_max("tinyint", "tinyint(3) unsigned"), Some(255.0));
        assert_eq!(int_max("smallint", "smallint(6)"), Some(32767.0));
        assert_eq!(
            int_max("mediumint", "mediumint unsigned"),
            Some(16_777_215.0)
        );
        assert_eq!(int_max("int", "int(11)"), Some(2_147_483_647.0));
        assert_eq!(int_max("INT", "INT UNSIGNED"), Some(4_294_967_295.0));
        assert_eq!(
            int_max("bigint", "bigint(20)"),
            Some(9_223_372_036_854_775_807.0)
        );
        assert_eq!(int_max("double", "double"), None);
        assert_eq!(used_pct(1.0, 127.0), 0.0);
        assert_eq!(used_pct(31_130.0, 32_767.0), 95.0);
        assert_eq!(used_pct(400.0, 255.0), 100.0);
    }
}
