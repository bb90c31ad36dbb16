//! `pitr base-backup`, `pitr list`, `pitr restore`, `pitr drill`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::backup::{create_private, private_dir, sync_dir, TargetLock};
use crate::cli::{BaseBackupArgs, PitrDrillArgs, PitrRestoreArgs};
use crate::config::Target;
use crate::engine::postgres::base_backup as pgbase;
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::pitr::archive::{self, WalKind};
use crate::pitr::base::{self, BaseManifest, Found};
use crate::pitr::bucket::{self, BaseLoc, WalLoc};
use crate::pitr::restore::{self as rs, Recovery, RecoveryTarget, RunAs};
use crate::pitr::setup::shell_word;
use crate::pitr::{verify, PitrPlace};
use crate::Ctx;

fn target_of<'a>(ctx: &'a Ctx, p: &PitrPlace) -> Result<&'a Target> {
    ctx.targets
        .iter()
        .find(|t| t.name == p.target)
        .ok_or_else(|| anyhow!("target `{}` is not selected", p.target))
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

// ---------------------------------------------------------------------------------------------
// base-backup

/// What retention did (or would do).
#[derive(Debug, Default, Serialize)]
struct Pruned {
    deleted_backups: Vec<String>,
    kept_backups: Vec<String>,
    /// WAL files deleted, and the first segment kept.
    deleted_wal: usize,
    wal_kept_from: Option<String>,
    dry_run: bool,
}

#[derive(Debug, Serialize)]
struct BaseOne {
    target: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup: Option<BaseManifest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<Pruned>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

struct BaseReport(Vec<BaseOne>);

impl Report for BaseReport {
    fn status(&self) -> Status {
        Status::of_operation(self.0.iter().any(|o| o.status == "failed"))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "targets".into(),
            serde_json::to_value(&self.0).unwrap_or(Value::Null),
        );
        m
    }

    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for o in &self.0 {
            if let Some(e) = &o.error {
                out.push(format!("{}: FAILED: {e}", o.target));
            }
            if let Some(b) = &o.backup {
                out.push(format!(
                    "{}: base backup {} ({} of data, {} compressed, {:.1} s): LSN {} to {} on \
                     timeline {}, {} files checked against the server's manifest",
                    o.target,
                    b.file,
                    human(b.data_bytes),
                    human(b.size_bytes),
                    o.seconds.unwrap_or(0.0),
                    b.start_lsn,
                    b.stop_lsn,
                    b.timeline,
                    b.checked_files
                ));
            }
            if let Some(r) = &o.retention {
                let verb = if r.dry_run { "would delete" } else { "deleted" };
                out.push(format!(
                    "{}: retention {verb} {} base backup(s){}, {} WAL file(s) older than {}; \
                     keeps {}",
                    o.target,
                    r.deleted_backups.len(),
                    if r.deleted_backups.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", r.deleted_backups.join(", "))
                    },
                    r.deleted_wal,
                    r.wal_kept_from.as_deref().unwrap_or("-"),
                    if r.kept_backups.is_empty() {
                        "no base backup".to_string()
                    } else {
                        r.kept_backups.join(", ")
                    }
                ));
            }
        }
        out
    }
}

pub async fn base_backup(
    places: Vec<PitrPlace>,
    args: &BaseBackupArgs,
    ctx: &Ctx,
) -> Result<Outcome> {
    let mut out = Vec::new();
    for p in places {
        let one = base_one(&p, args, ctx).await;
        out.push(match one {
            Ok(o) => o,
            Err(e) => BaseOne {
                target: p.target.clone(),
                status: "failed",
                backup: None,
                seconds: None,
                retention: None,
                error: Some(crate::cmd::failure(ctx, &p.target, &e)),
            },
        });
    }
    Ok(Outcome::from_report(&BaseReport(out)))
}

