//! SQL Server, through tiberius: connecting, the schema history, and bulk loads.
//!
//! Quirks handled here and only here:
//! - tiberius has no transaction API: `BEGIN TRAN` / `COMMIT` by hand, and after an error
//!   `IF @@TRANCOUNT > 0 ROLLBACK`, because some errors doom the transaction and others
//!   leave it open.
//! - Migration files are sqlcmd scripts: batches separated by `GO` lines; a server error
//!   gives the line inside its batch, turned here into the line of the file. SQL Server DDL
//!   is transactional, so a failed migration leaves nothing behind and may be retried.
//! - A bulk load (TDS `INSERT BULK`) skips CHECK and FOREIGN KEY constraints, triggers and
//!   column defaults unless told otherwise: every load asks for CHECK_CONSTRAINTS,
//!   FIRE_TRIGGERS and KEEP_NULLS, so a load obeys the same rules as an INSERT; explicit ids
//!   go in with KEEP_IDENTITY.
//! - Bulk rows are typed: the reader's text rows are converted here to each column's SQL
//!   type, and a value that does not fit is reported with its file line and column.
//! - TRUNCATE is refused on a table another table references: the rows are deleted instead.

pub mod backup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use tiberius::numeric::Numeric;
use tiberius::{
    AuthMethod, Client, ColumnData, EncryptionLevel, IntoSql, SqlBulkCopyOption, TokenRow,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::catalog::{AppliedMigration, Column, ColumnKind, HistoryKind, Migration, TableRef};
use crate::config::{EngineKind, Target};
use crate::engine::script::split_go;
use crate::engine::{Capabilities, DbError, Driver, LoadRequest, Session, ValueStyle, Visibility};
use crate::load::{LineMap, LoadError};

pub(crate) const HISTORY_TABLE: &str = "dbo.mairie_dba_schema_history";
const LOCK_RESOURCE: &str = "mairie-dba schema";

type Tds = Client<Compat<TcpStream>>;

pub struct MsConn {
    client: AsyncMutex<Tds>,
    target: String,
    statement_timeout: Duration,
    /// SQL types of the tables whose columns were read, for typing bulk rows.
    types: std::sync::Mutex<HashMap<TableRef, Vec<(String, MsType)>>>,
}

/// A logical file of a backup, from `RESTORE FILELISTONLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub logical: String,
    /// `D` data, `L` log.
    pub kind: String,
}

/// The SQL Server column types a bulk row can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsType {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    Decimal { scale: u8 },
    Float,
    Real,
    Date,
    DateTime,
    DateTime2,
    DateTimeOffset,
    Text,
    Unsupported,
}

impl MsType {
    pub fn from_catalog(data_type: &str, scale: Option<u8>) -> MsType {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" => MsType::TinyInt,
            "smallint" => MsType::SmallInt,
            "int" => MsType::Int,
            "bigint" => MsType::BigInt,
            "bit" => MsType::Bit,
            "decimal" | "numeric" => MsType::Decimal {
                scale: scale.unwrap_or(0),
            },
            "money" | "smallmoney" => MsType::Decimal { scale: 4 },
            "float" => MsType::Float,
            "real" => MsType::Real,
            "date" => MsType::Date,
            "datetime" | "smalldatetime" => MsType::DateTime,
            "datetime2" => MsType::DateTime2,
            "datetimeoffset" => MsType::DateTimeOffset,
            "char" | "nchar" | "varchar" | "nvarchar" | "text" | "ntext" | "xml"
            | "uniqueidentifier" => MsType::Text,
            _ => MsType::Unsupported,
        }
    }

    fn kind(self) -> ColumnKind {
        match self {
            MsType::TinyInt | MsType::SmallInt | MsType::Int | MsType::BigInt => {
                ColumnKind::Integer
            }
            MsType::Bit => ColumnKind::Boolean,
            MsType::Decimal { .. } | MsType::Float | MsType::Real => ColumnKind::Decimal,
            MsType::Date => ColumnKind::Date,
            MsType::DateTime | MsType::DateTime2 | MsType::DateTimeOffset => ColumnKind::Timestamp,
            MsType::Text | MsType::Unsupported => ColumnKind::Text,
        }
    }
}

pub async fn connect(target: &Target) -> Result<MsConn> {
    connect_session(target, Session::Work).await
}

/// A session for inspection queries: `SET LOCK_TIMEOUT`, so that none queues behind a lock.
pub async fn connect_probe(target: &Target) -> Result<MsConn> {
    connect_session(target, Session::Probe).await
}

async fn connect_session(target: &Target, session: Session) -> Result<MsConn> {
    let c = &target.connection;
    let password = target.password()?;
    let where_ = format!(
        "connecting to target `{}` (mssql {}@{}:{}/{})",
        target.name, c.user, c.host, c.port, c.database
    );
    let mut config = tiberius::Config::new();
    config.host(&c.host);
    config.port(c.port);
    config.database(&c.database);
    config.application_name("mairie-dba");
    config.authentication(AuthMethod::sql_server(
        &c.user,
        password.as_ref().map(|p| p.expose()).unwrap_or(""),
    ));
    config.encryption(if c.encrypt {
        EncryptionLevel::Required
    } else {
        EncryptionLevel::Off
    });
    if c.trust_server_certificate {
        config.trust_cert();
    }
    let timeout = c.connect_timeout;
    let client = async {
        let mut config = config;
        // Azure SQL and availability groups may redirect the login once.
        for _ in 0..2 {
            let tcp = tokio::time::timeout(timeout, TcpStream::connect(config.get_addr()))
                .await
                .map_err(|_| anyhow!("timed out after {} s", timeout.as_secs()))??;
            tcp.set_nodelay(true)?;
            match tokio::time::timeout(timeout, Client::connect(config.clone(), tcp.compat_write()))
                .await
                .map_err(|_| anyhow!("timed out after {} s", timeout.as_secs()))?
            {
                Ok(client) => return Ok(client),
                Err(tiberius::error::Error::Routing { host, port }) => {
                    config.host(&host);
                    config.port(port);
                }
                Err(e) => return Err(ms_err(e)),
            }
        }
        Err(anyhow!("redirected more than once"))
    }
    .await
    .with_context(|| where_.clone())?;
    let mut client = client;
    if session == Session::Probe {
        client
            .simple_query(format!("SET LOCK_TIMEOUT {}", c.lock_timeout.as_millis()))
            .await
            .map_err(ms_err)?
            .into_results()
            .await
            .map_err(ms_err)?;
    }
    Ok(MsConn {
        client: AsyncMutex::new(client),
        target: target.name.clone(),
        statement_timeout: c.statement_timeout,
        types: std::sync::Mutex::new(HashMap::new()),
    })
}

