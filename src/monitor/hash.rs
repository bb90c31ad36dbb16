//! SHA-256 of deposited files, recomputed by the monitor itself, on every core.
//!
//! A scan may have gigabytes to hash: files are shared out among one thread per available
//! core (no more than there are files), each reading through its own 1 MiB buffer, so memory
//! stays bounded whatever the deposits weigh. Files are opened without following a link and
//! must be regular files: the deposit zone is untrusted.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

const BUFFER: usize = 1024 * 1024;

/// What a file held when it was hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub size_bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// Device and inode of what was hashed, to know it is still the same file when moved.
    pub dev_ino: (u64, u64),
}

/// Opens a file for reading without following a symbolic link; refuses anything but a
/// regular file.
pub fn open_no_follow(path: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other("a symbolic link, not followed")
            } else {
                e
            }
        })?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Hashes an open file from where it stands to its end.
pub fn hash_reader(mut f: &File, buf: &mut [u8]) -> std::io::Result<Hashed> {
    let meta = f.metadata()?;
    let mut h = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Hashed {
        size_bytes: size,
        sha256: hex::encode(h.finalize()),
        dev_ino: (meta.dev(), meta.ino()),
    })
}

/// Hashes one file (no link followed).
pub fn hash_file(path: &Path) -> std::io::Result<Hashed> {
    let f = open_no_follow(path)?;
    let mut buf = vec![0u8; BUFFER];
    hash_reader(&f, &mut buf)
}

/// Hashes every file, in parallel; the results in the order of `paths`, each an error
/// message when the file could not be read.
pub fn hash_all(paths: &[PathBuf]) -> Vec<Result<Hashed, String>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(paths.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Hashed, String>>>> = Mutex::new(vec![None; paths.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = vec![0u8; BUFFER];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let r = open_no_follow(path)
                        .and_then(|f| hash_reader(&f, &mut buf))
                        .map_err(|e| e.to_string());
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not hashed".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_hashes_match_one_by_one_and_known_values() {
        let d = std::env::temp_dir().join(format!("mairie-dba-hash-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let mut paths = Vec::new();
        for i in 0..7 {
            let p = d.join(format!("f{i}"));
            std::fs::write(&p, vec![b'a' + i as u8; 1000 * i + 3]).unwrap();
            paths.push(p);
        }
        std::fs::write(d.join("abc"), b"abc").unwrap();
        paths.push(d.join("abc"));
        std::os::unix::fs::symlink(d.join("abc"), d.join("link")).unwrap();
        paths.push(d.join("link"));
        paths.push(d.join("absent"));
        let all = hash_all(&paths);
        for (p, r) in paths.iter().zip(&all).take(8) {
            assert_eq!(r.as_ref().unwrap(), &hash_file(p).unwrap());
        }
        assert_eq!(
            all[7].as_ref().unwrap().sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(all[8].as_ref().unwrap_err().contains("symbolic link"));
        assert!(all[9].is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
