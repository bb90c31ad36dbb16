//! `wal push`: one WAL file into the archive, durably, never overwriting.
//!
//! The file is read once: each block is compressed (zstd, with the frame checksum) into a
//! hidden temporary file while another thread hashes it (SHA-256). The temporary file is
//! fsynced, then published under `<name>-<sha256>.zst` by a rename that refuses to replace
//! (`renameat2(RENAME_NOREPLACE)`, or `link(2)` where the filesystem lacks it), and the
//! directory is fsynced. A process killed half-way leaves only its hidden temporary file,
//! which the next push of the same name removes.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::archive::{self, ArchiveInfo, WalKind, WalName};
use crate::backup::{create_private, open_nofollow, sync_dir};

/// What a push did.
#[derive(Debug)]
pub enum Pushed {
    /// A new file in the archive.
    Archived {
        path: PathBuf,
        sha256: String,
        bytes: u64,
        compressed: u64,
    },
    /// The same content was already there: nothing written.
    AlreadyArchived { path: PathBuf },
}

pub(crate) const BLOCK: usize = 1 << 20;

/// A WAL file to archive, opened: its name, the file, its size and its first block (which
/// tells which cluster a segment comes from).
pub(super) struct WalSource {
    pub name: WalName,
    pub src: File,
    pub size: u64,
    pub first: Vec<u8>,
}

