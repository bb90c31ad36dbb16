//! Is WAL archiving working? The facts (`pg_stat_archiver`, the archiving settings, the
//! `.ready` backlog, and what the archive directory really holds) are gathered once by
//! [`gather`]; [`judge`] turns them into check lines with a status, a value and a message.
//! `pitr check`, the `wal_archiving` and `wal_ready_files` health checks and the exporter's
//! `pitr` family group all read the same facts and the same judgement.
//!
//! What the server says is not taken on trust: the last file `pg_stat_archiver` reports
//! archived, and the [`WINDOW`] segments before it on its timeline, must be published files
//! of the archive ([`look`]). A server that writes nothing switches no segment, so the age
//! of the last archived file alone would raise false alarms on a quiet night: when the
//! segment being written is the one right after the last archived, archiving is up to date
//! whatever the age. Anything that cannot be evaluated (a grant, an unreadable directory)
//! is UNKNOWN with the reason, never OK.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::archive::{self, WalKind, WalName};
use crate::config::{Config, Threshold};
use crate::engine::postgres::pitr::{self as pgpitr, ArchiverState, ReadyFiles};
use crate::engine::postgres::PgConn;
use crate::engine::Visitor;
use crate::output::Status;

/// How many segments before the last archived one are looked for in the archive.
pub const WINDOW: u64 = 4;

/// The age of the last archived file (seconds) past which archiving is WARNING, CRITICAL
/// (when the server has completed a segment since).
pub const DEFAULT_AGE: Threshold = Threshold {
    warning: 900.0,
    critical: 3600.0,
};

/// The number of `.ready` files past which the backlog is WARNING, CRITICAL.
pub const DEFAULT_READY: Threshold = Threshold {
    warning: 10.0,
    critical: 100.0,
};

/// The thresholds a judgement uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub age: Threshold,
    pub ready: Threshold,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            age: DEFAULT_AGE,
            ready: DEFAULT_READY,
        }
    }
}

/// The archive of a target with a `pitr:` section: its directory resolved, or its bucket.
pub fn archive_of(config: &Config, target: &str) -> Option<super::Archive> {
    config
        .pitr
        .get(target)
        .map(|e| super::Archive::of(config, e))
}

/// What the archive directory holds of what the server says it archived.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveLook {
    /// `pg_stat_archiver` names no archived file: nothing to look for.
    NothingArchived,
    Looked {
        /// The last archived file, as `pg_stat_archiver` names it.
        last: String,
        /// Every name looked for, oldest first.
        checked: Vec<String>,
        /// Those not published in the archive.
        missing: Vec<String>,
        /// Those published twice with different contents (`wal fetch` refuses them).
        twice: Vec<String>,
    },
    /// The archive directory does not exist.
    NoArchive,
    /// A directory of the archive could not be read.
    Unreadable { path: PathBuf, reason: String },
    /// `pg_stat_archiver` names something that is not a WAL file name.
    NotAWalName(String),
}

impl ArchiveLook {
    /// How many files are missing, when the archive could be read.
    pub fn missing_count(&self) -> Option<f64> {
        match self {
            ArchiveLook::NothingArchived => Some(0.0),
            ArchiveLook::Looked { missing, .. } => Some(missing.len() as f64),
            _ => None,
        }
    }
}

/// Everything the judgement reads, for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub archive_dir: PathBuf,
    pub server: ArchiverState,
    pub ready: ReadyFiles,
    pub archive: ArchiveLook,
}

/// Gathers the facts on a PostgreSQL session: two catalogue queries, then a look at the
/// archive (on a blocking thread: a hung network mount must not stall the runtime, and the
/// probe's budget still ends the wait).
pub async fn gather(conn: &PgConn, archive: &super::Archive) -> Result<Facts> {
    let server = pgpitr::archiver_state(conn).await?;
    let ready = pgpitr::ready_files(conn).await?;
    let at = archive.clone();
    let last = server.last_archived_wal.clone();
    let size = server.wal_segment_size;
    let archive_look = tokio::task::spawn_blocking(move || match &at {
        super::Archive::Dir(dir) => look(dir, last.as_deref(), size),
        super::Archive::Bucket(r) => look_bucket(r, last.as_deref(), size),
    })
    .await
    .map_err(|e| anyhow::anyhow!("reading the archive: {e}"))?;
    Ok(Facts {
        archive_dir: archive.shown(),
        server,
        ready,
        archive: archive_look,
    })
}

/// [`gather`] as a probe ([`crate::engine::Conn::probe`]): archiving is PostgreSQL's.
pub struct Gather<'a> {
    pub archive: &'a super::Archive,
}

impl Visitor for Gather<'_> {
    type Output = Facts;
    const WHAT: &'static str = "WAL archiving checks";

    async fn postgres(self, conn: &mut PgConn) -> Result<Facts> {
        gather(conn, self.archive).await
    }
}

