//! Every metric family of the exporter, written once: name, help, label names and Prometheus
//! type. The engines' catalogues fill them ([`super::Sample`]); the core registers them and
//! renders the exposition. A family an engine cannot measure is simply absent for its
//! targets; a label value from a fixed set is listed beside its family, so that the
//! dashboards' tests can refuse a selector on a value the exporter never sets.
//!
//! Names follow Prometheus' conventions: base units (`_seconds`, `_bytes`), `_total` on
//! counters and only on counters, `_ratio` for a 0–1 fraction, `_timestamp_seconds` for a
//! Unix time. Every family of a target has `target` as its first label.

use anyhow::{Context, Result};
use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec};
use prometheus::{Opts, Registry};

/// The Prometheus type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// A family of the exposition.
#[derive(Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    pub kind: Kind,
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family {
        name,
        help,
        labels,
        kind: Kind::Gauge,
    }
}

const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        help,
        labels,
        kind: Kind::Counter,
    }
}

/// A family registered in a per-scrape registry: a gauge set, or a counter whose value the
/// server keeps (added once to a fresh counter).
#[derive(Clone)]
pub enum Registered {
    Gauge(GaugeVec),
    Counter(CounterVec),
}

impl Registered {
    /// Sets the series of `values` (every label, `target` first) to `value`. A counter never
    /// goes negative: a negative value is left out.
    pub fn set(&self, values: &[&str], value: f64) -> Result<()> {
        match self {
            Registered::Gauge(g) => g.get_metric_with_label_values(values)?.set(value),
            Registered::Counter(c) if value >= 0.0 => {
                c.get_metric_with_label_values(values)?.inc_by(value)
            }
            Registered::Counter(_) => {}
        }
        Ok(())
    }
}

impl Family {
    /// Registers a gauge or a counter family in `registry`.
    pub fn register(&self, registry: &Registry) -> Result<Registered> {
        let opts = Opts::new(self.name, self.help);
        let r = match self.kind {
            Kind::Gauge => {
                let g = GaugeVec::new(opts, self.labels)?;
                registry.register(Box::new(g.clone()))?;
                Registered::Gauge(g)
            }
            Kind::Counter => {
                let c = CounterVec::new(opts, self.labels)?;
                registry.register(Box::new(c.clone()))?;
                Registered::Counter(c)
            }
            Kind::Histogram => anyhow::bail!("{} is a histogram", self.name),
        };
        Ok(r)
    }

    /// A counter the exporter itself keeps, for its lifetime.
    pub fn register_own_counter(&self, registry: &Registry) -> Result<IntCounterVec> {
        anyhow::ensure!(self.kind == Kind::Counter, "{} is not a counter", self.name);
        IntCounterVec::new(Opts::new(self.name, self.help), self.labels)
            .and_then(|c| registry.register(Box::new(c.clone())).map(|()| c))
            .with_context(|| format!("registering {}", self.name))
    }

    /// The same, without labels: one series.
    pub fn register_own_unlabelled(&self, registry: &Registry) -> Result<IntCounter> {
        anyhow::ensure!(
            self.kind == Kind::Counter && self.labels.is_empty(),
            "{} is not a counter without labels",
            self.name
        );
        IntCounter::new(self.name, self.help)
            .and_then(|c| registry.register(Box::new(c.clone())).map(|()| c))
            .with_context(|| format!("registering {}", self.name))
    }

    pub fn register_histogram(&self, registry: &Registry, buckets: &[f64]) -> Result<HistogramVec> {
        anyhow::ensure!(
            self.kind == Kind::Histogram,
            "{} is not a histogram",
            self.name
        );
        HistogramVec::new(
            HistogramOpts::new(self.name, self.help).buckets(buckets.to_vec()),
            self.labels,
        )
        .and_then(|h| registry.register(Box::new(h.clone())).map(|()| h))
        .with_context(|| format!("registering {}", self.name))
    }
}

// --- the exporter's view of each target ---------------------------------------------------

pub const UP: Family = gauge(
    "mairie_dba_up",
    "1 if the target's server could be reached (connected) in the last round, else 0. A family that fails is reported by mairie_dba_scrape_error, not here.",
    &["target", "engine"],
);
pub const SCRAPE_DURATION: Family = gauge(
    "mairie_dba_scrape_duration_seconds",
    "Time the target's data took to gather.",
    &["target"],
);
pub const SCRAPE_ERROR: Family = gauge(
    "mairie_dba_scrape_error",
    "1 if this family (or probe:NAME, custom:NAME) failed, timed out or hit a lock timeout in the last round, and its series are absent; 0 if it was measured.",
    &["target", "family"],
);
pub const ACTIVITY_VISIBILITY: Family = gauge(
    "mairie_dba_activity_visibility",
    "1 if the exporter's role sees every session, 0 if only its own (the session families are then left out).",
    &["target"],
);

