//! YAML configuration -> typed, validated configuration.
//!
//! Owns the file formats of `config_global.yml` and the per-engine files, the resolution of
//! relative paths, and the resolution of secrets. Every struct denies unknown fields, and
//! every error names the file (and, from the YAML parser, the line, column and key path), so
//! that a typo in a cron job's config fails loudly instead of being ignored.
//!
//! Passwords are never read from YAML: only from the environment variable named by
//! `password_env`, a 0600 file named by `password_file`, or (PostgreSQL) libpq's `PGPASSWORD`
//! and `~/.pgpass`. They are kept in [`Secret`], whose `Debug` does not show them.

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::ConfigError;
use crate::load::options::{DateOrder, EncodingArg};

pub const DEFAULT_CONFIG: &str = "config/config_global.yml";

/// The database engines mairie-dba speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Postgres,
    Mysql,
    Mssql,
    Redis,
}

impl EngineKind {
    /// The engine a name (as `as_str` writes it, e.g. in a manifest) stands for.
    pub fn parse(name: &str) -> Option<EngineKind> {
        [
            EngineKind::Postgres,
            EngineKind::Mysql,
            EngineKind::Mssql,
            EngineKind::Redis,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Postgres => "postgres",
            EngineKind::Mysql => "mysql",
            EngineKind::Mssql => "mssql",
            EngineKind::Redis => "redis",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            EngineKind::Postgres => 5432,
            EngineKind::Mysql => 3306,
            EngineKind::Mssql => 1433,
            EngineKind::Redis => 6379,
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// File formats

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobalFile {
    /// Base for the relative paths of this file other than `targets.*.config`.
    #[serde(default)]
    base_dir: Option<PathBuf>,
    /// Where `sql/<engine>/` lives, relative to the base directory.
    #[serde(default)]
    migrations_dir: Option<PathBuf>,
    /// Where mairie-dba keeps its records (the outcome of backup runs and verifications),
    /// relative to the base directory.
    #[serde(default)]
    state_dir: Option<PathBuf>,
    /// A central monitor's configuration may name no target at all.
    #[serde(default)]
    targets: IndexMap<String, TargetEntry>,
    #[serde(default)]
    backup: IndexMap<String, BackupEntry>,
    #[serde(default)]
    datasets: Vec<DatasetEntry>,
    #[serde(default)]
    maintenance: MaintenanceSection,
    #[serde(default)]
    health: HealthSection,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    metrics: MetricsSection,
    /// The central backup monitor (`monitor *`): see `crate::monitor::config`.
    #[serde(default)]
    monitor: Option<crate::monitor::config::MonitorSection>,
    /// A site's agent (`agent push`).
    #[serde(default)]
    agent: Option<crate::monitor::config::AgentSection>,
    /// Point-in-time recovery of PostgreSQL targets, keyed by target name.
    #[serde(default)]
    pitr: IndexMap<String, PitrEntry>,
    /// Rules for citizens' personal data: see `crate::privacy`.
    #[serde(default)]
    privacy: crate::privacy::PrivacyFile,
    /// What `erase` does with the rows that belong to a person.
    #[serde(default)]
    erasure: crate::privacy::ErasureFile,
}

/// The `metrics:` section of the exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address `metrics serve` listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Seconds a scrape waits for a target before reporting it down.
    #[serde(default = "default_scrape_timeout")]
    pub scrape_timeout: u64,
    /// Seconds during which scrapes reuse the last round of queries.
    #[serde(default = "default_min_interval")]
    pub min_interval: u64,
    /// Seconds one family's probe may take (also bounded by what is left of the scrape
    /// timeout); past it the statement is cancelled on the server and the family reported
    /// failed.
    #[serde(default = "default_family_timeout")]
    pub family_timeout: u64,
    /// Queries whose response time is measured (a histogram per probe).
    #[serde(default = "default_probes")]
    pub probes: Vec<ProbeQuery>,
    /// Metrics defined by SQL, in the spirit of sql_exporter.
    #[serde(default)]
    pub custom: Vec<CustomMetric>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: default_listen(),
            scrape_timeout: default_scrape_timeout(),
            min_interval: default_min_interval(),
            family_timeout: default_family_timeout(),
            probes: default_probes(),
            custom: Vec::new(),
        }
    }
}

/// Outside 9100-9999, Prometheus' exporter port allocations (exhausted since 2023; 9187 is
/// postgres_exporter's, often on the same host), below the ephemeral ports, not in the IANA
/// services list: see docs/reference.md, `metrics serve`.
fn default_listen() -> String {
    "127.0.0.1:19187".into()
}
fn default_scrape_timeout() -> u64 {
    5
}
fn default_family_timeout() -> u64 {
    3
}
fn default_min_interval() -> u64 {
    10
}
fn default_probes() -> Vec<ProbeQuery> {
    vec![ProbeQuery {
        name: "select_1".into(),
        sql: "SELECT 1".into(),
        engines: Vec::new(),
    }]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeQuery {
    pub name: String,
    pub sql: String,
    /// Only on these engines (default: all).
    #[serde(default)]
    pub engines: Vec<EngineKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomKind {
    Gauge,
    Counter,
}

/// A metric read from a query: one sample per row and value column, labelled by the label
/// columns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMetric {
    /// Metric name; `mairie_dba_` is prepended when missing.
    pub name: String,
    pub help: String,
    #[serde(rename = "type", default = "default_custom_kind")]
    pub kind: CustomKind,
    pub sql: String,
    #[serde(default)]
    pub labels: Vec<String>,
    pub values: Vec<String>,
    /// Only on these engines / targets (default: all).
    #[serde(default)]
    pub engines: Vec<EngineKind>,
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_custom_kind() -> CustomKind {
    CustomKind::Gauge
}

/// A warning and a critical level. For most checks higher is worse; for the few where lower
/// is worse (free space, cache hit ratio) the check says so and compares the other way.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub warning: f64,
    pub critical: f64,
}

/// The `health:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Seconds all the checks of one target may take together.
    #[serde(default = "default_health_timeout")]
    pub timeout: u64,
    /// The tables whose size and vacuum/analyze age are watched (model names).
    #[serde(default = "default_key_tables")]
    pub key_tables: Vec<String>,
    /// Thresholds for every target, by check name.
    #[serde(default)]
    pub thresholds: IndexMap<String, Threshold>,
    /// Per-target overrides: target name -> check name -> threshold.
    #[serde(default)]
    pub targets: IndexMap<String, IndexMap<String, Threshold>>,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            timeout: default_health_timeout(),
            key_tables: default_key_tables(),
            thresholds: IndexMap::new(),
            targets: IndexMap::new(),
        }
    }
}