/// `message (error 547, state 0, line 3)`, as SSMS shows it.
pub fn describe(e: &tiberius::error::Error) -> String {
    match e {
        tiberius::error::Error::Server(t) => format!(
            "{} (error {}, severity {}, state {}, line {})",
            t.message(),
            t.code(),
            t.class(),
            t.state(),
            t.line()
        ),
        other => crate::engine::error_chain(other),
    }
}

/// A driver error as sqlcmd would print it ([`describe`]), typed ([`DbError`]).
pub fn ms_err(e: tiberius::error::Error) -> anyhow::Error {
    let number = match &e {
        tiberius::error::Error::Server(t) => Some(t.code()),
        _ => None,
    };
    let mut err = DbError::new(EngineKind::Mssql, describe(&e), e);
    if let Some(n) = number {
        err = err.with_number(n);
    }
    err.into()
}

/// `N'…'` with quotes doubled.
pub fn nstring(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

/// `[identifier]`, inner `]` doubled — SQL Server's QUOTENAME.
pub fn quote_ident(s: &str) -> String {
    format!("[{}]", s.replace(']', "]]"))
}

pub fn quoted_table(t: &TableRef) -> String {
    let schema = if t.schema == "public" {
        "dbo"
    } else {
        &t.schema
    };
    format!("{}.{}", quote_ident(schema), quote_ident(&t.name))
}

fn schema_of(t: &TableRef) -> &str {
    if t.schema == "public" {
        "dbo"
    } else {
        &t.schema
    }
}

/// The T-SQL that creates the history table when it is missing.
///
/// `version` has no unique index: SQL Server's UNIQUE admits one NULL (every repeatable row
/// has none), and a filtered index would make every write to the table depend on the
/// session's ANSI settings. One row per version is kept by [`record_sql`]'s update-or-insert,
/// which runs under the schema lock.
pub fn history_ddl() -> String {
    format!(
        "IF OBJECT_ID(N'{HISTORY_TABLE}', N'U') IS NULL
CREATE TABLE {HISTORY_TABLE} (
    installed_rank BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_mairie_dba_schema_history PRIMARY KEY,
    version        BIGINT NULL,
    kind           NVARCHAR(16) NOT NULL CONSTRAINT df_mairie_dba_schema_history_kind DEFAULT N'versioned',
    description    NVARCHAR(255) NOT NULL,
    script         NVARCHAR(255) NOT NULL,
    checksum       CHAR(64) NOT NULL,
    applied_at     DATETIMEOFFSET(3) NOT NULL CONSTRAINT df_mairie_dba_schema_history_at DEFAULT SYSDATETIMEOFFSET(),
    execution_ms   BIGINT NOT NULL,
    applied_by     NVARCHAR(128) NOT NULL CONSTRAINT df_mairie_dba_schema_history_by DEFAULT SUSER_SNAME(),
    success        BIT NOT NULL
)"
    )
}

/// 1 when the history table has the second shape (a `kind` column), 0 when it has the
/// first, NULL when there is none.
pub fn history_shape_sql() -> String {
    format!(
        "SELECT CAST(CASE WHEN OBJECT_ID(N'{HISTORY_TABLE}', N'U') IS NULL THEN NULL
                          WHEN COL_LENGTH(N'{HISTORY_TABLE}', N'kind') IS NULL THEN 0 ELSE 1 END AS BIGINT)"
    )
}

/// The batches that bring a history table of the first shape (primary key `version`) to the
/// second, run in one transaction: a rank as the key, `version` nullable, a `kind`. Separate
/// batches, as a batch is compiled before its first ALTER runs.
pub fn upgrade_history_batches() -> Vec<String> {
    vec![
        format!("ALTER TABLE {HISTORY_TABLE} DROP CONSTRAINT pk_mairie_dba_schema_history;"),
        format!("ALTER TABLE {HISTORY_TABLE} ALTER COLUMN version BIGINT NULL;"),
        format!(
            "ALTER TABLE {HISTORY_TABLE} ADD installed_rank BIGINT IDENTITY(1,1) NOT NULL,
                kind NVARCHAR(16) NOT NULL CONSTRAINT df_mairie_dba_schema_history_kind DEFAULT N'versioned';"
        ),
        format!(
            "ALTER TABLE {HISTORY_TABLE} ADD CONSTRAINT pk_mairie_dba_schema_history PRIMARY KEY (installed_rank);"
        ),
    ]
}

/// The history rows in the order they were written (applied_at as Unix milliseconds); a
/// table of the first shape is read as versioned rows ranked by version.
pub fn history_select(upgraded: bool) -> String {
    let (rank, kind) = if upgraded {
        ("installed_rank", "kind")
    } else {
        ("version", "CAST(N'versioned' AS NVARCHAR(16))")
    };
    format!(
        "SELECT {rank}, {kind}, version, description, script, checksum,
                DATEDIFF_BIG(millisecond, '19700101', CONVERT(datetime2(3), SWITCHOFFSET(applied_at, '+00:00'))),
                execution_ms, applied_by, success
         FROM {HISTORY_TABLE} ORDER BY 1"
    )
}

/// Takes the schema lock; `timeout_ms` 0 tries once. Returns sp_getapplock's code as a row.
pub fn applock_sql(timeout_ms: u64) -> String {
    format!(
        "DECLARE @r int; EXEC @r = sp_getapplock @Resource = N'{LOCK_RESOURCE}', @LockMode = 'Exclusive', \
         @LockOwner = 'Session', @LockTimeout = {timeout_ms}; SELECT @r;"
    )
}

