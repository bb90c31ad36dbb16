//! The Prometheus exporter: rounds of probes per target, cached and never piled up, and
//! their rendering in the Prometheus text format (or OpenMetrics when asked).
//!
//! Sparing the database is the point. Each target has one connection, kept between rounds
//! and reopened only after an error. A round runs in its own task, one at a time per target:
//! scrapes arriving meanwhile wait for that round instead of starting another, and scrapes
//! within `min_interval` of the last round reuse it, so a hundred scrapers cost one round.
//!
//! Telling the truth is the other point. A round is a series of probes, one per family group
//! ([`Group`]), each run through [`Conn::probe`] within a budget (`family_timeout`, and what
//! is left of `scrape_timeout`) on a session that gives up on any lock after the target's
//! `lock_timeout`: a family that fails, times out or meets a lock is absent from the
//! exposition and `mairie_dba_scrape_error{family}` says so, while the others are reported.
//! `mairie_dba_up` is 0 only when the server cannot be reached. Families that read other
//! sessions' activity are left out, and `mairie_dba_activity_visibility` is 0, when the
//! exporter's role sees only its own sessions: "1 active session" would be a lie. A scrape
//! that cannot wait for the end of a round reports the families measured so far.
//!
//! This module is the engine-free core: rounds, their scheduling and the exposition. The
//! families themselves are `families.rs`; what each probe asks a server is that engine's
//! catalogue (`postgres.rs`, `mysql.rs`, `mssql.rs`, `redis.rs`), reached through
//! [`engine::Visitor`].

pub mod families;
pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod server;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use prometheus::TextEncoder;
use prometheus::{Encoder, GaugeVec, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::{watch, Mutex};

use crate::backup;
use crate::backup::check::judge;
use crate::catalog::TableRef;
use crate::config::{Config, CustomKind, CustomMetric, MetricsSection, ProbeQuery, Target};
use crate::engine::{self, Conn, DbError, Driver, Visibility};
use crate::log::Log;
use families::Family;

/// A group of families measured by one probe: its name is the `family` label of
/// `mairie_dba_scrape_error`. Each engine's catalogue lists the groups it measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// Version, start time, connection limit.
    Server,
    /// Size of the target's database.
    DatabaseSize,
    /// Per-database transactions, deadlocks, conflicts, temporary files (PostgreSQL).
    DatabaseStats,
    /// Server-wide status counters (MySQL `SHOW GLOBAL STATUS`).
    Status,
    /// Performance counters (SQL Server `sys.dm_os_performance_counters`).
    Counters,
    /// Sessions by state and the longest transaction: the activity views.
    Sessions,
    /// Replication delay.
    Replication,
    /// Checkpoints and background writer (PostgreSQL).
    Checkpoints,
    /// WAL position and size (PostgreSQL).
    Wal,
    /// WAL archiving (PostgreSQL).
    Archiver,
    /// The WAL archive of a target with a `pitr:` section, judged as `pitr check` does.
    Pitr,
    /// Replication slots (PostgreSQL).
    ReplicationSlots,
    /// Key tables' sizes and estimated rows: opening a table waits for its lock.
    TableSizes,
    /// Key tables' access statistics, vacuum and analyze times: no table lock.
    TableStats,
    /// Locks by mode and lock waits.
    Locks,
    /// Sequence, AUTO_INCREMENT and identity headroom.
    Sequences,
    /// Transaction id age of every database (PostgreSQL).
    Wraparound,
    /// Client connections and their limit (Redis `INFO clients`).
    Clients,
    /// Memory in use, its limit and fragmentation (Redis `INFO memory`).
    Memory,
    /// Keys per database (Redis `INFO keyspace`).
    Keyspace,
    /// Snapshots and the append-only file (Redis `INFO persistence`).
    Persistence,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Server => "server",
            Group::DatabaseSize => "database_size",
            Group::DatabaseStats => "database_stats",
            Group::Status => "status",
            Group::Counters => "counters",
            Group::Sessions => "sessions",
            Group::Replication => "replication",
            Group::Checkpoints => "checkpoints",
            Group::Wal => "wal",
            Group::Archiver => "archiver",
            Group::Pitr => "pitr",
            Group::ReplicationSlots => "replication_slots",
            Group::TableSizes => "table_sizes",
            Group::TableStats => "table_stats",
            Group::Locks => "locks",
            Group::Sequences => "sequences",
            Group::Wraparound => "wraparound",
            Group::Clients => "clients",
            Group::Memory => "memory",
            Group::Keyspace => "keyspace",
            Group::Persistence => "persistence",
        }
    }

    /// Whether it reads other sessions' activity, which a role without the engine's
    /// monitoring grant does not see whole ([`Visibility`]).
    pub fn reads_activity(self) -> bool {
        matches!(self, Group::Sessions)
    }
}

/// A group the exporter's role may not measure at all (a missing grant, not a failure): it
/// is left out like the session families without full visibility, and the grant that would
/// measure it is logged once.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {grant}")]
pub struct NotGranted {
    /// What is left out.
    pub what: String,
    /// The statement that would measure it.
    pub grant: String,
}

/// The `family` label of the visibility check itself.
pub const VISIBILITY: &str = "visibility";