fn default_health_timeout() -> u64 {
    10
}

fn default_key_tables() -> Vec<String> {
    ["metier.citoyens", "metier.demandes", "metier.rendez_vous"]
        .map(String::from)
        .to_vec()
}

/// The `audit:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Check ids whose failure is an accepted risk: reported as `ignored`, never failing.
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// The `maintenance:` section: what `maintenance cleanup` purges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSection {
    /// The audit journal, as SCHEMA.TABLE of the model.
    #[serde(default = "default_journal_table")]
    pub journal_table: String,
    /// Its timestamp column.
    #[serde(default = "default_journal_time_column")]
    pub journal_time_column: String,
    /// Rows older than this many days are purged.
    #[serde(default = "default_journal_retention_days")]
    pub journal_retention_days: u32,
    /// Rows deleted per statement, so that no lock is held for long.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
}

impl Default for MaintenanceSection {
    fn default() -> Self {
        MaintenanceSection {
            journal_table: default_journal_table(),
            journal_time_column: default_journal_time_column(),
            journal_retention_days: default_journal_retention_days(),
            batch_size: default_batch_size(),
        }
    }
}

fn default_journal_table() -> String {
    "metier.journal_audit".into()
}
fn default_journal_time_column() -> String {
    "horodatage".into()
}
fn default_journal_retention_days() -> u32 {
    365
}
fn default_batch_size() -> u32 {
    5000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetEntry {
    engine: EngineKind,
    config: PathBuf,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Backup settings of one target (the `backup:` section, keyed by target name).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupEntry {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub dir: PathBuf,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    #[serde(default = "default_keep_min")]
    pub keep_min: u32,
    /// The age after which `backup check` calls the latest backup stale.
    #[serde(default)]
    pub max_age_hours: Option<u32>,
    /// The age of the latest backup's last full verification after which `backup check`
    /// warns (UNVERIFIED); default 168 (a week).
    #[serde(default)]
    pub verify_max_age_hours: Option<u32>,
    /// SQL Server: the directory on the server where BACKUP DATABASE writes (`dir` then
    /// keeps the manifests).
    #[serde(default)]
    pub server_dir: Option<String>,
    /// PostgreSQL: the zlib level of the archive, 1 to 9 (default 6, pg_dump's);
    /// MySQL/MariaDB: the zstd level, 1 to 19 (default 3). Not for SQL Server.
    #[serde(default)]
    pub compression_level: Option<u32>,
    /// Redis: how the snapshot is taken (`bgsave`, `replication` or `auto`, the default).
    #[serde(default)]
    pub method: Option<RedisBackupMethod>,
    /// For a `dir` of `s3://bucket/prefix`: the endpoint, region, addressing, encryption and
    /// storage class (credentials come from the environment, never from here).
    #[serde(default)]
    pub s3: Option<crate::storage::S3Options>,
}

/// How a Redis backup takes its snapshot (`backup.<target>.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisBackupMethod {
    /// `BGSAVE` on the server, then the RDB file copied from the server's `dir`: the
    /// server's files must be readable here.
    Bgsave,
    /// The snapshot read over the replication protocol (`SYNC`, as `redis-cli --rdb`).
    Replication,
    /// `bgsave` when the server is on this machine and its `dir` is readable here, else
    /// `replication`.
    #[default]
    Auto,
}

impl RedisBackupMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisBackupMethod::Bgsave => "bgsave",
            RedisBackupMethod::Replication => "replication",
            RedisBackupMethod::Auto => "auto",
        }
    }
}

impl BackupEntry {
    /// `method` is for Redis targets only: the error names the key.
    fn check_method(&self, target: &str, engine: EngineKind) -> Result<(), String> {
        match (self.method, engine) {
            (Some(m), e) if e != EngineKind::Redis => Err(format!(
                "backup.{target}.method: `{}` is for Redis targets only; remove the key",
                m.as_str()
            )),
            _ => Ok(()),
        }
    }

    /// Checks `compression_level` against the engine's compressor: the error names the key.
    fn check_compression(&self, target: &str, engine: EngineKind) -> Result<(), String> {
        let Some(level) = self.compression_level else {
            return Ok(());
        };
        let (range, what) = match engine {
            EngineKind::Postgres => (1..=9, "a zlib level for PostgreSQL archives (1 to 9)"),
            EngineKind::Mysql => (1..=19, "a zstd level for MySQL/MariaDB dumps (1 to 19)"),
            EngineKind::Mssql => {
                return Err(format!(
                    "backup.{target}.compression_level: SQL Server writes its backups itself; remove the key"
                ))
            }
            EngineKind::Redis => {
                return Err(format!(
                    "backup.{target}.compression_level: Redis compresses its snapshots itself \
                     (rdbcompression); remove the key"
                ))
            }
        };
        if range.contains(&level) {
            Ok(())
        } else {
            Err(format!(
                "backup.{target}.compression_level: {level} is not {what}"
            ))
        }
    }
}

