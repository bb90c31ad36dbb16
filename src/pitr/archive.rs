//! The WAL archive on disk: which names PostgreSQL hands us, where each file goes, and how a
//! directory listing reads back as archived files.
//!
//! Layout (format 1), under a target's `archive_dir`:
//!
//! ```text
//! archive.json                                   system identifier and segment size
//! wal/<TTTTTTTTLLLLLLLL>/<name>-<sha256>.zst     segments, .partial and .backup files
//! wal/history/<TTTTTTTT>.history-<sha256>.zst    timeline history files
//! ```
//!
//! `<TTTTTTTTLLLLLLLL>` is the first 16 characters of the WAL file name (timeline and log
//! number: 256 segments of 16 MiB a directory). The SHA-256 is that of the original,
//! uncompressed bytes, so the name alone says what the file must decompress to, and a single
//! rename publishes a file together with its checksum. Files being written are hidden
//! (`.<name>.<pid>.tmp`) and never match a published name.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The compressed files' extension.
pub const EXT: &str = ".zst";
/// The directory, under `archive_dir`, that holds the WAL.
pub const WAL_DIR: &str = "wal";
/// The directory, under `wal/`, of the timeline history files.
pub const HISTORY_DIR: &str = "history";
/// The archive's description, written by the first push.
pub const INFO_FILE: &str = "archive.json";
/// The segment size when the archive does not say (PostgreSQL's default, 16 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// What kind of file PostgreSQL asks us to archive or fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WalKind {
    /// `000000010000000A000000FF`
    Segment,
    /// `000000010000000A000000FF.partial`: the last segment of a timeline left at promotion
    Partial,
    /// `000000010000000A000000FF.00000028.backup`: a base backup's label
    Backup,
    /// `00000002.history`: a timeline's history
    History,
}

/// A validated WAL file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalName {
    pub name: String,
    pub kind: WalKind,
}

fn upper_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

impl WalName {
    /// Accepts exactly the names PostgreSQL gives WAL files (upper-case hexadecimal, as the
    /// server writes them); anything else, a path in particular, is refused.
    pub fn parse(name: &str) -> Option<WalName> {
        let kind = if upper_hex(name, 24) {
            WalKind::Segment
        } else if let Some(seg) = name.strip_suffix(".partial") {
            if !upper_hex(seg, 24) {
                return None;
            }
            WalKind::Partial
        } else if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, offset) = rest.split_once('.')?;
            if !upper_hex(seg, 24) || !upper_hex(offset, 8) {
                return None;
            }
            WalKind::Backup
        } else if let Some(tli) = name.strip_suffix(".history") {
            if !upper_hex(tli, 8) {
                return None;
            }
            WalKind::History
        } else {
            return None;
        };
        Some(WalName {
            name: name.to_string(),
            kind,
        })
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        u32::from_str_radix(&self.name[..8], 16).unwrap_or(0)
    }

    /// For segments, partial segments and backup labels: the log and segment numbers.
    pub fn log_seg(&self) -> Option<(u32, u32)> {
        if self.kind == WalKind::History {
            return None;
        }
        let log = u32::from_str_radix(&self.name[8..16], 16).ok()?;
        let seg = u32::from_str_radix(&self.name[16..24], 16).ok()?;
        Some((log, seg))
    }

    /// The directory, relative to `<archive_dir>/wal`, this file is archived in.
    pub fn subdir(&self) -> &str {
        match self.kind {
            WalKind::History => HISTORY_DIR,
            _ => &self.name[..16],
        }
    }
}

/// A segment's position in the WAL: `log * segments_per_log + seg`.
pub fn segment_number(log: u32, seg: u32, segment_size: u64) -> u64 {
    let per_log = 0x1_0000_0000u64 / segment_size.max(1);
    log as u64 * per_log + seg as u64
}

/// The name of the segment at `number` on `timeline`.
pub fn segment_name(timeline: u32, number: u64, segment_size: u64) -> String {
    let per_log = 0x1_0000_0000u64 / segment_size.max(1);
    format!(
        "{timeline:08X}{:08X}{:08X}",
        number / per_log,
        number % per_log
    )
}

/// One published file of the archive: `<name>-<sha256>.zst`.
#[derive(Debug, Clone)]
pub struct Archived {
    pub wal: WalName,
    /// The SHA-256 of the uncompressed file, from the archived file's name.
    pub sha256: String,
    pub path: PathBuf,
}

/// Reads a published file name back; None for anything else (temporary files included).
pub fn parse_archived(file_name: &str) -> Option<(WalName, String)> {
    let stem = file_name.strip_suffix(EXT)?;
    let (name, hash) = stem.rsplit_once('-')?;
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((WalName::parse(name)?, hash.to_string()))
}

/// The published file name of `name` with the hash `sha256`.
pub fn archived_name(name: &WalName, sha256: &str) -> String {
    format!("{}-{sha256}{EXT}", name.name)
}

/// The hidden name a push writes to before it publishes.
pub fn temp_name(name: &WalName, pid: u32) -> String {
    format!(".{}.{pid}.tmp", name.name)
}

