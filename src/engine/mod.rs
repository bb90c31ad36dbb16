//! The database engines behind one enum, and the types their operations share.
//!
//! Commands speak to a [`Conn`]; each engine module holds everything engine-specific (SQL
//! dialect, catalogue queries, bulk-load protocol) and nothing else. An engine never reads
//! CLI arguments and never prints.

pub mod cleanup;
pub mod error;
pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod script;
pub mod tls;
pub mod tools;

pub use error::{error_chain, DbError};

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::catalog::{AppliedMigration, Column, Migration, TableRef};
use crate::config::{EngineKind, Target};
use crate::load::{Dialect, LineMap, LoadError};
use crate::privacy::plan::{Marker, PrivacyColumn};

/// An open connection to one target.
pub enum Conn {
    Postgres(postgres::PgConn),
    Mysql(mysql::MyConn),
    // Boxed: a TDS client is several times larger than the other connections.
    Mssql(Box<mssql::MsConn>),
    Redis(redis::RedisConn),
}

/// Connects to a target, within its connect timeout.
pub async fn connect(target: &Target) -> Result<Conn> {
    match target.engine {
        EngineKind::Postgres => Ok(Conn::Postgres(postgres::connect(target).await?)),
        EngineKind::Mysql => Ok(Conn::Mysql(mysql::connect(target).await?)),
        EngineKind::Mssql => Ok(Conn::Mssql(Box::new(mssql::connect(target).await?))),
        EngineKind::Redis => Ok(Conn::Redis(redis::connect(target).await?)),
    }
}

/// What a session is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Migrations, loads, maintenance work: waits for locks as any client does.
    Work,
    /// Inspection (health, metrics, audit, reports): never waits for a lock longer than the
    /// target's `lock_timeout`; run its queries through [`Conn::probe`].
    Probe,
}

/// Connects a [`Session::Probe`] to a target, within its connect timeout.
pub async fn connect_probe(target: &Target) -> Result<Conn> {
    match target.engine {
        EngineKind::Postgres => Ok(Conn::Postgres(postgres::connect_probe(target).await?)),
        EngineKind::Mysql => Ok(Conn::Mysql(mysql::connect_probe(target).await?)),
        EngineKind::Mssql => Ok(Conn::Mssql(Box::new(mssql::connect_probe(target).await?))),
        EngineKind::Redis => Ok(Conn::Redis(redis::connect_probe(target).await?)),
    }
}

/// How to stop, from another connection, the statement a session is running.
pub enum Canceller {
    /// PostgreSQL's cancel request.
    Postgres {
        token: tokio_postgres::CancelToken,
        tls: bool,
    },
    /// `KILL QUERY <thread id>` on a new connection with the same options.
    Mysql { opts: mysql_async::Opts, id: u32 },
    /// The TDS client has no cancel request: the session's `SET LOCK_TIMEOUT` and the
    /// connection being dropped end the statement.
    None,
}

impl Canceller {
    /// Sends the cancellation, within `timeout`; true when the server was told.
    pub async fn cancel(&self, timeout: Duration) -> Result<bool> {
        match self {
            Canceller::Postgres { token, tls } => {
                tokio::time::timeout(timeout, postgres::cancel(token, *tls))
                    .await
                    .map_err(|_| anyhow::anyhow!("timed out after {} s", timeout.as_secs()))??;
                Ok(true)
            }
            Canceller::Mysql { opts, id } => {
                mysql::kill_query(opts, *id, timeout).await?;
                Ok(true)
            }
            Canceller::None => Ok(false),
        }
    }
}

/// A probe that did not finish within its budget; the statement was cancelled on the server
/// (`cancelled`) or, where the engine cannot, left to its lock timeout.
#[derive(Debug, thiserror::Error)]
#[error("did not finish within {budget_ms} ms{}", if *.cancelled { " (cancelled on the server)" } else { "" })]
pub struct ProbeTimedOut {
    pub budget_ms: u128,
    pub cancelled: bool,
}

/// Whether an inspection session sees every other session's activity, and if not, what the
/// role lacks: PostgreSQL hides other roles' `pg_stat_activity` rows, MySQL other users'
/// threads without `PROCESS`, SQL Server other sessions without `VIEW SERVER STATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    All,
    /// Only its own sessions; the grant that would show every one.
    OwnOnly {
        missing: String,
    },
}

/// What every engine's connection does: written once per engine (`postgres/mod.rs`,
/// `mysql/mod.rs`, `mssql/mod.rs`) and delegated once for [`Conn`]. The engine's differences
/// that callers must know are [`Capabilities`], not matches on the engine.
#[allow(async_fn_in_trait)]
pub trait Driver {
    fn capabilities(&self) -> Capabilities;

    /// The target's name, for messages.
    fn target(&self) -> &str;

    async fn server_version(&self) -> Result<String>;

    /// Whether this session sees every session's activity ([`Visibility`]).
    async fn activity_visibility(&self) -> Result<Visibility> {
        self.not_supported("activity views")
    }