/// Point-in-time recovery settings of one PostgreSQL target (the `pitr:` section, keyed by
/// target name). `keep_base` and `compression_level` are checked while the YAML is read, so
/// an error names the file, line and column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitrEntry {
    /// Where `wal push` archives the write-ahead log (see `crate::pitr::archive`): a
    /// directory, or `s3://bucket/prefix` (see `crate::pitr::remote`).
    pub archive_dir: PathBuf,
    /// For an `archive_dir` of `s3://bucket/prefix`: the endpoint, region, addressing,
    /// encryption and storage class (credentials come from the environment, never from here).
    #[serde(default)]
    pub s3: Option<crate::storage::S3Options>,
    /// Where the base backups go (used by the base-backup commands).
    #[serde(default)]
    pub base_dir: Option<PathBuf>,
    /// How many base backups retention keeps (at least 1; default 2).
    #[serde(
        default = "default_keep_base",
        deserialize_with = "keep_base_at_least_one"
    )]
    pub keep_base: u32,
    /// The zstd level of archived WAL and base backups, 1 to 19 (default 3).
    #[serde(
        default = "default_pitr_level",
        deserialize_with = "zstd_level_1_to_19"
    )]
    pub compression_level: i32,
    /// The tables `pitr drill` counts (`schema.table`); default: every table.
    #[serde(default)]
    pub drill_tables: Vec<String>,
}

impl PitrEntry {
    /// An `archive_dir` or `base_dir` of `s3://…` must be a valid bucket URL; `s3:` options go
    /// with one only (they apply to both), and must be valid. The error names the key.
    fn check_s3(&self, target: &str) -> Result<(), String> {
        let mut remote = false;
        let mut dirs = vec![("archive_dir", &self.archive_dir)];
        if let Some(b) = &self.base_dir {
            dirs.push(("base_dir", b));
        }
        for (key, dir) in dirs {
            let dir = dir.to_string_lossy();
            if dir.contains("://") {
                if !dir.starts_with("s3://") || crate::storage::S3Url::parse(&dir).is_none() {
                    return Err(format!(
                        "pitr.{target}.{key}: `{dir}` is not a valid s3://bucket/prefix"
                    ));
                }
                remote = true;
            }
        }
        match &self.s3 {
            Some(_) if !remote => Err(format!(
                "pitr.{target}.s3: options for object storage, but neither archive_dir `{}` nor \
                 base_dir is s3://…",
                self.archive_dir.display()
            )),
            Some(o) => o.validate().map_err(|e| format!("pitr.{target}.s3: {e:#}")),
            None => Ok(()),
        }
    }
}

fn default_keep_base() -> u32 {
    2
}
fn default_pitr_level() -> i32 {
    3
}

/// A string or a list of strings (`null: NA` or `null: [NA, ND]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn keep_base_at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom(
            "keep_base: 0 would keep no base backup; at least 1",
        ));
    }
    Ok(v)
}

fn zstd_level_1_to_19<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = i64::deserialize(d)?;
    if !(1..=19).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "compression_level: {v} is not a zstd level (1 to 19)"
        )));
    }
    Ok(v as i32)
}

fn default_retention_days() -> u32 {
    14
}
fn default_keep_min() -> u32 {
    3
}

/// A demo dataset for `load-csv --all`: a file, its table and how to read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub table: String,
    pub file: PathBuf,
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub quote: Option<String>,
    #[serde(default)]
    pub encoding: Option<EncodingArg>,
    #[serde(default)]
    pub no_header: bool,
    /// One value or a list, as `--null` given once or several times.
    #[serde(default, deserialize_with = "one_or_many")]
    pub null: Vec<String>,
    /// As `--force-null` (`"*"` or `"col,col"`).
    #[serde(default)]
    pub force_null: Option<String>,
    #[serde(default)]
    pub skip_lines: u64,
    #[serde(default)]
    pub trim: bool,
    #[serde(default)]
    pub dst: Option<crate::load::options::DstChoice>,
    #[serde(default)]
    pub date_order: Option<DateOrder>,
    #[serde(default)]
    pub decimal_comma: bool,
    #[serde(default)]
    pub timezone: Option<String>,
    /// As `--max-field-size` (e.g. `64MiB`).
    #[serde(default)]
    pub max_field_size: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    connection: ConnectionEntry,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionEntry {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default)]
    port: Option<u16>,
    /// The database (Redis: its index, 0 by default).
    #[serde(default)]
    database: Option<Scalar>,
    /// Redis: the ACL user (none: the password alone, as `requirepass`).
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// PostgreSQL: disable | prefer | require (MySQL: disable | require).
    #[serde(default)]
    sslmode: Option<SslMode>,
    /// Seconds to wait for a connection before calling the target unreachable.
    #[serde(default = "default_connect_timeout")]
    connect_timeout: u64,
    /// Seconds an inspection query may run before it is cancelled.
    #[serde(default = "default_statement_timeout")]
    statement_timeout: u64,
    /// Seconds an inspection query (health, metrics, audit, reports) may wait for a lock
    /// before it gives up: a probe never queues behind a DBA's `LOCK TABLE`.
    #[serde(default = "default_lock_timeout")]
    lock_timeout: u64,
    /// SQL Server: encrypt the connection (TLS).
    #[serde(default)]
    encrypt: Option<bool>,
    /// SQL Server and Redis: accept a self-signed server certificate.
    #[serde(default)]
    trust_server_certificate: Option<bool>,
    /// Redis: connect with TLS.
    #[serde(default)]
    tls: Option<bool>,
}

