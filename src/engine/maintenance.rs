//! Maintenance per engine: what `maintenance analyze | vacuum | index-report | slow-queries |
//! cleanup` runs and reads on PostgreSQL, MySQL/MariaDB and SQL Server.
//!
//! The catalogue queries and statements of each engine live here. The judgement that does
//! not depend on an engine — which index duplicates or overlaps another, whether a foreign key
//! has an index, how SQL Server's missing-index suggestion becomes a CREATE INDEX, what each
//! statement looks like — is pure code over plain values, unit-tested without a server (SQL
//! Server's in particular: no SQL Server runs on the development machines).
//!
//! Quirks handled here and only here:
//! - PostgreSQL: VACUUM cannot run inside a transaction block. Every statement here is a
//!   simple query, which autocommits; operations lift the session's inspection
//!   `statement_timeout` first ([`lift_statement_timeout`]). ANALYZE and VACUUM on a table the
//!   role may not maintain only warn and skip it, so that is checked before, not reported as
//!   a success.
//! - MySQL: ANALYZE/OPTIMIZE TABLE report a failure as a result row (`Msg_type` `error`), not
//!   as an error; InnoDB answers OPTIMIZE with the note "doing recreate + analyze instead",
//!   which is its normal way. InnoDB needs an index on every foreign key and refuses to drop
//!   the only one (on every engine, such an index is never called unused: the report would
//!   then ask for it back).
//! - SQL Server: VACUUM's counterpart is index maintenance chosen by fragmentation
//!   (REORGANIZE from 5 %, REBUILD above 30 %), and DELETE TOP (n) batches the clean-up.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use mysql_async::prelude::Queryable;
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::catalog::TableRef;
use crate::engine::mssql::backup::nstring;
use crate::engine::mssql::{self, MsConn};
use crate::engine::mysql::{self, MyConn};
use crate::engine::postgres::{self, PgConn};
use crate::engine::Conn;

// ---------------------------------------------------------------------------------------------
// Shared types

/// What `analyze` and `vacuum` do to each table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Analyze,
    Vacuum { full: bool },
}

/// One table's planned maintenance: the statements that will run, in order.
#[derive(Debug, Clone)]
pub struct TableTask {
    /// The table as the engine names it (`metier.citoyens`, `metier_citoyens`).
    pub table: String,
    pub action: String,
    pub statements: Vec<String>,
    /// Known before anything runs (SQL Server: each index's fragmentation).
    pub note: String,
    /// Set when the table cannot be maintained by this role: the task fails with it.
    pub refused: Option<String>,
}

/// One finding of `index-report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: String,
    pub table: String,
    pub index: Option<String>,
    pub size_bytes: Option<i64>,
    pub detail: String,
    pub fix: Option<String>,
}

/// One normalised statement of `slow-queries`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowQuery {
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub rows: i64,
    pub query: String,
}

/// The SQL dialect a finding's fix is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Mssql,
}

impl Dialect {
    fn ident(self, s: &str) -> String {
        match self {
            Dialect::Postgres => postgres::quote_ident(s),
            Dialect::Mysql => mysql::quote_ident(s),
            Dialect::Mssql => mssql::quote_ident(s),
        }
    }

    /// `schema.table` quoted; MySQL's tables of the current database have no schema.
    fn table(self, schema: &str, table: &str) -> String {
        if schema.is_empty() {
            self.ident(table)
        } else {
            format!("{}.{}", self.ident(schema), self.ident(table))
        }
    }

    /// The statement that drops a redundant or unused index (or the constraint it backs).
    fn drop_index(self, ix: &IndexDef) -> String {
        let table = self.table(&ix.schema, &ix.table);
        if let Some(c) = &ix.constraint {
            return format!("ALTER TABLE {table} DROP CONSTRAINT {};", self.ident(c));
        }
        match self {
            Dialect::Postgres => format!(
                "DROP INDEX CONCURRENTLY {};",
                self.table(&ix.schema, &ix.name)
            ),
            Dialect::Mysql => format!("ALTER TABLE {table} DROP INDEX {};", self.ident(&ix.name)),
            Dialect::Mssql => format!("DROP INDEX {} ON {table};", self.ident(&ix.name)),
        }
    }

    /// The statement that indexes a foreign key's columns.
    fn create_fk_index(self, fk: &ForeignKey) -> String {
        let table = self.table(&fk.schema, &fk.table);
        let cols = fk
            .columns
            .iter()
            .map(|c| self.ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            // Unnamed: PostgreSQL picks a free name (table_col_idx).
            Dialect::Postgres => format!("CREATE INDEX CONCURRENTLY ON {table} ({cols});"),
            _ => {
                let name = index_name(&fk.table, &fk.columns);
                format!("CREATE INDEX {} ON {table} ({cols});", self.ident(&name))
            }
        }
    }
}

/// `schema.table` for people (MySQL: the table alone when it is in the current database).
fn display(schema: &str, table: &str) -> String {
    if schema.is_empty() {
        table.to_string()
    } else {
        format!("{schema}.{table}")
    }
}

/// `ix_<table>_<columns>`: letters, digits and `_` only, at most 64 characters (MySQL's
/// limit; SQL Server allows 128).
pub fn index_name(table: &str, columns: &[String]) -> String {
    let mut name = format!("ix_{table}");
    for c in columns {
        name.push('_');
        name.push_str(c);
    }
    let mut clean: String = name
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    clean.truncate(64);
    clean
}

/// The operations' statements may run for long: PostgreSQL's session keeps the inspection
/// `statement_timeout` of the config, lifted here for this session only.
pub async fn lift_statement_timeout(conn: &Conn) -> Result<()> {
    if let Conn::Postgres(c) = conn {
        c.client()
            .batch_execute("SET statement_timeout = 0")
            .await
            .map_err(pg_err)?;
    }
    Ok(())
}

fn pg_err(e: tokio_postgres::Error) -> anyhow::Error {
    anyhow!(postgres::describe(&e))
}

fn my_err(e: mysql_async::Error) -> anyhow::Error {
    anyhow!(mysql::describe(&e))
}

// ---------------------------------------------------------------------------------------------
// Indexes: the engine-free judgement

/// A key column of an index: its name (empty for an expression) and whatever else makes two
/// keys equal (operator class, collation, order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCol {
    pub column: String,
    pub spec: String,
}

impl KeyCol {
    pub fn plain(column: &str) -> KeyCol {
        KeyCol {
            column: column.to_string(),
            spec: String::new(),
        }
    }
}

