//! Maintenance: what `maintenance analyze | vacuum | index-report | slow-queries | cleanup`
//! plans, runs and reads on PostgreSQL, MySQL/MariaDB and SQL Server.
//!
//! This file is the engine-free core: the work items ([`TableTask`], [`Purge`]), the
//! findings, and the judgement that does not depend on an engine — which index duplicates or
//! overlaps another, whether a foreign key has an index, which index nothing reads may be
//! called unused, what each fix looks like in each dialect — pure code over plain values,
//! unit-tested without a server. It also holds the operations the command calls.
//!
//! Each engine's statements and catalogue queries live in its own file (`postgres.rs`,
//! `mysql.rs`, `mssql.rs`), with that engine's quirks, and are reached through one
//! [`engine::Visitor`] per operation: nothing here matches on the connection, and an engine
//! an operation does not cover would answer the visitor's default, not supported.
//! Identifiers are quoted by the engine drivers (`engine::postgres::quote_ident` …).

pub mod mssql;
pub mod mysql;
pub mod postgres;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::catalog::TableRef;
use crate::engine::mssql::MsConn;
use crate::engine::mysql::MyConn;
use crate::engine::postgres::PgConn;
use crate::engine::{self, Conn, Visitor};

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

impl SlowQuery {
    /// A text row whose columns are, in order: calls, total ms, mean ms, rows, query (the
    /// order every engine's catalogue query gives them).
    pub fn from_text_row(r: &[Option<String>]) -> SlowQuery {
        SlowQuery {
            calls: int(r, 0),
            total_ms: num(r, 1),
            mean_ms: num(r, 2),
            rows: int(r, 3),
            query: text(r, 4),
        }
    }
}

/// What `slow-queries` found: the statements, and what the DBA should know about how
/// complete they are.
#[derive(Debug, Clone, Default)]
pub struct SlowQueries {
    pub queries: Vec<SlowQuery>,
    pub notes: Vec<String>,
}

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
            Dialect::Postgres => engine::postgres::quote_ident(s),
            Dialect::Mysql => engine::mysql::quote_ident(s),
            Dialect::Mssql => engine::mssql::quote_ident(s),
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

/// The report's order: notices first, then by kind (the most actionable first), the biggest
/// first within a kind, then by table and index.
fn sort_findings(findings: &mut [Finding]) {
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
}

/// The error of `analyze` and `vacuum` when named tables are not found.
fn missing_tables_error(missing: &[String], where_: &str) -> anyhow::Error {
    anyhow!(
        "no such table{} {} in {where_}",
        if missing.len() > 1 { "s" } else { "" },
        missing.join(", ")
    )
}

/// A size for people.
fn human(n: i64) -> String {
    indicatif::HumanBytes(n.max(0) as u64).to_string()
}

// ---------------------------------------------------------------------------------------------
// Cells of text rows (MySQL's and SQL Server's catalogue reads)

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

// ---------------------------------------------------------------------------------------------
// The operations: each reaches its engine's catalogue file through an [`engine::Visitor`]
// (one per operation), which the connection's `visit` runs for its engine.

/// The operations' statements may run for long: PostgreSQL's session keeps the inspection
/// `statement_timeout` of the config, lifted for this session only; the other engines have
/// nothing to lift.
pub async fn lift_statement_timeout(conn: &mut Conn) -> Result<()> {
    conn.visit(LiftStatementTimeout).await
}

struct LiftStatementTimeout;

impl Visitor for LiftStatementTimeout {
    type Output = ();
    const WHAT: &'static str = "maintenance";

    async fn postgres(self, c: &mut PgConn) -> Result<()> {
        postgres::lift_statement_timeout(c).await
    }

    async fn mysql(self, _c: &mut MyConn) -> Result<()> {
        Ok(())
    }

    async fn mssql(self, _c: &mut MsConn) -> Result<()> {
        Ok(())
    }
}

/// The tables to maintain (every user table, or the named ones, each of which must exist)
/// and the statements for each.
pub async fn plan(conn: &mut Conn, work: Work, named: &[TableRef]) -> Result<Vec<TableTask>> {
    conn.visit(Plan { work, named }).await
}

struct Plan<'a> {
    work: Work,
    named: &'a [TableRef],
}

impl Visitor for Plan<'_> {
    type Output = Vec<TableTask>;
    const WHAT: &'static str = "maintenance";

    async fn postgres(self, c: &mut PgConn) -> Result<Vec<TableTask>> {
        postgres::plan(c, self.work, self.named).await
    }

    async fn mysql(self, c: &mut MyConn) -> Result<Vec<TableTask>> {
        mysql::plan(c, self.work, self.named).await
    }

    async fn mssql(self, c: &mut MsConn) -> Result<Vec<TableTask>> {
        mssql::plan(c, self.work, self.named).await
    }
}

/// Runs one table's statements; the detail to report on success.
pub async fn run_task(conn: &mut Conn, task: &TableTask) -> Result<String> {
    if let Some(why) = &task.refused {
        bail!("{why}");
    }
    conn.visit(RunTask(task)).await
}

struct RunTask<'a>(&'a TableTask);

