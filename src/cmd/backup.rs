//! `backup [run] | list | verify | check`.
//!
//! A run takes the target's lock, streams the engine's dump through a SHA-256 hasher into
//! `<file>.partial`, fsyncs and renames it, writes the manifest the same way, records the
//! run, and only then applies retention. Any failure removes the partial file and leaves
//! every existing backup alone.

use std::io::BufWriter;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::backup::check::{assess, Facts, Finding};
use crate::backup::state::{HashRecord, StateStore, TargetState, VerifyRecord};
use crate::backup::{
    self, places, retention, BackupName, Entry, HashingWriter, LastRun, Manifest, Place, Quick,
    TargetLock, PARTIAL,
};
use crate::cli::{BackupArgs, BackupCommand, BackupRunArgs, CheckArgs, VerifyArgs};
use crate::cmd::{each, failure, PerTarget};
use crate::config::{EngineKind, Target};
use crate::engine::cleanup::InProgress;
use crate::engine::{self, BackupStyle};
use crate::error::ConfigError;
use crate::output::nagios::{NagiosLine, PerfData, Range, Uom};
use crate::output::{Outcome, Report, Status, TableBlock};
use crate::Ctx;

/// Hours after which `backup check` calls a backup stale when the config sets no
/// `max_age_hours`: a nightly backup plus two hours of slack.
const DEFAULT_MAX_AGE_HOURS: u32 = 26;

/// Hours after which `backup check` warns that the latest backup was not fully verified
/// (its own run counts): a week, the cadence of the scheduled `backup verify` in deploy/.
const DEFAULT_VERIFY_MAX_AGE_HOURS: u32 = 168;

pub async fn run(args: &BackupArgs, ctx: &Ctx) -> Result<Outcome> {
    match &args.command {
        None => run_backups(&args.run, ctx).await,
        Some(BackupCommand::Run(r)) => run_backups(r, ctx).await,
        Some(BackupCommand::List) => list(ctx).await,
        Some(BackupCommand::Verify(v)) => verify(v, ctx).await,
        Some(BackupCommand::Check(c)) => check(c, ctx).await,
    }
}

// ---------------------------------------------------------------------------------------------
// backup run

async fn run_backups(args: &BackupRunArgs, ctx: &Ctx) -> Result<Outcome> {
    // Checked before any backup starts: a push with nowhere to go is a configuration error.
    if args.push {
        crate::cmd::agent::agent_section(ctx).map_err(|e| e.context("--push"))?;
    }
    let mut report = BackupRunReport {
        backups: Vec::new(),
        retention: Vec::new(),
        dry_run: args.dry_run,
        prune_only: args.prune_only,
    };
    let runs = each(
        ctx,
        places(ctx)?,
        |p| p.target,
        |p| async move {
            let (done, gone) = backup_target(&p, args, ctx).await?;
            Ok((p.target.name.clone(), done, gone))
        },
    )
    .await;
    for run in runs {
        match run {
            PerTarget::Done((target, done, gone)) => {
                report.backups.extend(done.map(PerTarget::Done));
                report.retention.push((target, gone));
            }
            PerTarget::Failed(f) => report.backups.push(PerTarget::Failed(f)),
        }
    }
    let mut outcome = Outcome::from_report(&report);
    if args.push {
        // After a failed backup too: the site's report then tells the monitor of the failure.
        crate::cmd::agent::push_after_backup(ctx, &mut outcome).await;
    }
    Ok(outcome)
}

/// What `backup` did: a backup (or a failure) per target, and what retention removed.
struct BackupRunReport {
    backups: Vec<PerTarget<BackupDone>>,
    /// Per target, the files retention removed (or would remove, with `--dry-run`).
    retention: Vec<(String, Vec<String>)>,
    dry_run: bool,
    prune_only: bool,
}

#[derive(Debug, serde::Serialize)]
struct BackupDone {
    target: String,
    file: String,
    path: String,
    sha256: String,
    size_bytes: u64,
    seconds: f64,
    status: &'static str,
    tables: usize,
}

impl Report for BackupRunReport {
    fn status(&self) -> Status {
        Status::of_operation(self.backups.iter().any(PerTarget::failed))
    }

    fn fields(&self) -> serde_json::Map<String, Value> {
        let rotated: Vec<&String> = self.retention.iter().flat_map(|(_, g)| g).collect();
        let mut m = serde_json::Map::new();
        m.insert("backups".into(), json!(self.backups));
        m.insert("rotated".into(), json!(rotated));
        if self.dry_run {
            m.insert("dry_run".into(), json!(true));
        }
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        if self.prune_only {
            return Vec::new();
        }
        let mut table = TableBlock::new(["target", "file", "size", "seconds", "sha256", "status"]);
        for b in &self.backups {
            match b {
                PerTarget::Done(d) => table.row([
                    d.target.clone(),
                    d.file.clone(),
                    indicatif::HumanBytes(d.size_bytes).to_string(),
                    format!("{:.1}", d.seconds),
                    d.sha256.chars().take(16).collect(),
                    "success".into(),
                ]),
                PerTarget::Failed(f) => table.row([
                    f.target.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    "FAILED".into(),
                ]),
            }
        }
        vec![table]
    }

