//! The Prometheus exporter: rounds of queries per target, cached and never piled up, and
//! their rendering in the Prometheus text format (or OpenMetrics when asked).
//!
//! Sparing the database is the point. Each target has one connection, kept between rounds
//! and reopened only after an error. A round runs in its own task, one at a time per target:
//! scrapes arriving meanwhile wait for that round instead of starting another, and scrapes
//! within `min_interval` of the last round reuse it, so a hundred scrapers cost one round.
//! A scrape waits at most `scrape_timeout` for a target, then reports it `up 0` while the
//! other targets answer; the round it waited for goes on and serves the next scrape.
//!
//! This module is the engine-free core: what a round holds ([`Round`]), the custom metrics'
//! rows turned into samples, the families' names, help and types, and the exposition. What
//! one round asks each server is that engine's catalogue (`postgres.rs`, `mysql.rs`,
//! `mssql.rs`), reached through [`engine::Visitor`]: a few catalogue queries batched into as
//! few round trips as the engine allows, and the probe and custom queries' rows as text.

pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod server;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use tokio::sync::{watch, Mutex};

use crate::backup;
use crate::backup::check::judge;
use crate::catalog::TableRef;
use crate::config::{Config, CustomKind, CustomMetric, MetricsSection, ProbeQuery, Target};
use crate::engine::{self, Conn};

/// A sample of a custom metric: its label values and value.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomSample {
    pub metric: usize,
    pub value_column: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// One round of measurements of a target.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub version: String,
    pub start_time: Option<f64>,
    pub database: String,
    pub database_size: Option<f64>,
    /// (model table name, total size in bytes, estimated rows)
    pub tables: Vec<(String, f64, f64)>,
    /// (state, sessions)
    pub connections: Vec<(String, f64)>,
    pub connections_max: Option<f64>,
    pub longest_transaction: Option<f64>,
    pub replication_lag: Option<f64>,
    /// (probe name, seconds)
    pub probes: Vec<(String, f64)>,
    pub custom: Vec<CustomSample>,
    /// Custom metrics whose query failed: (index, error).
    pub custom_errors: Vec<(usize, String)>,
}

/// Rows as (column name, text value) pairs.
pub type Rows = Vec<Vec<(String, Option<String>)>>;

/// One round on a target's connection: the standard families, then each probe (timed; a
/// failing probe fails the round), then each custom metric (a failing one costs only itself).
pub async fn collect(
    conn: &mut Conn,
    key_tables: &[TableRef],
    probes: &[&ProbeQuery],
    custom: &[(usize, &CustomMetric)],
) -> Result<Round> {
    let mut r = conn.visit(Standard { key_tables }).await?;
    for p in probes {
        let start = Instant::now();
        conn.visit(Query { sql: &p.sql })
            .await
            .with_context(|| format!("probe {}", p.name))?;
        r.probes
            .push((p.name.clone(), start.elapsed().as_secs_f64()));
    }
    for (i, m) in custom {
        match conn.visit(Query { sql: &m.sql }).await {
            Ok(rows) => match samples(*i, m, &rows) {
                Ok(s) => r.custom.extend(s),
                Err(e) => r.custom_errors.push((*i, e)),
            },
            Err(e) => r.custom_errors.push((*i, format!("{e:#}"))),
        }
    }
    Ok(r)
}

/// The standard families' values, from each engine's catalogue.
struct Standard<'a> {
    key_tables: &'a [TableRef],
}

