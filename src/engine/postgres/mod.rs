//! PostgreSQL, through tokio-postgres: connecting, the schema history, and COPY loads.
//!
//! Quirks handled here and only here:
//! - libpq's `sslmode=require` encrypts without verifying the certificate; the rustls
//!   client is told the same (see [`tls`]), so `require` behaves as a DBA expects from psql.
//! - tokio-postgres prints a server error as just "db error": [`describe`] spells out the
//!   message, detail, hint and context so that users see what psql would show.
//! - The session gets `statement_timeout` for inspection queries; migrations and COPY lift it
//!   with `SET LOCAL` inside their own transaction.

pub mod archive;
pub mod backup;
pub mod base_backup;
pub mod client;
pub mod copy_text;
pub mod pitr;
pub mod privacy;
pub mod split;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::{error::SqlState, Client, Config, NoTls};

use crate::catalog::{AppliedMigration, Column, ColumnKind, HistoryKind, Migration, TableRef};
use crate::config::{EngineKind, SslMode, Target};
use crate::engine::script::{split_postgres, Piece};
use crate::engine::{
    Canceller, Capabilities, DbError, Driver, LoadRequest, Session, ValueStyle, Visibility,
};
use crate::load::LineMap;

/// The advisory lock key of `schema apply`: two concurrent runs on one database take turns.
const SCHEMA_LOCK_KEY: i64 = 0x6d61_6972_6965_0001; // "mairie" + 1
pub(crate) const HISTORY_TABLE: &str = "public.mairie_dba_schema_history";

/// TLS for `sslmode=prefer|require`, as libpq does it: the session is encrypted, the
/// server's certificate chain is not checked against a CA (libpq only does that with
/// `verify-ca`/`verify-full`), but the handshake's signatures are, so the server must hold
/// the key of the certificate it shows.
///
/// rustls rather than OpenSSL: OpenSSL's connector reads the whole system CA bundle each
/// time one is built (about 40 ms here, on every command), for a check that these modes
/// never make.
pub(crate) mod tls {
    use std::sync::OnceLock;

    use tokio_postgres_rustls::MakeRustlsConnect;

    /// One client configuration for the whole process.
    pub fn connector() -> anyhow::Result<MakeRustlsConnect> {
        static CONFIG: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
        let config =
            CONFIG.get_or_init(|| crate::engine::tls::encrypt_only().map_err(|e| e.to_string()));
        match config {
            Ok(c) => Ok(MakeRustlsConnect::new(c.clone())),
            Err(e) => Err(anyhow::anyhow!("setting up TLS: {e}")),
        }
    }
}

/// Connects with `tls`, the whole handshake (TCP, TLS, authentication) bounded by
/// `timeout`, not only the TCP connect; the connection then runs in the background.
async fn establish<T>(cfg: &Config, tls: T, timeout: Duration, where_: &str) -> Result<Client>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = tokio::time::timeout(timeout, cfg.connect(tls))
        .await
        .map_err(|_| anyhow!("timed out after {} s", timeout.as_secs()))
        .with_context(|| where_.to_string())?
        .map_err(db_err)
        .with_context(|| where_.to_string())?;
    tokio::spawn(conn);
    Ok(client)
}

pub struct PgConn {
    client: Client,
    target: String,
    /// How to cancel the statement in flight from another connection ([`PgConn::canceller`]).
    tls: bool,
}

pub async fn connect(target: &Target) -> Result<PgConn> {
    connect_session(target, Session::Work).await
}

/// A session for inspection queries: `lock_timeout` set, so that none queues behind a lock.
pub async fn connect_probe(target: &Target) -> Result<PgConn> {
    connect_session(target, Session::Probe).await
}

