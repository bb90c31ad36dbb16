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
pub mod check;
pub mod fetch;
pub mod push;
pub mod remote;
pub mod restore;
pub mod setup;

pub mod verify;

use std::path::PathBuf;

use crate::config::{Config, PitrEntry, Target};
use crate::error::ConfigError;
use crate::storage::S3Url;

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
        match entry.archive_dir.to_str().and_then(S3Url::parse) {
            Some(url) => Archive::Bucket(RemoteArchive {
                url,
                options: entry.s3.clone().unwrap_or_default(),
            }),
            None => Archive::Dir(config.resolve(&entry.archive_dir)),
        }
    }
}

/// One target's archive, as the config describes it, its paths resolved.
#[derive(Debug, Clone)]
pub struct PitrPlace {
    pub target: String,
    pub entry: PitrEntry,
    pub archive: Archive,
    /// The archive's directory; for an archive in a bucket, its `s3://` URL (which nothing
    /// but `wal push` / `wal fetch` accepts: see [`places`]).
    pub archive_dir: PathBuf,
    pub base_dir: Option<PathBuf>,
}

impl PitrPlace {
    fn new(config: &Config, name: &str, entry: &PitrEntry) -> PitrPlace {
        let archive = Archive::of(config, entry);
        let archive_dir = match &archive {
            Archive::Dir(d) => d.clone(),
            Archive::Bucket(r) => PathBuf::from(r.url.to_string()),
        };
        PitrPlace {
            target: name.to_string(),
            entry: entry.clone(),
            archive,
            archive_dir,
            base_dir: entry.base_dir.as_ref().map(|d| config.resolve(d)),
        }
    }
}

/// The one-line refusal of a command that reads the archive as a directory, for an archive
/// in a bucket.
pub fn bucket_refusal(config: &Config, target: &str, url: &S3Url) -> ConfigError {
    ConfigError::new(format!(
        "{}: pitr.{target}.archive_dir is {url}: an archive in object storage is used by \
         `wal push` and `wal fetch` (and restores through them) only for now; this command \
         reads archives in a directory",
        config.path.display()
    ))
}

impl PitrPlace {
    /// The base backups' directory, which the base-backup commands need.
    pub fn base_dir(&self) -> Result<&std::path::Path, ConfigError> {
        self.base_dir.as_deref().ok_or_else(|| {
            ConfigError::new(format!(
                "pitr.{}.base_dir is not set: nothing says where the base backups go",
                self.target
            ))
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
/// must have a `pitr:` section; without, targets lacking one are passed over. Unless
/// `bucket_ok` (a command that does not read the archive), an archive in a bucket is a
/// configuration error: these commands read a directory, and must never misjudge a bucket.
pub fn places(
    config: &Config,
    targets: &[Target],
    named: bool,
    bucket_ok: bool,
) -> Result<Vec<PitrPlace>, ConfigError> {
    let mut out = Vec::new();
    for t in targets {
        match config.pitr.get(&t.name) {
            Some(entry) => {
                let place = PitrPlace::new(config, &t.name, entry);
                if let (Archive::Bucket(r), false) = (&place.archive, bucket_ok) {
                    return Err(bucket_refusal(config, &t.name, &r.url));
                }
                out.push(place)
            }
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