/// A YAML scalar read as text (`database: 0` for a Redis index, a name elsewhere).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(u64),
    Text(String),
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_statement_timeout() -> u64 {
    30
}
fn default_lock_timeout() -> u64 {
    2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
}

// ---------------------------------------------------------------------------------------------
// Resolved configuration

/// A password, or any secret: shown as `***` by `Debug`, never serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a password comes from; resolved only for the targets a command runs on, so that a
/// disabled target's missing variable does not break the others.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    Env {
        var: String,
    },
    File {
        path: PathBuf,
    },
    /// PostgreSQL: PGPASSWORD, then ~/.pgpass (PGPASSFILE); other engines: no password.
    Default,
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: PasswordSource,
    pub sslmode: SslMode,
    pub connect_timeout: std::time::Duration,
    pub statement_timeout: std::time::Duration,
    /// How long an inspection session waits for a lock ([`crate::engine::Session::Probe`]).
    pub lock_timeout: std::time::Duration,
    pub encrypt: bool,
    pub trust_server_certificate: bool,
    /// Redis: TLS.
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub engine: EngineKind,
    pub enabled: bool,
    /// The engine file this target's connection came from (for messages).
    pub config_file: PathBuf,
    pub connection: Connection,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub base_dir: PathBuf,
    pub migrations_dir: PathBuf,
    /// Where the records of backup runs and verifications are kept (see `backup::state`).
    pub state_dir: PathBuf,
    pub targets: Vec<Target>,
    pub backup: IndexMap<String, BackupEntry>,
    pub datasets: Vec<DatasetEntry>,
    pub maintenance: MaintenanceSection,
    pub health: HealthSection,
    pub audit: AuditSection,
    pub metrics: MetricsSection,
    /// The `monitor:` section, its paths resolved (None: no monitor configured).
    pub monitor: Option<crate::monitor::MonitorConfig>,
    /// The `agent:` section (None: this site pushes nothing).
    pub agent: Option<crate::monitor::config::AgentSection>,
    /// The `pitr:` section, keyed by target name (PostgreSQL targets only).
    pub pitr: IndexMap<String, PitrEntry>,
    pub privacy: crate::privacy::PrivacySection,
    pub erasure: crate::privacy::ErasureSection,
}

impl Config {
    /// Reads the global file and every target's engine file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let global: GlobalFile = read_yaml(path)?;
        let config_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let base_dir = match &global.base_dir {
            Some(b) => config_dir.join(b),
            None => default_base_dir(&config_dir),
        };
        let migrations_dir =
            base_dir.join(global.migrations_dir.as_deref().unwrap_or(Path::new("sql")));
        let state_dir = match &global.state_dir {
            Some(d) => base_dir.join(d),
            None => default_state_dir(),
        };

        let mut targets = Vec::with_capacity(global.targets.len());
        for (name, entry) in global.targets {
            if name.is_empty() || name.contains(['/', '\\']) {
                return Err(ConfigError::new(format!(
                    "{}: targets: `{name}` is not a valid target name (no slashes, not empty)",
                    path.display()
                )));
            }
            let file = config_dir.join(&entry.config);
            let engine_file: EngineFile = read_yaml(&file)?;
            let connection = resolve_connection(engine_file.connection, entry.engine, &file)?;
            targets.push(Target {
                name,
                engine: entry.engine,
                enabled: entry.enabled,
                config_file: file,
                connection,
            });
        }
        for (name, entry) in &global.backup {
            let Some(target) = targets.iter().find(|t| &t.name == name) else {
                return Err(ConfigError::new(format!(
                    "{}: backup.{name}: no target named `{name}` (targets: {})",
                    path.display(),
                    target_names(&targets)
                )));
            };
            entry
                .check_compression(name, target.engine)
                .and_then(|()| entry.check_method(name, target.engine))
                .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        }
        for name in global.pitr.keys() {
            match targets.iter().find(|t| &t.name == name) {
                None => {
                    return Err(ConfigError::new(format!(
                        "{}: pitr.{name}: no target named `{name}` (targets: {})",
                        path.display(),
                        target_names(&targets)
                    )))
                }
                Some(t) if t.engine != EngineKind::Postgres => {
                    return Err(ConfigError::new(format!(
                        "{}: pitr.{name}: point-in-time recovery is for PostgreSQL targets; \
                         `{name}` is {}",
                        path.display(),
                        t.engine
                    )))
                }
                Some(_) => {}
            }
            global.pitr[name]
                .check_s3(name)
                .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        }
        let monitor = match global.monitor {
            None => None,
            Some(m) => {
                crate::monitor::config::check_jobs(&m.jobs)
                    .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
                m.check_stores()
                    .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
                Some(crate::monitor::MonitorConfig::resolve(
                    m, &base_dir, &state_dir,
                ))
            }
        };
        Ok(Config {
            path: path.to_path_buf(),
            base_dir,
            migrations_dir,
            state_dir,
            targets,
            backup: global.backup,
            datasets: global.datasets,
            maintenance: global.maintenance,
            health: global.health,
            audit: global.audit,
            metrics: global.metrics,
            monitor,
            agent: global.agent,
            pitr: global.pitr,
            privacy: crate::privacy::PrivacySection::from_file(
                global.privacy,
                &path.display().to_string(),
            )?,
            erasure: crate::privacy::ErasureSection::from_file(
                global.erasure,
                &path.display().to_string(),
            )?,
        })
    }

    /// The targets a command runs on: those named with `-t`, else every enabled one.
    pub fn select_targets(&self, names: &[String]) -> Result<Vec<Target>, ConfigError> {
        if names.is_empty() {
            let enabled: Vec<Target> = self.targets.iter().filter(|t| t.enabled).cloned().collect();
            if enabled.is_empty() {
                return Err(ConfigError::new(format!(
                    "{}: no enabled target (set `enabled: true` on one, or name one with --target)",
                    self.path.display()
                )));
            }
            return Ok(enabled);
        }
        let mut selected = Vec::new();
        for name in names {
            let target = self
                .targets
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| {
                    ConfigError::new(format!(
                        "unknown target `{name}` (targets in {}: {})",
                        self.path.display(),
                        target_names(&self.targets)
                    ))
                })?;
            if !selected.iter().any(|t: &Target| t.name == target.name) {
                selected.push(target.clone());
            }
        }
        Ok(selected)
    }

    /// Resolves a path written in the global config against the base directory, without
    /// the `./` segments that would clutter messages.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let clean: PathBuf = self
            .base_dir
            .join(p)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        if clean.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            clean
        }
    }
}