/// The tables (`schema.table`) whose foreign keys reference `t`, itself left out.
pub fn referencing_tables_sql(t: &TableRef) -> String {
    format!(
        "SELECT DISTINCT SCHEMA_NAME(ct.schema_id) + N'.' + ct.name
         FROM sys.foreign_keys fk JOIN sys.tables ct ON ct.object_id = fk.parent_object_id
         WHERE fk.referenced_object_id = OBJECT_ID(N'{}')
           AND fk.parent_object_id <> fk.referenced_object_id
         ORDER BY 1",
        quoted_table(t).replace('\'', "''")
    )
}

/// Empties `t` inside the transaction: TRUNCATE (transactional here) unless other tables
/// reference it, where SQL Server refuses it (error 4712) and DELETE is used.
pub fn empty_sql(t: &TableRef, referenced: bool) -> String {
    if referenced {
        format!("DELETE FROM {};", quoted_table(t))
    } else {
        format!("TRUNCATE TABLE {};", quoted_table(t))
    }
}

/// Records a migration: update the row of a retried version, else insert it. A repeatable
/// migration's @P1 is NULL, which matches no row: it gets a new row each time it runs.
pub fn record_sql() -> String {
    format!(
        "UPDATE {HISTORY_TABLE} SET kind = @P7, description = @P2, script = @P3, checksum = @P4, applied_at = SYSDATETIMEOFFSET(),
            execution_ms = @P5, applied_by = SUSER_SNAME(), success = @P6 WHERE version = @P1;
         IF @@ROWCOUNT = 0
            INSERT INTO {HISTORY_TABLE} (version, kind, description, script, checksum, execution_ms, success)
            VALUES (@P1, @P7, @P2, @P3, @P4, @P5, @P6);"
    )
}

/// `schema baseline`: @P1 the version, @P2 the description.
pub fn baseline_sql() -> String {
    format!(
        "INSERT INTO {HISTORY_TABLE} (version, kind, description, script, checksum, execution_ms, success)
         VALUES (@P1, N'baseline', @P2, N'<< baseline >>', '', 0, 1);"
    )
}

/// `schema repair`: deletes the row of rank @P1.
pub fn delete_row_sql() -> String {
    format!("DELETE FROM {HISTORY_TABLE} WHERE installed_rank = @P1;")
}

/// `schema repair`: the row of rank @P1 takes the file's checksum, description and name.
pub fn realign_row_sql() -> String {
    format!(
        "UPDATE {HISTORY_TABLE} SET checksum = @P2, description = @P3, script = @P4 WHERE installed_rank = @P1;"
    )
}

/// What to do after a `no-transaction` batch failed: nothing was rolled back.
pub fn no_transaction_advice() -> String {
    format!(
        "it ran outside a transaction (-- mairie-dba: no-transaction), so nothing was rolled back: \
         check what it left half-done and undo it by hand; then run `mairie-dba schema repair`, which \
         removes its failed row from {HISTORY_TABLE}, and apply again"
    )
}

impl MsConn {
    /// Runs a batch and drains its results (for statements that only do things).
    pub async fn batch(&self, sql: &str) -> Result<()> {
        let mut c = self.client.lock().await;
        c.simple_query(sql)
            .await
            .map_err(ms_err)?
            .into_results()
            .await
            .map_err(ms_err)?;
        Ok(())
    }

