//! `pitr restore` and the drill's restore: pick a base backup, unpack it into an empty
//! directory (hash checked, then `pg_verifybackup`), write the recovery settings, and start
//! the server and follow its recovery to the end.
//!
//! The restored copy never writes into the production archive (`archive_mode = off`), never
//! connects to a primary (`primary_conninfo = ''`), and writes its messages in English
//! (`lc_messages = 'C'`) so that how recovery ended can be read from its log.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use crate::pitr::base::{self, BaseManifest, Found};
use crate::pitr::verify;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryTarget {
    Time(DateTime<Utc>),
    Lsn(u64),
    Name(String),
    Latest,
}

impl RecoveryTarget {
    pub fn describe(&self) -> String {
        match self {
            RecoveryTarget::Time(t) => format!("time {}", t.format("%Y-%m-%d %H:%M:%S%.f UTC")),
            RecoveryTarget::Lsn(l) => format!("LSN {}", base::format_lsn(*l)),
            RecoveryTarget::Name(n) => format!("restore point `{n}`"),
            RecoveryTarget::Latest => "the end of the archive".into(),
        }
    }
}

/// `2026-12-06 17:59:00+01`, `2026-12-06T17:59:00Z`, `2026-12-06 17:59` (local time).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    let t = s.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    if let Some(stripped) = t.strip_suffix('Z').or_else(|| t.strip_suffix(" UTC")) {
        for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
            if let Ok(n) = NaiveDateTime::parse_from_str(stripped, f) {
                return Ok(n.and_utc());
            }
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return match Local.from_local_datetime(&n) {
                chrono::LocalResult::Single(d) => Ok(d.with_timezone(&Utc)),
                _ => bail!(
                    "--target-time `{s}`: this local time is ambiguous or does not exist (a \
                     daylight-saving change); give the offset, e.g. `{t}+01`"
                ),
            };
        }
    }
    bail!("--target-time `{s}`: not a time (expected e.g. `2026-12-06 17:59:00+01`)")
}

pub fn parse_target(
    time: Option<&str>,
    lsn: Option<&str>,
    name: Option<&str>,
) -> Result<RecoveryTarget> {
    Ok(match (time, lsn, name) {
        (Some(t), _, _) => RecoveryTarget::Time(parse_time(t)?),
        (_, Some(l), _) => RecoveryTarget::Lsn(base::parse_lsn(l).ok_or_else(|| {
            anyhow!("--target-lsn `{l}`: not a WAL location (expected e.g. `0/3000060`)")
        })?),
        (_, _, Some(n)) => {
            if n.is_empty() || n.len() >= 64 || n.contains(['\n', '\r', '\0']) {
                bail!("--target-name: a restore point name has 1 to 63 characters, on one line");
            }
            RecoveryTarget::Name(n.to_string())
        }
        _ => RecoveryTarget::Latest,
    })
}

/// The base backup to start from: the newest good one that ended before a time target (or
/// whose end LSN is at or before an LSN target); the newest for a name or the latest.
pub fn choose<'a>(found: &'a [Found], target: &RecoveryTarget) -> Result<&'a Found> {
    let good: Vec<&Found> = found.iter().filter(|f| f.good().is_some()).collect();
    let Some(newest) = good.last() else {
        let bad: Vec<String> = found
            .iter()
            .filter_map(|f| {
                f.manifest
                    .as_ref()
                    .err()
                    .map(|e| format!("{}: {e}", f.name()))
            })
            .collect();
        bail!(
            "no usable base backup{}: take one with `pitr base-backup`",
            if bad.is_empty() {
                String::new()
            } else {
                format!(" ({})", bad.join("; "))
            }
        );
    };
    let pick = match target {
        RecoveryTarget::Time(t) => good
            .iter()
            .rev()
            .find(|f| f.good().is_some_and(|m| m.finished_at < *t)),
        RecoveryTarget::Lsn(l) => good.iter().rev().find(|f| {
            f.good()
                .and_then(|m| base::parse_lsn(&m.stop_lsn))
                .is_some_and(|stop| stop <= *l)
        }),
        _ => Some(newest),
    };
    pick.copied().ok_or_else(|| {
        let oldest = good[0].good().map(|m| {
            format!(
                "the oldest base backup, {}, ended at {} (LSN {})",
                m.file,
                m.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
                m.stop_lsn
            )
        });
        anyhow!(
            "no base backup ended before {}: {}; one cannot restore to a point before it",
            target.describe(),
            oldest.unwrap_or_default()
        )
    })
}

