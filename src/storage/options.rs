//! How to reach a bucket, from the configuration: endpoint, region, addressing style, server-
//! side encryption, storage class. Never credentials (see `credentials.rs`).

use anyhow::Result;
use reqwest::Url;
use serde::Deserialize;

use crate::error::ConfigError;

/// The options of an `s3://` location. Every field is optional: without any, the bucket is on
/// AWS S3 in us-east-1, addressed virtual-hosted style over https.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// An S3-compatible service's URL (`https://s3.fr-par.scw.cloud`,
    /// `http://127.0.0.1:18333`); AWS's regional endpoint when absent.
    pub endpoint: Option<String>,
    /// Default `us-east-1`.
    pub region: Option<String>,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`. Default: true
    /// when an endpoint is set (what S3-compatible services expect), false on AWS.
    pub path_style: Option<bool>,
    /// Server-side encryption asked of every write: `AES256` (keys managed by the service) or
    /// `aws:kms` (with `sse_kms_key_id`, or the bucket's default KMS key).
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    /// `STANDARD`, `STANDARD_IA`, `GLACIER_IR` … for every object written.
    pub storage_class: Option<String>,
    /// Allow a plain-http endpoint. Default: true only for a loopback endpoint (127.0.0.0/8,
    /// ::1, localhost).
    pub allow_http: Option<bool>,
}

pub(crate) const DEFAULT_REGION: &str = "us-east-1";

impl S3Options {
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_REGION)
    }

    pub fn path_style(&self) -> bool {
        self.path_style.unwrap_or(self.endpoint.is_some())
    }

    pub fn allow_http(&self) -> bool {
        self.allow_http
            .unwrap_or_else(|| self.endpoint.as_deref().is_some_and(is_loopback))
    }

    /// Checks every field; the message names the option to fix.
    pub fn validate(&self) -> Result<()> {
        if let Some(endpoint) = &self.endpoint {
            let url = endpoint_url(endpoint)?;
            if url.scheme() == "http" && !self.allow_http() {
                return Err(config(format!(
                    "S3 endpoint `{endpoint}` is plain http: set allow_http: true to use it (only a loopback endpoint is allowed without it)"
                )));
            }
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(config("S3 region is empty".into()));
        }
        match self.sse.as_deref() {
            None | Some("AES256") | Some("aws:kms") => {}
            Some(other) => {
                return Err(config(format!(
                    "S3 sse `{other}` is not one of AES256, aws:kms"
                )))
            }
        }
        if self.sse_kms_key_id.is_some() && self.sse.as_deref() != Some("aws:kms") {
            return Err(config(
                "S3 sse_kms_key_id is set but sse is not aws:kms".into(),
            ));
        }
        if let Some(class) = &self.storage_class {
            let ok = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
            if class.is_empty() || !class.chars().all(ok) {
                return Err(config(format!(
                    "S3 storage_class `{class}` is not a storage class name (STANDARD, STANDARD_IA, GLACIER_IR …)"
                )));
            }
        }
        Ok(())
    }

    /// The URL that object keys are appended to: `https://bucket.s3.region.amazonaws.com`,
    /// `https://s3.region.amazonaws.com/bucket`, `https://bucket.host` or `https://host/bucket`
    /// for an endpoint. Assumes [`S3Options::validate`] passed.
    pub(crate) fn bucket_endpoint(&self, bucket: &str) -> Result<String> {
        let region = self.region();
        Ok(match (&self.endpoint, self.path_style()) {
            (None, false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, true) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
            (Some(endpoint), true) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (Some(endpoint), false) => {
                let mut url = endpoint_url(endpoint)?;
                let host = url.host_str().unwrap_or_default().to_string();
                url.set_host(Some(&format!("{bucket}.{host}")))
                    .map_err(|e| {
                        config(format!(
                            "S3 endpoint `{endpoint}` with bucket `{bucket}`: {e}"
                        ))
                    })?;
                url.as_str().trim_end_matches('/').to_string()
            }
        })
    }
}