impl engine::Visitor for Standard<'_> {
    type Output = Round;
    const WHAT: &'static str = "metrics";

    async fn postgres(self, conn: &mut engine::postgres::PgConn) -> Result<Round> {
        postgres::round(conn, self.key_tables).await
    }

    async fn mysql(self, conn: &mut engine::mysql::MyConn) -> Result<Round> {
        mysql::round(conn, self.key_tables).await
    }

    async fn mssql(self, conn: &mut engine::mssql::MsConn) -> Result<Round> {
        mssql::round(conn, self.key_tables).await
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

/// The session states of `mairie_dba_connections`, which every engine's catalogue maps its
/// own onto.
const STATES: [&str; 4] = ["active", "idle", "idle_in_transaction", "other"];

/// Every state present, with zero for those without sessions, so series do not vanish.
fn zero_states(found: Vec<(String, f64)>) -> Vec<(String, f64)> {
    STATES
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

/// A family of the exposition: its name, help and label names, written once here whichever
/// engine's round fills it. Its Prometheus type is `K` (a [`kind`]), which decides how it is
/// registered.
struct Family<K> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    kind: PhantomData<K>,
}

/// The Prometheus types of the [`Family`] constants.
mod kind {
    pub struct Gauge;
    pub struct Counter;
    pub struct Histogram;
}

const fn family<K>(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family<K> {
    Family {
        name,
        help,
        labels,
        kind: PhantomData,
    }
}

impl Family<kind::Gauge> {
    fn register(&self, registry: &Registry) -> Result<GaugeVec> {
        gauge(registry, self.name, self.help, self.labels)
            .with_context(|| format!("registering {}", self.name))
    }
}

impl Family<kind::Counter> {
    fn register(&self, registry: &Registry) -> Result<IntCounterVec> {
        IntCounterVec::new(Opts::new(self.name, self.help), self.labels)
            .and_then(|c| registry.register(Box::new(c.clone())).map(|()| c))
            .with_context(|| format!("registering {}", self.name))
    }

    /// A counter without labels: one series.
    fn register_unlabelled(&self, registry: &Registry) -> Result<IntCounter> {
        anyhow::ensure!(
            self.labels.is_empty(),
            "{} has labels: register it as a vector",
            self.name
        );
        IntCounter::new(self.name, self.help)
            .and_then(|c| registry.register(Box::new(c.clone())).map(|()| c))
            .with_context(|| format!("registering {}", self.name))
    }
}

impl Family<kind::Histogram> {
    fn register(&self, registry: &Registry, buckets: &[f64]) -> Result<HistogramVec> {
        HistogramVec::new(
            HistogramOpts::new(self.name, self.help).buckets(buckets.to_vec()),
            self.labels,
        )
        .and_then(|h| registry.register(Box::new(h.clone())).map(|()| h))
        .with_context(|| format!("registering {}", self.name))
    }
}

// The state of each target, rebuilt at each scrape. Every engine fills the same ones from
// its round: an engine that cannot measure one leaves its series out.
const UP: Family<kind::Gauge> = family(
    "mairie_dba_up",
    "1 if the target answered the last round, else 0.",
    &["target", "engine"],
);
const SCRAPE_DURATION: Family<kind::Gauge> = family(
    "mairie_dba_scrape_duration_seconds",
    "Time the target's data took to gather.",
    &["target"],
);
const SERVER_INFO: Family<kind::Gauge> = family(
    "mairie_dba_server_info",
    "Server version, as a label; the value is 1.",
    &["target", "engine", "version"],
);
const SERVER_START_TIME: Family<kind::Gauge> = family(
    "mairie_dba_server_start_time_seconds",
    "When the server started, in Unix time.",
    &["target"],
);
const DATABASE_SIZE: Family<kind::Gauge> = family(
    "mairie_dba_database_size_bytes",
    "Size of the target's database.",
    &["target", "database"],
);
const TABLE_SIZE: Family<kind::Gauge> = family(
    "mairie_dba_table_size_bytes",
    "Total size of a key table, indexes included.",
    &["target", "table"],
);
const TABLE_ROWS: Family<kind::Gauge> = family(
    "mairie_dba_table_rows_estimated",
    "Estimated rows of a key table (planner statistics).",
    &["target", "table"],
);
const CONNECTIONS: Family<kind::Gauge> = family(
    "mairie_dba_connections",
    "Client sessions by state.",
    &["target", "state"],
);
const CONNECTIONS_MAX: Family<kind::Gauge> = family(
    "mairie_dba_connections_max",
    "Connections the server accepts.",
    &["target"],
);
const LONGEST_TRANSACTION: Family<kind::Gauge> = family(
    "mairie_dba_longest_transaction_seconds",
    "Age of the oldest open transaction.",
    &["target"],
);
const REPLICATION_LAG: Family<kind::Gauge> = family(
    "mairie_dba_replication_lag_seconds",
    "Replication delay (replica: behind its primary; primary: slowest standby).",
    &["target"],
);

// Backups, read from the manifests whether or not the server answers.
const BACKUP_LAST_SUCCESS: Family<kind::Gauge> = family(
    "mairie_dba_backup_last_success_timestamp_seconds",
    "End of the latest good backup, in Unix time.",
    &["target"],
);
const BACKUP_LAST_SIZE: Family<kind::Gauge> = family(
    "mairie_dba_backup_last_size_bytes",
    "Size of the latest good backup.",
    &["target"],
);
const BACKUP_LAST_DURATION: Family<kind::Gauge> = family(
    "mairie_dba_backup_last_duration_seconds",
    "Duration of the latest good backup.",
    &["target"],
);
const BACKUP_STATUS: Family<kind::Gauge> = family(
    "mairie_dba_backup_status",
    "1 for the state `backup check` finds (OK, MISSING, FAILED, HASH_MISMATCH, STALE), 0 for the others.",
    &["target", "state"],
);
/// The `state` label values of [`BACKUP_STATUS`], each present at every scrape.
const BACKUP_STATES: [&str; 5] = ["OK", "MISSING", "FAILED", "HASH_MISMATCH", "STALE"];

// The exporter's own, kept for its lifetime.
const PROBE_DURATION: Family<kind::Histogram> = family(
    "mairie_dba_probe_duration_seconds",
    "Response time of the probe queries (metrics.probes), one observation per round.",
    &["target", "probe"],
);
const PROBE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const SCRAPES: Family<kind::Counter> = family(
    "mairie_dba_scrapes_total",
    "Scrapes served by this exporter.",
    &[],
);
const SCRAPE_ERRORS: Family<kind::Counter> = family(
    "mairie_dba_scrape_errors_total",
    "Rounds of a target that failed or timed out.",
    &["target"],
);

/// What a scrape knows of one target.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub round: Option<Arc<Round>>,
    pub error: Option<String>,
    pub seconds: f64,
}

struct Inner {
    conn: Option<Conn>,
    last: Option<(Instant, Arc<Outcome>)>,
    running: bool,
}

/// One target's connection, cache and round in progress.
struct Slot {
    target: Target,
    inner: Mutex<Inner>,
    done: watch::Sender<u64>,
}

/// The state `metrics serve` keeps between scrapes.
pub struct Exporter {
    slots: Vec<Arc<Slot>>,
    config: Arc<Config>,
    key_tables: Vec<TableRef>,
    /// Long-lived families: the probe histogram and the counters.
    registry: Registry,
    probe_seconds: HistogramVec,
    scrapes: IntCounter,
    scrape_errors: IntCounterVec,
}

impl Exporter {
    pub fn new(config: Arc<Config>, targets: Vec<Target>) -> Result<Exporter> {
        let key_tables = config
            .health
            .key_tables
            .iter()
            .map(|t| TableRef::parse(t).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        validate(&config.metrics)?;
        let registry = Registry::new();
        let probe_seconds = PROBE_DURATION.register(&registry, PROBE_BUCKETS)?;
        let scrapes = SCRAPES.register_unlabelled(&registry)?;
        let scrape_errors = SCRAPE_ERRORS.register(&registry)?;
        // Every target's error counter exists from the start, at 0, so rate() works.
        for t in &targets {
            scrape_errors.with_label_values(&[&t.name]);
        }
        let slots = targets
            .into_iter()
            .map(|target| {
                Arc::new(Slot {
                    target,
                    inner: Mutex::new(Inner {
                        conn: None,
                        last: None,
                        running: false,
                    }),
                    done: watch::channel(0).0,
                })
            })
            .collect();
        Ok(Exporter {
            slots,
            config,
            key_tables,
            registry,
            probe_seconds,
            scrapes,
            scrape_errors,
        })
    }

    fn settings(&self) -> &MetricsSection {
        &self.config.metrics
    }

    /// One scrape: every target at once, each within the scrape timeout.
    pub async fn scrape(self: &Arc<Self>) -> Vec<(Target, Arc<Outcome>)> {
        self.scrapes.inc();
        let timeout = Duration::from_secs(self.settings().scrape_timeout.max(1));
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
                    .unwrap_or_else(|| {
                        Arc::new(Outcome {
                            round: None,
                            error: Some("no round completed".into()),
                            seconds: start.elapsed().as_secs_f64(),
                        })
                    })
            }
            _ => {
                self.scrape_errors
                    .with_label_values(&[&slot.target.name])
                    .inc();
                Arc::new(Outcome {
                    round: None,
                    error: Some(format!(
                        "no answer within the scrape timeout ({} s)",
                        timeout.as_secs()
                    )),
                    seconds: start.elapsed().as_secs_f64(),
                })
            }
        }
    }

    /// One round for one target, on its kept connection (opened if needed).
    async fn round(self: Arc<Self>, slot: Arc<Slot>) {
        let start = Instant::now();
        let conn = slot.inner.lock().await.conn.take();
        let conn = match conn {
            Some(c) => Ok(c),
            None => engine::connect_probe(&slot.target).await,
        };
        let (outcome, keep) = match conn {
            Err(e) => (
                Outcome {
                    round: None,
                    error: Some(format!("{e:#}")),
                    seconds: start.elapsed().as_secs_f64(),
                },
                None,
            ),
            Ok(mut conn) => {
                let probes: Vec<&ProbeQuery> = self
                    .settings()
                    .probes
                    .iter()
                    .filter(|p| p.engines.is_empty() || p.engines.contains(&slot.target.engine))
                    .collect();
                let custom: Vec<(usize, &CustomMetric)> = self
                    .settings()
                    .custom
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| {
                        (m.engines.is_empty() || m.engines.contains(&slot.target.engine))
                            && (m.targets.is_empty() || m.targets.contains(&slot.target.name))
                    })
                    .collect();
                match collect(&mut conn, &self.key_tables, &probes, &custom).await {
                    Ok(r) => {
                        for (p, secs) in &r.probes {
                            self.probe_seconds
                                .with_label_values(&[&slot.target.name, p])
                                .observe(*secs);
                        }
                        (
                            Outcome {
                                round: Some(Arc::new(r)),
                                error: None,
                                seconds: start.elapsed().as_secs_f64(),
                            },
                            Some(conn),
                        )
                    }
                    // The connection may be broken: open a new one next time.
                    Err(e) => (
                        Outcome {
                            round: None,
                            error: Some(format!("{e:#}")),
                            seconds: start.elapsed().as_secs_f64(),
                        },
                        None,
                    ),
                }
            }
        };
        if outcome.error.is_some() {
            self.scrape_errors
                .with_label_values(&[&slot.target.name])
                .inc();
        }
        let mut inner = slot.inner.lock().await;
        inner.conn = keep;
        inner.last = Some((Instant::now(), Arc::new(outcome)));
        inner.running = false;
        drop(inner);
        slot.done.send_modify(|g| *g += 1);
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
    let r = Registry::new();
    let up = UP.register(&r)?;
    let duration = SCRAPE_DURATION.register(&r)?;
    let info = SERVER_INFO.register(&r)?;
    let start = SERVER_START_TIME.register(&r)?;
    let db_size = DATABASE_SIZE.register(&r)?;
    let tbl_size = TABLE_SIZE.register(&r)?;
    let tbl_rows = TABLE_ROWS.register(&r)?;
    let conns = CONNECTIONS.register(&r)?;
    let conns_max = CONNECTIONS_MAX.register(&r)?;
    let longest = LONGEST_TRANSACTION.register(&r)?;
    let lag = REPLICATION_LAG.register(&r)?;
    let b_last = BACKUP_LAST_SUCCESS.register(&r)?;
    let b_size = BACKUP_LAST_SIZE.register(&r)?;
    let b_dur = BACKUP_LAST_DURATION.register(&r)?;
    let b_status = BACKUP_STATUS.register(&r)?;

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
        up.with_label_values(&[name, t.engine.as_str()])
            .set(if o.round.is_some() { 1.0 } else { 0.0 });
        duration.with_label_values(&[name]).set(o.seconds);
        if let Some(rd) = &o.round {
            info.with_label_values(&[name, t.engine.as_str(), &rd.version])
                .set(1.0);
            if let Some(s) = rd.start_time {
                start.with_label_values(&[name]).set(s);
            }
            if let Some(s) = rd.database_size {
                db_size.with_label_values(&[name, &rd.database]).set(s);
            }
            for (table, size, rows) in &rd.tables {
                tbl_size.with_label_values(&[name, table]).set(*size);
                tbl_rows.with_label_values(&[name, table]).set(*rows);
            }
            for (state, n) in &rd.connections {
                conns.with_label_values(&[name, state]).set(*n);
            }
            if let Some(m) = rd.connections_max {
                conns_max.with_label_values(&[name]).set(m);
            }
            if let Some(l) = rd.longest_transaction {
                longest.with_label_values(&[name]).set(l);
            }
            if let Some(l) = rd.replication_lag {
                lag.with_label_values(&[name]).set(l);
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
            let dir = config.resolve(&cfg.dir);
            if let Ok(entries) = backup::scan(&dir, t, cfg.server_dir.as_deref()) {
                if let Some(m) = entries
                    .iter()
                    .find(|e| e.is_good_for(name))
                    .and_then(|e| e.manifest.as_ref().ok())
                {
                    b_last
                        .with_label_values(&[name])
                        .set(m.finished_at.timestamp() as f64);
                    b_size.with_label_values(&[name]).set(m.size_bytes as f64);
                    b_dur
                        .with_label_values(&[name])
                        .set((m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0);
                }
                let last_run = backup::LastRun::read(&dir, name);
                // The cheap judgement: a scrape does not re-hash backups (`backup check` does).
                let f = judge(
                    &entries,
                    name,
                    last_run.as_ref(),
                    cfg.max_age_hours.unwrap_or(26),
                    chrono::Utc::now(),
                    |_| Ok(()),
                );
                for state in BACKUP_STATES {
                    b_status
                        .with_label_values(&[name, state])
                        .set(if f.state == state { 1.0 } else { 0.0 });
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
    fn every_family_registers_once() {
        let r = Registry::new();
        for g in [
            &UP,
            &SCRAPE_DURATION,
            &SERVER_INFO,
            &SERVER_START_TIME,
            &DATABASE_SIZE,
            &TABLE_SIZE,
            &TABLE_ROWS,
            &CONNECTIONS,
            &CONNECTIONS_MAX,
            &LONGEST_TRANSACTION,
            &REPLICATION_LAG,
            &BACKUP_LAST_SUCCESS,
            &BACKUP_LAST_SIZE,
            &BACKUP_LAST_DURATION,
            &BACKUP_STATUS,
        ] {
            g.register(&r).unwrap();
        }
        PROBE_DURATION.register(&r, PROBE_BUCKETS).unwrap();
        SCRAPES.register_unlabelled(&r).unwrap();
        SCRAPE_ERRORS.register(&r).unwrap();
        assert!(SCRAPE_ERRORS.register_unlabelled(&Registry::new()).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("mairie_dba_demandes_ouvertes"));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("a-b"));
    }
}
