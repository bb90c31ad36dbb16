//! MySQL and MariaDB, through mysql_async: connecting, the schema history, and loads.
//!
//! Quirks handled here and only here:
//! - No schemas inside a database: the mairie model's `metier.citoyens` is the table
//!   `metier_citoyens` of the target's database (see `sql/mysql/V001__referentiel.sql`). A
//!   `schema.table` that has no such prefixed table means database `schema`, table `table`,
//!   as a MySQL DBA would read it.
//! - DDL commits implicitly: a migration that fails halfway cannot be rolled back, so it is
//!   recorded as failed and blocks later runs until a person has looked.
//! - `LOAD DATA LOCAL` behaves as if IGNORE were given: bad values, truncations and duplicate
//!   keys become warnings and the rows are stored anyway (as `0000-00-00`, cut text, or not
//!   at all). Every load therefore checks the warnings and the row count and rolls back on
//!   the first sign of trouble, reporting the file line of the row the server complained of.
//! - TRUNCATE commits implicitly too: `--truncate` deletes the rows inside the transaction.
//! - The session is strict (`STRICT_ALL_TABLES`, no zero dates) and `utf8mb4`.

pub mod backup;
pub mod dump_filter;
pub mod privacy;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};
use tokio::sync::{mpsc, Mutex as AsyncMutex};

use crate::catalog::{AppliedMigration, Column, ColumnKind, HistoryKind, Migration, TableRef};
use crate::config::{EngineKind, SslMode, Target};
use crate::engine::script::split_mysql;
use crate::engine::{
    Canceller, Capabilities, DbError, Driver, LoadRequest, Session, ValueStyle, Visibility,
};
use crate::load::{LineMap, LoadError};

pub(crate) const HISTORY_TABLE: &str = "mairie_dba_schema_history";
const SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

pub struct MyConn {
    conn: AsyncMutex<Conn>,
    target: String,
    database: String,
    mariadb: bool,
    statement_timeout: Duration,
    /// How this session was opened and its thread id: what `KILL QUERY` needs
    /// ([`MyConn::canceller`]).
    opts: mysql_async::Opts,
    id: u32,
}

pub async fn connect(target: &Target) -> Result<MyConn> {
    connect_session(target, Session::Work).await
}

/// A session for inspection queries: `lock_wait_timeout` and `innodb_lock_wait_timeout`
/// set, so that none queues behind a lock.
pub async fn connect_probe(target: &Target) -> Result<MyConn> {
    connect_session(target, Session::Probe).await
}

async fn connect_session(target: &Target, session: Session) -> Result<MyConn> {
    let c = &target.connection;
    let mut init = vec![
        "SET NAMES utf8mb4".to_string(),
        format!("SET SESSION sql_mode = '{SQL_MODE}'"),
        "SET SESSION time_zone = '+00:00'".to_string(),
    ];
    if session == Session::Probe {
        let secs = c.lock_timeout.as_secs().max(1);
        init.push(format!("SET SESSION lock_wait_timeout = {secs}"));
        init.push(format!("SET SESSION innodb_lock_wait_timeout = {secs}"));
    }
    let password = target.password()?;
    let where_ = format!(
        "connecting to target `{}` (mysql {}@{}:{}/{})",
        target.name, c.user, c.host, c.port, c.database
    );
    let opts = |tls: bool| {
        let mut o = OptsBuilder::default()
            .ip_or_hostname(c.host.clone())
            .tcp_port(c.port)
            .user(Some(c.user.clone()))
            .pass(password.as_ref().map(|p| p.expose().to_string()))
            .db_name(Some(c.database.clone()))
            .prefer_socket(false)
            .init(init.clone());
        if tls {
            // Like libpq's `require`: encrypted, certificate not verified.
            o = o.ssl_opts(Some(
                SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ));
        }
        o
    };
    let attempt = |tls: bool| async move {
        tokio::time::timeout(c.connect_timeout, Conn::new(opts(tls)))
            .await
            .map_err(|_| anyhow!("timed out after {} s", c.connect_timeout.as_secs()))?
            .map_err(my_err)
    };
    let conn = match c.sslmode {
        SslMode::Disable => attempt(false).await,
        SslMode::Require => attempt(true).await,
        // Try TLS, fall back to a plain connection when the server does not offer it.
        SslMode::Prefer => match attempt(true).await {
            Ok(conn) => Ok(conn),
            Err(e) if no_tls_offered(&e) => attempt(false).await,
            Err(e) => Err(e),
        },
    }
    .with_context(|| where_.clone())?;
    let mut conn = conn;
    let opts = conn.opts().clone();
    let id = conn.id();
    let version: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(my_err)?;
    let mariadb = version
        .unwrap_or_default()
        .to_ascii_lowercase()
        .contains("mariadb");
    Ok(MyConn {
        conn: AsyncMutex::new(conn),
        target: target.name.clone(),
        database: c.database.clone(),
        mariadb,
        statement_timeout: c.statement_timeout,
        opts,
        id,
    })
}