    /// Takes the lock that makes concurrent `schema apply` runs take turns; false when
    /// another run holds it.
    ///
    /// Migrations and bulk loads are for engines with tables: an engine without them keeps
    /// these defaults, which say so ([`NotSupported`]), and the commands report it per target.
    async fn lock_schema(&self) -> Result<bool> {
        self.not_supported("schema migrations")
    }
    async fn unlock_schema(&self) -> Result<()> {
        self.not_supported("schema migrations")
    }

    /// Creates the schema history table when it is missing.
    async fn ensure_history(&self) -> Result<()> {
        self.not_supported("schema migrations")
    }
    async fn history(&self) -> Result<Vec<AppliedMigration>> {
        self.not_supported("schema migrations")
    }

    /// Runs one migration and records it (success or failure) in the history table: in a
    /// transaction where the engine allows, or, for a `no-transaction` file, its one statement
    /// alone with the history row written after it. The error names the file and line.
    async fn apply_migration(&mut self, m: &Migration) -> Result<Duration> {
        let _ = m;
        self.not_supported("schema migrations")
    }

    /// Records `schema baseline`: the versions up to `version` are taken as applied.
    async fn record_baseline(&self, version: i64, description: &str) -> Result<()> {
        let _ = (version, description);
        self.not_supported("schema migrations")
    }

    /// Deletes the history row of rank `rank` (`schema repair`: a failed attempt).
    async fn delete_history_row(&self, rank: i64) -> Result<()> {
        let _ = rank;
        self.not_supported("schema migrations")
    }

    /// Sets the checksum, description and file name of the history row of rank `rank` to
    /// those of `m` (`schema repair`: the file was changed on purpose).
    async fn realign_history_row(&self, rank: i64, m: &Migration) -> Result<()> {
        let _ = (rank, m);
        self.not_supported("schema migrations")
    }

    async fn columns(&self, table: &TableRef) -> Result<Vec<Column>> {
        let _ = table;
        self.not_supported("tables")
    }

    /// (child, parent) pairs among `tables`.
    async fn foreign_keys(&self, tables: &[TableRef]) -> Result<Vec<(TableRef, TableRef)>> {
        let _ = tables;
        self.not_supported("tables")
    }

    async fn begin(&self) -> Result<()> {
        self.not_supported("transactions")
    }
    async fn commit(&self) -> Result<()> {
        self.not_supported("transactions")
    }
    async fn rollback(&self) {}

    /// Marks a point of the current transaction that [`Driver::rollback_to_savepoint`] can
    /// return to (`load-csv --reject-file` loads each batch of rows after one).
    async fn savepoint(&self, name: &str) -> Result<()> {
        let _ = name;
        self.not_supported("savepoints")
    }
    /// Undoes what was done since the savepoint, which stays set.
    async fn rollback_to_savepoint(&self, name: &str) -> Result<()> {
        let _ = name;
        self.not_supported("savepoints")
    }
    /// Forgets the savepoint, keeping what was done since.
    async fn release_savepoint(&self, name: &str) -> Result<()> {
        let _ = name;
        self.not_supported("savepoints")
    }

    /// Empties the tables (children first), inside the current transaction. Returns what
    /// the user should know: for each table that other tables reference, that it was
    /// emptied with DELETE rather than TRUNCATE, and why ([`delete_note`]).
    async fn truncate(&self, tables: &[TableRef]) -> Result<Vec<String>> {
        let _ = tables;
        self.not_supported("tables")
    }

    /// The time zone of timestamps without an offset, until the end of the transaction
    /// (None: the server's own). Engines without a session time zone need nothing: the
    /// reader converts timestamps to UTC itself ([`Capabilities::dialect`]).
    async fn set_local_timezone(&self, tz: Option<&str>) -> Result<()> {
        let _ = tz;
        Ok(())
    }