/// One value of a standard family: its label values after `target`, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub family: &'static Family,
    pub labels: Vec<String>,
    pub value: f64,
}

/// What a probe measured, built by an engine's catalogue.
#[derive(Debug, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// A sample of `family`, `labels` being its label values after `target`.
    pub fn push(&mut self, family: &'static Family, labels: &[&str], value: f64) {
        debug_assert_eq!(
            labels.len() + 1,
            family.labels.len(),
            "{}: label values {labels:?}",
            family.name
        );
        self.0.push(Sample {
            family,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            value,
        });
    }

    /// A sample when there is a value (a NULL measures nothing).
    pub fn opt(&mut self, family: &'static Family, labels: &[&str], value: Option<f64>) {
        if let Some(v) = value {
            self.push(family, labels, v);
        }
    }
}

/// A sample of a custom metric: its label values and value.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomSample {
    pub metric: usize,
    pub value_column: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// One round of a reachable target: what was measured, and which families failed.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub samples: Vec<Sample>,
    /// Every family the round measured or meant to, in order, with its error (None: measured).
    pub families: Vec<(String, Option<String>)>,
    /// Whether the role sees every session; None when that could not be told.
    pub visibility: Option<bool>,
    /// (probe name, seconds)
    pub probes: Vec<(String, f64)>,
    pub custom: Vec<CustomSample>,
}

impl Round {
    /// A round about to measure `families`: each one "not finished" until it is.
    fn planned(families: Vec<String>, unfinished: &str) -> Round {
        Round {
            families: families
                .into_iter()
                .map(|f| (f, Some(unfinished.to_string())))
                .collect(),
            ..Round::default()
        }
    }

    fn set(&mut self, family: &str, error: Option<String>) {
        if let Some(f) = self.families.iter_mut().find(|(f, _)| f == family) {
            f.1 = error;
        }
    }

    /// A family left out on purpose (not measurable with this role): neither measured nor
    /// failed.
    fn skip(&mut self, family: &str) {
        self.families.retain(|(f, _)| f != family);
    }

    /// The families that failed, with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.families
            .iter()
            .filter_map(|(f, e)| e.as_deref().map(|e| (f.as_str(), e)))
    }
}

/// Rows as (column name, text value) pairs.
pub type Rows = Vec<Vec<(String, Option<String>)>>;

/// Whether the server itself answered with this error (a lock timeout, a cancelled statement,
/// a permission denied): the session is then still usable. Anything else (a broken
/// connection, a probe abandoned past its budget) means opening a new one.
fn server_answered(e: &anyhow::Error) -> bool {
    DbError::find(e).is_some_and(|d| {
        let state = d.sqlstate.as_deref().unwrap_or("");
        (d.sqlstate.is_some() || d.number.is_some())
            && !state.starts_with("08")
            && !state.starts_with("57P")
    })
}

/// The groups an engine's catalogue measures.
struct Groups;

impl engine::Visitor for Groups {
    type Output = &'static [Group];
    const WHAT: &'static str = "metrics";

    async fn postgres(self, _: &mut engine::postgres::PgConn) -> Result<&'static [Group]> {
        Ok(postgres::GROUPS)
    }

    async fn mysql(self, _: &mut engine::mysql::MyConn) -> Result<&'static [Group]> {
        Ok(mysql::GROUPS)
    }

    async fn mssql(self, _: &mut engine::mssql::MsConn) -> Result<&'static [Group]> {
        Ok(mssql::GROUPS)
    }

    async fn redis(self, _: &mut engine::redis::RedisConn) -> Result<&'static [Group]> {
        Ok(redis::GROUPS)
    }
}

/// What the `pitr` group judges for a target with a `pitr:` section: its archive, and the
/// thresholds `pitr check` would use.
#[derive(Debug, Clone)]
pub struct PitrWatch {
    /// The archive: a directory or a bucket.
    pub archive: crate::pitr::Archive,
    pub limits: crate::pitr::check::Limits,
}

/// One group's probe.
struct Ask<'a> {
    group: Group,
    key_tables: &'a [TableRef],
    pitr: Option<&'a PitrWatch>,
}

impl engine::Visitor for Ask<'_> {
    type Output = Samples;
    const WHAT: &'static str = "metrics";

    async fn postgres(self, conn: &mut engine::postgres::PgConn) -> Result<Samples> {
        postgres::probe(conn, self.group, self.key_tables, self.pitr).await
    }

    async fn mysql(self, conn: &mut engine::mysql::MyConn) -> Result<Samples> {
        mysql::probe(conn, self.group, self.key_tables).await
    }

    async fn mssql(self, conn: &mut engine::mssql::MsConn) -> Result<Samples> {
        mssql::probe(conn, self.group, self.key_tables).await
    }

    async fn redis(self, conn: &mut engine::redis::RedisConn) -> Result<Samples> {
        redis::probe(conn, self.group).await
    }
}

/// Whether the session sees every session ([`Driver::activity_visibility`]), as a probe.
struct See;

impl engine::Visitor for See {
    type Output = Visibility;
    const WHAT: &'static str = "activity views";

    async fn postgres(self, conn: &mut engine::postgres::PgConn) -> Result<Visibility> {
        conn.activity_visibility().await
    }

    async fn mysql(self, conn: &mut engine::mysql::MyConn) -> Result<Visibility> {
        conn.activity_visibility().await
    }