/// Stops the statement thread `id` is running, from a new connection made with `opts`.
pub(crate) async fn kill_query(opts: &mysql_async::Opts, id: u32, timeout: Duration) -> Result<()> {
    let work = async {
        let mut c = Conn::new(opts.clone()).await.map_err(my_err)?;
        c.query_drop(format!("KILL QUERY {id}"))
            .await
            .map_err(my_err)?;
        c.disconnect().await.map_err(my_err)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("timed out after {} s", timeout.as_secs()))?
}

/// `ERROR 1045 (28000): Access denied for user …`, as the mysql client prints it.
pub fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        other => crate::engine::error_chain(other),
    }
}

/// Whether a TLS connection failed for want of TLS on the server (it does not offer it, or
/// the handshake failed), when `prefer` goes on in clear text; judged on the driver's error.
fn no_tls_offered(e: &anyhow::Error) -> bool {
    use mysql_async::{DriverError, Error, IoError};
    let driver = DbError::find(e).and_then(|d| d.driver().downcast_ref::<Error>());
    matches!(
        driver,
        Some(Error::Driver(DriverError::NoClientSslFlagFromServer) | Error::Io(IoError::Tls(_)))
    )
}

/// A driver error as the mysql client would print it ([`describe`]), typed ([`DbError`]).
pub fn my_err(e: mysql_async::Error) -> anyhow::Error {
    let server = match &e {
        mysql_async::Error::Server(s) => Some((s.state.clone(), u32::from(s.code))),
        _ => None,
    };
    let mut err = DbError::new(EngineKind::Mysql, describe(&e), e);
    if let Some((state, code)) = server {
        err = err.with_sqlstate(state).with_number(code);
    }
    err.into()
}

/// Backtick quoting, inner backticks doubled.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// A string literal for the few places MySQL takes no parameter (LOAD DATA options).
fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The model's name of a table of the current database: `metier_rendez_vous` is
/// `metier.rendez_vous`, a name without `_` is `public.name`.
pub(crate) fn logical_name(table: &str) -> TableRef {
    match table.split_once('_') {
        Some((schema, name)) if !schema.is_empty() && !name.is_empty() => {
            TableRef::new(schema, name)
        }
        _ => TableRef::new("public", table),
    }
}

fn text_params(params: &[Option<String>]) -> mysql_async::Params {
    mysql_async::Params::Positional(
        params
            .iter()
            .map(|p| match p {
                Some(s) => mysql_async::Value::Bytes(s.as_bytes().to_vec()),
                None => mysql_async::Value::NULL,
            })
            .collect(),
    )
}

/// A result cell as text (the statements of `erase` cast their columns to CHAR; numbers
/// and dates are written as the server would).
fn value_text(v: mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::Date(y, mo, d, h, mi, s, us) => Some(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        Value::Time(neg, d, h, mi, s, us) => Some(format!(
            "{}{}:{mi:02}:{s:02}.{us:06}",
            if neg { "-" } else { "" },
            d * 24 + u32::from(h)
        )),
    }
}

/// Where a `schema.table` lives: (database, table).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Physical {
    database: String,
    table: String,
}

impl Physical {
    fn quoted(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.database),
            quote_ident(&self.table)
        )
    }
}

impl MyConn {
    /// Whether the server is MariaDB (rather than MySQL).
    pub(crate) fn is_mariadb(&self) -> bool {
        self.mariadb
    }

    /// Cancels, from a new connection, whatever statement this session is running.
    pub(crate) fn canceller(&self) -> Canceller {
        Canceller::Mysql {
            opts: self.opts.clone(),
            id: self.id,
        }
    }