async fn connect_session(target: &Target, session: Session) -> Result<PgConn> {
    let c = &target.connection;
    let mut options = format!("-c statement_timeout={}", c.statement_timeout.as_millis());
    if session == Session::Probe {
        options.push_str(&format!(" -c lock_timeout={}", c.lock_timeout.as_millis()));
    }
    let password = target.password()?;
    let mut cfg = Config::new();
    cfg.host(&c.host)
        .port(c.port)
        .dbname(&c.database)
        .user(&c.user)
        .application_name("mairie-dba")
        .connect_timeout(c.connect_timeout)
        .options(&options);
    if let Some(pw) = &password {
        cfg.password(pw.expose());
    }
    cfg.ssl_mode(match c.sslmode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require => tokio_postgres::config::SslMode::Require,
    });
    let where_ = format!(
        "connecting to target `{}` (postgres {}@{}:{}/{})",
        target.name, c.user, c.host, c.port, c.database
    );
    let client = if c.sslmode == SslMode::Disable {
        establish(&cfg, NoTls, c.connect_timeout, &where_).await?
    } else {
        establish(&cfg, tls::connector()?, c.connect_timeout, &where_).await?
    };
    Ok(PgConn {
        client,
        target: target.name.clone(),
        tls: c.sslmode != SslMode::Disable,
    })
}

/// A one-line description of a tokio-postgres error, with the server's detail, hint and
/// context when there are some.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_string();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!(" (hint: {h})"));
            }
            s
        }
        None => crate::engine::error_chain(e),
    }
}

/// A driver error as psql would print it ([`describe`]), typed ([`DbError`]), for `map_err`.
pub fn db_err(e: tokio_postgres::Error) -> anyhow::Error {
    let sqlstate = e.code().map(|c| c.code().to_string());
    let mut err = DbError::new(EngineKind::Postgres, describe(&e), e);
    if let Some(s) = sqlstate {
        err = err.with_sqlstate(s);
    }
    err.into()
}

impl PgConn {
    /// Cancels, from a new connection, whatever statement this session is running.
    pub(crate) fn canceller(&self) -> Canceller {
        Canceller::Postgres {
            token: self.client.cancel_token(),
            tls: self.tls,
        }
    }
}

/// Sends the cancel request of `token` (TLS as the session was).
pub(crate) async fn cancel(token: &tokio_postgres::CancelToken, tls_on: bool) -> Result<()> {
    if tls_on {
        token.cancel_query(tls::connector()?).await.map_err(db_err)
    } else {
        token.cancel_query(NoTls).await.map_err(db_err)
    }
}

impl PgConn {
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    // -----------------------------------------------------------------------------------------
    // Schema history

    async fn history_exists(&self) -> Result<bool> {
        Ok(self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
            .await
            .map_err(db_err)?
            .get(0))
    }

    async fn record(&self, m: &Migration, elapsed: Duration, success: bool) -> Result<()> {
        record_in(&self.client, m, elapsed, success).await
    }

    /// Whether the history table has the second shape (`installed_rank`, `kind`, a nullable
    /// `version`), which repeatable migrations and baselines need.
    async fn history_upgraded(&self) -> Result<bool> {
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute
                                WHERE attrelid = to_regclass($1) AND attname = 'kind' AND NOT attisdropped)",
                &[&HISTORY_TABLE],
            )
            .await
            .map_err(db_err)?;
        Ok(row.get(0))
    }

    /// Runs the one statement of a `no-transaction` migration on its own, then records it.
    async fn apply_alone(&self, m: &Migration, pieces: &[Piece]) -> Result<Duration> {
        if pieces.is_empty() {
            self.record(m, Duration::ZERO, true).await?;
            return Ok(Duration::ZERO);
        }
        let [p] = pieces else {
            bail!(
                "{}: a no-transaction migration must hold exactly one statement, it holds {}",
                m.path.display(),
                pieces.len()
            );
        };
        let start = Instant::now();
        self.client
            .batch_execute("SET statement_timeout = 0")
            .await
            .map_err(db_err)?;
        let run = self.client.batch_execute(&p.sql).await;
        let _ = self.client.batch_execute("RESET statement_timeout").await;
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
                let msg = migration_error(m, p, &e);
                self.record(m, elapsed, false).await.ok();
                bail!("{msg}; {}", no_transaction_advice(&p.sql))
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Loads

    /// Moves the identity and serial sequences of the loaded columns past the largest value
    /// loaded, so that the next INSERT without an explicit id does not collide (like
    /// pgloader's "reset sequences"). Never moves a sequence backwards.
    async fn sync_sequences(&self, table: &TableRef, loaded: &[String]) -> Result<()> {
        let qualified = quoted_table(table);
        let rows = self
            .client
            .query(
                "SELECT a.attname, pg_get_serial_sequence($1, a.attname)
                 FROM pg_attribute a
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
                   AND pg_get_serial_sequence($1, a.attname) IS NOT NULL",
                &[&qualified],
            )
            .await
            .map_err(db_err)?;
        for r in rows {
            let col: String = r.get(0);
            let seq: String = r.get(1);
            if !loaded.contains(&col) {
                continue;
            }
            let sql = format!(
                "SELECT setval($1::text::regclass, m) FROM (SELECT max({}) AS m FROM {qualified}) x
                 WHERE m IS NOT NULL AND m > COALESCE(pg_sequence_last_value($1::text::regclass), 0)",
                quote_ident(&col)
            );
            self.client
                .execute(&sql, &[&seq])
                .await
                .map_err(db_err)
                .with_context(|| format!("advancing sequence {seq} of {table}"))?;
        }
        Ok(())
    }
}