/// For `--latest`: a gap after the base backup's start on its timeline (or a later one) would
/// end recovery there without a word, with the data after it missing. Refuse instead.
pub fn latest_gaps(wal: &crate::pitr::bucket::WalLoc, m: &BaseManifest) -> Result<Vec<String>> {
    let v = verify::verify_at(wal, false)?;
    let start = m.start_segment().unwrap_or(0);
    let mut out = Vec::new();
    for t in v.timelines.iter().filter(|t| t.timeline >= m.timeline) {
        for g in &t.gaps {
            let to = crate::pitr::archive::WalName::parse(&g.to)
                .and_then(|w| w.log_seg())
                .map(|(l, s)| crate::pitr::archive::segment_number(l, s, v.wal_segment_size));
            if to.is_some_and(|to| to >= start) {
                out.push(if g.missing == 1 {
                    g.from.clone()
                } else {
                    format!("{}..{}", g.from, g.to)
                });
            }
        }
    }
    Ok(out)
}

/// The restore's data directory: absent (created, 0700) or empty; anything else is refused.
/// Returns whether it was created here (so that a failure removes it, not only its content).
pub fn prepare_dir(dir: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 700 {}", dir.display()))?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(m) if !m.is_dir() => bail!(
            "--pgdata {}: exists and is not a directory (a symbolic link is not followed)",
            dir.display()
        ),
        Ok(_) => {
            let mut rd =
                std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
            if rd.next().is_some() {
                bail!(
                    "--pgdata {}: the directory is not empty; a restore never writes over \
                     existing files (give a new or empty directory)",
                    dir.display()
                );
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 700 {}", dir.display()))?;
            Ok(false)
        }
    }
}

/// Removes what a failed restore wrote: the directory's content, and the directory if it was
/// created here.
pub fn clean_dir(dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dir);
    } else if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Unpacks the base backup into `dir` (empty), checking the compressed file's hash against
/// its manifest as it is read. Only directories and regular files, under `dir`.
pub fn unpack(
    from: &crate::pitr::bucket::BaseLoc,
    found: &base::Found,
    m: &BaseManifest,
    dir: &Path,
) -> Result<u64> {
    let shown = from.shown_of(found);
    let mut files = 0u64;
    let mut each = |entry: &mut tar::Entry<'_, &mut dyn Read>| -> Result<()> {
        let kind = entry.header().entry_type();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !matches!(
            kind,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory
        ) {
            bail!("{shown}: `{name}` is of tar type {kind:?}: not unpacked");
        }
        entry.set_preserve_permissions(false);
        entry.set_preserve_mtime(true);
        // unpack_in refuses absolute paths and `..`, and never writes through a link.
        if !entry
            .unpack_in(dir)
            .with_context(|| format!("unpacking `{name}` into {}", dir.display()))?
        {
            bail!("{shown}: `{name}` would land outside the data directory");
        }
        let target = dir.join(name.trim_end_matches('/'));
        let mode = if kind == tar::EntryType::Directory {
            0o700
        } else {
            files += 1;
            0o600
        };
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", target.display()))?;
        Ok(())
    };
    from.read_back(found, m, Some(&mut each))?;
    sync_tree(dir)?;
    Ok(files)
}

/// Makes what was unpacked durable: one `syncfs` of the directory's filesystem (PostgreSQL
/// would fsync it when it starts, but a copy not started yet must survive a crash too).
fn sync_tree(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    // SAFETY: syncfs on a valid, open file descriptor.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("syncfs {}", dir.display()));
    }
    Ok(())
}

/// The user a restored server runs as: ourselves, or `postgres` when we are root (the server
/// refuses to run as root).
#[derive(Debug, Clone)]
pub struct RunAs {
    pub user: Option<(String, u32, u32)>,
    /// What the restored server's `restore_command` needs besides PATH: for a WAL archive in
    /// a bucket, where its credentials are (see [`RunAs::with_s3_credentials`]).
    pub server_env: Vec<(String, std::ffi::OsString)>,
}

