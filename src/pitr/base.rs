//! Base backups: what `pg_basebackup` streams (one tar: the data directory, the WAL it needs,
//! and the server's `backup_manifest` at the end), the checks made on that stream as it goes
//! by, the manifest written beside each backup, and which backups and WAL retention keeps.
//!
//! In the target's `base_dir`:
//!
//! ```text
//! base-<YYYYmmddTHHMMSS.mmmZ>.tar.zst           the tar, zstd-compressed
//! base-<YYYYmmddTHHMMSS.mmmZ>.tar.zst.json      its manifest (written last: no manifest, no backup)
//! base-<YYYYmmddTHHMMSS.mmmZ>.tar.zst.partial   a backup being written (or left by a killed one)
//! ```
//!
//! PostgreSQL 15's `pg_verifybackup` reads only plain directories, so the stream is checked
//! here the way it checks a directory — every file of the server's manifest present with its
//! size and SHA-256, nothing else, the manifest's own checksum, the WAL from the start to
//! the end of the backup present — and `pitr restore` runs `pg_verifybackup` itself on the
//! directory it unpacks, before any recovery.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pitr::archive::{segment_name, WalName};

/// The base backups' extension.
pub const EXT: &str = ".tar.zst";
/// What a base backup being written is called until it is whole.
pub const PARTIAL: &str = ".partial";
/// The `kind` of a base backup manifest.
pub const KIND: &str = "pitr-base-backup";

/// The server's `backup_manifest` is about 200 bytes per file: 256 MiB is a million files.
const SERVER_MANIFEST_MAX: u64 = 256 * 1024 * 1024;
/// `backup_label` is a few hundred bytes.
const LABEL_MAX: u64 = 64 * 1024;
/// Our own manifest is a few hundred bytes.
const MANIFEST_MAX: u64 = 1024 * 1024;

/// `<file>.json` beside every base backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaseManifest {
    pub kind: String,
    pub engine: String,
    pub target: String,
    pub file: String,
    /// The compressed file's size and SHA-256.
    pub size_bytes: u64,
    pub sha256: String,
    pub started_at: DateTime<Utc>,
    /// When pg_basebackup had returned: the backup is consistent at `stop_lsn`, written
    /// before this moment, so a restore to any later time may start from it.
    pub finished_at: DateTime<Utc>,
    pub status: String,
    pub label: String,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub timeline: u32,
    /// The first and last WAL segments the backup needs (held in its own pg_wal too).
    pub start_wal: String,
    pub stop_wal: String,
    pub system_identifier: String,
    pub wal_segment_size: u64,
    pub server_version: String,
    pub tool: String,
    /// Files in the tar, and their uncompressed bytes.
    pub files: u64,
    pub data_bytes: u64,
    /// Checked on the stream: every file of the server's backup_manifest, by SHA-256.
    pub checked_files: u64,
    /// For a base backup in a bucket: the object's ETag, as the service gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    pub mairie_dba_version: String,
}

impl BaseManifest {
    pub fn path_for(backup: &Path) -> PathBuf {
        let mut s = backup.as_os_str().to_owned();
        s.push(".json");
        PathBuf::from(s)
    }