    /// The session's time zone, which the server applies to timestamps written without an
    /// offset (PostgreSQL's `TimeZone`); None when the engine has none that applies to
    /// loads. `load-csv` resolves such timestamps itself with it, by the rule of `--dst`.
    async fn session_time_zone(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Streams encoded rows into the table, inside a transaction begun with
    /// [`Driver::begin`]; returns the rows loaded.
    async fn bulk_load(
        &self,
        req: &LoadRequest<'_>,
        chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
        lines: Arc<LineMap>,
    ) -> Result<u64> {
        let _ = (req, chunks, lines);
        self.not_supported("bulk loads")
    }

    /// Every table of the database with its columns, primary key and foreign keys (with
    /// their columns): what `erase` and the retention purge walk. MySQL's prefixed tables
    /// (`metier_citoyens`) are named as the model names them (`metier.citoyens`).
    async fn relations(&self) -> Result<Relations> {
        self.not_supported("foreign-key walks")
    }

    /// Runs a query whose parameters are text (or NULL), inside whatever transaction is
    /// open; every column of the result must be text (the caller casts): `erase` and the
    /// retention purge build such statements ([`crate::privacy::erase::Sql`]).
    async fn query_text(&self, sql: &str, params: &[Option<String>]) -> Result<TextRows> {
        let _ = (sql, params);
        self.not_supported("parameterised statements")
    }

    /// Runs a statement whose parameters are text (or NULL); the rows it changed.
    async fn execute_text(&self, sql: &str, params: &[Option<String>]) -> Result<u64> {
        let _ = (sql, params);
        self.not_supported("parameterised statements")
    }

    /// Every column of the database's base tables, with what `privacy:` rules need to know
    /// of it (type, length, uniqueness, keys).
    async fn privacy_columns(&self) -> Result<Vec<PrivacyColumn>> {
        self.not_supported("personal-data rules")
    }

    /// Up to `limit` non-null values of a column as text, each with the row's `key` column
    /// (as text) when one is named.
    async fn sample_column(
        &self,
        table: &TableRef,
        column: &str,
        key: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        let _ = (table, column, key, limit);
        self.not_supported("personal-data rules")
    }

    /// The values of `column` (as text) in the rows whose `key` (as text) is in `keys`.
    async fn values_by_key(
        &self,
        table: &TableRef,
        column: &str,
        key: &str,
        keys: &[String],
    ) -> Result<Vec<(String, Option<String>)>> {
        let _ = (table, column, key, keys);
        self.not_supported("personal-data rules")
    }

    /// Writes the marker of a pseudonymised copy (table `mairie_dba_anonymized`) and
    /// refreshes the planner's statistics of `tables`.
    async fn mark_pseudonymized(&self, marker: &Marker, tables: &[TableRef]) -> Result<()> {
        let _ = (marker, tables);
        self.not_supported("anonymized copies")
    }

    /// The error of a default method: `what` does not exist on this engine.
    fn not_supported<T>(&self, what: &'static str) -> Result<T> {
        Err(NotSupported {
            engine: self.capabilities().engine,
            what,
        }
        .into())
    }
}

/// Rows of text cells, NULL as None.
pub type TextRows = Vec<Vec<Option<String>>>;

/// The tables of a database and the foreign keys between them ([`Driver::relations`]).
#[derive(Debug, Clone, Default)]
pub struct Relations {
    pub tables: Vec<RelTable>,
    pub foreign_keys: Vec<RelForeignKey>,
}

impl Relations {
    pub fn table(&self, t: &TableRef) -> Option<&RelTable> {
        self.tables.iter().find(|x| &x.table == t)
    }
}

/// A table as [`Relations`] describes it.
#[derive(Debug, Clone)]
pub struct RelTable {
    /// As the model names it (`metier.citoyens`, on every engine).
    pub table: TableRef,
    /// As SQL names it, quoted (`"metier"."citoyens"`, `` `metier_citoyens` ``).
    pub quoted: String,
    pub columns: Vec<RelColumn>,
    /// Empty when the table has none.
    pub primary_key: Vec<String>,
}

impl RelTable {
    pub fn column(&self, name: &str) -> Option<&RelColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct RelColumn {
    pub name: String,
    /// The declared type, as the server writes it (`bigint`, `varchar(255)`).
    pub sql_type: String,
    pub nullable: bool,
    /// A character type.
    pub text: bool,
    /// A date or timestamp type.
    pub temporal: bool,
    /// The server fills it when an INSERT leaves it out (default, identity).
    pub has_default: bool,
}

/// A foreign key: `child (columns)` references `parent (parent_columns)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelForeignKey {
    pub name: String,
    pub child: TableRef,
    pub columns: Vec<String>,
    pub parent: TableRef,
    pub parent_columns: Vec<String>,
}

/// Why `--truncate` emptied `table` with DELETE: `children` (tables, or
/// `table (constraint)`) reference it by foreign key, `why_not` is the engine's reason
/// TRUNCATE could not be used.
pub fn delete_note(table: &TableRef, children: &[String], why_not: &str) -> String {
    format!(
        "{table}: emptied with DELETE, not TRUNCATE: {} {} it by foreign key, and {why_not}; \
         DELETE removes the rows one by one (slower on a large table, fires DELETE triggers) \
         and fails if rows of those tables still point at it",
        children.join(", "),
        if children.len() == 1 {
            "references"
        } else {
            "reference"
        },
    )
}

/// What an engine can and cannot do, as callers need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub engine: EngineKind,
    /// DDL runs inside transactions: a failed migration is rolled back whole and may be
    /// retried once fixed. Without it (MySQL), a failed migration blocks later runs until
    /// it is repaired by hand.
    pub transactional_ddl: bool,
    /// How the CSV reader must write values for the bulk loader.
    pub values: ValueStyle,
}

/// How the CSV reader writes timestamps and booleans for an engine's bulk loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueStyle {
    /// The server parses them (with their offsets) itself.
    Server,
    /// Timestamps converted to UTC by the reader.
    Utc,
}

impl Capabilities {
    /// How the reader must write values for this engine's bulk loader.
    pub fn dialect(&self) -> Dialect {
        match self.values {
            ValueStyle::Server => Dialect::Postgres,
            ValueStyle::Utc => Dialect::Utc,
        }
    }
}

/// What a feature asks of each engine, written once per engine in that feature's catalogue
/// file (`health/postgres.rs` …) and reached through [`Conn::visit`], the one place that
/// matches on the connection. An engine the feature does not cover keeps the default answer,
/// [`NotSupported`]: a new engine is a new method here, and every feature still compiles.
#[allow(async_fn_in_trait)]
pub trait Visitor: Sized {
    type Output;
    /// The feature, as a noun for "… not supported on <engine>".
    const WHAT: &'static str;

