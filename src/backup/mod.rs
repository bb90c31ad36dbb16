//! Backups on disk, whatever the engine: file names, manifests, hashing while writing,
//! atomic writes, the per-target lock, the record of the last run, and retention; the
//! record kept outside the backup directory is `state`, the judgement of `backup check` is
//! `check`.
//!
//! The rules that make a backup directory trustworthy live here: a file is a backup only if
//! its name follows the pattern and a manifest with `status: success` sits beside it; a file
//! is written as `<name>.partial` and renamed only once complete and fsynced; retention only
//! ever touches files that are backups of the same target, and never the newest good ones; a
//! backup dated in the future (a wrong clock) is never taken for the latest.

pub mod check;
pub mod remote;
pub mod retention;
pub mod state;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{BackupEntry, Target};
use crate::error::ConfigError;
use crate::Ctx;

/// The suffix of a backup being written.
pub const PARTIAL: &str = ".partial";

/// `<database>_full_YYYYMMDD_HHMMSS.<ext>`, times in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    pub database: String,
    pub taken: NaiveDateTime,
    pub ext: String,
}

/// The extensions a backup file may have.
pub const EXTENSIONS: [&str; 5] = ["dump", "sql.zst", "sql.gz", "bak", "rdb"];

/// A database name as it appears in a file name: one safe path component whatever the name
/// (`../x`, `a/b`, a leading dot): bytes other than ASCII letters, digits, `_`, `-` and a
/// non-leading `.` are written `%XX`, and so is `%`.
pub fn file_component(database: &str) -> String {
    let mut out = String::with_capacity(database.len());
    for (i, b) in database.bytes().enumerate() {
        let safe = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if safe {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl BackupName {
    /// The name of a backup of `database` (escaped by [`file_component`]).
    pub fn new(database: &str, taken: DateTime<Utc>, ext: &str) -> Self {
        BackupName {
            database: file_component(database),
            taken: taken.naive_utc().with_nanosecond_zero(),
            ext: ext.to_string(),
        }
    }

    pub fn file_name(&self) -> String {
        format!(
            "{}_full_{}.{}",
            self.database,
            self.taken.format("%Y%m%d_%H%M%S"),
            self.ext
        )
    }

    pub fn parse(file_name: &str) -> Option<BackupName> {
        let ext = EXTENSIONS
            .iter()
            .find(|e| file_name.ends_with(&format!(".{e}")))?;
        let stem = &file_name[..file_name.len() - ext.len() - 1];
        let (database, stamp) = stem.rsplit_once("_full_")?;
        if database.is_empty() || stamp.len() != 15 {
            return None;
        }
        let taken = NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S").ok()?;
        Some(BackupName {
            database: database.to_string(),
            taken,
            ext: ext.to_string(),
        })
    }
}

trait NanoZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanoZero for NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

/// A manifest is a few kilobytes (a row count per table); past this it is not one.
pub(crate) const MANIFEST_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// `<file>.json`, beside every finished backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub engine: String,
    pub target: String,
    pub database: String,
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: String,
    pub tool: String,
    /// Rows per table, counted in the dump's snapshot (PostgreSQL) or just before.
    pub tables: BTreeMap<String, u64>,
    /// `pg_dump custom`, `sql+zstd`, `mssql native`.
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub server_version: String,
    #[serde(default)]
    pub host: String,
    /// Where the file lives when it is not beside the manifest (SQL Server writes its
    /// backups on the server's own disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub mairie_dba_version: String,
    /// The backup file's modification time once complete: with the size, what `backup
    /// check` compares without reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<DateTime<Utc>>,
    /// The object's ETag, for a backup in a bucket: with the size, what `backup check`
    /// compares by one HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl Manifest {
    pub fn path_for(backup: &Path) -> PathBuf {
        let mut s = backup.as_os_str().to_owned();
        s.push(".json");
        PathBuf::from(s)
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let mut text = String::new();
        open_nofollow(path)?
            .take(MANIFEST_MAX_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        if text.len() as u64 >= MANIFEST_MAX_BYTES {
            bail!("{}: larger than a manifest can be", path.display());
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid manifest", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        write_atomic(path, &text)
    }
}

/// Creates a backup directory (and its parents) readable by its owner only. An existing
/// directory keeps its permissions: it may be a shared one the DBA chose on purpose.
pub fn private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 700 {}", dir.display()))
}

/// A new file, mode 0600, failing if it exists.
pub fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Writes a small file so that readers see the old content or the new, never a part:
/// a 0600 temporary file in the same directory, fsynced, renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let res = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Opens a file for reading without following a symbolic link in its last component.
pub fn open_nofollow(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                anyhow!("{} is a symbolic link: not followed", path.display())
            } else {
                anyhow!("opening {}: {e}", path.display())
            }
        })
}

