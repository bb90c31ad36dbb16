//! `monitor scan | status | jobs | history | serve`: the central backup monitor's commands.
//!
//! `scan` and `status` are checks (Nagios exit codes, `--format nagios`); `jobs` and
//! `history` are reports. `serve` runs the scan every `scan_interval_minutes` until SIGTERM
//! or Ctrl-C, finishing the scan in progress first.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::cli::MonitorCommand;
use crate::error::ConfigError;
use crate::monitor::config::parse_utc;
use crate::monitor::history::{Entry, History, ScanRun, UnexpectedSeen};
use crate::monitor::notify;
use crate::monitor::scan::{self, Judgement, ScanLock, ScanOutcome, Unexpected};
use crate::monitor::validated::{Store, ValidatedStore};
use crate::monitor::view::Snapshot;
use crate::monitor::{schedule, stamp, JobStatus, MonitorConfig};
use crate::output::nagios::NagiosLine;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

pub async fn run(cmd: &MonitorCommand, ctx: &Ctx) -> Result<Outcome> {
    let cfg = ctx.config.monitor.as_ref().ok_or_else(|| {
        ConfigError::new(format!(
            "{}: no `monitor:` section (deposit_dir, validated_dir, jobs)",
            ctx.config.path.display()
        ))
    })?;
    match cmd {
        MonitorCommand::Scan { now } => {
            let now = now_or(now.as_deref())?;
            let report = scan_recorded(cfg, now).await?;
            for e in report.alert_errors() {
                ctx.log.warn(e);
            }
            Ok(Outcome::from_report(&report))
        }
        MonitorCommand::Status { job, now } => {
            let now = now_or(now.as_deref())?;
            Ok(Outcome::from_report(
                &status(cfg, job.as_deref(), now).await?,
            ))
        }
        MonitorCommand::Jobs { now } => {
            let now = now_or(now.as_deref())?;
            Ok(Outcome::from_report(&JobsReport::new(cfg, now)))
        }
        MonitorCommand::History { job, limit } => {
            let history = History::open(&cfg.history).await?;
            let entries = history.entries(job, *limit).await?;
            if entries.is_empty() && cfg.job(job).is_none() {
                return Err(ConfigError::new(format!(
                    "no job `{job}` in {} and none in the history",
                    ctx.config.path.display()
                ))
                .into());
            }
            Ok(Outcome::from_report(&HistoryReport {
                job: job.clone(),
                entries,
            }))
        }
        MonitorCommand::Serve {
            listen,
            web_config_file,
            insecure_listen,
            no_scan,
        } => {
            let opts = ServeOptions {
                listen: listen
                    .clone()
                    .or_else(|| cfg.listen.clone())
                    .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
                web_config_file: web_config_file.clone(),
                insecure_listen: *insecure_listen,
                scan: !*no_scan,
            };
            serve(cfg, &opts, ctx).await
        }
        MonitorCommand::Verify { job, now } => {
            let now = now_or(now.as_deref())?;
            Ok(Outcome::from_report(
                &verify(cfg, job.as_deref(), now).await?,
            ))
        }
    }
}

fn now_or(arg: Option<&str>) -> Result<DateTime<Utc>, ConfigError> {
    match arg {
        None => Ok(Utc::now()),
        Some(s) => parse_utc(s).ok_or_else(|| {
            ConfigError::new(format!(
                "--now `{s}`: not a time (2026-12-06T10:00:00Z or 2026-12-06 10:00, UTC)"
            ))
        }),
    }
}

