//! `pitr …`: point-in-time recovery commands that run from the DBA's shell (the server's own
//! hooks are `wal push` / `wal fetch`, in `cmd::wal`).

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::cli::PitrCommand;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::pitr::setup::SettingCheck;
use crate::pitr::verify::WalVerify;
use crate::pitr::{self, PitrPlace};
use crate::Ctx;

pub async fn run(cmd: &PitrCommand, ctx: &Ctx) -> Result<Outcome> {
    let places = pitr::places(&ctx.config, &ctx.targets, !ctx.global.targets.is_empty())?;
    match cmd {
        PitrCommand::Verify => verify(places, ctx).await,
        PitrCommand::Setup { apply } => setup(places, *apply, ctx).await,
        PitrCommand::Check => crate::cmd::pitr_check::run(places, ctx).await,
        PitrCommand::BaseBackup(args) => {
            crate::cmd::pitr_base::base_backup(places, args, ctx).await
        }
        PitrCommand::List => crate::cmd::pitr_base::list(places, ctx).await,
        PitrCommand::Restore(args) => crate::cmd::pitr_base::restore(places, args, ctx).await,
        PitrCommand::Drill(args) => crate::cmd::pitr_base::drill(places, args, ctx).await,
    }
}

/// One target's verification, or why it could not be read.
struct VerifyOne {
    target: String,
    result: std::result::Result<WalVerify, String>,
    /// The base backups, each re-read against its manifest, and the restorable window.
    bases: Vec<Value>,
    window: Option<crate::cmd::pitr_base::Window>,
    bases_failed: bool,
}

struct VerifyReport(Vec<VerifyOne>);

