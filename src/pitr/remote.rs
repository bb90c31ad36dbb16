//! The WAL archive in a bucket: a `pitr.<target>.archive_dir` of `s3://bucket/prefix`.
//!
//! The same layout and format as on disk (see `archive`), as keys under the prefix:
//! `archive.json`, `wal/<TTTTTTTTLLLLLLLL>/<name>-<sha256>.zst`,
//! `wal/history/<TTTTTTTT>.history-<sha256>.zst`. A push compresses the file into memory
//! while hashing it, then writes the object only if absent (`If-None-Match: *`): an object
//! is never overwritten, and one is whole or absent (no temporary names). The compressed body
//! is bounded by the file's size, itself bounded by the segment size (16 MiB by default,
//! 1 GiB at most) for segments and 16 MiB for history and backup-label files. A fetch
//! streams the object through the decompressor and the hash into a temporary file beside the
//! destination, renamed only when the SHA-256 is the one in the name (as on disk).
//!
//! These two run inside the server with no runtime of their own: each builds a
//! single-threaded one for its few requests. Only `wal push` and `wal fetch` read an archive
//! in a bucket for now; the `pitr` commands that read the archive refuse one.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;

use super::archive::{self, ArchiveInfo, WalKind, WalName};
use super::fetch::{self, FetchError, Fetched};
use super::push::{self, Pushed, BLOCK};
use crate::storage::{AlreadyExists, S3Store};

/// The largest `archive.json` read back.
const INFO_MAX_BYTES: u64 = 64 * 1024;

/// An archive in a bucket, as the config describes it.
pub type RemoteArchive = crate::storage::S3Place;

fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime for object storage")
}

/// The published versions of `name` in the bucket, as (key, SHA-256), sorted by hash.
async fn versions(store: &S3Store, name: &WalName) -> Result<Vec<(String, String)>> {
    let under = format!("{}/{}", archive::WAL_DIR, name.subdir());
    let dir = format!("{}/", store.url().key(&under));
    let prefix = format!("{}-", name.name);
    let mut out = Vec::new();
    for o in store.list(&under).await? {
        let Some(rest) = o.key.strip_prefix(&dir) else {
            continue;
        };
        if rest.contains('/') || !rest.starts_with(&prefix) {
            continue;
        }
        if let Some((wal, sha256)) = archive::parse_archived(rest) {
            if wal == *name {
                out.push((o.key.clone(), sha256));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// `archive.json` in the bucket, written by the first push (create-only: a concurrent first
/// push may win, and its object stays), then the segment's cluster checked against it.
async fn check_info(store: &S3Store, name: &WalName, mine: &ArchiveInfo) -> Result<()> {
    let key = store.url().key(archive::INFO_FILE);
    let shown = store.url().display(&key);
    if store.head(&key).await?.is_none() {
        let mut text = serde_json::to_vec_pretty(mine)?;
        text.push(b'\n');
        if let Err(e) = store.put_new(&key, text).await {
            if e.downcast_ref::<AlreadyExists>().is_none() {
                return Err(e);
            }
        }
    }
    let bytes = store.get_bytes(&key, INFO_MAX_BYTES).await?;
    let info: ArchiveInfo =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {shown}"))?;
    push::same_cluster(name, &store.url().to_string(), &info, mine)
}

/// Archives the WAL file at `wal_path` into the bucket: `wal push` for an archive in object
/// storage (see the module's documentation).
pub fn push(remote: &RemoteArchive, level: i32, wal_path: &Path) -> Result<Pushed> {
    let push::WalSource {
        name,
        mut src,
        size,
        first,
    } = push::open_wal(wal_path)?;
    let segment = matches!(name.kind, WalKind::Segment | WalKind::Partial);
    let mine = if segment {
        Some(push::segment_info(&name, &first, size)?)
    } else {
        None
    };
    // The body is compressed in memory: bounded by the segment size (a .partial segment is
    // one whole), and for the small history and backup-label files by the default size.
    let bound = mine
        .as_ref()
        .map_or(archive::DEFAULT_SEGMENT_SIZE, |m| m.wal_segment_size);
    if size > bound {
        bail!(
            "{}: {size} bytes, more than the {bound} a file of the archive may have",
            wal_path.display()
        );
    }
    let rt = runtime()?;
    rt.block_on(async {
        let store = remote.open().await?;
        // Listed first: a refusal of the service then comes with its code (a HEAD's has no
        // body to name it).
        let existing = versions(&store, &name).await?;
        if let Some(mine) = &mine {
            check_info(&store, &name, mine).await?;
        }
        let (sha256, body) = compress(level, size, first, &mut src, wal_path)?;
        let compressed = body.len() as u64;
        if let Some((key, _)) = existing.iter().find(|(_, s)| *s == sha256) {
            return Ok(Pushed::AlreadyArchived {
                path: PathBuf::from(store.url().display(key)),
            });
        }
        if let Some((key, _)) = existing.first() {
            return Err(push::different_content(
                &name,
                &store.url().display(key),
                &sha256,
                &store.url().to_string(),
            ));
        }
        let key = store.url().key(&format!(
            "{}/{}/{}",
            archive::WAL_DIR,
            name.subdir(),
            archive::archived_name(&name, &sha256)
        ));
        let path = PathBuf::from(store.url().display(&key));
        match store.put_new(&key, body).await {
            Ok(()) => Ok(Pushed::Archived {
                path,
                sha256,
                bytes: size,
                compressed,
            }),
            // The same name means the same content: another push of this file won the race.
            Err(e) if e.downcast_ref::<AlreadyExists>().is_some() => {
                Ok(Pushed::AlreadyArchived { path })
            }
            Err(e) => Err(e),
        }
    })
}

/// Compresses `first` and the rest of `src` (zstd with the frame checksum) into memory while
/// hashing the original bytes. Returns the hex SHA-256 and the compressed body.
fn compress(
    level: i32,
    size: u64,
    first: Vec<u8>,
    src: &mut File,
    wal_path: &Path,
) -> Result<(String, Vec<u8>)> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), level)
        .context("starting the zstd compressor")?;
    enc.include_checksum(true)
        .and_then(|_| enc.set_pledged_src_size(Some(size)))
        .context("setting up the zstd compressor")?;
    let mut h = Sha256::new();
    let mut block = first;
    let mut total = 0u64;
    while !block.is_empty() {
        total += block.len() as u64;
        if total > size {
            break;
        }
        h.update(&block);
        enc.write_all(&block).context("compressing")?;
        block.resize(BLOCK, 0);
        let n = push::read_full(src, &mut block)
            .with_context(|| format!("reading {}", wal_path.display()))?;
        block.truncate(n);
    }
    if total != size {
        bail!(
            "{}: read {total} bytes, expected {size}: the file changed while being archived",
            wal_path.display()
        );
    }
    let body = enc.finish().context("compressing")?;
    Ok((hex::encode(h.finalize()), body))
}

/// An async reader read from sync code, on `rt`; remembers why it failed (the service, not
/// the decompressor).
struct Blocking<'a> {
    rt: &'a Runtime,
    inner: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    failed: Option<String>,
}