/// One scan under the lock: register new jobs, judge, record.
pub async fn scan_once(cfg: &MonitorConfig, now: DateTime<Utc>) -> Result<ScanReport> {
    let _lock = ScanLock::acquire(&cfg.lock_dir)?;
    let mut store = cfg.validated.open().await?;
    // A bucket is scanned by one monitor at a time, whichever machine it runs on.
    if let (Store::Bucket(remote), ValidatedStore::Bucket(b)) = (&mut store, &cfg.validated) {
        let lease = tokio::task::block_in_place(|| {
            crate::storage::Lease::acquire(b, "scan", "monitor scan", false)
        })?;
        remote.hold(lease);
    }
    // A bucket's leftovers of a killed scan, before anything is judged: an unreachable
    // bucket or refused keys stop the scan here, with nothing promoted.
    let cleaned = match &store {
        Store::Bucket(remote) => remote.clean(&cfg.jobs, &cfg.deposit_dir).await?,
        Store::Dir(_) => Vec::new(),
    };
    let history = History::open(&cfg.history).await?;
    let ids: Vec<&str> = cfg.jobs.iter().map(|j| j.id.as_str()).collect();
    let mut states = history.register(&ids, now).await?;
    history
        .load_recorded(&mut states, |id, last| {
            cfg.job(id)
                .map(|j| scan::recheck_from(j, last, cfg.collection_window_minutes))
        })
        .await?;
    let owned = cfg.clone();
    // Hashing and promotion are blocking file work, on their own threads.
    let mut outcome =
        tokio::task::spawn_blocking(move || scan::scan(&owned, &store, now, &states)).await?;
    outcome.cleaned.splice(0..0, cleaned);
    let mut new = Vec::new();
    for j in std::mem::take(&mut outcome.judged) {
        let is_new = history.record(&j, now).await?;
        new.push(Recorded {
            judgement: j,
            new: is_new,
        });
    }
    for u in &outcome.unexpected {
        history.record_unexpected(u, now).await?;
    }
    let judged = new.iter().filter(|r| r.new).map(|r| &r.judgement);
    let notify = notify::after_scan(cfg, &history, judged, now).await;
    Ok(ScanReport {
        now,
        judged: new,
        outcome,
        notify,
    })
}

#[derive(Debug, Serialize)]
pub struct Recorded {
    #[serde(flatten)]
    judgement: Judgement,
    /// False: recorded by an earlier scan already (a rerun after a kill).
    new: bool,
}

/// What `monitor scan` reports.
#[derive(Debug)]
pub struct ScanReport {
    now: DateTime<Utc>,
    judged: Vec<Recorded>,
    outcome: ScanOutcome,
    /// The alerts' work (None: no `monitor.notify`).
    notify: Option<notify::Outcome>,
}

impl ScanReport {
    /// The alerts' delivery errors, for the log.
    pub fn alert_errors(&self) -> impl Iterator<Item = &String> {
        self.notify.iter().flat_map(|n| &n.errors)
    }

    fn count(&self, s: JobStatus) -> usize {
        self.new_ones().filter(|j| j.status == s).count()
    }

    fn new_ones(&self) -> impl Iterator<Item = &Judgement> {
        self.judged.iter().filter(|r| r.new).map(|r| &r.judgement)
    }

    fn summary(&self) -> String {
        let mut parts: Vec<String> = JobStatus::ALL
            .iter()
            .filter_map(|s| match self.count(*s) {
                0 => None,
                n => Some(format!("{n} {s}")),
            })
            .collect();
        if parts.is_empty() {
            parts.push("nothing new to judge".into());
        }
        let mut line = format!("scan at {}: {}", stamp(self.now), parts.join(", "));
        if !self.outcome.pending.is_empty() {
            line.push_str(&format!("; {} pending", self.outcome.pending.len()));
        }
        if !self.outcome.unexpected.is_empty() {
            line.push_str(&format!(
                "; {} unexpected deposit(s)",
                self.outcome.unexpected.len()
            ));
        }
        if let Some(n) = self.notify.as_ref().filter(|n| !n.errors.is_empty()) {
            line.push_str(&format!("; {}", n.summary()));
        }
        line
    }
}

fn judgement_row(j: &Judgement) -> Vec<String> {
    vec![
        j.job.clone(),
        stamp(j.due),
        j.status.to_string(),
        if j.promoted { "yes" } else { "" }.to_string(),
        j.message.clone(),
    ]
}