/// Looks in `archive_dir` for `last` (the last file the server archived) and, for a
/// segment or a backup label, the [`WINDOW`] segments before it on its timeline. A segment
/// of that window is expected only from the oldest one the archive holds on that timeline:
/// a young cluster, or a timeline begun within the window, has none before.
pub fn look(archive_dir: &Path, last: Option<&str>, segment_size: u64) -> ArchiveLook {
    if let Err(e) = fs::read_dir(archive_dir) {
        return match (e.kind(), last) {
            (_, None) if e.kind() == std::io::ErrorKind::NotFound => ArchiveLook::NothingArchived,
            (std::io::ErrorKind::NotFound, Some(_)) => ArchiveLook::NoArchive,
            _ => ArchiveLook::Unreadable {
                path: archive_dir.to_path_buf(),
                reason: e.to_string(),
            },
        };
    }
    let root = archive_dir.join(archive::WAL_DIR);
    let versions = |name: &WalName| -> Result<usize, ArchiveLook> {
        let dir = root.join(name.subdir());
        archive::versions(&dir, name)
            .map(|v| v.len())
            .map_err(|e| ArchiveLook::Unreadable {
                path: dir,
                reason: format!("{:#}", e.root_cause()),
            })
    };
    let older = |tli, start| older_segment_exists(&root, tli, start, segment_size);
    look_with(last, segment_size, versions, older)
}

