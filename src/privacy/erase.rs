//! `erase`: a person's rows, and every row that belongs to them, removed or pseudonymised in
//! one transaction, with a record that holds no personal value.
//!
//! The walk: the subject rows (`--table`, `--where COL=VALUE`, the value bound as a
//! parameter), then, transitively, every row whose foreign key references a row already
//! reached (children of children, cycles included: a row is visited once). What happens to
//! each table's rows is the `erasure:` policy's ([`ErasureSection::action_of`]): deleted, or
//! kept and pseudonymised — its links to deleted rows re-pointed (NULL when the column
//! allows it, else the subject table's single placeholder row, "the anonymised subject",
//! created on first need and recorded in `mairie_dba_erasure_placeholder`) and its columns
//! that have a `privacy.rules` entry (other than `keep`) set to NULL, or to `anonyme` when
//! the column is NOT NULL text. The subject rows themselves are always deleted.
//!
//! The audit journal (`maintenance.journal_table`, with its `table_cible` and `cle`
//! columns) names rows by table and key text, not by foreign key: its rows about every row
//! reached (deleted or kept) are deleted last, which also removes the rows the journal's own
//! triggers wrote for this erasure's changes. The record of the erasure is the trace.
//!
//! Statements are built here for every engine through [`Sql`]; the servers run them through
//! [`Driver::query_text`] / [`Driver::execute_text`], so no value is ever written into SQL
//! text.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::catalog::TableRef;
use crate::config::EngineKind;
use crate::engine::{Driver, RelColumn, RelForeignKey, RelTable, Relations};
use crate::error::ConfigError;
use crate::privacy::{ColumnRef, ErasureAction, ErasureSection, PrivacySection, Strategy};

/// The table that records erasures (created if missing).
pub const LOG_TABLE: &str = "mairie_dba_erasure_log";
/// The table that remembers each subject table's placeholder row.
pub const PLACEHOLDER_TABLE: &str = "mairie_dba_erasure_placeholder";
/// What a NOT NULL personal text column of a kept row becomes.
pub const SCRUBBED_TEXT: &str = "anonyme";
/// Keys bound per statement.
const CHUNK: usize = 500;

/// A row's primary key, as text.
pub type Key = Vec<Option<String>>;

/// How statements are written for an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sql {
    Postgres,
    Mysql,
    Mssql,
}

impl Sql {
    pub fn of(engine: EngineKind) -> Result<Sql> {
        match engine {
            EngineKind::Postgres => Ok(Sql::Postgres),
            EngineKind::Mysql => Ok(Sql::Mysql),
            EngineKind::Mssql => Ok(Sql::Mssql),
            EngineKind::Redis => bail!("redis has no tables to erase from"),
        }
    }

    pub fn ident(self, s: &str) -> String {
        match self {
            Sql::Postgres => crate::engine::postgres::quote_ident(s),
            Sql::Mysql => crate::engine::mysql::quote_ident(s),
            Sql::Mssql => crate::engine::mssql::quote_ident(s),
        }
    }

    /// The `n`-th parameter (1-based), bound as text, read as `ty`.
    pub fn param(self, n: usize, ty: &str) -> String {
        match self {
            Sql::Postgres => format!("${n}::text::{ty}"),
            // MySQL converts a string to the column's type itself (and uses its indexes).
            Sql::Mysql => "?".to_string(),
            Sql::Mssql => format!("CAST(@P{n} AS {ty})"),
        }
    }

    /// An expression read as text.
    pub fn text(self, expr: &str) -> String {
        match self {
            Sql::Postgres => format!("({expr})::text"),
            Sql::Mysql => format!("CAST({expr} AS CHAR)"),
            Sql::Mssql => format!("CAST({expr} AS nvarchar(max))"),
        }
    }

    /// The bookkeeping tables' qualified names.
    pub fn own_table(self, name: &str) -> String {
        match self {
            Sql::Postgres => format!("public.{name}"),
            Sql::Mysql => name.to_string(),
            Sql::Mssql => format!("dbo.{name}"),
        }
    }

    /// `SELECT … WHERE` limited to `n` rows.
    pub fn select_limited(self, cols: &str, from: &str, cond: &str, n: u32) -> String {
        match self {
            Sql::Mssql => format!("SELECT TOP ({n}) {cols} FROM {from} WHERE {cond}"),
            _ => format!("SELECT {cols} FROM {from} WHERE {cond} LIMIT {n}"),
        }
    }