/// An index as the judgement needs it, whatever the engine.
#[derive(Debug, Clone)]
pub struct IndexDef {
    /// Empty on MySQL (the current database).
    pub schema: String,
    pub table: String,
    pub name: String,
    pub keys: Vec<KeyCol>,
    /// Non-key columns carried in the leaf (INCLUDE).
    pub include: Vec<String>,
    /// Access method: `btree`, `hash`, `gin` … (PostgreSQL), `BTREE`, `FULLTEXT` … (MySQL),
    /// `rowstore` (SQL Server clustered and nonclustered).
    pub method: String,
    pub unique: bool,
    pub primary: bool,
    /// The constraint this index enforces (UNIQUE, PRIMARY KEY, EXCLUDE), if any.
    pub constraint: Option<String>,
    pub partial: bool,
    pub expression: bool,
    pub valid: bool,
    pub size_bytes: Option<i64>,
    /// Creation order (OID, index_id, position): of two equal indexes the older is kept.
    pub order: i64,
}

impl IndexDef {
    fn display_table(&self) -> String {
        display(&self.schema, &self.table)
    }

    fn same_table(&self, other: &IndexDef) -> bool {
        self.schema == other.schema && self.table == other.table
    }

    /// Whether queries on a leading part of the key can use it.
    fn serves_prefixes(&self) -> bool {
        self.method.eq_ignore_ascii_case("btree") || self.method == "rowstore"
    }

    fn usable(&self) -> bool {
        self.valid && !self.partial && !self.expression
    }

    /// Dropping it changes nothing but speed: no uniqueness, no constraint.
    fn droppable(&self) -> bool {
        !self.primary && !self.unique && self.constraint.is_none()
    }

    /// Higher is stronger: the one kept of two duplicates.
    fn strength(&self) -> (bool, bool, bool) {
        (self.primary, self.constraint.is_some(), self.unique)
    }

    fn columns(&self) -> String {
        let mut s = self
            .keys
            .iter()
            .map(|k| {
                if k.column.is_empty() {
                    "(expression)".to_string()
                } else {
                    k.column.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        if !self.include.is_empty() {
            s.push_str(&format!(" INCLUDE ({})", self.include.join(", ")));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedundancyKind {
    /// Same table, method, key columns (with their operator classes and order) and included
    /// columns.
    Duplicate,
    /// A plain index whose keys lead another index of the same table.
    Overlapping,
}

/// `drop` is redundant given `keep` (indexes into the slice given to [`find_redundant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redundancy {
    pub kind: RedundancyKind,
    pub drop: usize,
    pub keep: usize,
}

/// The redundant indexes among a database's indexes. Partial, expression and invalid indexes
/// are left out: they are not interchangeable with a plain one. Of two duplicates the
/// primary key, then the constraint, then the unique one, then the older one is kept; a
/// plain index is overlapping when its keys are a leading part of another btree's keys (and
/// its included columns are in that one too), and only a plain index is ever called so: a
/// unique one enforces something the longer index does not.
pub fn find_redundant(ix: &[IndexDef]) -> Vec<Redundancy> {
    let mut order: Vec<usize> = (0..ix.len()).filter(|&i| ix[i].usable()).collect();
    // Strongest first, then oldest: the first of a group of duplicates is the one kept.
    order.sort_by(|&a, &b| {
        ix[b]
            .strength()
            .cmp(&ix[a].strength())
            .then(ix[a].order.cmp(&ix[b].order))
    });
    let mut out = Vec::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    for (n, &keep) in order.iter().enumerate() {
        if dropped.contains(&keep) {
            continue;
        }
        for &other in &order[n + 1..] {
            if dropped.contains(&other) || ix[other].primary {
                continue;
            }
            let (k, o) = (&ix[keep], &ix[other]);
            let same_include = {
                let mut a = k.include.clone();
                let mut b = o.include.clone();
                a.sort();
                b.sort();
                a == b
            };
            if k.same_table(o) && k.method == o.method && k.keys == o.keys && same_include {
                dropped.insert(other);
                out.push(Redundancy {
                    kind: RedundancyKind::Duplicate,
                    drop: other,
                    keep,
                });
            }
        }
    }
    for &a in &order {
        if dropped.contains(&a) || !ix[a].droppable() || !ix[a].serves_prefixes() {
            continue;
        }
        let covering = order.iter().copied().find(|&b| {
            let (x, y) = (&ix[a], &ix[b]);
            b != a
                && !dropped.contains(&b)
                && x.same_table(y)
                && y.serves_prefixes()
                && x.method == y.method
                && x.keys.len() <= y.keys.len()
                && y.keys[..x.keys.len()] == x.keys[..]
                && (x.keys.len() < y.keys.len() || x.include.len() < y.include.len())
                && x.include
                    .iter()
                    .all(|c| y.include.contains(c) || y.keys.iter().any(|k| &k.column == c))
        });
        if let Some(b) = covering {
            dropped.insert(a);
            out.push(Redundancy {
                kind: RedundancyKind::Overlapping,
                drop: a,
                keep: b,
            });
        }
    }
    out
}

/// A foreign key: the referencing table and columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub columns: Vec<String>,
    /// The referenced table, for messages.
    pub references: String,
}

/// Whether an index can serve the foreign key's lookups: a usable index of its table whose
/// leading key columns are exactly the foreign key's columns, in any order.
pub fn index_serves_fk(ix: &IndexDef, fk: &ForeignKey) -> bool {
    if !ix.valid || ix.partial || ix.schema != fk.schema || ix.table != fk.table {
        return false;
    }
    if ix.keys.len() < fk.columns.len() {
        return false;
    }
    let lead: HashSet<&str> = ix.keys[..fk.columns.len()]
        .iter()
        .map(|k| k.column.as_str())
        .collect();
    let want: HashSet<&str> = fk.columns.iter().map(String::as_str).collect();
    lead == want
}

/// Duplicate and overlapping findings (from [`find_redundant`]), each with the statement
/// that drops the redundant index.
pub fn redundancy_findings(
    dialect: Dialect,
    ix: &[IndexDef],
    fks: &[ForeignKey],
    red: &[Redundancy],
) -> Vec<Finding> {
    red.iter()
        .map(|r| {
            let (drop, keep) = (&ix[r.drop], &ix[r.keep]);
            let mut detail = match r.kind {
                RedundancyKind::Duplicate => format!(
                    "same definition as {} ({}): one of them is enough",
                    keep.name,
                    keep.columns()
                ),
                RedundancyKind::Overlapping => format!(
                    "its columns ({}) lead {} ({}), which serves the same lookups",
                    drop.columns(),
                    keep.name,
                    keep.columns()
                ),
            };
            if drop.constraint.is_some() {
                detail.push_str(&format!(
                    "; it enforces constraint {}, which {} enforces as well",
                    drop.constraint.as_deref().unwrap_or_default(),
                    keep.name
                ));
            }
            let served: Vec<&str> = fks
                .iter()
                .filter(|fk| index_serves_fk(drop, fk))
                .map(|fk| fk.name.as_str())
                .collect();
            if !served.is_empty() {
                detail.push_str(&format!(
                    "; it serves foreign key {}, which {} serves too{}",
                    served.join(", "),
                    keep.name,
                    if dialect == Dialect::Mysql {
                        " (InnoDB requires an index on every foreign key)"
                    } else {
                        ""
                    }
                ));
            }
            Finding {
                kind: match r.kind {
                    RedundancyKind::Duplicate => "duplicate",
                    RedundancyKind::Overlapping => "overlapping",
                }
                .into(),
                table: drop.display_table(),
                index: Some(drop.name.clone()),
                size_bytes: drop.size_bytes,
                detail,
                fix: Some(dialect.drop_index(drop)),
            }
        })
        .collect()
}

/// Foreign keys that no index serves, each with the CREATE INDEX that would.
pub fn fk_findings(dialect: Dialect, ix: &[IndexDef], fks: &[ForeignKey]) -> Vec<Finding> {
    fks.iter()
        .filter(|fk| !ix.iter().any(|i| index_serves_fk(i, fk)))
        .map(|fk| Finding {
            kind: "fk-without-index".into(),
            table: display(&fk.schema, &fk.table),
            index: None,
            size_bytes: None,
            detail: format!(
                "foreign key {} ({}) -> {} has no index on its columns: every delete or key \
                 update in {} scans {} to check it, and joins on it cannot use an index",
                fk.name,
                fk.columns.join(", "),
                fk.references,
                fk.references,
                display(&fk.schema, &fk.table)
            ),
            fix: Some(dialect.create_fk_index(fk)),
        })
        .collect()
}

/// The foreign keys that only this index serves, leaving out the indexes reported for
/// dropping.
fn sole_fks<'a>(
    ix: &[IndexDef],
    i: usize,
    fks: &'a [ForeignKey],
    dropped: &HashSet<usize>,
) -> Vec<&'a ForeignKey> {
    fks.iter()
        .filter(|fk| {
            index_serves_fk(&ix[i], fk)
                && !ix
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && !dropped.contains(&j) && index_serves_fk(o, fk))
        })
        .collect()
}

/// Whether index `n`, which nothing reads, is reported as unused, and what to add to its
/// detail. Not when it is already reported as redundant, enforces something, or is the only
/// index of a foreign key (the report would then call for that very index); and when other
/// indexes were reported redundant because of it, dropping both would lose their lookups.
pub fn unused_verdict(
    ix: &[IndexDef],
    n: usize,
    fks: &[ForeignKey],
    red: &[Redundancy],
) -> Option<String> {
    let dropped: HashSet<usize> = red.iter().map(|r| r.drop).collect();
    if dropped.contains(&n) || !ix[n].droppable() || !ix[n].valid {
        return None;
    }
    if !sole_fks(ix, n, fks, &dropped).is_empty() {
        return None;
    }
    let partners: Vec<&str> = red
        .iter()
        .filter(|r| r.keep == n)
        .map(|r| ix[r.drop].name.as_str())
        .collect();
    Some(if partners.is_empty() {
        String::new()
    } else {
        format!(
            "; {} was reported redundant because of this index: drop one or the other, not both",
            partners.join(", ")
        )
    })
}

/// A duration for people: minutes, hours or days.
fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

/// Groups `(index, key position, column, spec, included)` rows, in the order the indexes
/// first appear, into key and include lists.
#[derive(Default)]
struct ColumnRows {
    keys: BTreeMap<(String, String, String), Vec<(i64, KeyCol)>>,
    include: BTreeMap<(String, String, String), Vec<String>>,
}

impl ColumnRows {
    fn key(&mut self, id: (String, String, String), pos: i64, col: KeyCol) {
        self.keys.entry(id).or_default().push((pos, col));
    }

