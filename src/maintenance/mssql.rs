//! SQL Server's side of maintenance: the statements and catalogue queries behind
//! `maintenance analyze | vacuum | index-report | slow-queries | cleanup` on SQL Server,
//! reached through the feature's visitors in `maintenance/mod.rs`. What is read here is
//! judged by the engine-free core; quoting is the driver's.
//!
//! Quirks handled here and only here:
//! - ANALYZE's counterpart is UPDATE STATISTICS; VACUUM's is index maintenance chosen by
//!   fragmentation (REORGANIZE from 5 %, REBUILD above 30 %, [`index_action`]).
//! - The optimizer's missing-index suggestions come as bracketed lists, turned into a
//!   CREATE INDEX here ([`missing_index_sql`]); the database of a cached plan is its `dbid`
//!   attribute ([`slow_queries_sql`]).
//! - DELETE TOP (n) batches the clean-up; the batches take no parameters, so the cutoff is a
//!   literal.
//!
//! The pure builders here are unit-tested: no SQL Server runs on the development machines.

use std::collections::{BTreeMap, HashSet};

use anyhow::{anyhow, bail, Result};

use super::{
    display, find_redundant, fk_findings, index_name, int, missing_tables_error, num, opt_int,
    redundancy_findings, text, unused_verdict, ColumnRows, Dialect, Finding, ForeignKey, IndexDef,
    KeyCol, Purge, SlowQueries, SlowQuery, TableTask, Work,
};
use crate::catalog::TableRef;
use crate::engine::mssql::nstring;
use crate::engine::mssql::{quote_ident, quoted_table, MsConn};

// ---------------------------------------------------------------------------------------------
// analyze and vacuum

/// What SQL Server's index maintenance does at a fragmentation: Microsoft's long-standing
/// guidance, REORGANIZE from 5 %, REBUILD above 30 %; `full` rebuilds every index.
pub fn index_action(fragmentation_percent: f64, full: bool) -> Option<&'static str> {
    if full || fragmentation_percent > 30.0 {
        Some("REBUILD")
    } else if fragmentation_percent >= 5.0 {
        Some("REORGANIZE")
    } else {
        None
    }
}

/// The ALTER INDEX that reorganizes or rebuilds an index of `table` (already quoted).
pub fn index_statement(index: &str, table: &str, action: &str) -> String {
    format!("ALTER INDEX {} ON {table} {action};", quote_ident(index))
}

