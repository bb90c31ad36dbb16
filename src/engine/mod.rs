//! The database engines behind one enum, and the types their operations share.
//!
//! Commands speak to a [`Conn`]; each engine module holds everything engine-specific (SQL
//! dialect, catalogue queries, bulk-load protocol) and nothing else. An engine never reads
//! CLI arguments and never prints.

pub mod health;
pub mod metrics;
pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod script;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::catalog::{AppliedMigration, Column, Migration, TableRef};
use crate::config::{EngineKind, Target};
use crate::load::{Dialect, LineMap, LoadError};

/// An open connection to one target.
pub enum Conn {
    Postgres(postgres::PgConn),
    Mysql(mysql::MyConn),
    // Boxed: a TDS client is several times larger than the other connections.
    Mssql(Box<mssql::MsConn>),
}

/// Connects to a target, within its connect timeout.
pub async fn connect(target: &Target) -> Result<Conn> {
    match target.engine {
        EngineKind::Postgres => Ok(Conn::Postgres(postgres::connect(target).await?)),
        EngineKind::Mysql => Ok(Conn::Mysql(mysql::connect(target).await?)),
        EngineKind::Mssql => Ok(Conn::Mssql(Box::new(mssql::connect(target).await?))),
    }
}

/// What a feature asks of each engine, written once per engine in that feature's catalogue
/// file (`health/postgres.rs` …) and reached through [`Conn::visit`], the one place that
/// matches on the connection. An engine the feature does not cover keeps the default answer,
/// [`NotSupported`]: a new engine is a new method here, and every feature still compiles.
#[allow(async_fn_in_trait)]
pub trait Visitor: Sized {
    type Output;

    async fn postgres(self, _conn: &mut postgres::PgConn) -> Result<Self::Output> {
        Err(NotSupported(EngineKind::Postgres).into())
    }

    async fn mysql(self, _conn: &mut mysql::MyConn) -> Result<Self::Output> {
        Err(NotSupported(EngineKind::Mysql).into())
    }

    async fn mssql(self, _conn: &mut mssql::MsConn) -> Result<Self::Output> {
        Err(NotSupported(EngineKind::Mssql).into())
    }
}

/// A feature has nothing for this engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not supported on {}", .0.as_str())]
pub struct NotSupported(pub EngineKind);

/// What a dump reports besides its bytes.
#[derive(Debug, Clone)]
pub struct DumpInfo {
    pub tool: String,
    pub server_version: String,
    /// Rows per table, counted in (or just before) the dump's snapshot.
    pub tables: std::collections::BTreeMap<String, u64>,
    pub format: String,
}

/// The extension of a backup file of this engine.
pub fn backup_extension(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Postgres => "dump",
        EngineKind::Mysql => "sql.zst",
        EngineKind::Mssql => "bak",
    }
}

/// Dumps a target's database into `out` (hashed and written by the caller), compressed at
/// `level` (the engine's default when None). SQL Server writes its backups on its own disk:
/// see [`mssql::backup::backup`].
pub async fn dump(
    target: &Target,
    level: Option<u32>,
    out: &mut impl std::io::Write,
) -> Result<DumpInfo> {
    match target.engine {
        EngineKind::Postgres => postgres::backup::dump(target, level, out).await,
        EngineKind::Mysql => mysql::backup::dump(target, level, out).await,
        EngineKind::Mssql => {
            anyhow::bail!("SQL Server backups are written by the server, not streamed")
        }
    }
}

/// Restores a backup into database `into` of the target's server; `location` is the file:
/// local for PostgreSQL and MySQL, on the server for SQL Server. `rows` is the manifest's
/// count per table. Returns the tables loaded over several connections (PostgreSQL with
/// `jobs` > 1, see [`postgres::split`]).
pub async fn restore(
    target: &Target,
    location: &std::path::Path,
    into: &str,
    force: bool,
    jobs: u32,
    rows: &std::collections::BTreeMap<String, u64>,
) -> Result<Vec<String>> {
    match target.engine {
        EngineKind::Postgres => {
            postgres::backup::restore(target, location, into, force, jobs, rows).await
        }
        EngineKind::Mysql => mysql::backup::restore(target, location, into, force)
            .await
            .map(|()| Vec::new()),
        EngineKind::Mssql => {
            mssql::backup::restore(target, &location.to_string_lossy(), into, force)
                .await
                .map(|()| Vec::new())
        }
    }
}