impl Driver for PgConn {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            engine: EngineKind::Postgres,
            transactional_ddl: true,
            values: ValueStyle::Server,
        }
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn server_version(&self) -> Result<String> {
        let row = self
            .client
            .query_one("SHOW server_version", &[])
            .await
            .map_err(db_err)?;
        Ok(row.get(0))
    }

    /// Superusers and members of `pg_read_all_stats` (which `pg_monitor` includes) see every
    /// role's rows of `pg_stat_activity`; others see only their own role's queries.
    async fn activity_visibility(&self) -> Result<Visibility> {
        let row = self
            .client
            .query_one(
                "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'), current_user::text",
                &[],
            )
            .await
            .map_err(db_err)?;
        Ok(if row.get::<_, bool>(0) {
            Visibility::All
        } else {
            let role: String = row.get(1);
            Visibility::OwnOnly {
                missing: format!(
                    "role {role} is not a member of pg_monitor (or pg_read_all_stats): GRANT pg_monitor TO {}",
                    quote_ident(&role)
                ),
            }
        })
    }

    /// Takes the schema lock, waiting for another `apply` to finish. Returns whether it had
    /// to wait.
    async fn lock_schema(&self) -> Result<bool> {
        let got: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&SCHEMA_LOCK_KEY])
            .await
            .map_err(db_err)?
            .get(0);
        if got {
            return Ok(false);
        }
        self.client
            .batch_execute(&format!(
                "SET statement_timeout = 0; SELECT pg_advisory_lock({SCHEMA_LOCK_KEY}); RESET statement_timeout"
            ))
            .await
            .map_err(db_err)
            .context("waiting for the schema lock")?;
        Ok(true)
    }

    async fn unlock_schema(&self) -> Result<()> {
        self.client
            .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK_KEY])
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Creates the history table, or brings one of the first shape (version as the key) to
    /// the second, in one transaction: existing rows keep their values and become
    /// `versioned` rows ranked by version.
    async fn ensure_history(&self) -> Result<()> {
        if !self.history_exists().await? {
            return self
                .client
                .batch_execute(&history_ddl())
                .await
                .map_err(db_err)
                .with_context(|| format!("creating the schema history table {HISTORY_TABLE}"));
        }
        if self.history_upgraded().await? {
            return Ok(());
        }
        let pk: Option<String> = self
            .client
            .query_opt(
                "SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'",
                &[&HISTORY_TABLE],
            )
            .await
            .map_err(db_err)?
            .map(|r| r.get(0));
        // One simple-query message: its statements run as one transaction.
        self.client
            .batch_execute(&upgrade_history_sql(pk.as_deref()))
            .await
            .map_err(db_err)
            .with_context(|| format!("upgrading the schema history table {HISTORY_TABLE}"))
    }

    async fn history(&self) -> Result<Vec<AppliedMigration>> {
        if !self.history_exists().await? {
            return Ok(Vec::new());
        }
        let upgraded = self.history_upgraded().await?;
        let rows = self
            .client
            .query(&history_select(upgraded), &[])
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| AppliedMigration {
                rank: r.get::<_, i64>(0),
                kind: HistoryKind::parse(r.get::<_, &str>(1)),
                version: r.get::<_, Option<i64>>(2),
                description: r.get(3),
                script: r.get(4),
                checksum: r.get(5),
                applied_at: r.get(6),
                execution_ms: r.get(7),
                applied_by: r.get(8),
                success: r.get(9),
            })
            .collect())
    }

    /// Runs one migration statement by statement in its own transaction and records it. On
    /// failure the transaction is rolled back and the failure is recorded (PostgreSQL's DDL
    /// is transactional, so a failed migration leaves nothing behind and may be retried). A
    /// `no-transaction` migration runs alone ([`PgConn::apply_alone`]).
    async fn apply_migration(&mut self, m: &Migration) -> Result<Duration> {
        let pieces = split_postgres(&m.sql);
        if m.no_transaction {
            return self.apply_alone(m, &pieces).await;
        }
        let start = Instant::now();
        let tx = self.client.transaction().await.map_err(db_err)?;
        tx.batch_execute("SET LOCAL statement_timeout = 0")
            .await
            .map_err(db_err)?;
        for p in &pieces {
            if let Err(e) = tx.batch_execute(&p.sql).await {
                drop(tx);
                let msg = migration_error(m, p, &e);
                let elapsed = start.elapsed();
                self.record(m, elapsed, false).await.ok();
                bail!(msg);
            }
        }
        let elapsed = start.elapsed();
        record_in(&tx, m, elapsed, true).await?;
        tx.commit()
            .await
            .map_err(db_err)
            .with_context(|| format!("committing {}", m.script))?;
        Ok(elapsed)
    }

    async fn record_baseline(&self, version: i64, description: &str) -> Result<()> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {HISTORY_TABLE} (version, kind, description, script, checksum, execution_ms, success)
                     VALUES ($1, 'baseline', $2, '<< baseline >>', '', 0, true)"
                ),
                &[&version, &description],
            )
            .await
            .map_err(db_err)
            .with_context(|| format!("recording the baseline in {HISTORY_TABLE}"))?;
        Ok(())
    }

    async fn delete_history_row(&self, rank: i64) -> Result<()> {
        self.client
            .execute(
                &format!("DELETE FROM {HISTORY_TABLE} WHERE installed_rank = $1"),
                &[&rank],
            )
            .await
            .map_err(db_err)
            .with_context(|| format!("deleting row {rank} of {HISTORY_TABLE}"))?;
        Ok(())
    }

    async fn realign_history_row(&self, rank: i64, m: &Migration) -> Result<()> {
        self.client
            .execute(
                &format!(
                    "UPDATE {HISTORY_TABLE} SET checksum = $2, description = $3, script = $4
                     WHERE installed_rank = $1"
                ),
                &[&rank, &m.checksum, &m.description, &m.script],
            )
            .await
            .map_err(db_err)
            .with_context(|| format!("realigning row {rank} of {HISTORY_TABLE}"))?;
        Ok(())
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
        let rows = self
            .client
            .query(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory::text,
                        t.typname, NOT a.attnotnull, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_type t ON t.oid = a.atttypid
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
                   AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(db_err)?;
        if rows.is_empty() {
            bail!(
                "table {table} does not exist in database (target `{}`)",
                self.target
            );
        }
        Ok(rows
            .iter()
            .map(|r| {
                let category: String = r.get(2);
                let typname: String = r.get(3);
                Column {
                    name: r.get(0),
                    sql_type: r.get(1),
                    kind: column_kind(&category, &typname),
                    nullable: r.get(4),
                    has_default: r.get(5),
                }
            })
            .collect())
    }

    /// Foreign keys between the given tables, as (child, parent) pairs.
    async fn foreign_keys(&self, tables: &[TableRef]) -> Result<Vec<(TableRef, TableRef)>> {
        let rows = self
            .client
            .query(
                "SELECT cn.nspname, c.relname, pn.nspname, p.relname
                 FROM pg_constraint k
                 JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
                 JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
                 WHERE k.contype = 'f'",
                &[],
            )
            .await
            .map_err(db_err)?;
        let mut edges = Vec::new();
        for r in rows {
            let child = TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1));
            let parent = TableRef::new(r.get::<_, String>(2), r.get::<_, String>(3));
            if child != parent && tables.contains(&child) && tables.contains(&parent) {
                edges.push((child, parent));
            }
        }
        Ok(edges)
    }

    async fn relations(&self) -> Result<crate::engine::Relations> {
        use crate::engine::{RelColumn, RelForeignKey, RelTable, Relations};
        let user_tables = "c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_%'";
        let cols = self
            .client
            .query(
                &format!(
                    "SELECT n.nspname::text, c.relname::text, a.attname::text,
                            format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                            t.typcategory = 'S', t.typcategory = 'D',
                            a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
                            COALESCE((SELECT array_agg(k.attname::text ORDER BY u.ord)
                                      FROM pg_constraint p, unnest(p.conkey) WITH ORDINALITY u(attnum, ord)
                                      JOIN pg_attribute k ON k.attnum = u.attnum
                                      WHERE p.conrelid = c.oid AND p.contype = 'p' AND k.attrelid = c.oid),
                                     ARRAY[]::text[])
                     FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                     JOIN pg_type t ON t.oid = a.atttypid
                     WHERE {user_tables}
                     ORDER BY 1, 2, a.attnum"
                ),
                &[],
            )
            .await
            .map_err(db_err)?;
        let mut rel = Relations::default();
        for r in &cols {
            let table = TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1));
            if rel.tables.last().map(|t| &t.table) != Some(&table) {
                rel.tables.push(RelTable {
                    quoted: quoted_table(&table),
                    table: table.clone(),
                    columns: Vec::new(),
                    primary_key: r.get(8),
                });
            }
            let last = rel.tables.last_mut().expect("pushed above");
            last.columns.push(RelColumn {
                name: r.get(2),
                sql_type: r.get(3),
                nullable: r.get(4),
                text: r.get(5),
                temporal: r.get(6),
                has_default: r.get(7),
            });
        }
        let fks = self
            .client
            .query(
                "SELECT k.conname::text, cn.nspname::text, c.relname::text,
                        ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
                              JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o),
                        pn.nspname::text, p.relname::text,
                        ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, o)
                              JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o)
                 FROM pg_constraint k
                 JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
                 JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
                 WHERE k.contype = 'f' AND NOT c.relispartition
                 ORDER BY 2, 3, 1",
                &[],
            )
            .await
            .map_err(db_err)?;
        for r in &fks {
            rel.foreign_keys.push(RelForeignKey {
                name: r.get(0),
                child: TableRef::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                columns: r.get(3),
                parent: TableRef::new(r.get::<_, String>(4), r.get::<_, String>(5)),
                parent_columns: r.get(6),
            });
        }
        Ok(rel)
    }

    async fn query_text(
        &self,
        sql: &str,
        params: &[Option<String>],
    ) -> Result<crate::engine::TextRows> {
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client.query(sql, &refs).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Option<String>>(i)
                            .map_err(anyhow::Error::from)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect()
    }

    async fn execute_text(&self, sql: &str, params: &[Option<String>]) -> Result<u64> {
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        self.client.execute(sql, &refs).await.map_err(db_err)
    }

    async fn begin(&self) -> Result<()> {
        self.client
            .batch_execute("BEGIN; SET LOCAL statement_timeout = 0")
            .await
            .map_err(db_err)
    }

    async fn commit(&self) -> Result<()> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(db_err)
            .context("committing")
    }

    async fn rollback(&self) {
        // The error that made us roll back is the one worth reporting.
        let _ = self.client.batch_execute("ROLLBACK").await;
    }

    /// Empties the tables inside the current transaction. PostgreSQL refuses TRUNCATE on a
    /// table that another table references, even when that one is empty; then the rows are
    /// deleted instead, which still fails (rightly) if referencing rows exist. Never CASCADE:
    /// that would silently empty tables the user did not name.
    async fn savepoint(&self, name: &str) -> Result<()> {
        let sql = format!("SAVEPOINT {}", quote_ident(name));
        self.client.batch_execute(&sql).await.map_err(db_err)
    }

    async fn rollback_to_savepoint(&self, name: &str) -> Result<()> {
        let sql = format!("ROLLBACK TO SAVEPOINT {}", quote_ident(name));
        self.client.batch_execute(&sql).await.map_err(db_err)
    }

    async fn release_savepoint(&self, name: &str) -> Result<()> {
        let sql = format!("RELEASE SAVEPOINT {}", quote_ident(name));
        self.client.batch_execute(&sql).await.map_err(db_err)
    }

    async fn truncate(&self, tables: &[TableRef]) -> Result<Vec<String>> {
        let list = tables
            .iter()
            .map(quoted_table)
            .collect::<Vec<_>>()
            .join(", ");
        self.client
            .batch_execute("SAVEPOINT mairie_dba_truncate")
            .await
            .map_err(db_err)?;
        match self.client.batch_execute(&format!("TRUNCATE {list}")).await {
            Ok(()) => Ok(Vec::new()),
            Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
                self.client
                    .batch_execute("ROLLBACK TO SAVEPOINT mairie_dba_truncate")
                    .await
                    .map_err(db_err)?;
                let mut notes = Vec::new();
                for t in tables {
                    let rows = self
                        .client
                        .query(
                            "SELECT DISTINCT c.conrelid::regclass::text
                             FROM pg_constraint c
                             WHERE c.contype = 'f' AND c.confrelid = $1::text::regclass
                               AND c.conrelid <> c.confrelid
                             ORDER BY 1",
                            &[&quoted_table(t)],
                        )
                        .await
                        .map_err(db_err)?;
                    let children: Vec<String> = rows
                        .iter()
                        .map(|r| r.get::<_, String>(0))
                        .filter(|c| {
                            !tables
                                .iter()
                                .any(|o| quoted_table(o) == *c || o.to_string() == *c)
                        })
                        .collect();
                    if !children.is_empty() {
                        notes.push(crate::engine::delete_note(
                            t,
                            &children,
                            "TRUNCATE would have to empty them too (CASCADE), which --truncate \
                             never does",
                        ));
                    }
                }
                // Children first, so that rows referencing each other go in a valid order.
                for t in tables.iter().rev() {
                    self.client
                        .batch_execute(&format!("DELETE FROM {}", quoted_table(t)))
                        .await
                        .map_err(db_err)
                        .with_context(|| format!("emptying {t} (--truncate)"))?;
                }
                Ok(notes)
            }
            Err(e) => Err(db_err(e)).with_context(|| format!("truncating {list}")),
        }
    }

    async fn session_time_zone(&self) -> Result<Option<String>> {
        let row = self
            .client
            .query_one("SELECT current_setting('TimeZone')", &[])
            .await
            .map_err(db_err)?;
        Ok(Some(row.get(0)))
    }

    async fn set_local_timezone(&self, tz: Option<&str>) -> Result<()> {
        match tz {
            Some(tz) => self
                .client
                .execute("SELECT set_config('TimeZone', $1, true)", &[&tz])
                .await
                .map(|_| ())
                .map_err(db_err)
                .with_context(|| format!("--timezone {tz}")),
            None => self
                .client
                .batch_execute("RESET TimeZone")
                .await
                .map_err(db_err),
        }
    }

    /// Streams the encoded rows into `COPY … FROM STDIN` (text format). Must run inside a
    /// transaction begun with [`PgConn::begin`]. Returns the rows the server stored.
    async fn bulk_load(
        &self,
        req: &LoadRequest<'_>,
        mut chunks: mpsc::Receiver<Result<Bytes, crate::load::LoadError>>,
        lines: Arc<LineMap>,
    ) -> Result<u64> {
        let cols = req
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("COPY {} ({cols}) FROM STDIN", quoted_table(req.table));
        let sink = self
            .client
            .copy_in::<_, Bytes>(&sql)
            .await
            .map_err(db_err)?;
        futures_util::pin_mut!(sink);
        while let Some(chunk) = chunks.recv().await {
            // A parse error ends the COPY: dropping the sink without finish() aborts it.
            let chunk = chunk?;
            if let Err(e) = sink.send(chunk).await {
                return Err(copy_error(&e, req, &lines));
            }
        }
        let rows = sink
            .as_mut()
            .finish()
            .await
            .map_err(|e| copy_error(&e, req, &lines))?;
        self.sync_sequences(req.table, &req.columns).await?;
        Ok(rows)
    }
}

