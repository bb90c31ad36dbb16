//! Point-in-time recovery of PostgreSQL: the WAL archive and what reads and writes it.
//!
//! `archive` owns the layout on disk (documented there and in docs/reference.md); `push` and
//! `fetch` are PostgreSQL's `archive_command` and `restore_command`; `verify` reads the whole
//! archive back; `setup` checks and sets the server's archiving settings; `check` judges
//! whether archiving works (`pitr check`, the health checks and the exporter). `wal push` and
//! `wal fetch` run as the server's user inside the server: they need nothing but a readable
//! config — no password, no connection.

pub mod archive;
pub mod base;
pub mod bucket;
pub mod check;
pub mod fetch;
pub mod push;
pub mod remote;
pub mod restore;
pub mod setup;

pub mod verify;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{Config, PitrEntry, Target};
use crate::error::ConfigError;
use crate::storage::S3Options;

use remote::RemoteArchive;

/// Where a target's WAL archive is: a directory, or `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub enum Archive {
    Dir(PathBuf),
    Bucket(RemoteArchive),
}

impl Archive {
    /// The archive `entry` describes, its directory resolved against the config's.
    pub fn of(config: &Config, entry: &PitrEntry) -> Archive {
        Archive::at(config, &entry.archive_dir, &entry.s3)
    }

    /// A directory of the config (resolved against its directory), or `s3://bucket/prefix`
    /// with the entry's `s3:` options.
    fn at(config: &Config, dir: &Path, s3: &Option<S3Options>) -> Archive {
        match RemoteArchive::parse(dir, s3.as_ref()) {
            Some(place) => Archive::Bucket(place),
            None => Archive::Dir(config.resolve(dir)),
        }
    }

    /// The directory, or the `s3://` URL, as a path for reports.
    pub fn shown(&self) -> PathBuf {
        match self {
            Archive::Dir(d) => d.clone(),
            Archive::Bucket(r) => PathBuf::from(r.url.to_string()),
        }
    }
}

/// One target's archive, as the config describes it, its paths resolved.
#[derive(Debug, Clone)]
pub struct PitrPlace {
    pub target: String,
    pub entry: PitrEntry,
    pub archive: Archive,
    /// The archive's directory; for an archive in a bucket, its `s3://` URL (for reports).
    pub archive_dir: PathBuf,
    /// Where the base backups go (a directory or a bucket), when set.
    pub base: Option<Archive>,
    /// The local directory that holds the lock of the base-backup commands: the base
    /// directory itself, or for a bucket one of the state directory.
    pub lock_dir: Option<PathBuf>,
}

impl PitrPlace {
    fn new(config: &Config, name: &str, entry: &PitrEntry) -> PitrPlace {
        let archive = Archive::of(config, entry);
        let base = entry
            .base_dir
            .as_ref()
            .map(|d| Archive::at(config, d, &entry.s3));
        let lock_dir = base.as_ref().map(|b| match b {
            Archive::Dir(d) => d.clone(),
            Archive::Bucket(r) => {
                let digest = hex::encode(Sha256::digest(r.url.to_string().as_bytes()));
                config
                    .state_dir
                    .join("s3")
                    .join(format!("pitr-{name}-{}", &digest[..12]))
            }
        });
        PitrPlace {
            target: name.to_string(),
            entry: entry.clone(),
            archive_dir: archive.shown(),
            archive,
            base,
            lock_dir,
        }
    }

    /// The base backups' place, which the base-backup commands need.
    pub fn base(&self) -> Result<&Archive, ConfigError> {
        self.base.as_ref().ok_or_else(|| {
            ConfigError::new(format!(
                "pitr.{}.base_dir is not set: nothing says where the base backups go",
                self.target
            ))
        })
    }

    /// The base backups' place, opened (a bucket is connected to).
    pub fn open_base(&self) -> anyhow::Result<bucket::BaseLoc> {
        Ok(match self.base()? {
            Archive::Dir(d) => bucket::BaseLoc::Dir(d.clone()),
            Archive::Bucket(r) => bucket::BaseLoc::Bucket(Box::new(r.open_blocking()?)),
        })
    }

    /// The WAL archive, opened (a bucket is connected to).
    pub fn open_wal(&self) -> anyhow::Result<bucket::WalLoc> {
        Ok(match &self.archive {
            Archive::Dir(d) => bucket::WalLoc::Dir(d.clone()),
            Archive::Bucket(r) => bucket::WalLoc::Bucket(Box::new(r.open_blocking()?)),
        })
    }
}

fn pitr_names(config: &Config) -> String {
    if config.pitr.is_empty() {
        return "none".into();
    }
    config.pitr.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// The one archive `wal push` / `wal fetch` work on: the target named with `-t`, or the
/// only one configured.
pub fn wal_place(config: &Config, names: &[String]) -> Result<PitrPlace, ConfigError> {
    match names {
        [] => {
            let mut it = config.pitr.iter();
            match (it.next(), it.next()) {
                (Some((name, entry)), None) => Ok(PitrPlace::new(config, name, entry)),
                (None, _) => Err(ConfigError::new(format!(
                    "{}: no `pitr:` section: nothing says where the WAL archive is",
                    config.path.display()
                ))),
                _ => Err(ConfigError::new(format!(
                    "{}: several targets have a `pitr:` section ({}): name one with -t",
                    config.path.display(),
                    pitr_names(config)
                ))),
            }
        }
        [name] => match config.pitr.get(name) {
            Some(entry) => Ok(PitrPlace::new(config, name, entry)),
            None => Err(ConfigError::new(format!(
                "{}: no `pitr.{name}` section for target `{name}` (pitr targets: {})",
                config.path.display(),
                pitr_names(config)
            ))),
        },
        _ => Err(ConfigError::new(
            "wal push and wal fetch work on one target: give -t once",
        )),
    }
}

/// The archives of the selected targets, for `pitr` commands: with `-t`, each named target
/// must have a `pitr:` section; without, targets lacking one are passed over.
pub fn places(
    config: &Config,
    targets: &[Target],
    named: bool,
) -> Result<Vec<PitrPlace>, ConfigError> {
    let mut out = Vec::new();
    for t in targets {
        match config.pitr.get(&t.name) {
            Some(entry) => out.push(PitrPlace::new(config, &t.name, entry)),
            None if named => {
                return Err(ConfigError::new(format!(
                    "{}: no `pitr.{}` section for target `{}`",
                    config.path.display(),
                    t.name,
                    t.name
                )))
            }
            None => {}
        }
    }
    if out.is_empty() {
        return Err(ConfigError::new(format!(
            "{}: no selected target has a `pitr:` section",
            config.path.display()
        )));
    }
    Ok(out)
}