/// Every user table, or the named ones (each of which must exist); for VACUUM, each index's
/// fragmentation read now decides its statement.
pub async fn plan(c: &MsConn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
    let mut tables: Vec<(String, String)> = Vec::new();
    if named.is_empty() {
        let rows = c
            .text_rows(
                "SELECT s.name, t.name FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
                 WHERE t.is_ms_shipped = 0 ORDER BY s.name, t.name",
            )
            .await?;
        tables.extend(rows.iter().map(|r| (text(r, 0), text(r, 1))));
    } else {
        let mut missing = Vec::new();
        for t in named {
            let q = quoted_table(t);
            let found = c
                .scalar_i64(&format!(
                    "SELECT CASE WHEN OBJECT_ID({}, N'U') IS NULL THEN 0 ELSE 1 END",
                    nstring(&q)
                ))
                .await?;
            if found == Some(1) {
                let schema = if t.schema == "public" {
                    "dbo".to_string()
                } else {
                    t.schema.clone()
                };
                tables.push((schema, t.name.clone()));
            } else {
                missing.push(t.to_string());
            }
        }
        if !missing.is_empty() {
            return Err(missing_tables_error(&missing, "the database"));
        }
    }
    let mut out = Vec::with_capacity(tables.len());
    for (schema, name) in tables {
        let q = Dialect::Mssql.table(&schema, &name);
        let task = match work {
            Work::Analyze => TableTask {
                table: format!("{schema}.{name}"),
                action: "update statistics".into(),
                statements: vec![format!("UPDATE STATISTICS {q};")],
                note: String::new(),
                refused: None,
            },
            Work::Vacuum { full } => {
                let rows = c
                    .text_rows(&format!(
                        "SELECT i.name, CONVERT(nvarchar(40), CAST(ps.avg_fragmentation_in_percent AS decimal(9, 2))),
                                CONVERT(nvarchar(40), ps.page_count)
                         FROM sys.dm_db_index_physical_stats(DB_ID(), OBJECT_ID({}), NULL, NULL, 'LIMITED') ps
                         JOIN sys.indexes i ON i.object_id = ps.object_id AND i.index_id = ps.index_id
                         WHERE ps.index_id > 0 AND ps.alloc_unit_type_desc = N'IN_ROW_DATA'
                           AND i.is_disabled = 0 AND i.is_hypothetical = 0
                         ORDER BY i.index_id",
                        nstring(&q)
                    ))
                    .await?;
                let mut statements = Vec::new();
                let mut notes = Vec::new();
                let mut seen = HashSet::new();
                for r in &rows {
                    let index = text(r, 0);
                    // A partitioned index has a row per partition: it is rebuilt once.
                    if !seen.insert(index.clone()) {
                        continue;
                    }
                    let frag = num(r, 1);
                    match index_action(frag, full) {
                        Some(a) => {
                            notes.push(format!("{index} {frag:.1} % -> {a}"));
                            statements.push(index_statement(&index, &q, a));
                        }
                        None => notes.push(format!("{index} {frag:.1} %: left alone")),
                    }
                }
                TableTask {
                    table: format!("{schema}.{name}"),
                    action: if full { "rebuild" } else { "index maintenance" }.into(),
                    statements,
                    note: if notes.is_empty() {
                        "no index".into()
                    } else {
                        notes.join("; ")
                    },
                    refused: None,
                }
            }
        };
        out.push(task);
    }
    Ok(out)
}

/// Runs one table's statements; the note planned with them (each index's fragmentation).
pub async fn run_task(c: &MsConn, task: &TableTask) -> Result<String> {
    for s in &task.statements {
        c.batch(s).await?;
    }
    Ok(task.note.clone())
}

// ---------------------------------------------------------------------------------------------
// index-report