/// The history table as it is created today.
fn history_ddl() -> String {
    format!(
        "CREATE TABLE {HISTORY_TABLE} (
            installed_rank bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            version        bigint CONSTRAINT mairie_dba_schema_history_version_key UNIQUE,
            kind           text NOT NULL DEFAULT 'versioned',
            description    text NOT NULL,
            script         text NOT NULL,
            checksum       text NOT NULL,
            applied_at     timestamptz NOT NULL DEFAULT now(),
            execution_ms   bigint NOT NULL,
            applied_by     text NOT NULL DEFAULT current_user,
            success        boolean NOT NULL
         );
         COMMENT ON TABLE {HISTORY_TABLE} IS 'Migrations applied by mairie-dba schema apply'"
    )
}

/// Brings a history table of the first shape (primary key `version`, constraint `pk`) to
/// the second: a rank as the key, `version` nullable but unique, a `kind`. The existing rows
/// are ranked by version. Statements for one simple-query message, hence one transaction.
fn upgrade_history_sql(pk: Option<&str>) -> String {
    let drop_pk = pk
        .map(|pk| format!("DROP CONSTRAINT {}, ", quote_ident(pk)))
        .unwrap_or_default();
    format!(
        "ALTER TABLE {HISTORY_TABLE} {drop_pk}
            ADD COLUMN installed_rank bigint GENERATED BY DEFAULT AS IDENTITY,
            ADD COLUMN kind text NOT NULL DEFAULT 'versioned',
            ALTER COLUMN version DROP NOT NULL;
         UPDATE {HISTORY_TABLE} h SET installed_rank = r.n
            FROM (SELECT version, row_number() OVER (ORDER BY version) AS n FROM {HISTORY_TABLE}) r
            WHERE h.version = r.version;
         SELECT setval(pg_get_serial_sequence('{HISTORY_TABLE}', 'installed_rank'),
                       (SELECT coalesce(max(installed_rank), 0) + 1 FROM {HISTORY_TABLE}), false);
         ALTER TABLE {HISTORY_TABLE} ADD PRIMARY KEY (installed_rank),
            ADD CONSTRAINT mairie_dba_schema_history_version_key UNIQUE (version)"
    )
}