    async fn mssql(self, conn: &mut engine::mssql::MsConn) -> Result<Visibility> {
        conn.activity_visibility().await
    }

    /// Redis has no session families to hide: nothing the exporter reads depends on a grant
    /// to see other clients.
    async fn redis(self, _: &mut engine::redis::RedisConn) -> Result<Visibility> {
        Ok(Visibility::All)
    }
}

/// A probe's or a custom metric's query: its rows, every value as text.
struct Query<'a> {
    sql: &'a str,
}

impl engine::Visitor for Query<'_> {
    type Output = Rows;
    const WHAT: &'static str = "custom metric queries";

    async fn postgres(self, conn: &mut engine::postgres::PgConn) -> Result<Rows> {
        postgres::rows(conn, self.sql).await
    }

    async fn mysql(self, conn: &mut engine::mysql::MyConn) -> Result<Rows> {
        mysql::rows(conn, self.sql).await
    }

    async fn mssql(self, conn: &mut engine::mssql::MsConn) -> Result<Rows> {
        mssql::rows(conn, self.sql).await
    }
}

/// Turns a custom metric's rows into samples; a missing column or a non-number is an error
/// naming it.
pub fn samples(index: usize, m: &CustomMetric, rows: &Rows) -> Result<Vec<CustomSample>, String> {
    let mut out = Vec::new();
    for row in rows {
        let get = |col: &str| {
            row.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(col))
                .map(|(_, v)| v.clone())
        };
        let mut labels = Vec::with_capacity(m.labels.len());
        for l in &m.labels {
            let v = get(l)
                .ok_or_else(|| format!("metric {}: the query has no column `{l}`", m.name))?;
            labels.push((l.clone(), v.unwrap_or_default()));
        }
        for vc in &m.values {
            let v = get(vc)
                .ok_or_else(|| format!("metric {}: the query has no column `{vc}`", m.name))?;
            let Some(text) = v else { continue }; // NULL: no sample
            let value = text.trim().parse::<f64>().map_err(|_| {
                format!(
                    "metric {}: column `{vc}` holds `{text}`, not a number",
                    m.name
                )
            })?;
            out.push(CustomSample {
                metric: index,
                value_column: vc.clone(),
                labels: labels.clone(),
                value,
            });
        }
    }
    Ok(out)
}

/// Every session state present, with zero for those without sessions, so series do not
/// vanish.
fn zero_states(found: Vec<(String, f64)>) -> Vec<(String, f64)> {
    families::SESSION_STATES
        .iter()
        .map(|s| {
            let n = found
                .iter()
                .filter(|(f, _)| f == s)
                .fold(0.0, |acc, (_, n)| acc + n);
            (s.to_string(), n)
        })
        .collect()
}

const PROBE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What a scrape knows of one target: a round when the server was reached (complete, or
/// as far as it got within the scrape timeout), else why not.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub round: Option<Arc<Round>>,
    pub error: Option<String>,
    pub seconds: f64,
}

impl Outcome {
    fn down(error: String, start: Instant) -> Outcome {
        Outcome {
            round: None,
            error: Some(error),
            seconds: start.elapsed().as_secs_f64(),
        }
    }
}

struct Inner {
    conn: Option<Conn>,
    last: Option<(Instant, Arc<Outcome>)>,
    running: bool,
    /// The round in progress, once connected: what a scrape that cannot wait reports.
    progress: Option<Arc<Round>>,
}

/// One target's connection, cache and round in progress.
struct Slot {
    target: Target,
    /// Its `pitr:` section's archive, when it has one.
    pitr: Option<PitrWatch>,
    inner: Mutex<Inner>,
    done: watch::Sender<u64>,
    /// The families failing at the last round, so that a failure is logged when it starts
    /// and not at every scrape.
    failing: Mutex<BTreeSet<String>>,
    /// Whether the missing grant was logged (once per process).
    visibility_told: AtomicBool,
    /// The groups left out for a missing grant, logged once per process.
    grants_told: Mutex<BTreeSet<String>>,
}

/// The state `metrics serve` keeps between scrapes.
pub struct Exporter {
    slots: Vec<Arc<Slot>>,
    config: Arc<Config>,
    key_tables: Vec<TableRef>,
    log: Log,
    /// Long-lived families: the probe histogram and the counters.
    registry: Registry,
    probe_seconds: HistogramVec,
    scrapes: IntCounter,
    scrape_errors: IntCounterVec,
}