    async fn inspect<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        crate::engine::bounded(self.statement_timeout, f).await
    }

    /// The rows of the first result set of a batch.
    async fn first_result(&self, sql: &str) -> Result<Vec<tiberius::Row>> {
        let mut c = self.client.lock().await;
        let rows = c
            .simple_query(sql)
            .await
            .map_err(ms_err)?
            .into_first_result()
            .await
            .map_err(ms_err)?;
        Ok(rows)
    }

    /// The first row of a batch's first result set.
    async fn first_row(&self, sql: &str) -> Result<Option<tiberius::Row>> {
        let mut c = self.client.lock().await;
        let row = c
            .simple_query(sql)
            .await
            .map_err(ms_err)?
            .into_row()
            .await
            .map_err(ms_err)?;
        Ok(row)
    }

    pub async fn scalar_i64(&self, sql: &str) -> Result<Option<i64>> {
        Ok(self.first_row(sql).await?.and_then(|r| {
            r.try_get::<i64, _>(0)
                .ok()
                .flatten()
                .or_else(|| r.try_get::<i32, _>(0).ok().flatten().map(i64::from))
        }))
    }

    /// Every row of the first result set, each column as text (None for NULL): for
    /// catalogue queries, so that callers need not know TDS types. Bounded by the statement
    /// timeout.
    pub async fn text_rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        Ok(self
            .named_rows(sql)
            .await?
            .into_iter()
            .map(|row| row.into_iter().map(|(_, v)| v).collect())
            .collect())
    }

    pub async fn scalar_string(&self, sql: &str) -> Result<Option<String>> {
        Ok(self
            .first_row(sql)
            .await?
            .and_then(|r| r.try_get::<&str, _>(0).ok().flatten().map(str::to_string)))
    }

    /// The logical files of a backup (`RESTORE FILELISTONLY`).
    pub async fn file_list(&self, sql: &str) -> Result<Vec<BackupFile>> {
        let rows = self.first_result(sql).await?;
        Ok(rows
            .iter()
            .map(|r| BackupFile {
                logical: r
                    .try_get::<&str, _>("LogicalName")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .to_string(),
                kind: r
                    .try_get::<&str, _>("Type")
                    .ok()
                    .flatten()
                    .unwrap_or("D")
                    .to_string(),
            })
            .collect())
    }

    /// Exact rows of every user table, `schema.table`.
    pub async fn count_tables(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let names: Vec<(String, String)> = {
            let rows = self.first_result(
                    "SELECT s.name, t.name FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id
                     WHERE t.is_ms_shipped = 0 ORDER BY s.name, t.name",
                ).await?;
            rows.iter()
                .map(|r| {
                    (
                        r.get::<&str, _>(0).unwrap_or_default().to_string(),
                        r.get::<&str, _>(1).unwrap_or_default().to_string(),
                    )
                })
                .collect()
        };
        let mut out = std::collections::BTreeMap::new();
        for (s, t) in names {
            let n = self
                .scalar_i64(&format!(
                    "SELECT COUNT_BIG(*) FROM {}.{}",
                    quote_ident(&s),
                    quote_ident(&t)
                ))
                .await?
                .unwrap_or(0);
            out.insert(format!("{s}.{t}"), n.max(0) as u64);
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Schema history

    async fn record(&self, m: &Migration, elapsed: Duration, success: bool) -> Result<()> {
        let mut c = self.client.lock().await;
        c.execute(
            record_sql(),
            &[
                &m.version,
                &m.description.as_str(),
                &m.script.as_str(),
                &m.checksum.as_str(),
                &(elapsed.as_millis() as i64),
                &success,
                &m.kind().as_str(),
            ],
        )
        .await
        .map_err(ms_err)
        .with_context(|| format!("recording {} in {HISTORY_TABLE}", m.script))?;
        Ok(())
    }

    /// Runs the one batch of a `no-transaction` migration outside a transaction, then
    /// records it.
    async fn apply_alone(&self, m: &Migration) -> Result<Duration> {
        let batches = split_go(&m.sql);
        if batches.is_empty() {
            self.record(m, Duration::ZERO, true).await?;
            return Ok(Duration::ZERO);
        }
        let [b] = &batches[..] else {
            bail!(
                "{}: a no-transaction migration must hold exactly one batch, it holds {}",
                m.path.display(),
                batches.len()
            );
        };
        let start = Instant::now();
        let run = self.batch(&b.sql).await;
        let elapsed = start.elapsed();
        match run {
            Ok(()) => {
                self.record(m, elapsed, true).await.with_context(|| {
                    format!(
                        "{} ran (outside a transaction) but is not in {HISTORY_TABLE}",
                        m.path.display()
                    )
                })?;
                Ok(elapsed)
            }
            Err(e) => {
                let _ = self.record(m, elapsed, false).await;
                let msg = format!("{e:#}");
                bail!(
                    "{}:{}: {msg}; {}",
                    m.path.display(),
                    batch_line(b.line, &msg),
                    no_transaction_advice()
                )
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Loads

    /// Every row of the first result set as (column name, value as text) pairs, whatever
    /// the column's type: for the exporter's catalogue and custom queries.
    pub async fn named_rows(&self, sql: &str) -> Result<Vec<Vec<(String, Option<String>)>>> {
        self.inspect(async {
            let rows = self.first_result(sql).await?;
            Ok(rows
                .iter()
                .map(|r| {
                    r.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, col)| (col.name().to_string(), cell_text(r, i)))
                        .collect()
                })
                .collect())
        })
        .await
    }

    async fn identity_column(&self, t: &TableRef) -> Result<Option<String>> {
        let mut c = self.client.lock().await;
        let row = c
            .query(
                "SELECT name FROM sys.identity_columns WHERE object_id = OBJECT_ID(@P1)",
                &[&quoted_table(t).as_str()],
            )
            .await
            .map_err(ms_err)?
            .into_row()
            .await
            .map_err(ms_err)?;
        Ok(row.and_then(|r| r.get::<&str, _>(0).map(str::to_string)))
    }
}

impl Driver for MsConn {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: EngineKind::Mssql,
            transactional_ddl: true,
            values: ValueStyle::Utc,
        }
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn server_version(&self) -> Result<String> {
        Ok(self
            .scalar_string("SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128))")
            .await?
            .unwrap_or_default())
    }

    /// Without `VIEW SERVER STATE`, `sys.dm_exec_requests` and `sys.dm_exec_sessions` show
    /// only the login's own sessions.
    async fn activity_visibility(&self) -> Result<Visibility> {
        let granted = self
            .scalar_i64("SELECT CAST(HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') AS BIGINT)")
            .await?
            .unwrap_or(0);
        Ok(if granted == 1 {
            Visibility::All
        } else {
            let login = self
                .scalar_string("SELECT CAST(SUSER_SNAME() AS NVARCHAR(256))")
                .await?
                .unwrap_or_default();
            Visibility::OwnOnly {
                missing: format!(
                    "login {login} lacks VIEW SERVER STATE: GRANT VIEW SERVER STATE TO {}",
                    quote_ident(&login)
                ),
            }
        })
    }

    async fn lock_schema(&self) -> Result<bool> {
        // sp_getapplock's return code: >= 0 granted, < 0 refused or timed out.
        let code = |sql: String| async move {
            Ok::<i64, anyhow::Error>(self.scalar_i64(&sql).await?.unwrap_or(-999))
        };
        if code(applock_sql(0)).await? >= 0 {
            return Ok(false);
        }
        let r = code(applock_sql(86_400_000)).await?;
        if r < 0 {
            bail!("could not take the schema lock (sp_getapplock returned {r})");
        }
        Ok(true)
    }

    async fn unlock_schema(&self) -> Result<()> {
        self.batch(&format!(
            "EXEC sp_releaseapplock @Resource = N'{LOCK_RESOURCE}', @LockOwner = 'Session';"
        ))
        .await
    }

    /// Creates the history table, or brings one of the first shape to the second in one
    /// transaction ([`upgrade_history_batches`]).
    async fn ensure_history(&self) -> Result<()> {
        match self.scalar_i64(&history_shape_sql()).await? {
            None => self
                .batch(&history_ddl())
                .await
                .with_context(|| format!("creating the schema history table {HISTORY_TABLE}")),
            Some(0) => {
                self.batch("SET XACT_ABORT ON; BEGIN TRAN;").await?;
                for b in upgrade_history_batches() {
                    if let Err(e) = self.batch(&b).await {
                        let _ = self.batch("IF @@TRANCOUNT > 0 ROLLBACK TRAN;").await;
                        return Err(e).with_context(|| {
                            format!("upgrading the schema history table {HISTORY_TABLE}")
                        });
                    }
                }
                self.batch("COMMIT TRAN;").await
            }
            Some(_) => Ok(()),
        }
    }

    async fn history(&self) -> Result<Vec<AppliedMigration>> {
        let Some(shape) = self.scalar_i64(&history_shape_sql()).await? else {
            return Ok(Vec::new());
        };
        let rows = self.first_result(&history_select(shape == 1)).await?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| r.get::<&str, _>(i).unwrap_or_default().to_string();
                let ms = r.get::<i64, _>(6).unwrap_or_default();
                Ok(AppliedMigration {
                    rank: r.get::<i64, _>(0).unwrap_or_default(),
                    kind: HistoryKind::parse(&text(1)),
                    version: r.get::<i64, _>(2),
                    description: text(3),
                    script: text(4),
                    checksum: text(5).trim().to_string(),
                    applied_at: chrono::DateTime::from_timestamp_millis(ms)
                        .ok_or_else(|| anyhow!("{HISTORY_TABLE}: bad applied_at"))?,
                    execution_ms: r.get::<i64, _>(7).unwrap_or_default(),
                    applied_by: text(8),
                    success: r.get::<bool, _>(9).unwrap_or(false),
                })
            })
            .collect()
    }

    /// Runs the migration's batches in one transaction and records it; a `no-transaction`
    /// migration runs alone ([`MsConn::apply_alone`]).
    async fn apply_migration(&mut self, m: &Migration) -> Result<Duration> {
        if m.no_transaction {
            return self.apply_alone(m).await;
        }
        let start = Instant::now();
        self.batch("SET XACT_ABORT ON; BEGIN TRAN;").await?;
        let mut failure = None;
        for batch in split_go(&m.sql) {
            if let Err(e) = self.batch(&batch.sql).await {
                failure = Some((batch.line, e));
                break;
            }
        }
        let elapsed = start.elapsed();
        match failure {
            None => {
                self.record(m, elapsed, true).await?;
                self.batch("COMMIT TRAN;").await?;
                Ok(elapsed)
            }
            Some((line, e)) => {
                let _ = self.batch("IF @@TRANCOUNT > 0 ROLLBACK TRAN;").await;
                let _ = self.record(m, elapsed, false).await;
                let msg = format!("{e:#}");
                let file_line = batch_line(line, &msg);
                bail!("{}:{file_line}: {msg}", m.path.display())
            }
        }
    }

    async fn record_baseline(&self, version: i64, description: &str) -> Result<()> {
        let mut c = self.client.lock().await;
        c.execute(baseline_sql(), &[&version, &description])
            .await
            .map_err(ms_err)
            .with_context(|| format!("recording the baseline in {HISTORY_TABLE}"))?;
        Ok(())
    }

    async fn delete_history_row(&self, rank: i64) -> Result<()> {
        let mut c = self.client.lock().await;
        c.execute(delete_row_sql(), &[&rank])
            .await
            .map_err(ms_err)
            .with_context(|| format!("deleting row {rank} of {HISTORY_TABLE}"))?;
        Ok(())
    }

    async fn realign_history_row(&self, rank: i64, m: &Migration) -> Result<()> {
        let mut c = self.client.lock().await;
        c.execute(
            realign_row_sql(),
            &[
                &rank,
                &m.checksum.as_str(),
                &m.description.as_str(),
                &m.script.as_str(),
            ],
        )
        .await
        .map_err(ms_err)
        .with_context(|| format!("realigning row {rank} of {HISTORY_TABLE}"))?;
        Ok(())
    }

    async fn columns(&self, table: &TableRef) -> Result<Vec<Column>> {
        let rows = self
            .inspect(async {
                let mut c = self.client.lock().await;
                let rows = c.query(
                    "SELECT c.COLUMN_NAME, c.DATA_TYPE, CAST(c.NUMERIC_SCALE AS int), c.IS_NULLABLE,
                            CASE WHEN c.COLUMN_DEFAULT IS NULL THEN 0 ELSE 1 END,
                            COLUMNPROPERTY(OBJECT_ID(QUOTENAME(c.TABLE_SCHEMA) + '.' + QUOTENAME(c.TABLE_NAME)), c.COLUMN_NAME, 'IsIdentity'),
                            COLUMNPROPERTY(OBJECT_ID(QUOTENAME(c.TABLE_SCHEMA) + '.' + QUOTENAME(c.TABLE_NAME)), c.COLUMN_NAME, 'IsComputed')
                     FROM INFORMATION_SCHEMA.COLUMNS c
                     WHERE c.TABLE_SCHEMA = @P1 AND c.TABLE_NAME = @P2
                     ORDER BY c.ORDINAL_POSITION",
                    &[&schema_of(table), &table.name.as_str()],
                )
                .await
                .map_err(ms_err)?
                .into_first_result()
                .await
                .map_err(ms_err)?;
                Ok(rows)
            })
            .await?;
        if rows.is_empty() {
            bail!("table {table} does not exist (target `{}`)", self.target);
        }
        let mut cols = Vec::new();
        let mut types = Vec::new();
        for r in &rows {
            if r.get::<i32, _>(6).unwrap_or(0) == 1 {
                continue; // computed columns take no values
            }
            let name = r.get::<&str, _>(0).unwrap_or_default().to_string();
            let data_type = r.get::<&str, _>(1).unwrap_or_default().to_string();
            let scale = r.get::<i32, _>(2).and_then(|s| u8::try_from(s).ok());
            let ty = MsType::from_catalog(&data_type, scale);
            let identity = r.get::<i32, _>(5).unwrap_or(0) == 1;
            cols.push(Column {
                name: name.clone(),
                kind: ty.kind(),
                sql_type: data_type,
                nullable: r.get::<&str, _>(3) == Some("YES"),
                has_default: identity || r.get::<i32, _>(4).unwrap_or(0) == 1,
            });
            types.push((name, ty));
        }
        self.types
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(table.clone(), types);
        Ok(cols)
    }

    async fn foreign_keys(&self, tables: &[TableRef]) -> Result<Vec<(TableRef, TableRef)>> {
        let rows = self
            .first_result(
                "SELECT SCHEMA_NAME(ct.schema_id), ct.name, SCHEMA_NAME(pt.schema_id), pt.name
                 FROM sys.foreign_keys fk
                 JOIN sys.tables ct ON ct.object_id = fk.parent_object_id
                 JOIN sys.tables pt ON pt.object_id = fk.referenced_object_id",
            )
            .await?;
        let find = |s: &str, n: &str| {
            tables
                .iter()
                .find(|t| schema_of(t) == s && t.name == n)
                .cloned()
        };
        Ok(rows
            .iter()
            .filter_map(|r| {
                let child = find(r.get::<&str, _>(0)?, r.get::<&str, _>(1)?)?;
                let parent = find(r.get::<&str, _>(2)?, r.get::<&str, _>(3)?)?;
                (child != parent).then_some((child, parent))
            })
            .collect())
    }

    async fn begin(&self) -> Result<()> {
        self.batch("SET XACT_ABORT ON; BEGIN TRAN;").await
    }

    async fn commit(&self) -> Result<()> {
        self.batch("COMMIT TRAN;").await.context("committing")
    }

    async fn rollback(&self) {
        let _ = self.batch("IF @@TRANCOUNT > 0 ROLLBACK TRAN;").await;
    }

    async fn savepoint(&self, name: &str) -> Result<()> {
        self.batch(&format!("SAVE TRANSACTION {};", quote_ident(name)))
            .await
    }

    /// Under XACT_ABORT (set by [`MsConn::begin`]) a refused row dooms the transaction, so
    /// the loads never come back here after one: this serves the rows refused by the reader.
    async fn rollback_to_savepoint(&self, name: &str) -> Result<()> {
        self.batch(&format!("ROLLBACK TRANSACTION {};", quote_ident(name)))
            .await
    }

    /// SQL Server has no RELEASE: a savepoint lives until the transaction ends.
    async fn release_savepoint(&self, name: &str) -> Result<()> {
        let _ = name;
        Ok(())
    }

    async fn truncate(&self, tables: &[TableRef]) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let mut referenced = Vec::with_capacity(tables.len());
        for t in tables {
            let rows: Vec<String> = self
                .first_result(&referencing_tables_sql(t))
                .await?
                .iter()
                .filter_map(|r| r.get::<&str, _>(0).map(str::to_string))
                .collect();
            let own: Vec<String> = tables
                .iter()
                .map(|o| format!("{}.{}", schema_of(o), o.name))
                .collect();
            let outside: Vec<String> = rows.iter().filter(|c| !own.contains(c)).cloned().collect();
            if !outside.is_empty() {
                notes.push(crate::engine::delete_note(
                    t,
                    &outside,
                    "SQL Server refuses TRUNCATE on a referenced table (error 4712)",
                ));
            }
            referenced.push(!rows.is_empty());
        }
        for (t, is_referenced) in tables.iter().zip(referenced).rev() {
            self.batch(&empty_sql(t, is_referenced))
                .await
                .with_context(|| format!("emptying {t} (--truncate)"))?;
        }
        Ok(notes)
    }

    /// Bulk-loads the reader's rows, typed for each column. Inside a transaction begun with
    /// [`MsConn::begin`]; returns the rows stored.
    async fn bulk_load(
        &self,
        req: &LoadRequest<'_>,
        mut chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
        lines: Arc<LineMap>,
    ) -> Result<u64> {
        let types: Vec<MsType> = {
            let cache = self.types.lock().unwrap_or_else(|p| p.into_inner());
            let all = cache
                .get(req.table)
                .ok_or_else(|| anyhow!("columns of {} were not read before the load", req.table))?;
            req.columns
                .iter()
                .map(|c| {
                    all.iter()
                        .find(|(n, _)| n == c)
                        .map(|(_, t)| *t)
                        .ok_or_else(|| anyhow!("{}: no column {c}", req.table))
                })
                .collect::<Result<_>>()?
        };
        if let Some(i) = types.iter().position(|t| *t == MsType::Unsupported) {
            bail!(
                "{}: column {} has a type bulk loads do not support here",
                req.table,
                req.columns[i]
            );
        }
        let identity = self.identity_column(req.table).await?;
        let mut options = SqlBulkCopyOption::CheckConstraints
            | SqlBulkCopyOption::FireTriggers
            | SqlBulkCopyOption::KeepNulls;
        if identity.as_ref().is_some_and(|id| req.columns.contains(id)) {
            options |= SqlBulkCopyOption::KeepIdentity;
        }
        let table = quoted_table(req.table);
        let cols: Vec<&str> = req.columns.iter().map(String::as_str).collect();
        let mut c = self.client.lock().await;
        let mut bulk = c
            .bulk_insert_with_options(&table, &cols, options, &[])
            .await
            .map_err(ms_err)
            .with_context(|| {
                format!(
                    "{}: starting the bulk load into {}",
                    req.file_label, req.table
                )
            })?;
        let mut row_no: u64 = 0;
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk?;
            for line in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                row_no += 1;
                let fields = decode_text_row(line);
                if fields.len() != types.len() {
                    bail!(
                        "{}: internal error: row {row_no} has {} fields",
                        req.file_label,
                        fields.len()
                    );
                }
                let mut row = TokenRow::with_capacity(fields.len());
                for (i, (field, ty)) in fields.into_iter().zip(&types).enumerate() {
                    let value = to_column_data(field.as_deref(), *ty).map_err(|why| LoadError {
                        file: req.file_label.to_string(),
                        line: Some(lines.physical_line(row_no)),
                        column: Some(req.columns[i].clone()),
                        message: why,
                    })?;
                    row.push(value);
                }
                bulk.send(row).await.map_err(|e| {
                    anyhow!(
                        "{}:{}: {}",
                        req.file_label,
                        lines.physical_line(row_no),
                        describe(&e)
                    )
                })?;
            }
        }
        let res = bulk
            .finalize()
            .await
            .map_err(|e| anyhow!("{}: {}", req.file_label, describe(&e)))?;
        Ok(res.total())
    }
}

