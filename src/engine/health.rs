//! What `health` measures on each engine: one connection, a handful of catalogue queries,
//! each turned into a [`Probe`] (a value, a unit and a sentence). Thresholds and statuses
//! are the command's business (`cmd/health.rs`); this module only measures.

use std::time::Instant;

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;

use crate::catalog::TableRef;
use crate::engine::Driver;
use crate::engine::{mssql, mysql, postgres, Conn};

/// Every check `health` knows, in the order they are shown.
pub const CHECKS: [&str; 14] = [
    "connectivity",
    "version",
    "connections",
    "long_queries",
    "idle_in_transaction",
    "locks",
    "database_size",
    "table_sizes",
    "cache_hit",
    "wraparound",
    "replication",
    "vacuum",
    "analyze",
    "backup_dir_space",
];

/// One measurement.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: &'static str,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub message: String,
}

impl Probe {
    fn new(
        name: &'static str,
        value: f64,
        unit: &'static str,
        message: impl Into<String>,
    ) -> Probe {
        Probe {
            name,
            value: Some(value),
            unit,
            message: message.into(),
        }
    }

    /// A fact with nothing to measure against (e.g. "not a replica").
    fn note(name: &'static str, message: impl Into<String>) -> Probe {
        Probe {
            name,
            value: None,
            unit: "",
            message: message.into(),
        }
    }
}

/// Why a check has no measurement.
#[derive(Debug, Clone)]
pub struct Failed {
    pub name: &'static str,
    pub message: String,
    /// The target is in trouble (unreachable, too slow), not merely the check.
    pub critical: bool,
}

/// The result of one check: its probe, or why it could not be measured.
pub type Measured = Result<Probe, Failed>;

/// Runs the wanted checks on an open connection, one after the other on that connection,
/// until `deadline`: a check still running then is reported as too slow (CRITICAL) and the
/// ones after it as not run, while those already measured are kept.
pub async fn measure(
    conn: &Conn,
    key_tables: &[TableRef],
    wanted: &dyn Fn(&str) -> bool,
    deadline: tokio::time::Instant,
    budget_secs: u64,
) -> Vec<Measured> {
    let mut out = Vec::new();
    let mut out_of_time = false;
    for name in CHECKS {
        if !wanted(name) || name == "backup_dir_space" || name == "connectivity" {
            continue;
        }
        if out_of_time {
            out.push(Err(Failed {
                name,
                message: format!("not run: the target used up health.timeout ({budget_secs} s)"),
                critical: false,
            }));
            continue;
        }
        let fut = async {
            match conn {
                Conn::Postgres(c) => pg(c, name, key_tables).await,
                Conn::Mysql(c) => my(c, name, key_tables).await,
                Conn::Mssql(c) => ms(c, name, key_tables).await,
            }
        };
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(Ok(Some(p))) => out.push(Ok(p)),
            Ok(Ok(None)) => {} // not meaningful on this engine
            Ok(Err(e)) => out.push(Err(Failed {
                name,
                message: format!("{e:#}"),
                critical: false,
            })),
            Err(_) => {
                out_of_time = true;
                out.push(Err(Failed {
                    name,
                    message: format!("did not finish within {budget_secs} s (health.timeout)"),
                    critical: true,
                }));
            }
        }
    }
    out
}