/// Redundant and unused indexes, foreign keys without an index, fragmentation and the
/// optimizer's missing indexes.
pub async fn index_report(c: &MsConn) -> Result<Vec<Finding>> {
    let d = Dialect::Mssql;
    let rows = c
        .text_rows(
            "SELECT s.name, t.name, i.name, CONVERT(nvarchar(20), i.index_id),
                    CONVERT(nvarchar(1), i.is_unique), CONVERT(nvarchar(1), i.is_primary_key),
                    CONVERT(nvarchar(1), i.is_unique_constraint), CONVERT(nvarchar(1), i.has_filter),
                    CONVERT(nvarchar(20), ic.key_ordinal), CONVERT(nvarchar(1), ic.is_included_column),
                    CONVERT(nvarchar(1), ic.is_descending_key), c.name,
                    CONVERT(nvarchar(30), (SELECT SUM(ps.used_page_count) FROM sys.dm_db_partition_stats ps
                                           WHERE ps.object_id = i.object_id AND ps.index_id = i.index_id) * 8192),
                    CONVERT(nvarchar(1), i.type)
             FROM sys.indexes i
             JOIN sys.tables t ON t.object_id = i.object_id
             JOIN sys.schemas s ON s.schema_id = t.schema_id
             JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
             JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
             WHERE t.is_ms_shipped = 0 AND i.type IN (1, 2) AND i.is_hypothetical = 0 AND i.is_disabled = 0
             ORDER BY s.name, t.name, i.index_id, ic.key_ordinal, ic.index_column_id",
        )
        .await?;
    let ix = indexes(&rows);
    let fk_rows = c
        .text_rows(
            "SELECT SCHEMA_NAME(t.schema_id), t.name, fk.name, c.name,
                    CONVERT(nvarchar(20), fkc.constraint_column_id),
                    SCHEMA_NAME(rt.schema_id) + N'.' + rt.name
             FROM sys.foreign_keys fk
             JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id
             JOIN sys.tables t ON t.object_id = fk.parent_object_id
             JOIN sys.columns c ON c.object_id = fkc.parent_object_id AND c.column_id = fkc.parent_column_id
             JOIN sys.tables rt ON rt.object_id = fk.referenced_object_id
             WHERE t.is_ms_shipped = 0
             ORDER BY 1, 2, 3, fkc.constraint_column_id",
        )
        .await?;
    let mut fks: Vec<ForeignKey> = Vec::new();
    for r in &fk_rows {
        let (schema, table, name) = (text(r, 0), text(r, 1), text(r, 2));
        match fks.last_mut() {
            Some(fk) if fk.schema == schema && fk.table == table && fk.name == name => {
                fk.columns.push(text(r, 3))
            }
            _ => fks.push(ForeignKey {
                schema,
                table,
                name,
                columns: vec![text(r, 3)],
                references: text(r, 5),
            }),
        }
    }
    let red = find_redundant(&ix);
    let mut out = redundancy_findings(d, &ix, &fks, &red);

    let started = c
        .scalar_string(
            "SELECT CONVERT(nvarchar(30), sqlserver_start_time, 120) FROM sys.dm_os_sys_info",
        )
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "the last restart".into());
    let unused = c
        .text_rows(
            "SELECT s.name, t.name, i.name, CONVERT(nvarchar(30), ISNULL(u.user_updates, 0))
             FROM sys.indexes i
             JOIN sys.tables t ON t.object_id = i.object_id
             JOIN sys.schemas s ON s.schema_id = t.schema_id
             LEFT JOIN sys.dm_db_index_usage_stats u
                    ON u.database_id = DB_ID() AND u.object_id = i.object_id AND u.index_id = i.index_id
             WHERE t.is_ms_shipped = 0 AND i.type = 2 AND i.is_primary_key = 0 AND i.is_unique = 0
               AND i.is_unique_constraint = 0 AND i.is_hypothetical = 0 AND i.is_disabled = 0
               AND ISNULL(u.user_seeks, 0) + ISNULL(u.user_scans, 0) + ISNULL(u.user_lookups, 0) = 0",
        )
        .await?;
    for r in &unused {
        let (schema, table, name) = (text(r, 0), text(r, 1), text(r, 2));
        let Some(n) = ix
            .iter()
            .position(|i| i.schema == schema && i.table == table && i.name == name)
        else {
            continue;
        };
        let i = &ix[n];
        let Some(note) = unused_verdict(&ix, n, &fks, &red) else {
            continue;
        };
        let detail = format!(
            "no seeks, scans or lookups since {started} (the usage counters restart with the \
             server and, on some versions, with an index rebuild); {} writes maintained it{note}",
            int(r, 3)
        );
        out.push(Finding {
            kind: "unused".into(),
            table: i.display_table(),
            index: Some(name),
            size_bytes: i.size_bytes,
            detail,
            fix: Some(d.drop_index(i)),
        });
    }
    out.extend(fk_findings(d, &ix, &fks));

    let frag = c
        .text_rows(
            "SELECT s.name, t.name, i.name,
                    CONVERT(nvarchar(40), CAST(ps.avg_fragmentation_in_percent AS decimal(9, 2))),
                    CONVERT(nvarchar(30), ps.page_count)
             FROM sys.dm_db_index_physical_stats(DB_ID(), NULL, NULL, NULL, 'LIMITED') ps
             JOIN sys.indexes i ON i.object_id = ps.object_id AND i.index_id = ps.index_id
             JOIN sys.tables t ON t.object_id = ps.object_id
             JOIN sys.schemas s ON s.schema_id = t.schema_id
             WHERE ps.index_id > 0 AND ps.alloc_unit_type_desc = N'IN_ROW_DATA' AND t.is_ms_shipped = 0
               AND ps.page_count >= 1000 AND ps.avg_fragmentation_in_percent >= 5
             ORDER BY ps.avg_fragmentation_in_percent DESC",
        )
        .await?;
    let mut seen = HashSet::new();
    for r in &frag {
        let (schema, table, name) = (text(r, 0), text(r, 1), text(r, 2));
        if !seen.insert((schema.clone(), table.clone(), name.clone())) {
            continue;
        }
        let pct = num(r, 3);
        let pages = int(r, 4);
        let action = index_action(pct, false).unwrap_or("REORGANIZE");
        out.push(Finding {
            kind: "fragmentation".into(),
            table: display(&schema, &table),
            index: Some(name.clone()),
            size_bytes: Some(pages * 8192),
            detail: format!(
                "{pct:.1} % logical fragmentation over {pages} pages (REORGANIZE from 5 %, \
                 REBUILD above 30 %)"
            ),
            fix: Some(index_statement(&name, &d.table(&schema, &table), action)),
        });
    }

    let missing = c
        .text_rows(
            "SELECT TOP (50) d.statement, d.equality_columns, d.inequality_columns, d.included_columns,
                    CONVERT(nvarchar(30), gs.user_seeks), CONVERT(nvarchar(30), gs.user_scans),
                    CONVERT(nvarchar(40), CAST(gs.avg_user_impact AS decimal(9, 2))),
                    CONVERT(nvarchar(40), CAST(gs.avg_total_user_cost AS decimal(18, 4)))
             FROM sys.dm_db_missing_index_details d
             JOIN sys.dm_db_missing_index_groups g ON g.index_handle = d.index_handle
             JOIN sys.dm_db_missing_index_group_stats gs ON gs.group_handle = g.index_group_handle
             WHERE d.database_id = DB_ID()
             ORDER BY gs.user_seeks * gs.avg_total_user_cost * gs.avg_user_impact DESC",
        )
        .await?;
    for r in &missing {
        let statement = text(r, 0);
        let parts = unbracket_parts(&statement);
        let table = match parts.len() {
            n if n >= 2 => format!("{}.{}", parts[n - 2], parts[n - 1]),
            _ => statement.clone(),
        };
        out.push(Finding {
            kind: "missing-index".into(),
            table,
            index: None,
            size_bytes: None,
            detail: format!(
                "suggested by the optimizer: {} seeks and {} scans would have used it, for an \
                 estimated {:.0} % lower cost (suggestions overlap: review before creating)",
                int(r, 4),
                int(r, 5),
                num(r, 6)
            ),
            fix: Some(missing_index_sql(
                &statement,
                r.get(1).and_then(|v| v.as_deref()),
                r.get(2).and_then(|v| v.as_deref()),
                r.get(3).and_then(|v| v.as_deref()),
            )),
        });
    }
    Ok(out)
}