/// Makes a rename durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}

/// A file being written whose bytes are hashed and counted on the way.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the hex SHA-256 and the size of everything written.
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 and size of a file, read in large blocks.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = open_nofollow(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(h.finalize()), total))
}

/// A file in a backup directory that looks like a backup.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub name: BackupName,
    pub size: u64,
    /// The manifest, or why it could not be read (absent, unreadable).
    pub manifest: Result<Manifest, String>,
    /// The date the entry claims, when it lies more than [`FUTURE_SLACK_MINUTES`] ahead of
    /// the clock at the time of the scan (its name's or its manifest's): a backup from a
    /// machine whose clock was wrong, never taken for the latest.
    pub dated_ahead: Option<DateTime<Utc>>,
    /// Why this is not a backup of the target reading it, if it is not: a manifest whose
    /// engine, target, database or file does not match the configuration, one that names a
    /// location it may not, or a symbolic link. Never good, never read, never deleted.
    pub foreign: Option<String>,
    /// The backup file is there, a regular file (not a symbolic link).
    pub present: bool,
}

/// How far ahead of the clock a backup may be dated (clocks of two machines, a backup
/// finishing as the check reads it) before it is taken for a clock error.
pub const FUTURE_SLACK_MINUTES: i64 = 5;

/// The latest date an entry claims, if it is more than [`FUTURE_SLACK_MINUTES`] after `now`.
pub(crate) fn dated_ahead(
    name: &BackupName,
    manifest: &Result<Manifest, String>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut claimed = name.taken.and_utc();
    if let Ok(m) = manifest {
        claimed = claimed.max(m.started_at).max(m.finished_at);
    }
    (claimed > now + chrono::Duration::minutes(FUTURE_SLACK_MINUTES)).then_some(claimed)
}

impl Entry {
    /// An entry for a file named on the command line.
    pub fn for_file(path: &Path) -> Result<Entry> {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
        let name = BackupName::parse(file_name).ok_or_else(|| {
            anyhow!(
                "{}: not a backup file name (<database>_full_YYYYMMDD_HHMMSS.dump|.sql.zst|.rdb)",
                path.display()
            )
        })?;
        if !path.exists() {
            bail!("{}: no such file", path.display());
        }
        let mpath = Manifest::path_for(path);
        let manifest = if mpath.exists() {
            Manifest::read(&mpath).map_err(|e| format!("{e:#}"))
        } else {
            Err("no manifest beside it: not a finished backup".to_string())
        };
        let present = regular_file(path);
        Ok(Entry {
            path: path.to_path_buf(),
            size: std::fs::symlink_metadata(path)
                .map(|m| m.len())
                .unwrap_or(0),
            dated_ahead: dated_ahead(&name, &manifest, Utc::now()),
            foreign: (!present).then(|| format!("{}: not a regular file", path.display())),
            present,
            name,
            manifest,
        })
    }

    /// Marks the entry foreign when it is not a backup of `target` ([`foreign_reason`]).
    pub fn check_belongs(&mut self, target: &Target, server_dir: Option<&str>) {
        if self.foreign.is_none() {
            self.foreign = foreign_reason(self, target, server_dir, true);
        }
    }