impl Read for Blocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let res = self.rt.block_on(self.inner.read(buf));
        if let Err(e) = &res {
            self.failed = Some(e.to_string());
        }
        res
    }
}

/// Fetches `name` from the bucket into `dest`: `wal fetch` for an archive in object storage.
pub fn fetch(remote: &RemoteArchive, name: &WalName, dest: &Path) -> Result<Fetched, FetchError> {
    let rt = runtime()?;
    let store = rt.block_on(remote.open())?;
    let mut found = rt.block_on(versions(&store, name))?;
    let (key, sha256) = match found.len() {
        0 => {
            return Err(FetchError::NotFound(format!(
                "{} is not in the archive {}",
                name.name, remote.url
            )))
        }
        1 => found.remove(0),
        _ => {
            return Err(anyhow!(
                "{} is archived twice with different contents ({}): the archive cannot be trusted",
                name.name,
                found
                    .iter()
                    .map(|(k, _)| store.url().display(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into())
        }
    };
    let shown = store.url().display(&key);
    let inner = rt.block_on(store.get_reader(&key))?;
    let mut reader = Blocking {
        rt: &rt,
        inner,
        failed: None,
    };
    let (sha, bytes) = fetch::write_verified(dest, &shown, &sha256, |out| {
        match fetch::decompress_reader(&mut reader, &shown, out) {
            Ok(v) => Ok(v),
            Err(e) => match reader.failed.take() {
                Some(why) => Err(anyhow!("{why}")),
                None => Err(e),
            },
        }
        .with_context(|| format!("fetching {}", name.name))
    })
    .map_err(FetchError::Abort)?;
    Ok(Fetched {
        source: PathBuf::from(shown),
        sha256: sha,
        bytes,
    })
}