impl Exporter {
    pub fn new(config: Arc<Config>, targets: Vec<Target>, log: Log) -> Result<Exporter> {
        let key_tables = config
            .health
            .key_tables
            .iter()
            .map(|t| TableRef::parse(t).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        validate(&config.metrics)?;
        let registry = Registry::new();
        let probe_seconds =
            families::PROBE_DURATION.register_histogram(&registry, PROBE_BUCKETS)?;
        let scrapes = families::SCRAPES.register_own_unlabelled(&registry)?;
        let scrape_errors = families::SCRAPE_ERRORS.register_own_counter(&registry)?;
        // Every target's error counter exists from the start, at 0, so rate() works.
        for t in &targets {
            scrape_errors.with_label_values(&[&t.name]);
        }
        let slots = targets
            .into_iter()
            .map(|target| {
                let pitr = crate::pitr::check::archive_of(&config, &target.name).map(|archive| {
                    PitrWatch {
                        archive,
                        limits: crate::health::archiving_limits(
                            &config.health,
                            &target,
                            &crate::health::Overrides::default(),
                        ),
                    }
                });
                Arc::new(Slot {
                    target,
                    pitr,
                    inner: Mutex::new(Inner {
                        conn: None,
                        last: None,
                        running: false,
                        progress: None,
                    }),
                    done: watch::channel(0).0,
                    failing: Mutex::new(BTreeSet::new()),
                    visibility_told: AtomicBool::new(false),
                    grants_told: Mutex::new(BTreeSet::new()),
                })
            })
            .collect();
        Ok(Exporter {
            slots,
            config,
            key_tables,
            log,
            registry,
            probe_seconds,
            scrapes,
            scrape_errors,
        })
    }

    fn settings(&self) -> &MetricsSection {
        &self.config.metrics
    }

    fn scrape_timeout(&self) -> Duration {
        Duration::from_secs(self.settings().scrape_timeout.max(1))
    }

    /// How long a round may run: a little less than the scrape timeout (a tenth, at most
    /// half a second), so that a probe cancelled at the end of its budget is reported with
    /// the round, and the scrape need not fall back on the round's progress.
    fn round_time(&self) -> Duration {
        let t = self.scrape_timeout();
        t - (t / 10).min(Duration::from_millis(500))
    }

    /// Waits, at most `max`, for the rounds still running (a scrape that could not wait for
    /// them returned their progress): before a one-shot `collect` exits, so that a probe past
    /// its budget is cancelled on the server rather than left waiting there.
    pub async fn settle(&self, max: Duration) {
        let until = tokio::time::Instant::now() + max;
        for slot in &self.slots {
            let mut rx = slot.done.subscribe();
            while slot.inner.lock().await.running {
                if tokio::time::timeout_at(until, rx.changed()).await.is_err() {
                    return;
                }
            }
        }
    }

    /// One scrape: every target at once, each within the scrape timeout.
    pub async fn scrape(self: &Arc<Self>) -> Vec<(Target, Arc<Outcome>)> {
        self.scrapes.inc();
        let timeout = self.scrape_timeout();
        let futures = self.slots.iter().map(|slot| {
            let me = Arc::clone(self);
            let slot = Arc::clone(slot);
            async move {
                let out = me.outcome(&slot, timeout).await;
                (slot.target.clone(), out)
            }
        });
        futures_util::future::join_all(futures).await
    }

    async fn outcome(self: &Arc<Self>, slot: &Arc<Slot>, timeout: Duration) -> Arc<Outcome> {
        let start = Instant::now();
        let min_interval = Duration::from_secs(self.settings().min_interval);
        let mut rx = slot.done.subscribe();
        {
            let mut inner = slot.inner.lock().await;
            if let Some((at, o)) = &inner.last {
                if at.elapsed() < min_interval {
                    return Arc::clone(o);
                }
            }
            if !inner.running {
                inner.running = true;
                inner.progress = None;
                let me = Arc::clone(self);
                let s = Arc::clone(slot);
                tokio::spawn(async move { me.round(s).await });
            }
        }
        match tokio::time::timeout(timeout.saturating_sub(start.elapsed()), rx.changed()).await {
            Ok(Ok(())) => {
                let inner = slot.inner.lock().await;
                inner
                    .last
                    .as_ref()
                    .map(|(_, o)| Arc::clone(o))
                    .unwrap_or_else(|| Arc::new(Outcome::down("no round completed".into(), start)))
            }
            _ => {
                // Connected but not finished: the families measured so far, the others
                // reported as not finished. Finished just now: that round. Not connected:
                // the server is not reachable.
                let inner = slot.inner.lock().await;
                if let Some(round) = inner.progress.clone() {
                    return Arc::new(Outcome {
                        round: Some(round),
                        error: None,
                        seconds: start.elapsed().as_secs_f64(),
                    });
                }
                if rx.has_changed().unwrap_or(false) {
                    if let Some((_, o)) = &inner.last {
                        return Arc::clone(o);
                    }
                }
                drop(inner);
                self.scrape_errors
                    .with_label_values(&[&slot.target.name])
                    .inc();
                Arc::new(Outcome::down(
                    format!(
                        "no answer within the scrape timeout ({} s): the server could not be reached",
                        timeout.as_secs()
                    ),
                    start,
                ))
            }
        }
    }

    /// One round for one target, on its kept connection (opened if needed).
    async fn round(self: Arc<Self>, slot: Arc<Slot>) {
        let start = Instant::now();
        let kept = slot.inner.lock().await.conn.take();
        let reused = kept.is_some();
        let conn = match kept {
            Some(c) => Ok(c),
            None => engine::connect_probe(&slot.target).await,
        };
        let (outcome, keep) = match conn {
            Err(e) => (Outcome::down(format!("{e:#}"), start), None),
            Ok(conn) => self.measure(&slot, conn, reused, start).await,
        };
        let failed = match &outcome.round {
            None => true,
            Some(r) => r.failures().next().is_some(),
        };
        if failed {
            self.scrape_errors
                .with_label_values(&[&slot.target.name])
                .inc();
        }
        if let Some(r) = &outcome.round {
            self.log_failures(&slot, r).await;
        }
        let mut inner = slot.inner.lock().await;
        inner.conn = keep;
        inner.last = Some((Instant::now(), Arc::new(outcome)));
        inner.running = false;
        inner.progress = None;
        drop(inner);
        slot.done.send_modify(|g| *g += 1);
    }

    /// How long the next probe may take: `family_timeout`, or what is left of the scrape
    /// timeout if less; None when nothing is left.
    fn budget(&self, deadline: Instant) -> Option<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        (left >= Duration::from_millis(20))
            .then(|| left.min(Duration::from_secs(self.settings().family_timeout.max(1))))
    }

