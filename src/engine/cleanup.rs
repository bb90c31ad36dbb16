//! What an operation must undo if it does not finish: the databases it created (a restore's
//! destination, a drill's scratch database) and the files it was writing (a backup's
//! `.partial`). Each is registered when created and forgotten
//! once the operation no longer needs it undone; a failure drops it at once
//! ([`Created::abandon`]), and a stop (Ctrl-C, SIGTERM) drops whatever is still registered
//! ([`drop_created`]) after the operation's future is gone.

use std::sync::{Mutex, OnceLock};

use crate::config::Target;

fn registry() -> &'static Mutex<Vec<(u64, Target, String)>> {
    static R: OnceLock<Mutex<Vec<(u64, Target, String)>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// A database this run created and will drop unless told to keep it.
#[must_use = "a created database is dropped on a stop until kept or abandoned"]
pub struct Created {
    id: u64,
    target: Target,
    name: String,
}

impl Created {
    pub fn register(target: &Target, name: &str) -> Created {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        registry().lock().unwrap_or_else(|e| e.into_inner()).push((
            id,
            target.clone(),
            name.to_string(),
        ));
        Created {
            id,
            target: target.clone(),
            name: name.to_string(),
        }
    }

    /// The operation succeeded: the database stays.
    pub fn keep(self) {
        forget(self.id);
    }

    /// The operation failed: the database goes now. Returns a note for the error message.
    pub async fn abandon(self) -> String {
        forget(self.id);
        match super::drop_database(&self.target, &self.name).await {
            Ok(()) => format!(
                "database {} (created by this restore) was dropped",
                self.name
            ),
            Err(e) => format!(
                "database {} (created by this restore) could not be dropped: {e:#}",
                self.name
            ),
        }
    }
}

fn forget(id: u64) {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(i, _, _)| *i != id);
}

/// Drops every database still registered (after a stop); returns their names.
pub async fn drop_created() -> Vec<String> {
    let all: Vec<(u64, Target, String)> =
        std::mem::take(&mut *registry().lock().unwrap_or_else(|e| e.into_inner()));
    let mut out = Vec::new();
    for (_, target, name) in all {
        if super::drop_database(&target, &name).await.is_ok() {
            out.push(format!("{name} on {}", target.name));
        }
    }
    out
}

fn files() -> &'static Mutex<Vec<std::path::PathBuf>> {
    static F: OnceLock<Mutex<Vec<std::path::PathBuf>>> = OnceLock::new();
    F.get_or_init(Default::default)
}

/// A file being written that is removed if the run stops before it is finished.
#[must_use = "a file in progress is removed on a stop until finished"]
pub struct InProgress(std::path::PathBuf);

impl InProgress {
    pub fn register(path: &std::path::Path) -> InProgress {
        files()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.to_path_buf());
        InProgress(path.to_path_buf())
    }
}

impl InProgress {
    /// The file is finished (or already removed by the operation): a stop leaves it.
    /// Dropping without this keeps it registered, so that a stop — which drops the
    /// operation — still finds it.
    pub fn finished(self) {
        files()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p != &self.0);
    }
}

/// Removes the files still in progress (after a stop); returns them.
pub fn remove_in_progress() -> Vec<std::path::PathBuf> {
    let all = std::mem::take(&mut *files().lock().unwrap_or_else(|e| e.into_inner()));
    all.into_iter()
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
}