    /// For a file the operator names to restore on `target` (perhaps another target than
    /// the one it was taken from): the same rules but the manifest's target, database and
    /// file name, which the operator overrides by naming it.
    pub fn check_restorable_on(&mut self, target: &Target, server_dir: Option<&str>) {
        if self.foreign.is_none() {
            self.foreign = foreign_reason(self, target, server_dir, false);
        }
    }

    /// Where the backup's bytes are: the file itself, or for SQL Server the location on the
    /// server the manifest names (checked against `server_dir` by [`foreign_reason`]).
    pub fn source(&self) -> PathBuf {
        match &self.manifest {
            Ok(m) if self.foreign.is_none() => m
                .location
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(|| self.path.clone()),
            _ => self.path.clone(),
        }
    }

    /// A finished, successful backup of this target, per its manifest, and not dated in the
    /// future: only such a backup may be the latest, be restored by `--latest`, or count
    /// toward `keep_min`.
    pub fn is_good_for(&self, target: &str) -> bool {
        self.dated_ahead.is_none()
            && self.foreign.is_none()
            && matches!(&self.manifest, Ok(m) if m.status == "success" && m.target == target)
    }

    /// Its file is here with the manifest's size (or lives on the server, for SQL Server):
    /// only such a backup counts toward `keep_min`.
    pub fn is_whole(&self) -> bool {
        match &self.manifest {
            Ok(m) if m.location.is_some() => true,
            Ok(m) => self.present && self.size == m.size_bytes,
            Err(_) => false,
        }
    }

    /// Not a backup of another target (by its manifest): ours, or nobody's.
    pub fn is_ours_or_unclaimed(&self, target: &str) -> bool {
        !matches!(&self.manifest, Ok(m) if m.target != target)
    }

    pub fn file_name(&self) -> String {
        self.name.file_name()
    }
}

/// The backup files of `dir` for `target`, newest first. Manifests of SQL Server backups
/// (whose file lives on the server, in `server_dir`) are listed too. Every path comes from
/// the directory and the file name pattern, never from a manifest; entries whose manifest
/// does not match the target, and symbolic links, are listed as foreign.
pub fn scan(dir: &Path, target: &Target, server_dir: Option<&str>) -> Result<Vec<Entry>> {
    scan_at(dir, target, server_dir, Utc::now())
}

/// [`scan`], with the clock that decides which entries are dated in the future.
pub fn scan_at(
    dir: &Path,
    target: &Target,
    server_dir: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Entry>> {
    let database = file_component(&target.connection.database);
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow!("reading {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let file_name = e.file_name().to_string_lossy().into_owned();
        // A manifest whose backup file is elsewhere (SQL Server) stands for its backup.
        let backup_name = file_name
            .strip_suffix(".json")
            .unwrap_or(&file_name)
            .to_string();
        let Some(name) = BackupName::parse(&backup_name) else {
            continue;
        };
        if name.database != database || !seen.insert(backup_name.clone()) {
            continue;
        }
        let path = dir.join(&backup_name);
        let present = regular_file(&path);
        let size = std::fs::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        let mpath = Manifest::path_for(&path);
        let manifest = match std::fs::symlink_metadata(&mpath) {
            Ok(md) if md.file_type().is_symlink() => {
                Err("the manifest is a symbolic link: not followed".to_string())
            }
            Ok(_) => Manifest::read(&mpath).map_err(|e| format!("{e:#}")),
            Err(_) => Err("no manifest: not a finished backup".to_string()),
        };
        let mut entry = Entry {
            path,
            dated_ahead: dated_ahead(&name, &manifest, now),
            name,
            size,
            manifest,
            foreign: None,
            present,
        };
        entry.check_belongs(target, server_dir);
        out.push(entry);
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.name.taken));
    Ok(out)
}