/// SQL Server's missing-index suggestion as a statement: `statement` is the table as
/// `[db].[schema].[table]`, the column lists as the DMV gives them (already bracketed,
/// comma-separated, or NULL). Equality columns lead, then inequality ones.
pub fn missing_index_sql(
    statement: &str,
    equality: Option<&str>,
    inequality: Option<&str>,
    included: Option<&str>,
) -> String {
    fn nonempty(s: Option<&str>) -> Option<&str> {
        s.map(str::trim).filter(|s| !s.is_empty())
    }
    let keys: Vec<&str> = [nonempty(equality), nonempty(inequality)]
        .into_iter()
        .flatten()
        .collect();
    let table = unbracket_parts(statement)
        .last()
        .cloned()
        .unwrap_or_else(|| "table".into());
    let key_names: Vec<String> = keys.iter().flat_map(|k| unbracket_parts(k)).collect();
    let name = index_name(&table, &key_names);
    let mut sql = format!(
        "CREATE INDEX {} ON {} ({})",
        quote_ident(&name),
        statement.trim(),
        keys.join(", ")
    );
    if let Some(inc) = nonempty(included) {
        sql.push_str(&format!(" INCLUDE ({inc})"));
    }
    sql.push(';');
    sql
}

/// The names inside `[a].[b]` or `[x], [y]`, brackets removed and `]]` undoubled.
fn unbracket_parts(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut inside = false;
    while let Some(ch) = chars.next() {
        match (inside, ch) {
            (false, '[') => inside = true,
            (true, ']') if chars.peek() == Some(&']') => {
                chars.next();
                cur.push(']');
            }
            (true, ']') => {
                inside = false;
                out.push(std::mem::take(&mut cur));
            }
            (true, c) => cur.push(c),
            _ => {}
        }
    }
    out
}