// --- server ------------------------------------------------------------------------------------

pub const SERVER_INFO: Family = gauge(
    "mairie_dba_server_info",
    "Server version, as a label; the value is 1.",
    &["target", "engine", "version"],
);
pub const SERVER_START_TIME: Family = gauge(
    "mairie_dba_server_start_time_seconds",
    "When the server started, in Unix time.",
    &["target"],
);
pub const CONNECTIONS_MAX: Family = gauge(
    "mairie_dba_connections_max",
    "Connections the server accepts.",
    &["target"],
);
pub const DATABASE_SIZE: Family = gauge(
    "mairie_dba_database_size_bytes",
    "Size of the target's database.",
    &["target", "database"],
);

// --- sessions (read from the activity views: only with full visibility) ---------------------

pub const CONNECTIONS: Family = gauge(
    "mairie_dba_connections",
    "Client sessions by state.",
    &["target", "state"],
);
pub const LONGEST_TRANSACTION: Family = gauge(
    "mairie_dba_longest_transaction_seconds",
    "Age of the oldest open transaction.",
    &["target"],
);
pub const THREADS: Family = gauge(
    "mairie_dba_threads",
    "Server threads by state (MySQL: Threads_connected, Threads_running, Threads_cached).",
    &["target", "state"],
);
pub const THREADS_CREATED: Family = counter(
    "mairie_dba_threads_created_total",
    "Threads created to handle connections (MySQL Threads_created).",
    &["target"],
);

// --- per database --------------------------------------------------------------------------

pub const TRANSACTIONS: Family = counter(
    "mairie_dba_transactions_total",
    "Transactions by outcome (commit, rollback; SQL Server: started). database is empty where the server counts them server-wide.",
    &["target", "database", "outcome"],
);
pub const DEADLOCKS: Family = counter(
    "mairie_dba_deadlocks_total",
    "Deadlocks detected. database is empty where the server counts them server-wide.",
    &["target", "database"],
);
pub const RECOVERY_CONFLICTS: Family = counter(
    "mairie_dba_recovery_conflicts_total",
    "Queries cancelled by recovery conflicts on a standby (PostgreSQL).",
    &["target", "database"],
);
pub const TEMP_BYTES: Family = counter(
    "mairie_dba_temp_bytes_total",
    "Bytes written to temporary files by queries (PostgreSQL).",
    &["target", "database"],
);
pub const TEMP_FILES: Family = counter(
    "mairie_dba_temp_files_total",
    "Temporary files created by queries (PostgreSQL).",
    &["target", "database"],
);
pub const XID_AGE: Family = gauge(
    "mairie_dba_database_xid_age",
    "Age of the database's oldest unfrozen transaction id (age(datfrozenxid)); wraparound at 2^31.",
    &["target", "database"],
);
pub const MXID_AGE: Family = gauge(
    "mairie_dba_database_mxid_age",
    "Age of the database's oldest multixact id (mxid_age(datminmxid)).",
    &["target", "database"],
);

// --- checkpoints, background writer, WAL, archiving -------------------------------------------

