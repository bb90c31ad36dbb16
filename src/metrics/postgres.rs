//! What one round of the exporter asks a PostgreSQL server: the standard families in three
//! queries (one row of settings and sizes, sessions by state, the key tables in one array
//! lookup), and the probe and custom queries run through the simple query protocol so that
//! any statement's rows come back as text. The families themselves (names, help, types) and
//! what is done with the values are the core's (`metrics/mod.rs`).

use anyhow::Result;
use tokio_postgres::SimpleQueryMessage;

use super::{zero_states, Round, Rows};
use crate::catalog::TableRef;
use crate::engine::postgres::{db_err, quoted_table, PgConn};

/// The standard families' values.
pub async fn round(c: &PgConn, key_tables: &[TableRef]) -> Result<Round> {
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
        .map_err(db_err)?;
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
        .map_err(db_err)?;
    r.connections = zero_states(
        states
            .iter()
            .map(|s| (s.get::<_, String>(0), s.get::<_, f64>(1)))
            .collect(),
    );
    let names: Vec<String> = key_tables.iter().map(quoted_table).collect();
    let rows = client
        .query(
            "SELECT t, pg_total_relation_size(c.oid)::float8,
                    (CASE WHEN c.reltuples < 0 THEN coalesce(s.n_live_tup, 0) ELSE c.reltuples END)::float8
             FROM unnest($1::text[]) AS t JOIN pg_class c ON c.oid = to_regclass(t)
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid",
            &[&names],
        )
        .await
        .map_err(db_err)?;
    for (t, row) in key_tables.iter().filter_map(|t| {
        rows.iter()
            .find(|row| row.get::<_, String>(0) == quoted_table(t))
            .map(|row| (t, row))
    }) {
        r.tables.push((t.to_string(), row.get(1), row.get(2)));
    }
    Ok(r)
}

/// A probe's or a custom metric's rows, every value as text.
pub async fn rows(c: &PgConn, sql: &str) -> Result<Rows> {
    let msgs = c.client().simple_query(sql).await.map_err(db_err)?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
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