    fn lines(&self) -> Vec<String> {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        self.retention
            .iter()
            .map(|(target, gone)| {
                let which = if gone.is_empty() {
                    String::new()
                } else {
                    format!(": {}", gone.join(", "))
                };
                format!("{target}: retention {verb} {} backup(s){which}", gone.len())
            })
            .collect()
    }
}

/// One target's backup (None with `--prune-only`) and the files retention removed. Every
/// run that tries to back up is recorded, whatever stops it (see [`record_run`]).
async fn backup_target(
    p: &Place<'_>,
    args: &BackupRunArgs,
    ctx: &Ctx,
) -> Result<(Option<BackupDone>, Vec<String>)> {
    if args.prune_only {
        backup::private_dir(&p.dir)?;
        let _lock = lock(p, args.wait).await?;
        return Ok((None, apply_retention(p, args.dry_run, ctx).await?));
    }
    let started = Utc::now();
    let res = match &p.remote {
        Some(_) => take_backup_remote(p, args, ctx).await,
        None => take_backup(p, args, ctx).await,
    };
    record_run(p, ctx, started, &res);
    // Retention under the same lock, after a successful backup only.
    let (done, lock) = res?;
    lock.check()?;
    let gone = apply_retention(p, false, ctx).await?;
    Ok((Some(done), gone))
}

/// The target's lock, and for a bucket its lease on the prefix.
async fn lock(p: &Place<'_>, wait: bool) -> Result<TargetLock> {
    let (dir, name, remote) = (p.dir.clone(), p.target.name.clone(), p.remote.clone());
    tokio::task::spawn_blocking(move || {
        let lock = TargetLock::acquire(&dir, &name, wait)?;
        match &remote {
            Some(r) => lock.with_lease(r, &name, &format!("backup of target {name}"), wait),
            None => Ok(lock),
        }
    })
    .await?
}

/// Records the outcome of a run in the state directory, where `backup check` finds it even
/// when the backup directory itself is what failed (read-only, a file in its place, full),
/// and beside the backups (`.<target>.last_run.json`) when that directory can take it.
fn record_run(
    p: &Place<'_>,
    ctx: &Ctx,
    started: DateTime<Utc>,
    res: &Result<(BackupDone, TargetLock)>,
) {
    let name = &p.target.name;
    let run = LastRun {
        target: name.clone(),
        status: if res.is_ok() { "success" } else { "failed" }.into(),
        started_at: started,
        finished_at: Utc::now(),
        file: res.as_ref().ok().map(|(d, _)| d.file.clone()),
        error: res.as_ref().err().map(|e| format!("{e:#}")),
    };
    let store = StateStore::new(&ctx.config.state_dir, name, &p.dir);
    if let Err(e) = store.update(|s| s.last_run = Some(run.clone())) {
        ctx.log.warn(format!(
            "{name}: could not record the run in {}: {e:#}",
            store.path().display()
        ));
    }
    if p.dir.is_dir() {
        if let Err(e) = run.write(&p.dir) {
            ctx.log
                .debug(format!("{name}: no run record beside the backups: {e:#}"));
        }
    }
}