pub const CHECKPOINTS: Family = counter(
    "mairie_dba_checkpoints_total",
    "Checkpoints by trigger: timed (checkpoint_timeout) or requested.",
    &["target", "trigger"],
);
pub const CHECKPOINT_WRITE: Family = counter(
    "mairie_dba_checkpoint_write_seconds_total",
    "Time checkpoints spent writing files.",
    &["target"],
);
pub const CHECKPOINT_SYNC: Family = counter(
    "mairie_dba_checkpoint_sync_seconds_total",
    "Time checkpoints spent syncing files to disk.",
    &["target"],
);
pub const BUFFERS_WRITTEN: Family = counter(
    "mairie_dba_buffers_written_total",
    "Shared buffers written, by writer: checkpointer, bgwriter, backend (backend: before PostgreSQL 17).",
    &["target", "writer"],
);
pub const BGWRITER_STOPS: Family = counter(
    "mairie_dba_bgwriter_maxwritten_clean_total",
    "Times the background writer stopped a cleaning scan for writing too many buffers.",
    &["target"],
);
pub const BUFFERS_ALLOCATED: Family = counter(
    "mairie_dba_buffers_allocated_total",
    "Shared buffers allocated.",
    &["target"],
);
pub const WAL_BYTES: Family = counter(
    "mairie_dba_wal_bytes_total",
    "WAL position in bytes: written (primary) or replayed (standby).",
    &["target"],
);
pub const WAL_SIZE: Family = gauge(
    "mairie_dba_wal_size_bytes",
    "Size of the WAL directory (pg_ls_waldir; needs pg_monitor, absent otherwise).",
    &["target"],
);
pub const ARCHIVED: Family = counter(
    "mairie_dba_archiver_archived_total",
    "WAL files archived by archive_command.",
    &["target"],
);
pub const ARCHIVE_FAILED: Family = counter(
    "mairie_dba_archiver_failed_total",
    "Failed attempts to archive a WAL file.",
    &["target"],
);
pub const LAST_ARCHIVED_AGE: Family = gauge(
    "mairie_dba_archiver_last_archived_age_seconds",
    "Time since the last WAL file was archived (absent when none ever was).",
    &["target"],
);
pub const ARCHIVER_FAILING: Family = gauge(
    "mairie_dba_archiver_failing",
    "1 if the last archiving attempt failed (its failure is more recent than the last success).",
    &["target"],
);
pub const ARCHIVER_READY_FILES: Family = gauge(
    "mairie_dba_archiver_ready_files",
    "WAL files waiting to be archived (.ready; pg_ls_archive_statusdir, PostgreSQL 12+, needs pg_monitor, absent otherwise).",
    &["target"],
);
pub const REPLICATION_LAG: Family = gauge(
    "mairie_dba_replication_lag_seconds",
    "Replication delay (replica: behind its primary; primary: slowest standby).",
    &["target"],
);
pub const SLOT_ACTIVE: Family = gauge(
    "mairie_dba_replication_slot_active",
    "1 if a client is using the replication slot.",
    &["target", "slot", "slot_type"],
);
pub const SLOT_RETAINED: Family = gauge(
    "mairie_dba_replication_slot_retained_wal_bytes",
    "WAL the slot keeps on disk (current position minus the slot's restart_lsn).",
    &["target", "slot", "slot_type"],
);

// --- key tables ------------------------------------------------------------------------------

pub const TABLE_SIZE: Family = gauge(
    "mairie_dba_table_size_bytes",
    "Total size of a key table, indexes included.",
    &["target", "table"],
);
pub const TABLE_ROWS: Family = gauge(
    "mairie_dba_table_rows_estimated",
    "Estimated rows of a key table (planner statistics).",
    &["target", "table"],
);
pub const TABLE_SCANS: Family = counter(
    "mairie_dba_table_scans_total",
    "Scans of a key table by method: seq (whole table) or index.",
    &["target", "table", "method"],
);
pub const TABLE_ROWS_READ: Family = counter(
    "mairie_dba_table_rows_read_total",
    "Rows of a key table read, by method: seq (whole-table scans) or index.",
    &["target", "table", "method"],
);
pub const TABLE_ROWS_WRITTEN: Family = counter(
    "mairie_dba_table_rows_written_total",
    "Rows of a key table inserted, updated or deleted.",
    &["target", "table", "op"],
);
pub const TABLE_DEAD_ROWS: Family = gauge(
    "mairie_dba_table_dead_rows",
    "Dead row versions of a key table, waiting for vacuum (PostgreSQL).",
    &["target", "table"],
);
pub const TABLE_LAST_VACUUM: Family = gauge(
    "mairie_dba_table_last_vacuum_timestamp_seconds",
    "Last manual VACUUM of a key table, in Unix time (absent: never since the statistics reset).",
    &["target", "table"],
);
pub const TABLE_LAST_AUTOVACUUM: Family = gauge(
    "mairie_dba_table_last_autovacuum_timestamp_seconds",
    "Last autovacuum of a key table, in Unix time (absent: never since the statistics reset).",
    &["target", "table"],
);
pub const TABLE_LAST_ANALYZE: Family = gauge(
    "mairie_dba_table_last_analyze_timestamp_seconds",
    "Last manual ANALYZE of a key table, in Unix time (absent: never since the statistics reset).",
    &["target", "table"],
);
pub const TABLE_LAST_AUTOANALYZE: Family = gauge(
    "mairie_dba_table_last_autoanalyze_timestamp_seconds",
    "Last autoanalyze of a key table, in Unix time (absent: never since the statistics reset).",
    &["target", "table"],
);

