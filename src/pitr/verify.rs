//! `pitr verify`, the WAL half: read the whole archive back, check every file against the
//! SHA-256 in its name, and find the gaps in each timeline.
//!
//! Files are decompressed and hashed on a few threads, each through a fixed buffer, so
//! memory does not grow with the archive. Continuity is judged per timeline, from the first
//! archived segment to the last, with the segment size from `archive.json` (written by the
//! first push from the segment's own header), else PostgreSQL's default of 16 MiB.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;
use serde::Serialize;

use std::io::Read;

use super::archive::{self, Archived, WalKind};
use super::bucket::WalLoc;
use super::fetch::decompress_reader;

/// A run of missing segments in a timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// The first missing segment.
    pub from: String,
    /// The last missing segment.
    pub to: String,
    pub missing: u64,
}

/// One timeline of the archive.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub timeline: u32,
    /// From the timeline's history file: the timeline it branched from, and where.
    pub parent: Option<u32>,
    pub switch_lsn: Option<String>,
    pub segments: usize,
    pub first: Option<String>,
    pub last: Option<String>,
    /// The end of the unbroken run that starts at `first`: one can replay up to here.
    pub continuous_to: Option<String>,
    pub gaps: Vec<Gap>,
    pub partial: Vec<String>,
    pub backup_labels: Vec<String>,
    /// The segment numbers archived.
    #[serde(skip)]
    pub numbers: BTreeSet<u64>,
}

/// A file whose content does not match its name.
#[derive(Debug, Clone, Serialize)]
pub struct Corrupt {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalVerify {
    pub archive_dir: String,
    pub wal_segment_size: u64,
    /// `archive.json`, or `default` when the archive has none yet.
    pub segment_size_from: &'static str,
    pub system_identifier: Option<String>,
    pub files: usize,
    pub compressed_bytes: u64,
    pub timelines: Vec<Timeline>,
    pub corrupt: Vec<Corrupt>,
    /// Names archived more than once with different contents.
    pub duplicates: Vec<String>,
    /// Unfinished pushes (hidden temporary files) and files that are not ours.
    pub temporary: Vec<String>,
    pub stray: Vec<String>,
}

impl WalVerify {
    /// Gaps, corruption or duplicates: the archive cannot be trusted in full.
    pub fn failed(&self) -> bool {
        !self.corrupt.is_empty()
            || !self.duplicates.is_empty()
            || self.timelines.iter().any(|t| !t.gaps.is_empty())
    }
}

/// Reads and checks the archive at `archive_dir`.
pub fn verify(archive_dir: &Path) -> Result<WalVerify> {
    verify_at(&WalLoc::Dir(archive_dir.to_path_buf()), true)
}

/// [`verify`], or with `hash` false only the listing: timelines and gaps, no file read.
pub fn verify_with(archive_dir: &Path, hash: bool) -> Result<WalVerify> {
    verify_at(&WalLoc::Dir(archive_dir.to_path_buf()), hash)
}

/// [`verify_with`] of an archive in a directory or a bucket. A directory that is not there
/// is not an empty archive (an unmounted disk, a wrong path): an error.
pub fn verify_at(loc: &WalLoc, hash: bool) -> Result<WalVerify> {
    let (listing, listed_bytes) = loc.list()?;
    let info = loc.info()?;
    let (seg_size, from) = match &info {
        Some(i) => (i.wal_segment_size, "archive.json"),
        None => (archive::DEFAULT_SEGMENT_SIZE, "default"),
    };
    let corrupt = if hash {
        hash_all(loc, &listing.files)
    } else {
        Vec::new()
    };

    let mut duplicates = BTreeSet::new();
    let mut timelines: BTreeMap<u32, Vec<&Archived>> = BTreeMap::new();
    let mut histories: BTreeMap<u32, &Archived> = BTreeMap::new();
    for pair in listing.files.windows(2) {
        if pair[0].wal == pair[1].wal {
            duplicates.insert(pair[0].wal.name.clone());
        }
    }
    for f in &listing.files {
        if f.wal.kind == WalKind::History {
            histories.insert(f.wal.timeline(), f);
        }
        timelines.entry(f.wal.timeline()).or_default().push(f);
    }
    let corrupt_paths: BTreeSet<&str> = corrupt.iter().map(|c| c.file.as_str()).collect();

    let mut out = Vec::new();
    for (tli, files) in timelines {
        let mut t = Timeline {
            timeline: tli,
            parent: None,
            switch_lsn: None,
            segments: 0,
            first: None,
            last: None,
            continuous_to: None,
            gaps: Vec::new(),
            partial: Vec::new(),
            backup_labels: Vec::new(),
            numbers: BTreeSet::new(),
        };
        if let Some(h) = histories.get(&tli) {
            if !corrupt_paths.contains(loc.shown_of(h).as_str()) {
                if let Some((parent, lsn)) = read_history(loc, h) {
                    t.parent = Some(parent);
                    t.switch_lsn = Some(lsn);
                }
            }
        }
        let mut numbers = BTreeSet::new();
        for f in files {
            match f.wal.kind {
                WalKind::Segment => {
                    if let Some((log, seg)) = f.wal.log_seg() {
                        numbers.insert(archive::segment_number(log, seg, seg_size));
                    }
                }
                WalKind::Partial => t.partial.push(f.wal.name.clone()),
                WalKind::Backup => t.backup_labels.push(f.wal.name.clone()),
                WalKind::History => {}
            }
        }
        t.segments = numbers.len();
        let name = |n: u64| archive::segment_name(tli, n, seg_size);
        if let (Some(&first), Some(&last)) = (numbers.first(), numbers.last()) {
            t.first = Some(name(first));
            t.last = Some(name(last));
            let mut prev = first;
            for &n in numbers.iter().skip(1) {
                if n != prev + 1 {
                    t.gaps.push(Gap {
                        from: name(prev + 1),
                        to: name(n - 1),
                        missing: n - prev - 1,
                    });
                }
                prev = n;
            }
            let end = t
                .gaps
                .first()
                .map(|g| {
                    archive::WalName::parse(&g.from)
                        .and_then(|w| w.log_seg())
                        .map(|(l, s)| archive::segment_number(l, s, seg_size) - 1)
                        .unwrap_or(last)
                })
                .unwrap_or(last);
            t.continuous_to = Some(name(end));
        }
        t.numbers = numbers;
        out.push(t);
    }
    Ok(WalVerify {
        archive_dir: loc.shown(),
        wal_segment_size: seg_size,
        segment_size_from: from,
        system_identifier: info.map(|i| i.system_identifier),
        files: listing.files.len(),
        compressed_bytes: listed_bytes.unwrap_or_else(|| {
            listing
                .files
                .iter()
                .filter_map(|f| std::fs::metadata(&f.path).ok())
                .map(|m| m.len())
                .sum()
        }),
        timelines: out,
        corrupt,
        duplicates: duplicates.into_iter().collect(),
        temporary: display(&listing.temporary),
        stray: display(&listing.stray),
    })
}

fn display(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

/// Decompresses and hashes every file on a few threads; returns those that do not match.
fn hash_all(loc: &WalLoc, files: &[Archived]) -> Vec<Corrupt> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let next = AtomicUsize::new(0);
    let bad = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = files.get(i) else { break };
                let shown = loc.shown_of(f);
                let read = loc
                    .open(f)
                    .and_then(|r| decompress_reader(r, &shown, &mut std::io::sink()));
                let reason = match read {
                    Ok((sha, _)) if sha == f.sha256 => None,
                    Ok((sha, _)) => Some(format!(
                        "decompresses to SHA-256 {sha}, its name says {}",
                        f.sha256
                    )),
                    Err(e) => Some(format!("{e:#}")),
                };
                if let Some(reason) = reason {
                    if let Ok(mut b) = bad.lock() {
                        b.push(Corrupt {
                            file: shown,
                            reason,
                        });
                    }
                }
            });
        }
    });
    let mut bad = bad.into_inner().unwrap_or_default();
    bad.sort_by(|a, b| a.file.cmp(&b.file));
    bad
}