/// The state directory when the configuration names none: `MAIRIE_DBA_STATE_DIR`, else
/// `$XDG_STATE_HOME/mairie-dba`, else `~/.local/state/mairie-dba`, else
/// `/var/lib/mairie-dba/state`.
pub fn default_state_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("MAIRIE_DBA_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = var("XDG_STATE_HOME").map(PathBuf::from) {
        if d.is_absolute() {
            return d.join("mairie-dba");
        }
    }
    if let Some(h) = var("HOME").map(PathBuf::from) {
        if h.is_absolute() {
            return h.join(".local/state/mairie-dba");
        }
    }
    PathBuf::from("/var/lib/mairie-dba/state")
}

fn target_names(targets: &[Target]) -> String {
    if targets.is_empty() {
        return "none".to_string();
    }
    targets
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `config/config_global.yml` sits in the project's `config/` directory, and its relative
/// paths (`./backups`, `data/…`, `sql/`) mean the project root; a config kept elsewhere
/// (`/etc/mairie-dba/config_global.yml`) means its own directory.
fn default_base_dir(config_dir: &Path) -> PathBuf {
    let base = match config_dir.file_name() {
        Some(n) if n == "config" => config_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        _ => config_dir.to_path_buf(),
    };
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

pub(crate) fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG)
        {
            " (run from the project directory, or pass -c/--config or set MAIRIE_DBA_CONFIG)"
        } else {
            ""
        };
        ConfigError::new(format!(
            "cannot read config file {}: {e}{hint}",
            path.display()
        ))
    })?;
    serde_norway::from_str(&text).map_err(|e| ConfigError::new(yaml_error(path, &e)))
}

/// `file:line:column: key.path: message`, the way compilers and linters say it.
fn yaml_error(path: &Path, e: &serde_norway::Error) -> String {
    let msg = e.to_string();
    // serde_norway appends " at line L column C"; move the location to the front.
    let (msg, loc) = match (e.location(), msg.rfind(" at line ")) {
        (Some(loc), Some(idx)) => (
            msg[..idx].to_string(),
            format!(":{}:{}", loc.line(), loc.column()),
        ),
        (Some(loc), None) => (msg.clone(), format!(":{}:{}", loc.line(), loc.column())),
        (None, _) => (msg.clone(), String::new()),
    };
    format!("{}{loc}: {msg}", path.display())
}

