//! `wal fetch`: one file out of the archive, checked before PostgreSQL sees it.
//!
//! The archived file is decompressed into a hidden temporary file beside the destination
//! while its bytes are hashed; only when the SHA-256 matches the one in the archived name is
//! the temporary file fsynced and renamed to the destination. PostgreSQL reads "not found"
//! as the end of the archive, so anything else that goes wrong (a corrupt file, two versions,
//! an unreadable archive) is a [`FetchError::Abort`], which the command turns into an exit
//! status that stops recovery.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use sha2::{Digest, Sha256};

use super::archive::{self, Archived, WalName};
use crate::backup::{create_private, sync_dir};

#[derive(Debug)]
pub enum FetchError {
    /// The file is not in the archive: the end of the WAL, for PostgreSQL.
    NotFound(String),
    /// The archive cannot be trusted or read: recovery must stop.
    Abort(anyhow::Error),
}

impl From<anyhow::Error> for FetchError {
    fn from(e: anyhow::Error) -> Self {
        FetchError::Abort(e)
    }
}

/// What a fetch handed over.
#[derive(Debug)]
pub struct Fetched {
    pub source: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// Finds the one published version of `name`; none is `NotFound`, two are an abort.
pub fn locate(archive_dir: &Path, name: &WalName) -> Result<Archived, FetchError> {
    let wal = archive_dir.join(archive::WAL_DIR);
    // A missing archive is not the end of the WAL: an unmounted disk must not end recovery.
    match fs::metadata(&wal) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(anyhow!("{} is not a directory", wal.display()).into()),
        Err(e) => {
            return Err(anyhow!(
                "the archive {} cannot be read: {e} (is it mounted?)",
                wal.display()
            )
            .into())
        }
    }
    let mut versions = archive::versions(&wal.join(name.subdir()), name)?;
    match versions.len() {
        0 => Err(FetchError::NotFound(format!(
            "{} is not in the archive {}",
            name.name,
            archive_dir.display()
        ))),
        1 => Ok(versions.remove(0)),
        _ => Err(anyhow!(
            "{} is archived twice with different contents ({}): the archive cannot be trusted",
            name.name,
            versions
                .iter()
                .map(|v| v.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
}

/// Decompresses an archived file into `out`, returning the SHA-256 and size of what came out.
/// Reads through a fixed buffer: memory does not grow with the file.
pub fn decompress_hashing(
    source: &Path,
    out: &mut (impl Write + ?Sized),
) -> anyhow::Result<(String, u64)> {
    let f = fs::File::open(source).with_context(|| format!("opening {}", source.display()))?;
    decompress_reader(f, &source.display().to_string(), out)
}

/// [`decompress_hashing`] of what `src` reads (`shown` names it in errors).
pub(crate) fn decompress_reader(
    src: impl Read,
    shown: &str,
    out: &mut (impl Write + ?Sized),
) -> anyhow::Result<(String, u64)> {
    let mut dec =
        zstd::stream::read::Decoder::new(src).with_context(|| format!("reading {shown}"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(anyhow!(
                    "{shown}: not a valid zstd stream ({e}): the file is corrupt"
                ))
            }
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).context("writing")?;
        total += n as u64;
    }
    Ok((hex::encode(h.finalize()), total))
}

/// Fetches `name` into `dest` (relative to the current directory, as PostgreSQL passes `%p`).
pub fn fetch(archive_dir: &Path, name: &WalName, dest: &Path) -> Result<Fetched, FetchError> {
    let found = locate(archive_dir, name)?;
    let shown = found.path.display().to_string();
    let (sha256, bytes) = write_verified(dest, &shown, &found.sha256, |out| {
        decompress_hashing(&found.path, out).with_context(|| format!("fetching {}", name.name))
    })
    .map_err(FetchError::Abort)?;
    Ok(Fetched {
        source: found.path.clone(),
        sha256,
        bytes,
    })
}

/// Writes `dest` atomically with what `fill` writes (returning the SHA-256 and size of it):
/// into a hidden temporary file beside it, published by a rename only when the SHA-256 is
/// `expected` (`shown` names the archived file in the error). On any error, `dest` is left
/// as it was and the temporary file removed.
pub(crate) fn write_verified(
    dest: &Path,
    shown: &str,
    expected: &str,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<(String, u64)>,
) -> anyhow::Result<(String, u64)> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dest_name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{}: not a file path", dest.display()))?;
    let tmp = dir.join(format!(".{dest_name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let res = (|| -> anyhow::Result<(String, u64)> {
        let mut out = io::BufWriter::with_capacity(1 << 20, create_private(&tmp)?);
        let (sha256, bytes) = fill(&mut out)?;
        if sha256 != expected {
            return Err(anyhow!(
                "{shown}: decompresses to SHA-256 {sha256}, its name says {expected}: the file \
                 is corrupt"
            ));
        }
        let f = out
            .into_inner()
            .map_err(|e| anyhow!("writing {}: {}", tmp.display(), e.error()))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
        sync_dir(dir)?;
        Ok((sha256, bytes))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