/// Takes the lock, dumps, writes the manifest: the backup itself, without retention.
async fn take_backup(
    p: &Place<'_>,
    args: &BackupRunArgs,
    ctx: &Ctx,
) -> Result<(BackupDone, TargetLock)> {
    let target = p.target;
    let database = target.connection.database.clone();
    backup::private_dir(&p.dir)?;
    let lock = lock(p, args.wait).await?;
    for stale in backup::remove_stale_partials(&p.dir, &database) {
        ctx.log.info(format!(
            "{}: removed {} left by an interrupted backup",
            target.name,
            stale.display()
        ));
    }
    for left in backup::remove_leftovers(&p.dir, &database, Utc::now()) {
        ctx.log.warn(format!(
            "{}: removed {}, left by a backup killed before it finished (no manifest)",
            target.name,
            left.display()
        ));
    }
    let started = Utc::now();
    let clock = Instant::now();
    let name = BackupName::new(&database, started, engine::backup_extension(target.engine));
    let path = p.dir.join(name.file_name());
    let partial = p.dir.join(format!("{}{PARTIAL}", name.file_name()));
    if path.exists() {
        bail!(
            "{} already exists (two backups in the same second?)",
            path.display()
        );
    }
    ctx.log
        .debug(format!("{}: writing {}", target.name, partial.display()));
    // Stopped before its manifest is written, the backup leaves neither file behind.
    let in_progress = [InProgress::register(&partial), InProgress::register(&path)];
    let res = match engine::backup_style(target.engine) {
        BackupStyle::ServerSide => server_backup(p, &name).await,
        BackupStyle::Streamed => write_backup(target, p.cfg, &partial, &path)
            .await
            .map(|(info, sha, size)| (info, sha, size, None)),
    };
    let finished = Utc::now();
    let (info, sha, size, location) = match res {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            for f in in_progress {
                f.finished();
            }
            return Err(e);
        }
    };
    // What `backup check` compares without reading the file.
    let mtime = match location {
        None => Some(
            backup::file_stamp(&path)
                .map(|(_, t)| t)
                .with_context(|| format!("reading the modification time of {}", path.display()))?,
        ),
        Some(_) => None,
    };
    let manifest = Manifest {
        engine: target.engine.to_string(),
        target: target.name.clone(),
        database: database.clone(),
        file: name.file_name(),
        size_bytes: size,
        sha256: sha.clone(),
        started_at: started,
        finished_at: finished,
        status: "success".into(),
        tool: info.tool,
        tables: info.tables,
        format: info.format,
        server_version: info.server_version,
        host: target.connection.host.clone(),
        location,
        verified_at: None,
        mairie_dba_version: env!("CARGO_PKG_VERSION").to_string(),
        mtime,
        etag: None,
    };
    if let Err(e) = manifest.write(&Manifest::path_for(&path)) {
        // Without its manifest the file is not a backup: remove it rather than leave a trap.
        let _ = std::fs::remove_file(&path);
        return Err(e.context("writing the manifest"));
    }
    for f in in_progress {
        f.finished();
    }
    let seconds = clock.elapsed().as_secs_f64();
    let done = BackupDone {
        target: target.name.clone(),
        file: name.file_name(),
        path: path.display().to_string(),
        sha256: sha,
        size_bytes: size,
        seconds: (seconds * 1000.0).round() / 1000.0,
        status: "success",
        tables: manifest.tables.len(),
    };
    Ok((done, lock))
}

/// [`take_backup`] for backups in a bucket: the dump streams into the object while hashed,
/// then the manifest object is written (only if absent). A failure aborts the upload.
async fn take_backup_remote(
    p: &Place<'_>,
    args: &BackupRunArgs,
    ctx: &Ctx,
) -> Result<(BackupDone, TargetLock)> {
    let target = p.target;
    let remote = p.remote.as_ref().expect("a remote place");
    let database = target.connection.database.clone();
    backup::private_dir(&p.dir)?;
    let lock = lock(p, args.wait).await?;
    let store = remote.open().await?;
    for note in backup::remote::clean(&store, &database, Utc::now()).await? {
        ctx.log.warn(format!("{}: {note}", target.name));
    }
    let started = Utc::now();
    let clock = Instant::now();
    let name = BackupName::new(&database, started, engine::backup_extension(target.engine));
    ctx.log.debug(format!(
        "{}: uploading {}",
        target.name,
        store.url().display(&store.url().key(&name.file_name()))
    ));
    let w = backup::remote::write_backup(&store, target, p.cfg, &name).await?;
    let finished = Utc::now();
    let manifest = Manifest {
        engine: target.engine.to_string(),
        target: target.name.clone(),
        database: database.clone(),
        file: name.file_name(),
        size_bytes: w.size,
        sha256: w.sha256.clone(),
        started_at: started,
        finished_at: finished,
        status: "success".into(),
        tool: w.info.tool,
        tables: w.info.tables,
        format: w.info.format,
        server_version: w.info.server_version,
        host: target.connection.host.clone(),
        location: None,
        verified_at: None,
        mairie_dba_version: env!("CARGO_PKG_VERSION").to_string(),
        mtime: None,
        etag: w.etag,
    };
    if let Err(e) = lock.check() {
        let _ = store.delete(&store.url().key(&name.file_name())).await;
        return Err(e);
    }
    if let Err(e) = backup::remote::write_manifest(&store, &manifest).await {
        // Without its manifest the object is not a backup: remove it rather than leave a trap.
        let _ = store.delete(&store.url().key(&name.file_name())).await;
        return Err(e.context("writing the manifest"));
    }
    let seconds = clock.elapsed().as_secs_f64();
    let done = BackupDone {
        target: target.name.clone(),
        file: name.file_name(),
        path: w.path.display().to_string(),
        sha256: w.sha256,
        size_bytes: w.size,
        seconds: (seconds * 1000.0).round() / 1000.0,
        status: "success",
        tables: manifest.tables.len(),
    };
    Ok((done, lock))
}

