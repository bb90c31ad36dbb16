//! MySQL's and MariaDB's side of maintenance: the statements and catalogue queries behind
//! `maintenance analyze | vacuum | index-report | slow-queries | cleanup` on MySQL/MariaDB,
//! reached through the feature's visitors in `maintenance/mod.rs`. What is read here is
//! judged by the engine-free core; quoting is the driver's.
//!
//! Quirks handled here and only here:
//! - ANALYZE/OPTIMIZE TABLE report a failure as a result row (`Msg_type` `error`), not as an
//!   error ([`admin_messages`]); InnoDB answers OPTIMIZE with the note "doing recreate +
//!   analyze instead", which is its normal way. MySQL has no lighter VACUUM: OPTIMIZE TABLE
//!   rebuilds the table.
//! - InnoDB needs an index on every foreign key and refuses to drop the only one (on every
//!   engine, such an index is never called unused: the report would then ask for it back).
//! - Index usage and statement digests come from performance_schema, which may be off; the
//!   server has no session setting that bounds every catalogue query, so the target's
//!   statement timeout bounds them here ([`crate::engine::bounded`]).
//! - A `schema.table` is the model's prefixed table of the current database
//!   (`metier_citoyens`), else the table itself, else a table of database `schema`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use mysql_async::prelude::Queryable;

use super::{
    ago, find_redundant, human, int, missing_tables_error, redundancy_findings, text,
    unused_verdict, ColumnRows, Dialect, Finding, ForeignKey, IndexDef, KeyCol, Purge, SlowQueries,
    SlowQuery, TableTask, Work,
};
use crate::catalog::TableRef;
use crate::engine::bounded;
use crate::engine::mysql::{my_err, quote_ident, MyConn};

/// How to turn performance_schema on, in one line.
pub const PERFORMANCE_SCHEMA_HINT: &str = "set performance_schema = ON in the [mysqld] \
     section of the server's option file (my.cnf) and restart the server";

/// Text rows of a MySQL query (the text protocol: administration statements such as
/// ANALYZE TABLE are not all preparable).
async fn text_rows(c: &MyConn, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let mut conn = c.conn().await;
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.map_err(my_err)?;
    Ok(rows.iter().map(row_text).collect())
}

/// Rows of a prepared MySQL query, as text.
async fn exec_rows(
    c: &MyConn,
    sql: &str,
    params: impl Into<mysql_async::Params> + Send,
) -> Result<Vec<Vec<Option<String>>>> {
    let mut conn = c.conn().await;
    let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await.map_err(my_err)?;
    Ok(rows.iter().map(row_text).collect())
}

fn row_text(r: &mysql_async::Row) -> Vec<Option<String>> {
    (0..r.len())
        .map(|i| match r.as_ref(i) {
            None | Some(mysql_async::Value::NULL) => None,
            Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(mysql_async::Value::Int(n)) => Some(n.to_string()),
            Some(mysql_async::Value::UInt(n)) => Some(n.to_string()),
            Some(mysql_async::Value::Double(n)) => Some(n.to_string()),
            Some(mysql_async::Value::Float(n)) => Some(n.to_string()),
            Some(v) => Some(v.as_sql(true).trim_matches('\'').to_string()),
        })
        .collect()
}

/// Where a `schema.table` lives on MySQL, as `MyConn` reads it: the model's prefixed table
/// of the current database, else (schema `public`) the table itself, else database `schema`.
async fn resolve(c: &MyConn, current: &str, t: &TableRef) -> Result<(String, String)> {
    let prefixed = t.prefixed();
    let found = exec_rows(
        c,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
        (prefixed.clone(),),
    )
    .await?;
    if !found.is_empty() {
        return Ok((current.to_string(), prefixed));
    }
    if t.schema == "public" {
        return Ok((current.to_string(), t.name.clone()));
    }
    Ok((t.schema.clone(), t.name.clone()))
}

async fn current_db(c: &MyConn) -> Result<String> {
    let rows = text_rows(c, "SELECT DATABASE()").await?;
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| anyhow!("the connection has no current database"))
}

// ---------------------------------------------------------------------------------------------
// analyze and vacuum

/// MySQL has no lighter VACUUM: OPTIMIZE TABLE rebuilds the table (and `--full` changes
/// nothing).
pub fn table_statement(work: Work, database: &str, table: &str) -> String {
    let t = Dialect::Mysql.table(database, table);
    match work {
        Work::Analyze => format!("ANALYZE TABLE {t}"),
        Work::Vacuum { .. } => format!("OPTIMIZE TABLE {t}"),
    }
}