/// A cell as text, whatever its SQL type (None for NULL or a type without a text form).
fn cell_text(r: &tiberius::Row, i: usize) -> Option<String> {
    if let Ok(Some(s)) = r.try_get::<&str, _>(i) {
        return Some(s.to_string());
    }
    if let Ok(Some(v)) = r.try_get::<f64, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(Some(v)) = r.try_get::<i64, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(Some(v)) = r.try_get::<i32, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(Some(v)) = r.try_get::<f32, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(Some(v)) = r.try_get::<Numeric, _>(i) {
        return Some(v.to_string());
    }
    if let Ok(Some(v)) = r.try_get::<bool, _>(i) {
        return Some(if v { "1" } else { "0" }.to_string());
    }
    None
}

/// The file line of a server error in a batch starting at `batch_line`: the server says
/// "line N" counting from the batch's first line.
fn batch_line(batch_line: usize, msg: &str) -> usize {
    let inner = msg
        .rsplit_once(", line ")
        .and_then(|(_, rest)| rest.trim_end_matches(')').parse::<usize>().ok())
        .unwrap_or(1);
    batch_line + inner.saturating_sub(1)
}

/// One row of the shared text format: tab-separated, `\N` for NULL, backslash escapes.
pub fn decode_text_row(line: &[u8]) -> Vec<Option<String>> {
    line.split(|&b| b == b'\t')
        .map(|f| {
            if f == b"\\N" {
                return None;
            }
            let mut out = Vec::with_capacity(f.len());
            let mut it = f.iter();
            while let Some(&b) = it.next() {
                if b == b'\\' {
                    match it.next() {
                        Some(b't') => out.push(b'\t'),
                        Some(b'n') => out.push(b'\n'),
                        Some(b'r') => out.push(b'\r'),
                        Some(&o) => out.push(o),
                        None => out.push(b'\\'),
                    }
                } else {
                    out.push(b);
                }
            }
            Some(String::from_utf8_lossy(&out).into_owned())
        })
        .collect()
}