    pub(crate) async fn conn(&self) -> tokio::sync::MutexGuard<'_, Conn> {
        self.conn.lock().await
    }

    /// Bounds an inspection query by the configured statement timeout.
    async fn inspect<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        crate::engine::bounded(self.statement_timeout, f).await
    }

    async fn resolve(&self, t: &TableRef) -> Result<Physical> {
        let prefixed = t.prefixed();
        let mut c = self.conn.lock().await;
        let found: Option<String> = c
            .exec_first(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
                (prefixed.clone(),),
            )
            .await
            .map_err(my_err)?;
        if found.is_some() {
            return Ok(Physical {
                database: self.database.clone(),
                table: prefixed,
            });
        }
        if t.schema == "public" {
            return Ok(Physical {
                database: self.database.clone(),
                table: t.name.clone(),
            });
        }
        Ok(Physical {
            database: t.schema.clone(),
            table: t.name.clone(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Schema history

    fn lock_name(&self) -> String {
        format!("mairie-dba schema {}", self.database)
    }

    /// Records a migration: a versioned one has one row, updated when it is retried; a
    /// repeatable one (no version, which no unique key holds) gets a row each time it runs.
    async fn record(&self, m: &Migration, elapsed: Duration, success: bool) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.exec_drop(
            format!(
                "INSERT INTO {HISTORY_TABLE} (version, kind, description, script, checksum, applied_at, execution_ms, applied_by, success)
                 VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6), ?, CURRENT_USER(), ?)
                 ON DUPLICATE KEY UPDATE kind = VALUES(kind), description = VALUES(description), script = VALUES(script),
                   checksum = VALUES(checksum), applied_at = VALUES(applied_at),
                   execution_ms = VALUES(execution_ms), applied_by = VALUES(applied_by), success = VALUES(success)"
            ),
            (
                m.version,
                m.kind().as_str(),
                m.description.clone(),
                m.script.clone(),
                m.checksum.clone(),
                elapsed.as_millis() as i64,
                success,
            ),
        )
        .await
        .map_err(my_err)
        .with_context(|| format!("recording {} in {HISTORY_TABLE}", m.script))
    }

    /// Whether the history table exists, and whether it has the second shape
    /// (`installed_rank`, `kind`, a nullable `version`).
    async fn history_shape(&self) -> Result<(bool, bool)> {
        let mut c = self.conn.lock().await;
        let (tables, kind): (i64, i64) = c
            .exec_first(
                "SELECT (SELECT COUNT(*) FROM information_schema.tables
                         WHERE table_schema = DATABASE() AND table_name = ?),
                        (SELECT COUNT(*) FROM information_schema.columns
                         WHERE table_schema = DATABASE() AND table_name = ? AND column_name = 'kind')",
                (HISTORY_TABLE, HISTORY_TABLE),
            )
            .await
            .map_err(my_err)?
            .unwrap_or((0, 0));
        Ok((tables > 0, kind > 0))
    }

    // -----------------------------------------------------------------------------------------
    // Loads

    pub fn mariadb(&self) -> bool {
        self.mariadb
    }
}