    async fn postgres(self, _conn: &mut postgres::PgConn) -> Result<Self::Output> {
        Err(NotSupported {
            engine: EngineKind::Postgres,
            what: Self::WHAT,
        }
        .into())
    }

    async fn mysql(self, _conn: &mut mysql::MyConn) -> Result<Self::Output> {
        Err(NotSupported {
            engine: EngineKind::Mysql,
            what: Self::WHAT,
        }
        .into())
    }

    async fn mssql(self, _conn: &mut mssql::MsConn) -> Result<Self::Output> {
        Err(NotSupported {
            engine: EngineKind::Mssql,
            what: Self::WHAT,
        }
        .into())
    }

    async fn redis(self, _conn: &mut redis::RedisConn) -> Result<Self::Output> {
        Err(NotSupported {
            engine: EngineKind::Redis,
            what: Self::WHAT,
        }
        .into())
    }
}

/// A feature has nothing for this engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} not supported on {}", .engine.as_str())]
pub struct NotSupported {
    pub engine: EngineKind,
    /// The feature, as a noun: "health checks", "schema migrations".
    pub what: &'static str,
}

/// What a dump reports besides its bytes.
#[derive(Debug, Clone)]
pub struct DumpInfo {
    pub tool: String,
    pub server_version: String,
    /// Rows per table, counted in (or just before) the dump's snapshot.
    pub tables: std::collections::BTreeMap<String, u64>,
    pub format: String,
}

/// How an engine's backups are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStyle {
    /// The dump streams to the tool, which hashes and writes the file ([`dump`]).
    Streamed,
    /// The server writes the backup on its own disk and checks it there ([`server_backup`]).
    ServerSide,
}

pub fn backup_style(engine: EngineKind) -> BackupStyle {
    match engine {
        EngineKind::Postgres | EngineKind::Mysql | EngineKind::Redis => BackupStyle::Streamed,
        EngineKind::Mssql => BackupStyle::ServerSide,
    }
}

/// A server-side backup named `file_name` in `server_dir` on the server's disk: what it
/// holds, its size, and its location there.
pub async fn server_backup(
    target: &Target,
    server_dir: &str,
    file_name: &str,
) -> Result<(DumpInfo, u64, String)> {
    match target.engine {
        EngineKind::Mssql => {
            let location = mssql::backup::server_path(server_dir, file_name);
            let (info, size) = mssql::backup::backup(target, &location).await?;
            Ok((info, size, location))
        }
        other => Err(NotSupported {
            engine: other,
            what: "server-side backups",
        }
        .into()),
    }
}

/// The extension of a backup file of this engine.
pub fn backup_extension(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Postgres => "dump",
        EngineKind::Mysql => "sql.zst",
        EngineKind::Mssql => "bak",
        EngineKind::Redis => "rdb",
    }
}

/// Dumps a target's database into `out` (hashed and written by the caller), as its backup
/// settings say (`compression_level`; Redis: `method`). SQL Server writes its backups on its
/// own disk: see [`mssql::backup::backup`].
pub async fn dump(
    target: &Target,
    cfg: &crate::config::BackupEntry,
    out: &mut impl std::io::Write,
) -> Result<DumpInfo> {
    let level = cfg.compression_level;
    match target.engine {
        EngineKind::Postgres => postgres::backup::dump(target, level, out).await,
        EngineKind::Mysql => mysql::backup::dump(target, level, out).await,
        EngineKind::Mssql => {
            anyhow::bail!("SQL Server backups are written by the server, not streamed")
        }
        EngineKind::Redis => redis::backup::dump(target, cfg.method.unwrap_or_default(), out).await,
    }
}

/// Checks a dump once it is whole on disk (`path`, still `.partial`), before it gets its
/// name: Redis's snapshot is read through `redis-check-rdb`, and its keys per database are
/// read from the file into `info`. The other engines' dumps were checked as they streamed.
pub async fn check_dump(
    engine: EngineKind,
    path: &std::path::Path,
    info: &mut DumpInfo,
) -> Result<()> {
    match engine {
        EngineKind::Redis => {
            let facts = redis::backup::inspect(path).await?;
            info.tool = format!("{}, checked by {}", info.tool, facts.tool);
            info.tables = facts.keys;
            Ok(())
        }
        EngineKind::Postgres | EngineKind::Mysql | EngineKind::Mssql => Ok(()),
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
            postgres::backup::restore(target, location, into, force, jobs, rows, None).await
        }
        EngineKind::Mysql => mysql::backup::restore(target, location, into, force)
            .await
            .map(|()| Vec::new()),
        EngineKind::Mssql => {
            mssql::backup::restore(target, &location.to_string_lossy(), into, force)
                .await
                .map(|()| Vec::new())
        }
        EngineKind::Redis => Err(crate::error::ConfigError::new(
            "a Redis backup is never restored into a running server: use `restore --into-dir DIR` \
             to prepare a data directory for a stopped server, or `restore --drill`",
        )
        .into()),
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
        EngineKind::Redis => redis::backup::verify(path).await,
    }
}

