//! `wal push %p` (PostgreSQL's `archive_command`) and `wal fetch %f %p` (its
//! `restore_command`).
//!
//! They run inside the server, as its user, with its environment, once per WAL file: they read
//! the config and nothing else — no password variable, no connection, no async runtime (but
//! a single-threaded one for the requests to an archive in a bucket: `pitr::remote`) — and
//! answer with the exit status PostgreSQL acts on (see [`FETCH_ABORT`]). Nothing goes to
//! stdout; a line on stderr lands in the server's log.

use std::path::{Path, PathBuf};

use crate::cli::{GlobalArgs, WalCommand};
use crate::config::{self, Config};
use crate::log::Log;
use crate::pitr::archive::WalName;
use crate::pitr::fetch::{self, FetchError};
use crate::pitr::push::{self, Pushed};
use crate::pitr::{remote, Archive};

/// The exit status of a `wal fetch` that must stop recovery (a corrupt or ambiguous archived
/// file, an unreadable archive, a configuration error). PostgreSQL's startup process aborts
/// recovery when the restore command exits above 125 (as if killed by a signal) — except
/// 143 (128 + SIGTERM), which it reads as a shutdown request — and takes any other non-zero
/// status for "no such file", the end of the archive.
pub const FETCH_ABORT: u8 = 255;

/// Exit statuses of `wal fetch` besides [`FETCH_ABORT`].
pub const FETCH_OK: u8 = 0;
pub const FETCH_NOT_FOUND: u8 = 1;

/// Runs a `wal` command; returns the process exit code.
pub fn run(cmd: &WalCommand, global: &GlobalArgs, log: &Log) -> u8 {
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let config = Config::load(&path);
    let place = config
        .map_err(anyhow::Error::from)
        .and_then(|c| crate::pitr::wal_place(&c, &global.targets).map_err(anyhow::Error::from));
    match cmd {
        WalCommand::Push { path } => {
            let place = match place {
                Ok(p) => p,
                Err(e) => {
                    log.error(format!("wal push: {e:#}"));
                    return 2;
                }
            };
            let level = place.entry.compression_level;
            let pushed = match &place.archive {
                Archive::Dir(dir) => push::push(dir, level, path),
                Archive::Bucket(r) => remote::push(r, level, path),
            };
            match pushed {
                Ok(Pushed::Archived {
                    path,
                    bytes,
                    compressed,
                    ..
                }) => {
                    log.debug(format!(
                        "wal push: archived {} ({bytes} bytes, {compressed} compressed)",
                        path.display()
                    ));
                    0
                }
                Ok(Pushed::AlreadyArchived { path }) => {
                    log.info(format!(
                        "wal push: already archived with the same content: {}",
                        path.display()
                    ));
                    0
                }
                Err(e) => {
                    log.error(format!("wal push: {e:#}"));
                    1
                }
            }
        }
        WalCommand::Fetch { name, path } => {
            let place = match place {
                Ok(p) => p,
                Err(e) => {
                    log.error(format!("wal fetch: {e:#} (recovery stopped)"));
                    return FETCH_ABORT;
                }
            };
            fetch_one(&place.archive, name, path, log)
        }
    }
}

fn fetch_one(archive: &Archive, name: &str, dest: &Path, log: &Log) -> u8 {
    let Some(wal) = WalName::parse(name) else {
        log.error(format!(
            "wal fetch: `{name}` is not a WAL file name (recovery stopped)"
        ));
        return FETCH_ABORT;
    };
    let fetched = match archive {
        Archive::Dir(dir) => fetch::fetch(dir, &wal, dest),
        Archive::Bucket(r) => remote::fetch(r, &wal, dest),
    };
    match fetched {
        Ok(f) => {
            log.debug(format!(
                "wal fetch: {name} from {} ({} bytes, SHA-256 verified)",
                f.source.display(),
                f.bytes
            ));
            FETCH_OK
        }
        Err(FetchError::NotFound(msg)) => {
            log.info(format!("wal fetch: {msg}"));
            FETCH_NOT_FOUND
        }
        Err(FetchError::Abort(e)) => {
            log.error(format!("wal fetch: {e:#} (recovery stopped)"));
            FETCH_ABORT
        }
    }
}