/// A text value (already normalised by the reader: ISO dates, UTC timestamps, `.` decimals,
/// 1/0 booleans) as the typed value of its column.
pub fn to_column_data(value: Option<&str>, ty: MsType) -> Result<ColumnData<'static>, String> {
    let Some(v) = value else {
        return Ok(match ty {
            MsType::TinyInt => ColumnData::U8(None),
            MsType::SmallInt => ColumnData::I16(None),
            MsType::Int => ColumnData::I32(None),
            MsType::BigInt => ColumnData::I64(None),
            MsType::Bit => ColumnData::Bit(None),
            MsType::Decimal { .. } => ColumnData::Numeric(None),
            MsType::Float => ColumnData::F64(None),
            MsType::Real => ColumnData::F32(None),
            MsType::Date => ColumnData::Date(None),
            MsType::DateTime => ColumnData::DateTime(None),
            MsType::DateTime2 => ColumnData::DateTime2(None),
            MsType::DateTimeOffset => ColumnData::DateTimeOffset(None),
            MsType::Text | MsType::Unsupported => ColumnData::String(None),
        });
    };
    let t = v.trim();
    let int = |min: i64, max: i64, name: &str| -> Result<i64, String> {
        let n: i64 = t.parse().map_err(|_| format!("invalid integer \"{v}\""))?;
        if n < min || n > max {
            return Err(format!("{n} is out of range for {name}"));
        }
        Ok(n)
    };
    Ok(match ty {
        MsType::TinyInt => ColumnData::U8(Some(int(0, 255, "tinyint")? as u8)),
        MsType::SmallInt => ColumnData::I16(Some(
            int(i16::MIN as i64, i16::MAX as i64, "smallint")? as i16,
        )),
        MsType::Int => ColumnData::I32(Some(int(i32::MIN as i64, i32::MAX as i64, "int")? as i32)),
        MsType::BigInt => ColumnData::I64(Some(int(i64::MIN, i64::MAX, "bigint")?)),
        MsType::Bit => ColumnData::Bit(Some(match t {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(format!("invalid boolean \"{v}\"")),
        })),
        MsType::Decimal { scale } => {
            let d: rust_decimal::Decimal =
                t.parse().map_err(|_| format!("invalid number \"{v}\""))?;
            let d = d.round_dp(scale as u32);
            let mut mantissa = d.mantissa();
            // Bring the mantissa to exactly `scale` decimals.
            for _ in d.scale()..scale as u32 {
                mantissa *= 10;
            }
            ColumnData::Numeric(Some(Numeric::new_with_scale(mantissa, scale)))
        }
        MsType::Float => ColumnData::F64(Some(
            t.parse().map_err(|_| format!("invalid number \"{v}\""))?,
        )),
        MsType::Real => ColumnData::F32(Some(
            t.parse().map_err(|_| format!("invalid number \"{v}\""))?,
        )),
        MsType::Date => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map_err(|_| format!("invalid date \"{v}\""))?
            .into_sql(),
        MsType::DateTime | MsType::DateTime2 | MsType::DateTimeOffset => {
            let dt = parse_naive(t).ok_or_else(|| format!("invalid timestamp \"{v}\""))?;
            match ty {
                MsType::DateTime => datetime1(dt)?,
                MsType::DateTime2 => dt.into_sql(),
                // The reader wrote it in UTC.
                _ => dt.and_utc().fixed_offset().into_sql(),
            }
        }
        MsType::Text | MsType::Unsupported => ColumnData::String(Some(v.to_string().into())),
    })
}