impl Driver for MyConn {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: EngineKind::Mysql,
            transactional_ddl: false,
            values: ValueStyle::Utc,
        }
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn server_version(&self) -> Result<String> {
        let mut c = self.conn.lock().await;
        let v: Option<String> = c.query_first("SELECT VERSION()").await.map_err(my_err)?;
        Ok(v.unwrap_or_default())
    }

    /// Without the `PROCESS` privilege (or `SUPER`), the process list and
    /// `information_schema.PROCESSLIST` show only the user's own threads.
    async fn activity_visibility(&self) -> Result<Visibility> {
        let mut c = self.conn.lock().await;
        let (n, user): (i64, String) = c
            .query_first(
                r#"SELECT (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES
                           WHERE PRIVILEGE_TYPE IN ('PROCESS', 'SUPER')
                             AND GRANTEE = CONCAT('''', REPLACE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''', ''''''),
                                                  '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')),
                          CURRENT_USER()"#,
            )
            .await
            .map_err(my_err)?
            .unwrap_or((0, String::new()));
        Ok(if n > 0 {
            Visibility::All
        } else {
            Visibility::OwnOnly {
                missing: format!(
                    "user {user} lacks the PROCESS privilege: GRANT PROCESS ON *.* TO {user}"
                ),
            }
        })
    }

    async fn lock_schema(&self) -> Result<bool> {
        let mut c = self.conn.lock().await;
        let got: Option<i64> = c
            .exec_first("SELECT GET_LOCK(?, 0)", (self.lock_name(),))
            .await
            .map_err(my_err)?;
        if got == Some(1) {
            return Ok(false);
        }
        // A day is "forever" for a migration; GET_LOCK's negative timeouts differ by server.
        let got: Option<i64> = c
            .exec_first("SELECT GET_LOCK(?, 86400)", (self.lock_name(),))
            .await
            .map_err(my_err)?;
        if got != Some(1) {
            bail!("could not take the schema lock `{}`", self.lock_name());
        }
        Ok(true)
    }

    async fn unlock_schema(&self) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.exec_drop("SELECT RELEASE_LOCK(?)", (self.lock_name(),))
            .await
            .map_err(my_err)
    }

    /// Creates the history table, or brings one of the first shape to the second in one
    /// ALTER TABLE (atomic on InnoDB): existing rows keep their values and become
    /// `versioned` rows ranked by version.
    async fn ensure_history(&self) -> Result<()> {
        let (exists, upgraded) = self.history_shape().await?;
        let sql = match (exists, upgraded) {
            (false, _) => history_ddl(),
            (true, false) => upgrade_history_sql(),
            (true, true) => return Ok(()),
        };
        let mut c = self.conn.lock().await;
        c.query_drop(sql).await.map_err(my_err).with_context(|| {
            format!("creating or upgrading the schema history table {HISTORY_TABLE}")
        })
    }

    async fn history(&self) -> Result<Vec<AppliedMigration>> {
        let (exists, upgraded) = self.history_shape().await?;
        if !exists {
            return Ok(Vec::new());
        }
        let (rank, kind) = if upgraded {
            ("installed_rank", "kind")
        } else {
            ("version", "'versioned'")
        };
        let mut c = self.conn.lock().await;
        type Row = (
            i64,
            String,
            Option<i64>,
            String,
            String,
            String,
            String,
            i64,
            String,
            bool,
        );
        let rows: Vec<Row> = c
            .query(format!(
                "SELECT {rank}, {kind}, version, description, script, checksum,
                        DATE_FORMAT(applied_at, '%Y-%m-%dT%H:%i:%s.%fZ'), execution_ms, applied_by, success
                 FROM {HISTORY_TABLE} ORDER BY 1"
            ))
            .await
            .map_err(my_err)?;
        rows.into_iter()
            .map(
                |(
                    rank,
                    kind,
                    version,
                    description,
                    script,
                    checksum,
                    at,
                    execution_ms,
                    applied_by,
                    success,
                )| {
                    let applied_at = chrono::DateTime::parse_from_rfc3339(&at)
                        .map(|d| d.with_timezone(&chrono::Utc))
                        .map_err(|e| anyhow!("{HISTORY_TABLE}: bad applied_at `{at}`: {e}"))?;
                    Ok(AppliedMigration {
                        rank,
                        kind: HistoryKind::parse(&kind),
                        version,
                        description,
                        script,
                        checksum,
                        applied_at,
                        execution_ms,
                        applied_by,
                        success,
                    })
                },
            )
            .collect()
    }

    /// Runs a migration statement by statement (MySQL commits DDL as it goes) and records
    /// the outcome. A failure leaves whatever ran before it in place: it is recorded as
    /// failed, and blocks later runs until `schema repair`. A `no-transaction` file runs the
    /// same way: here nothing runs in a transaction anyway.
    async fn apply_migration(&mut self, m: &Migration) -> Result<Duration> {
        let start = Instant::now();
        let pieces = split_mysql(&m.sql);
        let mut failure = None;
        {
            let mut c = self.conn.lock().await;
            for (i, p) in pieces.iter().enumerate() {
                if let Err(e) = c.query_drop(p.sql.as_str()).await {
                    failure = Some(format!(
                        "{}:{}: {} (statement {} of {}; {} before it were committed: MySQL does not roll back DDL; \
                         undo them by hand, then run `mairie-dba schema repair`, which removes the failed row from {HISTORY_TABLE})",
                        m.path.display(),
                        p.line + error_line(&e).unwrap_or(1) - 1,
                        describe(&e),
                        i + 1,
                        pieces.len(),
                        i
                    ));
                    break;
                }
            }
        }
        let elapsed = start.elapsed();
        self.record(m, elapsed, failure.is_none()).await?;
        match failure {
            Some(msg) => bail!(msg),
            None => Ok(elapsed),
        }
    }

    async fn record_baseline(&self, version: i64, description: &str) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.exec_drop(
            format!(
                "INSERT INTO {HISTORY_TABLE} (version, kind, description, script, checksum, applied_at, execution_ms, applied_by, success)
                 VALUES (?, 'baseline', ?, '<< baseline >>', '', UTC_TIMESTAMP(6), 0, CURRENT_USER(), TRUE)"
            ),
            (version, description),
        )
        .await
        .map_err(my_err)
        .with_context(|| format!("recording the baseline in {HISTORY_TABLE}"))
    }

    async fn delete_history_row(&self, rank: i64) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.exec_drop(
            format!("DELETE FROM {HISTORY_TABLE} WHERE installed_rank = ?"),
            (rank,),
        )
        .await
        .map_err(my_err)
        .with_context(|| format!("deleting row {rank} of {HISTORY_TABLE}"))
    }

    async fn realign_history_row(&self, rank: i64, m: &Migration) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.exec_drop(
            format!(
                "UPDATE {HISTORY_TABLE} SET checksum = ?, description = ?, script = ? WHERE installed_rank = ?"
            ),
            (m.checksum.clone(), m.description.clone(), m.script.clone(), rank),
        )
        .await
        .map_err(my_err)
        .with_context(|| format!("realigning row {rank} of {HISTORY_TABLE}"))
    }

    async fn privacy_columns(&self) -> Result<Vec<crate::privacy::plan::PrivacyColumn>> {
        privacy::columns(self).await
    }

    async fn sample_column(
        &self,
        table: &TableRef,
        column: &str,
        key: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Option<String>, Option<String>)>> {
        privacy::sample(self, table, column, key, limit).await
    }

    async fn values_by_key(
        &self,
        table: &TableRef,
        column: &str,
        key: &str,
        keys: &[String],
    ) -> Result<Vec<(String, Option<String>)>> {
        privacy::values_by_key(self, table, column, key, keys).await
    }

    async fn mark_pseudonymized(
        &self,
        marker: &crate::privacy::plan::Marker,
        tables: &[TableRef],
    ) -> Result<()> {
        privacy::mark(self, marker, tables).await
    }

    async fn columns(&self, table: &TableRef) -> Result<Vec<Column>> {
        let phys = self.resolve(table).await?;
        let rows: Vec<(String, String, String, String, Option<String>, String)> = self
            .inspect(async {
                let mut c = self.conn.lock().await;
                c.exec(
                    "SELECT column_name, column_type, data_type, is_nullable, column_default, extra
                     FROM information_schema.columns WHERE table_schema = ? AND table_name = ?
                     ORDER BY ordinal_position",
                    (phys.database.clone(), phys.table.clone()),
                )
                .await
                .map_err(my_err)
            })
            .await?;
        if rows.is_empty() {
            bail!(
                "table {table} does not exist (looked for {} and {}.{}; target `{}`)",
                format_args!("{}.{}_{}", self.database, table.schema, table.name),
                table.schema,
                table.name,
                self.target
            );
        }
        Ok(rows
            .into_iter()
            .map(
                |(name, column_type, data_type, nullable, default, extra)| Column {
                    kind: column_kind(&data_type, &column_type),
                    sql_type: column_type,
                    nullable: nullable == "YES",
                    has_default: default.is_some()
                        || extra.to_ascii_lowercase().contains("auto_increment"),
                    name,
                },
            )
            .collect())
    }

    async fn foreign_keys(&self, tables: &[TableRef]) -> Result<Vec<(TableRef, TableRef)>> {
        let mut physical = Vec::with_capacity(tables.len());
        for t in tables {
            physical.push((t.clone(), self.resolve(t).await?));
        }
        let rows: Vec<(String, String, String, String)> = {
            let mut c = self.conn.lock().await;
            c.query(
                "SELECT constraint_schema, table_name, unique_constraint_schema, referenced_table_name
                 FROM information_schema.referential_constraints",
            )
            .await
            .map_err(my_err)?
        };
        let find = |db: &str, name: &str| {
            physical
                .iter()
                .find(|(_, p)| p.database == db && p.table == name)
                .map(|(t, _)| t.clone())
        };
        Ok(rows
            .iter()
            .filter_map(|(cdb, ct, pdb, pt)| Some((find(cdb, ct)?, find(pdb, pt)?)))
            .filter(|(c, p)| c != p)
            .collect())
    }

    /// Tables of the current database only; `metier_citoyens` is named `metier.citoyens`
    /// (the first `_` separates the model's schema), a name without `_` `public.name`.
    async fn relations(&self) -> Result<crate::engine::Relations> {
        use crate::engine::{RelColumn, RelForeignKey, RelTable, Relations};
        type ColRow = (
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
        );
        let mut c = self.conn.lock().await;
        let cols: Vec<ColRow> = c
            .query(
                "SELECT c.table_name, c.column_name, c.column_type, c.is_nullable, c.data_type,
                        c.column_default, c.extra
                 FROM information_schema.columns c
                 JOIN information_schema.tables t
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                 WHERE c.table_schema = DATABASE() AND t.table_type = 'BASE TABLE'
                 ORDER BY c.table_name, c.ordinal_position",
            )
            .await
            .map_err(my_err)?;
        type KeyRow = (String, String, String, Option<String>, Option<String>);
        let keys: Vec<KeyRow> = c
            .query(
                "SELECT k.constraint_name, k.table_name, k.column_name,
                        k.referenced_table_name, k.referenced_column_name
                 FROM information_schema.key_column_usage k
                 WHERE k.table_schema = DATABASE()
                   AND (k.constraint_name = 'PRIMARY'
                        OR (k.referenced_table_name IS NOT NULL AND k.referenced_table_schema = DATABASE()))
                 ORDER BY k.table_name, k.constraint_name, k.ordinal_position",
            )
            .await
            .map_err(my_err)?;
        drop(c);
        let mut rel = Relations::default();
        for (table, column, ctype, nullable, dtype, default, extra) in cols {
            if rel.tables.last().map(|t| t.quoted.as_str()) != Some(quote_ident(&table).as_str()) {
                rel.tables.push(RelTable {
                    table: logical_name(&table),
                    quoted: quote_ident(&table),
                    columns: Vec::new(),
                    primary_key: Vec::new(),
                });
            }
            let dtype = dtype.to_ascii_lowercase();
            let extra = extra.to_ascii_lowercase();
            rel.tables
                .last_mut()
                .expect("pushed above")
                .columns
                .push(RelColumn {
                    name: column,
                    sql_type: ctype,
                    nullable: nullable == "YES",
                    text: matches!(
                        dtype.as_str(),
                        "char" | "varchar" | "text" | "tinytext" | "mediumtext" | "longtext"
                    ),
                    temporal: matches!(dtype.as_str(), "date" | "datetime" | "timestamp"),
                    has_default: default.is_some()
                        || extra.contains("auto_increment")
                        || extra.contains("generated"),
                });
        }
        for (name, table, column, parent, parent_column) in keys {
            let child = logical_name(&table);
            match (parent, parent_column) {
                (None, _) | (_, None) => {
                    if let Some(t) = rel.tables.iter_mut().find(|t| t.table == child) {
                        t.primary_key.push(column);
                    }
                }
                (Some(p), Some(pc)) => {
                    let parent = logical_name(&p);
                    match rel
                        .foreign_keys
                        .iter_mut()
                        .find(|f| f.name == name && f.child == child)
                    {
                        Some(f) => {
                            f.columns.push(column);
                            f.parent_columns.push(pc);
                        }
                        None => rel.foreign_keys.push(RelForeignKey {
                            name,
                            child,
                            columns: vec![column],
                            parent,
                            parent_columns: vec![pc],
                        }),
                    }
                }
            }
        }
        Ok(rel)
    }

    async fn query_text(
        &self,
        sql: &str,
        params: &[Option<String>],
    ) -> Result<crate::engine::TextRows> {
        let mut c = self.conn.lock().await;
        let rows: Vec<mysql_async::Row> = if params.is_empty() {
            c.query(sql).await.map_err(my_err)?
        } else {
            c.exec(sql, text_params(params)).await.map_err(my_err)?
        };
        Ok(rows
            .into_iter()
            .map(|r| r.unwrap().into_iter().map(value_text).collect())
            .collect())
    }

    async fn execute_text(&self, sql: &str, params: &[Option<String>]) -> Result<u64> {
        let mut c = self.conn.lock().await;
        if params.is_empty() {
            c.query_drop(sql).await.map_err(my_err)?;
        } else {
            c.exec_drop(sql, text_params(params))
                .await
                .map_err(my_err)?;
        }
        Ok(c.affected_rows())
    }

    async fn begin(&self) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.query_drop("START TRANSACTION").await.map_err(my_err)
    }

    async fn commit(&self) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.query_drop("COMMIT")
            .await
            .map_err(my_err)
            .context("committing")
    }

    async fn rollback(&self) {
        let mut c = self.conn.lock().await;
        let _ = c.query_drop("ROLLBACK").await;
    }

    /// TRUNCATE would commit the transaction: the rows are deleted instead, children first.
    async fn savepoint(&self, name: &str) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.query_drop(format!("SAVEPOINT {}", quote_ident(name)))
            .await
            .map_err(my_err)
    }

    async fn rollback_to_savepoint(&self, name: &str) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.query_drop(format!("ROLLBACK TO SAVEPOINT {}", quote_ident(name)))
            .await
            .map_err(my_err)
    }

    async fn release_savepoint(&self, name: &str) -> Result<()> {
        let mut c = self.conn.lock().await;
        c.query_drop(format!("RELEASE SAVEPOINT {}", quote_ident(name)))
            .await
            .map_err(my_err)
    }

    async fn truncate(&self, tables: &[TableRef]) -> Result<Vec<String>> {
        let mut physical = Vec::with_capacity(tables.len());
        for t in tables {
            physical.push(self.resolve(t).await?);
        }
        let mut notes = Vec::new();
        for (t, phys) in tables.iter().zip(&physical) {
            let children: Vec<(String, String)> = {
                let mut c = self.conn.lock().await;
                c.exec(
                    "SELECT DISTINCT constraint_schema, table_name
                     FROM information_schema.referential_constraints
                     WHERE unique_constraint_schema = ? AND referenced_table_name = ?
                       AND NOT (constraint_schema = unique_constraint_schema
                                AND table_name = referenced_table_name)
                     ORDER BY 1, 2",
                    (phys.database.clone(), phys.table.clone()),
                )
                .await
                .map_err(my_err)?
            };
            let outside: Vec<String> = children
                .into_iter()
                .filter(|(db, name)| {
                    !physical
                        .iter()
                        .any(|p| p.database == *db && p.table == *name)
                })
                .map(|(db, name)| {
                    if db == self.database {
                        name
                    } else {
                        format!("{db}.{name}")
                    }
                })
                .collect();
            if !outside.is_empty() {
                notes.push(crate::engine::delete_note(
                    t,
                    &outside,
                    "MySQL refuses TRUNCATE on a referenced table (and TRUNCATE commits at \
                     once, so the load could not be undone)",
                ));
            }
        }
        for (t, phys) in tables.iter().zip(&physical).rev() {
            let mut c = self.conn.lock().await;
            c.query_drop(format!("DELETE FROM {}", phys.quoted()))
                .await
                .map_err(my_err)
                .with_context(|| format!("emptying {t} (--truncate)"))?;
        }
        Ok(notes)
    }

    /// `LOAD DATA LOCAL INFILE` fed from the reader's chunks. Inside a transaction begun with
    /// [`MyConn::begin`]; returns the rows stored.
    async fn bulk_load(
        &self,
        req: &LoadRequest<'_>,
        chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
        lines: Arc<LineMap>,
    ) -> Result<u64> {
        let phys = self.resolve(req.table).await?;
        let parse_error: Arc<Mutex<Option<LoadError>>> = Arc::default();
        let slot = Arc::clone(&parse_error);
        let cols = req
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "LOAD DATA LOCAL INFILE {} INTO TABLE {} CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({cols})",
            quote_str(req.file_label),
            phys.quoted()
        );
        let mut c = self.conn.lock().await;
        // mysql_async wants a Sync future: the (Send-only) stream is built when it is polled.
        c.set_infile_handler(async move { Ok(infile_stream(chunks, slot)) });
        let res = c.query_drop(sql).await;
        if let Some(e) = parse_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e.into());
        }
        if let Err(e) = res {
            if let mysql_async::Error::Server(s) = &e {
                if s.code == 1148 || s.code == 3948 || s.code == 2068 {
                    bail!(
                        "{}: {} (enable local_infile on the server: SET GLOBAL local_infile = 1)",
                        req.file_label,
                        describe(&e)
                    );
                }
            }
            bail!("{}: {}", req.file_label, describe(&e));
        }
        let stored = c.affected_rows();
        let warnings = c.get_warnings();
        if warnings > 0 {
            let first: Vec<(String, u32, String)> =
                c.query("SHOW WARNINGS LIMIT 3").await.map_err(my_err)?;
            let (level, code, message) = first
                .into_iter()
                .next()
                .unwrap_or_else(|| ("Warning".into(), 0, format!("{warnings} warnings")));
            return Err(warning_error(req, &lines, &level, code, &message, warnings));
        }
        Ok(stored)
    }
}