impl Report for ScanReport {
    fn status(&self) -> Status {
        self.new_ones()
            .map(|j| j.status.check_status())
            .max()
            .unwrap_or(Status::Ok)
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("now".into(), json!(stamp(self.now)));
        m.insert("judged".into(), json!(self.judged));
        m.insert("pending".into(), json!(self.outcome.pending));
        m.insert("unexpected".into(), json!(self.outcome.unexpected));
        m.insert("cleaned".into(), json!(self.outcome.cleaned));
        m.insert("archived".into(), json!(self.outcome.archived));
        if let Some(n) = &self.notify {
            m.insert("notify".into(), json!(n));
        }
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let header = ["job", "due", "status", "promoted", "message"];
        let mut judged = TableBlock::new(header).titled("Judged");
        for r in &self.judged {
            judged.row(judgement_row(&r.judgement));
        }
        let mut out = vec![judged];
        if !self.outcome.pending.is_empty() {
            let mut p = TableBlock::new(header).titled("Pending (before their deadline)");
            for j in &self.outcome.pending {
                p.row(judgement_row(j));
            }
            out.push(p);
        }
        if !self.outcome.unexpected.is_empty() {
            out.push(unexpected_table(&self.outcome.unexpected));
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        let mut l: Vec<String> = self
            .outcome
            .cleaned
            .iter()
            .map(|c| format!("removed {c}"))
            .collect();
        l.push(self.summary());
        // A delivery error is in the summary already.
        if let Some(n) = self.notify.as_ref().filter(|n| n.errors.is_empty()) {
            l.push(n.summary());
        }
        l
    }

    fn nagios(&self) -> Option<String> {
        Some(NagiosLine::plain(self.status(), self.summary()).to_string())
    }
}

fn unexpected_table(u: &[Unexpected]) -> TableBlock {
    let mut t = TableBlock::new(["path", "reason"]).titled("Unexpected deposits");
    for x in u {
        t.row([x.path.clone(), x.reason.clone()]);
    }
    t
}

/// One job in `monitor status`.
#[derive(Debug, Serialize)]
struct JobLine {
    id: String,
    company: String,
    city: String,
    site: String,
    database: String,
    engine: String,
    status: JobStatus,
    due: Option<String>,
    last_ok: Option<String>,
    next_due: Option<String>,
    last_drill: Option<Drill>,
    message: String,
}

#[derive(Debug, Serialize)]
struct Drill {
    at: String,
    status: Option<String>,
}

struct StatusReport {
    jobs: Vec<JobLine>,
    unexpected: Vec<UnexpectedSeen>,
    /// The alerts' deliveries (when configured, or when notices are left pending).
    notify: Option<notify::DeliveryStatus>,
}

async fn status(
    cfg: &MonitorConfig,
    only: Option<&str>,
    now: DateTime<Utc>,
) -> Result<StatusReport> {
    if let Some(id) = only {
        if cfg.job(id).is_none() {
            return Err(
                ConfigError::new(format!("--job `{id}`: no such job in monitor.jobs")).into(),
            );
        }
    }
    let history = History::open(&cfg.history).await?;
    // The snapshot the web page, the API and /metrics show: the same statuses everywhere.
    let snap = Snapshot::build(cfg, &history, now).await?;
    let jobs: Vec<JobLine> = snap
        .jobs
        .iter()
        .filter(|j| only.is_none_or(|id| j.id == id))
        .map(|j| JobLine {
            id: j.id.clone(),
            company: j.company.clone(),
            city: j.city.clone(),
            site: j.site.clone(),
            database: j.database.clone(),
            engine: j.engine.clone(),
            status: j.status,
            due: j.due.clone(),
            last_ok: j.last_ok.clone(),
            next_due: j.next_due.clone(),
            last_drill: j.last_drill.as_ref().map(|d| Drill {
                at: d.at.clone(),
                status: d.status.clone(),
            }),
            message: j.message.clone(),
        })
        .collect();
    let unexpected = if only.is_none() {
        snap.unexpected.clone()
    } else {
        Vec::new()
    };
    let notify = notify::delivery_status(&history)
        .await?
        .filter_shown(cfg.notify.is_some());
    Ok(StatusReport {
        jobs,
        unexpected,
        notify,
    })
}

impl Report for StatusReport {
    fn status(&self) -> Status {
        self.jobs
            .iter()
            .map(|j| j.status.check_status())
            .max()
            .unwrap_or(Status::Ok)
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("jobs".into(), json!(self.jobs));
        m.insert("unexpected".into(), json!(self.unexpected));
        if let Some(n) = &self.notify {
            m.insert("notify".into(), json!(n));
        }
        m
    }