impl Visitor for RunTask<'_> {
    type Output = String;
    const WHAT: &'static str = "maintenance";

    async fn postgres(self, c: &mut PgConn) -> Result<String> {
        postgres::run_task(c, self.0).await
    }

    async fn mysql(self, c: &mut MyConn) -> Result<String> {
        mysql::run_task(c, self.0).await
    }

    async fn mssql(self, c: &mut MsConn) -> Result<String> {
        mssql::run_task(c, self.0).await
    }
}

/// Unused, duplicate, overlapping and invalid indexes, foreign keys without an index, bloat,
/// fragmentation and missing indexes, each with the SQL that fixes it. `timeout` bounds each
/// catalogue query where the server has no session setting for it (MySQL).
pub async fn index_report(conn: &mut Conn, timeout: Duration) -> Result<Vec<Finding>> {
    // A report inspects: within its timeout, and cancelled on the server past it.
    let mut findings = conn.probe(timeout, IndexReport { timeout }).await?;
    sort_findings(&mut findings);
    Ok(findings)
}

struct IndexReport {
    timeout: Duration,
}

impl Visitor for IndexReport {
    type Output = Vec<Finding>;
    const WHAT: &'static str = "index reports";

    async fn postgres(self, c: &mut PgConn) -> Result<Vec<Finding>> {
        postgres::index_report(c).await
    }

    async fn mysql(self, c: &mut MyConn) -> Result<Vec<Finding>> {
        mysql::index_report(c, self.timeout).await
    }

    async fn mssql(self, c: &mut MsConn) -> Result<Vec<Finding>> {
        mssql::index_report(c).await
    }
}

/// The `top` statements of the target's database by total time.
pub async fn slow_queries(conn: &mut Conn, top: u32, timeout: Duration) -> Result<SlowQueries> {
    conn.probe(timeout, SlowQueryReport { top, timeout }).await
}

struct SlowQueryReport {
    top: u32,
    timeout: Duration,
}

impl Visitor for SlowQueryReport {
    type Output = SlowQueries;
    const WHAT: &'static str = "slow-query reports";

    async fn postgres(self, c: &mut PgConn) -> Result<SlowQueries> {
        postgres::slow_queries(c, self.top).await
    }

    async fn mysql(self, c: &mut MyConn) -> Result<SlowQueries> {
        mysql::slow_queries(c, self.top, self.timeout).await
    }

    async fn mssql(self, c: &mut MsConn) -> Result<SlowQueries> {
        mssql::slow_queries(c, self.top).await
    }
}

/// Finds the journal table and its time column on this target and prepares the statements;
/// `days` of retention, `batch` rows per DELETE.
pub async fn purge_plan(
    conn: &mut Conn,
    table: &TableRef,
    column: &str,
    days: u32,
    batch: u32,
) -> Result<Purge> {
    let days = i32::try_from(days).map_err(|_| anyhow!("{days} days is too many"))?;
    conn.visit(PurgePlan {
        table,
        column,
        days,
        batch,
    })
    .await
}

struct PurgePlan<'a> {
    table: &'a TableRef,
    column: &'a str,
    days: i32,
    batch: u32,
}

impl Visitor for PurgePlan<'_> {
    type Output = Purge;
    const WHAT: &'static str = "cleanup";

    async fn postgres(self, c: &mut PgConn) -> Result<Purge> {
        postgres::purge_plan(c, self.table, self.column, self.days, self.batch).await
    }

    async fn mysql(self, c: &mut MyConn) -> Result<Purge> {
        mysql::purge_plan(c, self.table, self.column, self.days, self.batch).await
    }

    async fn mssql(self, c: &mut MsConn) -> Result<Purge> {
        mssql::purge_plan(c, self.table, self.column, self.days, self.batch).await
    }
}

/// The rows older than the cutoff.
pub async fn purge_count(conn: &mut Conn, p: &Purge) -> Result<u64> {
    conn.visit(PurgeCount(p)).await
}

struct PurgeCount<'a>(&'a Purge);

impl Visitor for PurgeCount<'_> {
    type Output = u64;
    const WHAT: &'static str = "cleanup";

    async fn postgres(self, c: &mut PgConn) -> Result<u64> {
        postgres::purge_count(c, self.0).await
    }

    async fn mysql(self, c: &mut MyConn) -> Result<u64> {
        mysql::purge_count(c, self.0).await
    }

    async fn mssql(self, c: &mut MsConn) -> Result<u64> {
        mssql::purge_count(c, self.0).await
    }
}

/// Deletes one batch, in its own transaction (the statement autocommits); the rows deleted.
pub async fn purge_batch(conn: &mut Conn, p: &Purge) -> Result<u64> {
    conn.visit(PurgeBatch(p)).await
}

struct PurgeBatch<'a>(&'a Purge);

impl Visitor for PurgeBatch<'_> {
    type Output = u64;
    const WHAT: &'static str = "cleanup";

    async fn postgres(self, c: &mut PgConn) -> Result<u64> {
        postgres::purge_batch(c, self.0).await
    }

    async fn mysql(self, c: &mut MyConn) -> Result<u64> {
        mysql::purge_batch(c, self.0).await
    }

    async fn mssql(self, c: &mut MsConn) -> Result<u64> {
        mssql::purge_batch(c, self.0).await
    }
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
    fn index_names_are_cut_at_64_characters() {
        let long = vec!["c".repeat(100)];
        assert_eq!(index_name("t", &long).len(), 64);
    }
}
