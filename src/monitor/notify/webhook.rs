//! The webhook channel: the notice's JSON POSTed to a URL (Mattermost, Slack, Teams or any
//! program), over http or https (rustls, the system's CA store or `ca_file`).
//!
//! A failed attempt — no connection, a timeout, HTTP 5xx, 408 or 429 — is tried again after
//! a short pause, [`ATTEMPTS`] times in all; any other answer than 2xx ends the attempts at
//! once. Either way a notice not delivered stays pending for the next scan. Chat tools put
//! their secret in the URL's path: errors show only its scheme, host and port.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::monitor::config::{check_webhook_url, WebhookSection, WebhookUrl};

/// Attempts per delivery, and the pause before each retry.
const ATTEMPTS: usize = 3;
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(500), Duration::from_secs(2)];

/// The most of an error answer's body read (for the error message).
const ERROR_BODY_MAX: usize = 4096;

/// Posts `body` (JSON); the error says why the last attempt failed.
pub async fn post(cfg: &WebhookSection, body: &str) -> Result<(), String> {
    let url = match &cfg.url {
        WebhookUrl::Inline(u) => u.clone(),
        WebhookUrl::Env(var) => {
            crate::engine::tools::register_secret_var(var);
            let u = std::env::var(var).map_err(|_| {
                format!("webhook: environment variable {var} (monitor.notify.webhook.url_env) is not set")
            })?;
            check_webhook_url(&u).map_err(|e| format!("{e} (from {var})"))?;
            u
        }
    };
    let uri: Uri = url
        .parse()
        .map_err(|_| "webhook: url: not a URL".to_string())?;
    let shown = shown(&uri);
    let timeout = Duration::from_secs(u64::from(cfg.timeout_seconds));
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF[attempt - 1]).await;
        }
        let res = tokio::time::timeout(timeout, once(cfg, &uri, body)).await;
        let (retry, why) = match res {
            Err(_) => (true, format!("timed out after {} s", timeout.as_secs())),
            Ok(Ok(())) => return Ok(()),
            Ok(Err(f)) => (f.retry, f.why),
        };
        last = why;
        if !retry {
            break;
        }
    }
    Err(format!("webhook POST to {shown}: {last}"))
}

/// A failed attempt: why, and whether trying again soon may help.
struct Failure {
    retry: bool,
    why: String,
}

impl Failure {
    fn transient(why: impl Into<String>) -> Failure {
        Failure {
            retry: true,
            why: why.into(),
        }
    }
}

/// `https://chat.example:443/…`: where the hook is, without its secret path.
fn shown(uri: &Uri) -> String {
    format!(
        "{}://{}:{}/…",
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or("?"),
        port(uri)
    )
}

fn port(uri: &Uri) -> u16 {
    uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    })
}

async fn once(cfg: &WebhookSection, uri: &Uri, body: &str) -> Result<(), Failure> {
    let host = uri.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((bare, port(uri)))
        .await
        .map_err(|e| Failure::transient(format!("connecting: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if uri.scheme_str() == Some("https") {
        let connector =
            tokio_rustls::TlsConnector::from(client_config(cfg).map_err(|e| Failure {
                retry: false,
                why: e,
            })?);
        let name = ServerName::try_from(bare.to_string()).map_err(|_| Failure {
            retry: false,
            why: format!("`{bare}` is not a TLS server name"),
        })?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::transient(format!("TLS: {e}")))?;
        exchange(TokioIo::new(tls), uri, body).await
    } else {
        exchange(TokioIo::new(tcp), uri, body).await
    }
}

async fn exchange<I>(io: I, uri: &Uri, body: &str) -> Result<(), Failure>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Failure::transient(format!("HTTP: {e}")))?;
    let conn = tokio::spawn(conn);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let req = Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            format!("mairie-dba/{}", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| Failure {
            retry: false,
            why: format!("building the request: {e}"),
        })?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| Failure::transient(format!("HTTP: {e}")))?;
    let status = res.status();
    let answer = Limited::new(res.into_body(), ERROR_BODY_MAX)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    conn.abort();
    if status.is_success() {
        return Ok(());
    }
    let text: String = String::from_utf8_lossy(&answer)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let code = status.as_u16();
    Err(Failure {
        retry: status.is_server_error() || code == 408 || code == 429,
        why: format!(
            "HTTP {status}{}",
            if text.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", text.trim())
            }
        ),
    })
}

fn client_config(cfg: &WebhookSection) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            for c in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file: {}: {e}", path.display()))?
            {
                let c = c.map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no CA certificates found on this system (install ca-certificates, or give webhook.ca_file)".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("setting up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
