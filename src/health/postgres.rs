//! How PostgreSQL measures each check of the table (`health/mod.rs`): its statistics
//! views (`pg_stat_activity`, `pg_stat_database`, `pg_stat_user_tables`,
//! `pg_stat_replication`), `pg_database` for transaction ID and multixact wraparound across
//! the cluster, `pg_sequences` for sequence exhaustion, and the size functions. Every check
//! applies to PostgreSQL but the backup directory's.
//!
//! A role outside `pg_monitor` (`pg_read_all_stats`) sees other roles' rows of
//! `pg_stat_activity` with their state, query, timings and even backend type hidden: the
//! checks that read them ([`reads_activity`]) are not run then. Durations are measured
//! against `clock_timestamp()` (not the transaction's `now()`) and never below zero.

use anyhow::{Context, Result};

use super::{
    human_duration, pct, round_trip, unless_all_seen, Answer, Check, Probe, Reading, Sight,
};
use crate::catalog::TableRef;
use crate::engine::postgres::{self, PgConn};
use crate::engine::Visibility;

/// Whether a check reads other sessions' rows of `pg_stat_activity`, which a role outside
/// `pg_read_all_stats` sees without state, query, timings or backend type. `locks` does
/// not: `pg_blocking_pids` reads the lock manager, which shows every backend to every role.
fn reads_activity(check: Check) -> bool {
    match check {
        Check::Connections | Check::LongQueries | Check::IdleInTransaction => true,
        Check::Connectivity
        | Check::Version
        | Check::Locks
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

async fn pg_row(c: &PgConn, sql: &str) -> Result<tokio_postgres::Row> {
    c.client()
        .query_one(sql, &[])
        .await
        .map_err(postgres::db_err)
}

/// Measures one check on the connection; every arm says how, or that it does not apply.
pub(super) async fn measure(
    c: &PgConn,
    check: Check,
    key_tables: &[TableRef],
    sight: &Sight,
) -> Result<Answer> {
    if reads_activity(check) {
        if let Some(blind) = unless_all_seen(sight) {
            return Ok(blind);
        }
    }
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
                "SELECT current_setting('server_version'), greatest(0, extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()))::float8",
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
                "SELECT coalesce(max(greatest(0, extract(epoch FROM clock_timestamp() - query_start))), 0)::float8, count(*)::float8,
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
                "SELECT coalesce(max(greatest(0, extract(epoch FROM clock_timestamp() - state_change))), 0)::float8, count(*)::float8,
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
                        // Found by name in the catalogue rather than to_regclass, which
                        // needs USAGE on the schema: the monitoring role has none.
                        "SELECT coalesce((SELECT pg_total_relation_size(c.oid) FROM pg_class c
                                          JOIN pg_namespace n ON n.oid = c.relnamespace
                                          WHERE n.nspname = $1 AND c.relname = $2), -1)::float8",
                        &[&t.schema, &t.name],
                    )
                    .await
                    .map_err(postgres::db_err)
                    .context(Reading(format!("table {t}")))?;
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
        Check::Wraparound => wraparound(c).await?,
        Check::Sequences => sequences(c).await?,
        Check::Replication => {
            let r = pg_row(
                c,
                "SELECT pg_is_in_recovery(),
                        coalesce(greatest(0, extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())), 0)::float8,
                        (SELECT count(*) FROM pg_stat_replication)::float8,
                        (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication)::float8,
                        (SELECT count(*) FROM pg_stat_replication WHERE state IS NULL)::float8",
            )
            .await?;
            let (replica, replay, standbys, lag, hidden): (bool, f64, f64, f64, f64) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            // Without pg_read_all_stats the standbys are listed with their lag hidden.
            let unseen = (hidden > 0.0).then(|| {
                format!(
                    "the lag of {hidden} standby(s) is hidden from this role ({})",
                    missing_grant(sight)
                )
            });
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
                .unseen(unseen)
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
        // Read with the target's `pitr:` section (`health/mod.rs`, `pitr/check.rs`).
        Check::WalArchiving | Check::WalReadyFiles => {
            return Ok(Answer::DoesNotApply(
                "read with the target's `pitr:` section",
            ))
        }
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
                    "SELECT greatest(0, extract(epoch FROM clock_timestamp() - {cols}))::float8,
                            (n_live_tup + n_dead_tup)::float8
                     FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2"
                ),
                &[&t.schema, &t.name],
            )
            .await
            .map_err(postgres::db_err)
            .context(Reading(format!("table {t}")))?;
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

/// The grant the session lacks to see everything, for messages.
fn missing_grant(sight: &Sight) -> String {
    match sight {
        Ok(Visibility::OwnOnly { missing }) => missing.clone(),
        _ => "GRANT pg_monitor to the monitoring role".into(),
    }
}