fn endpoint_url(endpoint: &str) -> Result<Url> {
    let url = Url::parse(endpoint)
        .map_err(|e| config(format!("S3 endpoint `{endpoint}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(config(format!(
            "S3 endpoint `{endpoint}` is not an http:// or https:// URL with a host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(config(format!(
            "S3 endpoint `{endpoint}` has a query, fragment or user: give the service's URL only (credentials come from the environment)"
        )));
    }
    Ok(url)
}

fn is_loopback(endpoint: &str) -> bool {
    let Some(url) = Url::parse(endpoint).ok() else {
        return false;
    };
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn config(msg: String) -> anyhow::Error {
    ConfigError::new(msg).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(yaml: &str) -> S3Options {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_on_aws() {
        let o = S3Options::default();
        assert_eq!(o.region(), "us-east-1");
        assert!(!o.path_style());
        assert!(!o.allow_http());
        o.validate().unwrap();
        assert_eq!(
            o.bucket_endpoint("b12").unwrap(),
            "https://b12.s3.us-east-1.amazonaws.com"
        );
        let o = opts("region: eu-west-3\npath_style: true\n");
        assert_eq!(
            o.bucket_endpoint("b12").unwrap(),
            "https://s3.eu-west-3.amazonaws.com/b12"
        );
    }

    #[test]
    fn an_endpoint_means_path_style_and_loopback_means_http() {
        let o = opts("endpoint: http://127.0.0.1:18333\n");
        assert!(o.path_style());
        assert!(o.allow_http());
        o.validate().unwrap();
        assert_eq!(
            o.bucket_endpoint("b12").unwrap(),
            "http://127.0.0.1:18333/b12"
        );
        for local in [
            "http://localhost:9000",
            "http://[::1]:9000",
            "http://127.1.2.3",
        ] {
            assert!(
                opts(&format!("endpoint: {local}\n")).allow_http(),
                "{local}"
            );
        }

        let remote = opts("endpoint: http://minio.example.org:9000/\n");
        assert!(!remote.allow_http());
        let e = remote.validate().unwrap_err();
        assert!(e.to_string().contains("allow_http: true"), "{e}");
        assert!(crate::error::is_config_error(&e));
        let allowed = opts("endpoint: http://minio.example.org:9000/\nallow_http: true\n");
        allowed.validate().unwrap();
        assert_eq!(
            allowed.bucket_endpoint("b12").unwrap(),
            "http://minio.example.org:9000/b12"
        );
        // Refused even on loopback when the configuration says so.
        assert!(
            opts("endpoint: http://127.0.0.1:18333\nallow_http: false\n")
                .validate()
                .is_err()
        );
    }

    #[test]
    fn virtual_hosted_endpoint_puts_the_bucket_in_the_host() {
        let o = opts("endpoint: https://s3.fr-par.scw.cloud\npath_style: false\nregion: fr-par\n");
        o.validate().unwrap();
        assert_eq!(
            o.bucket_endpoint("b12").unwrap(),
            "https://b12.s3.fr-par.scw.cloud"
        );
    }

    #[test]
    fn encryption_and_storage_class() {
        opts("sse: AES256\nstorage_class: STANDARD_IA\n")
            .validate()
            .unwrap();
        opts("sse: aws:kms\nsse_kms_key_id: arn:aws:kms:eu-west-3:1:key/x\n")
            .validate()
            .unwrap();
        for (bad, says) in [
            ("sse: aes256\n", "sse `aes256`"),
            ("sse_kms_key_id: k\n", "sse_kms_key_id"),
            ("sse: AES256\nsse_kms_key_id: k\n", "sse_kms_key_id"),
            ("storage_class: standard\n", "storage_class"),
            ("storage_class: ''\n", "storage_class"),
            ("region: ''\n", "region"),
            ("endpoint: ftp://host\n", "http:// or https://"),
            ("endpoint: s3.example.org\n", "not a URL"),
            ("endpoint: https://k:s@s3.example.org\n", "user"),
        ] {
            let e = opts(bad).validate().unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_norway::from_str::<S3Options>("access_key: AKIA\n").unwrap_err();
        assert!(e.to_string().contains("access_key"), "{e}");
    }
}
