//! `monitor serve`'s HTTP side: the dashboard and job pages ([`pages`]), the JSON API
//! ([`api`]), `/health` and `/metrics` ([`prom`]), all read from one cached [`Snapshot`]
//! (rebuilt after each scan and every [`SNAPSHOT_TTL`], in the background while the
//! previous one serves), so every reader sees the same statuses. The sockets, TLS, basic auth and limits are [`crate::web`]'s.

pub mod api;
pub mod pages;
pub mod prom;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::history::History;
use super::view::Snapshot;
use super::MonitorConfig;

/// How long a snapshot serves before it is rebuilt.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(2);
/// The oldest snapshot served while a newer one is being built.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(10);

/// What the scanner loop tells the web side.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// When the last scan attempt ended, and whether it failed.
    pub last_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub scans_ok: u64,
    pub scans_failed: u64,
}

/// Shared by every request.
pub struct AppState {
    pub cfg: MonitorConfig,
    /// One connection to the history for the requests that read it directly (a job's
    /// history); reopened after an error.
    history: tokio::sync::Mutex<Option<History>>,
    cache: RwLock<Option<(Instant, Arc<Snapshot>)>>,
    rebuilding: Arc<tokio::sync::Mutex<()>>,
    /// The last rebuild failed: no stale snapshot is served until one succeeds.
    rebuild_failed: AtomicBool,
    pub heartbeat: Mutex<Heartbeat>,
    /// When serving began: the scanner is not late before its first interval has passed.
    pub started: DateTime<Utc>,
    /// Whether this process runs the scanner (`/health` judges its heartbeat only then).
    pub scanning: bool,
}

impl AppState {
    pub fn new(cfg: MonitorConfig, scanning: bool) -> Arc<AppState> {
        Arc::new(AppState {
            cfg,
            history: tokio::sync::Mutex::new(None),
            cache: RwLock::new(None),
            rebuilding: Arc::new(tokio::sync::Mutex::new(())),
            rebuild_failed: AtomicBool::new(false),
            heartbeat: Mutex::new(Heartbeat::default()),
            started: Utc::now(),
            scanning,
        })
    }

    /// Runs `f` on the history connection, opening it when needed and dropping it after an
    /// error (the next request reconnects).
    pub async fn with_history<T>(
        &self,
        f: impl for<'h> AsyncFnOnce(&'h History) -> Result<T>,
    ) -> Result<T> {
        let mut guard = self.history.lock().await;
        if guard.is_none() {
            *guard = Some(History::open(&self.cfg.history).await?);
        }
        let h = guard.as_ref().expect("opened above");
        let r = f(h).await;
        if r.is_err() {
            *guard = None;
        }
        r
    }

    /// The current snapshot. A fresh one (under [`SNAPSHOT_TTL`]) is served as is; a stale
    /// one (under [`SNAPSHOT_MAX_AGE`], its last rebuild not failed) is served while a
    /// background task rebuilds it, so no request waits for the history; otherwise the
    /// request rebuilds it (one at a time) and an unreadable history is its error.
    pub async fn snapshot(self: &Arc<Self>) -> Result<Arc<Snapshot>> {
        let cached = self.cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((at, s)) = &cached {
            if at.elapsed() < SNAPSHOT_TTL {
                return Ok(Arc::clone(s));
            }
            if at.elapsed() < SNAPSHOT_MAX_AGE && !self.rebuild_failed.load(Ordering::Relaxed) {
                self.rebuild_in_background();
                return Ok(Arc::clone(s));
            }
        }
        let _rebuild = self.rebuilding.lock().await;
        // Rebuilt while this request waited?
        if let Some((at, s)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if at.elapsed() < SNAPSHOT_TTL {
                return Ok(Arc::clone(s));
            }
        }
        self.rebuild().await
    }

    /// Builds a snapshot and caches it; a failure is remembered (stale snapshots are no
    /// longer served) until a rebuild succeeds.
    async fn rebuild(&self) -> Result<Arc<Snapshot>> {
        let cfg = &self.cfg;
        match self
            .with_history(async |h| Snapshot::build(cfg, h, Utc::now()).await)
            .await
        {
            Ok(snap) => {
                let snap = Arc::new(snap);
                *self.cache.write().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), Arc::clone(&snap)));
                self.rebuild_failed.store(false, Ordering::Relaxed);
                Ok(snap)
            }
            Err(e) => {
                self.rebuild_failed.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn rebuild_in_background(self: &Arc<Self>) {
        let Ok(guard) = Arc::clone(&self.rebuilding).try_lock_owned() else {
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let _guard = guard;
            let fresh = me
                .cache
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < SNAPSHOT_TTL);
            if !fresh {
                let _ = me.rebuild().await;
            }
        });
    }

    /// Forgets the cached snapshot (after a scan).
    pub fn invalidate(&self) {
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// How old the scanner's heartbeat may get: two intervals and a minute.
    pub fn heartbeat_limit(&self) -> Duration {
        Duration::from_secs(u64::from(self.cfg.scan_interval_minutes) * 120 + 60)
    }
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(prom::routes())
        .merge(pages::routes())
        .with_state(state)
}

/// A JSON error: `{"error": message, "status": code}`.
pub fn json_error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        axum::Json(json!({"error": message.into(), "status": code.as_u16()})),
    )
        .into_response()
}