fn parse_naive(t: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(NaiveTime::MIN))
    })
}

/// The legacy DATETIME: days since 1900-01-01 and 1/300 s ticks since midnight.
fn datetime1(dt: NaiveDateTime) -> Result<ColumnData<'static>, String> {
    let epoch = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
    let days = (dt.date() - epoch).num_days();
    if !(-53690..=2_958_463).contains(&days) {
        return Err(format!("{dt} is out of range for datetime"));
    }
    let nanos = (dt.time() - NaiveTime::MIN).num_nanoseconds().unwrap_or(0);
    let ticks = (nanos as i128 * 300 / 1_000_000_000) as u32;
    Ok(ColumnData::DateTime(Some(tiberius::time::DateTime::new(
        days as i32,
        ticks,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_sql_uses_delete_on_a_referenced_table() {
        let t = TableRef::new("metier", "o'brien");
        let q = referencing_tables_sql(&t);
        assert!(q.contains("OBJECT_ID(N'[metier].[o''brien]')"), "{q}");
        assert!(q.contains("fk.parent_object_id <> fk.referenced_object_id"));
        assert_eq!(empty_sql(&t, true), "DELETE FROM [metier].[o'brien];");
        assert_eq!(
            empty_sql(&TableRef::new("public", "t"), false),
            "TRUNCATE TABLE [dbo].[t];"
        );
    }

    #[test]
    fn identifiers_are_bracketed() {
        assert_eq!(quote_ident("citoyens"), "[citoyens]");
        assert_eq!(quote_ident("a]b"), "[a]]b]");
        assert_eq!(
            quoted_table(&TableRef::new("metier", "citoyens")),
            "[metier].[citoyens]"
        );
        assert_eq!(quoted_table(&TableRef::new("public", "t")), "[dbo].[t]");
    }

    #[test]
    fn history_and_lock_sql() {
        let ddl = history_ddl();
        assert!(ddl.starts_with("IF OBJECT_ID(N'dbo.mairie_dba_schema_history', N'U') IS NULL"));
        for col in [
            "installed_rank BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_mairie_dba_schema_history PRIMARY KEY",
            "version        BIGINT NULL",
            "kind           NVARCHAR(16) NOT NULL",
            "checksum       CHAR(64)",
            "success        BIT NOT NULL",
        ] {
            assert!(ddl.contains(col), "{col}");
        }
        assert!(
            !ddl.contains("UNIQUE"),
            "one NULL only: repeatable rows need several"
        );
        assert!(
            applock_sql(0).contains("@LockTimeout = 0")
                && applock_sql(0).contains("@LockOwner = 'Session'")
        );
        let rec = record_sql();
        assert!(rec.contains("WHERE version = @P1") && rec.contains("IF @@ROWCOUNT = 0"));
        assert_eq!(rec.matches("@P6").count(), 2);
        assert_eq!(rec.matches("@P7").count(), 2);
        assert!(rec.contains("INSERT INTO dbo.mairie_dba_schema_history (version, kind,"));
    }

    #[test]
    fn history_upgrade_and_repair_sql() {
        let up = upgrade_history_batches();
        assert_eq!(up.len(), 4);
        assert!(up[0].contains("DROP CONSTRAINT pk_mairie_dba_schema_history"));
        assert!(up[1].ends_with("ALTER COLUMN version BIGINT NULL;"));
        assert!(up[2].contains("ADD installed_rank BIGINT IDENTITY(1,1) NOT NULL"));
        assert!(up[2].contains("DEFAULT N'versioned'"));
        assert!(up[3].contains("PRIMARY KEY (installed_rank)"));
        assert!(
            history_shape_sql().contains("COL_LENGTH(N'dbo.mairie_dba_schema_history', N'kind')")
        );
        assert!(history_select(true).starts_with("SELECT installed_rank, kind, version,"));
        assert!(history_select(false).starts_with("SELECT version, CAST(N'versioned'"));
        let b = baseline_sql();
        assert!(b.contains("VALUES (@P1, N'baseline', @P2, N'<< baseline >>', '', 0, 1)"));
        assert_eq!(
            delete_row_sql(),
            "DELETE FROM dbo.mairie_dba_schema_history WHERE installed_rank = @P1;"
        );
        let r = realign_row_sql();
        assert!(r.contains("SET checksum = @P2, description = @P3, script = @P4"));
        assert!(r.ends_with("WHERE installed_rank = @P1;"));
        let a = no_transaction_advice();
        assert!(a.contains("schema repair") && a.contains(HISTORY_TABLE));
    }

    #[test]
    fn server_lines_become_file_lines() {
        assert_eq!(
            batch_line(
                10,
                "Incorrect syntax near 'TABL'. (error 102, severity 15, state 1, line 3)"
            ),
            12
        );
        assert_eq!(batch_line(4, "no line here"), 4);
    }

    #[test]
    fn text_rows_decode() {
        assert_eq!(
            decode_text_row(b"1\t\\N\ta\\tb\\\\c\tx\\ny"),
            vec![
                Some("1".into()),
                None,
                Some("a\tb\\c".into()),
                Some("x\ny".into())
            ]
        );
        assert_eq!(decode_text_row(b"\\\\N"), vec![Some("\\N".into())]);
    }

    #[test]
    fn values_are_typed_for_their_columns() {
        assert!(matches!(
            to_column_data(Some("42"), MsType::Int),
            Ok(ColumnData::I32(Some(42)))
        ));
        assert!(
            matches!(to_column_data(Some("300"), MsType::TinyInt), Err(e) if e.contains("out of range"))
        );
        assert!(matches!(
            to_column_data(None, MsType::BigInt),
            Ok(ColumnData::I64(None))
        ));
        assert!(matches!(
            to_column_data(Some("1"), MsType::Bit),
            Ok(ColumnData::Bit(Some(true)))
        ));
        match to_column_data(Some("1234.5"), MsType::Decimal { scale: 2 }) {
            Ok(ColumnData::Numeric(Some(n))) => {
                assert_eq!((n.value(), n.scale()), (123450, 2));
            }
            other => panic!("{other:?}"),
        }
        match to_column_data(Some("0.125"), MsType::Decimal { scale: 2 }) {
            Ok(ColumnData::Numeric(Some(n))) => assert_eq!(n.value(), 12),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(to_column_data(Some("2026-02-30"), MsType::Date), Err(e) if e.contains("invalid date"))
        );
        assert!(matches!(
            to_column_data(Some("2026-02-28"), MsType::Date),
            Ok(ColumnData::Date(Some(_)))
        ));
        assert!(matches!(
            to_column_data(Some("2026-12-03 09:30:00"), MsType::DateTimeOffset),
            Ok(ColumnData::DateTimeOffset(Some(_)))
        ));
        assert!(matches!(
            to_column_data(Some("2026-12-03 09:30"), MsType::DateTime2),
            Ok(ColumnData::DateTime2(Some(_)))
        ));
        match to_column_data(Some("1900-01-02 12:00:00"), MsType::DateTime) {
            Ok(ColumnData::DateTime(Some(d))) => {
                assert_eq!((d.days(), d.seconds_fragments()), (1, 300 * 43200))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(to_column_data(Some("Hélène"), MsType::Text), Ok(ColumnData::String(Some(s))) if s == "Hélène")
        );
    }

    #[test]
    fn catalog_types() {
        assert_eq!(MsType::from_catalog("nvarchar", None), MsType::Text);
        assert_eq!(
            MsType::from_catalog("decimal", Some(2)),
            MsType::Decimal { scale: 2 }
        );
        assert_eq!(
            MsType::from_catalog("datetimeoffset", Some(0)).kind(),
            ColumnKind::Timestamp
        );
        assert_eq!(MsType::from_catalog("geography", None), MsType::Unsupported);
    }
}
