//! PostgreSQL's side of maintenance: the statements and catalogue queries behind `maintenance
//! analyze | vacuum | index-report | slow-queries | cleanup` on PostgreSQL, reached through
//! the feature's visitors in `maintenance/mod.rs`. What is read here is judged by the
//! engine-free core (redundant, unused and foreign-key indexes); quoting is the driver's.
//!
//! Quirks handled here and only here:
//! - VACUUM cannot run inside a transaction block. Every statement here is a simple query,
//!   which autocommits; operations lift the session's inspection `statement_timeout` first
//!   ([`lift_statement_timeout`]). ANALYZE and VACUUM on a table the role may not maintain
//!   only warn and skip it, so that is checked before, not reported as a success.
//! - Who may maintain a table changed in PostgreSQL 16 (the MAINTAIN privilege);
//!   pg_stat_statements renamed its time columns in 13; REINDEX CONCURRENTLY exists from 12.
//! - `cleanup` deletes by primary key, or by ctid when the table has none.

use anyhow::{bail, Context, Result};
use tokio_postgres::error::SqlState;

use super::{
    display, find_redundant, fk_findings, human, missing_tables_error, redundancy_findings,
    unused_verdict, Dialect, Finding, ForeignKey, IndexDef, KeyCol, Purge, SlowQueries, SlowQuery,
    TableTask, Work,
};
use crate::catalog::TableRef;
use crate::engine::postgres::{db_err, quote_ident, quoted_table, PgConn};

/// How to turn pg_stat_statements on, in one line.
pub const PGSS_HINT: &str = "add shared_preload_libraries = 'pg_stat_statements' to \
     postgresql.conf and restart the server, then run CREATE EXTENSION pg_stat_statements; \
     in this database";

/// The operations' statements may run for long: the session keeps the inspection
/// `statement_timeout` of the config, lifted here for this session only.
pub async fn lift_statement_timeout(c: &PgConn) -> Result<()> {
    c.client()
        .batch_execute("SET statement_timeout = 0")
        .await
        .map_err(db_err)
}

// ---------------------------------------------------------------------------------------------
// analyze and vacuum

/// ANALYZE or VACUUM (with ANALYZE) of one table.
pub fn table_statement(work: Work, table: &TableRef) -> String {
    let t = quoted_table(table);
    match work {
        Work::Analyze => format!("ANALYZE {t}"),
        Work::Vacuum { full: false } => format!("VACUUM (ANALYZE) {t}"),
        Work::Vacuum { full: true } => format!("VACUUM (FULL, ANALYZE) {t}"),
    }
}

/// Every table (partitions are left to their parent) or the named ones, each with whether
/// this role may maintain it.
pub async fn plan(c: &PgConn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
    let client = c.client();
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(db_err)?
        .try_get(0)?;
    // Who may ANALYZE/VACUUM a table: its owner, the database's owner, a superuser, and
    // from PostgreSQL 16 whoever holds MAINTAIN on it.
    let allowed = if version >= 160000 {
        "has_table_privilege(c.oid, 'MAINTAIN')"
    } else {
        "(pg_has_role(c.relowner, 'USAGE')
          OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')
          OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))"
    };
    let base = format!(
        "SELECT n.nspname::text, c.relname::text, {allowed}
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'm')"
    );
    let mut tables: Vec<(TableRef, bool)> = Vec::new();
    if named.is_empty() {
        // Partitions are left to their parent, which ANALYZE and VACUUM recurse into.
        let rows = client
            .query(
                &format!(
                    "{base} AND NOT c.relispartition
                       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
                     ORDER BY 1, 2"
                ),
                &[],
            )
            .await
            .map_err(db_err)?;
        for r in rows {
            tables.push((
                TableRef::new(r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?),
                r.try_get(2)?,
            ));
        }
    } else {
        let mut missing = Vec::new();
        for t in named {
            let row = client
                .query_opt(
                    &format!("{base} AND n.nspname = $1 AND c.relname = $2"),
                    &[&t.schema, &t.name],
                )
                .await
                .map_err(db_err)?;
            match row {
                Some(r) => tables.push((t.clone(), r.try_get(2)?)),
                None => missing.push(t.to_string()),
            }
        }
        if !missing.is_empty() {
            let db: String = client
                .query_one("SELECT current_database()::text", &[])
                .await
                .map_err(db_err)?
                .try_get(0)?;
            return Err(missing_tables_error(&missing, &format!("database {db}")));
        }
    }
    let action = match work {
        Work::Analyze => "analyze",
        Work::Vacuum { full: false } => "vacuum",
        Work::Vacuum { full: true } => "vacuum full",
    };
    Ok(tables
        .into_iter()
        .map(|(t, allowed)| TableTask {
            table: t.to_string(),
            action: action.into(),
            statements: vec![table_statement(work, &t)],
            note: String::new(),
            refused: (!allowed).then(|| {
                format!(
                    "only the owner of {t} or of the database may {}: the server would skip it",
                    action.to_ascii_uppercase()
                )
            }),
        })
        .collect())
}