/// Reads a backup through with the engine's own tool, `Ok` when the archive is whole. SQL
/// Server's backups are on the server's disk, at `location`, and only its `target` can read them.
pub async fn verify_backup(
    engine: EngineKind,
    path: &std::path::Path,
    location: Option<&str>,
    target: Option<&Target>,
) -> Result<()> {
    match engine {
        EngineKind::Postgres => postgres::backup::verify(path).await,
        EngineKind::Mysql => mysql::backup::verify(path).await,
        EngineKind::Mssql => {
            let location = location.ok_or_else(|| {
                anyhow::anyhow!(
                    "the manifest of a SQL Server backup names no location on the server"
                )
            })?;
            let target = target.ok_or_else(|| {
                anyhow::anyhow!("its SQL Server target is not in the configuration")
            })?;
            mssql::backup::verify(target, location).await
        }
    }
}

/// Exact rows per table of a database of the target's server.
pub async fn count_rows(
    target: &Target,
    database: &str,
) -> Result<std::collections::BTreeMap<String, u64>> {
    match target.engine {
        EngineKind::Postgres => postgres::backup::count_rows(target, database).await,
        EngineKind::Mysql => mysql::backup::count_rows(target, database).await,
        EngineKind::Mssql => mssql::backup::count_rows(target, database).await,
    }
}

pub async fn drop_database(target: &Target, name: &str) -> Result<()> {
    match target.engine {
        EngineKind::Postgres => postgres::backup::drop_database(target, name).await,
        EngineKind::Mysql => mysql::backup::drop_database(target, name).await,
        EngineKind::Mssql => mssql::backup::drop_database(target, name).await,
    }
}

/// One bulk load: the table, its columns in the order the encoded rows carry them, and the
/// file's name for messages.
pub struct LoadRequest<'a> {
    pub table: &'a TableRef,
    pub columns: Vec<String>,
    pub file_label: &'a str,
}

impl Conn {
    /// Runs a feature's catalogue code for this connection's engine.
    pub async fn visit<V: Visitor>(&mut self, v: V) -> Result<V::Output> {
        match self {
            Conn::Postgres(c) => v.postgres(c).await,
            Conn::Mysql(c) => v.mysql(c).await,
            Conn::Mssql(c) => v.mssql(c).await,
        }
    }

    pub fn engine(&self) -> EngineKind {
        match self {
            Conn::Postgres(_) => EngineKind::Postgres,
            Conn::Mysql(_) => EngineKind::Mysql,
            Conn::Mssql(_) => EngineKind::Mssql,
        }
    }

    pub async fn server_version(&self) -> Result<String> {
        match self {
            Conn::Postgres(c) => c.server_version().await,
            Conn::Mysql(c) => c.server_version().await,
            Conn::Mssql(c) => c.server_version().await,
        }
    }

    pub async fn lock_schema(&self) -> Result<bool> {
        match self {
            Conn::Postgres(c) => c.lock_schema().await,
            Conn::Mysql(c) => c.lock_schema().await,
            Conn::Mssql(c) => c.lock_schema().await,
        }
    }

    pub async fn unlock_schema(&self) -> Result<()> {
        match self {
            Conn::Postgres(c) => c.unlock_schema().await,
            Conn::Mysql(c) => c.unlock_schema().await,
            Conn::Mssql(c) => c.unlock_schema().await,
        }
    }

    pub async fn ensure_history(&self) -> Result<()> {
        match self {
            Conn::Postgres(c) => c.ensure_history().await,
            Conn::Mysql(c) => c.ensure_history().await,
            Conn::Mssql(c) => c.ensure_history().await,
        }
    }

    pub async fn history(&self) -> Result<Vec<AppliedMigration>> {
        match self {
            Conn::Postgres(c) => c.history().await,
            Conn::Mysql(c) => c.history().await,
            Conn::Mssql(c) => c.history().await,
        }
    }

    /// Whether a failed migration left the database half-changed (DDL not transactional),
    /// so that it must be checked by hand before anything else runs.
    pub fn failed_migrations_block(&self) -> bool {
        match self {
            Conn::Postgres(_) => false,
            Conn::Mysql(_) => true,
            // SQL Server DDL is transactional: a failed migration is rolled back whole.
            Conn::Mssql(_) => false,
        }
    }

    pub async fn apply_migration(&mut self, m: &Migration) -> Result<Duration> {
        match self {
            Conn::Postgres(c) => c.apply_migration(m).await,
            Conn::Mysql(c) => c.apply_migration(m).await,
            Conn::Mssql(c) => c.apply_migration(m).await,
        }
    }

