//! `monitor serve`'s HTTP side: the dashboard and job pages ([`pages`]), the JSON API
//! ([`api`]), `/health` and `/metrics` ([`prom`]), all read from one cached [`Snapshot`]
//! (rebuilt after each scan and at most every [`SNAPSHOT_TTL`]), so every reader sees the
//! same statuses. The sockets, TLS, basic auth and limits are [`crate::web`]'s.

pub mod api;
pub mod pages;
pub mod prom;

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

/// How long a snapshot serves before the next request rebuilds it.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(2);

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
    rebuilding: tokio::sync::Mutex<()>,
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
            rebuilding: tokio::sync::Mutex::new(()),
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

    /// The current snapshot: the cached one while fresh; otherwise rebuilt by one request
    /// while the others keep serving the previous one.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let cached = self.cache.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((at, s)) = &cached {
            if at.elapsed() < SNAPSHOT_TTL {
                return Ok(Arc::clone(s));
            }
        }
        let _rebuild = match (self.rebuilding.try_lock(), &cached) {
            (Ok(g), _) => g,
            // Someone is rebuilding: the previous snapshot will do for this request.
            (Err(_), Some((_, s))) => return Ok(Arc::clone(s)),
            (Err(_), None) => self.rebuilding.lock().await,
        };
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
        let cfg = &self.cfg;
        let snap = Arc::new(
            self.with_history(async |h| Snapshot::build(cfg, h, Utc::now()).await)
                .await?,
        );
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), Arc::clone(&snap)));
        Ok(snap)
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