/// Dumps into `partial`, then makes it durable and gives it its final name.
async fn write_backup(
    target: &Target,
    cfg: &crate::config::BackupEntry,
    partial: &Path,
    path: &Path,
) -> Result<(engine::DumpInfo, String, u64)> {
    let file = backup::create_private(partial)?;
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut info = engine::dump(target, cfg, &mut w).await?;
    let (buf, sha, size) = w.finish();
    let file = buf
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", partial.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", partial.display()))?;
    // A file that does not pass its engine's check never gets a backup's name.
    engine::check_dump(target.engine, partial, &mut info).await?;
    std::fs::rename(partial, path).with_context(|| format!("renaming {}", partial.display()))?;
    backup::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok((info, sha, size))
}

/// A server-side backup (SQL Server) is written and checked on the server's own disk; only the
/// manifest is local. Its SHA-256 stays empty: the server's page checksums stand in for it.
async fn server_backup(
    p: &Place<'_>,
    name: &BackupName,
) -> Result<(engine::DumpInfo, String, u64, Option<String>)> {
    let server_dir = p.cfg.server_dir.as_deref().ok_or_else(|| {
        ConfigError::new(format!(
            "backup.{}.server_dir: SQL Server writes backups on its own disk; say where (e.g. /var/opt/mssql/backup)",
            p.target.name
        ))
    })?;
    let (info, size, location) =
        engine::server_backup(p.target, server_dir, &name.file_name()).await?;
    Ok((info, String::new(), size, Some(location)))
}

async fn apply_retention(p: &Place<'_>, dry_run: bool, ctx: &Ctx) -> Result<Vec<String>> {
    let entries = p.entries_at(Utc::now()).await?;
    let store = match &p.remote {
        Some(r) => Some(r.open().await?),
        None => None,
    };
    let doomed = retention::plan(
        &entries,
        &p.target.name,
        Utc::now(),
        p.cfg.retention_days,
        p.cfg.keep_min,
    );
    let mut gone = Vec::new();
    for e in doomed {
        if !dry_run {
            match &store {
                Some(s) => backup::remote::delete(s, e).await,
                None => retention::delete(e).map_err(anyhow::Error::from),
            }
            .with_context(|| format!("deleting {}", e.path.display()))?;
            ctx.log.debug(format!(
                "{}: retention deleted {}",
                p.target.name,
                e.file_name()
            ));
        }
        gone.push(e.file_name());
    }
    Ok(gone)
}

// ---------------------------------------------------------------------------------------------
// backup list

/// What `backup list` says of a file: `good`, `damaged` (its last `backup verify` failed,
/// or its file is missing or not of the manifest's size), `foreign (skipped)` (a manifest
/// that does not match the configuration, or a symbolic link), `dated in the future`,
/// `no manifest`, `bad manifest`, `other target (…)`, or the manifest's own status.
fn entry_state(e: &Entry, target: &str, verify: Option<&VerifyRecord>) -> String {
    match &e.manifest {
        Ok(m) if m.target != target => format!("other target ({})", m.target),
        _ if e.foreign.is_some() => "foreign (skipped)".into(),
        _ if e.dated_ahead.is_some() => "dated in the future".into(),
        Ok(m) if m.status == "success" && !e.is_whole() => {
            if e.present {
                "damaged (size differs from the manifest)".into()
            } else {
                "damaged (file missing)".into()
            }
        }
        Ok(m) if m.status == "success" => match verify {
            Some(v) if v.failed() && m.verified_at.is_none_or(|ok| v.at > ok) => "damaged".into(),
            _ => "good".into(),
        },
        Ok(m) => m.status.clone(),
        Err(why) if why.starts_with("no manifest") => "no manifest".into(),
        Err(_) => "bad manifest".into(),
    }
}

async fn list(ctx: &Ctx) -> Result<Outcome> {
    let now = Utc::now();
    let mut report = BackupListReport {
        backups: Vec::new(),
    };
    for p in places(ctx)? {
        let record = read_record(&p, ctx);
        for e in p.entries_at(now).await? {
            let file = e.file_name();
            let verify = record
                .as_ref()
                .and_then(|r| r.files.get(&file))
                .and_then(|f| f.verify.as_ref());
            let m = e.manifest.as_ref().ok();
            report.backups.push(ListedBackup {
                target: p.target.name.clone(),
                path: e.path.display().to_string(),
                taken_at: e.name.taken.and_utc(),
                // A file dated in the future is not -525599 min old: it is reported as such.
                age_hours: (now.naive_utc() - e.name.taken).num_seconds().max(0) as f64 / 3600.0,
                size_bytes: e.size,
                status: entry_state(&e, &p.target.name, verify),
                verified_at: [
                    m.and_then(|m| m.verified_at),
                    verify.filter(|v| !v.failed()).map(|v| v.at),
                ]
                .into_iter()
                .flatten()
                .max(),
                verify_error: verify.filter(|v| v.failed()).and_then(|v| v.error.clone()),
                file,
            });
        }
    }
    Ok(Outcome::from_report(&report))
}

