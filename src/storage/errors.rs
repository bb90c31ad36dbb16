//! One-line errors for S3 operations: `s3://bucket/key: operation: Code (status)`.
//!
//! object_store's own messages run to several lines (the request URL, retry counts, the
//! service's whole XML body); a DBA needs the object, what was being done, and the service's
//! error code. Credentials never appear: object_store does not put them in its errors, and
//! nothing here adds them.

use std::error::Error as StdError;
use std::fmt;

use object_store::client::{HttpError, HttpErrorKind};

/// `put_new` found the key there already and wrote nothing. Detect it with
/// `err.downcast_ref::<AlreadyExists>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyExists {
    /// `s3://bucket/key`
    pub url: String,
}

impl fmt::Display for AlreadyExists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: exists and is not overwritten", self.url)
    }
}

impl StdError for AlreadyExists {}

/// `url: op: cause` for an object_store error.
pub(crate) fn store_error(url: &str, op: &str, e: &object_store::Error) -> anyhow::Error {
    anyhow::anyhow!("{url}: {op}: {}", cause(e))
}

/// `url: op: Code (status)` for a response of the service read here (ListMultipartUploads,
/// buckets).
pub(crate) fn service_error(url: &str, op: &str, status: u16, body: &str) -> anyhow::Error {
    match xml_code(body) {
        Some(code) => anyhow::anyhow!("{url}: {op}: {code} ({status})"),
        None => anyhow::anyhow!("{url}: {op}: HTTP {status}"),
    }
}

/// What went wrong, on one line: the service's error code and HTTP status when it answered,
/// else why it could not be reached.
fn cause(e: &object_store::Error) -> String {
    let mut texts = Vec::new();
    let mut transport: Option<HttpErrorKind> = None;
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            transport.get_or_insert(h.kind());
        }
        texts.push(err.to_string());
        current = err.source();
    }
    let all = texts.join("\n");
    let status = status_of(&all);
    match (xml_code(&all), status) {
        (Some(code), Some(status)) => format!("{code} ({status})"),
        (Some(code), None) => code,
        (None, Some(status)) => format!("HTTP {status}"),
        (None, None) => {
            let deepest = one_line(texts.last().map(String::as_str).unwrap_or_default());
            match transport {
                Some(kind) => format!("{}: {deepest}", kind_text(kind)),
                None => one_line(&texts[0]),
            }
        }
    }
}

fn kind_text(kind: HttpErrorKind) -> &'static str {
    match kind {
        HttpErrorKind::Connect => "cannot connect",
        HttpErrorKind::Timeout => "timed out",
        HttpErrorKind::Interrupted => "connection interrupted",
        HttpErrorKind::Decode => "unreadable response",
        HttpErrorKind::Request => "request failed",
        _ => "HTTP error",
    }
}

/// The status in object_store's "Server returned non-2xx status code: 403 Forbidden: …".
fn status_of(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// `SignatureDoesNotMatch` from `<Error><Code>SignatureDoesNotMatch</Code>…`.
pub(crate) fn xml_code(body: &str) -> Option<String> {
    let (_, rest) = body.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    let code = code.trim();
    (!code.is_empty() && code.len() < 100).then(|| code.to_string())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let body = "<?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>…</Message></Error>";
        assert_eq!(xml_code(body).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(xml_code("<Error></Error>"), None);
        assert_eq!(
            status_of("Error performing PUT http://h/b/k in 2ms - Server returned non-2xx status code: 403 Forbidden: <Error>"),
            Some(403)
        );
        assert_eq!(status_of("no status"), None);
        assert_eq!(
            service_error("s3://b/k", "list uploads", 403, body).to_string(),
            "s3://b/k: list uploads: SignatureDoesNotMatch (403)"
        );
        assert_eq!(
            service_error("s3://b/", "create bucket", 502, "<html>").to_string(),
            "s3://b/: create bucket: HTTP 502"
        );
        assert_eq!(
            AlreadyExists {
                url: "s3://b/k".into()
            }
            .to_string(),
            "s3://b/k: exists and is not overwritten"
        );
    }

    #[test]
    fn object_store_errors_become_one_line() {
        let e = object_store::Error::NotImplemented {
            operation: "copy\nacross buckets".into(),
            implementer: "S3".into(),
        };
        let msg = store_error("s3://b/k", "copy", &e).to_string();
        assert!(msg.starts_with("s3://b/k: copy: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}