impl Report for VerifyReport {
    fn status(&self) -> Status {
        Status::of_operation(
            self.0
                .iter()
                .any(|v| v.bases_failed || v.result.as_ref().map(|w| w.failed()).unwrap_or(true)),
        )
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let targets: Vec<Value> = self
            .0
            .iter()
            .map(|v| match &v.result {
                Ok(w) => {
                    let mut o = json!({"target": v.target,
                        "status": if w.failed() { "failed" } else { "success" }});
                    if let (Value::Object(o), Ok(Value::Object(wj))) =
                        (&mut o, serde_json::to_value(w))
                    {
                        o.extend(wj);
                        o.insert("base_backups".into(), Value::Array(v.bases.clone()));
                        o.insert("window".into(), json!(v.window));
                        if v.bases_failed {
                            o.insert("status".into(), json!("failed"));
                        }
                    }
                    o
                }
                Err(e) => json!({"target": v.target, "status": "failed", "error": e}),
            })
            .collect();
        m.insert("targets".into(), Value::Array(targets));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut out = Vec::new();
        for v in &self.0 {
            let Ok(w) = &v.result else { continue };
            let mut t = TableBlock::new([
                "timeline",
                "from",
                "segments",
                "first",
                "continuous to",
                "last",
                "gaps",
                "partial",
            ])
            .titled(format!("{}: WAL archive {}", v.target, w.archive_dir));
            for tl in &w.timelines {
                t.row([
                    tl.timeline.to_string(),
                    match (&tl.parent, &tl.switch_lsn) {
                        (Some(p), Some(l)) => format!("{p} at {l}"),
                        _ => "-".into(),
                    },
                    tl.segments.to_string(),
                    tl.first.clone().unwrap_or_else(|| "-".into()),
                    tl.continuous_to.clone().unwrap_or_else(|| "-".into()),
                    tl.last.clone().unwrap_or_else(|| "-".into()),
                    if tl.gaps.is_empty() {
                        "none".into()
                    } else {
                        tl.gaps
                            .iter()
                            .map(|g| {
                                if g.missing == 1 {
                                    g.from.clone()
                                } else {
                                    format!("{}..{} ({})", g.from, g.to, g.missing)
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    tl.partial.len().to_string(),
                ]);
            }
            out.push(t);
            if !w.corrupt.is_empty() {
                let mut c =
                    TableBlock::new(["file", "why"]).titled(format!("{}: corrupt files", v.target));
                for f in &w.corrupt {
                    c.row([f.file.clone(), f.reason.clone()]);
                }
                out.push(c);
            }
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|v| match &v.result {
                Err(e) => format!("{}: FAILED: {e}", v.target),
                Ok(w) => {
                    let gaps: usize = w.timelines.iter().map(|t| t.gaps.len()).sum();
                    let mut s = format!(
                        "{}: {} files verified ({} segment size from {}): {} gap(s), {} corrupt, {} archived twice",
                        v.target,
                        w.files,
                        w.wal_segment_size,
                        w.segment_size_from,
                        gaps,
                        w.corrupt.len(),
                        w.duplicates.len()
                    );
                    if !w.temporary.is_empty() {
                        s.push_str(&format!("; {} unfinished push(es)", w.temporary.len()));
                    }
                    if !w.stray.is_empty() {
                        s.push_str(&format!("; {} file(s) not ours", w.stray.len()));
                    }
                    let bad: Vec<String> = v
                        .bases
                        .iter()
                        .filter(|b| b["status"] != "intact")
                        .map(|b| {
                            format!(
                                "{} {} ({})",
                                b["file"].as_str().unwrap_or(""),
                                b["status"].as_str().unwrap_or(""),
                                b["reason"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    s.push_str(&format!(
                        "; {} base backup(s) re-read{}",
                        v.bases.len(),
                        if bad.is_empty() {
                            String::new()
                        } else {
                            format!(", damaged: {}", bad.join(", "))
                        }
                    ));
                    if let Some(win) = &v.window {
                        s.push_str(&format!(
                            "\n{}",
                            crate::cmd::pitr_base::window_line(&v.target, win)
                        ));
                    }
                    s
                }
            })
            .collect()
    }
}

async fn verify(places: Vec<PitrPlace>, ctx: &Ctx) -> Result<Outcome> {
    let mut out = Vec::new();
    for p in places {
        let place = p.clone();
        let result = tokio::task::spawn_blocking(move || {
            let loc = place.open_wal()?;
            let wal = pitr::verify::verify_at(&loc, true)?;
            let bases = crate::cmd::pitr_base::verify_bases(&place, &loc, &wal)?;
            Ok::<_, anyhow::Error>((wal, bases))
        })
        .await
        .map_err(|e| anyhow::anyhow!("verify task: {e}"))
        .and_then(|r| r)
        .map_err(|e| crate::cmd::failure(ctx, &p.target, &e));
        let (result, bases, window, bases_failed) = match result {
            Ok((wal, (bases, window, failed))) => (Ok(wal), bases, window, failed),
            Err(e) => (Err(e), Vec::new(), None, true),
        };
        out.push(VerifyOne {
            target: p.target,
            result,
            bases,
            window,
            bases_failed,
        });
    }
    Ok(Outcome::from_report(&VerifyReport(out)))
}

/// One target's settings: their verdicts, and what `--apply` did.
#[derive(serde::Serialize)]
struct SetupOne {
    target: String,
    status: &'static str,
    settings: Vec<SettingCheck>,
    /// With --apply: the settings changed with ALTER SYSTEM.
    applied: Vec<String>,
    /// A changed setting (wal_level, archive_mode) takes effect only after a restart.
    restart_needed: bool,
    /// The server already has settings waiting for a restart (pg_settings.pending_restart).
    pending_restart: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

struct SetupReport {
    apply: bool,
    targets: Vec<SetupOne>,
}

impl Report for SetupReport {
    fn status(&self) -> Status {
        Status::of_operation(self.targets.iter().any(|t| t.status == "failed"))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "targets".into(),
            serde_json::to_value(&self.targets).unwrap_or(Value::Null),
        );
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        self.targets
            .iter()
            .filter(|t| t.error.is_none())
            .map(|t| {
                let mut b =
                    TableBlock::new(["setting", "current", "wanted", "status", "applies on"])
                        .titled(format!("{}: archiving settings", t.target));
                for s in &t.settings {
                    b.row([
                        s.name.clone(),
                        s.current.clone(),
                        s.wanted.clone(),
                        s.status.to_string(),
                        s.applies_on.to_string(),
                    ]);
                }
                b
            })
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.targets {
            if let Some(e) = &t.error {
                out.push(format!("{}: FAILED: {e}", t.target));
                continue;
            }
            let todo: Vec<&SettingCheck> = t.settings.iter().filter(|s| s.needs_change()).collect();
            if !t.applied.is_empty() {
                out.push(format!(
                    "{}: set with ALTER SYSTEM: {}; {}",
                    t.target,
                    t.applied.join(", "),
                    if t.restart_needed {
                        "configuration reloaded, RESTART the server for wal_level/archive_mode to take effect"
                    } else {
                        "configuration reloaded: in effect now"
                    }
                ));
            } else if todo.is_empty() {
                out.push(format!("{}: archiving settings are ready", t.target));
            } else {
                for s in todo {
                    out.push(format!(
                        "{}: ALTER SYSTEM SET {} = '{}';  -- {} ({} needed)",
                        t.target,
                        s.name,
                        s.wanted.replace('\'', "''"),
                        s.why,
                        s.applies_on
                    ));
                }
                if !self.apply {
                    out.push(format!(
                        "{}: run `pitr setup --apply` to make these changes (as a superuser)",
                        t.target
                    ));
                }
            }
            if !t.pending_restart.is_empty() {
                out.push(format!(
                    "{}: waiting for a restart: {}",
                    t.target,
                    t.pending_restart.join(", ")
                ));
            }
        }
        out
    }
}

async fn setup(places: Vec<PitrPlace>, apply: bool, ctx: &Ctx) -> Result<Outcome> {
    let exe =
        std::env::current_exe().map_err(|e| anyhow::anyhow!("finding this program's path: {e}"))?;
    let config = std::fs::canonicalize(&ctx.config.path).map_err(|e| {
        anyhow::anyhow!(
            "finding the config's absolute path ({}): {e}",
            ctx.config.path.display()
        )
    })?;
    let mut out = Vec::new();
    for p in places {
        let Some(target) = ctx.targets.iter().find(|t| t.name == p.target) else {
            continue;
        };
        let wanted = pitr::setup::wanted_archive_command(
            &exe.display().to_string(),
            &config.display().to_string(),
            &p.target,
        );
        let one = setup_one(target, &wanted, apply).await;
        out.push(match one {
            Ok(o) => o,
            Err(e) => SetupOne {
                target: p.target.clone(),
                status: "failed",
                settings: Vec::new(),
                applied: Vec::new(),
                restart_needed: false,
                pending_restart: Vec::new(),
                error: Some(crate::cmd::failure(ctx, &p.target, &e)),
            },
        });
    }
    Ok(Outcome::from_report(&SetupReport {
        apply,
        targets: out,
    }))
}

async fn setup_one(target: &crate::config::Target, wanted: &str, apply: bool) -> Result<SetupOne> {
    use crate::engine::postgres::{self as pg, pitr as pgpitr};
    let conn = pg::connect(target).await?;
    let (settings, superuser) = pgpitr::archiving_settings(&conn).await?;
    let checks = pitr::setup::judge(&settings, wanted);
    let todo: Vec<(String, String)> = checks
        .iter()
        .filter(|c| c.needs_change())
        .map(|c| (c.name.clone(), c.wanted.clone()))
        .collect();
    let mut applied = Vec::new();
    let mut restart_needed = false;
    if apply && !todo.is_empty() {
        if !superuser {
            anyhow::bail!(
                "--apply changes the settings with ALTER SYSTEM, which needs a superuser: `{}` \
                 is not one (connect as a superuser, or make the changes listed by `pitr setup` \
                 by hand)",
                target.connection.user
            );
        }
        pgpitr::alter_system(&conn, &todo).await?;
        applied = todo.iter().map(|(n, _)| n.clone()).collect();
        restart_needed = checks
            .iter()
            .any(|c| c.needs_change() && c.applies_on == "restart");
    }
    let pending_restart = settings
        .iter()
        .filter(|s| s.pending_restart)
        .map(|s| s.name.clone())
        .collect();
    let status = if todo.is_empty() || apply {
        "success"
    } else {
        "failed"
    };
    Ok(SetupOne {
        target: target.name.clone(),
        status,
        settings: checks,
        applied,
        restart_needed,
        pending_restart,
        error: None,
    })
}