/// The target's state record, or None (with a warning when it exists but cannot be read).
fn read_record(p: &Place<'_>, ctx: &Ctx) -> Option<TargetState> {
    let store = StateStore::new(&ctx.config.state_dir, &p.target.name, &p.dir);
    store.read().unwrap_or_else(|e| {
        ctx.log.warn(format!("{}: {e:#}", p.target.name));
        None
    })
}

/// What `backup list` found: every backup file of every target, newest first per target.
struct BackupListReport {
    backups: Vec<ListedBackup>,
}

#[derive(Debug, serde::Serialize)]
struct ListedBackup {
    target: String,
    file: String,
    path: String,
    #[serde(serialize_with = "rfc3339")]
    taken_at: DateTime<Utc>,
    /// Unrounded: the JSON shows tenths, the table a human age.
    #[serde(serialize_with = "tenths")]
    age_hours: f64,
    size_bytes: u64,
    /// `good`, `damaged`, `dated in the future`, `no manifest`, `bad manifest`,
    /// `other target (…)` or the manifest's status.
    status: String,
    #[serde(serialize_with = "rfc3339_opt")]
    verified_at: Option<DateTime<Utc>>,
    /// Why its last `backup verify` failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_error: Option<String>,
}

impl Report for BackupListReport {
    fn status(&self) -> Status {
        Status::Success
    }

    fn fields(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("backups".into(), json!(self.backups));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut table = TableBlock::new(["target", "file", "age", "size", "status", "verified"]);
        for b in &self.backups {
            table.row([
                b.target.clone(),
                b.file.clone(),
                human_age(b.age_hours),
                indicatif::HumanBytes(b.size_bytes).to_string(),
                b.status.clone(),
                b.verified_at
                    .map(|v| v.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into()),
            ]);
        }
        vec![table]
    }
}

fn human_age(hours: f64) -> String {
    if hours < 1.0 {
        format!("{:.0} min", hours * 60.0)
    } else if hours < 48.0 {
        format!("{hours:.1} h")
    } else {
        format!("{:.1} d", hours / 24.0)
    }
}

/// Hours as the JSON shows them: to a tenth.
fn round_tenths(hours: f64) -> f64 {
    (hours * 10.0).round() / 10.0
}

fn tenths<S: serde::Serializer>(hours: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_tenths(*hours))
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------------------------
// backup verify

/// Re-hashes against the manifest, then reads the archive through with the engine's own
/// tool (the server, for SQL Server). Returns the manifest.
pub async fn verify_entry(e: &Entry, target: Option<&Target>) -> Result<Manifest> {
    let m = backup::check_hash(e)?;
    let kind = EngineKind::parse(&m.engine).ok_or_else(|| {
        anyhow!(
            "{}: manifest names an unknown engine `{}`",
            e.path.display(),
            m.engine
        )
    })?;
    let read = engine::verify_backup(kind, &e.path, m.location.as_deref(), target).await;
    read.with_context(|| format!("{}: the archive is not readable", e.path.display()))?;
    Ok(m)
}

/// Where a backup file's verification is recorded: the state of its manifest's target and
/// of the configured backup directory holding it (or, for a file elsewhere, of its own
/// directory).
fn store_for_file(ctx: &Ctx, target: &str, file: &Path) -> StateStore {
    let parent = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let dir = ctx
        .config
        .backup
        .get(target)
        .map(|cfg| ctx.config.resolve(&cfg.dir))
        .filter(|d| same(d, parent))
        .unwrap_or_else(|| parent.to_path_buf());
    StateStore::new(&ctx.config.state_dir, target, &dir)
}