/// A regular file, not a symbolic link (to anything).
fn regular_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Why `entry` is not a backup of `target`, if it is not.
pub fn foreign_reason(
    entry: &Entry,
    target: &Target,
    server_dir: Option<&str>,
    same_target: bool,
) -> Option<String> {
    let file = entry.file_name();
    if std::fs::symlink_metadata(&entry.path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Some(format!("{file} is a symbolic link: not followed"));
    }
    let expected_ext = crate::engine::backup_extension(target.engine);
    if entry.name.ext != expected_ext {
        return Some(format!(
            "{file} is not a {} backup (.{expected_ext})",
            target.engine.as_str()
        ));
    }
    let m = entry.manifest.as_ref().ok()?;
    let mismatch = |what: &str, found: &str, expected: &str| {
        Some(format!(
            "{file}: its manifest's {what} is `{found}`, the configuration's `{expected}`: a foreign backup, skipped"
        ))
    };
    if m.engine != target.engine.as_str() {
        return mismatch("engine", &m.engine, target.engine.as_str());
    }
    if same_target {
        if m.target != target.name {
            return mismatch("target", &m.target, &target.name);
        }
        if m.database != target.connection.database {
            return mismatch("database", &m.database, &target.connection.database);
        }
        if m.file != file {
            return mismatch("file", &m.file, &file);
        }
    }
    match (&m.location, crate::engine::backup_style(target.engine)) {
        (None, crate::engine::BackupStyle::Streamed) => None,
        (Some(l), crate::engine::BackupStyle::Streamed) => Some(format!(
            "{file}: its manifest names a location ({l}), but {} backups are files of the \
             backup directory: refused",
            target.engine.as_str()
        )),
        (Some(l), crate::engine::BackupStyle::ServerSide) => {
            let expected = server_dir.map(|d| crate::engine::mssql::backup::server_path(d, &file));
            (expected.as_deref() != Some(l.as_str())).then(|| {
                format!(
                    "{file}: its manifest's location ({l}) is not {} in the configured server_dir: refused",
                    file
                )
            })
        }
        (None, crate::engine::BackupStyle::ServerSide) => None,
    }
}

/// Checks a backup file against its manifest: size and SHA-256. Returns the manifest.
pub fn check_hash(entry: &Entry) -> Result<Manifest> {
    if let Some(why) = &entry.foreign {
        bail!("{why}");
    }
    let m = entry
        .manifest
        .clone()
        .map_err(|e| anyhow!("{}: {e}", entry.path.display()))?;
    if let Some(l) = &m.location {
        server_side_location(entry, &m.engine, l)?;
        return Ok(m); // on the server: checked by the engine (RESTORE VERIFYONLY)
    }
    if !entry.path.exists() {
        bail!(
            "{}: the file is missing (its manifest is there)",
            entry.path.display()
        );
    }
    let (sha, size) = hash_file(&entry.path)?;
    matches_manifest(&entry.path, size, &sha, &m)?;
    Ok(m)
}

/// The size and SHA-256 of a backup's bytes (`shown` in messages) against its manifest.
pub(crate) fn matches_manifest(shown: &Path, size: u64, sha: &str, m: &Manifest) -> Result<()> {
    if size != m.size_bytes {
        bail!(
            "{}: size {size} bytes, the manifest says {} (truncated or altered)",
            shown.display(),
            m.size_bytes
        );
    }
    if sha != m.sha256 {
        bail!(
            "{}: SHA-256 {} does not match the manifest's {} (altered)",
            shown.display(),
            &sha[..16],
            &m.sha256[..16.min(m.sha256.len())]
        );
    }
    Ok(())
}

/// A manifest may name where its file is only for an engine whose backups are written on
/// the server's own disk: anything else would make the tool read, hash or restore a file it
/// was pointed to by the manifest rather than the backup directory.
fn server_side_location(entry: &Entry, engine: &str, location: &str) -> Result<()> {
    let server_side = crate::config::EngineKind::parse(engine)
        .is_some_and(|k| crate::engine::backup_style(k) == crate::engine::BackupStyle::ServerSide);
    if !server_side {
        bail!(
            "{}: its manifest names a location ({location}), but {engine} backups are files \
             of the backup directory: refused",
            entry.path.display()
        );
    }
    Ok(())
}