// --- locks, sequences -------------------------------------------------------------------------

pub const LOCKS: Family = gauge(
    "mairie_dba_locks",
    "Locks held (granted=\"true\") or awaited (granted=\"false\"), by mode.",
    &["target", "mode", "granted"],
);
pub const LOCKS_WAITING: Family = gauge(
    "mairie_dba_locks_waiting",
    "Lock requests waiting right now (MySQL: InnoDB row lock waits).",
    &["target"],
);
pub const LOCK_WAITS: Family = counter(
    "mairie_dba_lock_waits_total",
    "Lock requests that had to wait (MySQL: InnoDB row locks; SQL Server: every lock).",
    &["target"],
);
pub const LOCK_WAIT_TIME: Family = counter(
    "mairie_dba_lock_wait_seconds_total",
    "Time spent waiting for those locks.",
    &["target"],
);
pub const SEQUENCE_USED: Family = gauge(
    "mairie_dba_sequence_used_ratio",
    "Share of a sequence's (or AUTO_INCREMENT or identity column's) range already used, 0 to 1.",
    &["target", "sequence"],
);

// --- backups, read from the manifests whether or not the server answers ----------------------

pub const BACKUP_LAST_SUCCESS: Family = gauge(
    "mairie_dba_backup_last_success_timestamp_seconds",
    "End of the latest good backup, in Unix time.",
    &["target"],
);
pub const BACKUP_LAST_SIZE: Family = gauge(
    "mairie_dba_backup_last_size_bytes",
    "Size of the latest good backup.",
    &["target"],
);
pub const BACKUP_LAST_DURATION: Family = gauge(
    "mairie_dba_backup_last_duration_seconds",
    "Duration of the latest good backup.",
    &["target"],
);
pub const BACKUP_STATUS: Family = gauge(
    "mairie_dba_backup_status",
    "1 for the state `backup check` finds (OK, MISSING, FAILED, HASH_MISMATCH, STALE), 0 for the others.",
    &["target", "state"],
);

// --- WAL archive of a target with a `pitr:` section, judged as `pitr check` does ----------

pub const PITR_ARCHIVE_MISSING: Family = gauge(
    "mairie_dba_pitr_archive_missing_segments",
    "WAL files the server reports archived (the last one and the few segments before it) that the archive directory does not hold; absent when it cannot be read.",
    &["target"],
);
pub const PITR_STATUS: Family = gauge(
    "mairie_dba_pitr_status",
    "1 for the status `pitr check` finds (OK, WARNING, CRITICAL, UNKNOWN), 0 for the others.",
    &["target", "state"],
);

// --- Redis: memory, keyspace, clients, persistence, replication (named as redis_exporter's,
// with the mairie_dba_ prefix: mairie_dba_memory_used_bytes is its redis_memory_used_bytes) --