async fn verify(args: &VerifyArgs, ctx: &Ctx) -> Result<Outcome> {
    let mut todo: Vec<(String, Entry, StateStore, Option<backup::remote::RemoteDir>)> = Vec::new();
    match &args.file {
        Some(f) => {
            let e = Entry::for_file(f)?;
            let target = e
                .manifest
                .as_ref()
                .map(|m| m.target.clone())
                .unwrap_or_default();
            let store = store_for_file(ctx, &target, f);
            todo.push((target, e, store, None));
        }
        None => {
            for p in places(ctx)? {
                let entries = p.entries_at(Utc::now()).await?;
                if entries.is_empty() {
                    ctx.log
                        .warn(format!("{}: no backup in {}", p.target.name, p.location()));
                }
                // The latest is the newest one not dated in the future.
                let take = if args.all { entries.len() } else { 1 };
                for e in entries
                    .into_iter()
                    .filter(|e| args.all || e.dated_ahead.is_none())
                    .take(take)
                {
                    let store = StateStore::new(&ctx.config.state_dir, &p.target.name, &p.dir);
                    todo.push((p.target.name.clone(), e, store, p.remote.clone()));
                }
            }
        }
    }
    let mut report = VerifyReport {
        verified: Vec::new(),
    };
    for (target, e, store, remote) in todo {
        let t = ctx.targets.iter().find(|t| t.name == target);
        // The size and time of the bytes about to be read: what a later check compares.
        let stamp = match &remote {
            Some(_) => None,
            None => backup::file_stamp(&e.path).ok(),
        };
        let res = match &remote {
            // Streamed back from the bucket and re-hashed, then read through.
            Some(r) => {
                async {
                    let copy = backup::remote::fetch(&r.open().await?, &e).await?;
                    verify_entry(&copy.entry, t).await
                }
                .await
            }
            None => verify_entry(&e, t).await,
        };
        let at = Utc::now();
        let file = e.file_name();
        let record = match &res {
            Ok(_) => VerifyRecord {
                at,
                status: "success".into(),
                error: None,
            },
            Err(err) => VerifyRecord {
                at,
                status: "failed".into(),
                error: Some(format!("{err:#}")),
            },
        };
        let hashed = match (&res, stamp) {
            (Ok(m), Some((size, mtime))) if m.location.is_none() => Some(HashRecord {
                at,
                size,
                mtime,
                intact: true,
                error: None,
            }),
            _ => None,
        };
        if let Err(err) = store.update(|s| {
            let f = s.files.entry(file.clone()).or_default();
            f.verify = Some(record);
            if hashed.is_some() {
                f.hashed = hashed;
            }
        }) {
            ctx.log.warn(format!(
                "{target}: could not record the verification in {}: {err:#}",
                store.path().display()
            ));
        }
        let item = match res {
            Ok(mut m) => {
                // Also in the manifest, for readers of the directory alone; the state record
                // above is what counts when the directory cannot be written (and for a
                // bucket, whose manifests are never rewritten).
                m.verified_at = Some(at);
                let written = match &remote {
                    Some(_) => Ok(()),
                    None => m.write(&Manifest::path_for(&e.path)),
                };
                if let Err(err) = written {
                    ctx.log.warn(format!(
                        "{target}: {file} verified, but its manifest could not record it: {err:#}"
                    ));
                }
                Verified::Done {
                    target,
                    file,
                    status: "success",
                    sha256: m.sha256,
                    tables: m.tables.len(),
                }
            }
            Err(err) => Verified::Failed {
                error: failure(ctx, &target, &err),
                target,
                file,
                status: "failed",
            },
        };
        report.verified.push(item);
    }
    if report.verified.is_empty() {
        ctx.log.error("no backup to verify");
    }
    Ok(Outcome::from_report(&report))
}

/// What `backup verify` found: each backup it read through, or why it could not.
struct VerifyReport {
    verified: Vec<Verified>,
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum Verified {
    Done {
        target: String,
        file: String,
        status: &'static str,
        sha256: String,
        /// For the table only.
        #[serde(skip)]
        tables: usize,
    },
    Failed {
        target: String,
        file: String,
        status: &'static str,
        error: String,
    },
}

impl Report for VerifyReport {
    /// Failed when a backup fails, or when there was none to verify.
    fn status(&self) -> Status {
        let failed = self
            .verified
            .iter()
            .any(|v| matches!(v, Verified::Failed { .. }));
        Status::of_operation(failed || self.verified.is_empty())
    }