/// A file's size and modification time, as [`Manifest::mtime`] and the state's hash records
/// keep them.
pub fn file_stamp(path: &Path) -> io::Result<(u64, DateTime<Utc>)> {
    let md = std::fs::metadata(path)?;
    Ok((md.len(), DateTime::<Utc>::from(md.modified()?)))
}

/// What [`quick_check`] could tell without reading the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Quick {
    /// As the manifest (or the last hash of these very bytes) says: intact.
    Unchanged,
    /// Written since it was last hashed, same size: only reading it can tell.
    Changed { size: u64, mtime: DateTime<Utc> },
}

/// Checks a backup against its manifest without reading it: present, of the manifest's
/// size, and with the modification time it had when written (or when it was last hashed and
/// found intact or not, per `hashed`). The cost is a `stat`, whatever the size of the file.
pub fn quick_check(entry: &Entry, hashed: Option<&state::HashRecord>) -> Result<Quick> {
    if let Some(why) = &entry.foreign {
        bail!("{why}");
    }
    let m = entry
        .manifest
        .as_ref()
        .map_err(|e| anyhow!("{}: {e}", entry.path.display()))?;
    if let Some(l) = &m.location {
        server_side_location(entry, &m.engine, l)?;
        return Ok(Quick::Unchanged); // on the server: checked by the engine
    }
    let (size, mtime) = match file_stamp(&entry.path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{}: the file is missing (its manifest is there)",
            entry.path.display()
        ),
        Err(e) => bail!("{}: {e}", entry.path.display()),
    };
    if size != m.size_bytes {
        bail!(
            "{}: size {size} bytes, the manifest says {} (truncated or altered)",
            entry.path.display(),
            m.size_bytes
        );
    }
    // The last hash of these very bytes is the freshest evidence; then the manifest's.
    match hashed {
        Some(h) if h.size == size && h.mtime == mtime => {
            if h.intact {
                Ok(Quick::Unchanged)
            } else {
                Err(anyhow!(
                    "{}",
                    h.error.clone().unwrap_or_else(|| format!(
                        "{}: SHA-256 does not match the manifest's (altered)",
                        entry.path.display()
                    ))
                ))
            }
        }
        _ if m.mtime == Some(mtime) => Ok(Quick::Unchanged),
        _ => Ok(Quick::Changed { size, mtime }),
    }
}

/// Why a backup could not be written into `dir` now, if it could not: a file in its place,
/// a read-only filesystem, no permission for this user. A directory that does not exist
/// yet is fine when its nearest existing parent is a directory this user may write in
/// (`backup` creates it).
pub fn unwritable(dir: &Path) -> Option<String> {
    let mut p = dir;
    loop {
        match std::fs::metadata(p) {
            Ok(md) if md.is_dir() => break,
            Ok(_) => return Some(format!("{} is not a directory", p.display())),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                p = match p.parent() {
                    Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
                    Some(parent) => parent,
                    None => return None,
                }
            }
            Err(e) => return Some(format!("{}: {e}", p.display())),
        }
    }
    let c = match std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
        Ok(c) => c,
        Err(_) => return Some(format!("{}: the path holds a NUL byte", p.display())),
    };
    // The effective user's right to create files there, as `backup` will need it; a
    // read-only mount answers EROFS even to root.
    // SAFETY: `c` is a valid C string that outlives the call.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    (rc != 0).then(|| {
        format!(
            "{}: cannot be written: {}",
            p.display(),
            io::Error::last_os_error()
        )
    })
}

/// Removes `.partial` files left by a backup that was killed. Called with the target's lock
/// held, so none of them is being written.
pub fn remove_stale_partials(dir: &Path, database: &str) -> Vec<PathBuf> {
    let database = file_component(database);
    let mut removed = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(base) = name.strip_suffix(PARTIAL) {
                // A regular file only: a planted symbolic link is left for the operator.
                if BackupName::parse(base).is_some_and(|n| n.database == database)
                    && regular_file(&e.path())
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed.push(e.path());
                }
            }
        }
    }
    removed
}