/// Round trip of a trivial query, in milliseconds.
pub async fn latency(conn: &Conn) -> Result<f64> {
    let start = Instant::now();
    match conn {
        Conn::Postgres(c) => {
            c.client()
                .simple_query("SELECT 1")
                .await
                .map_err(|e| anyhow!(postgres::describe(&e)))?;
        }
        Conn::Mysql(c) => {
            let mut g = c.conn().await;
            g.query_drop("SELECT 1")
                .await
                .map_err(|e| anyhow!(mysql::describe(&e)))?;
        }
        Conn::Mssql(c) => {
            c.scalar_i64("SELECT 1").await?;
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

fn human_duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        (part * 1000.0 / whole).round() / 10.0
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

async fn pg_row(c: &postgres::PgConn, sql: &str) -> Result<tokio_postgres::Row> {
    c.client()
        .query_one(sql, &[])
        .await
        .map_err(|e| anyhow!(postgres::describe(&e)))
}

async fn pg(
    c: &postgres::PgConn,
    name: &'static str,
    key_tables: &[TableRef],
) -> Result<Option<Probe>> {
    Ok(Some(match name {
        "version" => {
            let r = pg_row(
                c,
                "SELECT current_setting('server_version'), extract(epoch FROM now() - pg_postmaster_start_time())::float8",
            )
            .await?;
            let (v, up): (String, f64) = (r.get(0), r.get(1));
            let up = up.round();
            Probe::new(
                name,
                up,
                "s",
                format!("PostgreSQL {v}, up {}", human_duration(up)),
            )
        }
        "connections" => {
            let r = pg_row(
                c,
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8,
                        (current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int)::float8",
            )
            .await?;
            let (used, max): (f64, f64) = (r.get(0), r.get(1));
            Probe::new(
                name,
                pct(used, max),
                "%",
                format!("{used} of {max} connections in use"),
            )
        }
        "long_queries" => {
            let r = pg_row(
                c,
                "SELECT coalesce(max(extract(epoch FROM now() - query_start)), 0)::float8, count(*)::float8,
                        (array_agg(pid::text || ' ' || coalesce(usename, '?') || ': ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
                                   ORDER BY query_start))[1]
                 FROM pg_stat_activity
                 WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            )
            .await?;
            let (longest, n, what): (f64, f64, Option<String>) = (r.get(0), r.get(1), r.get(2));
            match what {
                Some(w) if longest >= 1.0 => Probe::new(
                    name,
                    longest,
                    "s",
                    format!(
                        "longest running query {} (pid {w}); {n} active",
                        human_duration(longest)
                    ),
                ),
                _ => Probe::new(name, longest, "s", format!("{n} active queries, none long")),
            }
        }
        "idle_in_transaction" => {
            let r = pg_row(
                c,
                "SELECT coalesce(max(extract(epoch FROM now() - state_change)), 0)::float8, count(*)::float8,
                        string_agg(pid::text || ' ' || coalesce(usename, '?'), ', ')
                 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
            )
            .await?;
            let (longest, n, who): (f64, f64, Option<String>) = (r.get(0), r.get(1), r.get(2));
            let msg = match who {
                Some(w) => format!(
                    "{n} session(s) idle in transaction, longest {} ({w})",
                    human_duration(longest)
                ),
                None => "no session idle in transaction".into(),
            };
            Probe::new(name, longest, "s", msg)
        }
        "locks" => {
            let r = pg_row(
                c,
                "SELECT count(*)::float8,
                        string_agg(pid::text || ' waits for ' || array_to_string(pg_blocking_pids(pid), ','), '; ')
                 FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0",
            )
            .await?;
            let (n, who): (f64, Option<String>) = (r.get(0), r.get(1));
            let msg = match who {
                Some(w) => format!("{n} blocked session(s): {w}"),
                None => "no session waits for a lock".into(),
            };
            Probe::new(name, n, "", msg)
        }
        "database_size" => {
            let r = pg_row(
                c,
                "SELECT pg_database_size(current_database())::float8, current_database()",
            )
            .await?;
            let (b, db): (f64, String) = (r.get(0), r.get(1));
            Probe::new(
                name,
                b,
                "B",
                format!("database {db}: {}", indicatif::HumanBytes(b as u64)),
            )
        }
        "table_sizes" => {
            let mut total = 0.0;
            let mut parts = Vec::new();
            for t in key_tables {
                let row = c
                    .client()
                    .query_one(
                        "SELECT coalesce(pg_total_relation_size(to_regclass($1)), -1)::float8",
                        &[&postgres::quoted_table(t)],
                    )
                    .await
                    .map_err(|e| anyhow!(postgres::describe(&e)))?;
                let b: f64 = row.get(0);
                if b >= 0.0 {
                    total += b;
                    parts.push(format!("{t} {}", indicatif::HumanBytes(b as u64)));
                }
            }
            if parts.is_empty() {
                Probe::note(name, "none of the key tables exists in this database")
            } else {
                Probe::new(name, total, "B", parts.join(", "))
            }
        }
        "cache_hit" => {
            let r = pg_row(
                c,
                "SELECT blks_hit::float8, blks_read::float8 FROM pg_stat_database WHERE datname = current_database()",
            )
            .await?;
            let (hit, read): (f64, f64) = (r.get(0), r.get(1));
            if hit + read < 1000.0 {
                Probe::note(
                    name,
                    format!("too few block reads yet to judge ({})", hit + read),
                )
            } else {
                let ratio = pct(hit, hit + read);
                Probe::new(
                    name,
                    ratio,
                    "%",
                    format!("{ratio}% of block reads served from shared buffers"),
                )
            }
        }
        "wraparound" => {
            let r = pg_row(
                c,
                "SELECT max(age(datfrozenxid))::float8, (array_agg(datname ORDER BY age(datfrozenxid) DESC))[1]
                 FROM pg_database WHERE datallowconn",
            )
            .await?;
            let (age, db): (f64, String) = (r.get(0), r.get(1));
            let p = pct(age, 2_147_483_648.0);
            Probe::new(
                name,
                p,
                "%",
                format!("oldest transaction ID age {age} ({p}% of the 2^31 limit) in {db}"),
            )
        }
        "replication" => {
            let r = pg_row(
                c,
                "SELECT pg_is_in_recovery(),
                        coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8,
                        (SELECT count(*) FROM pg_stat_replication)::float8,
                        (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication)::float8",
            )
            .await?;
            let (replica, replay, standbys, lag): (bool, f64, f64, f64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if replica {
                Probe::new(
                    name,
                    replay,
                    "s",
                    format!(
                        "replica, last replayed transaction {} ago",
                        human_duration(replay)
                    ),
                )
            } else if standbys > 0.0 {
                Probe::new(
                    name,
                    lag,
                    "s",
                    format!(
                        "primary with {standbys} standby(s), replay lag {}",
                        human_duration(lag)
                    ),
                )
            } else {
                Probe::note(name, "standalone: no replica, not a replica")
            }
        }
        "vacuum" | "analyze" => {
            let (cols, what) = if name == "vacuum" {
                ("greatest(last_vacuum, last_autovacuum)", "vacuum")
            } else {
                ("greatest(last_analyze, last_autoanalyze)", "analyze")
            };
            let mut worst: Option<(f64, String)> = None;
            let mut seen = 0;
            for t in key_tables {
                let rows = c
                    .client()
                    .query(
                        &format!(
                            "SELECT extract(epoch FROM now() - {cols})::float8, (n_live_tup + n_dead_tup)::float8
                             FROM pg_stat_user_tables WHERE relid = to_regclass($1)"
                        ),
                        &[&postgres::quoted_table(t)],
                    )
                    .await
                    .map_err(|e| anyhow!(postgres::describe(&e)))?;
                let Some(r) = rows.first() else { continue };
                seen += 1;
                let (age, rows_n): (Option<f64>, f64) = (r.get(0), r.get(1));
                // A small table that was never processed is not a concern yet.
                let age_days = match age {
                    Some(a) => a / 86_400.0,
                    None if rows_n < 1000.0 => 0.0,
                    None => f64::INFINITY,
                };
                if worst.as_ref().is_none_or(|(w, _)| age_days > *w) {
                    worst = Some((age_days, t.to_string()));
                }
            }
            match worst {
                None => Probe::note(
                    name,
                    format!("none of the key tables exists (checked {seen})"),
                ),
                Some((d, t)) if d.is_infinite() => {
                    Probe::new(name, 9999.0, "d", format!("{t} was never {what}d"))
                }
                Some((d, t)) => Probe::new(
                    name,
                    (d * 10.0).round() / 10.0,
                    "d",
                    format!("oldest {what} among key tables: {t}, {:.1} days ago", d),
                ),
            }
        }
        _ => return Ok(None),
    }))
}

// ---------------------------------------------------------------------------------------------
// MySQL / MariaDB

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
    let row: Option<mysql_async::Row> = g
        .exec_first(sql, params)
        .await
        .map_err(|e| anyhow!(mysql::describe(&e)))?;
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
        .map_err(|e| anyhow!(mysql::describe(&e)))?;
    row.and_then(|r| num_value(r.as_ref(1)))
        .ok_or_else(|| anyhow!("status variable {var} is not available"))
}

async fn my(
    c: &mysql::MyConn,
    name: &'static str,
    key_tables: &[TableRef],
) -> Result<Option<Probe>> {
    let mut guard = c.conn().await;
    let g = &mut *guard;
    let pair = |v: Vec<Option<f64>>| {
        (
            v.first().copied().flatten().unwrap_or(0.0),
            v.get(1).copied().flatten().unwrap_or(0.0),
        )
    };
    Ok(Some(match name {
        "version" => {
            let v: Option<String> = g
                .query_first("SELECT VERSION()")
                .await
                .map_err(|e| anyhow!(mysql::describe(&e)))?;
            let up = my_status(g, "Uptime").await?;
            let flavour = if c.mariadb() { "MariaDB" } else { "MySQL" };
            Probe::new(
                name,
                up,
                "s",
                format!(
                    "{flavour} {}, up {}",
                    v.unwrap_or_default(),
                    human_duration(up)
                ),
            )
        }
        "connections" => {
            let used = my_status(g, "Threads_connected").await?;
            let max = my_num(g, "SELECT @@max_connections").await?.unwrap_or(0.0);
            Probe::new(
                name,
                pct(used, max),
                "%",
                format!("{used} of {max} connections in use"),
            )
        }
        "long_queries" => {
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
                name,
                longest,
                "s",
                format!("{n} running queries, longest {}", human_duration(longest)),
            )
        }
        "idle_in_transaction" => {
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
                name,
                longest,
                "s",
                format!(
                    "{n} session(s) idle in transaction, longest {}",
                    human_duration(longest)
                ),
            )
        }
        "locks" => {
            let n = my_num(
                g,
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'",
            )
            .await?
            .unwrap_or(0.0);
            Probe::new(
                name,
                n,
                "",
                format!("{n} transaction(s) waiting for a lock"),
            )
        }
        "database_size" => {
            let b = my_num(
                g,
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.TABLES WHERE table_schema = DATABASE()",
            )
            .await?
            .unwrap_or(0.0);
            Probe::new(
                name,
                b,
                "B",
                format!(
                    "database {}: {}",
                    c_database(g).await,
                    indicatif::HumanBytes(b as u64)
                ),
            )
        }
        "table_sizes" => {
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
                Probe::note(name, "none of the key tables exists in this database")
            } else {
                Probe::new(name, total, "B", parts.join(", "))
            }
        }
        "cache_hit" => {
            let requests = my_status(g, "Innodb_buffer_pool_read_requests").await?;
            let reads = my_status(g, "Innodb_buffer_pool_reads").await?;
            if requests < 1000.0 {
                Probe::note(
                    name,
                    format!("too few buffer pool reads yet to judge ({requests})"),
                )
            } else {
                let ratio = pct(requests - reads, requests);
                Probe::new(
                    name,
                    ratio,
                    "%",
                    format!("{ratio}% of InnoDB reads served from the buffer pool"),
                )
            }
        }
        "replication" => {
            let sql = if c.mariadb() {
                "SHOW ALL SLAVES STATUS"
            } else {
                "SHOW REPLICA STATUS"
            };
            let rows: Vec<mysql_async::Row> = g
                .query(sql)
                .await
                .map_err(|e| anyhow!(mysql::describe(&e)))?;
            match rows.first() {
                None => Probe::note(name, "not a replica"),
                Some(r) => {
                    let col = r.columns_ref().iter().position(|c| {
                        c.name_str() == "Seconds_Behind_Master"
                            || c.name_str() == "Seconds_Behind_Source"
                    });
                    match col.and_then(|i| num_value(r.as_ref(i))) {
                        Some(l) => Probe::new(
                            name,
                            l,
                            "s",
                            format!("replica, {} behind its primary", human_duration(l)),
                        ),
                        None => Probe::new(
                            name,
                            f64::from(u32::MAX),
                            "s",
                            "replica, replication is not running",
                        ),
                    }
                }
            }
        }
        // InnoDB has no vacuum, wraparound or analyze age to watch.
        _ => return Ok(None),
    }))
}

