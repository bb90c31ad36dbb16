//! How PostgreSQL measures each check of the table (`health/mod.rs`): its statistics
//! views (`pg_stat_activity`, `pg_stat_database`, `pg_stat_user_tables`,
//! `pg_stat_replication`), `pg_database` for transaction ID wraparound, and the size
//! functions. Every check applies to PostgreSQL but the backup directory's.

use anyhow::Result;

use super::{human_duration, pct, round_trip, Answer, Check, Probe};
use crate::catalog::TableRef;
use crate::engine::postgres::{self, PgConn};

async fn pg_row(c: &PgConn, sql: &str) -> Result<tokio_postgres::Row> {
    c.client()
        .query_one(sql, &[])
        .await
        .map_err(postgres::db_err)
}

/// Measures one check on the connection; every arm says how, or that it does not apply.
pub(super) async fn measure(c: &PgConn, check: Check, key_tables: &[TableRef]) -> Result<Answer> {
    let probe = match check {
        Check::Connectivity => {
            round_trip(async {
                c.client()
                    .simple_query("SELECT 1")
                    .await
                    .map(drop)
                    .map_err(postgres::db_err)
            })
            .await?
        }
        Check::Version => {
            let r = pg_row(
                c,
                "SELECT current_setting('server_version'), extract(epoch FROM now() - pg_postmaster_start_time())::float8",
            )
            .await?;
            let (v, up): (String, f64) = (r.get(0), r.get(1));
            let up = up.round();
            Probe::new(
                check,
                up,
                format!("PostgreSQL {v}, up {}", human_duration(up)),
            )
        }
        Check::Connections => {
            let r = pg_row(
                c,
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8,
                        (current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int)::float8",
            )
            .await?;
            let (used, max): (f64, f64) = (r.get(0), r.get(1));
            Probe::new(
                check,
                pct(used, max),
                format!("{used} of {max} connections in use"),
            )
        }
        Check::LongQueries => {
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
                    check,
                    longest,
                    format!(
                        "longest running query {} (pid {w}); {n} active",
                        human_duration(longest)
                    ),
                ),
                _ => Probe::new(check, longest, format!("{n} active queries, none long")),
            }
        }
        Check::IdleInTransaction => {
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
            Probe::new(check, longest, msg)
        }
        Check::Locks => {
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
            Probe::new(check, n, msg)
        }
        Check::DatabaseSize => {
            let r = pg_row(
                c,
                "SELECT pg_database_size(current_database())::float8, current_database()",
            )
            .await?;
            let (b, db): (f64, String) = (r.get(0), r.get(1));
            Probe::new(
                check,
                b,
                format!("database {db}: {}", indicatif::HumanBytes(b as u64)),
            )
        }
        Check::TableSizes => {
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
                    .map_err(postgres::db_err)?;
                let b: f64 = row.get(0);
                if b >= 0.0 {
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
            let r = pg_row(
                c,
                "SELECT blks_hit::float8, blks_read::float8 FROM pg_stat_database WHERE datname = current_database()",
            )
            .await?;
            let (hit, read): (f64, f64) = (r.get(0), r.get(1));
            if hit + read < 1000.0 {
                Probe::note(
                    check,
                    format!("too few block reads yet to judge ({})", hit + read),
                )
            } else {
                let ratio = pct(hit, hit + read);
                Probe::new(
                    check,
                    ratio,
                    format!("{ratio}% of block reads served from shared buffers"),
                )
            }
        }
        Check::Wraparound => {
            let r = pg_row(
                c,
                "SELECT max(age(datfrozenxid))::float8, (array_agg(datname ORDER BY age(datfrozenxid) DESC))[1]
                 FROM pg_database WHERE datallowconn",
            )
            .await?;
            let (age, db): (f64, String) = (r.get(0), r.get(1));
            let p = pct(age, 2_147_483_648.0);
            Probe::new(
                check,
                p,
                format!("oldest transaction ID age {age} ({p}% of the 2^31 limit) in {db}"),
            )
        }
        Check::Replication => {
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
                    check,
                    replay,
                    format!(
                        "replica, last replayed transaction {} ago",
                        human_duration(replay)
                    ),
                )
            } else if standbys > 0.0 {
                Probe::new(
                    check,
                    lag,
                    format!(
                        "primary with {standbys} standby(s), replay lag {}",
                        human_duration(lag)
                    ),
                )
            } else {
                Probe::note(check, "standalone: no replica, not a replica")
            }
        }
        Check::Vacuum => {
            key_table_age(
                c,
                check,
                "greatest(last_vacuum, last_autovacuum)",
                "vacuum",
                key_tables,
            )
            .await?
        }
        Check::Analyze => {
            key_table_age(
                c,
                check,
                "greatest(last_analyze, last_autoanalyze)",
                "analyze",
                key_tables,
            )
            .await?
        }
        // Read from the backup directory, whatever the engine (`health/mod.rs`).
        Check::BackupDirSpace | Check::BackupAge => return Ok(Answer::DoesNotApply),
    };
    Ok(Answer::Probe(probe))
}

/// The age in days of the oldest `what` (vacuum or analyze, as `cols` of
/// `pg_stat_user_tables` date it) among the key tables.
async fn key_table_age(
    c: &PgConn,
    check: Check,
    cols: &str,
    what: &str,
    key_tables: &[TableRef],
) -> Result<Probe> {
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
            .map_err(postgres::db_err)?;
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
    Ok(match worst {
        None => Probe::note(
            check,
            format!("none of the key tables exists (checked {seen})"),
        ),
        Some((d, t)) if d.is_infinite() => {
            Probe::new(check, 9999.0, format!("{t} was never {what}d"))
        }
        Some((d, t)) => Probe::new(
            check,
            (d * 10.0).round() / 10.0,
            format!("oldest {what} among key tables: {t}, {:.1} days ago", d),
        ),
    })
}