/// The versions of `name` published in `dir` (normally none or one; two different ones mean
/// the archive was written by two clusters or tampered with). A missing directory is none.
pub fn versions(dir: &Path, name: &WalName) -> Result<Vec<Archived>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let prefix = format!("{}-", name.name);
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if !file_name.starts_with(&prefix) {
            continue;
        }
        if let Some((wal, sha256)) = parse_archived(file_name) {
            if wal == *name {
                out.push(Archived {
                    wal,
                    sha256,
                    path: entry.path(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    Ok(out)
}

/// Everything found under `<archive_dir>/wal`: the published files, and the names that are not
/// ours (stray files) or are unfinished pushes (temporary files).
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<Archived>,
    pub temporary: Vec<PathBuf>,
    pub stray: Vec<PathBuf>,
}

/// Lists the whole archive. A missing `wal/` directory is an empty archive.
pub fn list(archive_dir: &Path) -> Result<Listing> {
    let wal = archive_dir.join(WAL_DIR);
    let mut out = Listing::default();
    let rd = match fs::read_dir(&wal) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", wal.display())),
    };
    let mut dirs = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", wal.display()))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            dirs.push(entry.path());
        } else {
            out.stray.push(entry.path());
        }
    }
    dirs.sort();
    for dir in dirs {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            match parse_archived(&name) {
                Some((wal, sha256))
                    if dir.file_name().and_then(|n| n.to_str()) == Some(wal.subdir()) =>
                {
                    out.files.push(Archived { wal, sha256, path })
                }
                _ if name.starts_with('.') && name.ends_with(".tmp") => out.temporary.push(path),
                _ => out.stray.push(path),
            }
        }
    }
    out.files.sort_by(|a, b| a.wal.name.cmp(&b.wal.name));
    Ok(out)
}

/// `archive.json`: which cluster the archive belongs to and its segment size, read from the
/// first segment pushed. Pushes from another cluster are refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub format: u32,
    /// The cluster's system identifier (`pg_controldata`), as a decimal string.
    pub system_identifier: String,
    pub wal_segment_size: u64,
}

impl ArchiveInfo {
    pub fn read(archive_dir: &Path) -> Result<Option<ArchiveInfo>> {
        let path = archive_dir.join(INFO_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// What the first page of a segment says about its cluster (the long page header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub timeline: u32,
    pub system_identifier: u64,
    pub segment_size: u32,
}

/// Reads the long page header that opens every WAL segment: xlp_magic (2 bytes), xlp_info
/// (2), xlp_tli (4), xlp_pageaddr (8), xlp_rem_len (4), padding to 24, then xlp_sysid (8),
/// xlp_seg_size (4), xlp_xlog_blcksz (4). Little-endian, as on every platform we run on.
pub fn segment_header(first: &[u8]) -> Option<SegmentHeader> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    if first.len() < 40 {
        return None;
    }
    let u16_at = |i: usize| u16::from_le_bytes([first[i], first[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(first[i..i + 4].try_into().unwrap_or([0; 4]));
    let info = u16_at(2);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let segment_size = u32_at(32);
    let block = u32_at(36);
    let sysid = u64::from_le_bytes(first[24..32].try_into().unwrap_or([0; 8]));
    // Sizes PostgreSQL allows: powers of two, segments 1 MiB to 1 GiB, pages 1 to 32 KiB.
    let sane = segment_size.is_power_of_two()
        && (1 << 20..=1 << 30).contains(&segment_size)
        && block.is_power_of_two()
        && (1024..=32768).contains(&block);
    sane.then_some(SegmentHeader {
        timeline: u32_at(4),
        system_identifier: sysid,
        segment_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_strict() {
        for (n, k) in [
            ("000000010000000A000000FF", WalKind::Segment),
            ("000000010000000A000000FF.partial", WalKind::Partial),
            ("000000010000000A000000FF.00000028.backup", WalKind::Backup),
            ("00000002.history", WalKind::History),
        ] {
            assert_eq!(WalName::parse(n).map(|w| w.kind), Some(k), "{n}");
        }
        for n in [
            "000000010000000a000000ff",
            "00000001000000000000001",
            "../000000010000000000000001",
            "000000010000000000000001.history",
            "00000002.partial",
            "000000010000000000000001.0000002.backup",
            "RECOVERYXLOG",
            "",
        ] {
            assert!(WalName::parse(n).is_none(), "{n}");
        }
        let w = WalName::parse("000000020000000A000000FF").unwrap();
        assert_eq!(w.timeline(), 2);
        assert_eq!(w.log_seg(), Some((10, 255)));
        assert_eq!(w.subdir(), "000000020000000A");
        assert_eq!(
            WalName::parse("00000002.history").unwrap().subdir(),
            "history"
        );
    }

    #[test]
    fn archived_names_round_trip_and_numbers() {
        let w = WalName::parse("000000010000000000000003.partial").unwrap();
        let h = "ab".repeat(32);
        let f = archived_name(&w, &h);
        assert_eq!(parse_archived(&f), Some((w.clone(), h)));
        assert!(parse_archived(&temp_name(&w, 12)).is_none());
        let n = segment_number(1, 0, DEFAULT_SEGMENT_SIZE);
        assert_eq!(n, 256);
        assert_eq!(
            segment_name(3, n - 1, DEFAULT_SEGMENT_SIZE),
            "0000000300000000000000FF"
        );
    }
}