    fn lines(&self) -> Vec<String> {
        self.notify.iter().map(|n| n.line()).collect()
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut t = TableBlock::new([
            "job",
            "site",
            "database",
            "status",
            "last OK",
            "next due",
            "last drill",
            "message",
        ]);
        for j in &self.jobs {
            t.row([
                j.id.clone(),
                format!("{}/{}/{}", j.company, j.city, j.site),
                format!("{} ({})", j.database, j.engine),
                j.status.to_string(),
                j.last_ok.clone().unwrap_or_default(),
                j.next_due.clone().unwrap_or_default(),
                j.last_drill
                    .as_ref()
                    .map(|d| format!("{} {}", d.at, d.status.as_deref().unwrap_or("")))
                    .unwrap_or_default(),
                j.message.clone(),
            ]);
        }
        let mut out = vec![t];
        if !self.unexpected.is_empty() {
            let mut u =
                TableBlock::new(["path", "reason", "last seen"]).titled("Unexpected deposits");
            for x in &self.unexpected {
                u.row([x.path.clone(), x.reason.clone(), x.last_seen.clone()]);
            }
            out.push(u);
        }
        out
    }

    fn nagios(&self) -> Option<String> {
        let bad: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| j.status.check_status() != Status::Ok)
            .map(|j| format!("{} {}", j.id, j.status))
            .collect();
        let msg = if bad.is_empty() {
            format!("{} job(s), none failing", self.jobs.len())
        } else {
            format!(
                "{} of {} job(s): {}",
                bad.len(),
                self.jobs.len(),
                bad.join(", ")
            )
        };
        Some(NagiosLine::plain(self.status(), msg).to_string())
    }
}

struct JobsReport {
    rows: Vec<Value>,
    table: TableBlock,
}

impl JobsReport {
    fn new(cfg: &MonitorConfig, now: DateTime<Utc>) -> JobsReport {
        let mut table =
            TableBlock::new(["job", "site", "database", "schedule", "grace", "next due"]);
        let mut rows = Vec::new();
        for j in &cfg.jobs {
            let next = schedule::next_due(j, now).map(stamp);
            table.row([
                j.id.clone(),
                format!("{}/{}/{}", j.company, j.city, j.site),
                format!("{} ({})", j.database, j.engine),
                j.schedule_text(),
                format!("{} min", j.grace_minutes),
                next.clone().unwrap_or_else(|| "never again".into()),
            ]);
            rows.push(json!({
                "id": j.id, "company": j.company, "city": j.city, "site": j.site,
                "database": j.database, "engine": j.engine,
                "frequency": j.frequency.as_str(), "schedule": j.schedule_text(),
                "grace_minutes": j.grace_minutes,
                "timezone": j.timezone.map(|t| t.name()),
                "next_due": next,
            }));
        }
        JobsReport { rows, table }
    }
}

impl Report for JobsReport {
    fn status(&self) -> Status {
        Status::Success
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("jobs".into(), Value::Array(self.rows.clone()));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        vec![self.table.clone()]
    }
}

struct HistoryReport {
    job: String,
    entries: Vec<Entry>,
}

impl Report for HistoryReport {
    fn status(&self) -> Status {
        Status::Success
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("job".into(), json!(self.job));
        m.insert("history".into(), json!(self.entries));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut t = TableBlock::new(["due", "status", "was", "file", "size", "message"])
            .titled(format!("History of {}", self.job));
        for e in &self.entries {
            t.row([
                e.due.clone(),
                e.status.clone(),
                e.previous_status.clone().unwrap_or_default(),
                e.file.clone().unwrap_or_default(),
                e.size_bytes.map(|s| s.to_string()).unwrap_or_default(),
                e.message.clone(),
            ]);
        }
        vec![t]
    }
}

/// Where `monitor serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8480";

/// A scan, then its record in the history's scan log (the scanner's heartbeat): finished
/// or failed, with how long it took.
pub async fn scan_recorded(cfg: &MonitorConfig, now: DateTime<Utc>) -> Result<ScanReport> {
    let started = Utc::now();
    let clock = std::time::Instant::now();
    let res = scan_once(cfg, now).await;
    let run = ScanRun {
        started_at: stamp(started),
        finished_at: stamp(Utc::now()),
        seconds: clock.elapsed().as_secs_f64(),
        judged: res
            .as_ref()
            .map(|r| r.judged.iter().filter(|j| j.new).count() as u64)
            .unwrap_or(0),
        error: res.as_ref().err().map(|e| format!("{e:#}")),
    };
    // A history that cannot record the scan is the scan's own error already, or will be the
    // next one's: it never hides the report.
    if let Ok(h) = History::open(&cfg.history).await {
        let _ = h.record_scan(&run).await;
    }
    res
}