/// The reader's chunks as the byte stream LOAD DATA LOCAL sends. A reader error is kept in
/// `slot`, to be reported with its line and column, and ends the stream early but cleanly:
/// failing the stream would make the driver drop the connection, while the rows sent so far
/// only live in the transaction that the caller then rolls back.
fn infile_stream(
    chunks: mpsc::Receiver<Result<Bytes, LoadError>>,
    slot: Arc<Mutex<Option<LoadError>>>,
) -> mysql_async::InfileData {
    futures_util::stream::unfold((chunks, slot), |(mut rx, slot)| async move {
        match rx.recv().await {
            Some(Ok(b)) => Some((Ok(b), (rx, slot))),
            Some(Err(e)) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
            None => None,
        }
    })
    .boxed()
}

/// A LOAD DATA warning, located in the file: "… at row 3" is the third data row.
fn warning_error(
    req: &LoadRequest<'_>,
    lines: &LineMap,
    level: &str,
    code: u32,
    message: &str,
    count: u16,
) -> anyhow::Error {
    let row = message
        .rsplit_once(" at row ")
        .and_then(|(_, n)| n.trim().parse::<u64>().ok());
    // "… for column `db`.`table`.`col` at row 3" (MariaDB) or "… for column 'col' at row 3".
    let column = message.split("for column ").nth(1).map(|rest| {
        let spec = rest.split(" at row ").next().unwrap_or(rest);
        spec.rsplit('.')
            .next()
            .unwrap_or(spec)
            .trim_matches(['`', '\''])
            .to_string()
    });
    let mut msg = req.file_label.to_string();
    if let Some(r) = row {
        msg.push_str(&format!(":{}", lines.physical_line(r)));
    }
    msg.push_str(": ");
    let mut reason = String::new();
    if let Some(c) = column.filter(|c| !c.is_empty()) {
        reason.push_str(&format!("column {c}: "));
    }
    let strip = message
        .rsplit_once(" at row ")
        .map(|(m, _)| m)
        .unwrap_or(message);
    // The database name in "`db`.`table`.`col`" says nothing the user does not know.
    let strip = strip
        .split("for column ")
        .next()
        .unwrap_or(strip)
        .trim_end();
    reason.push_str(&format!("{strip} ({level} {code})"));
    msg.push_str(&reason);
    msg.truncate(msg.len() - 1);
    msg.push_str(
        "; the server would have stored the row altered or skipped it, so nothing was committed",
    );
    if count > 1 {
        msg.push_str(&format!("; {count} warnings in all"));
    }
    msg.push(')');
    // LOAD DATA turns every refused value or key into a warning: each is the data's fault.
    anyhow::Error::new(crate::load::Refused {
        row,
        reason,
        message: msg,
    })
}