/// The messages of ANALYZE/OPTIMIZE TABLE rows (Table, Op, Msg_type, Msg_text): an `error`
/// row is a failure of that table; notes and warnings are kept for the report; the plain
/// "OK" and "already up to date" statuses are not news.
pub fn admin_messages(rows: &[Vec<Option<String>>]) -> Result<Vec<String>> {
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    for r in rows {
        let kind = text(r, 2).to_ascii_lowercase();
        let msg = text(r, 3);
        match kind.as_str() {
            "error" => errors.push(msg),
            "status" if msg == "OK" || msg == "Table is already up to date" => {}
            _ => {
                let m = if kind == "status" {
                    msg
                } else {
                    format!("{kind}: {msg}")
                };
                if !notes.contains(&m) {
                    notes.push(m);
                }
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(notes)
}

/// Every base table of the current database, or the named ones (resolved as [`resolve`]
/// reads them), each of which must exist.
pub async fn plan(c: &MyConn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
    let current = current_db(c).await?;
    let mut tables: Vec<(String, String)> = Vec::new();
    if named.is_empty() {
        let rows = text_rows(
            c,
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
        .await?;
        tables.extend(rows.iter().map(|r| (current.clone(), text(r, 0))));
    } else {
        let mut missing = Vec::new();
        for t in named {
            let (db, name) = resolve(c, &current, t).await?;
            let exists = exec_rows(
                c,
                "SELECT 1 FROM information_schema.tables
                 WHERE table_schema = ? AND table_name = ? AND table_type = 'BASE TABLE'",
                (db.clone(), name.clone()),
            )
            .await?;
            if exists.is_empty() {
                missing.push(t.to_string());
            } else {
                tables.push((db, name));
            }
        }
        if !missing.is_empty() {
            return Err(missing_tables_error(
                &missing,
                &format!(
                    "database {current} (looked for the prefixed tables too, e.g. metier_citoyens)"
                ),
            ));
        }
    }
    let action = match work {
        Work::Analyze => "analyze",
        Work::Vacuum { .. } => "optimize",
    };
    Ok(tables
        .into_iter()
        .map(|(db, name)| TableTask {
            table: if db == current {
                name.clone()
            } else {
                format!("{db}.{name}")
            },
            action: action.into(),
            statements: vec![table_statement(work, &db, &name)],
            note: String::new(),
            refused: None,
        })
        .collect())
}

/// Runs one table's statements; their notes and warnings, an `error` row failing the table.
pub async fn run_task(c: &MyConn, task: &TableTask) -> Result<String> {
    let mut notes = Vec::new();
    for s in &task.statements {
        let rows = text_rows(c, s).await?;
        notes.extend(admin_messages(&rows)?);
    }
    Ok(notes.join("; "))
}

// ---------------------------------------------------------------------------------------------
// index-report

/// Redundant and unused indexes (from performance_schema, when it is on) and fragmented
/// tables; InnoDB's foreign-key indexes are never called unused.
pub async fn index_report(c: &MyConn, timeout: Duration) -> Result<Vec<Finding>> {
    let d = Dialect::Mysql;
    let stats = bounded(
        timeout,
        text_rows(
            c,
            "SELECT table_name, index_name, non_unique, seq_in_index, column_name, sub_part,
                collation, index_type
         FROM information_schema.statistics WHERE table_schema = DATABASE()",
        ),
    )
    .await?;
    // Index sizes: InnoDB's persistent statistics, in pages. Reading them needs a privilege
    // on the mysql schema; without it sizes are simply unknown.
    let page: i64 = text_rows(c, "SELECT @@innodb_page_size")
        .await
        .ok()
        .and_then(|r| r.first().map(|r| int(r, 0)))
        .unwrap_or(16384);
    let sizes: BTreeMap<(String, String), i64> = text_rows(
        c,
        "SELECT table_name, index_name, stat_value FROM mysql.innodb_index_stats
         WHERE database_name = DATABASE() AND stat_name = 'size'",
    )
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| ((text(r, 0), text(r, 1)), int(r, 2) * page))
            .collect()
    })
    .unwrap_or_default();

    // Indexes in the order the server lists them (its definition order): the older first.
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut meta: BTreeMap<(String, String), (bool, String, bool)> = BTreeMap::new();
    let mut cols = ColumnRows::default();
    for r in &stats {
        let (table, name) = (text(r, 0), text(r, 1));
        let id = (table.clone(), name.clone());
        if !meta.contains_key(&id) {
            ids.push(id.clone());
        }
        let column = r.get(4).cloned().flatten();
        let entry = meta
            .entry(id)
            .or_insert((int(r, 2) == 0, text(r, 7), false));
        if column.is_none() {
            entry.2 = true; // a functional key part (MySQL 8)
        }
        let spec = format!(
            "{}/{}",
            r.get(5).cloned().flatten().unwrap_or_default(),
            text(r, 6)
        );
        cols.key(
            (String::new(), table, name),
            int(r, 3),
            KeyCol {
                column: column.unwrap_or_default(),
                spec,
            },
        );
    }
    let ix: Vec<IndexDef> = ids
        .iter()
        .enumerate()
        .map(|(n, (table, name))| {
            let (unique, method, expression) = meta
                .get(&(table.clone(), name.clone()))
                .cloned()
                .unwrap_or_default();
            let id = (String::new(), table.clone(), name.clone());
            IndexDef {
                schema: String::new(),
                table: table.clone(),
                name: name.clone(),
                keys: cols.keys_of(&id),
                include: Vec::new(),
                method,
                unique,
                primary: name == "PRIMARY",
                constraint: None,
                partial: false,
                expression,
                valid: true,
                size_bytes: sizes.get(&(table.clone(), name.clone())).copied(),
                order: n as i64,
            }
        })
        .collect();

    let fk_rows = bounded(timeout, text_rows(
        c,
        "SELECT table_name, constraint_name, column_name, ordinal_position, referenced_table_name
         FROM information_schema.key_column_usage
         WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL
         ORDER BY table_name, constraint_name, ordinal_position",
    ))
    .await?;
    let mut fks: Vec<ForeignKey> = Vec::new();
    for r in &fk_rows {
        let (table, name, column) = (text(r, 0), text(r, 1), text(r, 2));
        match fks.last_mut() {
            Some(fk) if fk.table == table && fk.name == name => fk.columns.push(column),
            _ => fks.push(ForeignKey {
                schema: String::new(),
                table,
                name,
                columns: vec![column],
                references: text(r, 4),
            }),
        }
    }

    let red = find_redundant(&ix);
    let mut out = redundancy_findings(d, &ix, &fks, &red);

    let ps_on = text_rows(c, "SELECT @@performance_schema")
        .await
        .ok()
        .and_then(|r| r.first().map(|r| int(r, 0)))
        .unwrap_or(0)
        == 1;
    if !ps_on {
        out.push(Finding {
            kind: "notice".into(),
            table: String::new(),
            index: None,
            size_bytes: None,
            detail: format!(
                "unused indexes cannot be told: performance_schema is off; {PERFORMANCE_SCHEMA_HINT}"
            ),
            fix: None,
        });
    } else {
        let usage = bounded(
            timeout,
            text_rows(
                c,
                "SELECT object_name, index_name, count_star
             FROM performance_schema.table_io_waits_summary_by_index_usage
             WHERE object_schema = DATABASE() AND index_name IS NOT NULL",
            ),
        )
        .await?;
        let uptime = text_rows(c, "SHOW GLOBAL STATUS LIKE 'Uptime'")
            .await
            .ok()
            .and_then(|r| r.first().map(|r| int(r, 1)))
            .unwrap_or(0);
        if usage.is_empty() && !ix.is_empty() {
            out.push(Finding {
                kind: "notice".into(),
                table: String::new(),
                index: None,
                size_bytes: None,
                detail: "performance_schema holds no index statistics for this database yet \
                         (no table opened since the server started, or the \
                         wait/io/table/sql/handler instrument is disabled): unused indexes \
                         cannot be told"
                    .into(),
                fix: None,
            });
        }
        for r in usage.iter().filter(|r| int(r, 2) == 0) {
            let (table, name) = (text(r, 0), text(r, 1));
            let Some(n) = ix.iter().position(|i| i.table == table && i.name == name) else {
                continue;
            };
            let i = &ix[n];
            // InnoDB also refuses to drop the only index of a foreign key.
            let Some(note) = unused_verdict(&ix, n, &fks, &red) else {
                continue;
            };
            out.push(Finding {
                kind: "unused".into(),
                table: table.clone(),
                index: Some(name.clone()),
                size_bytes: i.size_bytes,
                detail: format!(
                    "no reads or writes through it since the server started {} ago \
                     (performance_schema counts start again at each restart){note}",
                    ago(uptime)
                ),
                fix: Some(d.drop_index(i)),
            });
        }
    }

    let frag = bounded(
        timeout,
        text_rows(
            c,
            "SELECT table_name, data_length, index_length, data_free, engine
         FROM information_schema.tables
         WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'
           AND data_free > 10485760 AND data_free > 0.2 * data_length",
        ),
    )
    .await?;
    for r in &frag {
        let table = text(r, 0);
        let (data, index, free) = (int(r, 1), int(r, 2), int(r, 3));
        out.push(Finding {
            kind: "fragmentation".into(),
            table: table.clone(),
            index: None,
            size_bytes: Some(free),
            detail: format!(
                "estimate from information_schema: {} free inside the table's space against {} \
                 of data and {} of indexes ({:.0} % of the data; in a shared tablespace this is \
                 the tablespace's free space)",
                human(free),
                human(data),
                human(index),
                free as f64 * 100.0 / data.max(1) as f64
            ),
            fix: Some(format!("OPTIMIZE TABLE {};", d.ident(&table))),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// slow-queries

/// The `top` statements of the current database by total time, from performance_schema's
/// digests; the whole read bounded by `timeout`.
pub async fn slow_queries(c: &MyConn, top: u32, timeout: Duration) -> Result<SlowQueries> {
    bounded(timeout, read_digests(c, top)).await
}

async fn read_digests(c: &MyConn, top: u32) -> Result<SlowQueries> {
    let on = text_rows(c, "SELECT @@performance_schema").await?;
    if on.first().map(|r| int(r, 0)) != Some(1) {
        bail!("performance_schema is off on this server: {PERFORMANCE_SCHEMA_HINT}");
    }
    let digest = text_rows(
        c,
        "SELECT enabled FROM performance_schema.setup_consumers WHERE name = 'statements_digest'",
    )
    .await?;
    if digest.first().map(|r| text(r, 0)).as_deref() == Some("NO") {
        bail!(
            "performance_schema does not keep statement digests: run UPDATE \
             performance_schema.setup_consumers SET enabled = 'YES' WHERE name = \
             'statements_digest' (and add performance-schema-consumer-statements-digest = ON \
             to the option file to keep it after a restart)"
        );
    }
    // A full digest table counts every statement first seen since under one NULL digest:
    // those are missing from the list, which the DBA must know.
    let mut notes = Vec::new();
    let fill = text_rows(
        c,
        "SELECT COUNT(*), @@performance_schema_digests_size
         FROM performance_schema.events_statements_summary_by_digest",
    )
    .await?;
    if let Some(r) = fill.first() {
        let (rows, size) = (int(r, 0), int(r, 1));
        if size > 0 && rows >= size {
            notes.push(format!(
                "performance_schema's digest table is full ({rows} of {size} rows): statements \
                 first seen since are not listed; run TRUNCATE TABLE \
                 performance_schema.events_statements_summary_by_digest to start afresh, or \
                 raise performance_schema_digests_size"
            ));
        }
    }
    // Timers are in picoseconds.
    let rows = exec_rows(
        c,
        "SELECT COUNT_STAR, SUM_TIMER_WAIT / 1000000000, AVG_TIMER_WAIT / 1000000000,
                SUM_ROWS_SENT + SUM_ROWS_AFFECTED, DIGEST_TEXT
         FROM performance_schema.events_statements_summary_by_digest
         WHERE SCHEMA_NAME = DATABASE()
         ORDER BY SUM_TIMER_WAIT DESC LIMIT ?",
        (u64::from(top),),
    )
    .await?;
    let queries = rows.iter().map(|r| SlowQuery::from_text_row(r)).collect();
    Ok(SlowQueries { queries, notes })
}

// ---------------------------------------------------------------------------------------------
// cleanup

/// MySQL: `?` is the cutoff; oldest first, so that an interrupted run leaves the newest rows.
pub fn purge_sql(table: &str, column: &str, batch: u32) -> String {
    let col = quote_ident(column);
    format!("DELETE FROM {table} WHERE {col} < ? ORDER BY {col} LIMIT {batch}")
}

/// The journal table and its time column checked, the cutoff read from the server (UTC).
pub async fn purge_plan(
    c: &MyConn,
    t: &TableRef,
    column: &str,
    days: i32,
    batch: u32,
) -> Result<Purge> {
    let current = current_db(c).await?;
    let (db, name) = resolve(c, &current, t).await?;
    let cols = exec_rows(
        c,
        "SELECT data_type FROM information_schema.columns
         WHERE table_schema = ? AND table_name = ? AND column_name = ?",
        (db.clone(), name.clone(), column.to_string()),
    )
    .await?;
    if cols.is_empty() {
        let exists = exec_rows(
            c,
            "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            (db.clone(), name.clone()),
        )
        .await?;
        if exists.is_empty() {
            bail!(
                "maintenance.journal_table {t} does not exist (looked for {current}.{} and {db}.{name})",
                t.prefixed()
            );
        }
        bail!("maintenance.journal_time_column: {db}.{name} has no column {column}");
    }
    let data_type = text(&cols[0], 0).to_ascii_lowercase();
    if !["date", "datetime", "timestamp"].contains(&data_type.as_str()) {
        bail!(
            "maintenance.journal_time_column: {db}.{name}.{column} is {data_type}, not a date or timestamp"
        );
    }
    // The session's time zone is UTC (see mysql.rs), as are the model's DATETIME columns.
    let cutoff = exec_rows(
        c,
        "SELECT DATE_FORMAT(UTC_TIMESTAMP(6) - INTERVAL ? DAY, '%Y-%m-%d %H:%i:%s.%f')",
        (days,),
    )
    .await?;
    let cutoff = cutoff
        .first()
        .map(|r| text(r, 0))
        .ok_or_else(|| anyhow!("the server gave no time"))?;
    let q = Dialect::Mysql.table(&db, &name);
    Ok(Purge {
        table: if db == current {
            name.clone()
        } else {
            format!("{db}.{name}")
        },
        cutoff,
        count_sql: format!("SELECT COUNT(*) FROM {q} WHERE {} < ?", quote_ident(column)),
        batch_sql: purge_sql(&q, column, batch),
    })
}

/// The rows older than the cutoff.
pub async fn purge_count(c: &MyConn, p: &Purge) -> Result<u64> {
    let rows = exec_rows(c, &p.count_sql, (p.cutoff.clone(),)).await?;
    Ok(rows.first().map(|r| int(r, 0)).unwrap_or(0).max(0) as u64)
}

/// Deletes one batch (the statement autocommits); the rows deleted.
pub async fn purge_batch(c: &MyConn, p: &Purge) -> Result<u64> {
    let mut conn = c.conn().await;
    conn.exec_drop(&p.batch_sql, (p.cutoff.clone(),))
        .await
        .map_err(my_err)?;
    Ok(conn.affected_rows())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(
            table_statement(Work::Analyze, "mairie", "metier_citoyens"),
            "ANALYZE TABLE `mairie`.`metier_citoyens`"
        );
        assert_eq!(
            table_statement(Work::Vacuum { full: true }, "m", "a`b"),
            "OPTIMIZE TABLE `m`.`a``b`"
        );
    }

    #[test]
    fn purge_statements_batch_and_quote() {
        assert_eq!(
            purge_sql("`m`.`metier_journal_audit`", "horodatage", 2),
            "DELETE FROM `m`.`metier_journal_audit` WHERE `horodatage` < ? ORDER BY `horodatage` LIMIT 2"
        );
    }

    #[test]
    fn mysql_admin_rows_fail_on_errors_and_keep_notes() {
        let row = |t: &str, m: &str| {
            vec![
                Some("m.t".to_string()),
                Some("optimize".to_string()),
                Some(t.to_string()),
                Some(m.to_string()),
            ]
        };
        let notes = admin_messages(&[
            row(
                "note",
                "Table does not support optimize, doing recreate + analyze instead",
            ),
            row("status", "OK"),
        ])
        .unwrap();
        assert_eq!(
            notes,
            vec!["note: Table does not support optimize, doing recreate + analyze instead"]
        );
        assert!(
            admin_messages(&[row("status", "Table is already up to date")])
                .unwrap()
                .is_empty()
        );
        let e = admin_messages(&[
            row("Error", "Table 'm.t' doesn't exist"),
            row("status", "Operation failed"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("doesn't exist"), "{e}");
    }
}