/// Opens the WAL file at `wal_path` (a regular file named like a WAL file, never through a
/// symbolic link) and reads its first block.
pub(super) fn open_wal(wal_path: &Path) -> Result<WalSource> {
    let file_name = wal_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(name) = WalName::parse(file_name) else {
        bail!(
            "{}: not a WAL file name (a segment, .partial, .backup or .history file)",
            wal_path.display()
        );
    };
    let mut src = open_nofollow(wal_path)?;
    let meta = src
        .metadata()
        .with_context(|| format!("reading {}", wal_path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", wal_path.display());
    }
    let size = meta.len();
    let mut first = vec![0u8; BLOCK.min(size as usize).max(1)];
    let n = read_full(&mut src, &mut first)
        .with_context(|| format!("reading {}", wal_path.display()))?;
    first.truncate(n);
    Ok(WalSource {
        name,
        src,
        size,
        first,
    })
}

/// Archives the WAL file at `wal_path` (relative to the current directory, as PostgreSQL
/// passes `%p`) into `archive_dir`.
pub fn push(archive_dir: &Path, level: i32, wal_path: &Path) -> Result<Pushed> {
    let WalSource {
        name,
        mut src,
        size,
        first,
    } = open_wal(wal_path)?;
    // Checked against the archive before anything is written.
    if matches!(name.kind, WalKind::Segment | WalKind::Partial) {
        check_segment(archive_dir, &name, &first, size)?;
    }

    let wal_dir = archive_dir.join(archive::WAL_DIR);
    let dir = wal_dir.join(name.subdir());
    ensure_dir(archive_dir)?;
    ensure_dir(&wal_dir)?;
    ensure_dir(&dir)?;
    remove_dead_temporaries(&dir, &name);

    let tmp = dir.join(archive::temp_name(&name, std::process::id()));
    let res = write_compressed(&tmp, level, size, first, &mut src, wal_path);
    let (sha256, compressed) = match res {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let finish = || -> Result<Pushed> {
        let existing = archive::versions(&dir, &name)?;
        if let Some(same) = existing.iter().find(|a| a.sha256 == sha256) {
            return Ok(Pushed::AlreadyArchived {
                path: same.path.clone(),
            });
        }
        if let Some(other) = existing.first() {
            return Err(different_content(
                &name,
                &other.path.display().to_string(),
                &sha256,
                &archive_dir.display().to_string(),
            ));
        }
        let path = dir.join(archive::archived_name(&name, &sha256));
        match rename_noreplace(&tmp, &path) {
            Ok(()) => {}
            // The same name means the same content: another push of this file won the race.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(Pushed::AlreadyArchived { path });
            }
            Err(e) => return Err(e).with_context(|| format!("publishing {}", path.display())),
        }
        sync_dir(&dir)?;
        Ok(Pushed::Archived {
            path,
            sha256: sha256.clone(),
            bytes: size,
            compressed,
        })
    };
    let res = finish();
    // After a publish the temporary name is gone; otherwise it must not stay behind.
    let _ = fs::remove_file(&tmp);
    res
}

/// A segment must come from the cluster the archive belongs to and have its segment size;
/// the first segment pushed records both in `archive.json`.
fn check_segment(archive_dir: &Path, name: &WalName, first: &[u8], size: u64) -> Result<()> {
    let mine = segment_info(name, first, size)?;
    let info = match ArchiveInfo::read(archive_dir)? {
        Some(info) => info,
        None => {
            ensure_dir(archive_dir)?;
            write_info(archive_dir, &mine)?;
            ArchiveInfo::read(archive_dir)?.unwrap_or(mine.clone())
        }
    };
    same_cluster(name, &archive_dir.display().to_string(), &info, &mine)
}

/// What a segment's first page says of its cluster, as `archive.json` records it, once the
/// header is checked against the file's name and size.
pub(crate) fn segment_info(name: &WalName, first: &[u8], size: u64) -> Result<ArchiveInfo> {
    let header = archive::segment_header(first).ok_or_else(|| {
        anyhow!(
            "{}: no WAL long page header at the start of the file: not a WAL segment",
            name.name
        )
    })?;
    if name.kind == WalKind::Segment && size != header.segment_size as u64 {
        bail!(
            "{}: {size} bytes, but its header says segments are {} bytes: an incomplete segment",
            name.name,
            header.segment_size
        );
    }
    if header.timeline != name.timeline() {
        bail!(
            "{}: its header says timeline {}, its name timeline {}",
            name.name,
            header.timeline,
            name.timeline()
        );
    }
    Ok(ArchiveInfo {
        format: 1,
        system_identifier: header.system_identifier.to_string(),
        wal_segment_size: header.segment_size as u64,
    })
}

/// Refuses a segment (`mine`) of another cluster or segment size than the archive's.
pub(crate) fn same_cluster(
    name: &WalName,
    archive: &str,
    info: &ArchiveInfo,
    mine: &ArchiveInfo,
) -> Result<()> {
    if info.system_identifier != mine.system_identifier {
        bail!(
            "{}: the archive {archive} belongs to the cluster with system identifier {}, this \
             segment to {}: refusing to mix two clusters in one archive",
            name.name,
            info.system_identifier,
            mine.system_identifier
        );
    }
    if info.wal_segment_size != mine.wal_segment_size {
        bail!(
            "{}: segments of {} bytes, the archive holds segments of {}",
            name.name,
            mine.wal_segment_size,
            info.wal_segment_size
        );
    }
    Ok(())
}

/// The refusal of a file archived already with another content (`other` names it).
pub(crate) fn different_content(
    name: &WalName,
    other: &str,
    sha256: &str,
    archive: &str,
) -> anyhow::Error {
    anyhow!(
        "{} is already archived with different content ({other}; this one has SHA-256 \
         {sha256}): refusing to overwrite it. Two clusters may be archiving into {archive}, or \
         the file was changed after it was archived",
        name.name
    )
}

/// Writes `archive.json` once: a concurrent first push may win, and its file stays.
fn write_info(archive_dir: &Path, info: &ArchiveInfo) -> Result<()> {
    let path = archive_dir.join(archive::INFO_FILE);
    let tmp = archive_dir.join(format!(
        ".{}.{}.tmp",
        archive::INFO_FILE,
        std::process::id()
    ));
    let res = (|| -> Result<()> {
        let mut f = create_private(&tmp)?;
        let mut text = serde_json::to_vec_pretty(info)?;
        text.push(b'\n');
        f.write_all(&text)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        match rename_noreplace(&tmp, &path) {
            Ok(()) => sync_dir(archive_dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).with_context(|| format!("publishing {}", path.display())),
        }
    })();
    let _ = fs::remove_file(&tmp);
    res
}

/// Compresses `first` and the rest of `src` into a new 0600 file `tmp` while hashing the
/// original bytes on another thread; fsyncs it. Returns the hex SHA-256 and compressed size.
fn write_compressed(
    tmp: &Path,
    level: i32,
    size: u64,
    first: Vec<u8>,
    src: &mut File,
    wal_path: &Path,
) -> Result<(String, u64)> {
    let out = create_private(tmp)?;
    let (tx, rx) = mpsc::sync_channel::<std::sync::Arc<Vec<u8>>>(4);
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            for block in rx {
                h.update(&block[..]);
            }
            hex::encode(h.finalize())
        });
        let compress = || -> Result<u64> {
            let mut enc = zstd::stream::write::Encoder::new(out, level)
                .context("starting the zstd compressor")?;
            enc.include_checksum(true)
                .and_then(|_| enc.set_pledged_src_size(Some(size)))
                .context("setting up the zstd compressor")?;
            let mut block = std::sync::Arc::new(first);
            let mut total = 0u64;
            loop {
                if block.is_empty() {
                    break;
                }
                total += block.len() as u64;
                enc.write_all(&block)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                tx.send(block.clone())
                    .map_err(|_| anyhow!("the hashing thread stopped"))?;
                let mut next = vec![0u8; BLOCK];
                let n = read_full(src, &mut next)
                    .with_context(|| format!("reading {}", wal_path.display()))?;
                next.truncate(n);
                block = std::sync::Arc::new(next);
            }
            if total != size {
                bail!(
                    "{}: read {total} bytes, expected {size}: the file changed while being archived",
                    wal_path.display()
                );
            }
            let f = enc
                .finish()
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.sync_all()
                .with_context(|| format!("fsync {}", tmp.display()))?;
            let len = f
                .metadata()
                .with_context(|| format!("reading {}", tmp.display()))?
                .len();
            Ok(len)
        };
        let res = compress();
        drop(tx);
        let sha = hasher
            .join()
            .map_err(|_| anyhow!("the hashing thread panicked"))?;
        res.map(|len| (sha, len))
    })
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub(crate) fn read_full(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Creates a directory of the archive (owner-only) if missing, and makes its entry durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(parent)
}

/// Removes the temporary files of earlier pushes of `name` whose process is gone (killed
/// half-way); a push still running keeps its own.
fn remove_dead_temporaries(dir: &Path, name: &WalName) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{}.", name.name);
    for entry in rd.flatten() {
        let file_name = entry.file_name();
        let Some(s) = file_name.to_str() else {
            continue;
        };
        let Some(pid) = s
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone || pid as u32 == std::process::id() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`): `renameat2` with
/// `RENAME_NOREPLACE`, or, on filesystems without it, `link(2)` then unlink.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths; AT_FDCWD resolves them like rename(2).
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            let _ = fs::remove_file(from);
            Ok(())
        }
        _ => Err(err),
    }
}
