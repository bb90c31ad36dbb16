//! The agent's side of the monitor: a site's latest good backups and its `STATUS.json`,
//! deposited where the central monitor reads them.
//!
//! Layout (the monitor's): `<deposit>/<company>/<city>/<site>/<database>/<file>` and its
//! manifest `<file>.json`, then `<deposit>/<company>/<city>/<site>/STATUS.json`, written last
//! so that a report never names a file that is not there yet. On a local path (an NFS
//! mount) each file is copied into a hidden temporary name beside its destination, fsynced
//! and renamed; a file already there with the same size is not sent again. To an rsync
//! destination (`user@host:/path`) rsync does the same (its temporary names are hidden too);
//! STATUS.json is sent last, by its own rsync, with `--no-inplace` after the configured
//! options: whatever they say, the report reaches the monitor under a temporary name and is
//! renamed into place, so that a scan never reads half a report.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use super::report::{StatusReport, REPORT_NAME};

/// Where a site deposits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deposit {
    Local(PathBuf),
    /// `user@host:/path` or `host:/path`, rsync over ssh, with these options.
    Rsync {
        dest: String,
        options: Vec<String>,
    },
}

impl Deposit {
    /// `host:/path` or `user@host:/path` is rsync's; anything else a local path (relative:
    /// to `base_dir`).
    pub fn parse(s: &str, options: &[String], base_dir: &Path) -> Deposit {
        let remote = match (s.find(':'), s.find('/')) {
            (Some(colon), Some(slash)) => colon < slash && colon > 0,
            (Some(colon), None) => colon > 0,
            _ => false,
        };
        if remote {
            Deposit::Rsync {
                dest: s.trim_end_matches('/').to_string(),
                options: options.to_vec(),
            }
        } else {
            Deposit::Local(base_dir.join(s))
        }
    }

    /// Sends `files` into `rel` (a directory under the deposit); returns the seconds taken.
    pub async fn put(&self, rel: &Path, files: &[&Path]) -> Result<f64> {
        self.send(rel, files, &[]).await
    }

    /// [`Deposit::put`], with rsync options of its own after the configured ones.
    async fn send(&self, rel: &Path, files: &[&Path], extra: &[&str]) -> Result<f64> {
        let start = Instant::now();
        match self {
            Deposit::Local(root) => {
                let dir = root.join(rel);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for f in files {
                    copy_into(f, &dir)?;
                }
            }
            Deposit::Rsync { dest, options } => {
                let target = format!("{dest}/{}/", rel.display());
                let mut cmd = tokio::process::Command::new("rsync");
                cmd.args(options)
                    .args(extra)
                    .args(files)
                    .arg(&target)
                    .kill_on_drop(true);
                let out = cmd
                    .output()
                    .await
                    .context("running rsync (is it installed?)")?;
                if !out.status.success() {
                    bail!(
                        "rsync to {target}: {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        Ok(start.elapsed().as_secs_f64())
    }

    /// Writes the site's report, last.
    pub async fn put_report(&self, site: &Path, report: &StatusReport) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(report)?;
        bytes.push(b'\n');
        match self {
            Deposit::Local(root) => {
                let dir = root.join(site);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                super::store::write_atomically(&dir, REPORT_NAME, &bytes)
                    .with_context(|| format!("writing {}", dir.join(REPORT_NAME).display()))
            }
            Deposit::Rsync { .. } => {
                let tmp =
                    std::env::temp_dir().join(format!("mairie-dba-agent-{}", std::process::id()));
                std::fs::create_dir_all(&tmp)?;
                let path = tmp.join(REPORT_NAME);
                std::fs::write(&path, &bytes)?;
                // rsync writes a hidden temporary name and renames it, unless told to write
                // in place (`--inplace`, `--append`): not for the report.
                let r = self.send(site, &[&path], &["--no-inplace"]).await;
                let _ = std::fs::remove_dir_all(&tmp);
                r.map(|_| ())
            }
        }
    }
}

/// Copies a file into `dir` under its own name: a hidden temporary name, fsync, rename.
/// A file already there with the same size is taken as sent.
fn copy_into(src: &Path, dir: &Path) -> Result<()> {
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{}: not a file name", src.display()))?;
    let dest = dir.join(name);
    let mut from =
        super::hash::open_no_follow(src).with_context(|| format!("opening {}", src.display()))?;
    let size = from.metadata()?.len();
    if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == size) {
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> Result<()> {
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n])?;
        }
        to.sync_all()?;
        std::fs::rename(&tmp, &dest)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("copying {} to {}", src.display(), dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposits_parse_as_rsync_or_local() {
        let base = Path::new("/srv");
        let o = vec!["--archive".to_string()];
        assert_eq!(
            Deposit::parse("backup@central:/mnt/deposits/", &o, base),
            Deposit::Rsync {
                dest: "backup@central:/mnt/deposits".into(),
                options: o.clone()
            }
        );
        assert!(matches!(
            Deposit::parse("central:/d", &o, base),
            Deposit::Rsync { .. }
        ));
        assert_eq!(
            Deposit::parse("/mnt/agent_deposits", &o, base),
            Deposit::Local("/mnt/agent_deposits".into())
        );
        assert_eq!(
            Deposit::parse("deposits", &o, base),
            Deposit::Local("/srv/deposits".into())
        );
        // A colon after the first slash is part of a local path.
        assert_eq!(
            Deposit::parse("./a:b", &o, base),
            Deposit::Local("/srv/./a:b".into())
        );
    }

    #[test]
    fn local_copies_are_whole_and_not_repeated() {
        let d = std::env::temp_dir().join(format!("mairie-dba-agent-test-{}", std::process::id()));
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::write(d.join("src/a.dump"), b"bytes").unwrap();
        let out = d.join("out");
        std::fs::create_dir_all(&out).unwrap();
        copy_into(&d.join("src/a.dump"), &out).unwrap();
        assert_eq!(std::fs::read(out.join("a.dump")).unwrap(), b"bytes");
        let mtime = std::fs::metadata(out.join("a.dump"))
            .unwrap()
            .modified()
            .unwrap();
        copy_into(&d.join("src/a.dump"), &out).unwrap();
        assert_eq!(
            std::fs::metadata(out.join("a.dump"))
                .unwrap()
                .modified()
                .unwrap(),
            mtime
        );
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