    async fn publish(&self, slot: &Slot, round: &Round) {
        slot.inner.lock().await.progress = Some(Arc::new(round.clone()));
    }

    /// After an error that was not the server's answer, the session may be gone or still
    /// busy with an abandoned statement: a new one for the probes that follow, if there is
    /// time left.
    async fn recover(
        &self,
        target: &Target,
        deadline: Instant,
        e: &anyhow::Error,
        conn: &mut Option<Conn>,
    ) {
        if server_answered(e) {
            return;
        }
        *conn = None;
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok(c)) = tokio::time::timeout(left, engine::connect_probe(target)).await {
            *conn = Some(c);
        }
    }

    /// The probes of one round on a connected session. Returns the connection when it may be
    /// kept for the next round.
    async fn measure(
        &self,
        slot: &Slot,
        conn: Conn,
        reused: bool,
        start: Instant,
    ) -> (Outcome, Option<Conn>) {
        let deadline = start + self.round_time();
        let target = &slot.target;
        let mut conn = Some(conn);
        let groups: &[Group] = match conn.as_mut() {
            Some(c) => c.visit(Groups).await.unwrap_or(&[]),
            None => &[],
        };
        // The archive is judged only for a target that has one.
        let groups: Vec<Group> = groups
            .iter()
            .copied()
            .filter(|g| *g != Group::Pitr || slot.pitr.is_some())
            .collect();
        let probes: Vec<&ProbeQuery> = self
            .settings()
            .probes
            .iter()
            .filter(|p| p.engines.is_empty() || p.engines.contains(&target.engine))
            .collect();
        let custom: Vec<(usize, &CustomMetric)> = self
            .settings()
            .custom
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                (m.engines.is_empty() || m.engines.contains(&target.engine))
                    && (m.targets.is_empty() || m.targets.contains(&target.name))
            })
            .collect();
        let mut plan = vec![VISIBILITY.to_string()];
        plan.extend(groups.iter().map(|g| g.name().to_string()));
        plan.extend(probes.iter().map(|p| format!("probe:{}", p.name)));
        plan.extend(custom.iter().map(|(_, m)| format!("custom:{}", m.name)));
        let mut round = Round::planned(
            plan,
            &format!(
                "did not finish within the scrape timeout ({} s)",
                self.scrape_timeout().as_secs()
            ),
        );
        self.publish(slot, &round).await;

        // Who we can see, first. On a kept connection, an error that is not the server's
        // answer means the connection went away (a server restart): open a new one, once;
        // if that fails, the server cannot be reached.
        let mut seen = self.see(conn.as_mut(), deadline).await;
        if reused && seen.as_ref().is_err_and(|e| !server_answered(e)) {
            match engine::connect_probe(target).await {
                Ok(c) => conn = Some(c),
                Err(e) => return (Outcome::down(format!("{e:#}"), start), None),
            }
            seen = self.see(conn.as_mut(), deadline).await;
        }
        let sees_all = match seen {
            Ok(Visibility::All) => {
                round.visibility = Some(true);
                round.set(VISIBILITY, None);
                true
            }
            Ok(Visibility::OwnOnly { missing }) => {
                round.visibility = Some(false);
                round.set(VISIBILITY, None);
                if !slot.visibility_told.swap(true, Ordering::Relaxed) {
                    self.log.warn(format!(
                        "target {}: {missing}; until then it sees only its own sessions, so the \
                         session families (mairie_dba_connections, \
                         mairie_dba_longest_transaction_seconds) are left out and \
                         mairie_dba_activity_visibility is 0",
                        target.name
                    ));
                }
                false
            }
            Err(e) => {
                round.set(VISIBILITY, Some(format!("{e:#}")));
                self.recover(target, deadline, &e, &mut conn).await;
                false
            }
        };

        for &group in &groups {
            if group.reads_activity() && !sees_all {
                round.skip(group.name());
                continue;
            }
            let (Some(c), Some(budget)) = (conn.as_mut(), self.budget(deadline)) else {
                break;
            };
            let asked = c
                .probe(
                    budget,
                    Ask {
                        group,
                        key_tables: &self.key_tables,
                        pitr: slot.pitr.as_ref(),
                    },
                )
                .await;
            match asked {
                Ok(s) => {
                    round.samples.extend(s.0);
                    round.set(group.name(), None);
                }
                Err(e) => match e.downcast_ref::<NotGranted>() {
                    Some(missing) => {
                        round.skip(group.name());
                        if slot.grants_told.lock().await.insert(group.name().into()) {
                            self.log.warn(format!(
                                "target {}: {} left out: {}",
                                target.name,
                                group.name(),
                                missing
                            ));
                        }
                    }
                    None => {
                        round.set(group.name(), Some(format!("{e:#}")));
                        self.recover(target, deadline, &e, &mut conn).await;
                    }
                },
            }
            self.publish(slot, &round).await;
        }

        for p in probes {
            let (Some(c), Some(budget)) = (conn.as_mut(), self.budget(deadline)) else {
                break;
            };
            let began = Instant::now();
            let family = format!("probe:{}", p.name);
            match c.probe(budget, Query { sql: &p.sql }).await {
                Ok(_) => {
                    let secs = began.elapsed().as_secs_f64();
                    self.probe_seconds
                        .with_label_values(&[&target.name, &p.name])
                        .observe(secs);
                    round.probes.push((p.name.clone(), secs));
                    round.set(&family, None);
                }
                // A query on an engine without queries (Redis): not this target's.
                Err(e) if e.downcast_ref::<engine::NotSupported>().is_some() => round.skip(&family),
                Err(e) => {
                    round.set(&family, Some(format!("{e:#}")));
                    self.recover(target, deadline, &e, &mut conn).await;
                }
            }
        }

        for (i, m) in custom {
            let (Some(c), Some(budget)) = (conn.as_mut(), self.budget(deadline)) else {
                break;
            };
            let family = format!("custom:{}", m.name);
            match c.probe(budget, Query { sql: &m.sql }).await {
                Ok(rows) => match samples(i, m, &rows) {
                    Ok(s) => {
                        round.custom.extend(s);
                        round.set(&family, None);
                    }
                    Err(e) => round.set(&family, Some(e)),
                },
                Err(e) if e.downcast_ref::<engine::NotSupported>().is_some() => round.skip(&family),
                Err(e) => {
                    round.set(&family, Some(format!("{e:#}")));
                    self.recover(target, deadline, &e, &mut conn).await;
                }
            }
        }

        let outcome = Outcome {
            round: Some(Arc::new(round)),
            error: None,
            seconds: start.elapsed().as_secs_f64(),
        };
        (outcome, conn)
    }

    async fn see(&self, conn: Option<&mut Conn>, deadline: Instant) -> Result<Visibility> {
        match (conn, self.budget(deadline)) {
            (Some(c), Some(b)) => c.probe(b, See).await,
            _ => Err(anyhow::anyhow!("not run: the scrape timeout was used up")),
        }
    }

    /// Logs a family's failure when it starts failing, and its recovery; not every round.
    async fn log_failures(&self, slot: &Slot, round: &Round) {
        let mut failing = slot.failing.lock().await;
        let now: BTreeSet<String> = round.failures().map(|(f, _)| f.to_string()).collect();
        for (family, error) in round.failures() {
            if !failing.contains(family) {
                self.log
                    .warn(format!("target {}: {family}: {error}", slot.target.name));
            }
        }
        for family in failing.difference(&now) {
            if round.families.iter().any(|(f, _)| f == family) {
                self.log.info(format!(
                    "target {}: {family}: measured again",
                    slot.target.name
                ));
            }
        }
        *failing = now;
    }

    /// The text exposition of a scrape.
    pub fn render(&self, results: &[(Target, Arc<Outcome>)]) -> Result<String> {
        let per_scrape = per_scrape_registry(&self.config, results)?;
        let mut families = per_scrape.gather();
        families.extend(self.registry.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf)?;
        Ok(String::from_utf8(buf)?)
    }
}