/// The history rows in the order they were written; a table of the first shape is read
/// as versioned rows ranked by version.
fn history_select(upgraded: bool) -> String {
    let (rank, kind) = if upgraded {
        ("installed_rank", "kind")
    } else {
        ("version", "'versioned'::text")
    };
    format!(
        "SELECT {rank}, {kind}, version, description, script, checksum, applied_at, execution_ms, applied_by, success
         FROM {HISTORY_TABLE} ORDER BY 1"
    )
}

/// Records a migration: a versioned one has one row, updated when it is retried; a
/// repeatable one (no version) gets a row each time it runs.
async fn record_in<C: tokio_postgres::GenericClient>(
    c: &C,
    m: &Migration,
    elapsed: Duration,
    success: bool,
) -> Result<()> {
    let ms = elapsed.as_millis() as i64;
    c.execute(
        &format!(
            "INSERT INTO {HISTORY_TABLE} (version, kind, description, script, checksum, execution_ms, success)
             VALUES ($1, $7, $2, $3, $4, $5, $6)
             ON CONFLICT (version) DO UPDATE SET kind = EXCLUDED.kind, description = EXCLUDED.description,
               script = EXCLUDED.script, checksum = EXCLUDED.checksum, applied_at = now(),
               execution_ms = EXCLUDED.execution_ms, applied_by = current_user, success = EXCLUDED.success"
        ),
        &[&m.version, &m.description, &m.script, &m.checksum, &ms, &success, &m.kind().as_str()],
    )
    .await
    .map_err(db_err)
    .with_context(|| format!("recording {} in {HISTORY_TABLE}", m.script))?;
    Ok(())
}

