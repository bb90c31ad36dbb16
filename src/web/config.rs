//! The web configuration file (`--web.config.file`), in the format of the Prometheus
//! exporters' exporter-toolkit, so that one file can serve both: TLS (certificate, key,
//! optional client certificates, protocol versions) and basic-auth users with bcrypt hashes.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default), VerifyClientCertIfGiven
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12             # TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$…           # htpasswd -nBC 10 "" | tr -d ':\n'
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! ```
//!
//! Keys exporter-toolkit knows but this server does not implement (cipher suites, curve
//! preferences, HTTP/2, allowed SANs) are refused by name rather than ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A web configuration, checked: the TLS server configuration built, the hashes valid.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Added to every response.
    pub headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks a web configuration file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let file: File = crate::config::read_yaml(path)
            .map_err(|e| ConfigError::new(format!("--web.config.file: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let bad =
            |key: &str, why: String| ConfigError::new(format!("{}: {key}: {why}", path.display()));
        for (user, hash) in &file.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                return Err(bad(
                    "basic_auth_users",
                    format!("`{}` is not a user name", user.escape_debug()),
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(bad(
                    &format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                        .into(),
                ));
            }
        }
        let mut headers = Vec::new();
        if let Some(h) = &file.http_server_config {
            for (name, value) in &h.headers {
                let n = axum::http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    bad(
                        "http_server_config.headers",
                        format!("`{name}` is not a header name"),
                    )
                })?;
                let v = axum::http::HeaderValue::from_str(value).map_err(|_| {
                    bad(
                        &format!("http_server_config.headers.{name}"),
                        "is not a valid header value".into(),
                    )
                })?;
                headers.push((n, v));
            }
        }
        let tls = match &file.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(tls_config(t, dir).map_err(|e| {
                ConfigError::new(format!("{}: tls_server_config.{e}", path.display()))
            })?)),
        };
        Ok(WebConfig {
            tls,
            users: file.basic_auth_users,
            headers,
        })
    }
}

/// The rustls server configuration; errors start with the key at fault.
fn tls_config(t: &TlsFile, dir: &Path) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = {
        let min = version(t.min_version.as_deref(), "min_version", 12)?;
        let max = version(t.max_version.as_deref(), "max_version", 13)?;
        if min > max {
            return Err("min_version: is above max_version".into());
        }
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect()
    };
    let cert_path = dir.join(&t.cert_file);
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cert_file: {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file: {}: no certificate in it",
            cert_path.display()
        ));
    }
    let key_path = dir.join(&t.key_file);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("key_file: {}: {e}", key_path.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("min_version: {e}"))?;
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth {
        "NoClientCert" => {
            if t.client_ca_file.is_some() {
                return Err(
                    "client_ca_file: given, but client_auth_type is NoClientCert".to_string(),
                );
            }
            builder.with_no_client_auth()
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca) = &t.client_ca_file else {
                return Err(format!("client_ca_file: needed by client_auth_type {auth}"));
            };
            let ca_path = dir.join(ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&ca_path)
                .map_err(|e| format!("client_ca_file: {}: {e}", ca_path.display()))?
            {
                let c = c.map_err(|e| format!("client_ca_file: {}: {e}", ca_path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("client_ca_file: {}: {e}", ca_path.display()))?;
            }
            let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if auth == "VerifyClientCertIfGiven" {
                v = v.allow_unauthenticated();
            }
            let verifier = v.build().map_err(|e| format!("client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err(format!(
                "client_auth_type: `{other}` is not supported (NoClientCert, \
                 VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ))
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("key_file: does not match cert_file: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn version(v: Option<&str>, key: &str, default: u8) -> Result<u8, String> {
    match v {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(format!("{key}: `{other}` is not TLS12 or TLS13")),
    }
}
