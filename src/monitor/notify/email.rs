//! The e-mail channel: one message (plain text with an HTML alternative) to every recipient,
//! over SMTP with lettre — plain, STARTTLS (required, never a silent fall back to plain
//! text) or TLS from the first byte — with a login whose password is read from the
//! environment at the moment of sending, never from the configuration, never written to a
//! log, an error or the history.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::monitor::config::{EmailSection, SmtpTls};

/// Sends one notice; the error says where it went wrong (never with the password).
pub async fn send(
    cfg: &EmailSection,
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> Result<(), String> {
    let where_ = format!(
        "e-mail via {}:{} (tls: {})",
        cfg.smtp_host,
        cfg.smtp_port,
        cfg.tls.as_str()
    );
    let message = build(cfg, subject, text, html).map_err(|e| format!("{where_}: {e}"))?;
    let transport = transport(cfg).map_err(|e| format!("{where_}: {e}"))?;
    // lettre bounds each connection step and command by the timeout; the whole exchange is
    // bounded too, so that a server trickling its answers cannot hold the scan.
    let limit = Duration::from_secs(u64::from(cfg.timeout_seconds) * 3);
    match tokio::time::timeout(limit, transport.send(message)).await {
        Err(_) => Err(format!("{where_}: timed out after {} s", limit.as_secs())),
        Ok(Err(e)) => Err(format!("{where_}: {}", smtp_error(&e))),
        Ok(Ok(_)) => Ok(()),
    }
}

fn build(
    cfg: &EmailSection,
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> Result<Message, String> {
    let mut b = Message::builder()
        .from(cfg.from.clone())
        .subject(subject)
        .user_agent(format!("mairie-dba/{}", env!("CARGO_PKG_VERSION")));
    for to in &cfg.to {
        b = b.to(Mailbox::clone(to));
    }
    let built = match html {
        Some(html) => b.multipart(MultiPart::alternative_plain_html(
            text.to_string(),
            html.to_string(),
        )),
        None => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text.to_string()),
        ),
    };
    built.map_err(|e| format!("composing the message: {e}"))
}

fn transport(cfg: &EmailSection) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.as_str())
        .port(cfg.smtp_port)
        .timeout(Some(Duration::from_secs(u64::from(cfg.timeout_seconds))));
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_parameters(cfg)?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters(cfg)?),
    };
    b = b.tls(tls);
    if let (Some(user), Some(var)) = (&cfg.user, &cfg.password_env) {
        crate::engine::tools::register_secret_var(var);
        let password = std::env::var(var).map_err(|_| {
            format!("the SMTP password: environment variable {var} (monitor.notify.email.password_env) is not set")
        })?;
        b = b
            .credentials(Credentials::new(user.clone(), password))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(b.build())
}

fn tls_parameters(cfg: &EmailSection) -> Result<TlsParameters, String> {
    let mut p = TlsParameters::builder(cfg.smtp_host.clone());
    if let Some(path) = &cfg.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("ca_file: reading {}: {e}", path.display()))?;
        let cert =
            Certificate::from_pem(&pem).map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
        p = p
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    p.build_rustls()
        .map_err(|e| format!("setting up TLS: {}", smtp_error(&e)))
}

/// lettre's error with its causes (the TLS or I/O reason is in the source chain), each
/// said once: lettre's own text already repeats some of them.
fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    fn push(parts: &mut Vec<String>, text: &str) {
        for p in text.split(": ") {
            if parts.last().map(String::as_str) != Some(p) {
                parts.push(p.to_string());
            }
        }
    }
    let mut parts: Vec<String> = Vec::new();
    push(&mut parts, &e.to_string());
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let text = c.to_string();
        if !parts.join(": ").contains(&text) {
            push(&mut parts, &text);
        }
        src = c.source();
    }
    parts.join(": ")
}