pub const MEMORY_USED: Family = gauge(
    "mairie_dba_memory_used_bytes",
    "Memory the server has allocated for its data and buffers (Redis used_memory).",
    &["target"],
);
pub const MEMORY_MAX: Family = gauge(
    "mairie_dba_memory_max_bytes",
    "The server's memory limit (Redis maxmemory); 0 when none is set.",
    &["target"],
);
pub const MEMORY_RSS: Family = gauge(
    "mairie_dba_memory_used_rss_bytes",
    "Resident memory of the server process as the OS sees it (Redis used_memory_rss).",
    &["target"],
);
pub const MEM_FRAGMENTATION: Family = gauge(
    "mairie_dba_mem_fragmentation_ratio",
    "Resident memory over memory in use (Redis mem_fragmentation_ratio; 1 is none, under 1 is swapping: not a 0-1 fraction).",
    &["target"],
);
pub const KEYSPACE_HITS: Family = counter(
    "mairie_dba_keyspace_hits_total",
    "Key lookups that found their key (Redis keyspace_hits).",
    &["target"],
);
pub const KEYSPACE_MISSES: Family = counter(
    "mairie_dba_keyspace_misses_total",
    "Key lookups that did not find their key (Redis keyspace_misses).",
    &["target"],
);
pub const EVICTED_KEYS: Family = counter(
    "mairie_dba_evicted_keys_total",
    "Keys evicted to stay under the memory limit (Redis evicted_keys).",
    &["target"],
);
pub const EXPIRED_KEYS: Family = counter(
    "mairie_dba_expired_keys_total",
    "Keys removed when their time to live ran out (Redis expired_keys).",
    &["target"],
);
pub const REJECTED_CONNECTIONS: Family = counter(
    "mairie_dba_rejected_connections_total",
    "Connections refused because the client limit was reached (Redis rejected_connections).",
    &["target"],
);
pub const COMMANDS_PROCESSED: Family = counter(
    "mairie_dba_commands_processed_total",
    "Commands the server has run (Redis total_commands_processed).",
    &["target"],
);
pub const CONNECTED_CLIENTS: Family = gauge(
    "mairie_dba_connected_clients",
    "Client connections, replicas aside (Redis connected_clients); the limit is mairie_dba_connections_max.",
    &["target"],
);
pub const BLOCKED_CLIENTS: Family = gauge(
    "mairie_dba_blocked_clients",
    "Clients waiting in a blocking command (Redis blocked_clients: BLPOP, XREAD, WAIT).",
    &["target"],
);
pub const DB_KEYS: Family = gauge(
    "mairie_dba_db_keys",
    "Keys of a Redis database (database is db0, db1 ...).",
    &["target", "database"],
);
pub const DB_KEYS_EXPIRING: Family = gauge(
    "mairie_dba_db_keys_expiring",
    "Keys of a Redis database with a time to live.",
    &["target", "database"],
);
pub const RDB_LAST_SAVE: Family = gauge(
    "mairie_dba_rdb_last_save_timestamp_seconds",
    "When the last snapshot succeeded (or the server started), in Unix time (Redis rdb_last_save_time).",
    &["target"],
);
pub const RDB_CHANGES: Family = gauge(
    "mairie_dba_rdb_changes_since_last_save",
    "Writes not yet in a snapshot (Redis rdb_changes_since_last_save).",
    &["target"],
);
pub const RDB_LAST_BGSAVE_OK: Family = gauge(
    "mairie_dba_rdb_last_bgsave_ok",
    "1 if the last snapshot (BGSAVE) succeeded, 0 if it failed (Redis rdb_last_bgsave_status).",
    &["target"],
);
pub const AOF_ENABLED: Family = gauge(
    "mairie_dba_aof_enabled",
    "1 if the append-only file is on (Redis aof_enabled).",
    &["target"],
);
pub const AOF_LAST_WRITE_OK: Family = gauge(
    "mairie_dba_aof_last_write_ok",
    "1 if the last write to the append-only file succeeded, 0 if it failed (Redis aof_last_write_status).",
    &["target"],
);
pub const REPLICATION_ROLE: Family = gauge(
    "mairie_dba_replication_role",
    "1 for the server's role (primary, replica), 0 for the other (Redis role).",
    &["target", "role"],
);
pub const CONNECTED_REPLICAS: Family = gauge(
    "mairie_dba_connected_replicas",
    "Replicas connected to this primary (Redis connected_slaves).",
    &["target"],
);
pub const REPLICA_LINK_UP: Family = gauge(
    "mairie_dba_replica_link_up",
    "On a replica: 1 if its link to the primary is up (Redis master_link_status).",
    &["target"],
);

// --- the exporter's own, kept for its lifetime -------------------------------------------------

pub const PROBE_DURATION: Family = Family {
    name: "mairie_dba_probe_duration_seconds",
    help: "Response time of the probe queries (metrics.probes), one observation per round.",
    labels: &["target", "probe"],
    kind: Kind::Histogram,
};
pub const SCRAPES: Family = counter(
    "mairie_dba_scrapes_total",
    "Scrapes served by this exporter.",
    &[],
);
pub const SCRAPE_ERRORS: Family = counter(
    "mairie_dba_scrape_errors_total",
    "Rounds of a target that could not reach it or in which a family failed.",
    &["target"],
);