/// What runs killed at the wrong moment left in `dir` for `database`, removed (call with
/// the target's lock held, so that nothing of it is being written): temporary files of an
/// atomic write (`.<name>.tmp<pid>`) whose process is gone, and backup files without a
/// manifest (killed between the rename of the file and that of its manifest: never a
/// finished backup). Regular files only.
pub fn remove_leftovers(dir: &Path, database: &str, now: DateTime<Utc>) -> Vec<PathBuf> {
    let database = file_component(database);
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let path = e.path();
        if !regular_file(&path) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let dead_tmp = name.starts_with('.')
            && name.rsplit_once(".tmp").is_some_and(|(head, pid)| {
                head.contains(&database)
                    && !pid.is_empty()
                    && pid.bytes().all(|b| b.is_ascii_digit())
                    && pid != std::process::id().to_string()
                    && !Path::new(&format!("/proc/{pid}")).exists()
            });
        let orphan = BackupName::parse(&name).is_some_and(|n| {
            n.database == database
                && n.taken.and_utc() < now - chrono::Duration::minutes(1)
                && !Manifest::path_for(&path).exists()
        });
        if (dead_tmp || orphan) && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The outcome of the last backup run of a target, kept for `backup check`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastRun {
    pub target: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

impl LastRun {
    pub fn path(dir: &Path, target: &str) -> PathBuf {
        dir.join(format!(".{target}.last_run.json"))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        write_atomic(&LastRun::path(dir, &self.target), &text)
    }

    pub fn read(dir: &Path, target: &str) -> Option<LastRun> {
        let text = std::fs::read_to_string(LastRun::path(dir, target)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// One backup at a time per target: an exclusive lock on `<dir>/.<target>.lock`, which
/// names its holder. The OS releases it if the process dies, so a killed backup never
/// blocks the next one. For a place in a bucket, also the prefix's lease for the target
/// ([`TargetLock::with_lease`]): one writer across machines.
pub struct TargetLock {
    _file: File,
    lease: Option<crate::storage::Lease>,
}

impl TargetLock {
    /// Also holds the lease `.<name>.lease` of the bucket place `remote` for `what` (see
    /// [`crate::storage::Lease`]); blocks the thread while it is taken.
    pub fn with_lease(
        mut self,
        remote: &crate::storage::S3Place,
        name: &str,
        what: &str,
        wait: bool,
    ) -> Result<TargetLock> {
        self.lease = Some(crate::storage::Lease::acquire(remote, name, what, wait)?);
        Ok(self)
    }

    /// An error if the lease of a bucket place was lost (see [`crate::storage::Lease::check`]).
    pub fn check(&self) -> Result<()> {
        self.lease.as_ref().map_or(Ok(()), |l| l.check())
    }

    pub fn acquire(dir: &Path, target: &str, wait: bool) -> Result<TargetLock> {
        let path = dir.join(format!(".{target}.lock"));
        // Never through a symbolic link planted in a shared directory: the holder's line
        // would be written into whatever it points to.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    anyhow!(
                        "{} is a symbolic link: refusing to write through it (remove it)",
                        path.display()
                    )
                } else {
                    anyhow!("opening {}: {e}", path.display())
                }
            })?;
        if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
            bail!(
                "{} is not a regular file: refusing to use it as a lock",
                path.display()
            );
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                if !wait {
                    bail!(
                        "another backup of target `{target}` is running ({}); use --wait to wait for it",
                        if holder.is_empty() { "holder unknown" } else { holder }
                    );
                }
                file.lock()
                    .with_context(|| format!("waiting for {}", path.display()))?;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(anyhow!("locking {}: {e}", path.display()));
            }
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let who = format!(
            "pid {} on {} since {}",
            std::process::id(),
            host.trim(),
            Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        file.set_len(0)?;
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0))?;
        file.write_all(who.as_bytes())?;
        file.flush()?;
        Ok(TargetLock {
            _file: file,
            lease: None,
        })
    }
}