async fn base_one(p: &PitrPlace, args: &BaseBackupArgs, ctx: &Ctx) -> Result<BaseOne> {
    let target = target_of(ctx, p)?;
    p.base()?;
    let lock_dir = p
        .lock_dir
        .clone()
        .ok_or_else(|| anyhow!("no lock directory"))?;
    if matches!(p.base, Some(crate::pitr::Archive::Bucket(_))) {
        std::fs::create_dir_all(&lock_dir)
            .with_context(|| format!("creating {}", lock_dir.display()))?;
    }
    private_dir(&lock_dir)?;
    let lock = TargetLock::acquire(&lock_dir, &p.target, args.wait)?;
    // A base directory in a bucket: also the prefix's lease, one writer across machines.
    let lock = match &p.base {
        Some(crate::pitr::Archive::Bucket(r)) => tokio::task::block_in_place(|| {
            lock.with_lease(
                r,
                &format!("pitr-{}", p.target),
                &format!("pitr base-backup of target {}", p.target),
                args.wait,
            )
        })?,
        _ => lock,
    };
    let base = p.open_base()?;
    let wal = p.open_wal()?;
    if args.prune_only {
        let r = prune(p, &base, &wal, args.dry_run, &lock)?;
        return Ok(BaseOne {
            target: p.target.clone(),
            status: "success",
            backup: None,
            seconds: None,
            retention: Some(r),
            error: None,
        });
    }
    // Under the lock, any .partial (or unfinished upload) is a killed run's.
    match &base {
        BaseLoc::Dir(dir) => {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with("base-") && n.ends_with(base::PARTIAL) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        BaseLoc::Bucket(b) => {
            for gone in bucket::clean_bases(b, Utc::now())? {
                ctx.log.info(format!(
                    "{}: removed what a killed run left: {gone}",
                    p.target
                ));
            }
        }
    }
    let started_at = Utc::now();
    let t0 = Instant::now();
    let name = base::file_name(started_at);
    // Where it is written: a hidden name renamed at the end, or an object whose upload
    // completes at the end (and is aborted if the run fails or is killed).
    let (sink, path, partial) = match &base {
        BaseLoc::Dir(dir) => {
            let path = dir.join(&name);
            let partial = dir.join(format!("{name}{}", base::PARTIAL));
            if path.exists() {
                bail!("{} already exists", path.display());
            }
            (
                base::Sink::File(create_private(&partial)?),
                path,
                Some(partial),
            )
        }
        BaseLoc::Bucket(b) => {
            let key = b.key(&name);
            if b.block(b.store.head(&key))?.is_some() {
                bail!("{} already exists", b.shown(&key));
            }
            (
                base::Sink::Upload(Box::new(b.upload(&key)?)),
                PathBuf::from(key),
                None,
            )
        }
    };
    let label = format!(
        "mairie-dba {} {}",
        p.target,
        started_at.format("%Y%m%dT%H%M%SZ")
    );
    let taken = pgbase::take(target, &label, p.entry.compression_level, sink).await;
    let done = (|| -> Result<BaseManifest> {
        let taken = taken?;
        let sysid = taken.stream.system_identifier.to_string();
        if let Some(info) = wal.info()? {
            if info.system_identifier != sysid {
                bail!(
                    "this server (system identifier {sysid}) is not the cluster whose WAL the \
                     archive {} holds ({}): a base backup without its WAL cannot be restored",
                    p.archive_dir.display(),
                    info.system_identifier
                );
            }
        }
        let finished_at = Utc::now();
        let m = BaseManifest {
            kind: base::KIND.into(),
            engine: "postgresql".into(),
            target: p.target.clone(),
            file: name.clone(),
            size_bytes: taken.size,
            sha256: taken.sha256.clone(),
            started_at,
            finished_at,
            status: "success".into(),
            label: taken.stream.label.clone(),
            start_lsn: base::format_lsn(taken.stream.start_lsn),
            stop_lsn: base::format_lsn(taken.stream.stop_lsn),
            timeline: taken.stream.timeline,
            start_wal: taken.stream.start_wal.clone(),
            stop_wal: taken.stream.stop_wal.clone(),
            system_identifier: sysid,
            wal_segment_size: taken.server.wal_segment_size,
            server_version: taken.server.server_version.clone(),
            tool: taken.tool.clone(),
            files: taken.stream.files,
            data_bytes: taken.stream.data_bytes,
            checked_files: taken.stream.checked_files,
            etag: taken.etag.clone(),
            mairie_dba_version: env!("CARGO_PKG_VERSION").into(),
        };
        // The manifest last: a file without one is never taken for a backup.
        match (&base, &partial) {
            (BaseLoc::Dir(dir), Some(partial)) => {
                std::fs::rename(partial, &path)
                    .with_context(|| format!("renaming to {}", path.display()))?;
                sync_dir(dir)?;
                m.write(&BaseManifest::path_for(&path))?;
            }
            (BaseLoc::Bucket(b), _) => {
                lock.check()?;
                let mut text = serde_json::to_vec_pretty(&m)?;
                text.push(b'\n');
                b.put_new(&format!("{}.json", path.to_string_lossy()), text)?;
            }
            (BaseLoc::Dir(_), None) => bail!("no temporary file"),
        }
        Ok(m)
    })();
    let m = match done {
        Ok(m) => m,
        Err(e) => {
            match (&base, &partial) {
                (BaseLoc::Dir(_), Some(partial)) => {
                    let _ = std::fs::remove_file(partial);
                    let _ = std::fs::remove_file(&path);
                }
                // The upload was aborted, or completed on a stream cut short: no manifest
                // makes it a backup, and it is removed now (else by the next run).
                (BaseLoc::Bucket(b), _) => {
                    let _ = b.delete(&path.to_string_lossy());
                }
                _ => {}
            }
            return Err(e);
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    ctx.log.info(format!(
        "{}: base backup {} written ({} bytes)",
        p.target, m.file, m.size_bytes
    ));
    let retention = prune(p, &base, &wal, false, &lock)?;
    Ok(BaseOne {
        target: p.target.clone(),
        status: "success",
        backup: Some(m),
        seconds: Some(seconds),
        retention: Some(retention),
        error: None,
    })
}

/// Keeps `keep_base` base backups and the WAL the oldest kept one needs.
fn prune(
    p: &PitrPlace,
    base: &BaseLoc,
    wal: &WalLoc,
    dry_run: bool,
    lock: &TargetLock,
) -> Result<Pruned> {
    lock.check()?;
    let found = base.scan(&p.target)?;
    let plan = base::plan_prune(&found, p.entry.keep_base);
    let mut r = Pruned {
        kept_backups: plan.keep.clone(),
        wal_kept_from: plan.wal_kept_from.clone(),
        dry_run,
        ..Default::default()
    };
    for name in &plan.delete {
        if !dry_run {
            base.delete(name)?;
        }
        r.deleted_backups.push(name.clone());
    }
    let Some(before) = plan.wal_before else {
        return Ok(r);
    };
    if let WalLoc::Dir(d) = wal {
        if !d.exists() {
            return Ok(r);
        }
    }
    let info = wal.info()?;
    let seg = info
        .map(|i| i.wal_segment_size)
        .unwrap_or(archive::DEFAULT_SEGMENT_SIZE);
    let (listing, _) = wal.list()?;
    let mut dirs = std::collections::BTreeSet::new();
    for f in &listing.files {
        if f.wal.kind == WalKind::History {
            continue;
        }
        let Some((log, s)) = f.wal.log_seg() else {
            continue;
        };
        if archive::segment_number(log, s, seg) < before {
            if !dry_run {
                wal.delete(f)?;
                if let (WalLoc::Dir(_), Some(d)) = (wal, f.path.parent()) {
                    dirs.insert(d.to_path_buf());
                }
            }
            r.deleted_wal += 1;
        }
    }
    for d in dirs {
        sync_dir(&d)?;
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// list

/// From when to when one can restore: the oldest base backup's end to the last segment of
/// the unbroken run of archived WAL after it.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from_backup: String,
    pub from_time: chrono::DateTime<Utc>,
    pub from_lsn: String,
    pub timeline: u32,
    /// The last segment of the unbroken run from the backup's end, and when it was archived
    /// (a restore may target any time up to about then).
    pub to_segment: String,
    pub to_time: Option<chrono::DateTime<Utc>>,
    /// Segments missing after that run (the archive goes on past them, unusable).
    pub gap_after: Option<String>,
}

pub fn window(found: &[Found], wal: &verify::WalVerify, loc: &WalLoc) -> Option<Window> {
    let m = found.iter().find_map(|f| f.good())?;
    let seg = wal.wal_segment_size;
    let stop = base::parse_lsn(&m.stop_lsn)?;
    let stop_seg = stop.saturating_sub(1) / seg.max(1);
    let tl = wal.timelines.iter().find(|t| t.timeline == m.timeline);
    let mut end = stop_seg;
    if let Some(t) = tl {
        while t.numbers.contains(&(end + 1)) {
            end += 1;
        }
    }
    let to_segment = archive::segment_name(m.timeline, end, seg);
    let to_time = archive::WalName::parse(&to_segment).and_then(|w| {
        loc.versions(&w)
            .ok()?
            .first()
            .and_then(|a| loc.written_at(a))
    });
    let gap_after = tl.and_then(|t| {
        t.numbers
            .range(end + 1..)
            .next()
            .map(|_| archive::segment_name(m.timeline, end + 1, seg))
    });
    Some(Window {
        from_backup: m.file.clone(),
        from_time: m.finished_at,
        from_lsn: m.stop_lsn.clone(),
        timeline: m.timeline,
        to_segment,
        to_time: to_time.or(Some(m.finished_at)),
        gap_after,
    })
}

struct ListOne {
    target: String,
    result: std::result::Result<(Vec<Found>, Option<Window>), String>,
}

struct ListReport(Vec<ListOne>);

impl Report for ListReport {
    fn status(&self) -> Status {
        Status::of_operation(self.0.iter().any(|o| o.result.is_err()))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let targets: Vec<Value> = self
            .0
            .iter()
            .map(|o| match &o.result {
                Err(e) => json!({"target": o.target, "status": "failed", "error": e}),
                Ok((found, w)) => json!({
                    "target": o.target,
                    "status": "success",
                    "base_backups": found.iter().map(|f| match &f.manifest {
                        Ok(m) => json!({"file": f.name(), "status": "good", "manifest": m}),
                        Err(e) => json!({"file": f.name(), "status": "unusable", "reason": e}),
                    }).collect::<Vec<_>>(),
                    "window": w,
                }),
            })
            .collect();
        m.insert("targets".into(), Value::Array(targets));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut out = Vec::new();
        for o in &self.0 {
            let Ok((found, _)) = &o.result else { continue };
            let mut t = TableBlock::new([
                "base backup",
                "ended",
                "timeline",
                "WAL",
                "data",
                "size",
                "status",
            ])
            .titled(format!("{}: base backups", o.target));
            for f in found {
                match &f.manifest {
                    Ok(m) => t.row([
                        m.file.clone(),
                        m.finished_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                        m.timeline.to_string(),
                        format!("{} .. {}", m.start_lsn, m.stop_lsn),
                        human(m.data_bytes),
                        human(m.size_bytes),
                        "good".into(),
                    ]),
                    Err(e) => t.row([
                        f.name(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        format!("UNUSABLE: {e}"),
                    ]),
                }
            }
            out.push(t);
        }
        out
    }

    fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|o| match &o.result {
                Err(e) => format!("{}: FAILED: {e}", o.target),
                Ok((_, None)) => {
                    format!("{}: nothing to restore from yet (no base backup)", o.target)
                }
                Ok((_, Some(w))) => window_line(&o.target, w),
            })
            .collect()
    }
}

pub fn window_line(target: &str, w: &Window) -> String {
    format!(
        "{target}: restorable from {} (end of {}) to about {} (segment {} on timeline {}){}",
        w.from_time.format("%Y-%m-%d %H:%M:%S UTC"),
        w.from_backup,
        w.to_time
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "?".into()),
        w.to_segment,
        w.timeline,
        match &w.gap_after {
            Some(g) => format!("; {g} is missing: WAL archived after it cannot be replayed"),
            None => String::new(),
        }
    )
}

fn list_one(p: &PitrPlace) -> Result<(Vec<Found>, Option<Window>)> {
    let found = p.open_base()?.scan(&p.target)?;
    let loc = p.open_wal()?;
    let wal = match &loc {
        WalLoc::Dir(d) if !d.is_dir() => None,
        _ => Some(verify::verify_at(&loc, false)?),
    };
    let w = wal.as_ref().and_then(|v| window(&found, v, &loc));
    Ok((found, w))
}

pub async fn list(places: Vec<PitrPlace>, ctx: &Ctx) -> Result<Outcome> {
    let out = places
        .into_iter()
        .map(|p| ListOne {
            result: tokio::task::block_in_place(|| list_one(&p))
                .map_err(|e| crate::cmd::failure(ctx, &p.target, &e)),
            target: p.target,
        })
        .collect();
    Ok(Outcome::from_report(&ListReport(out)))
}

/// For `pitr verify`: the base backups of a target, re-read against their manifests, and
/// the window.
pub fn verify_bases(
    p: &PitrPlace,
    loc: &WalLoc,
    wal: &verify::WalVerify,
) -> Result<(Vec<Value>, Option<Window>, bool)> {
    if p.base.is_none() {
        return Ok((Vec::new(), None, false));
    }
    let base = p.open_base()?;
    let found = base.scan(&p.target)?;
    let mut out = Vec::new();
    let mut failed = false;
    for f in &found {
        match &f.manifest {
            Err(e) => {
                failed = true;
                out.push(json!({"file": f.name(), "status": "unusable", "reason": e}));
            }
            Ok(m) => {
                match base.read_back(f, m, None) {
                    Ok(()) => out.push(json!({"file": f.name(), "status": "intact"})),
                    Err(e) => {
                        failed = true;
                        out.push(json!({"file": f.name(), "status": "corrupt", "reason": format!("{e:#}")}))
                    }
                }
            }
        }
    }
    Ok((out, window(&found, wal, loc), failed))
}

// ---------------------------------------------------------------------------------------------
// restore

#[derive(Debug, Serialize)]
struct RestoreDone {
    target: String,
    status: &'static str,
    pgdata: String,
    recovery_target: String,
    base_backup: String,
    files: u64,
    started: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ending: Option<rs::Ending>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

struct RestoreReport(RestoreDone);

impl Report for RestoreReport {
    fn status(&self) -> Status {
        Status::of_operation(self.0.status == "failed")
    }

    fn fields(&self) -> Map<String, Value> {
        match serde_json::to_value(&self.0) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }

    fn lines(&self) -> Vec<String> {
        let r = &self.0;
        let mut out = Vec::new();
        if let Some(e) = &r.error {
            out.push(format!("{}: FAILED: {e}", r.target));
            return out;
        }
        out.push(format!(
            "{}: {} unpacked into {} ({} files, checked by pg_verifybackup), recovery to {}",
            r.target, r.base_backup, r.pgdata, r.files, r.recovery_target
        ));
        match &r.ending {
            Some(e) => {
                out.push(format!(
                    "{}: recovery ended: {} on port {}{}",
                    r.target,
                    e.state,
                    r.port.unwrap_or(0),
                    e.consistent_at
                        .as_ref()
                        .map(|c| format!(", consistent at {c}"))
                        .unwrap_or_default()
                ));
                for l in &e.reached {
                    out.push(format!("{}:   {}", r.target, l.trim()));
                }
            }
            None => out.push(format!(
                "{}: start it with: pg_ctl -D {} start{}",
                r.target,
                shell_word(&r.pgdata),
                match r.port {
                    Some(p) => format!(" (it listens on port {p})"),
                    None => " (set `port` in its postgresql.auto.conf first if production runs on this machine)".into(),
                }
            )),
        }
        out
    }
}

/// `restore_command` for the target: this binary's `wal fetch`, with the config's absolute
/// path.
fn restore_command(ctx: &Ctx, target: &str) -> Result<String> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    let config = std::fs::canonicalize(&ctx.config.path).with_context(|| {
        format!(
            "finding the config's absolute path ({})",
            ctx.config.path.display()
        )
    })?;
    Ok(format!(
        "{} -c {} -t {} wal fetch %f %p",
        shell_word(&exe.display().to_string()),
        shell_word(&config.display().to_string()),
        shell_word(target)
    ))
}

/// What a restore needs besides the place.
struct RestorePlan<'a> {
    target: RecoveryTarget,
    timeline: Option<&'a str>,
    action: &'a str,
    pgdata: PathBuf,
    backup: Option<PathBuf>,
    start: bool,
    port: Option<u16>,
    timeout: Duration,
    keep_archiving: bool,
    extra: Vec<(String, String)>,
}

struct Restored {
    base_backup: String,
    files: u64,
    port: Option<u16>,
    ending: Option<rs::Ending>,
}

/// Unpacks, verifies, writes the recovery settings and (with `start`) runs recovery. On a
/// failure before the server starts, everything written is removed; a server that stopped
/// during recovery is left stopped with its log, for a person to read.
fn restore_blocking(p: &PitrPlace, plan: &RestorePlan<'_>, fetch: String) -> Result<Restored> {
    let base = p.open_base()?;
    let found = base.scan(&p.target)?;
    let chosen: Found = match &plan.backup {
        Some(file) => {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let f = found.iter().find(|f| f.name() == name).ok_or_else(|| {
                anyhow!(
                    "--backup {}: not a base backup of {}",
                    file.display(),
                    base.shown()
                )
            })?;
            if let Err(e) = &f.manifest {
                bail!("--backup {}: {e}", file.display());
            }
            f.clone()
        }
        None => rs::choose(&found, &plan.target)?.clone(),
    };
    let m = chosen
        .good()
        .cloned()
        .ok_or_else(|| anyhow!("no manifest"))?;
    if plan.target == RecoveryTarget::Latest {
        let gaps = rs::latest_gaps(&p.open_wal()?, &m)?;
        if !gaps.is_empty() {
            bail!(
                "the archive has gaps after {} starts ({}): recovery to the latest point would \
                 stop at the first one without a word; restore to a time before it instead",
                m.file,
                gaps.join(", ")
            );
        }
    }
    let bin = rs::server_bin(&m)?;
    let mut run_as = RunAs::current()?;
    if matches!(p.archive, crate::pitr::Archive::Bucket(_)) {
        run_as = run_as.with_s3_credentials();
    }
    let created = rs::prepare_dir(&plan.pgdata)?;
    let pgdata = std::fs::canonicalize(&plan.pgdata)?;
    let prepared = (|| -> Result<(u64, Option<u16>)> {
        let files = rs::unpack(&base, &chosen, &m, &pgdata)?;
        run_as.own(&pgdata)?;
        rs::verifybackup(&bin, &pgdata, &run_as)?;
        let port = match (plan.port, plan.start) {
            (Some(p), _) => Some(p),
            (None, true) => Some(rs::free_port()?),
            (None, false) => None,
        };
        rs::write_recovery(
            &pgdata,
            &Recovery {
                restore_command: fetch,
                target: &plan.target,
                timeline: plan.timeline,
                action: plan.action,
                port,
                keep_archiving: plan.keep_archiving,
                extra: plan.extra.clone(),
            },
        )?;
        run_as.own(&pgdata)?;
        Ok((files, port))
    })();
    let (files, port) = match prepared {
        Ok(x) => x,
        Err(e) => {
            rs::clean_dir(&pgdata, created);
            return Err(e);
        }
    };
    let ending = if plan.start {
        let log = pgdata.join("pitr-restore.log");
        Some(rs::start_and_wait(
            &bin,
            &pgdata,
            &log,
            &run_as,
            plan.action,
            plan.timeout,
        )?)
    } else {
        None
    };
    Ok(Restored {
        base_backup: m.file,
        files,
        port,
        ending,
    })
}

fn one_place(places: Vec<PitrPlace>, what: &str) -> Result<PitrPlace> {
    let n = places.len();
    let mut it = places.into_iter();
    match (it.next(), n) {
        (Some(p), 1) => Ok(p),
        _ => Err(crate::error::ConfigError::new(format!(
            "{what} works on one target: name it with -t ({n} targets have a `pitr:` section)"
        ))
        .into()),
    }
}

pub async fn restore(places: Vec<PitrPlace>, args: &PitrRestoreArgs, ctx: &Ctx) -> Result<Outcome> {
    let p = one_place(places, "pitr restore")?;
    let target = rs::parse_target(
        args.target_time.as_deref(),
        args.target_lsn.as_deref(),
        args.target_name.as_deref(),
    )
    .map_err(|e| crate::error::ConfigError::new(format!("{e:#}")))?;
    if let Some(t) = &args.timeline {
        if t != "latest" && t != "current" && t.parse::<u32>().is_err() {
            return Err(crate::error::ConfigError::new(format!(
                "--timeline `{t}`: a timeline number, `current` or `latest`"
            ))
            .into());
        }
    }
    let fetch = restore_command(ctx, &p.target)?;
    let plan = RestorePlan {
        target: target.clone(),
        timeline: args.timeline.as_deref(),
        action: &args.target_action,
        pgdata: args.pgdata.clone(),
        backup: args.backup.clone(),
        start: args.start,
        port: args.port,
        timeout: Duration::from_secs(args.timeout),
        keep_archiving: args.keep_archiving,
        extra: Vec::new(),
    };
    let result = tokio::task::block_in_place(|| restore_blocking(&p, &plan, fetch));
    let done = match result {
        Ok(r) => RestoreDone {
            target: p.target.clone(),
            status: "success",
            pgdata: args.pgdata.display().to_string(),
            recovery_target: target.describe(),
            base_backup: r.base_backup,
            files: r.files,
            started: args.start,
            port: r.port,
            ending: r.ending,
            error: None,
        },
        Err(e) => RestoreDone {
            target: p.target.clone(),
            status: "failed",
            pgdata: args.pgdata.display().to_string(),
            recovery_target: target.describe(),
            base_backup: String::new(),
            files: 0,
            started: args.start,
            port: None,
            ending: None,
            error: Some(crate::cmd::failure(ctx, &p.target, &e)),
        },
    };
    Ok(Outcome::from_report(&RestoreReport(done)))
}

// ---------------------------------------------------------------------------------------------
// drill

#[derive(Debug, Serialize)]
struct DrillTable {
    table: String,
    production: u64,
    restored: Option<u64>,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct DrillOne {
    target: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    restore_point: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_backup: Option<String>,
    tables: Vec<DrillTable>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

struct DrillReport(Vec<DrillOne>);

impl Report for DrillReport {
    fn status(&self) -> Status {
        Status::of_operation(self.0.iter().any(|d| d.status == "failed"))
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "targets".into(),
            serde_json::to_value(&self.0).unwrap_or(Value::Null),
        );
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        self.0
            .iter()
            .filter(|d| !d.tables.is_empty())
            .map(|d| {
                let mut t = TableBlock::new(["table", "production", "restored", ""])
                    .titled(format!("{}: rows at the drill's restore point", d.target));
                for r in &d.tables {
                    t.row([
                        r.table.clone(),
                        r.production.to_string(),
                        r.restored
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "missing".into()),
                        if r.ok {
                            "ok".into()
                        } else {
                            "DIFFERS".to_string()
                        },
                    ]);
                }
                t
            })
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|d| match &d.error {
                Some(e) => format!("{}: DRILL FAILED: {e}", d.target),
                None => format!(
                    "{}: drill passed: {} restored to restore point `{}` ({}) in {:.1} s, {} \
                     table(s) with the production's row counts{}",
                    d.target,
                    d.base_backup.as_deref().unwrap_or("-"),
                    d.restore_point.as_deref().unwrap_or("-"),
                    d.lsn.as_deref().unwrap_or("-"),
                    d.seconds.unwrap_or(0.0),
                    d.tables.len(),
                    d.kept
                        .as_ref()
                        .map(|k| format!("; the restored copy is kept, stopped, in {k}"))
                        .unwrap_or_default()
                ),
            })
            .collect()
    }
}