impl RunAs {
    pub fn current() -> Result<RunAs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs {
                user: None,
                server_env: Vec::new(),
            });
        }
        let name = std::ffi::CString::new("postgres").expect("no NUL");
        // SAFETY: getpwnam with a valid C string; the result is read at once.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            bail!("running as root, and there is no `postgres` user to run the restored server as");
        }
        // SAFETY: pw is non-null and points to a passwd entry.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Ok(RunAs {
            user: Some(("postgres".into(), uid, gid)),
            server_env: Vec::new(),
        })
    }

    /// For a WAL archive in a bucket: the restored server's `wal fetch` reads it with the
    /// credentials this command has. The AWS variables that are set are passed to the server
    /// (and to nothing else it runs: the other commands keep an environment of PATH only);
    /// with none, the shared credentials file this command would read is named
    /// (`AWS_SHARED_CREDENTIALS_FILE`), which the server's user must be able to read.
    pub fn with_s3_credentials(mut self) -> RunAs {
        const VARS: [&str; 5] = [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
        ];
        for v in VARS {
            if let Some(val) = std::env::var_os(v).filter(|x| !x.is_empty()) {
                self.server_env.push((v.to_string(), val));
            }
        }
        let has = |k: &str| self.server_env.iter().any(|(n, _)| n == k);
        if !has("AWS_ACCESS_KEY_ID") && !has("AWS_SHARED_CREDENTIALS_FILE") {
            if let Some(home) = std::env::var_os("HOME") {
                let file = Path::new(&home).join(".aws").join("credentials");
                self.server_env
                    .push(("AWS_SHARED_CREDENTIALS_FILE".into(), file.into_os_string()));
            }
        }
        self
    }

    /// A command for `program`, run as that user, with an environment holding only PATH
    /// (no password variable reaches the server or its restore_command).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = match &self.user {
            Some((name, _, _)) => {
                let mut c = Command::new("runuser");
                c.args(["-u", name, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("LC_ALL", "C");
        c
    }

    /// Gives `dir` and everything under it to that user.
    pub fn own(&self, dir: &Path) -> Result<()> {
        let Some((_, uid, gid)) = &self.user else {
            return Ok(());
        };
        fn walk(p: &Path, uid: u32, gid: u32) -> Result<()> {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", p.display()))?;
            if std::fs::symlink_metadata(p)?.is_dir() {
                for e in std::fs::read_dir(p)? {
                    walk(&e?.path(), uid, gid)?;
                }
            }
            Ok(())
        }
        walk(dir, *uid, *gid)
    }
}

/// The server binaries of the backup's major version (they must match it exactly).
pub fn server_bin(m: &BaseManifest) -> Result<PathBuf> {
    let major: u32 = m
        .server_version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "the manifest's server version `{}` is unreadable",
                m.server_version
            )
        })?;
    let (found, pg_ctl) = crate::engine::tools::find_pg_tool_major("pg_ctl", major)?;
    if found != major {
        bail!(
            "the base backup is of PostgreSQL {major}: its server binaries are needed \
             (install postgresql-{major}); found only {found}"
        );
    }
    Ok(pg_ctl.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Runs `pg_verifybackup` on the unpacked directory (WAL parsed too).
pub fn verifybackup(bin: &Path, dir: &Path, run_as: &RunAs) -> Result<()> {
    let out = run_as
        .command(&bin.join("pg_verifybackup"))
        .arg("--quiet")
        .arg(dir)
        .output()
        .context("running pg_verifybackup")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "pg_verifybackup found the unpacked backup damaged: {}",
            crate::engine::tools::summarise(&err)
        );
    }
    Ok(())
}

/// A value in postgresql.conf's syntax.
fn conf_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// What the recovery settings say.
pub struct Recovery<'a> {
    pub restore_command: String,
    pub target: &'a RecoveryTarget,
    pub timeline: Option<&'a str>,
    pub action: &'a str,
    pub port: Option<u16>,
    /// Leave archiving as the backup had it (a copy that becomes the new production).
    pub keep_archiving: bool,
    /// Extra settings (the drill's private socket and authentication).
    pub extra: Vec<(String, String)>,
}