/// [`look`] for an archive in a bucket: the same names looked for, by listing the few
/// folders of the window (and, to know whether older segments exist, the timeline's folders
/// by a delimited listing, then the newest of them below the window).
pub fn look_bucket(
    remote: &super::remote::RemoteArchive,
    last: Option<&str>,
    segment_size: u64,
) -> ArchiveLook {
    let unreadable = |e: anyhow::Error| ArchiveLook::Unreadable {
        path: PathBuf::from(remote.url.to_string()),
        reason: format!("{e:#}"),
    };
    let Some(last) = last else {
        return ArchiveLook::NothingArchived;
    };
    let b = match remote.open_blocking() {
        Ok(b) => b,
        Err(e) => return unreadable(e),
    };
    let loc = super::bucket::WalLoc::Bucket(Box::new(b));
    let versions = |name: &WalName| -> Result<usize, ArchiveLook> {
        loc.versions(name).map(|v| v.len()).map_err(unreadable)
    };
    let older = |tli: u32, below: u64| -> Result<bool, ArchiveLook> {
        let super::bucket::WalLoc::Bucket(b) = &loc else {
            return Ok(false);
        };
        let tli_hex = format!("{tli:08X}");
        let below_log = archive::segment_name(tli, below, segment_size)[8..16].to_string();
        let mut dirs: Vec<String> = b
            .block(b.store.list_dirs(archive::WAL_DIR))
            .map_err(unreadable)?
            .into_iter()
            .filter(|n| n.len() == 16 && n.starts_with(&tli_hex) && n[8..] <= *below_log)
            .collect();
        dirs.sort_unstable_by(|a, b| b.cmp(a));
        for d in dirs {
            let under = format!("{}/{d}", archive::WAL_DIR);
            for o in b.list(&under).map_err(unreadable)? {
                let name = o.key.rsplit('/').next().unwrap_or_default();
                let Some((wal, _)) = archive::parse_archived(name) else {
                    continue;
                };
                if wal.kind != WalKind::Segment || wal.timeline() != tli {
                    continue;
                }
                if let Some((log, seg)) = wal.log_seg() {
                    if archive::segment_number(log, seg, segment_size) < below {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    };
    look_with(Some(last), segment_size, versions, older)
}

/// What [`look`] and [`look_bucket`] share: which names are looked for, given how to count
/// the published versions of a name and whether the timeline holds a segment below a number.
fn look_with(
    last: Option<&str>,
    segment_size: u64,
    versions: impl Fn(&WalName) -> Result<usize, ArchiveLook>,
    older_exists: impl FnOnce(u32, u64) -> Result<bool, ArchiveLook>,
) -> ArchiveLook {
    let Some(last) = last else {
        return ArchiveLook::NothingArchived;
    };
    let Some(wal) = WalName::parse(last) else {
        return ArchiveLook::NotAWalName(last.to_string());
    };
    // (name, versions published), oldest first: the window's segments, then the file itself
    // when it is a backup label (archived after its segment) or a history file.
    let mut found: Vec<(String, usize)> = Vec::new();
    if let (Some((log, seg)), WalKind::Segment | WalKind::Backup) = (wal.log_seg(), wal.kind) {
        let tli = wal.timeline();
        let last_n = archive::segment_number(log, seg, segment_size);
        let start = last_n.saturating_sub(WINDOW);
        let mut present = BTreeSet::new();
        let mut counts = Vec::new();
        for n in start..=last_n {
            let name = segment(tli, n, segment_size);
            match versions(&name) {
                Ok(c) => {
                    if c > 0 {
                        present.insert(n);
                    }
                    counts.push((n, name.name, c));
                }
                Err(e) => return e,
            }
        }
        let older = match older_exists(tli, start) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let expected = expected_from(start, last_n, &present, older);
        found.extend(
            counts
                .into_iter()
                .filter(|(n, _, _)| *n >= expected)
                .map(|(_, name, c)| (name, c)),
        );
    }
    if wal.kind != WalKind::Segment {
        match versions(&wal) {
            Ok(c) => found.push((wal.name.clone(), c)),
            Err(e) => return e,
        }
    }
    let names = |keep: fn(usize) -> bool| -> Vec<String> {
        found
            .iter()
            .filter(|(_, c)| keep(*c))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let (checked, missing, twice) = (names(|_| true), names(|c| c == 0), names(|c| c > 1));
    ArchiveLook::Looked {
        last: last.to_string(),
        checked,
        missing,
        twice,
    }
}

fn segment(timeline: u32, number: u64, segment_size: u64) -> WalName {
    WalName {
        name: archive::segment_name(timeline, number, segment_size),
        kind: WalKind::Segment,
    }
}

/// The first segment number of the window `start..=last` the archive must hold: all of it
/// when it holds an older segment of the timeline, else from the oldest it holds in the
/// window (the last one always).
pub fn expected_from(start: u64, last: u64, present: &BTreeSet<u64>, older: bool) -> u64 {
    if older {
        start
    } else {
        present.range(start..=last).next().copied().unwrap_or(last)
    }
}

/// Whether the archive holds a segment of `timeline` numbered below `below`: its
/// directories of that timeline up to `below`'s, newest first, until one is found.
fn older_segment_exists(
    root: &Path,
    timeline: u32,
    below: u64,
    segment_size: u64,
) -> Result<bool, ArchiveLook> {
    let unreadable = |path: &Path, e: std::io::Error| ArchiveLook::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unreadable(root, e)),
    };
    let tli = format!("{timeline:08X}");
    let below_log = archive::segment_name(timeline, below, segment_size)[8..16].to_string();
    let mut dirs: Vec<String> = rd
        .flatten()
        .filter_map(|d| d.file_name().to_str().map(str::to_string))
        .filter(|n| n.len() == 16 && n.starts_with(&tli) && n[8..] <= *below_log)
        .collect();
    dirs.sort_unstable_by(|a, b| b.cmp(a));
    for d in dirs {
        let path = root.join(&d);
        let rd = fs::read_dir(&path).map_err(|e| unreadable(&path, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| unreadable(&path, e))?;
            let name = entry.file_name();
            let Some((wal, _)) = name.to_str().and_then(archive::parse_archived) else {
                continue;
            };
            if wal.kind != WalKind::Segment || wal.timeline() != timeline {
                continue;
            }
            if let Some((log, seg)) = wal.log_seg() {
                if archive::segment_number(log, seg, segment_size) < below {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// One facet of archiving, a line of `pitr check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facet {
    /// archive_mode, archive_command (or archive_library).
    Archiving,
    /// pg_stat_archiver's failures: is the last attempt a failure?
    Failures,
    /// The age of the last archived file, unless the server is up to date.
    LastArchived,
    /// The `.ready` backlog.
    ReadyFiles,
    /// Whether the archive directory holds what the server says it archived.
    Archive,
}

impl Facet {
    pub const ALL: [Facet; 5] = [
        Facet::Archiving,
        Facet::Failures,
        Facet::LastArchived,
        Facet::ReadyFiles,
        Facet::Archive,
    ];

    /// As shown, and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Facet::Archiving => "archiving",
            Facet::Failures => "failures",
            Facet::LastArchived => "last_archived",
            Facet::ReadyFiles => "ready_files",
            Facet::Archive => "archive",
        }
    }

    /// The unit of its value: seconds, or a number of things.
    pub fn unit(self) -> &'static str {
        match self {
            Facet::LastArchived => "s",
            _ => "",
        }
    }
}

/// One judged facet.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub facet: Facet,
    pub status: Status,
    pub value: Option<f64>,
    pub message: String,
    pub threshold: Option<Threshold>,
}

impl Line {
    fn new(facet: Facet, status: Status, message: impl Into<String>) -> Line {
        Line {
            facet,
            status,
            value: None,
            message: message.into(),
            threshold: None,
        }
    }

    fn value(mut self, v: Option<f64>) -> Line {
        self.value = v;
        self
    }

    fn threshold(mut self, t: Threshold) -> Line {
        self.threshold = Some(t);
        self
    }
}

/// `v` against thresholds where higher is worse.
fn past(v: f64, t: Threshold) -> Status {
    if v >= t.critical {
        Status::Critical
    } else if v >= t.warning {
        Status::Warning
    } else {
        Status::Ok
    }
}

/// `42 s`, `3 min`, `5 h`, `2 d`.
fn human(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `since 2026-11-21T02:00:00Z` (the statistics reset), or `since the statistics were
/// reset` when the server does not say when.
fn since_reset(s: &ArchiverState) -> String {
    match &s.stats_reset {
        Some(t) => format!("since {t}"),
        None => "since the statistics were reset".into(),
    }
}

fn is_empty_setting(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// Whether the server archives at all: archive_mode not off, and something to archive with.
/// None when a hidden setting keeps us from telling.
fn archiving(s: &ArchiverState) -> Option<bool> {
    let mode = s.archive_mode.as_deref()?;
    if mode == "off" {
        return Some(false);
    }
    if !is_empty_setting(&s.archive_library) {
        return Some(true);
    }
    s.archive_command.as_ref().map(|c| !c.trim().is_empty())
}

/// Whether the last attempt failed: a failure more recent than the last success.
fn failing(s: &ArchiverState) -> bool {
    match (s.last_failed_age, s.last_archived_age) {
        (Some(_), None) => true,
        (Some(failed), Some(archived)) => failed < archived,
        _ => false,
    }
}

/// Whether the segment being written follows the last archived one (same timeline, at most
/// one further): nothing completed waits to be archived, however old the last one is.
/// None when it cannot be told (a standby, a history file or partial segment last).
fn up_to_date(s: &ArchiverState) -> Option<bool> {
    let last = WalName::parse(s.last_archived_wal.as_deref()?)?;
    let current = WalName::parse(s.current_wal.as_deref()?)?;
    if !matches!(last.kind, WalKind::Segment | WalKind::Backup) || current.kind != WalKind::Segment
    {
        return None;
    }
    if last.timeline() != current.timeline() {
        return Some(false);
    }
    let size = s.wal_segment_size.max(1);
    let n = |w: &WalName| {
        w.log_seg()
            .map(|(l, g)| archive::segment_number(l, g, size))
    };
    Some(n(&current)? <= n(&last)? + 1)
}

/// Judges the facts: one line per [`Facet`], in that order.
pub fn judge(f: &Facts, limits: &Limits) -> Vec<Line> {
    let s = &f.server;
    vec![
        judge_settings(s),
        judge_failures(s),
        judge_last_archived(s, &f.ready, limits.age),
        judge_ready(&f.ready, limits.ready),
        judge_archive(f),
    ]
}

fn judge_settings(s: &ArchiverState) -> Line {
    let facet = Facet::Archiving;
    let hidden = |what: &str| {
        format!(
            "{what} is hidden from role {}: GRANT pg_read_all_settings (or pg_monitor) TO {}",
            s.user,
            crate::engine::postgres::quote_ident(&s.user)
        )
    };
    let Some(mode) = s.archive_mode.as_deref() else {
        return Line::new(facet, Status::Unknown, hidden("archive_mode"));
    };
    let pending = if s.archive_mode_pending_restart {
        " (a new archive_mode waits for a restart)"
    } else {
        ""
    };
    if mode == "off" {
        return Line::new(
            facet,
            Status::Critical,
            format!("archive_mode is off: no WAL is archived{pending}"),
        );
    }
    if s.in_recovery && mode == "on" {
        return Line::new(
            facet,
            Status::Unknown,
            "a standby with archive_mode = on does not archive (its primary does): check the \
             primary, or set archive_mode = always here",
        );
    }
    let timeout = match s.archive_timeout {
        Some(0) => ", archive_timeout off".to_string(),
        Some(t) => format!(", archive_timeout {t} s"),
        None => String::new(),
    };
    if let Some(lib) = s
        .archive_library
        .as_deref()
        .filter(|l| !l.trim().is_empty())
    {
        return Line::new(
            facet,
            Status::Ok,
            format!("archive_mode {mode}, archive_library {lib}{timeout}{pending}"),
        );
    }
    match s.archive_command.as_deref() {
        None => Line::new(
            facet,
            Status::Unknown,
            format!("archive_mode {mode}; {}", hidden("archive_command")),
        ),
        Some(c) if c.trim().is_empty() => Line::new(
            facet,
            Status::Critical,
            format!(
                "archive_mode is {mode} but archive_command is empty: WAL files pile up in \
                 pg_wal until one is set{pending}"
            ),
        ),
        // The command itself is not shown: it may hold credentials.
        Some(_) => Line::new(
            facet,
            Status::Ok,
            format!("archive_mode {mode}, archive_command set{timeout}{pending}"),
        ),
    }
}

fn judge_failures(s: &ArchiverState) -> Line {
    let facet = Facet::Failures;
    let n = s.failed_count;
    let value = Some(n.max(0) as f64);
    let when = |wal: &Option<String>, time: &Option<String>| {
        format!(
            "{} at {}",
            wal.as_deref().unwrap_or("?"),
            time.as_deref().unwrap_or("?")
        )
    };
    if failing(s) {
        let success = match &s.last_archived_wal {
            Some(_) => format!(
                "after the last success ({})",
                when(&s.last_archived_wal, &s.last_archived_time)
            ),
            None => format!("and nothing was archived {}", since_reset(s)),
        };
        let log = if s
            .archive_command
            .as_deref()
            .is_some_and(|c| c.contains("wal push"))
        {
            "; the server's log says why (lines starting `wal push:`)"
        } else {
            "; the server's log says why"
        };
        return Line::new(
            facet,
            Status::Critical,
            format!(
                "archive_command fails: the last attempt, on {}, failed {success}; {n} \
                 failure(s) {}{log}",
                when(&s.last_failed_wal, &s.last_failed_time),
                since_reset(s)
            ),
        )
        .value(value);
    }
    let message = if n > 0 {
        format!(
            "{n} failure(s) {}, the last ({}) before the last success",
            since_reset(s),
            when(&s.last_failed_wal, &s.last_failed_time)
        )
    } else {
        format!("no failure {}", since_reset(s))
    };
    Line::new(facet, Status::Ok, message).value(value)
}

fn judge_last_archived(s: &ArchiverState, ready: &ReadyFiles, age: Threshold) -> Line {
    let facet = Facet::LastArchived;
    let value = s.last_archived_age.map(f64::round);
    let line = |status, message: String| {
        Line::new(facet, status, message)
            .value(value)
            .threshold(age)
    };
    if archiving(s) == Some(false) {
        let last = match (&s.last_archived_wal, s.last_archived_age) {
            (Some(w), Some(a)) => format!("the last file archived, {w}, was {} ago", human(a)),
            _ => format!("nothing archived {}", since_reset(s)),
        };
        return line(Status::Critical, format!("not archiving: {last}"));
    }
    let (Some(wal), Some(a)) = (&s.last_archived_wal, s.last_archived_age) else {
        let nothing = format!("nothing archived {}", since_reset(s));
        return match ready {
            ReadyFiles::Counted { count: 0, .. } => line(
                Status::Ok,
                format!("{nothing}; nothing waits to be archived"),
            ),
            ReadyFiles::Counted {
                count,
                oldest,
                oldest_age,
            } => {
                let wait = oldest_age.unwrap_or(0.0);
                line(
                    past(wait, age),
                    format!(
                        "{nothing}; {count} file(s) wait, the oldest ({}) for {}",
                        oldest.as_deref().unwrap_or("?"),
                        human(wait)
                    ),
                )
            }
            ReadyFiles::NotPermitted(why) | ReadyFiles::Unsupported(why) => line(
                Status::Unknown,
                format!("{nothing}; cannot tell whether anything waits: {why}"),
            ),
        };
    };
    let archived = format!(
        "{wal} archived {} ago ({})",
        human(a),
        s.last_archived_time.as_deref().unwrap_or("?")
    );
    let timeout = match s.archive_timeout {
        Some(t) if t > 0 => format!(" (archive_timeout {t} s)"),
        _ => String::new(),
    };
    match (up_to_date(s), s.current_wal.as_deref()) {
        (Some(true), Some(current)) => {
            // A backup label is named after its segment: `<segment>.<offset>.backup`.
            let how = if wal.get(..24) == Some(current) {
                "no segment was completed since".to_string()
            } else {
                format!("up to date: the segment being written, {current}, is the next one")
            };
            line(Status::Ok, format!("{archived}; {how}"))
        }
        (Some(false), Some(current)) => line(
            past(a, age),
            format!("{archived}; the server is writing {current}{timeout}"),
        ),
        _ if s.in_recovery => line(
            past(a, age),
            format!("{archived} (a standby: its position is not compared){timeout}"),
        ),
        _ => line(past(a, age), format!("{archived}{timeout}")),
    }
}

fn judge_ready(ready: &ReadyFiles, limits: Threshold) -> Line {
    let facet = Facet::ReadyFiles;
    match ready {
        ReadyFiles::Counted { count: 0, .. } => {
            Line::new(facet, Status::Ok, "no WAL file waits to be archived")
                .value(Some(0.0))
                .threshold(limits)
        }
        ReadyFiles::Counted {
            count,
            oldest,
            oldest_age,
        } => {
            let n = *count as f64;
            Line::new(
                facet,
                past(n, limits),
                format!(
                    "{count} WAL file(s) wait to be archived (.ready), the oldest, {}, for {}",
                    oldest.as_deref().unwrap_or("?"),
                    human(oldest_age.unwrap_or(0.0))
                ),
            )
            .value(Some(n))
            .threshold(limits)
        }
        ReadyFiles::NotPermitted(why) | ReadyFiles::Unsupported(why) => Line::new(
            facet,
            Status::Unknown,
            format!("cannot count the .ready files: {why}"),
        )
        .threshold(limits),
    }
}

fn judge_archive(f: &Facts) -> Line {
    let facet = Facet::Archive;
    let dir = f.archive_dir.display();
    let value = f.archive.missing_count();
    let line = |status, message: String| Line::new(facet, status, message).value(value);
    match &f.archive {
        ArchiveLook::NothingArchived => line(
            Status::Ok,
            format!("nothing archived yet: nothing to look for in {dir}"),
        ),
        ArchiveLook::NoArchive => line(
            Status::Critical,
            format!(
                "the archive directory {dir} does not exist, though pg_stat_archiver says {} was archived",
                f.server.last_archived_wal.as_deref().unwrap_or("?")
            ),
        ),
        ArchiveLook::Unreadable { path, reason } => line(
            Status::Unknown,
            format!("cannot read the archive: {}: {reason}", path.display()),
        ),
        ArchiveLook::NotAWalName(n) => line(
            Status::Unknown,
            format!("pg_stat_archiver names `{n}` as archived, which is not a WAL file name"),
        ),
        ArchiveLook::Looked {
            last,
            checked,
            missing,
            twice,
        } => {
            let mut problems = Vec::new();
            if !missing.is_empty() {
                let mut m = format!(
                    "{} missing from the archive {dir}, though pg_stat_archiver says {last} was archived",
                    missing.join(", ")
                );
                if f
                    .server
                    .archive_command
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty() && !c.contains("wal push"))
                {
                    m.push_str(
                        " (archive_command does not call `wal push`: does it write to this archive?)",
                    );
                }
                problems.push(m);
            }
            if !twice.is_empty() {
                problems.push(format!(
                    "{} archived twice with different contents in {dir}: wal fetch stops recovery there",
                    twice.join(", ")
                ));
            }
            if !problems.is_empty() {
                return line(Status::Critical, problems.join("; "));
            }
            let message = match checked.len() {
                0 | 1 => format!("{last} is in the archive {dir}"),
                n => format!(
                    "{} to {} ({n} files) are in the archive {dir}",
                    checked[0],
                    checked[n - 1]
                ),
            };
            line(Status::Ok, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = archive::DEFAULT_SEGMENT_SIZE;

    /// A primary archiving with `wal push`, its last segment archived a minute ago and the
    /// next one being written.
    fn healthy() -> Facts {
        Facts {
            archive_dir: PathBuf::from("/srv/wal"),
            server: ArchiverState {
                user: "mairie".into(),
                in_recovery: false,
                wal_segment_size: SEG,
                current_wal: Some("000000010000000000000008".into()),
                archive_mode: Some("on".into()),
                archive_mode_pending_restart: false,
                archive_command: Some("/usr/bin/mairie-dba -c /etc/c.yml -t pg wal push %p".into()),
                archive_library: Some(String::new()),
                archive_timeout: Some(60),
                archived_count: 7,
                last_archived_wal: Some("000000010000000000000007".into()),
                last_archived_age: Some(61.2),
                last_archived_time: Some("2026-11-21T02:00:00Z".into()),
                failed_count: 0,
                last_failed_wal: None,
                last_failed_age: None,
                last_failed_time: None,
                stats_reset: Some("2026-11-01T00:00:00Z".into()),
            },
            ready: ReadyFiles::Counted {
                count: 0,
                oldest: None,
                oldest_age: None,
            },
            archive: ArchiveLook::Looked {
                last: "000000010000000000000007".into(),
                checked: (3..=7).map(|n| archive::segment_name(1, n, SEG)).collect(),
                missing: vec![],
                twice: vec![],
            },
        }
    }

    fn line(f: &Facts, facet: Facet) -> Line {
        judge(f, &Limits::default())
            .into_iter()
            .find(|l| l.facet == facet)
            .unwrap()
    }

    #[test]
    fn a_healthy_archive_is_ok_on_every_line() {
        let f = healthy();
        let lines = judge(&f, &Limits::default());
        let facets: Vec<Facet> = lines.iter().map(|l| l.facet).collect();
        assert_eq!(facets, Facet::ALL);
        for l in &lines {
            assert_eq!(l.status, Status::Ok, "{l:?}");
        }
        assert_eq!(
            lines[0].message,
            "archive_mode on, archive_command set, archive_timeout 60 s"
        );
        assert_eq!(lines[1].message, "no failure since 2026-11-01T00:00:00Z");
        assert_eq!(lines[1].value, Some(0.0));
        assert_eq!(
            lines[2].message,
            "000000010000000000000007 archived 61 s ago (2026-11-21T02:00:00Z); up to date: \
             the segment being written, 000000010000000000000008, is the next one"
        );
        assert_eq!(lines[2].value, Some(61.0));
        assert_eq!(lines[3].value, Some(0.0));
        assert_eq!(
            lines[4].message,
            "000000010000000000000003 to 000000010000000000000007 (5 files) are in the archive /srv/wal"
        );
        assert_eq!(lines[4].value, Some(0.0));
    }

    #[test]
    fn an_old_last_segment_is_judged_only_when_a_newer_one_was_completed() {
        let mut f = healthy();
        // A quiet server: two days since the last segment, none completed since.
        f.server.last_archived_age = Some(2.0 * 86_400.0);
        let l = line(&f, Facet::LastArchived);
        assert_eq!(l.status, Status::Ok, "{l:?}");
        assert!(l.message.contains("archived 2 d ago"), "{}", l.message);
        assert!(l.message.contains("up to date"), "{}", l.message);
        // Just after pg_switch_wal, the position names the segment switched away from.
        f.server.current_wal = f.server.last_archived_wal.clone();
        let l = line(&f, Facet::LastArchived);
        assert_eq!(l.status, Status::Ok);
        assert!(
            l.message.ends_with("no segment was completed since"),
            "{}",
            l.message
        );
        // Two segments further: one completed and not archived; the age counts.
        f.server.current_wal = Some("000000010000000000000009".into());
        for (age, status) in [
            (60.0, Status::Ok),
            (900.0, Status::Warning),
            (3600.0, Status::Critical),
        ] {
            f.server.last_archived_age = Some(age);
            let l = line(&f, Facet::LastArchived);
            assert_eq!(l.status, status, "{age}: {l:?}");
            assert_eq!(l.threshold, Some(DEFAULT_AGE));
        }
        assert!(line(&f, Facet::LastArchived)
            .message
            .ends_with("the server is writing 000000010000000000000009 (archive_timeout 60 s)"),);
        // Another timeline is not the next segment.
        f.server.current_wal = Some("000000020000000000000008".into());
        assert_eq!(line(&f, Facet::LastArchived).status, Status::Critical);
        // Thresholds given by the caller are used.
        let limits = Limits {
            age: Threshold {
                warning: 7200.0,
                critical: 10_000.0,
            },
            ..Limits::default()
        };
        let l = judge(&f, &limits).remove(2);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(l.threshold, Some(limits.age));
    }

    #[test]
    fn a_standby_is_judged_by_age_alone() {
        let mut f = healthy();
        f.server.in_recovery = true;
        f.server.current_wal = None;
        f.server.archive_mode = Some("always".into());
        f.server.last_archived_age = Some(1000.0);
        let l = line(&f, Facet::LastArchived);
        assert_eq!(l.status, Status::Warning);
        assert!(l.message.contains("a standby"), "{}", l.message);
        f.server.archive_mode = Some("on".into());
        let l = line(&f, Facet::Archiving);
        assert_eq!(l.status, Status::Unknown);
        assert!(l.message.contains("archive_mode = always"), "{}", l.message);
    }

    #[test]
    fn a_failure_newer_than_the_last_success_is_critical() {
        let mut f = healthy();
        // An old failure, followed by successes: OK, counted.
        f.server.failed_count = 2;
        f.server.last_failed_wal = Some("000000010000000000000004".into());
        f.server.last_failed_age = Some(5000.0);
        f.server.last_failed_time = Some("2026-11-21T00:40:00Z".into());
        let l = line(&f, Facet::Failures);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(l.value, Some(2.0));
        assert!(l.message.starts_with("2 failure(s) since"), "{}", l.message);
        // The last attempt failed.
        f.server.failed_count = 3;
        f.server.last_failed_wal = Some("000000010000000000000008".into());
        f.server.last_failed_age = Some(5.0);
        f.server.last_failed_time = Some("2026-11-21T02:01:00Z".into());
        let l = line(&f, Facet::Failures);
        assert_eq!(l.status, Status::Critical);
        assert_eq!(
            l.message,
            "archive_command fails: the last attempt, on 000000010000000000000008 at \
             2026-11-21T02:01:00Z, failed after the last success (000000010000000000000007 at \
             2026-11-21T02:00:00Z); 3 failure(s) since 2026-11-01T00:00:00Z; the server's log \
             says why (lines starting `wal push:`)"
        );
        // Never archived, and failing.
        f.server.last_archived_wal = None;
        f.server.last_archived_age = None;
        f.server.last_archived_time = None;
        let l = line(&f, Facet::Failures);
        assert_eq!(l.status, Status::Critical);
        assert!(
            l.message
                .contains("failed and nothing was archived since 2026-11-01"),
            "{}",
            l.message
        );
    }

    #[test]
    fn nothing_archived_yet_is_judged_by_what_waits() {
        let mut f = healthy();
        f.server.last_archived_wal = None;
        f.server.last_archived_age = None;
        f.server.stats_reset = None;
        f.archive = ArchiveLook::NothingArchived;
        let l = line(&f, Facet::LastArchived);
        assert_eq!(l.status, Status::Ok);
        assert_eq!(
            l.message,
            "nothing archived since the statistics were reset; nothing waits to be archived"
        );
        assert_eq!(l.value, None);
        f.ready = ReadyFiles::Counted {
            count: 3,
            oldest: Some("000000010000000000000001".into()),
            oldest_age: Some(4000.0),
        };
        let l = line(&f, Facet::LastArchived);
        assert_eq!(l.status, Status::Critical, "waiting for over an hour");
        assert!(
            l.message
                .ends_with("3 file(s) wait, the oldest (000000010000000000000001) for 66 min"),
            "{}",
            l.message
        );
        f.ready = ReadyFiles::NotPermitted("GRANT pg_monitor TO mairie".into());
        assert_eq!(line(&f, Facet::LastArchived).status, Status::Unknown);
        assert_eq!(line(&f, Facet::Archive).status, Status::Ok);
    }

    #[test]
    fn the_backlog_is_judged_and_an_uncountable_one_is_unknown() {
        let mut f = healthy();
        for (n, status) in [
            (9, Status::Ok),
            (10, Status::Warning),
            (100, Status::Critical),
        ] {
            f.ready = ReadyFiles::Counted {
                count: n,
                oldest: Some("000000010000000000000008".into()),
                oldest_age: Some(30.0),
            };
            let l = line(&f, Facet::ReadyFiles);
            assert_eq!(l.status, status, "{n}");
            assert_eq!(l.value, Some(n as f64));
        }
        assert_eq!(
            line(&f, Facet::ReadyFiles).message,
            "100 WAL file(s) wait to be archived (.ready), the oldest, 000000010000000000000008, for 30 s"
        );
        f.ready = ReadyFiles::NotPermitted(
            "role mairie may not call pg_ls_archive_statusdir(): GRANT pg_monitor TO \"mairie\""
                .into(),
        );
        let l = line(&f, Facet::ReadyFiles);
        assert_eq!(l.status, Status::Unknown, "never OK when not counted");
        assert!(l.message.contains("GRANT pg_monitor"), "{}", l.message);
        assert_eq!(l.value, None);
        f.ready = ReadyFiles::Unsupported(
            "PostgreSQL 11.22 has no pg_ls_archive_statusdir() (12 and later)".into(),
        );
        assert_eq!(line(&f, Facet::ReadyFiles).status, Status::Unknown);
    }

    #[test]
    fn no_archiving_is_critical() {
        let mut f = healthy();
        f.server.archive_mode = Some("off".into());
        f.server.archive_mode_pending_restart = true;
        let l = line(&f, Facet::Archiving);
        assert_eq!(l.status, Status::Critical);
        assert_eq!(
            l.message,
            "archive_mode is off: no WAL is archived (a new archive_mode waits for a restart)"
        );
        assert_eq!(line(&f, Facet::LastArchived).status, Status::Critical);
        let mut f = healthy();
        f.server.archive_command = Some("  ".into());
        let l = line(&f, Facet::Archiving);
        assert_eq!(l.status, Status::Critical);
        assert!(
            l.message.contains("archive_command is empty"),
            "{}",
            l.message
        );
        let l = line(&f, Facet::LastArchived);
        assert_eq!(l.status, Status::Critical);
        assert!(
            l.message
                .starts_with("not archiving: the last file archived"),
            "{}",
            l.message
        );
        // An archive library archives without a command.
        f.server.archive_library = Some("basic_archive".into());
        assert_eq!(line(&f, Facet::Archiving).status, Status::Ok);
        // A hidden command cannot be judged.
        let mut f = healthy();
        f.server.archive_command = None;
        let l = line(&f, Facet::Archiving);
        assert_eq!(l.status, Status::Unknown);
        assert!(
            l.message.contains("GRANT pg_read_all_settings"),
            "{}",
            l.message
        );
        assert_eq!(line(&f, Facet::LastArchived).status, Status::Ok);
    }

    #[test]
    fn missing_segments_are_critical_and_named_with_the_directory() {
        let mut f = healthy();
        f.archive = ArchiveLook::Looked {
            last: "000000010000000000000007".into(),
            checked: (3..=7).map(|n| archive::segment_name(1, n, SEG)).collect(),
            missing: vec!["000000010000000000000005".into()],
            twice: vec![],
        };
        let l = line(&f, Facet::Archive);
        assert_eq!(l.status, Status::Critical);
        assert_eq!(l.value, Some(1.0));
        assert_eq!(
            l.message,
            "000000010000000000000005 missing from the archive /srv/wal, though \
             pg_stat_archiver says 000000010000000000000007 was archived"
        );
        f.server.archive_command = Some("cp %p /mnt/elsewhere/%f".into());
        assert!(line(&f, Facet::Archive)
            .message
            .ends_with("does it write to this archive?)"));
        f.archive = ArchiveLook::NoArchive;
        let l = line(&f, Facet::Archive);
        assert_eq!(l.status, Status::Critical);
        assert!(
            l.message.contains("/srv/wal does not exist"),
            "{}",
            l.message
        );
        assert_eq!(l.value, None);
        f.archive = ArchiveLook::Unreadable {
            path: PathBuf::from("/srv/wal/wal/0000000100000000"),
            reason: "Permission denied (os error 13)".into(),
        };
        let l = line(&f, Facet::Archive);
        assert_eq!(l.status, Status::Unknown);
        assert_eq!(
            l.message,
            "cannot read the archive: /srv/wal/wal/0000000100000000: Permission denied (os error 13)"
        );
        f.archive = ArchiveLook::Looked {
            last: "000000010000000000000007".into(),
            checked: vec!["000000010000000000000007".into()],
            missing: vec![],
            twice: vec!["000000010000000000000007".into()],
        };
        let l = line(&f, Facet::Archive);
        assert_eq!(l.status, Status::Critical);
        assert!(l.message.contains("archived twice"), "{}", l.message);
    }

    #[test]
    fn the_window_starts_at_the_oldest_segment_the_archive_holds() {
        let present: BTreeSet<u64> = [3, 5, 7].into_iter().collect();
        // Older segments exist: the whole window is expected.
        assert_eq!(expected_from(3, 7, &present, true), 3);
        // A young cluster whose first archived segment is 5.
        let young: BTreeSet<u64> = [5, 7].into_iter().collect();
        assert_eq!(expected_from(3, 7, &young, false), 5);
        // Nothing in the window: the last one at least.
        assert_eq!(expected_from(3, 7, &BTreeSet::new(), false), 7);
    }

    /// A scratch archive directory, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let d = std::env::temp_dir().join(format!(
                "mairie-dba-pitr-check-{tag}-{}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }

        fn publish(&self, name: &str) {
            let w = WalName::parse(name).unwrap();
            let dir = self.0.join(archive::WAL_DIR).join(w.subdir());
            fs::create_dir_all(&dir).unwrap();
            let hash = format!("{:064x}", name.len() + name.as_bytes()[23] as usize);
            fs::write(dir.join(archive::archived_name(&w, &hash)), b"x").unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_look_finds_gaps_from_the_oldest_segment_held() {
        let s = Scratch::new("look");
        let name = |n: u64| archive::segment_name(1, n, SEG);
        for n in [1, 2, 3, 5, 7] {
            s.publish(&name(n));
        }
        match look(&s.0, Some(&name(7)), SEG) {
            ArchiveLook::Looked {
                checked, missing, ..
            } => {
                assert_eq!(checked, (3..=7).map(name).collect::<Vec<_>>());
                assert_eq!(missing, [name(4), name(6)]);
            }
            other => panic!("{other:?}"),
        }
        // The last one itself gone.
        match look(&s.0, Some(&name(8)), SEG) {
            ArchiveLook::Looked { missing, .. } => assert_eq!(missing, [name(4), name(6), name(8)]),
            other => panic!("{other:?}"),
        }
        // A new timeline begun at segment 7 holds nothing before it: nothing is missing.
        s.publish("000000020000000000000007");
        s.publish("000000020000000000000008");
        match look(&s.0, Some("000000020000000000000008"), SEG) {
            ArchiveLook::Looked {
                checked, missing, ..
            } => {
                assert_eq!(
                    checked,
                    ["000000020000000000000007", "000000020000000000000008"]
                );
                assert!(missing.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // A history file is looked for as such.
        match look(&s.0, Some("00000002.history"), SEG) {
            ArchiveLook::Looked { missing, .. } => assert_eq!(missing, ["00000002.history"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            look(&s.0, Some("RECOVERYXLOG"), SEG),
            ArchiveLook::NotAWalName("RECOVERYXLOG".into())
        );
        assert_eq!(look(&s.0, None, SEG), ArchiveLook::NothingArchived);
        let gone = s.0.join("nowhere");
        assert_eq!(look(&gone, Some(&name(7)), SEG), ArchiveLook::NoArchive);
        assert_eq!(look(&gone, None, SEG), ArchiveLook::NothingArchived);
        // Across a log boundary (…00FF then …0100), the previous directory is read too.
        let s2 = Scratch::new("boundary");
        for n in 250..=257 {
            s2.publish(&name(n));
        }
        fs::remove_file(
            fs::read_dir(s2.0.join("wal/0000000100000000"))
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(&name(254)))
                .unwrap()
                .path(),
        )
        .unwrap();
        match look(&s2.0, Some(&name(257)), SEG) {
            ArchiveLook::Looked { missing, .. } => assert_eq!(missing, [name(254)]),
            other => panic!("{other:?}"),
        }
    }
}