/// SQL Server's index column rows (schema, table, index, index_id, is_unique, is_primary_key,
/// is_unique_constraint, has_filter, key_ordinal, is_included_column, is_descending_key,
/// column, size, type) as index definitions.
pub fn indexes(rows: &[Vec<Option<String>>]) -> Vec<IndexDef> {
    let mut ids: Vec<(String, String, String)> = Vec::new();
    let mut first: BTreeMap<(String, String, String), &Vec<Option<String>>> = BTreeMap::new();
    let mut cols = ColumnRows::default();
    for r in rows {
        let id = (text(r, 0), text(r, 1), text(r, 2));
        if !first.contains_key(&id) {
            ids.push(id.clone());
            first.insert(id.clone(), r);
        }
        let key_ordinal = int(r, 8);
        if text(r, 9) == "1" {
            cols.include(id, text(r, 11));
        } else if key_ordinal > 0 {
            let spec = if text(r, 10) == "1" { "desc" } else { "" };
            cols.key(
                id,
                key_ordinal,
                KeyCol {
                    column: text(r, 11),
                    spec: spec.into(),
                },
            );
        }
    }
    ids.iter()
        .filter_map(|id| {
            let r = first.get(id)?;
            let unique_constraint = text(r, 6) == "1";
            let primary = text(r, 5) == "1";
            Some(IndexDef {
                schema: id.0.clone(),
                table: id.1.clone(),
                name: id.2.clone(),
                keys: cols.keys_of(id),
                include: cols.include_of(id),
                method: "rowstore".into(),
                unique: text(r, 4) == "1",
                primary,
                constraint: (primary || unique_constraint).then(|| id.2.clone()),
                partial: text(r, 7) == "1",
                expression: false,
                valid: true,
                size_bytes: opt_int(r, 12),
                order: int(r, 3),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// slow-queries

/// The SQL Server query of `slow-queries`. The database of a cached plan is its `dbid`
/// attribute: `dm_exec_sql_text`'s own dbid is NULL for ad hoc and prepared statements.
pub fn slow_queries_sql(top: u32) -> String {
    format!(
        "SELECT TOP ({top})
                CONVERT(nvarchar(30), qs.execution_count),
                CONVERT(nvarchar(40), CAST(qs.total_elapsed_time / 1000.0 AS decimal(38, 3))),
                CONVERT(nvarchar(40), CAST(qs.total_elapsed_time / 1000.0 / qs.execution_count AS decimal(38, 3))),
                CONVERT(nvarchar(30), qs.total_rows),
                SUBSTRING(st.text, qs.statement_start_offset / 2 + 1,
                          (CASE qs.statement_end_offset WHEN -1 THEN DATALENGTH(st.text)
                                ELSE qs.statement_end_offset END - qs.statement_start_offset) / 2 + 1)
         FROM sys.dm_exec_query_stats qs
         CROSS APPLY sys.dm_exec_sql_text(qs.sql_handle) st
         CROSS APPLY (SELECT CONVERT(int, pa.value) AS dbid
                      FROM sys.dm_exec_plan_attributes(qs.plan_handle) pa
                      WHERE pa.attribute = N'dbid') db
         WHERE db.dbid = DB_ID()
         ORDER BY qs.total_elapsed_time DESC"
    )
}

/// The `top` statements of the current database by total time, from the plan cache.
pub async fn slow_queries(c: &MsConn, top: u32) -> Result<SlowQueries> {
    // Times are in microseconds; converted to milliseconds by the query.
    let rows = c.text_rows(&slow_queries_sql(top)).await?;
    let queries = rows.iter().map(|r| SlowQuery::from_text_row(r)).collect();
    Ok(SlowQueries {
        queries,
        notes: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// cleanup

/// SQL Server: the cutoff (UTC, ISO 8601) is a literal since these batches take no
/// parameters; the count of deleted rows comes back as the only result.
pub fn purge_sql(table: &str, column: &str, batch: u32, cutoff_utc: &str) -> String {
    format!(
        "SET NOCOUNT ON; DELETE TOP ({batch}) FROM {table} WHERE {} < {}; \
         SELECT CAST(@@ROWCOUNT AS bigint);",
        quote_ident(column),
        cutoff_literal(cutoff_utc)
    )
}

fn cutoff_literal(cutoff_utc: &str) -> String {
    format!(
        "TODATETIMEOFFSET(CONVERT(datetime2(7), {}, 126), '+00:00')",
        nstring(cutoff_utc)
    )
}

/// The journal table and its time column checked, the cutoff read from the server (UTC).
pub async fn purge_plan(
    c: &MsConn,
    t: &TableRef,
    column: &str,
    days: i32,
    batch: u32,
) -> Result<Purge> {
    let q = quoted_table(t);
    let data_type = c
        .scalar_string(&format!(
            "SELECT CONVERT(nvarchar(128), TYPE_NAME(c.system_type_id)) FROM sys.columns c
             WHERE c.object_id = OBJECT_ID({}, N'U') AND c.name = {}",
            nstring(&q),
            nstring(column)
        ))
        .await?;
    let Some(data_type) = data_type else {
        let exists = c
            .scalar_i64(&format!(
                "SELECT CASE WHEN OBJECT_ID({}, N'U') IS NULL THEN 0 ELSE 1 END",
                nstring(&q)
            ))
            .await?;
        if exists != Some(1) {
            bail!("maintenance.journal_table {t} does not exist in the database");
        }
        bail!("maintenance.journal_time_column: {t} has no column {column}");
    };
    if ![
        "date",
        "datetime",
        "datetime2",
        "datetimeoffset",
        "smalldatetime",
    ]
    .contains(&data_type.to_ascii_lowercase().as_str())
    {
        bail!(
            "maintenance.journal_time_column: {t}.{column} is {data_type}, not a date or timestamp"
        );
    }
    let cutoff = c
        .scalar_string(&format!(
            "SELECT CONVERT(nvarchar(33), CAST(SWITCHOFFSET(DATEADD(day, -{days}, SYSDATETIMEOFFSET()), '+00:00') AS datetime2(7)), 126)"
        ))
        .await?
        .ok_or_else(|| anyhow!("the server gave no time"))?;
    Ok(Purge {
        table: t.to_string(),
        count_sql: format!(
            "SELECT COUNT_BIG(*) FROM {q} WHERE {} < {};",
            quote_ident(column),
            cutoff_literal(&cutoff)
        ),
        batch_sql: purge_sql(&q, column, batch, &cutoff),
        cutoff,
    })
}

/// The rows older than the cutoff.
pub async fn purge_count(c: &MsConn, p: &Purge) -> Result<u64> {
    Ok(c.scalar_i64(&p.count_sql).await?.unwrap_or(0).max(0) as u64)
}

/// Deletes one batch (the batch autocommits); the rows deleted.
pub async fn purge_batch(c: &MsConn, p: &Purge) -> Result<u64> {
    Ok(c.scalar_i64(&p.batch_sql).await?.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(index_action(2.0, false), None);
        assert_eq!(index_action(5.0, false), Some("REORGANIZE"));
        assert_eq!(index_action(30.0, false), Some("REORGANIZE"));
        assert_eq!(index_action(30.5, false), Some("REBUILD"));
        assert_eq!(index_action(0.0, true), Some("REBUILD"));
        assert_eq!(
            index_statement("ix]a", "[metier].[citoyens]", "REBUILD"),
            "ALTER INDEX [ix]]a] ON [metier].[citoyens] REBUILD;"
        );
    }

    #[test]
    fn purge_statements_batch_and_quote() {
        let ms = purge_sql(
            "[metier].[journal_audit]",
            "horodatage",
            5000,
            "2025-01-02T03:04:05.1234567",
        );
        assert_eq!(
            ms,
            "SET NOCOUNT ON; DELETE TOP (5000) FROM [metier].[journal_audit] WHERE [horodatage] < \
             TODATETIMEOFFSET(CONVERT(datetime2(7), N'2025-01-02T03:04:05.1234567', 126), '+00:00'); \
             SELECT CAST(@@ROWCOUNT AS bigint);"
        );
        assert!(purge_sql("t", "c", 1, "x'; DROP TABLE t; --").contains("N'x''; DROP TABLE t; --'"));
    }

    #[test]
    fn sql_server_missing_index_statement() {
        assert_eq!(
            missing_index_sql(
                "[mairie].[metier].[demandes]",
                Some("[statut], [service_id]"),
                Some("[date_depot]"),
                Some("[reference], [montant_frais]"),
            ),
            "CREATE INDEX [ix_demandes_statut_service_id_date_depot] ON [mairie].[metier].[demandes] \
             ([statut], [service_id], [date_depot]) INCLUDE ([reference], [montant_frais]);"
        );
        assert_eq!(
            missing_index_sql("[db].[dbo].[t]", None, Some("[d]"), None),
            "CREATE INDEX [ix_t_d] ON [db].[dbo].[t] ([d]);"
        );
        assert_eq!(
            missing_index_sql("[db].[dbo].[t x]", Some("[a]]b]"), Some(""), Some("  ")),
            "CREATE INDEX [ix_t_x_a_b] ON [db].[dbo].[t x] ([a]]b]);"
        );
        assert_eq!(unbracket_parts("[a]]b], [c]"), vec!["a]b", "c"]);
    }

    #[test]
    fn sql_server_index_rows_group_into_definitions() {
        let row = |idx: &str, id: &str, uniq: &str, pk: &str, ord: &str, inc: &str, col: &str| {
            [
                "metier", "demandes", idx, id, uniq, pk, "0", "0", ord, inc, "0", col, "16384", "2",
            ]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect::<Vec<_>>()
        };
        let rows = vec![
            row("pk", "1", "1", "1", "1", "0", "id"),
            row("ix_a", "2", "0", "0", "1", "0", "statut"),
            row("ix_b", "3", "0", "0", "2", "0", "date_depot"),
            row("ix_b", "3", "0", "0", "1", "0", "statut"),
            row("ix_b", "3", "0", "0", "0", "1", "reference"),
        ];
        let v = indexes(&rows);
        assert_eq!(v.len(), 3);
        assert!(v[0].primary && v[0].constraint.as_deref() == Some("pk"));
        assert_eq!(
            v[2].keys,
            vec![KeyCol::plain("statut"), KeyCol::plain("date_depot")]
        );
        assert_eq!(v[2].include, vec!["reference".to_string()]);
        let f = redundancy_findings(Dialect::Mssql, &v, &[], &find_redundant(&v));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].index.as_deref(), Some("ix_a"));
        assert_eq!(
            f[0].fix.as_deref(),
            Some("DROP INDEX [ix_a] ON [metier].[demandes];")
        );
    }

    #[test]
    fn sql_server_slow_queries_read_the_plan_database() {
        let sql = slow_queries_sql(7);
        assert!(sql.starts_with("SELECT TOP (7)"));
        assert!(sql.contains("sys.dm_exec_query_stats qs"));
        assert!(sql.contains("CROSS APPLY sys.dm_exec_sql_text(qs.sql_handle)"));
        assert!(sql.contains("pa.attribute = N'dbid'") && sql.contains("db.dbid = DB_ID()"));
        assert!(sql.contains("ORDER BY qs.total_elapsed_time DESC"));
    }
}