    fn fields(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("verified".into(), json!(self.verified));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut table = TableBlock::new(["target", "file", "result"]);
        for v in &self.verified {
            match v {
                Verified::Done {
                    target,
                    file,
                    tables,
                    ..
                } => table.row([
                    target.clone(),
                    file.clone(),
                    format!("ok ({tables} tables)"),
                ]),
                Verified::Failed { target, file, .. } => {
                    table.row([target.clone(), file.clone(), "FAILED".into()])
                }
            }
        }
        vec![table]
    }
}

// ---------------------------------------------------------------------------------------------
// backup check

async fn check(args: &CheckArgs, ctx: &Ctx) -> Result<Outcome> {
    let now = Utc::now();
    let mut report = BackupCheckReport {
        targets: Vec::new(),
    };
    for p in places(ctx)? {
        let name = &p.target.name;
        let store = StateStore::new(&ctx.config.state_dir, name, &p.dir);
        let record = read_record(&p, ctx);
        let entries = p.entries_at(now).await.map_err(|e| format!("{e:#}"));
        // For a bucket, the cheap check is one HEAD per good backup, made here.
        let mut heads: std::collections::HashMap<String, String> = Default::default();
        if let (Some(r), Ok(list)) = (&p.remote, &entries) {
            match r.open().await {
                Ok(store) => {
                    for e in list.iter().filter(|e| e.is_good_for(name)) {
                        // --deep streams the object back and re-hashes it.
                        let res = if args.deep {
                            backup::remote::fetch(&store, e).await.map(drop)
                        } else {
                            backup::remote::quick_check(&store, e).await
                        };
                        if let Err(err) = res {
                            heads.insert(e.file_name(), format!("{err:#}"));
                        }
                    }
                }
                Err(err) => {
                    for e in list.iter() {
                        heads.insert(e.file_name(), format!("{err:#}"));
                    }
                }
            }
        }
        // The newest of the two records of the last run: the state directory's, and the one
        // beside the backups (written by an older version, or by a run as another user).
        let last_run = [
            record.as_ref().and_then(|r| r.last_run.clone()),
            LastRun::read(&p.dir, name),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|r| r.finished_at);
        let max_age = p.cfg.max_age_hours.unwrap_or(DEFAULT_MAX_AGE_HOURS);
        let facts = Facts {
            target: name,
            last_run: last_run.as_ref(),
            max_age_hours: max_age,
            verify_max_age_hours: Some(
                p.cfg
                    .verify_max_age_hours
                    .unwrap_or(DEFAULT_VERIFY_MAX_AGE_HOURS),
            ),
            record: record.as_ref(),
            unwritable: backup::unwritable(&p.dir),
            report_future: true,
            now,
        };
        let mut hashed = Vec::new();
        let finding = assess(entries.as_deref().map_err(Clone::clone), &facts, |e| {
            if p.remote.is_some() {
                return match heads.get(&e.file_name()) {
                    Some(err) => Err(anyhow!("{err}")),
                    None => Ok(()),
                };
            }
            intact(e, record.as_ref(), args.deep, &mut hashed)
        });
        if !hashed.is_empty() {
            let res = store.update(|s| {
                for (file, h) in hashed {
                    s.files.entry(file).or_default().hashed = Some(h);
                }
            });
            if let Err(e) = res {
                ctx.log.warn(format!(
                    "{name}: could not record the hash in {}: {e:#}",
                    store.path().display()
                ));
            }
        }
        let checked = CheckedTarget {
            target: name.clone(),
            max_age_hours: max_age,
            checked_at: now,
            finding,
        };
        if p.dir.is_dir() {
            let mut text = serde_json::to_vec_pretty(&checked.status_file())?;
            text.push(b'\n');
            if let Err(e) = backup::write_atomic(&p.dir.join("STATUS.json"), &text) {
                ctx.log
                    .warn(format!("{name}: could not write STATUS.json: {e:#}"));
            }
        }
        report.targets.push(checked);
    }
    Ok(Outcome::from_report(&report))
}

/// Whether the latest backup's bytes are still those of its manifest. Without `--deep`, a
/// `stat` answers (present, same size, same modification time as when it was written or
/// last hashed); the file is read only when it was written since with the same size, or
/// with `--deep`. A hash taken here is recorded, so that it is not taken again while the
/// file stays as it is.
fn intact(
    e: &Entry,
    record: Option<&TargetState>,
    deep: bool,
    hashed: &mut Vec<(String, HashRecord)>,
) -> Result<()> {
    let file = e.file_name();
    let prior = record
        .and_then(|r| r.files.get(&file))
        .and_then(|f| f.hashed.as_ref());
    if !deep && backup::quick_check(e, prior)? == Quick::Unchanged {
        return Ok(());
    }
    let local = e.manifest.as_ref().is_ok_and(|m| m.location.is_none());
    let stamp = backup::file_stamp(&e.path).ok().filter(|_| local);
    let res = backup::check_hash(e).map(|_| ());
    if let Some((size, mtime)) = stamp {
        hashed.push((
            file,
            HashRecord {
                at: Utc::now(),
                size,
                mtime,
                intact: res.is_ok(),
                error: res.as_ref().err().map(|e| format!("{e:#}")),
            },
        ));
    }
    res
}

/// What `backup check` found: one judgement per target, Nagios-style.
struct BackupCheckReport {
    targets: Vec<CheckedTarget>,
}

/// One target's judgement and what it was judged against.
struct CheckedTarget {
    target: String,
    max_age_hours: u32,
    checked_at: DateTime<Utc>,
    finding: Finding,
}

impl CheckedTarget {
    /// The age as the JSON shows it, to a tenth of an hour.
    fn age_tenths(&self) -> Option<f64> {
        self.finding.age_hours.map(round_tenths)
    }

    fn problems(&self) -> Vec<ProblemDoc<'_>> {
        self.finding
            .problems
            .iter()
            .map(|p| ProblemDoc {
                state: p.state,
                status: p.status.as_str(),
                message: &p.message,
            })
            .collect()
    }