fn resolve_connection(
    c: ConnectionEntry,
    engine: EngineKind,
    file: &Path,
) -> Result<Connection, ConfigError> {
    let bad = |key: &str, why: String| {
        ConfigError::new(format!("{}: connection.{key}: {why}", file.display()))
    };
    if c.password_env.is_some() && c.password_file.is_some() {
        return Err(bad(
            "password_env",
            "give password_env or password_file, not both".into(),
        ));
    }
    if c.connect_timeout == 0 {
        return Err(bad("connect_timeout", "must be at least 1 second".into()));
    }
    if c.lock_timeout == 0 {
        return Err(bad("lock_timeout", "must be at least 1 second".into()));
    }
    let database = match (c.database, engine) {
        (Some(Scalar::Int(n)), EngineKind::Redis) => n.to_string(),
        (Some(Scalar::Text(t)), EngineKind::Redis) => match t.parse::<u32>() {
            Ok(n) => n.to_string(),
            Err(_) => {
                return Err(bad(
                    "database",
                    format!("`{t}` is not a Redis database index (0, 1, …)"),
                ))
            }
        },
        (None, EngineKind::Redis) => "0".into(),
        (Some(Scalar::Text(t)), _) if !t.is_empty() => t,
        (Some(Scalar::Int(n)), _) => n.to_string(),
        (Some(Scalar::Text(_)), _) => {
            return Err(bad("database", "must not be empty".into()));
        }
        (None, _) => return Err(bad("database", "is required".into())),
    };
    let user = match (c.user, engine) {
        (Some(u), _) if !u.is_empty() => u,
        (_, EngineKind::Redis) => String::new(),
        _ => return Err(bad("user", "is required".into())),
    };
    if engine != EngineKind::Mssql && c.encrypt.is_some() {
        return Err(bad(
            "encrypt",
            format!("only for SQL Server targets; use sslmode for {engine}"),
        ));
    }
    if !matches!(engine, EngineKind::Mssql | EngineKind::Redis)
        && c.trust_server_certificate.is_some()
    {
        return Err(bad(
            "trust_server_certificate",
            format!("only for SQL Server and Redis targets; use sslmode for {engine}"),
        ));
    }
    if engine != EngineKind::Redis && c.tls.is_some() {
        return Err(bad(
            "tls",
            format!("only for Redis targets; use sslmode (encrypt for SQL Server) for {engine}"),
        ));
    }
    if engine == EngineKind::Redis && c.sslmode.is_some() {
        return Err(bad("sslmode", "Redis targets use `tls: true`".into()));
    }
    if engine == EngineKind::Mssql && c.sslmode.is_some() {
        return Err(bad(
            "sslmode",
            "SQL Server targets use encrypt and trust_server_certificate".into(),
        ));
    }
    let password = match (c.password_env, c.password_file) {
        (Some(var), None) => PasswordSource::Env { var },
        (None, Some(p)) => PasswordSource::File {
            path: file.parent().unwrap_or(Path::new(".")).join(p),
        },
        _ => PasswordSource::Default,
    };
    Ok(Connection {
        host: c.host,
        port: c.port.unwrap_or(engine.default_port()),
        database,
        user,
        password,
        sslmode: c.sslmode.unwrap_or(SslMode::Prefer),
        connect_timeout: std::time::Duration::from_secs(c.connect_timeout),
        statement_timeout: std::time::Duration::from_secs(c.statement_timeout),
        lock_timeout: std::time::Duration::from_secs(c.lock_timeout),
        encrypt: c.encrypt.unwrap_or(true),
        trust_server_certificate: c.trust_server_certificate.unwrap_or(false),
        tls: c.tls.unwrap_or(false),
    })
}

impl Target {
    /// The same server and credentials, another database (a restore's destination, the
    /// maintenance database `postgres`/`master`, a drill's scratch database).
    pub fn with_database(&self, database: &str) -> Target {
        let mut t = self.clone();
        t.connection.database = database.to_string();
        t
    }

    /// The password for this target, or None when the engine's own defaults apply.
    pub fn password(&self) -> Result<Option<Secret>, ConfigError> {
        let conn = &self.connection;
        match &conn.password {
            PasswordSource::Env { var } => match std::env::var(var) {
                Ok(v) => Ok(Some(Secret::new(v))),
                Err(_) => Err(ConfigError::new(format!(
                    "{}: connection.password_env: environment variable {var} is not set \
                     (target `{}`)",
                    self.config_file.display(),
                    self.name
                ))),
            },
            PasswordSource::File { path } => read_password_file(path, &self.config_file).map(Some),
            PasswordSource::Default if self.engine == EngineKind::Postgres => {
                Ok(libpq_password(conn))
            }
            PasswordSource::Default => Ok(None),
        }
    }
}

fn read_password_file(path: &Path, config_file: &Path) -> Result<Secret, ConfigError> {
    let err = |why: String| {
        ConfigError::new(format!(
            "{}: connection.password_file: {}: {why}",
            config_file.display(),
            path.display()
        ))
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err("is readable by group or others: chmod 600 it".into()));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let pw = text.strip_suffix('\n').unwrap_or(&text);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    Ok(Secret::new(pw.to_string()))
}

/// libpq's own fallbacks, so that a DBA's existing set-up keeps working: `PGPASSWORD`, then
/// the password file (`PGPASSFILE` or `~/.pgpass`), which libpq ignores when others can read it.
fn libpq_password(conn: &Connection) -> Option<Secret> {
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        return Some(Secret::new(pw));
    }
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).ok()?;
        if meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    pgpass_lookup(&text, &conn.host, conn.port, &conn.database, &conn.user).map(Secret::new)
}