    pub fn current_user(self) -> &'static str {
        match self {
            Sql::Postgres => "SELECT current_user::text",
            Sql::Mysql => "SELECT CAST(CURRENT_USER() AS CHAR)",
            Sql::Mssql => "SELECT CAST(SUSER_SNAME() AS nvarchar(max))",
        }
    }

    /// The DDL of the erasure log and of the placeholder table.
    pub fn bookkeeping_ddl(self) -> Vec<String> {
        let log = self.own_table(LOG_TABLE);
        let ph = self.own_table(PLACEHOLDER_TABLE);
        match self {
            Sql::Postgres => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {log} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                     erased_at timestamptz NOT NULL DEFAULT now(), db_user text NOT NULL, os_user text NOT NULL, \
                     subject_table text NOT NULL, subject_hash text NOT NULL, subjects integer NOT NULL, \
                     tables text NOT NULL)"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {ph} (table_name text PRIMARY KEY, key_text text NOT NULL)"
                ),
            ],
            Sql::Mysql => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {log} (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
                     erased_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), db_user VARCHAR(255) NOT NULL, \
                     os_user VARCHAR(255) NOT NULL, subject_table VARCHAR(255) NOT NULL, \
                     subject_hash CHAR(64) NOT NULL, subjects INT NOT NULL, tables TEXT NOT NULL) \
                     CHARACTER SET utf8mb4"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {ph} (table_name VARCHAR(255) PRIMARY KEY, \
                     key_text VARCHAR(255) NOT NULL) CHARACTER SET utf8mb4"
                ),
            ],
            Sql::Mssql => vec![
                format!(
                    "IF OBJECT_ID(N'{log}') IS NULL CREATE TABLE {log} (id bigint IDENTITY PRIMARY KEY, \
                     erased_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME(), db_user nvarchar(255) NOT NULL, \
                     os_user nvarchar(255) NOT NULL, subject_table nvarchar(255) NOT NULL, \
                     subject_hash char(64) NOT NULL, subjects int NOT NULL, tables nvarchar(max) NOT NULL)"
                ),
                format!(
                    "IF OBJECT_ID(N'{ph}') IS NULL CREATE TABLE {ph} (table_name nvarchar(255) PRIMARY KEY, \
                     key_text nvarchar(255) NOT NULL)"
                ),
            ],
        }
    }

    /// `(a, b) IN ((p, p), …)` (or `a IN (p, …)`) over `keys`, parameters numbered from
    /// `first`; the parameters are appended to `params`.
    pub fn key_in(
        self,
        cols: &[&RelColumn],
        keys: &[Key],
        first: usize,
        params: &mut Vec<Option<String>>,
    ) -> String {
        let mut n = first;
        let lhs = if cols.len() == 1 {
            self.ident(&cols[0].name)
        } else {
            format!(
                "({})",
                cols.iter()
                    .map(|c| self.ident(&c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let tuples: Vec<String> = keys
            .iter()
            .map(|k| {
                let ps: Vec<String> = cols
                    .iter()
                    .zip(k)
                    .map(|(c, v)| {
                        params.push(v.clone());
                        let p = self.param(n, &c.sql_type);
                        n += 1;
                        p
                    })
                    .collect();
                if ps.len() == 1 {
                    ps.into_iter().next().unwrap_or_default()
                } else {
                    format!("({})", ps.join(", "))
                }
            })
            .collect();
        format!("{lhs} IN ({})", tuples.join(", "))
    }

    /// The primary key's columns read as text, for a select list.
    fn key_list(self, t: &RelTable) -> String {
        t.primary_key
            .iter()
            .map(|c| self.text(&self.ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `--where COL=VALUE`, split at the first `=`.
pub fn parse_where(s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((c, v)) if !c.trim().is_empty() => Ok((c.trim().to_string(), v.to_string())),
        _ => Err(ConfigError::new(format!(
            "--where: expected COL=VALUE, e.g. id=123 or email=nom@example.org (got {} character(s) without `COL=`)",
            s.chars().count()
        ))),
    }
}

/// The text the subject's hash is made of: the same subject gives the same hash.
pub fn subject_text(table: &TableRef, column: &str, value: &str) -> String {
    format!("{table}:{column}={value}")
}

/// One table's share of the plan (no value, only names and counts).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanTable {
    pub table: String,
    /// `delete`, `pseudonymize`, or `delete (journal)`.
    pub action: String,
    pub rows: u64,
    /// Kept rows: the foreign keys re-pointed and how (`citoyen_id -> placeholder`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relinked: Vec<String>,
    /// Kept rows: the personal columns cleared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scrubbed: Vec<String>,
}

/// What an erasure does, known before anything changes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub subject: TableRef,
    pub column: String,
    pub subjects: u64,
    pub tables: Vec<PlanTable>,
    pub notes: Vec<String>,
    /// The placeholder row: needed, and whether it exists already.
    pub placeholder: Option<bool>,
    rows: BTreeMap<TableRef, BTreeSet<Key>>,
    actions: BTreeMap<TableRef, ErasureAction>,
    /// Per foreign key (index into `rel.foreign_keys`): the child rows that reference a
    /// reached parent row.
    links: BTreeMap<usize, BTreeSet<Key>>,
    delete_order: Vec<TableRef>,
    /// Foreign keys set to NULL before the deletes, to break cycles.
    cycle_breaks: Vec<usize>,
    journal: Option<Journal>,
    rel: Relations,
}

#[derive(Debug, Clone)]
struct Journal {
    table: RelTable,
    table_col: String,
    key_col: String,
}

/// Walks the foreign keys from the subject rows and decides what becomes of each row.
#[allow(clippy::too_many_arguments)]
pub async fn plan(
    conn: &impl Driver,
    sql: Sql,
    erasure: &ErasureSection,
    privacy: &PrivacySection,
    journal_table: &str,
    subject: &TableRef,
    column: &str,
    value: &str,
) -> Result<Plan> {
    let rel = conn.relations().await?;
    let st = rel
        .table(subject)
        .ok_or_else(|| {
            anyhow!(
                "table {subject} does not exist on target `{}`",
                conn.target()
            )
        })?
        .clone();
    let col = st.column(column).ok_or_else(|| {
        ConfigError::new(format!(
            "--where: {subject} has no column `{column}` (its columns: {})",
            st.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if st.primary_key.is_empty() {
        bail!("{subject} has no primary key: its rows cannot be followed");
    }
    let q = format!(
        "SELECT {} FROM {} WHERE {} = {}",
        sql.key_list(&st),
        st.quoted,
        sql.ident(column),
        sql.param(1, &col.sql_type)
    );
    let found = conn.query_text(&q, &[Some(value.to_string())]).await?;
    let subjects = found.len() as u64;
    let mut rows: BTreeMap<TableRef, BTreeSet<Key>> = BTreeMap::new();
    rows.insert(subject.clone(), found.into_iter().collect());
    let mut links: BTreeMap<usize, BTreeSet<Key>> = BTreeMap::new();
    let mut notes = Vec::new();
    let journal_ref = TableRef::parse(journal_table).ok();

    // Breadth first: each table's newly reached rows are followed once.
    let mut queue: Vec<(TableRef, Vec<Key>)> = vec![(
        subject.clone(),
        rows[subject].iter().cloned().collect::<Vec<_>>(),
    )];
    while let Some((parent, keys)) = queue.pop() {
        if keys.is_empty() {
            continue;
        }
        let pt = rel.table(&parent).expect("reached tables exist").clone();
        for (i, fk) in rel.foreign_keys.iter().enumerate() {
            if fk.parent != parent || Some(&fk.child) == journal_ref.as_ref() {
                continue;
            }
            let Some(ct) = rel.table(&fk.child) else {
                continue;
            };
            if ct.primary_key.is_empty() {
                bail!(
                    "{} references {} ({}) but has no primary key: its rows cannot be followed",
                    fk.child,
                    parent,
                    fk.name
                );
            }
            let mut found = BTreeSet::new();
            for chunk in keys.chunks(CHUNK) {
                let (q, params) = child_query(sql, &pt, ct, fk, chunk);
                for r in conn.query_text(&q, &params).await? {
                    found.insert(r);
                }
            }
            if found.is_empty() {
                continue;
            }
            links.entry(i).or_default().extend(found.iter().cloned());
            let seen = rows.entry(fk.child.clone()).or_default();
            let new: Vec<Key> = found
                .into_iter()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            if !new.is_empty() {
                queue.push((fk.child.clone(), new));
            }
        }
    }

    let mut actions = BTreeMap::new();
    for t in rows.keys() {
        let a = if t == subject {
            ErasureAction::Delete
        } else {
            erasure.action_of(&t.to_string())
        };
        actions.insert(t.clone(), a);
    }
    let deleted = |t: &TableRef| actions.get(t) == Some(&ErasureAction::Delete);

    // Kept rows: what is re-pointed and what is cleared.
    let mut tables = Vec::new();
    let mut placeholder_needed = false;
    for (t, keys) in &rows {
        let action = actions[t];
        let rt = rel.table(t).expect("reached tables exist");
        let mut pt = PlanTable {
            table: t.to_string(),
            action: match action {
                ErasureAction::Delete => "delete".into(),
                ErasureAction::Pseudonymize => "pseudonymize".into(),
            },
            rows: keys.len() as u64,
            relinked: Vec::new(),
            scrubbed: Vec::new(),
        };
        if action == ErasureAction::Pseudonymize {
            for (i, fk) in rel.foreign_keys.iter().enumerate() {
                if &fk.child != t || !deleted(&fk.parent) || !links.contains_key(&i) {
                    continue;
                }
                let nullable = fk
                    .columns
                    .iter()
                    .all(|c| rt.column(c).is_some_and(|c| c.nullable));
                if nullable {
                    pt.relinked
                        .push(format!("{} -> NULL", fk.columns.join(", ")));
                } else if &fk.parent == subject {
                    placeholder_needed = true;
                    pt.relinked
                        .push(format!("{} -> placeholder", fk.columns.join(", ")));
                } else {
                    bail!(
                        "{t} is kept (pseudonymize) but its NOT NULL foreign key {} references {}, \
                         whose rows are deleted: make {} pseudonymize, or {t} delete, in `erasure.tables`",
                        fk.name,
                        fk.parent,
                        fk.parent
                    );
                }
            }
            pt.scrubbed = scrub_columns(privacy, t, rt, &rel)
                .into_iter()
                .map(|c| c.name.clone())
                .collect();
        }
        tables.push(pt);
    }

    // Children before parents; a cycle is broken by setting a nullable key to NULL first.
    let del: Vec<TableRef> = rows.keys().filter(|t| deleted(t)).cloned().collect();
    let (delete_order, cycle_breaks) = delete_order(&del, &rel, &links)?;

    let journal = find_journal(&rel, journal_ref.as_ref());
    if let Some(j) = &journal {
        let mut n = 0u64;
        for (t, keys) in &rows {
            n += journal_count(conn, sql, j, t, rel.table(t).expect("reached"), keys).await?;
        }
        if n > 0 {
            tables.push(PlanTable {
                table: j.table.table.to_string(),
                action: "delete (journal)".into(),
                rows: n,
                relinked: Vec::new(),
                scrubbed: Vec::new(),
            });
        }
    } else {
        notes.push(format!(
            "no audit journal {journal_table} with columns table_cible and cle: none scrubbed"
        ));
    }
    let placeholder = if placeholder_needed {
        Some(placeholder_key(conn, sql, &rel, subject).await?.is_some())
    } else {
        None
    };
    Ok(Plan {
        subject: subject.clone(),
        column: column.to_string(),
        subjects,
        tables,
        notes,
        placeholder,
        rows,
        actions,
        links,
        delete_order,
        cycle_breaks,
        journal,
        rel,
    })
}

/// `SELECT child keys FROM child WHERE (fk cols) IN (SELECT parent cols FROM parent WHERE
/// parent key IN (…))`.
fn child_query(
    sql: Sql,
    pt: &RelTable,
    ct: &RelTable,
    fk: &RelForeignKey,
    keys: &[Key],
) -> (String, Vec<Option<String>>) {
    let mut params = Vec::new();
    let pk: Vec<&RelColumn> = pt.primary_key.iter().filter_map(|c| pt.column(c)).collect();
    let cond = sql.key_in(&pk, keys, 1, &mut params);
    let list = |cols: &[String]| {
        let v: Vec<String> = cols.iter().map(|c| sql.ident(c)).collect();
        if v.len() == 1 {
            v[0].clone()
        } else {
            format!("({})", v.join(", "))
        }
    };
    let q = format!(
        "SELECT {} FROM {} WHERE {} IN (SELECT {} FROM {} WHERE {cond})",
        sql.key_list(ct),
        ct.quoted,
        list(&fk.columns),
        fk.parent_columns
            .iter()
            .map(|c| sql.ident(c))
            .collect::<Vec<_>>()
            .join(", "),
        pt.quoted
    );
    (q, params)
}

/// The columns of a kept table cleared by pseudonymisation: those with a rule other than
/// `keep`, that are neither key nor foreign key columns.
fn scrub_columns<'a>(
    privacy: &PrivacySection,
    t: &TableRef,
    rt: &'a RelTable,
    rel: &Relations,
) -> Vec<&'a RelColumn> {
    rt.columns
        .iter()
        .filter(|c| {
            let r = ColumnRef {
                schema: t.schema.clone(),
                table: t.name.clone(),
                column: c.name.clone(),
            };
            matches!(privacy.rule(&r), Some(s) if s != Strategy::Keep)
                && !rt.primary_key.contains(&c.name)
                && !rel
                    .foreign_keys
                    .iter()
                    .any(|f| &f.child == t && f.columns.contains(&c.name))
                && (c.nullable || c.text)
        })
        .collect()
}

/// The deleted tables, children first, and the foreign keys to set NULL first because they
/// close a cycle (or reference their own table).
fn delete_order(
    del: &[TableRef],
    rel: &Relations,
    links: &BTreeMap<usize, BTreeSet<Key>>,
) -> Result<(Vec<TableRef>, Vec<usize>)> {
    let edges: Vec<usize> = rel
        .foreign_keys
        .iter()
        .enumerate()
        .filter(|(i, f)| links.contains_key(i) && del.contains(&f.child) && del.contains(&f.parent))
        .map(|(i, _)| i)
        .collect();
    let mut breaks: Vec<usize> = edges
        .iter()
        .copied()
        .filter(|&i| rel.foreign_keys[i].child == rel.foreign_keys[i].parent)
        .collect();
    let mut left: Vec<TableRef> = del.to_vec();
    let mut order = Vec::new();
    while !left.is_empty() {
        let blocked = |t: &TableRef, breaks: &[usize]| {
            edges.iter().any(|&i| {
                let f = &rel.foreign_keys[i];
                &f.parent == t && f.child != *t && left.contains(&f.child) && !breaks.contains(&i)
            })
        };
        let pick = left.iter().position(|t| !blocked(t, &breaks));
        let at = match pick {
            Some(at) => at,
            None => {
                // A cycle: the first table goes now, its children's links to it set NULL.
                let t = left[0].clone();
                for &i in &edges {
                    let f = &rel.foreign_keys[i];
                    if f.parent == t && f.child != t && left.contains(&f.child) {
                        breaks.push(i);
                    }
                }
                0
            }
        };
        order.push(left.remove(at));
    }
    for &i in &breaks {
        let f = &rel.foreign_keys[i];
        let ct = rel.table(&f.child).expect("reached");
        if f.child != f.parent
            && !f
                .columns
                .iter()
                .all(|c| ct.column(c).is_some_and(|c| c.nullable))
        {
            bail!(
                "the foreign keys between the rows to delete form a cycle through {} ({}), \
                 which is NOT NULL: it cannot be broken",
                f.name,
                f.child
            );
        }
    }
    Ok((order, breaks))
}

fn find_journal(rel: &Relations, t: Option<&TableRef>) -> Option<Journal> {
    let jt = rel.table(t?)?;
    let has = |c: &str| jt.column(c).is_some();
    (has("table_cible") && has("cle")).then(|| Journal {
        table: jt.clone(),
        table_col: "table_cible".into(),
        key_col: "cle".into(),
    })
}

/// The journal's condition for a table's rows: `table_cible = p AND cle IN (p, …)`. Only
/// single-column keys are journaled (as text).
fn journal_cond(
    sql: Sql,
    j: &Journal,
    t: &TableRef,
    rt: &RelTable,
    keys: &[Key],
    params: &mut Vec<Option<String>>,
) -> Option<String> {
    if rt.primary_key.len() != 1 {
        return None;
    }
    params.push(Some(t.to_string()));
    let text_col = RelColumn {
        name: j.key_col.clone(),
        sql_type: "text".into(),
        nullable: true,
        text: true,
        temporal: false,
        has_default: false,
    };
    let tc = sql.param(1, "text");
    let single: Vec<Key> = keys.to_vec();
    let cond = sql.key_in(&[&text_col], &single, 2, params);
    Some(format!("{} = {tc} AND {cond}", sql.ident(&j.table_col)))
}

async fn journal_count(
    conn: &impl Driver,
    sql: Sql,
    j: &Journal,
    t: &TableRef,
    rt: &RelTable,
    keys: &BTreeSet<Key>,
) -> Result<u64> {
    let keys: Vec<Key> = keys.iter().cloned().collect();
    let mut n = 0;
    for chunk in keys.chunks(CHUNK) {
        let mut params = Vec::new();
        let Some(cond) = journal_cond(sql, j, t, rt, chunk, &mut params) else {
            return Ok(0);
        };
        let q = format!(
            "SELECT {} FROM {} WHERE {cond}",
            sql.text("COUNT(*)"),
            j.table.quoted
        );
        n += first_number(&conn.query_text(&q, &params).await?);
    }
    Ok(n)
}

fn first_number(rows: &[Vec<Option<String>>]) -> u64 {
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The placeholder row's key of a subject table, if one was made.
async fn placeholder_key(
    conn: &impl Driver,
    sql: Sql,
    rel: &Relations,
    subject: &TableRef,
) -> Result<Option<String>> {
    let own = match sql {
        Sql::Mysql => TableRef::new("mairie", "dba_erasure_placeholder"),
        _ => TableRef::new("public", PLACEHOLDER_TABLE),
    };
    if rel.table(&own).is_none() {
        return Ok(None);
    }
    let q = format!(
        "SELECT key_text FROM {} WHERE table_name = {}",
        sql.own_table(PLACEHOLDER_TABLE),
        sql.param(1, "text")
    );
    Ok(conn
        .query_text(&q, &[Some(subject.to_string())])
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// Creates the placeholder row of the subject table: every NOT NULL column without a default
/// gets `anonyme` (a text column with a rule) or the table's smallest value (which passes its
/// checks and foreign keys and names nobody); nullable columns are NULL.
async fn create_placeholder(
    conn: &impl Driver,
    sql: Sql,
    privacy: &PrivacySection,
    rt: &RelTable,
) -> Result<String> {
    if rt.primary_key.len() != 1 {
        bail!(
            "{}: a placeholder row needs a one-column primary key",
            rt.table
        );
    }
    let mut cols = Vec::new();
    let mut exprs = Vec::new();
    let mut params = Vec::new();
    for c in &rt.columns {
        if c.has_default {
            continue;
        }
        let ruled = privacy
            .rule(&ColumnRef {
                schema: rt.table.schema.clone(),
                table: rt.table.name.clone(),
                column: c.name.clone(),
            })
            .is_some();
        cols.push(sql.ident(&c.name));
        if c.nullable {
            exprs.push("NULL".to_string());
        } else if ruled
            && c.text
            && !c.sql_type.starts_with("char")
            && !c.sql_type.starts_with("character(")
        {
            params.push(Some(SCRUBBED_TEXT.to_string()));
            exprs.push(sql.param(params.len(), &c.sql_type));
        } else {
            exprs.push(format!("MIN({})", sql.ident(&c.name)));
        }
    }
    let pk = sql.ident(&rt.primary_key[0]);
    let insert = format!(
        "INSERT INTO {} ({}) SELECT {} FROM {}",
        rt.quoted,
        cols.join(", "),
        exprs.join(", "),
        rt.quoted
    );
    let key = match sql {
        Sql::Postgres => {
            let r = conn
                .query_text(&format!("{insert} RETURNING {}", sql.text(&pk)), &params)
                .await?;
            r.into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten())
        }
        Sql::Mysql => {
            conn.execute_text(&insert, &params).await?;
            let r = conn
                .query_text("SELECT CAST(LAST_INSERT_ID() AS CHAR)", &[])
                .await?;
            r.into_iter()
                .next()
                .and_then(|r| r.into_iter().next().flatten())
        }
        Sql::Mssql => bail!("placeholder rows are not made on SQL Server"),
    };
    let key = key.ok_or_else(|| anyhow!("{}: the placeholder row got no key", rt.table))?;
    conn.execute_text(
        &format!(
            "INSERT INTO {} (table_name, key_text) VALUES ({}, {})",
            sql.own_table(PLACEHOLDER_TABLE),
            sql.param(1, "text"),
            sql.param(2, "text")
        ),
        &[Some(rt.table.to_string()), Some(key.clone())],
    )
    .await?;
    Ok(key)
}

/// What an erasure changed.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Rows per table (the journal's as deleted at the end, own triggers' rows included).
    pub counts: BTreeMap<String, u64>,
    pub placeholder_created: bool,
}

/// The erasure record, as stored and reported: no personal value.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub erased_at: String,
    pub db_user: String,
    pub os_user: String,
    pub subject_table: String,
    pub subject_hash: String,
    pub subjects: u64,
    pub tables: BTreeMap<String, u64>,
}

/// Creates the erasure log and the placeholder table when missing (before the transaction:
/// MySQL commits at each CREATE TABLE).
pub async fn ensure_bookkeeping(conn: &impl Driver, sql: Sql) -> Result<()> {
    for ddl in sql.bookkeeping_ddl() {
        conn.execute_text(&ddl, &[]).await?;
    }
    Ok(())
}

/// The OS user running the tool.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }))
}

/// Applies a plan in one transaction and records it; the caller has made the bookkeeping
/// tables ([`ensure_bookkeeping`]).
pub async fn apply(
    conn: &impl Driver,
    sql: Sql,
    privacy: &PrivacySection,
    plan: &Plan,
    subject_hash: &str,
) -> Result<(Applied, Record)> {
    conn.begin().await?;
    match apply_in(conn, sql, privacy, plan, subject_hash).await {
        Ok(r) => {
            conn.commit().await?;
            Ok(r)
        }
        Err(e) => {
            conn.rollback().await;
            Err(e)
        }
    }
}

async fn apply_in(
    conn: &impl Driver,
    sql: Sql,
    privacy: &PrivacySection,
    plan: &Plan,
    subject_hash: &str,
) -> Result<(Applied, Record)> {
    let rel = &plan.rel;
    let mut done = Applied::default();
    let deleted = |t: &TableRef| plan.actions.get(t) == Some(&ErasureAction::Delete);
    let mut placeholder: Option<String> = None;
    if plan.placeholder.is_some() {
        placeholder = placeholder_key(conn, sql, rel, &plan.subject).await?;
        let rt = rel.table(&plan.subject).expect("subject exists");
        if let Some(k) = &placeholder {
            // The retention purge may have removed it since: then a new one is made.
            let pk = rt.column(&rt.primary_key[0]).expect("key column");
            let q = format!(
                "SELECT {} FROM {} WHERE {} = {}",
                sql.text("COUNT(*)"),
                rt.quoted,
                sql.ident(&pk.name),
                sql.param(1, &pk.sql_type)
            );
            if first_number(&conn.query_text(&q, &[Some(k.clone())]).await?) == 0 {
                conn.execute_text(
                    &format!(
                        "DELETE FROM {} WHERE table_name = {}",
                        sql.own_table(PLACEHOLDER_TABLE),
                        sql.param(1, "text")
                    ),
                    &[Some(plan.subject.to_string())],
                )
                .await?;
                placeholder = None;
            }
        }
        if placeholder.is_none() {
            placeholder = Some(create_placeholder(conn, sql, privacy, rt).await?);
            done.placeholder_created = true;
        }
    }
    // Kept rows: links re-pointed, personal columns cleared.
    for (t, keys) in &plan.rows {
        if deleted(t) {
            continue;
        }
        let rt = rel.table(t).expect("reached");
        let pk: Vec<&RelColumn> = rt.primary_key.iter().filter_map(|c| rt.column(c)).collect();
        for (i, fk) in rel.foreign_keys.iter().enumerate() {
            let Some(linked) = plan.links.get(&i) else {
                continue;
            };
            if &fk.child != t || !deleted(&fk.parent) {
                continue;
            }
            let nullable = fk
                .columns
                .iter()
                .all(|c| rt.column(c).is_some_and(|c| c.nullable));
            let linked: Vec<Key> = linked.iter().cloned().collect();
            for chunk in linked.chunks(CHUNK) {
                let mut params = Vec::new();
                let set = if nullable {
                    fk.columns
                        .iter()
                        .map(|c| format!("{} = NULL", sql.ident(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else {
                    let col = rt.column(&fk.columns[0]).expect("fk column");
                    params.push(placeholder.clone());
                    format!("{} = {}", sql.ident(&col.name), sql.param(1, &col.sql_type))
                };
                let first = params.len() + 1;
                let cond = sql.key_in(&pk, chunk, first, &mut params);
                conn.execute_text(
                    &format!("UPDATE {} SET {set} WHERE {cond}", rt.quoted),
                    &params,
                )
                .await?;
            }
        }
        let scrub = scrub_columns(privacy, t, rt, rel);
        if !scrub.is_empty() {
            let keys: Vec<Key> = keys.iter().cloned().collect();
            for chunk in keys.chunks(CHUNK) {
                let mut params = Vec::new();
                let set = scrub
                    .iter()
                    .map(|c| {
                        if c.nullable {
                            format!("{} = NULL", sql.ident(&c.name))
                        } else {
                            params.push(Some(SCRUBBED_TEXT.to_string()));
                            format!(
                                "{} = {}",
                                sql.ident(&c.name),
                                sql.param(params.len(), &c.sql_type)
                            )
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let first = params.len() + 1;
                let cond = sql.key_in(&pk, chunk, first, &mut params);
                conn.execute_text(
                    &format!("UPDATE {} SET {set} WHERE {cond}", rt.quoted),
                    &params,
                )
                .await?;
            }
        }
        done.counts.insert(t.to_string(), keys.len() as u64);
    }
    // Cycles: links between rows to delete set NULL first.
    for &i in &plan.cycle_breaks {
        let fk = &rel.foreign_keys[i];
        let rt = rel.table(&fk.child).expect("reached");
        let nullable = fk
            .columns
            .iter()
            .all(|c| rt.column(c).is_some_and(|c| c.nullable));
        if !nullable {
            continue; // a NOT NULL self-reference: one DELETE takes the rows together
        }
        let pk: Vec<&RelColumn> = rt.primary_key.iter().filter_map(|c| rt.column(c)).collect();
        let linked: Vec<Key> = plan.links[&i].iter().cloned().collect();
        for chunk in linked.chunks(CHUNK) {
            let mut params = Vec::new();
            let cond = sql.key_in(&pk, chunk, 1, &mut params);
            let set = fk
                .columns
                .iter()
                .map(|c| format!("{} = NULL", sql.ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            conn.execute_text(
                &format!("UPDATE {} SET {set} WHERE {cond}", rt.quoted),
                &params,
            )
            .await?;
        }
    }
    for t in &plan.delete_order {
        let rt = rel.table(t).expect("reached");
        let pk: Vec<&RelColumn> = rt.primary_key.iter().filter_map(|c| rt.column(c)).collect();
        let keys: Vec<Key> = plan.rows[t].iter().cloned().collect();
        let mut n = 0;
        for chunk in keys.chunks(CHUNK) {
            let mut params = Vec::new();
            let cond = sql.key_in(&pk, chunk, 1, &mut params);
            n += conn
                .execute_text(&format!("DELETE FROM {} WHERE {cond}", rt.quoted), &params)
                .await?;
        }
        done.counts.insert(t.to_string(), n);
    }
    // The journal last: it also holds the rows its triggers wrote for the changes above.
    if let Some(j) = &plan.journal {
        let mut n = 0;
        for (t, keys) in &plan.rows {
            let rt = rel.table(t).expect("reached");
            let keys: Vec<Key> = keys.iter().cloned().collect();
            for chunk in keys.chunks(CHUNK) {
                let mut params = Vec::new();
                let Some(cond) = journal_cond(sql, j, t, rt, chunk, &mut params) else {
                    break;
                };
                n += conn
                    .execute_text(
                        &format!("DELETE FROM {} WHERE {cond}", j.table.quoted),
                        &params,
                    )
                    .await?;
            }
        }
        if n > 0 {
            done.counts.insert(j.table.table.to_string(), n);
        }
    }
    let db_user = conn
        .query_text(sql.current_user(), &[])
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .unwrap_or_default();
    let record = Record {
        erased_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        db_user,
        os_user: os_user(),
        subject_table: plan.subject.to_string(),
        subject_hash: subject_hash.to_string(),
        subjects: plan.subjects,
        tables: done.counts.clone(),
    };
    let tables_json = serde_json::to_string(&record.tables)?;
    conn.execute_text(
        &format!(
            "INSERT INTO {} (db_user, os_user, subject_table, subject_hash, subjects, tables) \
             VALUES ({}, {}, {}, {}, {}, {})",
            sql.own_table(LOG_TABLE),
            sql.param(1, "text"),
            sql.param(2, "text"),
            sql.param(3, "text"),
            sql.param(4, "text"),
            sql.param(5, "integer"),
            sql.param(6, "text"),
        ),
        &[
            Some(record.db_user.clone()),
            Some(record.os_user.clone()),
            Some(record.subject_table.clone()),
            Some(record.subject_hash.clone()),
            Some(record.subjects.to_string()),
            Some(tables_json),
        ],
    )
    .await?;
    Ok((done, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> RelColumn {
        RelColumn {
            name: name.into(),
            sql_type: ty.into(),
            nullable: false,
            text: false,
            temporal: false,
            has_default: false,
        }
    }

    fn table(schema: &str, name: &str, quoted: &str, cols: &[&str]) -> RelTable {
        RelTable {
            table: TableRef::new(schema, name),
            quoted: quoted.into(),
            columns: cols.iter().map(|c| col(c, "bigint")).collect(),
            primary_key: vec!["id".into()],
        }
    }

    fn fk(name: &str, child: &str, col: &str, parent: &str) -> RelForeignKey {
        RelForeignKey {
            name: name.into(),
            child: TableRef::parse(child).unwrap(),
            columns: vec![col.into()],
            parent: TableRef::parse(parent).unwrap(),
            parent_columns: vec!["id".into()],
        }
    }

    #[test]
    fn values_are_bound_never_written_into_the_statement() {
        let c = col("id", "bigint");
        let keys = vec![
            vec![Some("12".to_string())],
            vec![Some("x'); --".to_string())],
        ];
        for (sql, want) in [
            (
                Sql::Postgres,
                "\"id\" IN ($3::text::bigint, $4::text::bigint)",
            ),
            (Sql::Mysql, "`id` IN (?, ?)"),
            (
                Sql::Mssql,
                "[id] IN (CAST(@P3 AS bigint), CAST(@P4 AS bigint))",
            ),
        ] {
            let mut params = vec![None, None];
            assert_eq!(sql.key_in(&[&c], &keys, 3, &mut params), want);
            assert_eq!(params.len(), 4);
            assert_eq!(params[3].as_deref(), Some("x'); --"));
        }
        let a = col("a", "int");
        let b = col("b", "text");
        let mut params = Vec::new();
        assert_eq!(
            Sql::Postgres.key_in(
                &[&a, &b],
                &[vec![Some("1".into()), Some("z".into())]],
                1,
                &mut params
            ),
            "(\"a\", \"b\") IN (($1::text::int, $2::text::text))"
        );
    }

    #[test]
    fn child_rows_are_found_through_the_referenced_columns() {
        let p = table("metier", "citoyens", "[metier].[citoyens]", &["id"]);
        let c = table(
            "metier",
            "demandes",
            "[metier].[demandes]",
            &["id", "citoyen_id"],
        );
        let f = fk("fk", "metier.demandes", "citoyen_id", "metier.citoyens");
        let (q, params) = child_query(Sql::Mssql, &p, &c, &f, &[vec![Some("7".into())]]);
        assert_eq!(
            q,
            "SELECT CAST([id] AS nvarchar(max)) FROM [metier].[demandes] WHERE [citoyen_id] IN \
             (SELECT [id] FROM [metier].[citoyens] WHERE [id] IN (CAST(@P1 AS bigint)))"
        );
        assert_eq!(params, vec![Some("7".to_string())]);
        assert_eq!(
            Sql::Mssql.select_limited("[id]", "[t]", "[d] < @P1", 10),
            "SELECT TOP (10) [id] FROM [t] WHERE [d] < @P1"
        );
        assert!(Sql::Mssql.bookkeeping_ddl()[0]
            .starts_with("IF OBJECT_ID(N'dbo.mairie_dba_erasure_log') IS NULL"));
    }

    #[test]
    fn deletes_go_children_first_and_cycles_are_broken_on_a_nullable_key() {
        let mut rel = Relations::default();
        let mut a = table("s", "a", "a", &["id", "b_id"]);
        a.columns[1].nullable = true;
        rel.tables = vec![
            table("s", "p", "p", &["id"]),
            table("s", "c", "c", &["id", "p_id"]),
            a,
            table("s", "b", "b", &["id", "a_id"]),
        ];
        rel.foreign_keys = vec![
            fk("c_p", "s.c", "p_id", "s.p"),
            fk("a_b", "s.a", "b_id", "s.b"),
            fk("b_a", "s.b", "a_id", "s.a"),
        ];
        let links: BTreeMap<usize, BTreeSet<Key>> = (0..3)
            .map(|i| (i, BTreeSet::from([vec![Some("1".to_string())]])))
            .collect();
        let del: Vec<TableRef> = ["s.p", "s.c"]
            .iter()
            .map(|t| TableRef::parse(t).unwrap())
            .collect();
        let (order, breaks) = delete_order(&del, &rel, &links).unwrap();
        assert_eq!(
            order,
            vec![TableRef::new("s", "c"), TableRef::new("s", "p")]
        );
        assert!(breaks.is_empty());
        // a <-> b: b goes first once a's nullable link to it is set NULL ... or a first,
        // with b's NOT NULL link: refused, since it cannot be broken.
        let del: Vec<TableRef> = ["s.b", "s.a"]
            .iter()
            .map(|t| TableRef::parse(t).unwrap())
            .collect();
        let (order, breaks) = delete_order(&del, &rel, &links).unwrap();
        assert_eq!(
            order,
            vec![TableRef::new("s", "b"), TableRef::new("s", "a")]
        );
        assert_eq!(breaks, vec![1]);
        let del: Vec<TableRef> = ["s.a", "s.b"]
            .iter()
            .map(|t| TableRef::parse(t).unwrap())
            .collect();
        assert!(delete_order(&del, &rel, &links).is_err());
    }

    #[test]
    fn where_is_col_equals_value() {
        assert_eq!(
            parse_where("email=a=b@x").unwrap(),
            ("email".to_string(), "a=b@x".to_string())
        );
        let e = parse_where("dupont").unwrap_err().to_string();
        assert!(!e.contains("dupont"), "{e}");
        assert_eq!(
            subject_text(&TableRef::new("metier", "citoyens"), "id", "123"),
            "metier.citoyens:id=123"
        );
    }
}