/// Whether a backup of this engine is restored into a database of the running server
/// (`restore --into DB`); Redis's are not: they become a data directory
/// ([`restore_into_dir`]).
pub fn restores_into_server(engine: EngineKind) -> bool {
    engine != EngineKind::Redis
}

/// Prepares a new or empty directory `dir` from a backup for a server to start on (Redis:
/// `dump.rdb` and a minimal `redis.conf`); the bytes copied must hash to `sha256`. Returns
/// the file written.
pub async fn restore_into_dir(
    engine: EngineKind,
    backup: &std::path::Path,
    sha256: &str,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf> {
    match engine {
        EngineKind::Redis => {
            let (backup, sha256, dir) =
                (backup.to_path_buf(), sha256.to_string(), dir.to_path_buf());
            tokio::task::spawn_blocking(move || redis::backup::prepare_dir(&backup, &sha256, &dir))
                .await?
        }
        other => Err(NotSupported {
            engine: other,
            what: "restores into a directory",
        }
        .into()),
    }
}

/// What a restore that rewrites rows asks once the tables exist and before any row is
/// loaded: the rewrites to apply (see [`crate::privacy::transform`]), given the restored
/// tables' columns (keys and unique constraints included).
pub type PrepareRewrites<'a> = Box<
    dyn FnOnce(
            Vec<PrivacyColumn>,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<std::sync::Arc<crate::privacy::transform::Rewrites>>,
        > + Send
        + 'a,
>;

/// Restores `location` into `into`, a new empty database, rewriting the rows of the tables
/// that `prepare`'s rewrites rule as they load (a pseudonymised copy): the copy is written
/// once, never with the originals. `rows` is the manifest's rows per table; the rows each
/// ruled table received are checked against it.
pub async fn restore_rewritten(
    target: &Target,
    location: &std::path::Path,
    into: &str,
    jobs: u32,
    rows: &std::collections::BTreeMap<String, u64>,
    prepare: PrepareRewrites<'_>,
) -> Result<std::sync::Arc<crate::privacy::transform::Rewrites>> {
    // Set by `prepare` when it runs, to be returned with the restore's result.
    let made = std::sync::Arc::new(std::sync::Mutex::new(None));
    let keep = made.clone();
    let prepare: PrepareRewrites<'_> = Box::new(move |columns| {
        Box::pin(async move {
            let rw = prepare(columns).await?;
            *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(rw.clone());
            Ok(rw)
        })
    });
    let rw = match target.engine {
        EngineKind::Postgres => {
            postgres::backup::restore(target, location, into, false, jobs, rows, Some(prepare))
                .await?;
            made.lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .context("the restore never asked for the rewrites")?
        }
        EngineKind::Mysql => {
            mysql::backup::restore_rewritten(target, location, into, prepare).await?
        }
        other => {
            return Err(NotSupported {
                engine: other,
                what: "anonymized copies",
            }
            .into())
        }
    };
    // The manifest names tables `schema.table` (PostgreSQL) or as MySQL's `schema_table`.
    let manifest_rows = |t: &crate::catalog::TableRef| {
        rows.get(&t.to_string())
            .or_else(|| rows.get(&t.prefixed()))
            .or_else(|| (t.schema == "public").then(|| rows.get(&t.name)).flatten())
            .copied()
    };
    for r in rw.made() {
        if let Some(n) = manifest_rows(&r.table) {
            if r.rows() != n {
                bail!(
                    "{}: {} rows rewritten, the manifest says {n}",
                    r.table,
                    r.rows()
                );
            }
        }
    }
    for p in rw.plans() {
        let n = manifest_rows(&p.table).unwrap_or(0);
        if n > 0 && !rw.made().iter().any(|r| r.table == p.table) {
            bail!(
                "{}: the manifest counts {n} rows, none went through its rules",
                p.table
            );
        }
    }
    Ok(rw)
}

/// How a drill restores a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillStyle {
    /// Into a scratch database of the target's own server, dropped afterwards.
    ScratchDatabase,
    /// Into a throwaway server of the drill's own ([`drill_throwaway`]): Redis.
    ThrowawayServer,
}

pub fn drill_style(engine: EngineKind) -> DrillStyle {
    match engine {
        EngineKind::Redis => DrillStyle::ThrowawayServer,
        EngineKind::Postgres | EngineKind::Mysql | EngineKind::Mssql => DrillStyle::ScratchDatabase,
    }
}

/// Loads a backup into a throwaway server, stopped and removed before this returns; the
/// counts it holds (Redis: keys per database) and a description of the server.
pub async fn drill_throwaway(
    engine: EngineKind,
    backup: &std::path::Path,
) -> Result<(std::collections::BTreeMap<String, u64>, String)> {
    match engine {
        EngineKind::Redis => redis::backup::drill(backup).await,
        other => Err(NotSupported {
            engine: other,
            what: "drills on a throwaway server",
        }
        .into()),
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
        EngineKind::Redis => Err(NotSupported {
            engine: EngineKind::Redis,
            what: "tables",
        }
        .into()),
    }
}

