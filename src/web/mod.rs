//! The HTTP servers the tool runs (the exporter; the backup monitor's page and API), served
//! one way: bound to loopback unless TLS is on or the operator insists, with TLS and basic
//! auth from a web configuration file ([`config`]), and limits that keep a misbehaving or
//! hostile client from taking the server down:
//!
//! - at most `max_connections` connections: past it, the oldest connection that has not
//!   yet sent a request is closed (idle sockets can never starve a real scrape, nor use up
//!   the process's open-file limit);
//! - a request's headers must arrive within `header_read_timeout` and fit in
//!   `max_header_bytes` (a slow or oversized request is dropped, answered 431);
//! - a connection with no traffic and no request in progress for `idle_timeout` is closed
//!   (keep-alive included); the TLS handshake has `header_read_timeout` too.
//!
//! The application is an axum [`Router`]; this module owns the sockets.

pub mod config;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use base64::Engine as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use config::WebConfig;

/// How much a server lets its clients use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Refuses to serve in clear text on anything but loopback unless `insecure` is given.
pub fn check_listen(addr: SocketAddr, web: &WebConfig, insecure: bool) -> Result<()> {
    if web.tls.is_none() && !addr.ip().is_loopback() && !insecure {
        bail!(
            "refusing to listen on {addr} without TLS: give a --web.config.file with \
             tls_server_config, listen on 127.0.0.1, or pass --insecure-listen"
        );
    }
    Ok(())
}

/// A connection the server holds.
struct Slot {
    /// No request has started on it yet: the first to go when the server is full.
    fresh: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    web: WebConfig,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let web = Arc::new(web);
    let auth = Arc::new(AuthCache::default());
    let tls = web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots: Arc<Mutex<BTreeMap<u64, Slot>>> = Arc::default();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        {
            let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
            s.retain(|_, slot| !slot.task.is_finished());
            if s.len() >= limits.max_connections {
                let victim = s
                    .iter()
                    .find(|(_, slot)| slot.fresh.load(Ordering::Relaxed))
                    .map(|(id, _)| *id);
                match victim {
                    Some(id) => {
                        if let Some(slot) = s.remove(&id) {
                            slot.task.abort();
                        }
                    }
                    // Every connection is busy with a request: the newcomer waits its turn
                    // by being refused now.
                    None => continue,
                }
            }
        }
        next_id += 1;
        let fresh = Arc::new(AtomicBool::new(true));
        let conn = Connection {
            app: app.clone(),
            web: Arc::clone(&web),
            auth: Arc::clone(&auth),
            fresh: Arc::clone(&fresh),
            limits,
        };
        let tls = tls.clone();
        let task = tokio::spawn(async move {
            match tls {
                None => conn.run(tcp).await,
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp))
                            .await
                    else {
                        return;
                    };
                    conn.run(stream).await
                }
            }
        });
        slots.lock().unwrap_or_else(|e| e.into_inner()).insert(
            next_id,
            Slot {
                fresh,
                task: task.abort_handle(),
            },
        );
    }
    // Stop accepting; let requests in progress finish for a moment, then close everything.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let busy = {
            let mut s = slots.lock().unwrap_or_else(|e| e.into_inner());
            s.retain(|_, slot| !slot.task.is_finished());
            s.values().any(|slot| !slot.fresh.load(Ordering::Relaxed))
        };
        if !busy || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for slot in slots.lock().unwrap_or_else(|e| e.into_inner()).values() {
        slot.task.abort();
    }
    Ok(())
}

/// One accepted connection and what its requests need.
struct Connection {
    app: Router,
    web: Arc<WebConfig>,
    auth: Arc<AuthCache>,
    fresh: Arc<AtomicBool>,
    limits: Limits,
}

impl Connection {
    async fn run<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, stream: S) {
        let started = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let io = Tracked {
            inner: stream,
            started,
            last: Arc::clone(&last),
        };
        let Connection {
            app,
            web,
            auth,
            fresh,
            limits,
        } = self;
        let flight = Arc::clone(&in_flight);
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            fresh.store(false, Ordering::Relaxed);
            let guard = InFlight::new(Arc::clone(&flight));
            let app = app.clone();
            let web = Arc::clone(&web);
            let auth = Arc::clone(&auth);
            async move {
                let _guard = guard;
                let mut res = match authorised(&web, &auth, &req).await {
                    true => app
                        .oneshot(req.map(Body::new))
                        .await
                        .unwrap_or_else(|e| match e {}),
                    false => unauthorised(),
                };
                for (name, value) in &web.headers {
                    res.headers_mut().insert(name.clone(), value.clone());
                }
                Ok::<_, std::convert::Infallible>(res)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let idle = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let quiet = started.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                if in_flight.load(Ordering::Relaxed) == 0
                    && Duration::from_millis(quiet) >= limits.idle_timeout
                {
                    return;
                }
            }
        };
        tokio::select! {
            _ = &mut conn => {}
            _ = idle => {}
        }
    }
}

/// Counts a request in progress, so that a long scrape is not taken for an idle connection.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that notes when it last moved a byte either way.
struct Tracked<S> {
    inner: S,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Credentials already checked against their bcrypt hash (a hash costs tens of
/// milliseconds; a scrape every 15 s should not pay it each time). Keyed by a SHA-256 of
/// user and password, never the password itself; bounded.
#[derive(Default)]
struct AuthCache {
    good: Mutex<HashSet<[u8; 32]>>,
}

const AUTH_CACHE_MAX: usize = 64;

async fn authorised<B>(web: &WebConfig, cache: &AuthCache, req: &Request<B>) -> bool {
    if web.users.is_empty() {
        return true;
    }
    let Some((user, password)) = basic_credentials(req) else {
        return false;
    };
    let Some(hash) = web.users.get(&user).cloned() else {
        return false;
    };
    let key: [u8; 32] = Sha256::new()
        .chain_update(user.as_bytes())
        .chain_update([0u8])
        .chain_update(password.as_bytes())
        .chain_update([0u8])
        .chain_update(hash.as_bytes())
        .finalize()
        .into();
    if cache
        .good
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
    {
        return true;
    }
    let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false);
    if ok {
        let mut good = cache.good.lock().unwrap_or_else(|e| e.into_inner());
        if good.len() >= AUTH_CACHE_MAX {
            good.clear();
        }
        good.insert(key);
    }
    ok
}

fn basic_credentials<B>(req: &Request<B>) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn unauthorised() -> Response<Body> {
    let mut res = Response::new(Body::from("authentication required\n"));
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"mairie-dba\""),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        let req = Request::builder()
            .header(header::AUTHORIZATION, "Basic cHJvbToxOnNlY3JldA==")
            .body(())
            .unwrap();
        assert_eq!(
            basic_credentials(&req),
            Some(("prom".to_string(), "1:secret".to_string()))
        );
        let req = Request::builder()
            .header(header::AUTHORIZATION, "Bearer x")
            .body(())
            .unwrap();
        assert_eq!(basic_credentials(&req), None);
    }

    #[test]
    fn clear_text_on_another_interface_needs_insisting() {
        let web = WebConfig::default();
        assert!(check_listen("127.0.0.1:1".parse().unwrap(), &web, false).is_ok());
        assert!(check_listen("[::1]:1".parse().unwrap(), &web, false).is_ok());
        let e = check_listen("0.0.0.0:1".parse().unwrap(), &web, false).unwrap_err();
        assert!(e.to_string().contains("--insecure-listen"), "{e}");
        assert!(check_listen("0.0.0.0:1".parse().unwrap(), &web, true).is_ok());
    }
}