    fn include(&mut self, id: (String, String, String), col: String) {
        self.include.entry(id).or_default().push(col);
    }

    fn keys_of(&self, id: &(String, String, String)) -> Vec<KeyCol> {
        let mut v = self.keys.get(id).cloned().unwrap_or_default();
        v.sort_by_key(|(p, _)| *p);
        v.into_iter().map(|(_, k)| k).collect()
    }

    fn include_of(&self, id: &(String, String, String)) -> Vec<String> {
        self.include.get(id).cloned().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Statement builders

pub fn pg_table_statement(work: Work, table: &TableRef) -> String {
    let t = postgres::quoted_table(table);
    match work {
        Work::Analyze => format!("ANALYZE {t}"),
        Work::Vacuum { full: false } => format!("VACUUM (ANALYZE) {t}"),
        Work::Vacuum { full: true } => format!("VACUUM (FULL, ANALYZE) {t}"),
    }
}

/// MySQL has no lighter VACUUM: OPTIMIZE TABLE rebuilds the table (and `--full` changes
/// nothing).
pub fn my_table_statement(work: Work, database: &str, table: &str) -> String {
    let t = format!(
        "{}.{}",
        mysql::quote_ident(database),
        mysql::quote_ident(table)
    );
    match work {
        Work::Analyze => format!("ANALYZE TABLE {t}"),
        Work::Vacuum { .. } => format!("OPTIMIZE TABLE {t}"),
    }
}

/// What SQL Server's index maintenance does at a fragmentation: Microsoft's long-standing
/// guidance, REORGANIZE from 5 %, REBUILD above 30 %; `full` rebuilds every index.
pub fn ms_index_action(fragmentation_percent: f64, full: bool) -> Option<&'static str> {
    if full || fragmentation_percent > 30.0 {
        Some("REBUILD")
    } else if fragmentation_percent >= 5.0 {
        Some("REORGANIZE")
    } else {
        None
    }
}

pub fn ms_index_statement(index: &str, table: &str, action: &str) -> String {
    format!(
        "ALTER INDEX {} ON {table} {action};",
        mssql::quote_ident(index)
    )
}

/// SQL Server's missing-index suggestion as a statement: `statement` is the table as
/// `[db].[schema].[table]`, the column lists as the DMV gives them (already bracketed,
/// comma-separated, or NULL). Equality columns lead, then inequality ones.
pub fn ms_missing_index_sql(
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
    let table = ms_unbracket_parts(statement)
        .last()
        .cloned()
        .unwrap_or_else(|| "table".into());
    let key_names: Vec<String> = keys.iter().flat_map(|k| ms_unbracket_parts(k)).collect();
    let name = index_name(&table, &key_names);
    let mut sql = format!(
        "CREATE INDEX {} ON {} ({})",
        mssql::quote_ident(&name),
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
fn ms_unbracket_parts(s: &str) -> Vec<String> {
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

/// The batched DELETE of `cleanup` on PostgreSQL: by primary key when the table has one,
/// else by ctid (both within one statement, so the rows cannot move in between). `$1` is the
/// cutoff as text.
pub fn pg_purge_sql(table: &str, column: &str, key: &[String], batch: u32) -> String {
    let col = postgres::quote_ident(column);
    if key.is_empty() {
        format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
             WHERE {col} < $1::text::timestamptz LIMIT {batch}))"
        )
    } else {
        let k = key
            .iter()
            .map(|c| postgres::quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "DELETE FROM {table} WHERE ({k}) IN (SELECT {k} FROM {table} \
             WHERE {col} < $1::text::timestamptz LIMIT {batch})"
        )
    }
}

/// MySQL: `?` is the cutoff; oldest first, so that an interrupted run leaves the newest rows.
pub fn my_purge_sql(table: &str, column: &str, batch: u32) -> String {
    let col = mysql::quote_ident(column);
    format!("DELETE FROM {table} WHERE {col} < ? ORDER BY {col} LIMIT {batch}")
}

/// SQL Server: the cutoff (UTC, ISO 8601) is a literal since these batches take no
/// parameters; the count of deleted rows comes back as the only result.
pub fn ms_purge_sql(table: &str, column: &str, batch: u32, cutoff_utc: &str) -> String {
    format!(
        "SET NOCOUNT ON; DELETE TOP ({batch}) FROM {table} WHERE {} < {}; \
         SELECT CAST(@@ROWCOUNT AS bigint);",
        mssql::quote_ident(column),
        ms_cutoff(cutoff_utc)
    )
}

fn ms_cutoff(cutoff_utc: &str) -> String {
    format!(
        "TODATETIMEOFFSET(CONVERT(datetime2(7), {}, 126), '+00:00')",
        nstring(cutoff_utc)
    )
}

/// How to turn pg_stat_statements on, in one line.
pub const PGSS_HINT: &str = "add shared_preload_libraries = 'pg_stat_statements' to \
     postgresql.conf and restart the server, then run CREATE EXTENSION pg_stat_statements; \
     in this database";

/// How to turn performance_schema on, in one line.
pub const PERFORMANCE_SCHEMA_HINT: &str = "set performance_schema = ON in the [mysqld] \
     section of the server's option file (my.cnf) and restart the server";

// ---------------------------------------------------------------------------------------------
// analyze and vacuum

/// The tables to maintain (every user table, or the named ones, each of which must exist)
/// and the statements for each.
pub async fn plan(conn: &Conn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
    match conn {
        Conn::Postgres(c) => pg_plan(c, work, named).await,
        Conn::Mysql(c) => my_plan(c, work, named).await,
        Conn::Mssql(c) => ms_plan(c, work, named).await,
    }
}

/// Runs one table's statements; the detail to report on success.
pub async fn run_task(conn: &Conn, task: &TableTask) -> Result<String> {
    if let Some(why) = &task.refused {
        bail!("{why}");
    }
    match conn {
        Conn::Postgres(c) => {
            for s in &task.statements {
                c.client().batch_execute(s).await.map_err(pg_err)?;
            }
            Ok(task.note.clone())
        }
        Conn::Mysql(c) => {
            let mut notes = Vec::new();
            for s in &task.statements {
                let rows = my_text_rows(c, s).await?;
                notes.extend(my_admin_messages(&rows)?);
            }
            Ok(notes.join("; "))
        }
        Conn::Mssql(c) => {
            for s in &task.statements {
                c.batch(s).await?;
            }
            Ok(task.note.clone())
        }
    }
}

fn missing_tables_error(missing: &[String], where_: &str) -> anyhow::Error {
    anyhow!(
        "no such table{} {} in {where_}",
        if missing.len() > 1 { "s" } else { "" },
        missing.join(", ")
    )
}

async fn pg_plan(c: &PgConn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
    let client = c.client();
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(pg_err)?
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
            .map_err(pg_err)?;
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
                .map_err(pg_err)?;
            match row {
                Some(r) => tables.push((t.clone(), r.try_get(2)?)),
                None => missing.push(t.to_string()),
            }
        }
        if !missing.is_empty() {
            let db: String = client
                .query_one("SELECT current_database()::text", &[])
                .await
                .map_err(pg_err)?
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
            statements: vec![pg_table_statement(work, &t)],
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

/// Text rows of a MySQL query (the text protocol: administration statements such as
/// ANALYZE TABLE are not all preparable).
async fn my_text_rows(c: &MyConn, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let mut conn = c.conn().await;
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.map_err(my_err)?;
    Ok(rows.iter().map(my_row_text).collect())
}

/// Rows of a prepared MySQL query, as text.
async fn my_exec_rows(
    c: &MyConn,
    sql: &str,
    params: impl Into<mysql_async::Params> + Send,
) -> Result<Vec<Vec<Option<String>>>> {
    let mut conn = c.conn().await;
    let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await.map_err(my_err)?;
    Ok(rows.iter().map(my_row_text).collect())
}

fn my_row_text(r: &mysql_async::Row) -> Vec<Option<String>> {
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

fn text(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

fn int(row: &[Option<String>], i: usize) -> i64 {
    num(row, i) as i64
}

fn num(row: &[Option<String>], i: usize) -> f64 {
    row.get(i)
        .and_then(|v| v.as_deref())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn opt_int(row: &[Option<String>], i: usize) -> Option<i64> {
    row.get(i)
        .and_then(|v| v.as_deref())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|f| f as i64)
}

/// The messages of ANALYZE/OPTIMIZE TABLE rows (Table, Op, Msg_type, Msg_text): an `error`
/// row is a failure of that table; notes and warnings are kept for the report; the plain
/// "OK" and "already up to date" statuses are not news.
pub fn my_admin_messages(rows: &[Vec<Option<String>>]) -> Result<Vec<String>> {
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

/// Where a `schema.table` lives on MySQL, as `MyConn` reads it: the model's prefixed table
/// of the current database, else (schema `public`) the table itself, else database `schema`.
async fn my_resolve(c: &MyConn, current: &str, t: &TableRef) -> Result<(String, String)> {
    let prefixed = t.prefixed();
    let found = my_exec_rows(
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

async fn my_current_db(c: &MyConn) -> Result<String> {
    let rows = my_text_rows(c, "SELECT DATABASE()").await?;
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| anyhow!("the connection has no current database"))
}

async fn my_plan(c: &MyConn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
    let current = my_current_db(c).await?;
    let mut tables: Vec<(String, String)> = Vec::new();
    if named.is_empty() {
        let rows = my_text_rows(
            c,
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
        .await?;
        tables.extend(rows.iter().map(|r| (current.clone(), text(r, 0))));
    } else {
        let mut missing = Vec::new();
        for t in named {
            let (db, name) = my_resolve(c, &current, t).await?;
            let exists = my_exec_rows(
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
            statements: vec![my_table_statement(work, &db, &name)],
            note: String::new(),
            refused: None,
        })
        .collect())
}

async fn ms_plan(c: &MsConn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
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
            let q = mssql::quoted_table(t);
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
        let q = format!(
            "{}.{}",
            mssql::quote_ident(&schema),
            mssql::quote_ident(&name)
        );
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
                    match ms_index_action(frag, full) {
                        Some(a) => {
                            notes.push(format!("{index} {frag:.1} % -> {a}"));
                            statements.push(ms_index_statement(&index, &q, a));
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

// ---------------------------------------------------------------------------------------------
// index-report

/// Unused, duplicate, overlapping and invalid indexes, foreign keys without an index, bloat,
/// fragmentation and missing indexes, each with the SQL that fixes it. `timeout` bounds each
/// catalogue query where the server has no session setting for it (MySQL).
pub async fn index_report(conn: &Conn, timeout: Duration) -> Result<Vec<Finding>> {
    let mut findings = match conn {
        Conn::Postgres(c) => pg_index_report(c).await?,
        Conn::Mysql(c) => my_index_report(c, timeout).await?,
        Conn::Mssql(c) => ms_index_report(c).await?,
    };
    let rank = |k: &str| {
        [
            "notice",
            "invalid",
            "duplicate",
            "overlapping",
            "unused",
            "fk-without-index",
            "missing-index",
            "bloat",
            "fragmentation",
        ]
        .iter()
        .position(|x| *x == k)
        .unwrap_or(99)
    };
    findings.sort_by(|a, b| {
        rank(&a.kind)
            .cmp(&rank(&b.kind))
            .then(b.size_bytes.unwrap_or(0).cmp(&a.size_bytes.unwrap_or(0)))
            .then(a.table.cmp(&b.table))
            .then(a.index.cmp(&b.index))
    });
    Ok(findings)
}

fn human(n: i64) -> String {
    indicatif::HumanBytes(n.max(0) as u64).to_string()
}

async fn pg_index_report(c: &PgConn) -> Result<Vec<Finding>> {
    let client = c.client();
    let d = Dialect::Postgres;
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(pg_err)?
        .try_get(0)?;
    let since: Option<String> = client
        .query_one(
            "SELECT to_char(stats_reset AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(pg_err)?
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
        .map_err(pg_err)?;
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
        .map_err(pg_err)?;
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
        .map_err(pg_err)?;
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

async fn my_index_report(c: &MyConn, timeout: Duration) -> Result<Vec<Finding>> {
    let d = Dialect::Mysql;
    let stats = crate::engine::bounded(
        timeout,
        my_text_rows(
            c,
            "SELECT table_name, index_name, non_unique, seq_in_index, column_name, sub_part,
                collation, index_type
         FROM information_schema.statistics WHERE table_schema = DATABASE()",
        ),
    )
    .await?;
    // Index sizes: InnoDB's persistent statistics, in pages. Reading them needs a privilege
    // on the mysql schema; without it sizes are simply unknown.
    let page: i64 = my_text_rows(c, "SELECT @@innodb_page_size")
        .await
        .ok()
        .and_then(|r| r.first().map(|r| int(r, 0)))
        .unwrap_or(16384);
    let sizes: BTreeMap<(String, String), i64> = my_text_rows(
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

    let fk_rows = crate::engine::bounded(timeout, my_text_rows(
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

    let ps_on = my_text_rows(c, "SELECT @@performance_schema")
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
        let usage = crate::engine::bounded(
            timeout,
            my_text_rows(
                c,
                "SELECT object_name, index_name, count_star
             FROM performance_schema.table_io_waits_summary_by_index_usage
             WHERE object_schema = DATABASE() AND index_name IS NOT NULL",
            ),
        )
        .await?;
        let uptime = my_text_rows(c, "SHOW GLOBAL STATUS LIKE 'Uptime'")
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

    let frag = crate::engine::bounded(
        timeout,
        my_text_rows(
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

async fn ms_index_report(c: &MsConn) -> Result<Vec<Finding>> {
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
    let ix = ms_indexes(&rows);
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
        let action = ms_index_action(pct, false).unwrap_or("REORGANIZE");
        out.push(Finding {
            kind: "fragmentation".into(),
            table: display(&schema, &table),
            index: Some(name.clone()),
            size_bytes: Some(pages * 8192),
            detail: format!(
                "{pct:.1} % logical fragmentation over {pages} pages (REORGANIZE from 5 %, \
                 REBUILD above 30 %)"
            ),
            fix: Some(ms_index_statement(&name, &d.table(&schema, &table), action)),
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
        let parts = ms_unbracket_parts(&statement);
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
            fix: Some(ms_missing_index_sql(
                &statement,
                r.get(1).and_then(|v| v.as_deref()),
                r.get(2).and_then(|v| v.as_deref()),
                r.get(3).and_then(|v| v.as_deref()),
            )),
        });
    }
    Ok(out)
}

/// SQL Server's index column rows (schema, table, index, index_id, is_unique, is_primary_key,
/// is_unique_constraint, has_filter, key_ordinal, is_included_column, is_descending_key,
/// column, size, type) as index definitions.
pub fn ms_indexes(rows: &[Vec<Option<String>>]) -> Vec<IndexDef> {
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

/// What `slow-queries` found: the statements, and what the DBA should know about how
/// complete they are.
#[derive(Debug, Clone, Default)]
pub struct SlowQueries {
    pub queries: Vec<SlowQuery>,
    pub notes: Vec<String>,
}

/// The `top` statements of the target's database by total time.
pub async fn slow_queries(conn: &Conn, top: u32, timeout: Duration) -> Result<SlowQueries> {
    match conn {
        Conn::Postgres(c) => Ok(SlowQueries {
            queries: pg_slow_queries(c, top).await?,
            notes: Vec::new(),
        }),
        Conn::Mysql(c) => crate::engine::bounded(timeout, my_slow_queries(c, top)).await,
        Conn::Mssql(c) => Ok(SlowQueries {
            queries: ms_slow_queries(c, top).await?,
            notes: Vec::new(),
        }),
    }
}

async fn pg_slow_queries(c: &PgConn, top: u32) -> Result<Vec<SlowQuery>> {
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
            .map_err(pg_err)?;
        (r.try_get(0)?, r.try_get(1)?)
    };
    let Some(schema) = schema else {
        bail!("pg_stat_statements is not installed in database {db}: {PGSS_HINT}");
    };
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(pg_err)?
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
        postgres::quote_ident(&schema)
    );
    let rows = match client.query(&sql, &[&i64::from(top)]).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => {
            bail!("pg_stat_statements is installed in database {db} but not loaded: {PGSS_HINT}")
        }
        Err(e) => return Err(pg_err(e)).context("reading pg_stat_statements"),
    };
    rows.iter()
        .map(|r| {
            Ok(SlowQuery {
                calls: r.try_get(0)?,
                total_ms: r.try_get(1)?,
                mean_ms: r.try_get(2)?,
                rows: r.try_get(3)?,
                query: r.try_get::<_, Option<String>>(4)?.unwrap_or_default(),
            })
        })
        .collect()
}

async fn my_slow_queries(c: &MyConn, top: u32) -> Result<SlowQueries> {
    let on = my_text_rows(c, "SELECT @@performance_schema").await?;
    if on.first().map(|r| int(r, 0)) != Some(1) {
        bail!("performance_schema is off on this server: {PERFORMANCE_SCHEMA_HINT}");
    }
    let digest = my_text_rows(
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
    let fill = my_text_rows(
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
    let rows = my_exec_rows(
        c,
        "SELECT COUNT_STAR, SUM_TIMER_WAIT / 1000000000, AVG_TIMER_WAIT / 1000000000,
                SUM_ROWS_SENT + SUM_ROWS_AFFECTED, DIGEST_TEXT
         FROM performance_schema.events_statements_summary_by_digest
         WHERE SCHEMA_NAME = DATABASE()
         ORDER BY SUM_TIMER_WAIT DESC LIMIT ?",
        (u64::from(top),),
    )
    .await?;
    let queries = rows
        .iter()
        .map(|r| SlowQuery {
            calls: int(r, 0),
            total_ms: num(r, 1),
            mean_ms: num(r, 2),
            rows: int(r, 3),
            query: text(r, 4),
        })
        .collect();
    Ok(SlowQueries { queries, notes })
}

/// The SQL Server query of `slow-queries`. The database of a cached plan is its `dbid`
/// attribute: `dm_exec_sql_text`'s own dbid is NULL for ad hoc and prepared statements.
pub fn ms_slow_queries_sql(top: u32) -> String {
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

async fn ms_slow_queries(c: &MsConn, top: u32) -> Result<Vec<SlowQuery>> {
    // Times are in microseconds; converted to milliseconds by the query.
    let rows = c.text_rows(&ms_slow_queries_sql(top)).await?;
    Ok(rows
        .iter()
        .map(|r| SlowQuery {
            calls: int(r, 0),
            total_ms: num(r, 1),
            mean_ms: num(r, 2),
            rows: int(r, 3),
            query: text(r, 4),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// cleanup

/// A planned purge of the journal: the table found, the cutoff fixed once (so that the loop
/// ends), and the statements.
#[derive(Debug, Clone)]
pub struct Purge {
    pub table: String,
    /// The server's time minus the retention, as the server writes it.
    pub cutoff: String,
    count_sql: String,
    batch_sql: String,
}

/// Finds the journal table and its time column on this target and prepares the statements;
/// `days` of retention, `batch` rows per DELETE.
pub async fn purge_plan(
    conn: &Conn,
    table: &TableRef,
    column: &str,
    days: u32,
    batch: u32,
) -> Result<Purge> {
    let days = i32::try_from(days).map_err(|_| anyhow!("{days} days is too many"))?;
    match conn {
        Conn::Postgres(c) => pg_purge_plan(c, table, column, days, batch).await,
        Conn::Mysql(c) => my_purge_plan(c, table, column, days, batch).await,
        Conn::Mssql(c) => ms_purge_plan(c, table, column, days, batch).await,
    }
}

/// The rows older than the cutoff.
pub async fn purge_count(conn: &Conn, p: &Purge) -> Result<u64> {
    match conn {
        Conn::Postgres(c) => {
            let n: i64 = c
                .client()
                .query_one(&p.count_sql, &[&p.cutoff])
                .await
                .map_err(pg_err)?
                .try_get(0)?;
            Ok(n.max(0) as u64)
        }
        Conn::Mysql(c) => {
            let rows = my_exec_rows(c, &p.count_sql, (p.cutoff.clone(),)).await?;
            Ok(rows.first().map(|r| int(r, 0)).unwrap_or(0).max(0) as u64)
        }
        Conn::Mssql(c) => Ok(c.scalar_i64(&p.count_sql).await?.unwrap_or(0).max(0) as u64),
    }
}

/// Deletes one batch, in its own transaction (the statement autocommits); the rows deleted.
pub async fn purge_batch(conn: &Conn, p: &Purge) -> Result<u64> {
    match conn {
        Conn::Postgres(c) => c
            .client()
            .execute(&p.batch_sql, &[&p.cutoff])
            .await
            .map_err(pg_err),
        Conn::Mysql(c) => {
            let mut conn = c.conn().await;
            conn.exec_drop(&p.batch_sql, (p.cutoff.clone(),))
                .await
                .map_err(my_err)?;
            Ok(conn.affected_rows())
        }
        Conn::Mssql(c) => Ok(c.scalar_i64(&p.batch_sql).await?.unwrap_or(0).max(0) as u64),
    }
}

async fn pg_purge_plan(
    c: &PgConn,
    t: &TableRef,
    column: &str,
    days: i32,
    batch: u32,
) -> Result<Purge> {
    let client = c.client();
    let q = postgres::quoted_table(t);
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
        .map_err(pg_err)?;
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
        .map_err(pg_err)?
        .try_get(0)?;
    let col = postgres::quote_ident(column);
    Ok(Purge {
        table: t.to_string(),
        cutoff,
        count_sql: format!("SELECT count(*) FROM {q} WHERE {col} < $1::text::timestamptz"),
        batch_sql: pg_purge_sql(&q, column, &key, batch),
    })
}

async fn my_purge_plan(
    c: &MyConn,
    t: &TableRef,
    column: &str,
    days: i32,
    batch: u32,
) -> Result<Purge> {
    let current = my_current_db(c).await?;
    let (db, name) = my_resolve(c, &current, t).await?;
    let cols = my_exec_rows(
        c,
        "SELECT data_type FROM information_schema.columns
         WHERE table_schema = ? AND table_name = ? AND column_name = ?",
        (db.clone(), name.clone(), column.to_string()),
    )
    .await?;
    if cols.is_empty() {
        let exists = my_exec_rows(
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
    let cutoff = my_exec_rows(
        c,
        "SELECT DATE_FORMAT(UTC_TIMESTAMP(6) - INTERVAL ? DAY, '%Y-%m-%d %H:%i:%s.%f')",
        (days,),
    )
    .await?;
    let cutoff = cutoff
        .first()
        .map(|r| text(r, 0))
        .ok_or_else(|| anyhow!("the server gave no time"))?;
    let q = format!("{}.{}", mysql::quote_ident(&db), mysql::quote_ident(&name));
    Ok(Purge {
        table: if db == current {
            name.clone()
        } else {
            format!("{db}.{name}")
        },
        cutoff,
        count_sql: format!(
            "SELECT COUNT(*) FROM {q} WHERE {} < ?",
            mysql::quote_ident(column)
        ),
        batch_sql: my_purge_sql(&q, column, batch),
    })
}

async fn ms_purge_plan(
    c: &MsConn,
    t: &TableRef,
    column: &str,
    days: i32,
    batch: u32,
) -> Result<Purge> {
    let q = mssql::quoted_table(t);
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
            mssql::quote_ident(column),
            ms_cutoff(&cutoff)
        ),
        batch_sql: ms_purge_sql(&q, column, batch, &cutoff),
        cutoff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(table: &str, name: &str, keys: &[&str]) -> IndexDef {
        IndexDef {
            schema: "s".into(),
            table: table.into(),
            name: name.into(),
            keys: keys.iter().map(|k| KeyCol::plain(k)).collect(),
            include: vec![],
            method: "btree".into(),
            unique: false,
            primary: false,
            constraint: None,
            partial: false,
            expression: false,
            valid: true,
            size_bytes: Some(8192),
            order: 0,
        }
    }

    fn ordered(mut v: Vec<IndexDef>) -> Vec<IndexDef> {
        for (n, i) in v.iter_mut().enumerate() {
            i.order = n as i64;
        }
        v
    }

    #[test]
    fn exact_duplicates_keep_the_older_or_the_stronger() {
        let v = ordered(vec![
            ix("t", "t_a_idx", &["a"]),
            ix("t", "t_a_dup", &["a"]),
            ix("u", "u_a_idx", &["a"]),
        ]);
        let r = find_redundant(&v);
        assert_eq!(
            r,
            vec![Redundancy {
                kind: RedundancyKind::Duplicate,
                drop: 1,
                keep: 0
            }]
        );
        // A unique index wins over an older plain one.
        let mut v = ordered(vec![ix("t", "plain", &["a"]), ix("t", "uniq", &["a"])]);
        v[1].unique = true;
        let r = find_redundant(&v);
        assert_eq!((r[0].drop, r[0].keep), (0, 1));
        // The primary key is never the one dropped.
        let mut v = ordered(vec![ix("t", "uniq", &["id"]), ix("t", "pk", &["id"])]);
        v[0].unique = true;
        v[0].constraint = Some("uniq".into());
        v[1].unique = true;
        v[1].primary = true;
        v[1].constraint = Some("pk".into());
        let r = find_redundant(&v);
        assert_eq!((r[0].drop, r[0].keep), (0, 1));
        let f = redundancy_findings(Dialect::Postgres, &v, &[], &find_redundant(&v));
        assert_eq!(
            f[0].fix.as_deref(),
            Some("ALTER TABLE \"s\".\"t\" DROP CONSTRAINT \"uniq\";")
        );
    }

    #[test]
    fn three_duplicates_drop_two() {
        let v = ordered(vec![
            ix("t", "a1", &["a", "b"]),
            ix("t", "a2", &["a", "b"]),
            ix("t", "a3", &["a", "b"]),
        ]);
        let mut drops: Vec<usize> = find_redundant(&v).iter().map(|r| r.drop).collect();
        drops.sort();
        assert_eq!(drops, vec![1, 2]);
    }

    #[test]
    fn different_opclass_order_method_or_predicate_is_not_a_duplicate() {
        let mut v = ordered(vec![ix("t", "x", &["a"]), ix("t", "y", &["a"])]);
        v[1].keys[0].spec = "text_pattern_ops".into();
        assert!(find_redundant(&v).is_empty());
        let mut v = ordered(vec![ix("t", "x", &["a"]), ix("t", "y", &["a"])]);
        v[1].method = "hash".into();
        assert!(find_redundant(&v).is_empty());
        let mut v = ordered(vec![ix("t", "x", &["a"]), ix("t", "y", &["a"])]);
        v[1].partial = true;
        assert!(find_redundant(&v).is_empty());
        let mut v = ordered(vec![ix("t", "x", &["a"]), ix("t", "y", &["a"])]);
        v[0].valid = false;
        assert!(find_redundant(&v).is_empty());
        let v = ordered(vec![ix("t", "x", &["a", "b"]), ix("t", "y", &["b", "a"])]);
        assert!(find_redundant(&v).is_empty());
    }

    #[test]
    fn a_leading_prefix_overlaps() {
        let v = ordered(vec![
            ix("t", "t_statut_idx", &["statut"]),
            ix("t", "t_statut_date_idx", &["statut", "date"]),
            ix("t", "t_date_idx", &["date"]),
        ]);
        let r = find_redundant(&v);
        assert_eq!(
            r,
            vec![Redundancy {
                kind: RedundancyKind::Overlapping,
                drop: 0,
                keep: 1
            }]
        );
        let f = redundancy_findings(Dialect::Mysql, &v, &[], &find_redundant(&v));
        assert_eq!(f[0].kind, "overlapping");
        assert!(f[0].detail.contains("t_statut_date_idx"), "{}", f[0].detail);
        assert_eq!(
            f[0].fix.as_deref(),
            Some("ALTER TABLE `s`.`t` DROP INDEX `t_statut_idx`;")
        );
    }

    #[test]
    fn unique_or_non_btree_prefixes_are_not_overlapping() {
        let mut v = ordered(vec![ix("t", "u", &["a"]), ix("t", "ab", &["a", "b"])]);
        v[0].unique = true;
        assert!(find_redundant(&v).is_empty());
        let mut v = ordered(vec![ix("t", "g", &["a"]), ix("t", "ab", &["a", "b"])]);
        v[0].method = "gin".into();
        v[1].method = "gin".into();
        assert!(find_redundant(&v).is_empty());
        // Included columns must be carried by the longer index too.
        let mut v = ordered(vec![ix("t", "a_inc", &["a"]), ix("t", "ab", &["a", "b"])]);
        v[0].include = vec!["z".into()];
        assert!(find_redundant(&v).is_empty());
        v[0].include = vec!["b".into()];
        assert_eq!(find_redundant(&v)[0].kind, RedundancyKind::Overlapping);
    }

    #[test]
    fn foreign_keys_need_an_index_leading_with_their_columns() {
        let fk = ForeignKey {
            schema: "s".into(),
            table: "child".into(),
            name: "child_parent_fk".into(),
            columns: vec!["p1".into(), "p2".into()],
            references: "s.parent".into(),
        };
        assert!(index_serves_fk(&ix("child", "i", &["p2", "p1", "x"]), &fk));
        assert!(!index_serves_fk(&ix("child", "i", &["p1"]), &fk));
        assert!(!index_serves_fk(&ix("child", "i", &["x", "p1", "p2"]), &fk));
        assert!(!index_serves_fk(&ix("other", "i", &["p1", "p2"]), &fk));
        let f = fk_findings(
            Dialect::Postgres,
            &[ix("child", "i", &["x"])],
            std::slice::from_ref(&fk),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].fix.as_deref(),
            Some("CREATE INDEX CONCURRENTLY ON \"s\".\"child\" (\"p1\", \"p2\");")
        );
        let f = fk_findings(Dialect::Mssql, &[], std::slice::from_ref(&fk));
        assert_eq!(
            f[0].fix.as_deref(),
            Some("CREATE INDEX [ix_child_p1_p2] ON [s].[child] ([p1], [p2]);")
        );
        assert!(
            fk_findings(Dialect::Postgres, &[ix("child", "i", &["p1", "p2"])], &[fk]).is_empty()
        );
    }

    #[test]
    fn a_dropped_index_that_serves_a_foreign_key_says_who_serves_it_next() {
        let v = ordered(vec![ix("t", "t_a", &["a"]), ix("t", "t_ab", &["a", "b"])]);
        let fk = ForeignKey {
            schema: "s".into(),
            table: "t".into(),
            name: "t_a_fk".into(),
            columns: vec!["a".into()],
            references: "s.p".into(),
        };
        let f = redundancy_findings(Dialect::Mysql, &v, &[fk], &find_redundant(&v));
        assert!(
            f[0].detail.contains("t_a_fk") && f[0].detail.contains("InnoDB"),
            "{}",
            f[0].detail
        );
    }

    #[test]
    fn unused_is_not_said_of_what_a_fix_or_a_foreign_key_still_needs() {
        let v = ordered(vec![
            ix("t", "t_fk_idx", &["p"]),
            ix("t", "t_fk_dup", &["p"]),
            ix("t", "t_a", &["a"]),
            ix("t", "t_ab", &["a", "b"]),
            ix("t", "t_c", &["c"]),
        ]);
        let fk = ForeignKey {
            schema: "s".into(),
            table: "t".into(),
            name: "t_p_fk".into(),
            columns: vec!["p".into()],
            references: "s.p".into(),
        };
        let red = find_redundant(&v);
        let fks = [fk];
        // The duplicate is reported as such, not as unused.
        assert_eq!(unused_verdict(&v, 1, &fks, &red), None);
        // Its twin, once the duplicate goes, is the foreign key's only index.
        assert_eq!(unused_verdict(&v, 0, &fks, &red), None);
        // The longer of an overlapping pair: dropping it and the prefix would lose both.
        let note = unused_verdict(&v, 3, &fks, &red).expect("reported");
        assert!(note.contains("t_a was reported redundant"), "{note}");
        assert_eq!(unused_verdict(&v, 4, &fks, &red).as_deref(), Some(""));
        let mut u = v.clone();
        u[4].unique = true;
        assert_eq!(unused_verdict(&u, 4, &fks, &red), None);
        assert_eq!(
            (ago(300), ago(3 * 3600), ago(3 * 86400)),
            ("5 min".into(), "3 h".into(), "3 days".into())
        );
    }

    #[test]
    fn statements_per_engine() {
        let t = TableRef::new("metier", "citoyens");
        assert_eq!(
            pg_table_statement(Work::Analyze, &t),
            "ANALYZE \"metier\".\"citoyens\""
        );
        assert_eq!(
            pg_table_statement(Work::Vacuum { full: false }, &t),
            "VACUUM (ANALYZE) \"metier\".\"citoyens\""
        );
        assert_eq!(
            pg_table_statement(Work::Vacuum { full: true }, &t),
            "VACUUM (FULL, ANALYZE) \"metier\".\"citoyens\""
        );
        assert_eq!(
            my_table_statement(Work::Analyze, "mairie", "metier_citoyens"),
            "ANALYZE TABLE `mairie`.`metier_citoyens`"
        );
        assert_eq!(
            my_table_statement(Work::Vacuum { full: true }, "m", "a`b"),
            "OPTIMIZE TABLE `m`.`a``b`"
        );
        assert_eq!(ms_index_action(2.0, false), None);
        assert_eq!(ms_index_action(5.0, false), Some("REORGANIZE"));
        assert_eq!(ms_index_action(30.0, false), Some("REORGANIZE"));
        assert_eq!(ms_index_action(30.5, false), Some("REBUILD"));
        assert_eq!(ms_index_action(0.0, true), Some("REBUILD"));
        assert_eq!(
            ms_index_statement("ix]a", "[metier].[citoyens]", "REBUILD"),
            "ALTER INDEX [ix]]a] ON [metier].[citoyens] REBUILD;"
        );
    }

    #[test]
    fn purge_statements_batch_and_quote() {
        assert_eq!(
            pg_purge_sql(
                "\"metier\".\"journal_audit\"",
                "horodatage",
                &["id".into()],
                500
            ),
            "DELETE FROM \"metier\".\"journal_audit\" WHERE (\"id\") IN (SELECT \"id\" FROM \
             \"metier\".\"journal_audit\" WHERE \"horodatage\" < $1::text::timestamptz LIMIT 500)"
        );
        assert!(pg_purge_sql("t", "h\"x", &[], 2).starts_with(
            "DELETE FROM t WHERE ctid = ANY(ARRAY(SELECT ctid FROM t WHERE \"h\"\"x\" < "
        ));
        assert_eq!(
            my_purge_sql("`m`.`metier_journal_audit`", "horodatage", 2),
            "DELETE FROM `m`.`metier_journal_audit` WHERE `horodatage` < ? ORDER BY `horodatage` LIMIT 2"
        );
        let ms = ms_purge_sql(
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
        assert!(
            ms_purge_sql("t", "c", 1, "x'; DROP TABLE t; --").contains("N'x''; DROP TABLE t; --'")
        );
    }

    #[test]
    fn sql_server_missing_index_statement() {
        assert_eq!(
            ms_missing_index_sql(
                "[mairie].[metier].[demandes]",
                Some("[statut], [service_id]"),
                Some("[date_depot]"),
                Some("[reference], [montant_frais]"),
            ),
            "CREATE INDEX [ix_demandes_statut_service_id_date_depot] ON [mairie].[metier].[demandes] \
             ([statut], [service_id], [date_depot]) INCLUDE ([reference], [montant_frais]);"
        );
        assert_eq!(
            ms_missing_index_sql("[db].[dbo].[t]", None, Some("[d]"), None),
            "CREATE INDEX [ix_t_d] ON [db].[dbo].[t] ([d]);"
        );
        assert_eq!(
            ms_missing_index_sql("[db].[dbo].[t x]", Some("[a]]b]"), Some(""), Some("  ")),
            "CREATE INDEX [ix_t_x_a_b] ON [db].[dbo].[t x] ([a]]b]);"
        );
        assert_eq!(ms_unbracket_parts("[a]]b], [c]"), vec!["a]b", "c"]);
        let long = vec!["c".repeat(100)];
        assert_eq!(index_name("t", &long).len(), 64);
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
        let v = ms_indexes(&rows);
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
        let sql = ms_slow_queries_sql(7);
        assert!(sql.starts_with("SELECT TOP (7)"));
        assert!(sql.contains("sys.dm_exec_query_stats qs"));
        assert!(sql.contains("CROSS APPLY sys.dm_exec_sql_text(qs.sql_handle)"));
        assert!(sql.contains("pa.attribute = N'dbid'") && sql.contains("db.dbid = DB_ID()"));
        assert!(sql.contains("ORDER BY qs.total_elapsed_time DESC"));
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
        let notes = my_admin_messages(&[
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
            my_admin_messages(&[row("status", "Table is already up to date")])
                .unwrap()
                .is_empty()
        );
        let e = my_admin_messages(&[
            row("Error", "Table 'm.t' doesn't exist"),
            row("status", "Operation failed"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("doesn't exist"), "{e}");
    }
}