/// Runs one table's statements, each on its own (VACUUM refuses a transaction block).
pub async fn run_task(c: &PgConn, task: &TableTask) -> Result<String> {
    for s in &task.statements {
        c.client().batch_execute(s).await.map_err(db_err)?;
    }
    Ok(task.note.clone())
}

// ---------------------------------------------------------------------------------------------
// index-report

/// Invalid, redundant and unused indexes, foreign keys without an index, and bloat.
pub async fn index_report(c: &PgConn) -> Result<Vec<Finding>> {
    let client = c.client();
    let d = Dialect::Postgres;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(db_err)?
        .try_get(0)?;
    let since: Option<String> = client
        .query_one(
            "SELECT to_char(stats_reset AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(db_err)?
        .try_get(0)?;
    let since = match since {
        Some(s) => format!("since the statistics were reset on {s}"),
        None => "since the statistics began (never reset)".to_string(),
    };
    let rows = client
        .query(
            "SELECT n.nspname::text, t.relname::text, ic.relname::text, am.amname::text,
                    i.indisunique, i.indisprimary, i.indisvalid,
                    i.indpred IS NOT NULL, i.indexprs IS NOT NULL,
                    (SELECT k.conname::text FROM pg_constraint k
                      WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                        AND k.contype IN ('p', 'u', 'x') LIMIT 1),
                    pg_relation_size(i.indexrelid), i.indexrelid::bigint, i.indnkeyatts::int,
                    ARRAY(SELECT a.attname::text
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                          LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                          ORDER BY k.ord),
                    i.indclass::text, i.indoption::text, i.indcollation::text,
                    s.idx_scan
             FROM pg_index i
             JOIN pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_class t ON t.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             JOIN pg_am am ON am.oid = ic.relam
             LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
             ORDER BY i.indexrelid",
            &[],
        )
        .await
        .map_err(db_err)?;
    let mut ix = Vec::with_capacity(rows.len());
    let mut scans = Vec::with_capacity(rows.len());
    for r in &rows {
        let nkey = r.try_get::<_, i32>(12)?.max(0) as usize;
        let cols: Vec<Option<String>> = r.try_get(13)?;
        let split = |s: String| -> Vec<String> {
            s.split_whitespace().map(str::to_string).collect::<Vec<_>>()
        };
        let (class, option, collation) = (
            split(r.try_get(14)?),
            split(r.try_get(15)?),
            split(r.try_get(16)?),
        );
        let keys = cols
            .iter()
            .take(nkey)
            .enumerate()
            .map(|(i, c)| KeyCol {
                column: c.clone().unwrap_or_default(),
                spec: format!(
                    "{}/{}/{}",
                    class.get(i).map(String::as_str).unwrap_or(""),
                    option.get(i).map(String::as_str).unwrap_or(""),
                    collation.get(i).map(String::as_str).unwrap_or("")
                ),
            })
            .collect();
        let include = cols
            .iter()
            .skip(nkey)
            .map(|c| c.clone().unwrap_or_default())
            .collect();
        ix.push(IndexDef {
            schema: r.try_get(0)?,
            table: r.try_get(1)?,
            name: r.try_get(2)?,
            method: r.try_get(3)?,
            unique: r.try_get(4)?,
            primary: r.try_get(5)?,
            valid: r.try_get(6)?,
            partial: r.try_get(7)?,
            expression: r.try_get(8)?,
            constraint: r.try_get(9)?,
            size_bytes: Some(r.try_get(10)?),
            order: r.try_get(11)?,
            keys,
            include,
        });
        scans.push(r.try_get::<_, Option<i64>>(17)?);
    }
    let fk_rows = client
        .query(
            "SELECT n.nspname::text, t.relname::text, k.conname::text,
                    ARRAY(SELECT a.attname::text
                          FROM unnest(k.conkey) WITH ORDINALITY u(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
                          ORDER BY u.ord),
                    pn.nspname::text || '.' || p.relname::text
             FROM pg_constraint k
             JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
             JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
             WHERE k.contype = 'f' AND k.conparentid = 0
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(db_err)?;
    let mut fks = Vec::with_capacity(fk_rows.len());
    for r in &fk_rows {
        fks.push(ForeignKey {
            schema: r.try_get(0)?,
            table: r.try_get(1)?,
            name: r.try_get(2)?,
            columns: r.try_get(3)?,
            references: r.try_get(4)?,
        });
    }

    let mut out = Vec::new();
    let concurrently = if version >= 120000 {
        " CONCURRENTLY"
    } else {
        ""
    };
    for i in ix.iter().filter(|i| !i.valid) {
        let q = d.table(&i.schema, &i.name);
        out.push(Finding {
            kind: "invalid".into(),
            table: i.display_table(),
            index: Some(i.name.clone()),
            size_bytes: i.size_bytes,
            detail: "invalid (a CREATE INDEX CONCURRENTLY or REINDEX that failed): queries do \
                     not use it, yet every write still updates it; rebuild it or drop it"
                .into(),
            fix: Some(format!(
                "REINDEX INDEX{concurrently} {q}; -- or: DROP INDEX CONCURRENTLY {q};"
            )),
        });
    }
    let red = find_redundant(&ix);
    out.extend(redundancy_findings(d, &ix, &fks, &red));
    for (n, i) in ix.iter().enumerate() {
        if scans[n] != Some(0) {
            continue;
        }
        let Some(note) = unused_verdict(&ix, n, &fks, &red) else {
            continue;
        };
        let detail = format!(
            "never scanned {since}; it still costs on every write (scans on standbys are not \
             counted here: check them before dropping){note}"
        );
        out.push(Finding {
            kind: "unused".into(),
            table: i.display_table(),
            index: Some(i.name.clone()),
            size_bytes: i.size_bytes,
            detail,
            fix: Some(d.drop_index(i)),
        });
    }
    out.extend(fk_findings(d, &ix, &fks));

    let bloat = client
        .query(
            "SELECT schemaname::text, relname::text, n_live_tup, n_dead_tup,
                    pg_table_size(relid),
                    to_char(greatest(last_vacuum, last_autovacuum) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')
             FROM pg_stat_user_tables
             WHERE n_dead_tup > 1000 AND n_dead_tup > 0.2 * (n_live_tup + n_dead_tup)
             ORDER BY n_dead_tup DESC",
            &[],
        )
        .await
        .map_err(db_err)?;
    for r in &bloat {
        let (schema, table): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let live: i64 = r.try_get(2)?;
        let dead: i64 = r.try_get(3)?;
        let size: i64 = r.try_get(4)?;
        let last: Option<String> = r.try_get(5)?;
        let share = dead as f64 / (live + dead).max(1) as f64;
        let wasted = (size as f64 * share) as i64;
        out.push(Finding {
            kind: "bloat".into(),
            table: display(&schema, &table),
            index: None,
            size_bytes: Some(wasted),
            detail: format!(
                "estimate from the statistics: {dead} dead row versions of {} ({:.0} %), about {} \
                 of {} not yet reusable; last vacuum {}",
                live + dead,
                share * 100.0,
                human(wasted),
                human(size),
                last.as_deref().unwrap_or("never")
            ),
            fix: Some(format!("VACUUM (ANALYZE) {};", d.table(&schema, &table))),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// slow-queries

/// The `top` statements of the current database by total time, from pg_stat_statements
/// (installed in this database, loaded by the server).
pub async fn slow_queries(c: &PgConn, top: u32) -> Result<SlowQueries> {
    let client = c.client();
    let (db, schema): (String, Option<String>) = {
        let r = client
            .query_one(
                "SELECT current_database()::text,
                        (SELECT n.nspname::text FROM pg_extension e
                           JOIN pg_namespace n ON n.oid = e.extnamespace
                          WHERE e.extname = 'pg_stat_statements')",
                &[],
            )
            .await
            .map_err(db_err)?;
        (r.try_get(0)?, r.try_get(1)?)
    };
    let Some(schema) = schema else {
        bail!("pg_stat_statements is not installed in database {db}: {PGSS_HINT}");
    };
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(db_err)?
        .try_get(0)?;
    // PostgreSQL 13 split planning from execution time and renamed the columns.
    let (total, mean) = if version >= 130000 {
        ("total_exec_time", "mean_exec_time")
    } else {
        ("total_time", "mean_time")
    };
    let sql = format!(
        "SELECT calls, {total}, {mean}, rows, query
         FROM {}.pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY {total} DESC LIMIT $1",
        quote_ident(&schema)
    );
    let rows = match client.query(&sql, &[&i64::from(top)]).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => {
            bail!("pg_stat_statements is installed in database {db} but not loaded: {PGSS_HINT}")
        }
        Err(e) => return Err(db_err(e)).context("reading pg_stat_statements"),
    };
    let queries = rows
        .iter()
        .map(|r| {
            Ok(SlowQuery {
                calls: r.try_get(0)?,
                total_ms: r.try_get(1)?,
                mean_ms: r.try_get(2)?,
                rows: r.try_get(3)?,
                query: r.try_get::<_, Option<String>>(4)?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SlowQueries {
        queries,
        notes: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// cleanup

/// The batched DELETE of `cleanup` on PostgreSQL: by primary key when the table has one,
/// else by ctid (both within one statement, so the rows cannot move in between). `$1` is the
/// cutoff as text.
pub fn purge_sql(table: &str, column: &str, key: &[String], batch: u32) -> String {
    let col = quote_ident(column);
    if key.is_empty() {
        format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
             WHERE {col} < $1::text::timestamptz LIMIT {batch}))"
        )
    } else {
        let k = key
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "DELETE FROM {table} WHERE ({k}) IN (SELECT {k} FROM {table} \
             WHERE {col} < $1::text::timestamptz LIMIT {batch})"
        )
    }
}

/// The journal table and its time column checked, the cutoff read from the server.
pub async fn purge_plan(
    c: &PgConn,
    t: &TableRef,
    column: &str,
    days: i32,
    batch: u32,
) -> Result<Purge> {
    let client = c.client();
    let q = quoted_table(t);
    let row = client
        .query_one(
            "SELECT to_regclass($1::text) IS NOT NULL,
                    (SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1::text)),
                    (SELECT t.typcategory::text FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                      WHERE a.attrelid = to_regclass($1::text) AND a.attname = $2 AND NOT a.attisdropped),
                    ARRAY(SELECT a.attname::text
                          FROM pg_constraint k, unnest(k.conkey) WITH ORDINALITY u(attnum, ord)
                          JOIN pg_attribute a ON a.attnum = u.attnum
                          WHERE k.conrelid = to_regclass($1::text) AND k.contype = 'p'
                            AND a.attrelid = k.conrelid
                          ORDER BY u.ord),
                    current_database()::text",
            &[&q, &column],
        )
        .await
        .map_err(db_err)?;
    let exists: bool = row.try_get(0)?;
    let db: String = row.try_get(4)?;
    if !exists {
        bail!("maintenance.journal_table {t} does not exist in database {db}");
    }
    let kind: Option<String> = row.try_get(1)?;
    let category: Option<String> = row.try_get(2)?;
    let key: Vec<String> = row.try_get(3)?;
    match category.as_deref() {
        None => bail!("maintenance.journal_time_column: {t} has no column {column}"),
        Some("D") => {}
        Some(_) => {
            bail!("maintenance.journal_time_column: {t}.{column} is not a date or timestamp column")
        }
    }
    if key.is_empty() && kind.as_deref() == Some("p") {
        bail!("{t} is partitioned and has no primary key: its rows cannot be deleted in batches");
    }
    let cutoff: String = client
        .query_one("SELECT (now() - make_interval(days => $1))::text", &[&days])
        .await
        .map_err(db_err)?
        .try_get(0)?;
    let col = quote_ident(column);
    Ok(Purge {
        table: t.to_string(),
        cutoff,
        count_sql: format!("SELECT count(*) FROM {q} WHERE {col} < $1::text::timestamptz"),
        batch_sql: purge_sql(&q, column, &key, batch),
    })
}

/// The rows older than the cutoff.
pub async fn purge_count(c: &PgConn, p: &Purge) -> Result<u64> {
    let n: i64 = c
        .client()
        .query_one(&p.count_sql, &[&p.cutoff])
        .await
        .map_err(db_err)?
        .try_get(0)?;
    Ok(n.max(0) as u64)
}

/// Deletes one batch (the statement autocommits); the rows deleted.
pub async fn purge_batch(c: &PgConn, p: &Purge) -> Result<u64> {
    c.client()
        .execute(&p.batch_sql, &[&p.cutoff])
        .await
        .map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        let t = TableRef::new("metier", "citoyens");
        assert_eq!(
            table_statement(Work::Analyze, &t),
            "ANALYZE \"metier\".\"citoyens\""
        );
        assert_eq!(
            table_statement(Work::Vacuum { full: false }, &t),
            "VACUUM (ANALYZE) \"metier\".\"citoyens\""
        );
        assert_eq!(
            table_statement(Work::Vacuum { full: true }, &t),
            "VACUUM (FULL, ANALYZE) \"metier\".\"citoyens\""
        );
    }

    #[test]
    fn purge_statements_batch_and_quote() {
        assert_eq!(
            purge_sql(
                "\"metier\".\"journal_audit\"",
                "horodatage",
                &["id".into()],
                500
            ),
            "DELETE FROM \"metier\".\"journal_audit\" WHERE (\"id\") IN (SELECT \"id\" FROM \
             \"metier\".\"journal_audit\" WHERE \"horodatage\" < $1::text::timestamptz LIMIT 500)"
        );
        assert!(purge_sql("t", "h\"x", &[], 2).starts_with(
            "DELETE FROM t WHERE ctid = ANY(ARRAY(SELECT ctid FROM t WHERE \"h\"\"x\" < "
        ));
    }
}