/// A target with its backup settings and directory. For backups in a bucket, `dir` is a
/// local directory of the state directory that holds the target's lock and run records, and
/// `remote` says where the backups are.
pub struct Place<'a> {
    pub target: &'a Target,
    pub cfg: &'a BackupEntry,
    pub dir: PathBuf,
    pub remote: Option<remote::RemoteDir>,
}

impl Place<'_> {
    /// The backups of the place, newest first (see [`scan_at`] and [`remote::scan_at`]).
    pub async fn entries_at(&self, now: DateTime<Utc>) -> Result<Vec<Entry>> {
        match &self.remote {
            Some(r) => remote::scan_at(&r.open().await?, self.target, now).await,
            None => scan_at(&self.dir, self.target, self.cfg.server_dir.as_deref(), now),
        }
    }

    /// Where the backups are, for messages.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => r.shown(),
            None => self.dir.display().to_string(),
        }
    }
}

/// The backups of `target` per its settings, newest first, wherever they are; for callers
/// that are not async (health, metrics), inside the multi-thread runtime: a bucket is read
/// by blocking this thread (`block_in_place`).
pub fn entries_of(
    config: &crate::config::Config,
    target: &Target,
    cfg: &BackupEntry,
    now: DateTime<Utc>,
) -> Result<Vec<Entry>> {
    match remote::remote_dir(cfg) {
        Some(r) => {
            let handle = tokio::runtime::Handle::try_current()
                .ok()
                .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
                .ok_or_else(|| anyhow!("{}: cannot be read from here", r.shown()))?;
            tokio::task::block_in_place(|| {
                handle.block_on(async { remote::scan_at(&r.open().await?, target, now).await })
            })
        }
        None => scan_at(
            &config.resolve(&cfg.dir),
            target,
            cfg.server_dir.as_deref(),
            now,
        ),
    }
}

/// The local directory of a target's backups: the backup directory itself, or for a
/// bucket the directory of the state directory that holds its lock and run records.
pub fn record_dir(config: &crate::config::Config, target: &str, cfg: &BackupEntry) -> PathBuf {
    let dir_text = cfg.dir.to_string_lossy();
    if dir_text.starts_with("s3:") {
        let digest = hex::encode(Sha256::digest(dir_text.as_bytes()));
        config
            .state_dir
            .join("s3")
            .join(format!("{target}-{}", &digest[..12]))
    } else {
        config.resolve(&cfg.dir)
    }
}

/// Where the backups of `cfg` are, for messages.
pub fn location_of(config: &crate::config::Config, cfg: &BackupEntry) -> String {
    match remote::remote_dir(cfg) {
        Some(r) => r.shown(),
        None => config.resolve(&cfg.dir).display().to_string(),
    }
}

/// The place of one target's backups from its settings.
fn place<'a>(ctx: &'a Ctx, t: &'a Target, cfg: &'a BackupEntry) -> Result<Place<'a>> {
    let dir_text = cfg.dir.to_string_lossy();
    if dir_text.starts_with("s3:") {
        let Some(r) = remote::remote_dir(cfg) else {
            return Err(ConfigError::new(format!(
                "{}: backup.{}.dir: `{dir_text}` is not s3://BUCKET[/PREFIX] (a bucket name is 3 to \
                 63 lower-case letters, digits, dots and hyphens)",
                ctx.config.path.display(),
                t.name
            ))
            .into());
        };
        if !matches!(
            t.engine,
            crate::config::EngineKind::Postgres | crate::config::EngineKind::Mysql
        ) {
            return Err(ConfigError::new(format!(
                "{}: backup.{}.dir: backups in object storage are for PostgreSQL and \
                 MySQL/MariaDB targets; a {} backup is written to a directory",
                ctx.config.path.display(),
                t.name,
                t.engine
            ))
            .into());
        }
        if let Some(o) = &cfg.s3 {
            o.validate().map_err(|e| {
                ConfigError::new(format!(
                    "{}: backup.{}.s3: {e:#}",
                    ctx.config.path.display(),
                    t.name
                ))
            })?;
        }
        return Ok(Place {
            target: t,
            cfg,
            dir: record_dir(&ctx.config, &t.name, cfg),
            remote: Some(r),
        });
    }
    if cfg.s3.is_some() {
        return Err(ConfigError::new(format!(
            "{}: backup.{}.s3: options for object storage, but dir `{dir_text}` is not s3://…",
            ctx.config.path.display(),
            t.name
        ))
        .into());
    }
    Ok(Place {
        target: t,
        cfg,
        dir: ctx.config.resolve(&cfg.dir),
        remote: None,
    })
}