/// The oldest transaction ID and multixact ages among every database of the cluster
/// (template0 included: autovacuum must freeze it too), whichever is nearer the 2^31
/// limit; the worst database is named.
async fn wraparound(c: &PgConn) -> Result<Probe> {
    let r = pg_row(
        c,
        "WITH d AS (SELECT datname::text AS db, age(datfrozenxid)::float8 AS xid,
                           mxid_age(datminmxid)::float8 AS mxid
                    FROM pg_database)
         SELECT (SELECT max(xid) FROM d), (SELECT db FROM d ORDER BY xid DESC, db LIMIT 1),
                (SELECT max(mxid) FROM d), (SELECT db FROM d ORDER BY mxid DESC, db LIMIT 1),
                (SELECT count(*) FROM d)::float8",
    )
    .await?;
    let (xid, xid_db, mxid, mxid_db, n): (f64, String, f64, String, f64) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let limit = 2_147_483_648.0;
    let (p, q) = (pct(xid, limit), pct(mxid, limit));
    Ok(Probe::new(
        Check::Wraparound,
        p.max(q),
        format!(
            "oldest transaction ID age {xid} ({p}% of the 2^31 limit) in database {xid_db}; \
             oldest multixact age {mxid} ({q}%) in database {mxid_db}; {n} databases"
        ),
    ))
}

/// The query of [`sequences`]: every non-cycling sequence of the database, with the range
/// its owning column's type allows when that is narrower (a bigint sequence behind an
/// integer column runs out at the column's 2^31 - 1), the share of the range used, and
/// whether this role may read it (`pg_sequences` shows NULL otherwise).
const SEQUENCES_SQL: &str = "
WITH s AS (
    SELECT format('%I.%I', q.schemaname, q.sequencename) AS name, q.last_value,
           q.increment_by > 0 AS ascending,
           has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable,
           CASE WHEN q.increment_by < 0 THEN greatest(q.min_value, col.lo) ELSE q.min_value END AS lo,
           CASE WHEN q.increment_by > 0 THEN least(q.max_value, col.hi) ELSE q.max_value END AS hi,
           col.name AS col, q.schemaname::text AS schema
    FROM pg_sequences q
    JOIN pg_namespace n ON n.nspname = q.schemaname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = q.sequencename
    LEFT JOIN LATERAL (
        SELECT format('%s.%I %s', d.refobjid::regclass, a.attname, format_type(a.atttypid, NULL)) AS name,
               CASE a.atttypid WHEN 'int2'::regtype THEN -32768 WHEN 'int4'::regtype THEN -2147483648 END::bigint AS lo,
               CASE a.atttypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647 END::bigint AS hi
        FROM pg_depend d
        JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LIMIT 1
    ) col ON true
    WHERE NOT q.cycle
), used AS (
    SELECT name, col, readable, schema,
           CASE WHEN NOT readable THEN NULL
                WHEN last_value IS NULL THEN 0
                WHEN hi <= lo THEN 100
                WHEN ascending THEN least(100, greatest(0, 100 * (last_value::numeric - lo) / (hi::numeric - lo)))
                ELSE least(100, greatest(0, 100 * (hi::numeric - last_value) / (hi::numeric - lo)))
           END::float8 AS pct
    FROM s
)
SELECT count(*)::float8, count(*) FILTER (WHERE NOT readable)::float8,
       (array_agg(name ORDER BY pct DESC NULLS LAST, name))[1],
       (array_agg(col ORDER BY pct DESC NULLS LAST, name))[1],
       max(pct),
       string_agg(DISTINCT quote_ident(schema), ', ') FILTER (WHERE NOT readable),
       current_user::text
FROM used";

/// Sequence exhaustion: the sequence that has used the most of its range (its own, or its
/// column's when narrower), of every non-cycling sequence of the database. Sequences this
/// role may not read leave the check UNKNOWN unless what it sees is already a problem.
async fn sequences(c: &PgConn) -> Result<Probe> {
    let r = pg_row(c, SEQUENCES_SQL).await?;
    let (n, hidden): (f64, f64) = (r.get(0), r.get(1));
    let (name, col, worst): (Option<String>, Option<String>, Option<f64>) =
        (r.get(2), r.get(3), r.get(4));
    let (schemas, role): (Option<String>, String) = (r.get(5), r.get(6));
    let unseen = (hidden > 0.0).then(|| {
        format!(
            "{hidden} sequence(s) this role may not read: GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}",
            schemas.unwrap_or_default(),
            postgres::quote_ident(&role)
        )
    });
    let probe = match (name, worst) {
        (Some(name), Some(p)) => {
            let p = (p * 10.0).round() / 10.0;
            let of = col.map(|c| format!(" (column {c})")).unwrap_or_default();
            Probe::new(
                Check::Sequences,
                p,
                format!("{name}{of} has used {p}% of its range; {n} sequence(s)"),
            )
        }
        _ if n > 0.0 => Probe::new(
            Check::Sequences,
            0.0,
            format!("none of the {n} sequence(s) is readable"),
        ),
        _ => Probe::new(Check::Sequences, 0.0, "no sequence in this database"),
    };
    Ok(probe.unseen(unseen))
}