pub async fn drill(places: Vec<PitrPlace>, args: &PitrDrillArgs, ctx: &Ctx) -> Result<Outcome> {
    let mut out = Vec::new();
    for p in places {
        let mut one = DrillOne {
            target: p.target.clone(),
            status: "success",
            restore_point: None,
            lsn: None,
            base_backup: None,
            tables: Vec::new(),
            seconds: None,
            kept: None,
            error: None,
        };
        if let Err(e) = drill_one(&p, args, ctx, &mut one).await {
            one.status = "failed";
            one.error = Some(crate::cmd::failure(ctx, &p.target, &e));
        }
        out.push(one);
    }
    Ok(Outcome::from_report(&DrillReport(out)))
}

/// A private directory for the drill's copy, which the server's user can reach: under the
/// system's temporary directory (TMPDIR), owned by that user.
fn drill_dir(run_as: &RunAs) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "mairie-dba-drill-{}-{}",
        std::process::id(),
        Utc::now().format("%Y%m%dT%H%M%S%.3f")
    ));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    run_as.own(&dir)?;
    Ok(dir)
}

async fn drill_one(
    p: &PitrPlace,
    args: &PitrDrillArgs,
    ctx: &Ctx,
    one: &mut DrillOne,
) -> Result<()> {
    let t0 = Instant::now();
    let target = target_of(ctx, p)?;
    let deadline = Duration::from_secs(args.timeout);
    // Fail before touching production when nothing can be restored.
    let found = p.open_base()?.scan(&p.target)?;
    let newest = rs::choose(&found, &RecoveryTarget::Latest)?
        .good()
        .cloned()
        .ok_or_else(|| anyhow!("no base backup"))?;
    let bin = rs::server_bin(&newest)?;
    let point = format!(
        "mairie-dba drill {}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let (counts, lsn, segment) = pgbase::drill_point(target, &p.entry.drill_tables, &point).await?;
    one.restore_point = Some(point.clone());
    one.lsn = Some(lsn);
    // The point's segment must reach the archive (archive_command runs it after the switch).
    let wal = archive::WalName::parse(&segment)
        .ok_or_else(|| anyhow!("the server named an unreadable segment `{segment}`"))?;
    let loc = p.open_wal()?;
    loop {
        if !loc.versions(&wal)?.is_empty() {
            break;
        }
        if t0.elapsed() > deadline {
            bail!(
                "segment {segment}, which holds the restore point, was not archived within {} s: \
                 is archiving working? (pitr check)",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run_as = RunAs::current()?;
    let dir = drill_dir(&run_as)?;
    let pgdata = dir.join("data");
    let sock = dir.join("sock");
    std::fs::create_dir(&sock)?;
    run_as.own(&sock)?;
    let hba = dir.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "# the drill's copy: its own user, through its private socket only\nlocal all all trust\n",
    )?;
    run_as.own(&hba)?;
    let plan = RestorePlan {
        target: RecoveryTarget::Name(point.clone()),
        timeline: None,
        action: "promote",
        pgdata: pgdata.clone(),
        backup: None,
        start: true,
        port: None,
        timeout: deadline.saturating_sub(t0.elapsed()),
        keep_archiving: false,
        extra: vec![
            ("listen_addresses".into(), String::new()),
            ("unix_socket_directories".into(), sock.display().to_string()),
            ("hba_file".into(), hba.display().to_string()),
        ],
    };
    let fetch = restore_command(ctx, &p.target)?;
    let restored = tokio::task::block_in_place(|| restore_blocking(p, &plan, fetch));
    let result = async {
        let r = restored?;
        one.base_backup = Some(r.base_backup.clone());
        let port = r.port.ok_or_else(|| anyhow!("no port"))?;
        let ending = r.ending.as_ref().ok_or_else(|| anyhow!("not started"))?;
        if ending.consistent_at.is_none() {
            bail!(
                "the restored copy never reported a consistent state (log: {})",
                ending.log
            );
        }
        if !ending
            .reached
            .iter()
            .any(|l| l.contains("recovery stopping at restore point"))
        {
            bail!(
                "recovery ended without reaching restore point `{point}` ({})",
                ending.reached.join(" | ")
            );
        }
        let restored_counts = count_restored(&sock, port, target, &counts).await?;
        let mut differ = Vec::new();
        for (t, n) in &counts {
            let got = restored_counts.get(t).copied();
            let ok = got == Some(*n);
            if !ok {
                differ.push(format!(
                    "{t}: {n} in production, {} restored",
                    got.map(|g| g.to_string()).unwrap_or("none".into())
                ));
            }
            one.tables.push(DrillTable {
                table: t.clone(),
                production: *n,
                restored: got,
                ok,
            });
        }
        if !differ.is_empty() {
            bail!("row counts differ: {}", differ.join("; "));
        }
        Ok::<Restored, anyhow::Error>(r)
    }
    .await;
    // Stop the copy and remove it, whatever happened (unless asked to keep it).
    rs::stop(&bin, &pgdata, &run_as);
    if args.keep {
        one.kept = Some(pgdata.display().to_string());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result?;
    one.seconds = Some(t0.elapsed().as_secs_f64());
    Ok(())
}

/// Row counts in the restored copy, through its private socket.
async fn count_restored(
    sock: &Path,
    port: u16,
    target: &Target,
    tables: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, u64>> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(sock)
        .port(port)
        .user(&target.connection.user)
        .dbname(&target.connection.database)
        .application_name("mairie-dba drill")
        .connect_timeout(Duration::from_secs(10));
    let mut last = None;
    let mut client = None;
    for _ in 0..50 {
        match cfg.connect(tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                client = Some(c);
                break;
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let client = client.ok_or_else(|| {
        anyhow!(
            "connecting to the restored copy: {}",
            last.map(|e| crate::engine::postgres::describe(&e))
                .unwrap_or_default()
        )
    })?;
    let mut out = BTreeMap::new();
    for t in tables.keys() {
        let (s, n) = t.split_once('.').unwrap_or(("public", t));
        let q = format!(
            "SELECT count(*) FROM {}.{}",
            crate::engine::postgres::quote_ident(s),
            crate::engine::postgres::quote_ident(n)
        );
        match client.query_one(&q, &[]).await {
            Ok(row) => {
                out.insert(t.clone(), row.get::<_, i64>(0) as u64);
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {}
            Err(e) => return Err(crate::engine::postgres::db_err(e)),
        }
    }
    Ok(out)
}
