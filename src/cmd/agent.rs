//! `agent push`: deposits this site's latest good backups and its `STATUS.json` for the
//! central monitor (see `monitor::agent` for the layout and how files travel).
//!
//! Per target with a `backup:` section (or those `agent.targets` names): the latest good,
//! whole backup and its manifest, then one report line with the backup's facts, the last
//! run's failure when the last run failed after it, and the last `restore --drill`. The
//! report is written last, even when a deposit failed (its line then says so).
//!
//! `backup --push` runs the same push after its backups ([`push_after_backup`]).

use std::path::PathBuf;

use anyhow::Result;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::backup::state::StateStore;
use crate::backup::{self, LastRun};
use crate::cli::AgentCommand;
use crate::config::EngineKind;
use crate::error::ConfigError;
use crate::monitor::agent::Deposit;
use crate::monitor::report::{Agent, BackupOutcome, DatabaseReport, Drill, StatusReport};
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

pub async fn run(cmd: &AgentCommand, ctx: &Ctx) -> Result<Outcome> {
    match cmd {
        AgentCommand::Push => push(ctx).await.map(|r| Outcome::from_report(&r)),
    }
}

#[derive(Debug, Serialize)]
struct Pushed {
    target: String,
    database: String,
    /// What the report says: `success` or `failed`.
    status: &'static str,
    file: Option<String>,
    transfer_seconds: Option<f64>,
    /// Why the line is a failure, or why the file could not be deposited.
    error: Option<String>,
    /// False when the file could not be deposited (the push failed).
    deposited: bool,
}

struct PushReport {
    deposit: String,
    generated_at: chrono::DateTime<Utc>,
    pushed: Vec<Pushed>,
}

fn empty_line(database: &str, engine: EngineKind, drill: Option<Drill>) -> DatabaseReport {
    DatabaseReport {
        database: database.to_string(),
        engine: engine.as_str().to_string(),
        status: BackupOutcome::Failed,
        file: None,
        size_bytes: None,
        sha256: None,
        started_at: None,
        finished_at: None,
        backup_seconds: None,
        compression_seconds: None,
        transfer_seconds: None,
        error: None,
        last_drill: drill,
    }
}

/// The `agent:` section, or the configuration error that says it is missing.
pub(crate) fn agent_section(ctx: &Ctx) -> Result<&crate::monitor::config::AgentSection> {
    ctx.config.agent.as_ref().ok_or_else(|| {
        ConfigError::new(format!(
            "{}: no `agent:` section (company, city, site, deposit)",
            ctx.config.path.display()
        ))
        .into()
    })
}

/// `backup --push`: after the backups, the same push as `agent push`, for the same targets;
/// its result joins the backup's outcome under `push`. A push that fails makes the command
/// fail (exit 1), and touches none of the backups just taken.
pub(crate) async fn push_after_backup(ctx: &Ctx, outcome: &mut Outcome) {
    match push(ctx).await {
        Ok(r) => {
            let pushed = Outcome::from_report(&r);
            if pushed.status == Status::Failed {
                let n = r.pushed.iter().filter(|p| !p.deposited).count();
                ctx.log.error(format!(
                    "--push: {n} backup(s) could not be deposited in {} (the backups themselves are kept)",
                    r.deposit
                ));
                outcome.status = outcome.status.max(Status::Failed);
            }
            outcome.doc.insert("push".into(), pushed.json());
            outcome.tables.extend(
                pushed
                    .tables
                    .into_iter()
                    .map(|t| t.titled("Pushed to the central monitor")),
            );
            outcome.lines.extend(pushed.lines);
        }
        Err(e) => {
            let msg = format!("{e:#}");
            ctx.log.error(format!(
                "--push: the push to the central monitor failed (the backups themselves are kept): {msg}"
            ));
            outcome.status = outcome.status.max(Status::Failed);
            outcome.doc.insert(
                "push".into(),
                json!({"status": Status::Failed.as_str(), "error": msg}),
            );
        }
    }
}