    pub fn read(path: &Path) -> Result<BaseManifest> {
        let mut text = Vec::new();
        crate::backup::open_nofollow(path)?
            .take(MANIFEST_MAX)
            .read_to_end(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        if text.len() as u64 >= MANIFEST_MAX {
            bail!("{}: larger than a manifest can be", path.display());
        }
        Self::parse(&text, &path.display().to_string())
    }

    /// A manifest's text (`shown` names where it was read in errors).
    pub fn parse(text: &[u8], shown: &str) -> Result<BaseManifest> {
        let m: BaseManifest = serde_json::from_slice(text)
            .with_context(|| format!("{shown}: not a base backup manifest"))?;
        if m.kind != KIND {
            bail!("{shown}: not a base backup manifest (kind `{}`)", m.kind);
        }
        Ok(m)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        crate::backup::write_atomic(path, &text)
    }

    /// The segment number of the backup's first WAL segment.
    pub fn start_segment(&self) -> Option<u64> {
        lsn_segment(parse_lsn(&self.start_lsn)?, self.wal_segment_size)
    }
}

/// The file name of a base backup taken at `at`.
pub fn file_name(at: DateTime<Utc>) -> String {
    format!("base-{}{EXT}", at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// When a base backup file name says it was taken; None for anything else.
pub fn parse_name(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix("base-")?.strip_suffix(EXT)?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ")
        .or_else(|_| NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ"))
        .ok()
        .map(|t| t.and_utc())
}

/// `0/2000028` → 0x2000028.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
        return None;
    }
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn lsn_segment(lsn: u64, segment_size: u64) -> Option<u64> {
    (segment_size > 0).then(|| lsn / segment_size)
}

/// The segment holding the last byte before `lsn` (an end LSN on a segment boundary belongs
/// to the segment before it), as PostgreSQL's XLByteToPrevSeg.
fn end_segment(lsn: u64, segment_size: u64) -> u64 {
    lsn.saturating_sub(1) / segment_size.max(1)
}

/// One base backup found in `base_dir`: its manifest, or why it is not usable.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub manifest: std::result::Result<BaseManifest, String>,
}

impl Found {
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Its manifest if whole: the file beside it has the size the manifest records.
    pub fn good(&self) -> Option<&BaseManifest> {
        self.manifest.as_ref().ok()
    }
}

/// The base backups of `base_dir`, oldest first (by the time their manifest says they ended;
/// those without a readable manifest by name). Files that are not base backups are ignored;
/// a missing directory holds none.
pub fn scan(base_dir: &Path, target: &str) -> Result<Vec<Found>> {
    let rd = match std::fs::read_dir(base_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", base_dir.display())),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", base_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if parse_name(&name).is_none() {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest = if !meta.file_type().is_file() {
            Err("not a regular file".to_string())
        } else {
            match BaseManifest::read(&BaseManifest::path_for(&path)) {
                Err(e) if !BaseManifest::path_for(&path).exists() => {
                    let _ = e;
                    Err("no manifest: not a finished base backup".to_string())
                }
                Err(e) => Err(format!("{e:#}")),
                Ok(m) => judge_manifest(m, target, &name, meta.len()),
            }
        };
        out.push(Found { path, manifest });
    }
    sort_found(&mut out);
    Ok(out)
}

/// A base backup's manifest, if it describes this file (`name`, `size` bytes) of `target`.
pub fn judge_manifest(
    m: BaseManifest,
    target: &str,
    name: &str,
    size: u64,
) -> std::result::Result<BaseManifest, String> {
    if m.target != target {
        Err(format!(
            "manifest is of target `{}`, not `{target}`",
            m.target
        ))
    } else if m.file != name {
        Err(format!("manifest describes `{}`, not this file", m.file))
    } else if m.size_bytes != size {
        Err(format!(
            "{size} bytes, the manifest says {}: truncated or replaced",
            m.size_bytes
        ))
    } else {
        Ok(m)
    }
}

/// Oldest first: by the time their manifest says they ended; those without a usable
/// manifest by name.
pub fn sort_found(found: &mut [Found]) {
    found.sort_by_key(|f| match &f.manifest {
        Ok(m) => m.finished_at,
        Err(_) => parse_name(&f.name()).unwrap_or_default(),
    });
}

/// What retention does: the base backups it deletes, and the WAL segments older than the
/// oldest one it keeps.
#[derive(Debug, Default, Serialize)]
pub struct Prune {
    pub keep: Vec<String>,
    pub delete: Vec<String>,
    /// Archived WAL before this segment number (any timeline) is no longer needed.
    #[serde(skip)]
    pub wal_before: Option<u64>,
    /// The first segment kept, by name, for reports.
    pub wal_kept_from: Option<String>,
}

/// Keeps the newest `keep` good base backups (at least one); deletes older good ones and
/// never one newer than the oldest kept. Unusable ones (no or a bad manifest) are left for a
/// person to look at. WAL is pruned only up to what the oldest kept backup needs, and not at
/// all while no good backup exists.
pub fn plan_prune(found: &[Found], keep: u32) -> Prune {
    let keep = keep.max(1) as usize;
    let good: Vec<&Found> = found.iter().filter(|f| f.good().is_some()).collect();
    let mut p = Prune::default();
    let cut = good.len().saturating_sub(keep);
    for (i, f) in good.iter().enumerate() {
        if i < cut {
            p.delete.push(f.name());
        } else {
            p.keep.push(f.name());
        }
    }
    if let Some(oldest) = good.get(cut).and_then(|f| f.good()) {
        p.wal_before = oldest.start_segment();
        p.wal_kept_from = Some(oldest.start_wal.clone());
    }
    p
}

/// Deletes a base backup: its manifest first, so that what is left, if anything, is no
/// longer taken for a backup.
pub fn delete(base_dir: &Path, name: &str) -> Result<()> {
    let path = base_dir.join(name);
    let manifest = BaseManifest::path_for(&path);
    match std::fs::remove_file(&manifest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("deleting {}", manifest.display())),
    }
    std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
    crate::backup::sync_dir(base_dir)
}

/// What the tar stream of pg_basebackup held and what was checked in it.
#[derive(Debug, Default)]
pub struct StreamFacts {
    pub files: u64,
    pub data_bytes: u64,
    pub checked_files: u64,
    pub start_lsn: u64,
    pub timeline: u32,
    pub stop_lsn: u64,
    pub stop_timeline: u32,
    pub start_wal: String,
    pub stop_wal: String,
    pub label: String,
    pub system_identifier: u64,
}

/// A reader that hands every byte it reads to `tee` too (the compressor, on its own thread).
pub struct TeeReader<R, F: FnMut(&[u8]) -> io::Result<()>> {
    pub inner: R,
    pub tee: F,
}

impl<R: Read, F: FnMut(&[u8]) -> io::Result<()>> Read for TeeReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            (self.tee)(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Reads pg_basebackup's tar to its end, hashing each file, and checks it against the
/// server's backup_manifest carried at the end of the stream. `segment_size` is the
/// server's `wal_segment_size`.
pub fn check_stream(reader: impl Read, segment_size: u64) -> Result<StreamFacts> {
    let mut archive = tar::Archive::new(reader);
    let mut seen: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut wal: Vec<String> = Vec::new();
    let mut server_manifest: Option<Vec<u8>> = None;
    let mut label: Option<String> = None;
    let mut sysid: Option<u64> = None;
    let mut facts = StreamFacts::default();
    let mut buf = vec![0u8; 256 * 1024];
    for entry in archive
        .entries()
        .context("reading pg_basebackup's tar stream")?
    {
        let mut entry = entry.context("reading pg_basebackup's tar stream")?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = path.trim_end_matches('/').to_string();
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => bail!(
                "the backup holds `{path}` of tar type {other:?}: only files and directories are \
                 expected (tablespaces are not supported by a base backup to one stream)"
            ),
        }
        if path.split('/').any(|c| c == ".." || c.is_empty()) || path.starts_with('/') {
            bail!("the backup holds an unsafe path `{path}`");
        }
        facts.files += 1;
        if path == "backup_manifest" {
            let mut text = Vec::new();
            (&mut entry)
                .take(SERVER_MANIFEST_MAX)
                .read_to_end(&mut text)?;
            if text.len() as u64 >= SERVER_MANIFEST_MAX {
                bail!("backup_manifest is larger than {SERVER_MANIFEST_MAX} bytes");
            }
            facts.data_bytes += text.len() as u64;
            server_manifest = Some(text);
            continue;
        }
        if path == "backup_label" {
            let mut text = String::new();
            (&mut entry).take(LABEL_MAX).read_to_string(&mut text)?;
            let mut h = Sha256::new();
            h.update(text.as_bytes());
            facts.data_bytes += text.len() as u64;
            seen.insert(path, (text.len() as u64, hex::encode(h.finalize())));
            label = Some(text);
            continue;
        }
        let mut h = Sha256::new();
        let mut size = 0u64;
        let mut first = Vec::new();
        loop {
            let n = entry
                .read(&mut buf)
                .with_context(|| format!("reading {path} in the backup stream"))?;
            if n == 0 {
                break;
            }
            if first.len() < 8 {
                first.extend_from_slice(&buf[..n.min(8 - first.len())]);
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        facts.data_bytes += size;
        if path == "global/pg_control" && first.len() == 8 {
            sysid = Some(u64::from_le_bytes(first[..8].try_into().unwrap_or([0; 8])));
        }
        if let Some(name) = path.strip_prefix("pg_wal/") {
            if WalName::parse(name)
                .is_some_and(|w| w.kind == crate::pitr::archive::WalKind::Segment)
            {
                wal.push(name.to_string());
                continue;
            }
        }
        seen.insert(path, (size, hex::encode(h.finalize())));
    }
    // The zero blocks after the last entry go to the compressor too.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .context("reading the end of pg_basebackup's stream")?;

    let label = label.ok_or_else(|| anyhow!("the backup holds no backup_label"))?;
    let server_manifest = server_manifest.ok_or_else(|| {
        anyhow!(
            "the backup stream carries no backup_manifest (pg_basebackup 13 or newer is needed)"
        )
    })?;
    facts.system_identifier =
        sysid.ok_or_else(|| anyhow!("the backup holds no global/pg_control"))?;
    let (start_lsn, timeline) = parse_label(&label)?;
    facts.start_lsn = start_lsn;
    facts.timeline = timeline;
    facts.label = label
        .lines()
        .find_map(|l| l.strip_prefix("LABEL: "))
        .unwrap_or_default()
        .to_string();
    let checked = check_manifest(&server_manifest, &seen)?;
    facts.checked_files = checked.files;
    let (first_range, last_range) = (
        checked.ranges.first().copied(),
        checked.ranges.last().copied(),
    );
    let (Some(first_range), Some(last_range)) = (first_range, last_range) else {
        bail!("backup_manifest has no WAL-Ranges");
    };
    facts.stop_lsn = last_range.2;
    facts.stop_timeline = last_range.0;
    if first_range.1 != start_lsn {
        bail!(
            "backup_label starts at {} but backup_manifest at {}",
            format_lsn(start_lsn),
            format_lsn(first_range.1)
        );
    }
    // The WAL from the start of the backup to its end, held in the tar's pg_wal.
    let mut missing = Vec::new();
    for (tli, start, end) in &checked.ranges {
        for seg in start / segment_size.max(1)..=end_segment(*end, segment_size) {
            let name = segment_name(*tli, seg, segment_size);
            if !wal.contains(&name) {
                missing.push(name);
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "the backup lacks the WAL it needs to be consistent: {}",
            missing.join(", ")
        );
    }
    facts.start_wal = segment_name(timeline, start_lsn / segment_size.max(1), segment_size);
    facts.stop_wal = segment_name(
        facts.stop_timeline,
        end_segment(facts.stop_lsn, segment_size),
        segment_size,
    );
    Ok(facts)
}

/// `START WAL LOCATION: 0/2000028 (file …)` and `START TIMELINE: 1` of a backup_label.
pub fn parse_label(label: &str) -> Result<(u64, u32)> {
    let lsn = label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(parse_lsn)
        .ok_or_else(|| anyhow!("backup_label has no readable START WAL LOCATION"))?;
    let tli = label
        .lines()
        .find_map(|l| l.strip_prefix("START TIMELINE: "))
        .and_then(|t| t.trim().parse::<u32>().ok())
        .ok_or_else(|| anyhow!("backup_label has no readable START TIMELINE"))?;
    Ok((lsn, tli))
}

#[derive(Debug)]
struct Checked {
    files: u64,
    /// (timeline, start, end) of each WAL range.
    ranges: Vec<(u32, u64, u64)>,
}

/// Checks the server's backup_manifest: its own checksum, then every file it lists against
/// what the stream held (size and SHA-256), and nothing held that it does not list.
fn check_manifest(text: &[u8], seen: &BTreeMap<String, (u64, String)>) -> Result<Checked> {
    // Its checksum covers everything up to the newline before the "Manifest-Checksum" line.
    let newlines: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();
    if newlines.len() < 2 {
        bail!("backup_manifest is not a manifest (too short)");
    }
    let covered = &text[..newlines[newlines.len() - 2] + 1];
    let json: serde_json::Value =
        serde_json::from_slice(text).context("backup_manifest is not valid JSON")?;
    let want = json
        .get("Manifest-Checksum")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("backup_manifest has no Manifest-Checksum"))?;
    let got = hex::encode(Sha256::digest(covered));
    if !want.eq_ignore_ascii_case(&got) {
        bail!("backup_manifest's own checksum does not match: the manifest was damaged");
    }
    let files = json
        .get("Files")
        .and_then(|v| v.as_array())
        .ok_or_else(|| anyhow!("backup_manifest has no Files"))?;
    let mut listed = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for f in files {
        let path = match (
            f.get("Path").and_then(|v| v.as_str()),
            f.get("Encoded-Path"),
        ) {
            (Some(p), _) => p.to_string(),
            (None, Some(enc)) => {
                let bytes = enc
                    .as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or_else(|| anyhow!("backup_manifest: unreadable Encoded-Path"))?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => bail!("backup_manifest: a file without a path"),
        };
        let size = f.get("Size").and_then(|v| v.as_u64());
        let algo = f.get("Checksum-Algorithm").and_then(|v| v.as_str());
        let sum = f.get("Checksum").and_then(|v| v.as_str());
        if algo != Some("SHA256") {
            bail!(
                "backup_manifest: {path} has checksum {} (pg_basebackup must run with \
                 --manifest-checksums=SHA256)",
                algo.unwrap_or("none")
            );
        }
        match seen.get(&path) {
            None => problems.push(format!("{path}: in the manifest, not in the backup")),
            Some((s, h)) => {
                if Some(*s) != size {
                    problems.push(format!(
                        "{path}: {s} bytes, the manifest says {}",
                        size.map(|s| s.to_string()).unwrap_or("?".into())
                    ));
                } else if !sum.is_some_and(|m| m.eq_ignore_ascii_case(h)) {
                    problems.push(format!("{path}: SHA-256 differs from the manifest"));
                }
            }
        }
        listed.insert(path);
    }
    for path in seen.keys() {
        if !listed.contains(path) {
            problems.push(format!("{path}: in the backup, not in the manifest"));
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(5);
        bail!(
            "the backup does not match the server's backup_manifest ({n} problem(s)): {}",
            problems.join("; ")
        );
    }
    let mut ranges = Vec::new();
    for r in json
        .get("WAL-Ranges")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let tli = r.get("Timeline").and_then(|v| v.as_u64());
        let start = r
            .get("Start-LSN")
            .and_then(|v| v.as_str())
            .and_then(parse_lsn);
        let end = r
            .get("End-LSN")
            .and_then(|v| v.as_str())
            .and_then(parse_lsn);
        match (tli, start, end) {
            (Some(t), Some(s), Some(e)) if s <= e => ranges.push((t as u32, s, e)),
            _ => bail!("backup_manifest: an unreadable WAL range"),
        }
    }
    Ok(Checked {
        files: listed.len() as u64,
        ranges,
    })
}

/// Where a base backup is written: a file (fsynced at the end), or a multipart upload to a
/// bucket (completed at the end; aborted when dropped unfinished).
pub enum Sink {
    File(std::fs::File),
    Upload(Box<crate::storage::SyncUpload>),
}

impl Sink {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(f) => f.write_all(buf),
            Sink::Upload(u) => u.write_all(buf),
        }
    }

    fn finish(self) -> Result<Option<String>> {
        match self {
            Sink::File(f) => {
                f.sync_all().context("fsync of the base backup")?;
                Ok(None)
            }
            Sink::Upload(u) => Ok(u.finish()?.etag),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the compressed stream: chunks from the reading thread, zstd, hashed, to `sink`.
/// An empty chunk marks the end of a stream read whole; a channel closed without it (the
/// reader failed or was stopped) is an error, and the sink is dropped unfinished (an upload is
/// aborted). Returns the SHA-256 and size of what was written, and for an upload the
/// object's ETag.
pub fn compress_into(
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    sink: Sink,
    level: i32,
) -> Result<(String, u64, Option<String>)> {
    let hashing = crate::backup::HashingWriter::new(io::BufWriter::with_capacity(1 << 20, sink));
    let mut enc = zstd::stream::Encoder::new(hashing, level).context("starting zstd")?;
    let mut whole = false;
    for chunk in chunks {
        if chunk.is_empty() {
            whole = true;
            break;
        }
        enc.write_all(&chunk).context("writing the base backup")?;
    }
    if !whole {
        bail!("the base backup's stream ended before its end: nothing is kept");
    }
    let hashing = enc.finish().context("finishing the zstd stream")?;
    let (buffered, sha, size) = hashing.finish();
    let sink = buffered
        .into_inner()
        .map_err(|e| anyhow!("writing the base backup: {}", e.error()))?;
    let etag = sink.finish()?;
    Ok((sha, size, etag))
}

/// What [`read_back`] does with each tar entry.
pub type EntryFn<'f> = dyn FnMut(&mut tar::Entry<'_, &mut dyn Read>) -> Result<()> + 'f;

/// Reads a base backup back: the compressed file hashed against its manifest, and each tar
/// entry handed to `each` (None to only hash).
pub fn read_back(
    path: &Path,
    manifest: &BaseManifest,
    each: Option<&mut EntryFn<'_>>,
) -> Result<()> {
    let file = crate::backup::open_nofollow(path)?;
    read_back_from(file, &path.display().to_string(), manifest, each)
}

/// [`read_back`] of what `src` reads (`shown` names it in errors): a file, or an object
/// streamed from a bucket.
pub fn read_back_from(
    src: impl Read,
    shown: &str,
    manifest: &BaseManifest,
    mut each: Option<&mut EntryFn<'_>>,
) -> Result<()> {
    let mut hashing = HashingReader {
        inner: src,
        hasher: Sha256::new(),
        read: 0,
    };
    {
        let mut dec =
            zstd::stream::Decoder::new(&mut hashing).with_context(|| format!("reading {shown}"))?;
        let dec_ref: &mut dyn Read = &mut dec;
        let mut archive = tar::Archive::new(dec_ref);
        if let Some(f) = each.as_mut() {
            for entry in archive
                .entries()
                .with_context(|| format!("reading {shown}"))?
            {
                let mut entry = entry.with_context(|| format!("reading {shown}"))?;
                f(&mut entry)?;
            }
        }
        io::copy(&mut archive.into_inner(), &mut io::sink())
            .with_context(|| format!("decompressing {shown}"))?;
    }
    // Whatever follows the zstd frame is read and hashed too.
    io::copy(&mut hashing, &mut io::sink()).with_context(|| format!("reading {shown}"))?;
    let got = hex::encode(hashing.hasher.finalize());
    if hashing.read != manifest.size_bytes || got != manifest.sha256 {
        bail!(
            "{shown}: SHA-256 {got} ({} bytes) differs from the manifest's {} ({} bytes): the \
             file changed after it was written",
            hashing.read,
            manifest.sha256,
            manifest.size_bytes
        );
    }
    Ok(())
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_read_and_print_as_postgresql_does() {
        assert_eq!(parse_lsn("0/2000028"), Some(0x2000028));
        assert_eq!(parse_lsn("1A/FF"), Some((0x1A << 32) | 0xFF));
        assert_eq!(format_lsn(0x1A_0000_00FF), "1A/FF");
        for bad in ["", "0", "/1", "1/", "x/1", "123456789/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
        // An end on a segment boundary belongs to the segment before it.
        assert_eq!(end_segment(0x3000000, 0x1000000), 2);
        assert_eq!(end_segment(0x3000001, 0x1000000), 3);
    }

    #[test]
    fn names_parse_back() {
        let t = DateTime::parse_from_rfc3339("2026-12-06T10:17:26.125Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(file_name(t), "base-20261206T101726.125Z.tar.zst");
        assert_eq!(parse_name(&file_name(t)), Some(t));
        assert_eq!(parse_name("base-20261206T101726Z.tar.zst.partial"), None);
        assert_eq!(parse_name("base-2026.tar.zst"), None);
    }

    fn found(name: &str, end_min: u32, start_seg: u64, good: bool) -> Found {
        let m = BaseManifest {
            kind: KIND.into(),
            engine: "postgresql".into(),
            target: "pg".into(),
            file: name.into(),
            size_bytes: 1,
            sha256: String::new(),
            started_at: Utc::now(),
            finished_at: DateTime::parse_from_rfc3339(&format!("2026-12-06T10:{end_min:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
            status: "success".into(),
            label: String::new(),
            start_lsn: format_lsn(start_seg * 0x1000000 + 0x28),
            stop_lsn: String::new(),
            timeline: 1,
            start_wal: segment_name(1, start_seg, 0x1000000),
            stop_wal: String::new(),
            system_identifier: String::new(),
            wal_segment_size: 0x1000000,
            server_version: String::new(),
            tool: String::new(),
            files: 0,
            data_bytes: 0,
            checked_files: 0,
            etag: None,
            mairie_dba_version: String::new(),
        };
        Found {
            path: PathBuf::from(name),
            manifest: if good { Ok(m) } else { Err("bad".into()) },
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_the_wal_of_the_oldest_kept() {
        let f = vec![
            found("a", 1, 2, true),
            found("b", 2, 5, false),
            found("c", 3, 9, true),
            found("d", 4, 12, true),
        ];
        let p = plan_prune(&f, 2);
        assert_eq!(p.delete, vec!["a"]);
        assert_eq!(p.keep, vec!["c", "d"]);
        assert_eq!(p.wal_before, Some(9));
        // keep 0 still keeps one.
        let p = plan_prune(&f, 0);
        assert_eq!(p.keep, vec!["d"]);
        assert_eq!(p.wal_before, Some(12));
        // No good backup: no WAL is pruned.
        let p = plan_prune(&[found("b", 2, 5, false)], 2);
        assert!(p.delete.is_empty() && p.wal_before.is_none());
    }

    #[test]
    fn a_server_manifest_is_checked_file_by_file_and_by_its_own_checksum() {
        let body = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n\
            { \"Path\": \"a\", \"Size\": 3, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\" }\n],\n\
            \"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n";
        let sum = hex::encode(Sha256::digest(body.as_bytes()));
        let text = format!("{body}\"Manifest-Checksum\": \"{sum}\"}}\n");
        let mut seen = BTreeMap::new();
        seen.insert(
            "a".to_string(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
            ),
        );
        let c = check_manifest(text.as_bytes(), &seen).unwrap();
        assert_eq!(c.files, 1);
        assert_eq!(c.ranges, vec![(1, 0x2000028, 0x2000100)]);
        let damaged = text.replace("0/2000100", "0/2000200");
        let e = check_manifest(damaged.as_bytes(), &seen).unwrap_err();
        assert!(format!("{e}").contains("own checksum"), "{e}");
        let mut other = seen.clone();
        other.insert("b".into(), (1, "00".into()));
        let e = check_manifest(text.as_bytes(), &other).unwrap_err();
        assert!(
            format!("{e}").contains("b: in the backup, not in the manifest"),
            "{e}"
        );
        let mut changed = seen.clone();
        changed.insert("a".into(), (3, "00".into()));
        let e = check_manifest(text.as_bytes(), &changed).unwrap_err();
        assert!(format!("{e}").contains("a: SHA-256 differs"), "{e}");
    }
}