    /// The target's entry in the command's JSON document.
    fn doc(&self) -> CheckedDoc<'_> {
        let f = &self.finding;
        CheckedDoc {
            target: &self.target,
            status: f.status.as_str(),
            checks: [CheckDoc {
                name: "backup",
                status: f.status.as_str(),
                state: f.state,
                value: self.age_tenths(),
                unit: "h",
                message: &f.message,
                latest: f.latest.as_deref(),
                size_bytes: f.size_bytes,
                verified_at: f.verified_at,
                problems: self.problems(),
            }],
        }
    }

    /// `STATUS.json`, the last judgement, written in the target's backup directory.
    fn status_file(&self) -> StatusFile<'_> {
        let f = &self.finding;
        StatusFile {
            target: &self.target,
            state: f.state,
            status: f.status.as_str(),
            latest: f.latest.as_deref(),
            age_hours: self.age_tenths(),
            max_age_hours: self.max_age_hours,
            message: &f.message,
            checked_at: self.checked_at,
            size_bytes: f.size_bytes,
            verified_at: f.verified_at,
            problems: self.problems(),
        }
    }

    /// The plugin line's performance data: the latest backup's age and size.
    fn perfdata(&self) -> Vec<PerfData> {
        let f = &self.finding;
        let mut out = Vec::new();
        if let Some(age) = self.age_tenths() {
            let max = self.max_age_hours as f64;
            out.push(PerfData {
                label: format!("{}_backup_age_hours", self.target),
                value: age,
                uom: Uom::Number,
                warning: Some(Range::Above(max)),
                critical: Some(Range::Above(2.0 * max)),
            });
        }
        if let Some(size) = f.size_bytes {
            out.push(PerfData {
                label: format!("{}_backup_size", self.target),
                value: size as f64,
                uom: Uom::Bytes,
                warning: None,
                critical: None,
            });
        }
        out
    }
}

#[derive(Debug, serde::Serialize)]
struct CheckedDoc<'a> {
    target: &'a str,
    status: &'static str,
    checks: [CheckDoc<'a>; 1],
}

#[derive(Debug, serde::Serialize)]
struct CheckDoc<'a> {
    name: &'static str,
    status: &'static str,
    state: &'static str,
    value: Option<f64>,
    unit: &'static str,
    message: &'a str,
    latest: Option<&'a str>,
    size_bytes: Option<u64>,
    #[serde(serialize_with = "rfc3339_opt")]
    verified_at: Option<DateTime<Utc>>,
    problems: Vec<ProblemDoc<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct ProblemDoc<'a> {
    state: &'static str,
    status: &'static str,
    message: &'a str,
}

#[derive(Debug, serde::Serialize)]
struct StatusFile<'a> {
    target: &'a str,
    state: &'static str,
    status: &'static str,
    latest: Option<&'a str>,
    age_hours: Option<f64>,
    max_age_hours: u32,
    message: &'a str,
    #[serde(serialize_with = "rfc3339")]
    checked_at: DateTime<Utc>,
    size_bytes: Option<u64>,
    #[serde(serialize_with = "rfc3339_opt")]
    verified_at: Option<DateTime<Utc>>,
    problems: Vec<ProblemDoc<'a>>,
}

impl Report for BackupCheckReport {
    /// The worst target's status.
    fn status(&self) -> Status {
        self.targets
            .iter()
            .map(|t| t.finding.status)
            .fold(Status::Ok, Status::max)
    }

    fn fields(&self) -> serde_json::Map<String, Value> {
        let targets: Vec<CheckedDoc> = self.targets.iter().map(CheckedTarget::doc).collect();
        let mut m = serde_json::Map::new();
        m.insert("targets".into(), json!(targets));
        m
    }

    fn tables(&self) -> Vec<TableBlock> {
        let mut table = TableBlock::new([
            "target", "state", "latest", "age", "size", "verified", "message",
        ]);
        for t in &self.targets {
            let f = &t.finding;
            table.row([
                t.target.clone(),
                f.state.to_string(),
                f.latest.clone().unwrap_or_default(),
                f.age_hours.map(human_age).unwrap_or_default(),
                f.size_bytes
                    .map(|b| indicatif::HumanBytes(b).to_string())
                    .unwrap_or_default(),
                f.verified_at
                    .map(|v| v.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                f.message.clone(),
            ]);
        }
        vec![table]
    }

    /// After the table: `BACKUP <STATUS> - <target> <STATE>, …`.
    fn lines(&self) -> Vec<String> {
        let summary: Vec<String> = self
            .targets
            .iter()
            .map(|t| format!("{} {}", t.target, t.finding.state))
            .collect();
        vec![format!(
            "BACKUP {} - {}",
            self.status().as_str().to_uppercase(),
            summary.join(", ")
        )]
    }

    /// One plugin line: each target's state (and what is wrong), then the age and size of
    /// each latest backup as performance data.
    fn nagios(&self) -> Option<String> {
        let summary: Vec<String> = self
            .targets
            .iter()
            .map(|t| match t.finding.status {
                Status::Ok => format!("{} {}", t.target, t.finding.state),
                _ => format!("{} {}: {}", t.target, t.finding.state, t.finding.message),
            })
            .collect();
        let line = NagiosLine {
            status: self.status(),
            message: format!("backup: {}", summary.join("; ")),
            perfdata: self
                .targets
                .iter()
                .flat_map(CheckedTarget::perfdata)
                .collect(),
        };
        Some(line.to_string())
    }
}