/// The last line of a history file: `<parent timeline>\t<switch LSN>\t<reason>`.
fn read_history(loc: &WalLoc, f: &Archived) -> Option<(u32, String)> {
    let mut text = Vec::new();
    let src = loc.open(f).ok()?;
    decompress_reader(src.take(1 << 20), &loc.shown_of(f), &mut text).ok()?;
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .rfind(|l| !l.trim().is_empty() && !l.starts_with('#'))?;
    let mut parts = line.split_whitespace();
    let parent = parts.next()?.parse().ok()?;
    let lsn = parts.next()?.to_string();
    Some((parent, lsn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Publishes `bytes` under `name` the way `wal push` names files (no header checks).
    fn put(archive: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let w = archive::WalName::parse(name).unwrap();
        let dir = archive.join(archive::WAL_DIR).join(w.subdir());
        std::fs::create_dir_all(&dir).unwrap();
        let sha = hex::encode(Sha256::digest(bytes));
        let path = dir.join(archive::archived_name(&w, &sha));
        std::fs::write(&path, zstd::encode_all(bytes, 1).unwrap()).unwrap();
        path
    }

    #[test]
    fn timelines_gaps_duplicates_and_history() {
        let d = std::env::temp_dir().join(format!("mairie-dba-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for s in [1u32, 2, 3, 6, 7] {
            put(&d, &format!("0000000100000000{s:08X}"), &[s as u8; 100]);
        }
        put(&d, "000000010000000000000007.partial", b"p");
        put(&d, "000000020000000000000007", b"tl2 a");
        put(&d, "000000020000000000000008", b"tl2 b");
        put(
            &d,
            "000000020000000000000008",
            b"tl2 b, again but different",
        );
        put(
            &d,
            "00000002.history",
            b"1\t0/70000A0\tno recovery target specified\n",
        );
        std::fs::write(
            d.join("wal/0000000100000000/.000000010000000000000009.42.tmp"),
            b"x",
        )
        .unwrap();
        let v = verify(&d).unwrap();
        assert_eq!(v.segment_size_from, "default");
        let t1 = &v.timelines[0];
        assert_eq!(t1.gaps.len(), 1);
        assert_eq!(
            (
                t1.gaps[0].from.as_str(),
                t1.gaps[0].to.as_str(),
                t1.gaps[0].missing
            ),
            ("000000010000000000000004", "000000010000000000000005", 2)
        );
        assert_eq!(
            t1.continuous_to.as_deref(),
            Some("000000010000000000000003")
        );
        assert_eq!(t1.partial, ["000000010000000000000007.partial"]);
        let t2 = &v.timelines[1];
        assert_eq!(
            (t2.parent, t2.switch_lsn.as_deref()),
            (Some(1), Some("0/70000A0"))
        );
        assert_eq!(v.duplicates, ["000000020000000000000008"]);
        assert_eq!(v.temporary.len(), 1);
        assert!(v.corrupt.is_empty() && v.failed());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