struct ServeOptions {
    listen: String,
    web_config_file: Option<std::path::PathBuf>,
    insecure_listen: bool,
    scan: bool,
}

/// `monitor serve`: a scan every interval, and the web side on the same snapshot; a stop
/// waits for the scan in progress.
async fn serve(cfg: &MonitorConfig, opts: &ServeOptions, ctx: &Ctx) -> Result<Outcome> {
    use crate::monitor::web::{self as mweb, AppState};
    use crate::web::{self, WebConfig};
    use anyhow::Context as _;
    let webcfg = match &opts.web_config_file {
        Some(p) => WebConfig::load(p)?,
        None => WebConfig::default(),
    };
    let addr = &opts.listen;
    let sock: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError::new(format!("--listen `{addr}`: not an address")))?;
    web::check_listen(sock, &webcfg, opts.insecure_listen)
        .map_err(|e| ConfigError::new(e.to_string()))?;
    // The history must open before the server says it is up.
    History::open(&cfg.history).await?;
    let listener = tokio::net::TcpListener::bind(sock)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let state = AppState::new(cfg.clone(), opts.scan);
    ctx.log.info(format!(
        "monitor on {}://{}/ ({} job(s){}{})",
        if webcfg.tls.is_some() {
            "https"
        } else {
            "http"
        },
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(addr.clone()),
        cfg.jobs.len(),
        if webcfg.users.is_empty() {
            ""
        } else {
            ", basic auth"
        },
        if opts.scan {
            format!(
                ", scanning {} every {} min",
                cfg.deposit_dir.display(),
                cfg.scan_interval_minutes
            )
        } else {
            ", not scanning".to_string()
        }
    ));
    // Registered before the first scan: a stop during a scan waits for its end.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scanner = {
        let state = std::sync::Arc::clone(&state);
        let log = ctx.log.clone();
        let every = std::time::Duration::from_secs(u64::from(cfg.scan_interval_minutes) * 60);
        let mut stop = stop_rx.clone();
        let enabled = opts.scan;
        tokio::spawn(async move {
            let mut scans = 0u64;
            while enabled && !*stop.borrow() {
                let res = scan_recorded(&state.cfg, Utc::now()).await;
                {
                    let mut hb = state.heartbeat.lock().unwrap_or_else(|e| e.into_inner());
                    hb.last_at = Some(Utc::now());
                    match &res {
                        Ok(_) => {
                            hb.scans_ok += 1;
                            hb.last_error = None;
                        }
                        Err(e) => {
                            hb.scans_failed += 1;
                            hb.last_error = Some(format!("{e:#}"));
                        }
                    }
                }
                match res {
                    Ok(r) => {
                        for e in r.alert_errors() {
                            log.warn(e);
                        }
                        log.info(r.summary())
                    }
                    Err(e) => log.error(format!("monitor scan: {e:#}")),
                }
                state.invalidate();
                scans += 1;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => {}
                }
            }
            scans
        })
    };
    let mut web_stop = stop_rx.clone();
    let server = web::serve(
        listener,
        mweb::router(state),
        webcfg,
        web::Limits::default(),
        async move {
            let _ = web_stop.changed().await;
        },
    );
    tokio::pin!(server);
    let served = tokio::select! {
        r = &mut server => Some(r),
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    let _ = stop_tx.send(true);
    let served = match served {
        Some(r) => r,
        None => server.await,
    };
    let scans = scanner.await.unwrap_or(0);
    served.context("serving the monitor")?;
    Ok(Outcome::new(Status::Success)
        .field("stopped", true)
        .field("scans", scans))
}

// ---------------------------------------------------------------------------------------------
// monitor verify