    pub async fn columns(&self, table: &TableRef) -> Result<Vec<Column>> {
        match self {
            Conn::Postgres(c) => c.columns(table).await,
            Conn::Mysql(c) => c.columns(table).await,
            Conn::Mssql(c) => c.columns(table).await,
        }
    }

    pub async fn foreign_keys(&self, tables: &[TableRef]) -> Result<Vec<(TableRef, TableRef)>> {
        match self {
            Conn::Postgres(c) => c.foreign_keys(tables).await,
            Conn::Mysql(c) => c.foreign_keys(tables).await,
            Conn::Mssql(c) => c.foreign_keys(tables).await,
        }
    }

    pub async fn begin(&self) -> Result<()> {
        match self {
            Conn::Postgres(c) => c.begin().await,
            Conn::Mysql(c) => c.begin().await,
            Conn::Mssql(c) => c.begin().await,
        }
    }

    pub async fn commit(&self) -> Result<()> {
        match self {
            Conn::Postgres(c) => c.commit().await,
            Conn::Mysql(c) => c.commit().await,
            Conn::Mssql(c) => c.commit().await,
        }
    }

    pub async fn rollback(&self) {
        match self {
            Conn::Postgres(c) => c.rollback().await,
            Conn::Mysql(c) => c.rollback().await,
            Conn::Mssql(c) => c.rollback().await,
        }
    }

    pub async fn truncate(&self, tables: &[TableRef]) -> Result<()> {
        match self {
            Conn::Postgres(c) => c.truncate(tables).await,
            Conn::Mysql(c) => c.truncate(tables).await,
            Conn::Mssql(c) => c.truncate(tables).await,
        }
    }

    /// How the reader must write values for this engine's bulk loader.
    pub fn dialect(&self, tz: Option<chrono_tz::Tz>) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Mysql(_) | Conn::Mssql(_) => Dialect::Utc { tz },
        }
    }

    /// The time zone of timestamps without an offset, until the end of the transaction
    /// (None: the server's own).
    pub async fn set_local_timezone(&self, tz: Option<&str>) -> Result<()> {
        match self {
            Conn::Postgres(c) => c.set_local_timezone(tz).await,
            // No session time zone applies: the reader converts timestamps to UTC itself.
            Conn::Mysql(_) | Conn::Mssql(_) => {
                let _ = tz;
                Ok(())
            }
        }
    }

    /// Streams encoded rows into the table; inside a transaction begun with [`Conn::begin`].
    pub async fn bulk_load(
        &self,
        req: &LoadRequest<'_>,
        chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
        lines: Arc<LineMap>,
    ) -> Result<u64> {
        match self {
            Conn::Postgres(c) => c.copy_in(req, chunks, lines).await,
            Conn::Mysql(c) => c.load_data(req, chunks, lines).await,
            Conn::Mssql(c) => c.bulk_load(req, chunks, lines).await,
        }
    }
}

/// An error and its sources on one line, each cause once (drivers often repeat their
/// source's text in their own).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(&format!(": {t}"));
        }
        src = inner.source();
    }
    s
}

/// Bounds an inspection query by the target's statement timeout, for engines whose server
/// has no session setting that covers every statement.
pub async fn bounded<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| anyhow::anyhow!("query timed out after {} s", timeout.as_secs()))?
}

/// The 1-based line of a 1-based character offset (servers report error positions so).
pub fn line_of_char_offset(text: &str, pos: usize) -> usize {
    1 + text
        .chars()
        .take(pos.saturating_sub(1))
        .filter(|&c| c == '\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_refs_parse() {
        assert_eq!(
            TableRef::parse("metier.citoyens").unwrap(),
            TableRef::new("metier", "citoyens")
        );
        assert_eq!(TableRef::parse("t").unwrap(), TableRef::new("public", "t"));
        assert!(TableRef::parse("a.b.c").is_err());
        assert!(TableRef::parse(".b").is_err());
        assert_eq!(
            postgres::quoted_table(&TableRef::new("a\"x", "b")),
            "\"a\"\"x\".\"b\""
        );
    }

    #[test]
    fn char_offsets_become_lines() {
        let sql = "CREATE TABLE a();\nCREATE TABL b();\n";
        assert_eq!(line_of_char_offset(sql, 1), 1);
        assert_eq!(line_of_char_offset(sql, 19), 2);
    }
}
