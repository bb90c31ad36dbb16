//! What an operation must undo if it does not finish: the databases it created (a restore's
//! destination, a drill's scratch database). Each is registered when created and forgotten
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