/// The history table as it is created today.
fn history_ddl() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
            installed_rank BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            version        BIGINT NULL,
            kind           VARCHAR(16) NOT NULL DEFAULT 'versioned',
            description    VARCHAR(255) NOT NULL,
            script         VARCHAR(255) NOT NULL,
            checksum       CHAR(64) NOT NULL,
            applied_at     DATETIME(6) NOT NULL,
            execution_ms   BIGINT NOT NULL,
            applied_by     VARCHAR(255) NOT NULL,
            success        BOOLEAN NOT NULL,
            UNIQUE KEY uq_mairie_dba_schema_history_version (version)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='Migrations applied by mairie-dba schema apply'"
    )
}

/// Brings a history table of the first shape (primary key `version`) to the second in one
/// statement: the rows are copied in key order, so `installed_rank` follows the versions.
fn upgrade_history_sql() -> String {
    format!(
        "ALTER TABLE {HISTORY_TABLE}
            DROP PRIMARY KEY,
            MODIFY version BIGINT NULL,
            ADD COLUMN installed_rank BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY FIRST,
            ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'versioned' AFTER version,
            ADD UNIQUE KEY uq_mairie_dba_schema_history_version (version)"
    )
}

/// The line a MySQL error gives inside its statement ("… near 'x' at line 2").
fn error_line(e: &mysql_async::Error) -> Option<usize> {
    let mysql_async::Error::Server(s) = e else {
        return None;
    };
    let (_, rest) = s.message.rsplit_once(" at line ")?;
    rest.trim().parse().ok().filter(|&n| n > 0)
}