/// `monitor verify`: every promoted backup re-hashed against its record, under the scan lock
/// (no scan moves files meanwhile); each job's finding recorded in the history, where a
/// HASH_MISMATCH becomes the job's status (see `monitor::history`).
async fn verify(
    cfg: &MonitorConfig,
    only: Option<&str>,
    now: DateTime<Utc>,
) -> Result<VerifyReport> {
    if let Some(id) = only {
        if cfg.job(id).is_none() {
            return Err(
                ConfigError::new(format!("--job `{id}`: no such job in monitor.jobs")).into(),
            );
        }
    }
    let _lock = ScanLock::acquire(&cfg.lock_dir)?;
    let store = cfg.validated.open().await?;
    if let Store::Bucket(remote) = &store {
        remote.probe(&cfg.jobs).await?;
    }
    let history = History::open(&cfg.history).await?;
    let promoted = history.last_promoted().await?;
    let owned = cfg.clone();
    let only_owned = only.map(str::to_string);
    // Hashing is blocking work (files read, objects streamed), on its own threads.
    let found = tokio::task::spawn_blocking(move || {
        crate::monitor::verify::verify(&owned, &store, only_owned.as_deref(), &promoted)
    })
    .await?;
    let recorded = history.record_verifications(&found.jobs, now).await?;
    let jobs = found
        .jobs
        .into_iter()
        .zip(recorded)
        .map(|(check, r)| VerifiedJob {
            check,
            previous_status: r.previous_status,
            current_status: r.status,
        })
        .collect();
    Ok(VerifyReport {
        verified_at: now,
        jobs,
        leftovers: found.leftovers,
    })
}

#[derive(Debug, Serialize)]
struct VerifiedJob {
    #[serde(flatten)]
    check: crate::monitor::verify::JobCheck,
    /// The job's status before and after, as `monitor status` shows it (null: PENDING).
    previous_status: Option<JobStatus>,
    current_status: Option<JobStatus>,
}

impl VerifiedJob {
    fn changed(&self) -> bool {
        self.previous_status != self.current_status
    }
}

struct VerifyReport {
    verified_at: DateTime<Utc>,
    jobs: Vec<VerifiedJob>,
    leftovers: Vec<crate::monitor::verify::Leftover>,
}

impl VerifyReport {
    fn summary(&self) -> String {
        let files: usize = self.jobs.iter().map(|j| j.check.files.len()).sum();
        let bad: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| j.check.status == JobStatus::HashMismatch)
            .map(|j| {
                let names: Vec<&str> = j.check.bad().map(|f| f.file.as_str()).collect();
                format!("{} ({})", j.check.job, names.join(", "))
            })
            .collect();
        let mut line = format!(
            "verify at {}: {files} backup(s) of {} job(s)",
            stamp(self.verified_at),
            self.jobs.len()
        );
        if bad.is_empty() {
            line.push_str(", all intact");
        } else {
            line.push_str(&format!(", HASH_MISMATCH: {}", bad.join(", ")));
        }
        if !self.leftovers.is_empty() {
            line.push_str(&format!("; {} leftover(s)", self.leftovers.len()));
        }
        line
    }
}

impl Report for VerifyReport {
    fn status(&self) -> Status {
        self.jobs
            .iter()
            .map(|j| j.check.status.check_status())
            .max()
            .unwrap_or(Status::Ok)
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("verified_at".into(), json!(stamp(self.verified_at)));
        m.insert("jobs".into(), json!(self.jobs));
        m.insert("leftovers".into(), json!(self.leftovers));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut t = TableBlock::new(["job", "file", "size", "verdict", "message"]);
        for j in &self.jobs {
            if j.check.files.is_empty() {
                t.row([
                    j.check.job.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    "no validated backup".to_string(),
                ]);
            }
            for f in &j.check.files {
                t.row([
                    j.check.job.clone(),
                    f.file.clone(),
                    f.recorded_size_bytes
                        .map(|s| indicatif::HumanBytes(s).to_string())
                        .unwrap_or_default(),
                    f.verdict.as_str().to_string(),
                    f.message.clone(),
                ]);
            }
        }
        let mut out = vec![t];
        if !self.leftovers.is_empty() {
            let mut l = TableBlock::new(["path", "reason"]).titled("Leftovers (not removed)");
            for x in &self.leftovers {
                l.row([x.path.clone(), x.reason.clone()]);
            }
            out.push(l);
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        let mut l: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| j.changed())
            .map(|j| {
                let name = |s: Option<JobStatus>| s.map_or("PENDING", JobStatus::as_str);
                format!(
                    "{}: {} -> {}",
                    j.check.job,
                    name(j.previous_status),
                    name(j.current_status)
                )
            })
            .collect();
        l.push(self.summary());
        l
    }

    fn nagios(&self) -> Option<String> {
        Some(NagiosLine::plain(self.status(), self.summary()).to_string())
    }
}