/// Writes the recovery settings at the end of postgresql.auto.conf (the last setting wins),
/// a minimal postgresql.conf and pg_hba.conf when the backup holds none (Debian keeps them in
/// /etc), and recovery.signal.
pub fn write_recovery(dir: &Path, r: &Recovery<'_>) -> Result<()> {
    let mut conf = format!(
        "\n# pitr restore by mairie-dba at {}\n",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let mut set = |k: &str, v: &str| conf.push_str(&format!("{k} = {}\n", conf_str(v)));
    set("restore_command", &r.restore_command);
    match r.target {
        RecoveryTarget::Time(t) => set(
            "recovery_target_time",
            &t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        ),
        RecoveryTarget::Lsn(l) => set("recovery_target_lsn", &base::format_lsn(*l)),
        RecoveryTarget::Name(n) => set("recovery_target_name", n),
        RecoveryTarget::Latest => {}
    }
    set("recovery_target_timeline", r.timeline.unwrap_or("latest"));
    if *r.target != RecoveryTarget::Latest {
        set("recovery_target_action", r.action);
    }
    // Never into the production archive (unless asked), never following a primary.
    if !r.keep_archiving {
        set("archive_mode", "off");
        set("archive_command", "");
    }
    set("primary_conninfo", "");
    set("primary_slot_name", "");
    set("lc_messages", "C");
    if let Some(p) = r.port {
        set("port", &p.to_string());
    }
    for (k, v) in &r.extra {
        set(k, v);
    }
    let auto = dir.join("postgresql.auto.conf");
    let mut old = match std::fs::read_to_string(&auto) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", auto.display())),
    };
    old.push_str(&conf);
    crate::backup::write_atomic(&auto, old.as_bytes())?;
    let pgconf = dir.join("postgresql.conf");
    if !pgconf.exists() {
        crate::backup::write_atomic(
            &pgconf,
            b"# The production server kept its configuration outside the data directory:\n\
              # this minimal one, written by mairie-dba pitr restore, lets the copy start.\n\
              listen_addresses = 'localhost'\n",
        )?;
    }
    let hba = dir.join("pg_hba.conf");
    if !hba.exists() {
        crate::backup::write_atomic(
            &hba,
            b"# Written by mairie-dba pitr restore: the backup held no pg_hba.conf.\n\
              local all all peer\n\
              host all all 127.0.0.1/32 scram-sha-256\n\
              host all all ::1/128 scram-sha-256\n",
        )?;
    }
    let ident = dir.join("pg_ident.conf");
    if !ident.exists() {
        crate::backup::write_atomic(&ident, b"")?;
    }
    // A backup of a standby may carry standby.signal: this copy recovers and stops.
    let _ = std::fs::remove_file(dir.join("standby.signal"));
    crate::backup::write_atomic(&dir.join("recovery.signal"), b"")?;
    Ok(())
}

/// How the restored server's recovery ended.
#[derive(Debug, Clone, Serialize)]
pub struct Ending {
    /// `promoted`, `paused` or `shut_down` (reached), or `stopped` (failed).
    pub state: String,
    /// The log's lines on where recovery stopped and the last transaction replayed.
    pub reached: Vec<String>,
    pub consistent_at: Option<String>,
    pub log: String,
}

/// A free loopback port (bound and released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Whether the control file says "in production" (`pg_controldata`, in the C locale): the
/// end of recovery, written just before the server accepts writes. True when it cannot be
/// read, so that a missing tool never holds a restore.
fn in_production(bin: &Path, dir: &Path, run_as: &RunAs) -> bool {
    let Ok(out) = run_as
        .command(&bin.join("pg_controldata"))
        .arg("-D")
        .arg(dir)
        .output()
    else {
        return true;
    };
    if !out.status.success() {
        return true;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Database cluster state:"))
        .is_none_or(|state| state.trim() == "in production")
}

fn running(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("postmaster.pid")) else {
        return false;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

fn read_log(log: &Path) -> String {
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(log) {
        let _ = f.take(16 << 20).read_to_string(&mut s);
    }
    s
}

/// Lines of the log that say where recovery stopped, or why it could not go on.
fn reached_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("recovery stopping")
                || l.contains("last completed transaction")
                || l.contains("archive recovery complete")
                || l.contains("selected new timeline ID")
                || l.contains("redo done at")
        })
        .map(|l| l.to_string())
        .collect()
}

/// Why a restored server stopped during recovery, in one line, from its log.
pub fn why_stopped(log: &str) -> String {
    let fetch: Vec<&str> = log.lines().filter(|l| l.contains("wal fetch:")).collect();
    let fatal: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .collect();
    let mut why = String::new();
    if log.contains("recovery ended before configured recovery target was reached") {
        why.push_str(
            "target not reached: the archive ends before it (a missing segment, or nothing \
             archived yet past the target)",
        );
    } else if let Some(l) = fetch.iter().rev().find(|l| l.contains("recovery stopped")) {
        why.push_str(&format!(
            "recovery stopped by the archive: {}",
            l.split_once("wal fetch:").map(|x| x.1.trim()).unwrap_or(l)
        ));
    } else if let Some(l) = fatal.last() {
        why.push_str(l.trim());
    } else {
        why.push_str("the server stopped (see its log)");
    }
    if let Some(l) = fatal.last() {
        if !why.contains(l.trim()) {
            why.push_str(&format!(" | {}", l.trim()));
        }
    }
    why
}