/// The targets that have backups: with `-t`, each named one must have a `backup:` section;
/// without, targets lacking one (or with `enabled: false`) are passed over.
pub fn places(ctx: &Ctx) -> Result<Vec<Place<'_>>> {
    let mut out = Vec::new();
    for t in &ctx.targets {
        match ctx.config.backup.get(&t.name) {
            Some(cfg) if cfg.enabled || !ctx.global.targets.is_empty() => {
                out.push(place(ctx, t, cfg)?)
            }
            Some(_) => ctx
                .log
                .debug(format!("{}: backups disabled in the config", t.name)),
            None if !ctx.global.targets.is_empty() => {
                return Err(ConfigError::new(format!(
                    "{}: no `backup.{}` section for target `{}`",
                    ctx.config.path.display(),
                    t.name,
                    t.name
                ))
                .into())
            }
            None => ctx
                .log
                .debug(format!("{}: no backup section, passed over", t.name)),
        }
    }
    if out.is_empty() {
        return Err(ConfigError::new(format!(
            "{}: no target has an enabled `backup:` section",
            ctx.config.path.display()
        ))
        .into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed when the guard goes.
    struct Tmp(PathBuf);

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for Tmp {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn tmp() -> Tmp {
        let d = std::env::temp_dir().join(format!(
            "mairie-dba-backup-unit-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    #[test]
    fn names_round_trip_and_foreign_names_are_not_backups() {
        let t = DateTime::parse_from_rfc3339("2026-11-21T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = BackupName::new("mairie", t, "dump");
        assert_eq!(n.file_name(), "mairie_full_20261121_020000.dump");
        assert_eq!(
            BackupName::parse("mairie_full_20261121_020000.dump"),
            Some(n)
        );
        let z = BackupName::parse("my_db_full_20261121_020000.sql.zst").unwrap();
        assert_eq!((z.database.as_str(), z.ext.as_str()), ("my_db", "sql.zst"));
        for foreign in [
            "mairie_full_20261121_020000.dump.partial",
            "mairie_full_2026112_020000.dump",
            "mairie_20261121_020000.dump",
            "notes.txt",
            "mairie_full_20261341_020000.dump",
        ] {
            assert_eq!(BackupName::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn hashing_writer_matches_hash_file() {
        let d = tmp();
        let p = d.join("x");
        let mut w = HashingWriter::new(File::create(&p).unwrap());
        w.write_all(b"bonjour Marseille").unwrap();
        let (_, sha, n) = w.finish();
        assert_eq!(hash_file(&p).unwrap(), (sha, n));
        assert_eq!(n, 17);
    }

    #[test]
    fn atomic_writes_are_private_and_complete() {
        let d = tmp();
        let p = d.join("STATUS.json");
        write_atomic(&p, b"{\"a\":1}").unwrap();
        write_atomic(&p, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(&*d).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn the_lock_names_its_holder() {
        let d = tmp();
        let _held = TargetLock::acquire(&d, "postgres", false).unwrap();
        let e = TargetLock::acquire(&d, "postgres", false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("another backup of target `postgres` is running (pid "),
            "{e}"
        );
        assert!(
            TargetLock::acquire(&d, "mysql", false).is_ok(),
            "other targets are independent"
        );
    }
}