/// `V002__metier.sql:45: syntax error at or near "TABL"`: the server's cursor position in
/// the statement is turned into a line of the file; without one, the statement's first line.
fn migration_error(m: &Migration, p: &Piece, e: &tokio_postgres::Error) -> String {
    let inner = e.as_db_error().and_then(|db| match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(pos)) => {
            Some(crate::engine::line_of_char_offset(&p.sql, *pos as usize))
        }
        _ => None,
    });
    let line = p.line + inner.unwrap_or(1) - 1;
    format!("{}:{line}: {}", m.path.display(), describe(e))
}

/// What to do after a `no-transaction` statement failed: nothing was rolled back.
fn no_transaction_advice(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    let what = if upper.contains("CONCURRENTLY") && upper.contains("INDEX") {
        "a CREATE INDEX CONCURRENTLY that fails leaves an INVALID index behind: find it with \
         `SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid` and drop it \
         (DROP INDEX CONCURRENTLY …)"
    } else {
        "check what it left half-done and undo it by hand"
    };
    format!(
        "it ran outside a transaction (-- mairie-dba: no-transaction), so nothing was rolled back: \
         {what}; then run `mairie-dba schema repair`, which removes its failed row from {HISTORY_TABLE}, \
         and apply again"
    )
}

/// A COPY failure, told in terms of the CSV file: the server's "line N" of the COPY stream
/// becomes the file's physical line, and the column is named.
fn copy_error(e: &tokio_postgres::Error, req: &LoadRequest<'_>, lines: &LineMap) -> anyhow::Error {
    let file = req.file_label;
    let Some(db) = e.as_db_error() else {
        return anyhow!("{file}: {}", describe(e));
    };
    // Context looks like: COPY citoyens, line 3, column date_naissance: "32/13/2024"
    let ctx = db.where_().unwrap_or("");
    let copy_line = ctx
        .split(", line ")
        .nth(1)
        .and_then(|rest| rest.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok());
    let column = ctx
        .split(", column ")
        .nth(1)
        .map(|rest| rest.split(':').next().unwrap_or(rest).to_string());
    let mut reason = String::new();
    if let Some(c) = column {
        reason.push_str(&format!("column {c}: "));
    }
    reason.push_str(&describe(e));
    let located = match copy_line {
        Some(n) => format!("{file}:{}: ", lines.physical_line(n)),
        None => format!("{file}: "),
    };
    let mut msg = format!("{located}{reason}");
    if copy_line.is_none() && *db.code() == SqlState::FOREIGN_KEY_VIOLATION {
        msg.push_str(" (the row is not identified by the server; search the file for that key)");
    }
    // Data exceptions (class 22) and broken constraints (class 23) are the rows' fault.
    let code = db.code().code();
    if code.starts_with("22") || code.starts_with("23") {
        return anyhow::Error::new(crate::load::Refused {
            row: copy_line,
            reason,
            message: msg,
        });
    }
    anyhow!(msg)
}

