//! Every clap type of the command line, and nothing else.
//!
//! Options shared by several commands live in `#[command(flatten)]` structs so that a flag
//! means the same thing everywhere. Global options are `global = true`: users put them
//! before or after the subcommand, as the contract promises.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mairie-dba",
    version,
    about = "Everyday DBA toolkit for the mairie database: migrations, CSV loads, backups, health",
    long_about = "mairie-dba runs the everyday work of a DBA on PostgreSQL, MySQL/MariaDB and SQL \
                  Server: versioned schema migrations, all-or-nothing CSV loads, and more.\n\n\
                  Results go to stdout; logs, progress and errors go to stderr.\n\
                  Exit codes: operations 0 done, 1 failed, 2 usage or configuration error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

pub use crate::audit::Severity;
pub use crate::load::options::{CsvOptions, DateOrder, EncodingArg};
pub use crate::output::Format;

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The global config file [default: config/config_global.yml]
    #[arg(
        short,
        long,
        global = true,
        env = "MAIRIE_DBA_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// A target named in the config (repeatable); default: every enabled target
    #[arg(short, long = "target", global = true, value_name = "NAME")]
    pub targets: Vec<String>,

    /// Output format: `table` for people, `json` prints exactly one JSON document on stdout;
    /// `nagios` (health, backup check) one plugin line with performance data; `junit` (audit)
    /// a JUnit XML report
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Less on stderr: errors only
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More on stderr: each step and statement
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// No progress bars (they are also off when stderr is not a terminal, and with --format json)
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Versioned SQL migrations of the mairie model (sql/<engine>/V001__name.sql …)
    #[command(subcommand)]
    Schema(SchemaCommand),

    /// Bulk-load CSV files into a table, each file all-or-nothing
    LoadCsv(LoadCsvArgs),

    /// Back up each target (`backup run`), list, verify and check the backups
    Backup(BackupArgs),

    /// Restore a backup (FILE or --latest), or run a restore drill (--drill)
    Restore(RestoreArgs),

    /// A pseudonymised copy of a backup (FILE or --latest) in a new database: the rules of
    /// `privacy:` applied, checked, and marked (also `restore --anonymize`)
    Anonymize(AnonymizeArgs),

    /// Health checks with Nagios exit codes: connectivity, connections, long queries, locks,
    /// space, cache, wraparound, sequences, replication, vacuum, backup age
    Health(HealthArgs),

    /// Security audit of each target (CIS-style checks), with remediation
    Audit(AuditArgs),

    /// Prometheus exporter (`serve`) or one scrape (`collect`, for node_exporter's textfile
    /// collector)
    #[command(subcommand)]
    Metrics(MetricsCommand),

    /// Housekeeping: statistics, vacuum, index and slow-query reports, journal clean-up
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),

    /// A site's agent: deposit the latest good backups and STATUS.json for the central monitor
    #[command(subcommand)]
    Agent(AgentCommand),

    /// The central backup monitor: judge what the sites' agents deposited, validate and
    /// promote it, keep the history (scan, status, jobs, history, serve)
    #[command(subcommand)]
    Monitor(MonitorCommand),

    /// Print a shell completion script (bash, zsh, fish, …) on stdout
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// PostgreSQL's archive_command (`wal push %p`) and restore_command (`wal fetch %f %p`):
    /// they need only a readable config (no password, no connection)
    #[command(subcommand)]
    Wal(WalCommand),

    /// Point-in-time recovery of PostgreSQL: archiving settings, the WAL archive's state
    #[command(subcommand)]
    Pitr(PitrCommand),

    /// Erase a person: their rows and every row that belongs to them (foreign keys followed
    /// transitively, the audit journal included), deleted or pseudonymised per `erasure:`, in
    /// one transaction, recorded without any personal value
    Erase(EraseArgs),

    /// Personal data: the inventory of personal columns, rows past their retention
    #[command(subcommand)]
    Privacy(PrivacyCommand),
}

#[derive(Debug, Clone, Args)]
pub struct EraseArgs {
    /// The table whose rows are the people, SCHEMA.TABLE (e.g. metier.citoyens)
    #[arg(long, value_name = "SCHEMA.TABLE")]
    pub table: String,

    /// The subject: COL=VALUE, the value bound as a parameter (e.g. id=123)
    #[arg(long = "where", value_name = "COL=VALUE")]
    pub r#where: String,