fn column_kind(data_type: &str, column_type: &str) -> ColumnKind {
    let ct = column_type.to_ascii_lowercase();
    match data_type.to_ascii_lowercase().as_str() {
        "date" => ColumnKind::Date,
        "datetime" | "timestamp" => ColumnKind::Timestamp,
        "tinyint" if ct.starts_with("tinyint(1)") => ColumnKind::Boolean,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            ColumnKind::Integer
        }
        "decimal" | "numeric" | "float" | "double" | "real" => ColumnKind::Decimal,
        _ => ColumnKind::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_strings_are_quoted() {
        assert_eq!(quote_ident("metier_citoyens"), "`metier_citoyens`");
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_str("it's C:\\x"), "'it''s C:\\\\x'");
    }

    #[test]
    fn history_shapes() {
        assert!(history_ddl().contains("installed_rank BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"));
        let up = upgrade_history_sql();
        assert!(up.contains("DROP PRIMARY KEY") && up.contains("MODIFY version BIGINT NULL"));
        assert!(up.contains("ADD UNIQUE KEY uq_mairie_dba_schema_history_version (version)"));
    }

    #[test]
    fn kinds_from_information_schema() {
        assert_eq!(column_kind("tinyint", "tinyint(1)"), ColumnKind::Boolean);
        assert_eq!(column_kind("tinyint", "tinyint(4)"), ColumnKind::Integer);
        assert_eq!(
            column_kind("datetime", "datetime(6)"),
            ColumnKind::Timestamp
        );
        assert_eq!(column_kind("decimal", "decimal(10,2)"), ColumnKind::Decimal);
        assert_eq!(column_kind("varchar", "varchar(64)"), ColumnKind::Text);
    }

    #[test]
    fn warnings_point_at_the_file_line_and_column() {
        let table = TableRef::new("metier", "citoyens");
        let req = LoadRequest {
            table: &table,
            columns: vec![],
            file_label: "c.csv",
        };
        let lines = LineMap::default();
        let e = warning_error(
            &req,
            &lines,
            "Warning",
            1265,
            "Data truncated for column 'code_postal' at row 3",
            2,
        )
        .to_string();
        assert!(
            e.starts_with("c.csv:3: column code_postal: Data truncated (Warning 1265"),
            "{e}"
        );
        assert!(e.contains("2 warnings in all"), "{e}");
        let e = warning_error(
            &req,
            &lines,
            "Warning",
            1366,
            "Incorrect decimal value: 'douze' for column `db`.`metier_citoyens`.`quotient_familial` at row 2",
            1,
        )
        .to_string();
        assert!(
            e.starts_with(
                "c.csv:2: column quotient_familial: Incorrect decimal value: 'douze' (Warning 1366"
            ),
            "{e}"
        );
    }
}