/// One `.pgpass` lookup: `host:port:database:user:password`, `*` matches anything, `\:` and
/// `\\` escape; the first matching line wins.
pub fn pgpass_lookup(
    text: &str,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Option<String> {
    let port = port.to_string();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::with_capacity(5);
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(ch),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        let host_ok = m(&fields[0], host) || (fields[0] == "localhost" && host == "127.0.0.1");
        if host_ok && m(&fields[1], &port) && m(&fields[2], database) && m(&fields[3], user) {
            return Some(fields[4].clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestDir;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const PG: &str =
        "connection:\n  host: 127.0.0.1\n  port: 5432\n  database: mairie\n  user: mairie\n";

    #[test]
    fn loads_targets_in_file_order_and_resolves_paths() {
        let d = TestDir::new("config");
        write(&d, "pg.yml", PG);
        let g = write(
            &d,
            "g.yml",
            "targets:\n  zpg:\n    engine: postgres\n    config: pg.yml\n  apg:\n    engine: postgres\n    config: pg.yml\n    enabled: false\n",
        );
        let c = Config::load(&g).unwrap();
        assert_eq!(
            c.targets
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["zpg", "apg"]
        );
        assert_eq!(c.select_targets(&[]).unwrap().len(), 1);
        assert_eq!(c.select_targets(&["apg".into()]).unwrap()[0].name, "apg");
        let e = c.select_targets(&["nope".into()]).unwrap_err().to_string();
        assert!(
            e.contains("unknown target `nope`") && e.contains("zpg, apg"),
            "{e}"
        );
        assert_eq!(c.migrations_dir, d.join("sql"));
        // The exporter's defaults: a port outside postgres_exporter's (9187) and the whole
        // exhausted 9100-9999 allocation range (docs/reference.md, metrics serve).
        assert_eq!(c.metrics.listen, "127.0.0.1:19187");
        assert_eq!(c.metrics.family_timeout, 3);
    }

    #[test]
    fn the_backup_method_is_for_redis_targets_only() {
        let d = TestDir::new("config");
        write(&d, "r.yml", "connection:\n  port: 6380\n");
        write(&d, "pg.yml", PG);
        let load = |file: &str, engine: &str, method: &str| {
            let g = write(
                &d,
                "g.yml",
                &format!(
                    "targets:\n  t:\n    engine: {engine}\n    config: {file}\nbackup:\n  t:\n    dir: b\n    method: {method}\n"
                ),
            );
            Config::load(&g)
        };
        let c = load("r.yml", "redis", "replication").unwrap();
        assert_eq!(c.backup["t"].method, Some(RedisBackupMethod::Replication));
        let e = load("pg.yml", "postgres", "bgsave")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("backup.t.method: `bgsave` is for Redis targets only"),
            "{e}"
        );
        let e = load("r.yml", "redis", "sometimes").unwrap_err().to_string();
        assert!(e.contains("method"), "{e}");
    }

    #[test]
    fn a_redis_target_takes_an_index_an_optional_user_and_tls() {
        let d = TestDir::new("config");
        write(
            &d,
            "r.yml",
            "connection:\n  host: 127.0.0.1\n  database: 2\n  password_env: R_PW\n  tls: true\n",
        );
        write(&d, "r0.yml", "connection:\n  port: 6380\n");
        write(&d, "bad.yml", "connection:\n  database: cache\n");
        write(&d, "pgtls.yml", &format!("{PG}  tls: true\n"));
        write(&d, "pgnouser.yml", "connection:\n  database: m\n");
        let load = |file: &str, engine: &str| {
            let g = write(
                &d,
                "g.yml",
                &format!("targets:\n  t:\n    engine: {engine}\n    config: {file}\n"),
            );
            Config::load(&g)
        };
        let c = load("r.yml", "redis").unwrap();
        let t = &c.targets[0];
        assert_eq!(t.engine, EngineKind::Redis);
        assert_eq!(
            (t.connection.port, t.connection.database.as_str()),
            (6379, "2")
        );
        assert!(t.connection.tls && t.connection.user.is_empty());
        let c = load("r0.yml", "redis").unwrap();
        assert_eq!(c.targets[0].connection.database, "0");
        let e = load("bad.yml", "redis").unwrap_err().to_string();
        assert!(
            e.contains("connection.database: `cache` is not a Redis database index"),
            "{e}"
        );
        let e = load("pgtls.yml", "postgres").unwrap_err().to_string();
        assert!(e.contains("connection.tls: only for Redis targets"), "{e}");
        let e = load("pgnouser.yml", "postgres").unwrap_err().to_string();
        assert!(e.contains("connection.user: is required"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let d = TestDir::new("config");
        write(
            &d,
            "pg.yml",
            "connection:\n  host: h\n  database: m\n  user: u\n  pasword: x\n",
        );
        let g = write(
            &d,
            "g.yml",
            "targets:\n  pg:\n    engine: postgres\n    config: pg.yml\n",
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("pg.yml:5:"), "{e}");
        assert!(e.contains("unknown field `pasword`"), "{e}");
        assert!(e.contains("connection"), "{e}");
    }

    #[test]
    fn type_error_and_bad_engine_are_reported() {
        let d = TestDir::new("config");
        write(
            &d,
            "pg.yml",
            "connection:\n  database: m\n  user: u\n  port: lots\n",
        );
        let g = write(
            &d,
            "g.yml",
            "targets:\n  pg:\n    engine: postgres\n    config: pg.yml\n",
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(
            e.contains("pg.yml:4:") && e.contains("connection.port"),
            "{e}"
        );
        let g2 = write(
            &d,
            "g2.yml",
            "targets:\n  pg:\n    engine: oracle\n    config: pg.yml\n",
        );
        let e = Config::load(&g2).unwrap_err().to_string();
        assert!(e.contains("g2.yml:3:") && e.contains("oracle"), "{e}");
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let d = TestDir::new("config");
        let g = write(&d, "g.yml", "targets:\n  pg:\n    engine: [postgres\n");
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:", g.display())), "{e}");
        assert!(e.contains(":4:") || e.contains(":3:"), "{e}");
    }

    #[test]
    fn unset_password_env_is_an_error_naming_the_variable() {
        let d = TestDir::new("config");
        write(
            &d,
            "pg.yml",
            &format!("{PG}  password_env: MAIRIE_DBA_TEST_SURELY_UNSET_VAR\n"),
        );
        let g = write(
            &d,
            "g.yml",
            "targets:\n  pg:\n    engine: postgres\n    config: pg.yml\n",
        );
        let c = Config::load(&g).unwrap();
        let e = c.targets[0].password().unwrap_err().to_string();
        assert!(
            e.contains("MAIRIE_DBA_TEST_SURELY_UNSET_VAR") && e.contains("password_env"),
            "{e}"
        );
    }

    #[test]
    fn password_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = TestDir::new("config");
        let pw = write(&d, "pw", "s3cret\n");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&d, "pg.yml", &format!("{PG}  password_file: pw\n"));
        let g = write(
            &d,
            "g.yml",
            "targets:\n  pg:\n    engine: postgres\n    config: pg.yml\n",
        );
        let c = Config::load(&g).unwrap();
        let e = c.targets[0].password().unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.targets[0].password().unwrap().unwrap().expose(), "s3cret");
    }

    #[test]
    fn pgpass_rules() {
        let text = "# comment\nother:5432:*:mairie:nope\n127.0.0.1:5432:mairie:mairie:a\\:b\\\\c\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, "127.0.0.1", 5432, "mairie", "mairie").as_deref(),
            Some("a:b\\c")
        );
        assert_eq!(
            pgpass_lookup(text, "db", 5433, "x", "y").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u:p\n", "h", 2, "d", "u"), None);
    }

    #[test]
    fn a_monitor_only_config_loads_and_its_errors_name_file_line_and_key() {
        let d = TestDir::new("config");
        let g = write(
            &d,
            "g.yml",
            "monitor:\n  deposit_dir: deposits\n  validated_dir: /srv/validated\n  jobs:\n    - {company: c, city: x, site: s, database: db, engine: postgres, frequency: daily, at: \"02:00\"}\n",
        );
        let c = Config::load(&g).unwrap();
        assert!(c.targets.is_empty());
        let m = c.monitor.unwrap();
        assert_eq!(m.deposit_dir, d.join("deposits"));
        assert!(
            matches!(&m.validated, crate::monitor::ValidatedStore::Dir(v) if v == &PathBuf::from("/srv/validated"))
        );
        assert_eq!(
            m.history,
            crate::monitor::config::HistorySetting::Sqlite(c.state_dir.join("monitor.db"))
        );
        let g = write(
            &d,
            "g2.yml",
            "monitor:\n  deposit_dir: d\n  validated_dir: v\n  jobs:\n    - company: c\n      city: x\n      site: s\n      database: db\n      engine: postgres\n      frequency: weekly\n      at: \"02:00\"\n",
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:5:5: monitor.jobs: day: required for a weekly job",
                g.display()
            )),
            "{e}"
        );
        let g = write(
            &d,
            "g3.yml",
            "monitor:\n  deposit_dir: d\n  validated_dir: v\n  scan_every: 3\n",
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(
            e.contains("g3.yml:4:") && e.contains("unknown field `scan_every`"),
            "{e}"
        );
        let g = write(
            &d,
            "g4.yml",
            "monitor:\n  deposit_dir: d\n  validated_dir: v\n  s3: {region: eu-west-3}\n",
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("g4.yml: monitor.s3:"), "{e}");
    }

    #[test]
    fn secret_debug_hides_the_value() {
        assert!(!format!("{:?}", Secret::new("hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn pitr_section_defaults_limits_and_engine() {
        let d = TestDir::new("config");
        write(
            &d,
            "pg.yml",
            "connection:\n  host: h\n  database: m\n  user: u\n",
        );
        write(
            &d,
            "my.yml",
            "connection:\n  host: h\n  database: m\n  user: u\n",
        );
        let targets = "targets:\n  pg:\n    engine: postgres\n    config: pg.yml\n  my:\n    engine: mysql\n    config: my.yml\n";
        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  pg:\n    archive_dir: ./wal\n"),
        );
        let c = Config::load(&g).unwrap();
        let e = &c.pitr["pg"];
        assert_eq!((e.keep_base, e.compression_level), (2, 3));
        assert_eq!(c.resolve(&e.archive_dir), d.join("wal"));

        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  pg:\n    archive_dir: ./wal\n    keep_base: 0\n"),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("g.yml:10:") && e.contains("keep_base"), "{e}");

        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  pg:\n    archive_dir: ./wal\n    compression_level: 30\n"),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("g.yml:10:") && e.contains("zstd level"), "{e}");

        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  pg:\n    archive_dir: ./wal\n    archive_dri: x\n"),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("g.yml:11:") && e.contains("archive_dri"), "{e}");

        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  my:\n    archive_dir: ./wal\n"),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("pitr.my") && e.contains("PostgreSQL"), "{e}");

        // An archive in a bucket, with its options; options beside a directory are refused.
        let g = write(
            &d,
            "g.yml",
            &format!(
                "{targets}pitr:\n  pg:\n    archive_dir: s3://wal-bucket/pg\n    s3:\n      \
                 endpoint: http://127.0.0.1:9000\n"
            ),
        );
        let c = Config::load(&g).unwrap();
        assert_eq!(
            c.pitr["pg"].archive_dir.to_str(),
            Some("s3://wal-bucket/pg")
        );
        let g = write(
            &d,
            "g.yml",
            &format!(
                "{targets}pitr:\n  pg:\n    archive_dir: ./wal\n    s3:\n      region: eu-west-3\n"
            ),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("pitr.pg.s3") && e.contains("is s3://"), "{e}");
        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  pg:\n    archive_dir: s3://x/pg\n"),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("pitr.pg.archive_dir"), "{e}");
        let g = write(
            &d,
            "g.yml",
            &format!(
                "{targets}pitr:\n  pg:\n    archive_dir: ./wal\n    base_dir: s3://bases/pg\n"
            ),
        );
        let c = Config::load(&g).unwrap();
        assert_eq!(
            c.pitr["pg"].base_dir.as_deref(),
            Some(Path::new("s3://bases/pg"))
        );
        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  pg:\n    archive_dir: ./wal\n    base_dir: s3://x/pg\n"),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("pitr.pg.base_dir: `s3://x/pg`"), "{e}");
        let g = write(
            &d,
            "g.yml",
            &format!("{targets}pitr:\n  pg:\n    archive_dir: ./wal\n    base_dir: ftp://h/x\n"),
        );
        let e = Config::load(&g).unwrap_err().to_string();
        assert!(e.contains("pitr.pg.base_dir: `ftp://h/x`"), "{e}");
    }
}