/// Starts the restored server and follows recovery until it ends (promoted, paused or shut
/// down at the target) or the server stops; `Err` names why it stopped.
pub fn start_and_wait(
    bin: &Path,
    dir: &Path,
    log: &Path,
    run_as: &RunAs,
    action: &str,
    timeout: Duration,
) -> Result<Ending> {
    let out = run_as
        .command(&bin.join("pg_ctl"))
        .envs(run_as.server_env.iter().map(|(k, v)| (k, v)))
        .arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(log)
        .args(["-W", "start"])
        .output()
        .context("running pg_ctl start")?;
    if !out.status.success() {
        bail!(
            "pg_ctl start failed: {}",
            crate::engine::tools::summarise(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let started = Instant::now();
    let mut seen_running = false;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let text = read_log(log);
        let up = running(dir);
        let ending = |state: &str| Ending {
            state: state.into(),
            reached: reached_lines(&text),
            consistent_at: text
                .lines()
                .find_map(|l| l.split_once("consistent recovery state reached at "))
                .map(|(_, r)| r.trim().to_string()),
            log: log.display().to_string(),
        };
        if up {
            seen_running = true;
            // recovery.signal goes before the server accepts writes: the control file's
            // state says when recovery is really over.
            if !dir.join("recovery.signal").exists() && in_production(bin, dir, run_as) {
                return Ok(ending("promoted"));
            }
            if action == "pause"
                && (text.contains("pausing at the end of recovery")
                    || text.contains("recovery has paused"))
            {
                return Ok(ending("paused"));
            }
        } else if seen_running
            || text.contains("FATAL")
            || started.elapsed() > Duration::from_secs(30)
        {
            // pg_ctl -W returns at once: the postmaster writes its pid a moment later.
            if text.contains("shutdown at recovery target") {
                return Ok(ending("shut_down"));
            }
            bail!("{} (log: {})", why_stopped(&text), log.display());
        }
        if started.elapsed() > timeout {
            bail!(
                "recovery had not ended after {} s; the server is left running (log: {})",
                timeout.as_secs(),
                log.display()
            );
        }
    }
}

/// Stops a restored server at once (drill, failure).
pub fn stop(bin: &Path, dir: &Path, run_as: &RunAs) {
    if running(dir) {
        let _ = run_as
            .command(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(dir)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_with_or_without_an_offset() {
        let want = DateTime::parse_from_rfc3339("2026-12-06T16:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_time("2026-12-06 17:59:00+01").unwrap(), want);
        assert_eq!(parse_time("2026-12-06 17:59:00+01:00").unwrap(), want);
        assert_eq!(parse_time("2026-12-06T16:59:00Z").unwrap(), want);
        assert_eq!(parse_time("2026-12-06 16:59:00 UTC").unwrap(), want);
        let e = parse_time("yesterday").unwrap_err();
        assert!(format!("{e}").contains("`yesterday`: not a time"), "{e}");
    }

    #[test]
    fn targets_are_checked_before_anything_is_written() {
        assert_eq!(
            parse_target(None, Some("0/3000060"), None).unwrap(),
            RecoveryTarget::Lsn(0x3000060)
        );
        assert!(parse_target(None, Some("3000060"), None).is_err());
        assert!(parse_target(None, None, Some("a\nb")).is_err());
        assert_eq!(
            parse_target(None, None, None).unwrap(),
            RecoveryTarget::Latest
        );
    }

    #[test]
    fn the_log_says_why_recovery_stopped() {
        let log = "LOG:  starting point-in-time recovery\n\
                   FATAL:  recovery ended before configured recovery target was reached\n";
        assert!(why_stopped(log).starts_with("target not reached"));
        let log = "mairie-dba: error: wal fetch: 000000010000000000000004: SHA-256 differs (recovery stopped)\n\
                   FATAL:  could not restore file \"000000010000000000000004\" from archive: child process exited with exit code 255\n";
        let w = why_stopped(log);
        assert!(
            w.starts_with("recovery stopped by the archive: 000000010000000000000004"),
            "{w}"
        );
        assert!(w.contains("exit code 255"), "{w}");
    }

    #[test]
    fn settings_are_quoted_as_postgresql_reads_them() {
        assert_eq!(conf_str("it's"), "'it''s'");
        assert_eq!(conf_str("a\\b"), "'a\\\\b'");
    }
}