pub async fn drop_database(target: &Target, name: &str) -> Result<()> {
    match target.engine {
        EngineKind::Postgres => postgres::backup::drop_database(target, name).await,
        EngineKind::Mysql => mysql::backup::drop_database(target, name).await,
        EngineKind::Mssql => mssql::backup::drop_database(target, name).await,
        EngineKind::Redis => Err(NotSupported {
            engine: EngineKind::Redis,
            what: "databases to drop",
        }
        .into()),
    }
}

/// The marker a drill's scratch database carries (its comment): which process made it.
pub fn scratch_marker() -> String {
    format!(
        "mairie-dba drill scratch: pid {} on {}",
        std::process::id(),
        hostname()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Creates an empty scratch database for a drill, marked with [`scratch_marker`].
pub async fn create_scratch(target: &Target, name: &str) -> Result<()> {
    let marker = scratch_marker();
    match target.engine {
        EngineKind::Postgres => postgres::backup::create_marked(target, name, &marker).await,
        EngineKind::Mysql => mysql::backup::create_marked(target, name, &marker).await,
        // The restore creates it; SQL Server drills are not swept. Redis drills run a
        // throwaway server of their own.
        EngineKind::Mssql | EngineKind::Redis => Ok(()),
    }
}

/// Creates an empty database carrying `marker` (a comment), like a drill's scratch one.
pub async fn create_marked(target: &Target, name: &str, marker: &str) -> Result<()> {
    match target.engine {
        EngineKind::Postgres => postgres::backup::create_marked(target, name, marker).await,
        EngineKind::Mysql => mysql::backup::create_marked(target, name, marker).await,
        other => Err(NotSupported {
            engine: other,
            what: "anonymized copies",
        }
        .into()),
    }
}

/// Whether database `name` exists on the target's server.
pub async fn database_exists(target: &Target, name: &str) -> Result<bool> {
    match target.engine {
        EngineKind::Postgres => postgres::privacy::database_exists(target, name).await,
        EngineKind::Mysql => mysql::privacy::database_exists(target, name).await,
        other => Err(NotSupported {
            engine: other,
            what: "anonymized copies",
        }
        .into()),
    }
}

/// Scratch databases of earlier drills on this target that were killed before they could
/// drop them: named `<database>_drill_<14 digits>`, carrying the marker, and made by a process
/// of this host that is gone, or more than a day ago. Never anything else.
pub async fn leftover_scratch(target: &Target, database: &str) -> Result<Vec<String>> {
    let found = match target.engine {
        EngineKind::Postgres => postgres::backup::marked_databases(target).await?,
        EngineKind::Mysql => mysql::backup::marked_databases(target).await?,
        EngineKind::Mssql | EngineKind::Redis => Vec::new(),
    };
    let now = chrono::Utc::now().naive_utc();
    let host = hostname();
    Ok(found
        .into_iter()
        .filter(|(name, marker)| is_leftover(name, marker, database, &host, now))
        .map(|(name, _)| name)
        .collect())
}

fn is_leftover(
    name: &str,
    marker: &str,
    database: &str,
    host: &str,
    now: chrono::NaiveDateTime,
) -> bool {
    let Some(stamp) = name
        .strip_prefix(database)
        .and_then(|r| r.strip_prefix("_drill_"))
    else {
        return false;
    };
    if stamp.len() != 14 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Some(rest) = marker.strip_prefix("mairie-dba drill scratch: pid ") else {
        return false;
    };
    let Some((pid, on)) = rest.split_once(" on ") else {
        return false;
    };
    let made = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%S").ok();
    let old = made.is_some_and(|t| now - t > chrono::Duration::hours(24));
    let gone = on == host
        && pid.parse::<u32>().is_ok_and(|p| {
            p != std::process::id() && !std::path::Path::new(&format!("/proc/{p}")).exists()
        });
    gone || old
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
    /// Runs a feature's question as a probe: within `budget`, and past it the statement in
    /// flight is cancelled on the server, so nothing the tool started is left waiting there.
    /// A probe session ([`connect_probe`]) also gives up on any lock after `lock_timeout`.
    pub async fn probe<V: Visitor>(&mut self, budget: Duration, v: V) -> Result<V::Output> {
        let canceller = self.canceller();
        match tokio::time::timeout(budget, self.visit(v)).await {
            Ok(r) => r,
            Err(_) => {
                let cancelled = canceller
                    .cancel(Duration::from_secs(5))
                    .await
                    .unwrap_or(false);
                Err(ProbeTimedOut {
                    budget_ms: budget.as_millis(),
                    cancelled,
                }
                .into())
            }
        }
    }

    fn canceller(&self) -> Canceller {
        match self {
            Conn::Postgres(c) => c.canceller(),
            Conn::Mysql(c) => c.canceller(),
            Conn::Mssql(_) | Conn::Redis(_) => Canceller::None,
        }
    }

    pub async fn visit<V: Visitor>(&mut self, v: V) -> Result<V::Output> {
        match self {
            Conn::Postgres(c) => v.postgres(c).await,
            Conn::Mysql(c) => v.mysql(c).await,
            Conn::Mssql(c) => v.mssql(c).await,
            Conn::Redis(c) => v.redis(c).await,
        }
    }

    pub fn engine(&self) -> EngineKind {
        self.capabilities().engine
    }
}

/// Calls a [`Driver`] method on whichever connection this is: the one delegation.
macro_rules! delegate {
    ($self:ident, $c:ident => $call:expr) => {
        match $self {
            Conn::Postgres($c) => $call,
            Conn::Mysql($c) => $call,
            Conn::Mssql($c) => $call,
            Conn::Redis($c) => $call,
        }
    };
}

impl Driver for Conn {
    fn capabilities(&self) -> Capabilities {
        delegate!(self, c => c.capabilities())
    }

    fn target(&self) -> &str {
        delegate!(self, c => c.target())
    }

    async fn server_version(&self) -> Result<String> {
        delegate!(self, c => c.server_version().await)
    }

    async fn activity_visibility(&self) -> Result<Visibility> {
        delegate!(self, c => c.activity_visibility().await)
    }

    async fn lock_schema(&self) -> Result<bool> {
        delegate!(self, c => c.lock_schema().await)
    }

    async fn unlock_schema(&self) -> Result<()> {
        delegate!(self, c => c.unlock_schema().await)
    }

    async fn ensure_history(&self) -> Result<()> {
        delegate!(self, c => c.ensure_history().await)
    }

    async fn history(&self) -> Result<Vec<AppliedMigration>> {
        delegate!(self, c => c.history().await)
    }

    async fn apply_migration(&mut self, m: &Migration) -> Result<Duration> {
        delegate!(self, c => c.apply_migration(m).await)
    }

    async fn record_baseline(&self, version: i64, description: &str) -> Result<()> {
        delegate!(self, c => c.record_baseline(version, description).await)
    }

    async fn delete_history_row(&self, rank: i64) -> Result<()> {
        delegate!(self, c => c.delete_history_row(rank).await)
    }

    async fn realign_history_row(&self, rank: i64, m: &Migration) -> Result<()> {
        delegate!(self, c => c.realign_history_row(rank, m).await)
    }

    async fn columns(&self, table: &TableRef) -> Result<Vec<Column>> {
        delegate!(self, c => c.columns(table).await)
    }

    async fn foreign_keys(&self, tables: &[TableRef]) -> Result<Vec<(TableRef, TableRef)>> {
        delegate!(self, c => c.foreign_keys(tables).await)
    }

    async fn begin(&self) -> Result<()> {
        delegate!(self, c => c.begin().await)
    }

    async fn commit(&self) -> Result<()> {
        delegate!(self, c => c.commit().await)
    }

    async fn rollback(&self) {
        delegate!(self, c => c.rollback().await)
    }

    async fn savepoint(&self, name: &str) -> Result<()> {
        delegate!(self, c => c.savepoint(name).await)
    }

    async fn rollback_to_savepoint(&self, name: &str) -> Result<()> {
        delegate!(self, c => c.rollback_to_savepoint(name).await)
    }

    async fn release_savepoint(&self, name: &str) -> Result<()> {
        delegate!(self, c => c.release_savepoint(name).await)
    }

    async fn truncate(&self, tables: &[TableRef]) -> Result<Vec<String>> {
        delegate!(self, c => c.truncate(tables).await)
    }

    async fn set_local_timezone(&self, tz: Option<&str>) -> Result<()> {
        delegate!(self, c => c.set_local_timezone(tz).await)
    }

    async fn session_time_zone(&self) -> Result<Option<String>> {
        delegate!(self, c => c.session_time_zone().await)
    }

    async fn relations(&self) -> Result<Relations> {
        delegate!(self, c => c.relations().await)
    }

    async fn query_text(&self, sql: &str, params: &[Option<String>]) -> Result<TextRows> {
        delegate!(self, c => c.query_text(sql, params).await)
    }

    async fn execute_text(&self, sql: &str, params: &[Option<String>]) -> Result<u64> {
        delegate!(self, c => c.execute_text(sql, params).await)
    }

    async fn privacy_columns(&self) -> Result<Vec<PrivacyColumn>> {
        delegate!(self, c => c.privacy_columns().await)
    }

    async fn sample_column(
        &self,
        table: &TableRef,
        column: &str,
        key: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        delegate!(self, c => c.sample_column(table, column, key, limit).await)
    }

    async fn values_by_key(
        &self,
        table: &TableRef,
        column: &str,
        key: &str,
        keys: &[String],
    ) -> Result<Vec<(String, Option<String>)>> {
        delegate!(self, c => c.values_by_key(table, column, key, keys).await)
    }

    async fn mark_pseudonymized(&self, marker: &Marker, tables: &[TableRef]) -> Result<()> {
        delegate!(self, c => c.mark_pseudonymized(marker, tables).await)
    }

    async fn bulk_load(
        &self,
        req: &LoadRequest<'_>,
        chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
        lines: Arc<LineMap>,
    ) -> Result<u64> {
        delegate!(self, c => c.bulk_load(req, chunks, lines).await)
    }
}

/// The schema history table of an engine, as messages name it (None: no migrations there).
pub fn history_table(engine: EngineKind) -> Option<&'static str> {
    match engine {
        EngineKind::Postgres => Some(postgres::HISTORY_TABLE),
        EngineKind::Mysql => Some(mysql::HISTORY_TABLE),
        EngineKind::Mssql => Some(mssql::HISTORY_TABLE),
        EngineKind::Redis => None,
    }
}

/// A migration file cut into what the engine runs one at a time (statements; SQL Server:
/// `GO` batches), each with the file line it starts on.
pub fn split_script(engine: EngineKind, sql: &str) -> Vec<script::Piece> {
    match engine {
        EngineKind::Postgres => script::split_postgres(sql),
        EngineKind::Mysql => script::split_mysql(sql),
        EngineKind::Mssql => script::split_go(sql),
        EngineKind::Redis => Vec::new(),
    }
}

/// A piece of [`split_script`] written back as the engine's own client would read it
/// (`schema apply --dry-run -v`): `;` after a statement, `GO` after a batch, and a MySQL
/// statement holding `;` (a trigger body) between `DELIMITER` lines.
pub fn statement_text(engine: EngineKind, sql: &str) -> String {
    match engine {
        EngineKind::Mysql if sql.contains(';') => {
            format!("DELIMITER $$\n{sql}$$\nDELIMITER ;")
        }
        EngineKind::Mssql => format!("{sql}\nGO"),
        _ => format!("{sql};"),
    }
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

    /// A driver that implements only the connection part, as a key-value engine would.
    struct Bare;

    impl Driver for Bare {
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                engine: EngineKind::Mssql,
                transactional_ddl: false,
                values: ValueStyle::Utc,
            }
        }
        fn target(&self) -> &str {
            "bare"
        }
        async fn server_version(&self) -> Result<String> {
            Ok("1".into())
        }
    }

    #[test]
    fn only_marked_scratch_databases_of_dead_drills_are_leftovers() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 12, 6)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let dead = "mairie-dba drill scratch: pid 4000000 on h1";
        assert!(is_leftover(
            "mairie_drill_20261206110000",
            dead,
            "mairie",
            "h1",
            now
        ));
        // Not our name pattern, or another database's: never.
        assert!(!is_leftover("mairie_drill_2026", dead, "mairie", "h1", now));
        assert!(!is_leftover("mairie_prod", dead, "mairie", "h1", now));
        assert!(!is_leftover(
            "other_drill_20261206110000",
            dead,
            "mairie",
            "h1",
            now
        ));
        // No marker: a user's database with a look-alike name.
        assert!(!is_leftover(
            "mairie_drill_20261206110000",
            "",
            "mairie",
            "h1",
            now
        ));
        // A live drill (this very process) is left alone, unless a day old.
        let alive = format!("mairie-dba drill scratch: pid {} on h1", std::process::id());
        assert!(!is_leftover(
            "mairie_drill_20261206110000",
            &alive,
            "mairie",
            "h1",
            now
        ));
        assert!(is_leftover(
            "mairie_drill_20261204110000",
            &alive,
            "mairie",
            "h1",
            now
        ));
        // Another host's drill: only when old.
        assert!(!is_leftover(
            "mairie_drill_20261206110000",
            dead,
            "mairie",
            "h2",
            now
        ));
    }

    #[tokio::test]
    async fn schema_and_load_methods_default_to_not_supported() {
        let bare = Bare;
        let e = bare.history().await.unwrap_err();
        assert_eq!(e.to_string(), "schema migrations not supported on mssql");
        assert!(e.downcast_ref::<NotSupported>().is_some());
        let e = bare.begin().await.unwrap_err();
        assert_eq!(e.to_string(), "transactions not supported on mssql");
        let e = bare.columns(&TableRef::new("a", "b")).await.unwrap_err();
        assert_eq!(e.to_string(), "tables not supported on mssql");
        assert!(bare.lock_schema().await.is_err());
    }

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
    fn history_tables_and_statements_per_engine() {
        assert_eq!(
            history_table(EngineKind::Mssql),
            Some("dbo.mairie_dba_schema_history")
        );
        assert_eq!(history_table(EngineKind::Redis), None);
        let go = split_script(EngineKind::Mssql, "SELECT 1;\nGO\nSELECT 2;\n");
        assert_eq!(go.len(), 2);
        assert_eq!(
            statement_text(EngineKind::Mssql, &go[1].sql),
            "SELECT 2;\nGO"
        );
        assert_eq!(
            statement_text(EngineKind::Postgres, "SELECT 1"),
            "SELECT 1;"
        );
        assert_eq!(
            statement_text(EngineKind::Mysql, "CREATE TRIGGER t BEGIN SET @a = 1; END"),
            "DELIMITER $$\nCREATE TRIGGER t BEGIN SET @a = 1; END$$\nDELIMITER ;"
        );
    }

    #[test]
    fn char_offsets_become_lines() {
        let sql = "CREATE TABLE a();\nCREATE TABL b();\n";
        assert_eq!(line_of_char_offset(sql, 1), 1);
        assert_eq!(line_of_char_offset(sql, 19), 2);
    }
}