async fn c_database(g: &mut mysql_async::Conn) -> String {
    g.query_first::<Option<String>, _>("SELECT DATABASE()")
        .await
        .ok()
        .flatten()
        .flatten()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// SQL Server

async fn ms(
    c: &mssql::MsConn,
    name: &'static str,
    key_tables: &[TableRef],
) -> Result<Option<Probe>> {
    let num = |sql: &'static str| async move {
        Ok::<f64, anyhow::Error>(c.scalar_i64(sql).await?.unwrap_or(0) as f64)
    };
    Ok(Some(match name {
        "version" => {
            let v = c.server_version().await?;
            let up = num("SELECT CAST(DATEDIFF(SECOND, sqlserver_start_time, SYSDATETIME()) AS bigint) FROM sys.dm_os_sys_info").await?;
            Probe::new(
                name,
                up,
                "s",
                format!("SQL Server {v}, up {}", human_duration(up)),
            )
        }
        "connections" => {
            let used = num("SELECT CAST(COUNT(*) AS bigint) FROM sys.dm_exec_sessions WHERE is_user_process = 1").await?;
            let max = num("SELECT CAST(@@MAX_CONNECTIONS AS bigint)").await?;
            Probe::new(
                name,
                pct(used, max),
                "%",
                format!("{used} of {max} connections in use"),
            )
        }
        "long_queries" => {
            let ms = num(
                "SELECT CAST(COALESCE(MAX(r.total_elapsed_time), 0) AS bigint) FROM sys.dm_exec_requests r
                 JOIN sys.dm_exec_sessions s ON s.session_id = r.session_id
                 WHERE s.is_user_process = 1 AND r.session_id <> @@SPID",
            )
            .await?;
            Probe::new(
                name,
                ms / 1000.0,
                "s",
                format!("longest running request {}", human_duration(ms / 1000.0)),
            )
        }
        "idle_in_transaction" => {
            let s = num(
                "SELECT CAST(COALESCE(MAX(DATEDIFF(SECOND, last_request_end_time, GETDATE())), 0) AS bigint)
                 FROM sys.dm_exec_sessions WHERE status = 'sleeping' AND open_transaction_count > 0",
            )
            .await?;
            Probe::new(
                name,
                s,
                "s",
                format!(
                    "longest session idle in a transaction: {}",
                    human_duration(s)
                ),
            )
        }
        "locks" => {
            let n = num("SELECT CAST(COUNT(*) AS bigint) FROM sys.dm_exec_requests WHERE blocking_session_id <> 0").await?;
            Probe::new(name, n, "", format!("{n} blocked request(s)"))
        }
        "database_size" => {
            let b = num(
                "SELECT CAST(SUM(CAST(size AS bigint)) * 8192 AS bigint) FROM sys.database_files",
            )
            .await?;
            Probe::new(
                name,
                b,
                "B",
                format!("database files: {}", indicatif::HumanBytes(b as u64)),
            )
        }
        "table_sizes" => {
            let mut total = 0.0;
            let mut parts = Vec::new();
            for t in key_tables {
                let sql = format!(
                    "SELECT CAST(SUM(reserved_page_count) * 8192 AS bigint) FROM sys.dm_db_partition_stats WHERE object_id = OBJECT_ID({})",
                    crate::engine::mssql::backup::nstring(&mssql::quoted_table(t))
                );
                if let Some(b) = c.scalar_i64(&sql).await? {
                    total += b as f64;
                    parts.push(format!("{t} {}", indicatif::HumanBytes(b as u64)));
                }
            }
            if parts.is_empty() {
                Probe::note(name, "none of the key tables exists in this database")
            } else {
                Probe::new(name, total, "B", parts.join(", "))
            }
        }
        "cache_hit" => {
            let ratio = num(
                "SELECT CAST(100.0 * a.cntr_value / NULLIF(b.cntr_value, 0) AS bigint)
                 FROM sys.dm_os_performance_counters a JOIN sys.dm_os_performance_counters b
                   ON b.object_name = a.object_name AND b.counter_name = 'Buffer cache hit ratio base'
                 WHERE a.counter_name = 'Buffer cache hit ratio'",
            )
            .await?;
            Probe::new(name, ratio, "%", format!("buffer cache hit ratio {ratio}%"))
        }
        "replication" => {
            let n = num("SELECT CAST(COUNT(*) AS bigint) FROM sys.dm_hadr_database_replica_states WHERE database_id = DB_ID()").await?;
            if n == 0.0 {
                Probe::note(name, "not in an availability group")
            } else {
                let lag = num(
                    "SELECT CAST(COALESCE(MAX(DATEDIFF(SECOND, last_commit_time, SYSDATETIME())), 0) AS bigint)
                     FROM sys.dm_hadr_database_replica_states WHERE database_id = DB_ID() AND is_local = 0",
                )
                .await?;
                Probe::new(
                    name,
                    lag,
                    "s",
                    format!(
                        "availability group, secondaries {} behind",
                        human_duration(lag)
                    ),
                )
            }
        }
        "analyze" => {
            let days = num(
                "SELECT CAST(COALESCE(MAX(DATEDIFF(DAY, STATS_DATE(s.object_id, s.stats_id), SYSDATETIME())), 0) AS bigint)
                 FROM sys.stats s JOIN sys.tables t ON t.object_id = s.object_id WHERE t.is_ms_shipped = 0",
            )
            .await?;
            Probe::new(
                name,
                days,
                "d",
                format!("oldest statistics updated {days} days ago"),
            )
        }
        _ => return Ok(None),
    }))
}