    /// Show the plan (tables, rows, delete or pseudonymize), change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Erase every matching row when several match (without it, several matches are an error)
    #[arg(long)]
    pub all_matching: bool,
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// The personal columns (privacy.rules) and their strategy, the rows older than each
    /// table's retention, and the purge `maintenance cleanup --privacy` would run
    Report,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,

    #[command(flatten)]
    pub run: BackupRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Dump each target, write its checksummed manifest, then apply retention
    Run(BackupRunArgs),
    /// The backups on disk: age, size, status, last verification
    List,
    /// Re-hash backups against their manifests and read them through with the engine's tool
    Verify(VerifyArgs),
    /// Is each target's latest backup present, recent and intact? (Nagios exit codes)
    Check(CheckArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct CheckArgs {
    /// Re-hash the latest backup of each target in full, instead of comparing its size and
    /// modification time with the manifest (the cost then grows with the backup's size)
    #[arg(long)]
    pub deep: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct BackupRunArgs {
    /// Wait for a running backup of the same target to finish instead of failing at once
    #[arg(long)]
    pub wait: bool,

    /// Apply retention only: no new backup
    #[arg(long)]
    pub prune_only: bool,

    /// With --prune-only: show what retention would delete, delete nothing
    #[arg(long, requires = "prune_only")]
    pub dry_run: bool,

    /// Then deposit the latest good backups and the site's STATUS.json for the central
    /// monitor, as `agent push` does (needs an `agent:` section)
    #[arg(long, conflicts_with = "prune_only")]
    pub push: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// A backup file (its manifest must sit beside it)
    #[arg(value_name = "FILE", conflicts_with_all = ["latest", "all"])]
    pub file: Option<PathBuf>,

    /// The latest backup of each target (the default)
    #[arg(long, conflicts_with = "all")]
    pub latest: bool,

    /// Every backup of each target
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup file to restore (its manifest must sit beside it)
    #[arg(value_name = "FILE", required_unless_present_any = ["latest", "drill"], conflicts_with_all = ["latest", "drill"])]
    pub file: Option<PathBuf>,

    /// Restore the latest good backup of the target
    #[arg(long, conflicts_with = "drill")]
    pub latest: bool,

    /// The database to restore into (created if absent) [default: the backup's own]
    #[arg(long, value_name = "DB", conflicts_with = "drill")]
    pub into: Option<String>,

    /// Replace the objects of a database that already holds tables
    #[arg(long, conflicts_with = "drill")]
    pub force: bool,

    /// Parallel restore jobs (PostgreSQL)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,

    /// Restore the latest good backup into a scratch database, compare every table's row
    /// count with the manifest, then drop it
    #[arg(long)]
    pub drill: bool,

    /// After restoring, compare every table's row count with the manifest (the drill always
    /// does)
    #[arg(long, conflicts_with = "drill")]
    pub compare: bool,

    /// Redis: prepare a new or empty data directory from the backup (dump.rdb and a minimal
    /// redis.conf) for a stopped server to start on; nothing is sent to any server
    #[arg(long, value_name = "DIR", conflicts_with_all = ["drill", "into", "force", "compare"])]
    pub into_dir: Option<PathBuf>,

    /// Make a pseudonymised copy (like `anonymize`): needs --into a new database
    #[arg(long, requires = "into", conflicts_with_all = ["drill", "force", "compare", "into_dir"])]
    pub anonymize: bool,

    /// With --anonymize: copy columns that look personal but have no rule, and list them
    #[arg(long, requires = "anonymize")]
    pub allow_unruled: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AnonymizeArgs {
    /// The backup file to copy (its manifest must sit beside it)
    #[arg(
        value_name = "FILE",
        required_unless_present = "latest",
        conflicts_with = "latest"
    )]
    pub file: Option<PathBuf>,

    /// Copy the latest good backup of the target
    #[arg(long)]
    pub latest: bool,

    /// The new database to make (an existing one is refused)
    #[arg(long, value_name = "DB")]
    pub into: String,

    /// Copy columns that look personal but have no rule, and list them
    #[arg(long)]
    pub allow_unruled: bool,

    /// Parallel restore jobs (PostgreSQL)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Run only this check (repeatable), e.g. --check connections --check locks. A check
    /// named here that does not apply to a target's engine is UNKNOWN there
    #[arg(long = "check", value_name = "NAME")]
    pub checks: Vec<String>,

    /// Warning threshold of a check, for every target, over the configuration's
    /// (repeatable), e.g. --warning connections=70 --warning long_queries=30s
    #[arg(long = "warning", value_name = "CHECK=VALUE")]
    pub warning: Vec<String>,

    /// Critical threshold of a check, for every target, over the configuration's
    /// (repeatable), e.g. --critical connections=90
    #[arg(long = "critical", value_name = "CHECK=VALUE")]
    pub critical: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// The lowest severity of a failed check that makes the audit CRITICAL (exit 2); failed
    /// checks below it make it WARNING (exit 1)
    #[arg(long, value_enum, default_value_t = Severity::High)]
    pub fail_on: Severity,

    /// Run only this check id (repeatable), e.g. --check PG-AUTH-01
    #[arg(long = "check", value_name = "ID")]
    pub checks: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Serve /metrics (Prometheus text, or OpenMetrics when asked) and /healthz over HTTP
    Serve {
        /// Address to listen on [default: metrics.listen of the config, 127.0.0.1:19187]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// TLS and basic-auth users, in the format of the Prometheus exporters' web
        /// configuration file (exporter-toolkit)
        #[arg(long = "web.config.file", value_name = "PATH")]
        web_config_file: Option<PathBuf>,
        /// Serve in clear text on an address other than loopback
        #[arg(long)]
        insecure_listen: bool,
    },
    /// One round of queries, printed, or written atomically to FILE (node_exporter textfile)
    Collect {
        /// Write here instead of stdout (atomically: a temporary file renamed over it)
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Deposit each target's latest good backup and its manifest, then the site's
    /// STATUS.json, last (run after `backup`)
    Push,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// One scan now: judge the due occurrences, validate and promote the deposits, record
    /// (exit code: Nagios, of the worst new status)
    Scan {
        /// Judge as if it were TIME (RFC 3339, or `YYYY-MM-DD HH:MM` in UTC)
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// Every expected job's current status, last OK, next due time and last restore drill
    Status {
        /// Only this job
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        /// Compute next due times as if it were TIME
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// The expected jobs and their next due time
    Jobs {
        /// Compute next due times as if it were TIME
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
    /// A job's judged occurrences, newest first, with its status changes
    History {
        /// The job's id
        job: String,
        /// At most this many occurrences
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
    },
    /// Scan every `scan_interval_minutes` and serve the dashboard, the JSON API, /health and
    /// /metrics until stopped (SIGTERM, Ctrl-C)
    Serve {
        /// Address to listen on [default: monitor.listen of the config, 127.0.0.1:8480]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// TLS and basic-auth users, in the format of the Prometheus exporters' web
        /// configuration file (exporter-toolkit)
        #[arg(long = "web.config.file", value_name = "PATH")]
        web_config_file: Option<std::path::PathBuf>,
        /// Serve in clear text on an address other than loopback
        #[arg(long)]
        insecure_listen: bool,
        /// Serve the page and API only; another process (cron's `monitor scan`) scans
        #[arg(long)]
        no_scan: bool,
    },
    /// Re-hash every promoted backup of the validated store against the size and SHA-256
    /// recorded at its promotion; a difference or a lost backup is recorded as the job's
    /// HASH_MISMATCH (exit code: Nagios)
    Verify {
        /// Only this job
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        /// Record the verification as made at TIME (as `scan --now`)
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Refresh planner statistics (ANALYZE, ANALYZE TABLE, UPDATE STATISTICS)
    Analyze(MaintenanceTables),
    /// Reclaim space and refresh statistics (VACUUM (ANALYZE), OPTIMIZE TABLE, index
    /// REORGANIZE/REBUILD by fragmentation on SQL Server)
    Vacuum {
        #[command(flatten)]
        tables: MaintenanceTables,
        /// VACUUM FULL (rewrites and locks each table) / rebuild every index
        #[arg(long)]
        full: bool,
    },
    /// Unused, duplicate, overlapping and invalid indexes, foreign keys without an index,
    /// bloat, fragmentation and missing indexes, each with the SQL to fix it
    IndexReport,
    /// The most expensive statements: calls, total and mean time, rows, normalised text
    SlowQueries {
        /// How many statements to show
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        top: u32,
    },
    /// Purge rows older than the configured age from the audit journal, in short batches
    Cleanup {
        /// Count what would be purged, delete nothing
        #[arg(long)]
        dry_run: bool,
        /// Override `maintenance.journal_retention_days`
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<u32>,
        /// Then purge the rows of personal-data tables older than their retention
        /// (`privacy.retention_years`, default 5), children first, in batches
        #[arg(long)]
        privacy: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct MaintenanceTables {
    /// Only this table, SCHEMA.TABLE (repeatable) [default: every table of the database]
    #[arg(long = "table", value_name = "SCHEMA.TABLE")]
    pub tables: Vec<String>,

    /// List what would run, run nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Apply the pending migrations in version order, each in its own transaction, then the
    /// repeatable ones (R__name.sql) that are new or changed
    Apply {
        #[command(flatten)]
        migrations: MigrationsArgs,

        /// List what would run, change nothing (with -v: print the SQL)
        #[arg(long)]
        dry_run: bool,
    },
    /// Every migration: applied, pending, modified since applied, outdated (a repeatable
    /// that will be re-applied), failed, missing or covered by the baseline
    Status {
        #[command(flatten)]
        migrations: MigrationsArgs,

        /// A check: exit 1 (WARNING) when anything is pending, modified, outdated or failed,
        /// 0 (OK) otherwise; 2 (CRITICAL) for an unreachable target; --format nagios allowed
        #[arg(long)]
        check: bool,
    },
    /// After a failed migration was fixed by hand: remove the failed rows of the history
    /// table and realign the checksums of applied migrations with the files
    Repair {
        #[command(flatten)]
        migrations: MigrationsArgs,

        /// Say what would change, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Adopt a database that already holds the schema: record a baseline at version N, so
    /// that the migrations up to N are taken as applied and never run
    Baseline {
        #[command(flatten)]
        migrations: MigrationsArgs,

        /// The last version the database already holds
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
        version: i64,

        /// The description of the baseline row
        #[arg(long, value_name = "TEXT", default_value = "baseline")]
        description: String,
    },
    /// Create the next migration file (V<next>__name.sql) for each target's engine; no
    /// database is contacted
    New {
        #[command(flatten)]
        migrations: MigrationsArgs,

        /// What the migration does, e.g. "add index demandes statut" (made into a file name)
        #[arg(value_name = "NAME")]
        name: String,

        /// A repeatable migration (R__name.sql), re-applied whenever it changes
        #[arg(long)]
        repeatable: bool,

        /// Start the file with the `-- mairie-dba: no-transaction` marker (for one statement
        /// such as CREATE INDEX CONCURRENTLY)
        #[arg(long)]
        no_transaction: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct MigrationsArgs {
    /// Directory holding one sub-directory of migrations per engine
    /// [default: sql/ beside the config's directory]
    #[arg(long, value_name = "DIR")]
    pub migrations_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct LoadCsvArgs {
    /// The destination table, SCHEMA.TABLE (e.g. metier.citoyens)
    #[arg(long, value_name = "SCHEMA.TABLE", required_unless_present = "all")]
    pub table: Option<String>,

    /// Load the demo datasets listed in the config (`datasets:`), in foreign-key order
    #[arg(long, conflicts_with_all = ["table", "files"])]
    pub all: bool,

    /// The CSV files to load, each in its own transaction
    #[arg(value_name = "FILE", required_unless_present = "all")]
    pub files: Vec<PathBuf>,

    #[command(flatten)]
    pub csv: CsvOptions,

    /// Empty the table first, in the same transaction as the load
    #[arg(long)]
    pub truncate: bool,

    /// Keep going past bad rows: write each (file, physical line, reason, record) to this
    /// CSV file, and commit a file's good rows if at most --max-errors were rejected
    #[arg(
        long,
        value_name = "PATH",
        requires = "max_errors",
        conflicts_with = "all"
    )]
    pub reject_file: Option<PathBuf>,

    /// With --reject-file: the most rows of one file that may be rejected; past it, nothing
    /// of that file is committed
    #[arg(long, value_name = "N", requires = "reject_file")]
    pub max_errors: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_after_the_command() {
        let cli = Cli::try_parse_from([
            "mairie-dba",
            "schema",
            "status",
            "--format",
            "json",
            "-t",
            "pg",
            "-c",
            "x.yml",
        ])
        .expect("parses");
        assert_eq!(cli.global.format, Format::Json);
        assert_eq!(cli.global.targets, vec!["pg".to_string()]);
        assert_eq!(cli.global.config, Some(PathBuf::from("x.yml")));
    }

    #[test]
    fn load_csv_needs_a_table_or_all() {
        assert!(Cli::try_parse_from(["mairie-dba", "load-csv", "a.csv"]).is_err());
        assert!(Cli::try_parse_from(["mairie-dba", "load-csv", "--all"]).is_ok());
        assert!(
            Cli::try_parse_from(["mairie-dba", "load-csv", "--all", "--table", "a.b"]).is_err()
        );
    }
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Archive one WAL file (archive_command = '… wal push %p'): hashed, compressed, fsynced,
    /// published without ever replacing a file. Exit 0 archived (or already there, same
    /// content), 1 failed, 2 configuration error
    Push {
        /// The file, relative to the current directory (PostgreSQL's %p)
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Restore one WAL file (restore_command = '… wal fetch %f %p'), its hash checked before
    /// it is handed over. Exit 0 fetched, 1 not in the archive, 255 stop recovery (corrupt,
    /// ambiguous or unreadable archive, configuration error)
    Fetch {
        /// The WAL file name (PostgreSQL's %f)
        #[arg(value_name = "NAME")]
        name: String,
        /// Where to write it, relative to the current directory (PostgreSQL's %p)
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PitrCommand {
    /// Check wal_level, archive_mode, archive_command and archive_timeout; print what to
    /// change, or change it with --apply (ALTER SYSTEM, then a reload or a restart)
    Setup {
        /// Set the settings that need changing with ALTER SYSTEM (needs a superuser)
        #[arg(long)]
        apply: bool,
    },
    /// Take a base backup with pg_basebackup (tar, WAL included), compressed and hashed as it
    /// streams, every file checked against the server's backup manifest; then keep the
    /// newest `keep_base` and delete the WAL only older ones needed
    BaseBackup(BaseBackupArgs),
    /// The base backups: when each ended, its WAL range, size, and the archive's window
    List,
    /// Is archiving working? pg_stat_archiver failures, age of the last archived segment,
    /// the .ready backlog, the newest segments really in the archive (Nagios exit codes)
    Check,
    /// Read the archive back: every file's hash, the gaps of each timeline, the base
    /// backups, and the window one can restore to
    Verify,
    /// Restore a base backup into an empty directory and replay the archive to a moment
    Restore(PitrRestoreArgs),
    /// Restore to a point created now into a throwaway server on a free port, compare the
    /// row counts read from production at that point, and remove everything
    Drill(PitrDrillArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct BaseBackupArgs {
    /// Wait for a running base backup of the same target to finish instead of failing
    #[arg(long)]
    pub wait: bool,

    /// Apply retention only: no new base backup
    #[arg(long)]
    pub prune_only: bool,

    /// With --prune-only: show what retention would delete, delete nothing
    #[arg(long, requires = "prune_only")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["target_time", "target_lsn", "target_name", "latest"])))]
pub struct PitrRestoreArgs {
    /// Replay up to this moment: "2026-12-06 17:59:00+01" (a time without offset is local)
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,

    /// Replay up to this WAL location (as pg_current_wal_lsn() prints it: 0/3000060)
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,

    /// Replay up to this restore point (pg_create_restore_point)
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,

    /// Replay everything the archive holds
    #[arg(long)]
    pub latest: bool,

    /// The timeline to follow: a number, or `latest` (the default: the newest one that
    /// branches from the base backup's)
    #[arg(long, value_name = "TLI")]
    pub timeline: Option<String>,

    /// What the server does once the target is reached
    #[arg(long, value_name = "ACTION", default_value = "promote", value_parser = ["promote", "pause", "shutdown"])]
    pub target_action: String,

    /// The data directory to create (absent or empty)
    #[arg(long, value_name = "DIR")]
    pub pgdata: PathBuf,

    /// Restore this base backup (a `.tar.zst` of the target's base_dir) instead of the newest
    /// one that ended before the target
    #[arg(long, value_name = "FILE")]
    pub backup: Option<PathBuf>,

    /// Start the restored server and wait until recovery has ended (or say why it stopped)
    #[arg(long)]
    pub start: bool,

    /// The restored server's port [default with --start: a free one]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Seconds --start waits for recovery to end
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub timeout: u64,

    /// Leave the backup's archiving settings on in the copy, for a copy that becomes the new
    /// production: its new timeline (history file, segments) is archived with the rest.
    /// Without it archiving is off, so a restored server never writes into the archive
    #[arg(long)]
    pub keep_archiving: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PitrDrillArgs {
    /// Seconds the drill waits for the archive and for recovery
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,

    /// Keep the restored data directory (stopped) for inspection, and print where it is
    #[arg(long)]
    pub keep: bool,
}
