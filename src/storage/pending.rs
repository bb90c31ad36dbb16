//! The S3 requests object_store does not make: ListMultipartUploads (to find and abort the
//! uploads a crashed writer left, which the service keeps, and bills, until then), and bucket
//! creation and deletion (first-time setup, tests).
//!
//! They are signed by object_store's own SigV4 signer ([`AwsAuthorizer`]) and sent by an HTTP
//! client made from the same options as the store's (timeouts, http allowed or not); the XML
//! is read with the quick-xml that object_store links. A transient failure (no connection,
//! 5xx, SlowDown) is tried again, three times in all.

use std::time::Duration;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Method, Request, StatusCode};
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpClient, HttpRequestBody};
use serde::Deserialize;

use super::credentials::S3Credentials;
use super::errors::{service_error, xml_code};
use super::s3::PendingUpload;

const ATTEMPTS: u32 = 3;

pub(crate) struct Signed {
    http: HttpClient,
    credential: AwsCredential,
    region: String,
    /// `https://bucket.host` or `https://host/bucket`, no trailing slash.
    bucket_endpoint: String,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("region", &self.region)
            .field("bucket_endpoint", &self.bucket_endpoint)
            .finish_non_exhaustive()
    }
}

/// ListMultipartUploadsResult, the parts of it read here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<UploadEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: Option<String>,
}

impl Signed {
    pub(crate) fn new(
        http: HttpClient,
        credentials: &S3Credentials,
        region: &str,
        bucket_endpoint: &str,
    ) -> Result<Signed> {
        Ok(Signed {
            http,
            credential: AwsCredential {
                key_id: credentials.access_key_id.clone(),
                secret_key: credentials.secret_access_key.clone(),
                token: credentials.session_token.clone(),
            },
            region: region.to_string(),
            bucket_endpoint: bucket_endpoint.trim_end_matches('/').to_string(),
        })
    }

    /// Every pending upload whose key starts with `prefix`, page after page.
    pub(crate) async fn list_uploads(
        &self,
        prefix: &str,
        shown: &str,
    ) -> Result<Vec<PendingUpload>> {
        let op = "list uploads";
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", ""), ("prefix", prefix)];
            if let Some((key, id)) = &markers {
                query.push(("key-marker", key));
                query.push(("upload-id-marker", id));
            }
            let body = self
                .send(Method::GET, &query, Bytes::new(), shown, op)
                .await?;
            let page: ListResult = quick_xml::de::from_reader(body.as_ref())
                .map_err(|e| anyhow!("{shown}: {op}: unreadable answer: {e}"))?;
            out.extend(page.uploads.into_iter().map(|u| {
                PendingUpload {
                    key: u.key,
                    upload_id: u.upload_id,
                    initiated: u
                        .initiated
                        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                        .map(|t| t.with_timezone(&Utc)),
                }
            }));
            if !page.is_truncated {
                break;
            }
            let next = (
                page.next_key_marker.unwrap_or_default(),
                page.next_upload_id_marker.unwrap_or_default(),
            );
            if next.0.is_empty() || markers.as_ref() == Some(&next) {
                return Err(anyhow!(
                    "{shown}: {op}: the service says there is more but gives no next marker"
                ));
            }
            markers = Some(next);
        }
        Ok(out)
    }

    pub(crate) async fn create_bucket(&self, shown: &str) -> Result<()> {
        let op = "create bucket";
        // Outside us-east-1, S3 wants the region named in the body.
        let body = if self.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            ))
        };
        match self.send(Method::PUT, &[], body, shown, op).await {
            Err(e) if e.to_string().contains("BucketAlreadyOwnedByYou") => Ok(()),
            r => r.map(drop),
        }
    }

    pub(crate) async fn delete_bucket(&self, shown: &str) -> Result<()> {
        self.send(Method::DELETE, &[], Bytes::new(), shown, "delete bucket")
            .await
            .map(drop)
    }

    /// A signed request on the bucket's URL with `query`; the body of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        query: &[(&str, &str)],
        body: Bytes,
        shown: &str,
        op: &str,
    ) -> Result<Bytes> {
        let mut uri = self.bucket_endpoint.clone();
        if uri.matches('/').count() == 2 {
            uri.push('/'); // `https://bucket.host` has the path `/`
        }
        if !query.is_empty() {
            let pairs: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", strict_encode(k), strict_encode(v)))
                .collect();
            uri = format!("{uri}?{}", pairs.join("&"));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| anyhow!("{shown}: {op}: {e}"))?;
            AwsAuthorizer::new(&self.credential, "s3", &self.region)
                .try_authorize(&mut request, None)
                .map_err(|e| anyhow!("{shown}: {op}: signing: {e}"))?;
            let failure = match self.http.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let answer = response.into_body().bytes().await;
                    match answer {
                        Ok(answer) if status.is_success() => return Ok(answer),
                        Ok(answer) => {
                            let text = String::from_utf8_lossy(&answer);
                            let transient = status.is_server_error()
                                || status == StatusCode::TOO_MANY_REQUESTS
                                || xml_code(&text).as_deref() == Some("SlowDown");
                            let e = service_error(shown, op, status.as_u16(), &text);
                            if !transient || attempt >= ATTEMPTS {
                                return Err(e);
                            }
                            e
                        }
                        Err(e) => anyhow!("{shown}: {op}: reading the answer: {e}"),
                    }
                }
                Err(e) => anyhow!("{shown}: {op}: {}", one_line(&error_chain(&e))),
            };
            if attempt >= ATTEMPTS {
                return Err(failure);
            }
            tokio::time::sleep(Duration::from_millis(200 * 4u64.pow(attempt - 1))).await;
        }
    }
}

/// RFC 3986 unreserved characters as they are, everything else %-encoded: what SigV4
/// canonicalises the query to, so the signed and the sent query are the same.
fn strict_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !text.contains(&s) {
            text = format!("{text}: {s}");
        }
        cur = c.source();
    }
    text
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_query_encoding() {
        assert_eq!(strict_encode("prod/pg base+1~"), "prod%2Fpg%20base%2B1~");
        assert_eq!(strict_encode("é"), "%C3%A9");
        assert_eq!(strict_encode(""), "");
    }

    #[test]
    fn reads_a_list_page() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/b &amp; c</NextKeyMarker><NextUploadIdMarker>id-2</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/a</Key><UploadId>id-1</UploadId><Initiator><ID>x</ID></Initiator>
    <StorageClass>STANDARD</StorageClass><Initiated>2026-12-06T16:27:29.000Z</Initiated></Upload>
  <Prefix>p/</Prefix>
  <Upload><Key>p/b &amp; c</Key><UploadId>id-2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListResult = quick_xml::de::from_reader(xml.as_bytes()).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("p/b & c"));
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(page.uploads[1].key, "p/b & c");
        assert_eq!(
            page.uploads[0].initiated.as_deref(),
            Some("2026-12-06T16:27:29.000Z")
        );
        let empty: ListResult = quick_xml::de::from_reader(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"
                .as_bytes(),
        )
        .unwrap();
        assert!(empty.uploads.is_empty() && !empty.is_truncated);
    }
}