async fn push(ctx: &Ctx) -> Result<PushReport> {
    let agent = agent_section(ctx)?;
    let deposit = Deposit::parse(&agent.deposit, &agent.rsync_options, &ctx.config.base_dir);
    let site: PathBuf = [&*agent.company, &*agent.city, &*agent.site]
        .iter()
        .collect();
    let mut lines = Vec::new();
    let mut pushed = Vec::new();
    for p in backup::places(ctx)? {
        let name = &p.target.name;
        if !agent.targets.is_empty() && !agent.targets.contains(name) {
            continue;
        }
        let database = p.target.connection.database.clone();
        let drill = StateStore::new(&ctx.config.state_dir, name, &p.dir)
            .read()
            .ok()
            .flatten()
            .and_then(|s| s.last_drill)
            .map(|d| Drill {
                at: d.at,
                status: d.status,
            });
        let mut line = empty_line(&database, p.target.engine, drill);
        let mut item = Pushed {
            target: name.clone(),
            database: database.clone(),
            status: "failed",
            file: None,
            transfer_seconds: None,
            error: None,
            deposited: true,
        };
        if p.remote.is_some() {
            return Err(crate::error::ConfigError::new(format!(
                "{name}: backups in object storage ({}) are not deposited to a monitor: the \
                 agent sends backups from a directory",
                p.location()
            ))
            .into());
        }
        let latest = backup::scan(&p.dir, p.target, p.cfg.server_dir.as_deref()).map(|es| {
            es.into_iter()
                .find(|e| e.is_good_for(name) && e.present && e.is_whole())
        });
        let last_run = LastRun::read(&p.dir, name);
        let error = match &latest {
            Err(e) => Some(format!("{e:#}")),
            Ok(None) if p.target.engine == EngineKind::Mssql => Some(
                "SQL Server writes its backups on the server: nothing here to push".to_string(),
            ),
            Ok(None) => Some(match &last_run {
                // The monitor is told why, not only that nothing is there.
                Some(r) if r.status != "success" => format!(
                    "no good backup in {}; the last run failed: {}",
                    p.dir.display(),
                    r.error.as_deref().unwrap_or("no error recorded")
                ),
                _ => format!("no good backup in {}", p.dir.display()),
            }),
            Ok(Some(e)) => match (&last_run, &e.manifest) {
                (Some(r), Ok(m)) if r.status != "success" && r.started_at > m.finished_at => Some(
                    r.error
                        .clone()
                        .unwrap_or_else(|| "the last backup failed".into()),
                ),
                _ => None,
            },
        };
        match (error, latest) {
            (Some(why), _) => {
                line.error = Some(why.clone());
                item.error = Some(why);
            }
            (None, Ok(Some(e))) => {
                let Ok(m) = &e.manifest else {
                    unreachable!("a good entry has its manifest")
                };
                let manifest = e.path.with_file_name(format!("{}.json", e.file_name()));
                let rel = site.join(&database);
                match deposit.put(&rel, &[&e.path, &manifest]).await {
                    Ok(seconds) => {
                        line.status = BackupOutcome::Success;
                        line.file = Some(e.file_name());
                        line.size_bytes = Some(m.size_bytes);
                        line.sha256 = Some(m.sha256.clone());
                        line.started_at = Some(m.started_at);
                        line.finished_at = Some(m.finished_at);
                        line.backup_seconds = Some(
                            (m.finished_at - m.started_at).num_milliseconds().max(0) as f64
                                / 1000.0,
                        );
                        line.transfer_seconds = Some(seconds);
                        item.status = "success";
                        item.file = line.file.clone();
                        item.transfer_seconds = Some(seconds);
                    }
                    Err(err) => {
                        let why = format!("not deposited: {err:#}");
                        ctx.log.error(format!("{name}: {why}"));
                        line.error = Some(why.clone());
                        item.error = Some(why);
                        item.deposited = false;
                    }
                }
            }
            (None, _) => {}
        }
        lines.push(line);
        pushed.push(item);
    }
    let generated_at = Utc::now();
    let report = StatusReport {
        agent: Agent {
            company: agent.company.0.clone(),
            city: agent.city.0.clone(),
            site: agent.site.0.clone(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string()),
        },
        generated_at,
        databases: lines,
    };
    deposit.put_report(&site, &report).await?;
    Ok(PushReport {
        deposit: match &deposit {
            Deposit::Local(p) => p.join(&site).display().to_string(),
            Deposit::Rsync { dest, .. } => format!("{dest}/{}", site.display()),
        },
        generated_at,
        pushed,
    })
}

impl Report for PushReport {
    fn status(&self) -> Status {
        Status::of_operation(self.pushed.iter().any(|p| !p.deposited))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("deposit".into(), json!(self.deposit));
        m.insert(
            "generated_at".into(),
            json!(crate::monitor::stamp(self.generated_at)),
        );
        m.insert("databases".into(), json!(self.pushed));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut t = TableBlock::new([
            "target", "database", "reported", "file", "transfer", "error",
        ]);
        for p in &self.pushed {
            t.row([
                p.target.clone(),
                p.database.clone(),
                p.status.to_string(),
                p.file.clone().unwrap_or_default(),
                p.transfer_seconds
                    .map(|s| format!("{s:.1} s"))
                    .unwrap_or_default(),
                p.error.clone().unwrap_or_default(),
            ]);
        }
        vec![t]
    }

    fn lines(&self) -> Vec<String> {
        vec![format!(
            "STATUS.json of {} database(s) written to {}",
            self.pushed.len(),
            self.deposit
        )]
    }
}