fn column_kind(category: &str, typname: &str) -> ColumnKind {
    match (category, typname) {
        (_, "date") => ColumnKind::Date,
        (_, "timestamp") | (_, "timestamptz") => ColumnKind::Timestamp,
        (_, "int2") | (_, "int4") | (_, "int8") => ColumnKind::Integer,
        ("N", _) => ColumnKind::Decimal,
        ("B", _) => ColumnKind::Boolean,
        _ => ColumnKind::Text,
    }
}

/// `"schema"."table"`, each part quoted.
pub fn quoted_table(t: &TableRef) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}

/// PostgreSQL's identifier quoting: double quotes, inner quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("nom"), "\"nom\"");
        assert_eq!(quote_ident("a\"b; DROP"), "\"a\"\"b; DROP\"");
    }

    #[test]
    fn history_shapes() {
        let up = upgrade_history_sql(Some("mairie_dba_schema_history_pkey"));
        assert!(up.starts_with(
            "ALTER TABLE public.mairie_dba_schema_history DROP CONSTRAINT \"mairie_dba_schema_history_pkey\", "
        ));
        assert!(up.contains("ALTER COLUMN version DROP NOT NULL"));
        assert!(up.contains("ADD PRIMARY KEY (installed_rank)"));
        assert!(history_select(false).starts_with("SELECT version, 'versioned'::text, version,"));
        assert!(history_select(true).starts_with("SELECT installed_rank, kind, version,"));
        assert!(history_ddl().contains("version        bigint CONSTRAINT"));
    }

    #[test]
    fn failed_no_transaction_statements_say_what_to_check() {
        let a = no_transaction_advice("CREATE UNIQUE INDEX CONCURRENTLY i ON t (x)");
        assert!(
            a.contains("INVALID index") && a.contains("schema repair"),
            "{a}"
        );
        assert!(a.contains(HISTORY_TABLE));
        let a = no_transaction_advice("VACUUM t");
        assert!(a.contains("by hand") && !a.contains("INVALID"), "{a}");
    }

    #[test]
    fn kinds_from_catalogue() {
        assert_eq!(column_kind("D", "date"), ColumnKind::Date);
        assert_eq!(column_kind("D", "timestamptz"), ColumnKind::Timestamp);
        assert_eq!(column_kind("N", "numeric"), ColumnKind::Decimal);
        assert_eq!(column_kind("N", "int8"), ColumnKind::Integer);
        assert_eq!(column_kind("S", "text"), ColumnKind::Text);
    }
}