/// The families rebuilt at each scrape (the exporter's own aside), in exposition order.
pub const PER_SCRAPE: &[&Family] = &[
    &UP,
    &SCRAPE_DURATION,
    &SCRAPE_ERROR,
    &ACTIVITY_VISIBILITY,
    &SERVER_INFO,
    &SERVER_START_TIME,
    &CONNECTIONS_MAX,
    &DATABASE_SIZE,
    &CONNECTIONS,
    &LONGEST_TRANSACTION,
    &THREADS,
    &THREADS_CREATED,
    &TRANSACTIONS,
    &DEADLOCKS,
    &RECOVERY_CONFLICTS,
    &TEMP_BYTES,
    &TEMP_FILES,
    &XID_AGE,
    &MXID_AGE,
    &CHECKPOINTS,
    &CHECKPOINT_WRITE,
    &CHECKPOINT_SYNC,
    &BUFFERS_WRITTEN,
    &BGWRITER_STOPS,
    &BUFFERS_ALLOCATED,
    &WAL_BYTES,
    &WAL_SIZE,
    &ARCHIVED,
    &ARCHIVE_FAILED,
    &LAST_ARCHIVED_AGE,
    &ARCHIVER_FAILING,
    &ARCHIVER_READY_FILES,
    &REPLICATION_LAG,
    &SLOT_ACTIVE,
    &SLOT_RETAINED,
    &TABLE_SIZE,
    &TABLE_ROWS,
    &TABLE_SCANS,
    &TABLE_ROWS_READ,
    &TABLE_ROWS_WRITTEN,
    &TABLE_DEAD_ROWS,
    &TABLE_LAST_VACUUM,
    &TABLE_LAST_AUTOVACUUM,
    &TABLE_LAST_ANALYZE,
    &TABLE_LAST_AUTOANALYZE,
    &LOCKS,
    &LOCKS_WAITING,
    &LOCK_WAITS,
    &LOCK_WAIT_TIME,
    &SEQUENCE_USED,
    &BACKUP_LAST_SUCCESS,
    &BACKUP_LAST_SIZE,
    &BACKUP_LAST_DURATION,
    &BACKUP_STATUS,
    &PITR_ARCHIVE_MISSING,
    &PITR_STATUS,
    &MEMORY_USED,
    &MEMORY_MAX,
    &MEMORY_RSS,
    &MEM_FRAGMENTATION,
    &KEYSPACE_HITS,
    &KEYSPACE_MISSES,
    &EVICTED_KEYS,
    &EXPIRED_KEYS,
    &REJECTED_CONNECTIONS,
    &COMMANDS_PROCESSED,
    &CONNECTED_CLIENTS,
    &BLOCKED_CLIENTS,
    &DB_KEYS,
    &DB_KEYS_EXPIRING,
    &RDB_LAST_SAVE,
    &RDB_CHANGES,
    &RDB_LAST_BGSAVE_OK,
    &AOF_ENABLED,
    &AOF_LAST_WRITE_OK,
    &REPLICATION_ROLE,
    &CONNECTED_REPLICAS,
    &REPLICA_LINK_UP,
];

/// The session states of [`CONNECTIONS`], which every engine's catalogue maps its own onto.
pub const SESSION_STATES: [&str; 4] = ["active", "idle", "idle_in_transaction", "other"];

/// The `state` values of [`BACKUP_STATUS`], each present at every scrape.
pub const BACKUP_STATES: [&str; 5] = ["OK", "MISSING", "FAILED", "HASH_MISMATCH", "STALE"];

/// The `state` values of [`PITR_STATUS`], each present at every round that judged the archive.
pub const PITR_STATES: [&str; 4] = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

/// The `role` values of [`REPLICATION_ROLE`], each present at every scrape of a Redis target.
pub const REPLICATION_ROLES: [&str; 2] = ["primary", "replica"];

/// PostgreSQL's table-level lock modes, each present in [`LOCKS`] (zero when none), as
/// postgres_exporter does, so that a graph does not lose its series when locks come and go.
pub const PG_LOCK_MODES: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut all: Vec<&Family> = PER_SCRAPE.to_vec();
        all.extend([&PROBE_DURATION, &SCRAPES, &SCRAPE_ERRORS]);
        let mut names = std::collections::BTreeSet::new();
        for f in &all {
            assert!(names.insert(f.name), "{} twice", f.name);
            assert!(f.name.starts_with("mairie_dba_"), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}: `_total` is for counters, and every counter has it",
                f.name
            );
            if f.name != SCRAPES.name {
                assert_eq!(f.labels.first(), Some(&"target"), "{}", f.name);
            }
            assert!(f.help.ends_with('.') || f.help.ends_with(')'), "{}", f.name);
        }
    }

    #[test]
    fn every_family_registers_once() {
        let r = Registry::new();
        for f in PER_SCRAPE {
            f.register(&r).unwrap();
        }
        PROBE_DURATION.register_histogram(&r, &[1.0]).unwrap();
        SCRAPES.register_own_unlabelled(&r).unwrap();
        SCRAPE_ERRORS.register_own_counter(&r).unwrap();
        assert!(SCRAPE_ERRORS
            .register_own_unlabelled(&Registry::new())
            .is_err());
        assert!(PROBE_DURATION.register(&Registry::new()).is_err());
    }
}