/// Checks the `metrics:` section beyond its types.
fn validate(m: &MetricsSection) -> Result<()> {
    let err = |msg: String| crate::error::ConfigError::new(format!("metrics: {msg}"));
    if m.family_timeout == 0 {
        return Err(err("family_timeout: must be at least 1 second".into()).into());
    }
    if m.probes
        .iter()
        .any(|p| p.name.is_empty() || !valid_label_value(&p.name))
    {
        return Err(err("probes: a probe needs a name of letters, digits and _".into()).into());
    }
    for c in &m.custom {
        let name = custom_name(c);
        if !valid_metric_name(&name) {
            return Err(err(format!("custom: `{}` is not a valid metric name", c.name)).into());
        }
        if c.values.is_empty() {
            return Err(err(format!("custom.{}: `values` lists no column", c.name)).into());
        }
        let own = families::PER_SCRAPE
            .iter()
            .copied()
            .chain([
                &families::PROBE_DURATION,
                &families::SCRAPES,
                &families::SCRAPE_ERRORS,
            ])
            .any(|f| f.name == name);
        if own || m.custom.iter().filter(|o| custom_name(o) == name).count() > 1 {
            return Err(err(format!(
                "custom: `{}` gives the name {name}, which another metric has",
                c.name
            ))
            .into());
        }
        for l in &c.labels {
            if !valid_metric_name(l) || l == "target" {
                return Err(err(format!(
                    "custom.{}: label `{l}` is not a valid label name (or is `target`)",
                    c.name
                ))
                .into());
            }
        }
    }
    Ok(())
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_label_value(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `mairie_dba_` + the configured name (unless it has it already), and `_total` for a
/// counter, as Prometheus' naming rules want.
pub fn custom_name(c: &CustomMetric) -> String {
    let mut name = if c.name.starts_with("mairie_dba_") {
        c.name.clone()
    } else {
        format!("mairie_dba_{}", c.name)
    };
    if c.kind == CustomKind::Counter && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

enum CustomFamily {
    Gauge(GaugeVec),
    Counter(prometheus::CounterVec),
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// The families that describe the current state: rebuilt at each scrape, so that a table or
/// a target that went away leaves no stale series behind.
fn per_scrape_registry(config: &Config, results: &[(Target, Arc<Outcome>)]) -> Result<Registry> {
    use families as f;
    let r = Registry::new();
    let mut standard = HashMap::new();
    for family in f::PER_SCRAPE {
        standard.insert(family.name, family.register(&r)?);
    }
    // Every family is in PER_SCRAPE (a unit test says so); a sample of a family that is not,
    // or with the wrong number of labels, is a bug of its catalogue: left out, not fatal.
    let set = |family: &Family, labels: &[&str], value: f64| {
        if let Some(reg) = standard.get(family.name) {
            let _ = reg.set(labels, value);
        }
    };

    let mut custom: Vec<CustomFamily> = Vec::new();
    for c in &config.metrics.custom {
        let mut labels: Vec<&str> = vec!["target"];
        labels.extend(c.labels.iter().map(String::as_str));
        if c.values.len() > 1 {
            labels.push("column");
        }
        let name = custom_name(c);
        custom.push(match c.kind {
            CustomKind::Gauge => CustomFamily::Gauge(gauge(&r, &name, &c.help, &labels)?),
            // The registry is new at each scrape, so adding the value once sets it.
            CustomKind::Counter => {
                let cv = prometheus::CounterVec::new(Opts::new(name, c.help.clone()), &labels)?;
                r.register(Box::new(cv.clone()))?;
                CustomFamily::Counter(cv)
            }
        });
    }

    for (t, o) in results {
        let name = t.name.as_str();
        set(
            &f::UP,
            &[name, t.engine.as_str()],
            if o.round.is_some() { 1.0 } else { 0.0 },
        );
        set(&f::SCRAPE_DURATION, &[name], o.seconds);
        if let Some(rd) = &o.round {
            if let Some(v) = rd.visibility {
                set(&f::ACTIVITY_VISIBILITY, &[name], if v { 1.0 } else { 0.0 });
            }
            for (family, error) in &rd.families {
                let v = if error.is_some() { 1.0 } else { 0.0 };
                set(&f::SCRAPE_ERROR, &[name, family], v);
            }
            for s in &rd.samples {
                let mut values: Vec<&str> = Vec::with_capacity(s.labels.len() + 1);
                values.push(name);
                values.extend(s.labels.iter().map(String::as_str));
                set(s.family, &values, s.value);
            }
            for s in &rd.custom {
                let Some(family) = custom.get(s.metric) else {
                    continue;
                };
                let mut values: Vec<&str> = vec![name];
                values.extend(s.labels.iter().map(|(_, v)| v.as_str()));
                if config.metrics.custom[s.metric].values.len() > 1 {
                    values.push(&s.value_column);
                }
                match family {
                    CustomFamily::Gauge(g) => g.with_label_values(&values).set(s.value),
                    CustomFamily::Counter(c) if s.value >= 0.0 => {
                        c.with_label_values(&values).inc_by(s.value)
                    }
                    CustomFamily::Counter(_) => {}
                }
            }
        }
        // Backups: read from the manifests, whether or not the server answers.
        if let Some(cfg) = config.backup.get(name).filter(|c| c.enabled) {
            if let Ok(entries) = backup::entries_of(config, t, cfg, chrono::Utc::now()) {
                if let Some(m) = entries
                    .iter()
                    .find(|e| e.is_good_for(name))
                    .and_then(|e| e.manifest.as_ref().ok())
                {
                    set(
                        &f::BACKUP_LAST_SUCCESS,
                        &[name],
                        m.finished_at.timestamp() as f64,
                    );
                    set(&f::BACKUP_LAST_SIZE, &[name], m.size_bytes as f64);
                    set(
                        &f::BACKUP_LAST_DURATION,
                        &[name],
                        (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0,
                    );
                }
                let last_run = backup::LastRun::read(&backup::record_dir(config, name, cfg), name);
                // The cheap judgement: a scrape does not re-hash backups (`backup check` does).
                let judged = judge(
                    &entries,
                    name,
                    last_run.as_ref(),
                    cfg.max_age_hours.unwrap_or(26),
                    chrono::Utc::now(),
                    |_| Ok(()),
                );
                for state in f::BACKUP_STATES {
                    let v = if judged.state == state { 1.0 } else { 0.0 };
                    set(&f::BACKUP_STATUS, &[name, state], v);
                }
            }
        }
    }
    Ok(r)
}

/// Prometheus text format -> OpenMetrics: counters are named without `_total` in their
/// metadata, and the exposition ends with `# EOF`.
pub fn to_openmetrics(text: &str) -> String {
    let mut counters = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        let meta = ["# TYPE ", "# HELP "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|r| (*p, r)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    name.strip_suffix("_total").unwrap_or(name)
                } else {
                    name
                };
                out.push_str(&format!("{prefix}{name} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric() -> CustomMetric {
        CustomMetric {
            name: "demandes_ouvertes".into(),
            help: "h".into(),
            kind: CustomKind::Gauge,
            sql: String::new(),
            labels: vec!["statut".into()],
            values: vec!["n".into()],
            engines: vec![],
            targets: vec![],
        }
    }

    fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn custom_rows_become_samples() {
        let rows = vec![
            row(&[("statut", Some("en_cours")), ("n", Some("12"))]),
            row(&[("STATUT", Some("deposee")), ("N", None)]),
        ];
        let s = samples(0, &metric(), &rows).unwrap();
        assert_eq!(s.len(), 1, "a NULL value gives no sample");
        assert_eq!(
            s[0].labels,
            vec![("statut".to_string(), "en_cours".to_string())]
        );
        assert_eq!(s[0].value, 12.0);
    }

    #[test]
    fn custom_errors_name_the_column() {
        let e = samples(0, &metric(), &vec![row(&[("statut", Some("x"))])]).unwrap_err();
        assert!(e.contains("no column `n`"), "{e}");
        let e = samples(
            0,
            &metric(),
            &vec![row(&[("statut", Some("x")), ("n", Some("beaucoup"))])],
        )
        .unwrap_err();
        assert!(e.contains("`beaucoup`, not a number"), "{e}");
    }

    #[test]
    fn every_connection_state_is_present() {
        let z = zero_states(vec![
            ("active".into(), 2.0),
            ("idle".into(), 1.0),
            ("idle".into(), 1.0),
        ]);
        assert_eq!(
            z,
            vec![
                ("active".to_string(), 2.0),
                ("idle".to_string(), 2.0),
                ("idle_in_transaction".to_string(), 0.0),
                ("other".to_string(), 0.0)
            ]
        );
    }

    #[test]
    fn openmetrics_conversion() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng{x=\"1\"} 2\n";
        assert_eq!(
            to_openmetrics(text),
            "# HELP a Things.\n# TYPE a counter\na_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng{x=\"1\"} 2\n# EOF\n"
        );
    }

    #[test]
    fn a_round_reports_what_it_did_not_finish() {
        let mut r = Round::planned(
            vec![
                "visibility".into(),
                "server".into(),
                "sessions".into(),
                "table_sizes".into(),
            ],
            "did not finish",
        );
        r.set("visibility", None);
        r.set("server", None);
        r.skip("sessions");
        r.set(
            "table_sizes",
            Some("canceling statement due to lock timeout".into()),
        );
        assert_eq!(
            r.failures().collect::<Vec<_>>(),
            [("table_sizes", "canceling statement due to lock timeout")]
        );
        assert!(
            !r.families.iter().any(|(f, _)| f == "sessions"),
            "left out, neither measured nor failed"
        );
        let unfinished = Round::planned(vec!["server".into()], "did not finish");
        assert_eq!(
            unfinished.failures().collect::<Vec<_>>(),
            [("server", "did not finish")]
        );
    }

    #[test]
    fn the_server_answered_errors_keep_the_session() {
        use crate::config::EngineKind;
        let io = || std::io::Error::other("x");
        let db = |state: &str| -> anyhow::Error {
            DbError::new(EngineKind::Postgres, "m".into(), io())
                .with_sqlstate(state)
                .into()
        };
        assert!(server_answered(&db("55P03")), "lock timeout");
        assert!(server_answered(&db("57014")), "cancelled");
        assert!(
            server_answered(&db("42501").context("probe")),
            "permission denied"
        );
        assert!(!server_answered(&db("08006")), "connection failure");
        assert!(!server_answered(&db("57P01")), "admin shutdown");
        let closed: anyhow::Error =
            DbError::new(EngineKind::Postgres, "closed".into(), io()).into();
        assert!(!server_answered(&closed), "a driver error without a code");
        let late: anyhow::Error = engine::ProbeTimedOut {
            budget_ms: 1000,
            cancelled: true,
        }
        .into();
        assert!(!server_answered(&late), "an abandoned probe");
        let mysql: anyhow::Error = DbError::new(EngineKind::Mysql, "m".into(), io())
            .with_number(1205)
            .into();
        assert!(server_answered(&mysql), "MySQL lock wait timeout");
    }

    #[test]
    fn only_the_sessions_group_needs_full_visibility() {
        let all = postgres::GROUPS
            .iter()
            .chain(mysql::GROUPS)
            .chain(mssql::GROUPS)
            .chain(redis::GROUPS);
        for g in all {
            assert_eq!(g.reads_activity(), *g == Group::Sessions, "{}", g.name());
        }
    }

    #[test]
    fn a_custom_metric_may_not_take_a_family_name() {
        let mut m = MetricsSection::default();
        let mut c = metric();
        c.name = "locks".into();
        m.custom = vec![c];
        let e = validate(&m).unwrap_err().to_string();
        assert!(e.contains("mairie_dba_locks"), "{e}");
        m.custom = vec![metric(), metric()];
        assert!(validate(&m).is_err(), "twice the same name");
        m.custom = vec![metric()];
        assert!(validate(&m).is_ok());
        m.family_timeout = 0;
        assert!(validate(&m).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("mairie_dba_demandes_ouvertes"));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("a-b"));
    }
}
