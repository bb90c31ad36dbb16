//! `s3://bucket/prefix`: where a store lives, as a configuration names it.

use std::fmt;

/// A bucket and a key prefix. The prefix has no leading or trailing slash and no empty, `.`
/// or `..` segment (object keys are made from it); it may be empty (the whole bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// `s3://bucket`, `s3://bucket/`, `s3://bucket/a/b/`; repeated slashes in the prefix are
    /// one. `None` for anything else: another scheme, no bucket, a bucket name S3 would refuse
    /// (3 to 63 characters of `a-z 0-9 . -`, starting and ending with a letter or digit), a
    /// `.` or `..` segment, a control character, or a query or fragment (`?`, `#`).
    pub fn parse(s: &str) -> Option<S3Url> {
        let rest = s.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_bucket(bucket)
            || prefix.contains(['?', '#'])
            || prefix.chars().any(char::is_control)
        {
            return None;
        }
        let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return None;
        }
        Some(S3Url {
            bucket: bucket.to_string(),
            prefix: segments.join("/"),
        })
    }

    /// The full key of `name` under the prefix: `prefix/name` (`name` alone when the prefix
    /// is empty). Slashes at the ends of `name` are dropped; an empty `name` is the prefix.
    pub fn key(&self, name: &str) -> String {
        let name = name.trim_matches('/');
        match (self.prefix.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{name}", self.prefix),
        }
    }

    /// `s3://bucket/key`, as messages name an object.
    pub fn display(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key.trim_start_matches('/'))
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

fn valid_bucket(b: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.chars().all(ok_char)
        && ok_end(b.chars().next())
        && ok_end(b.chars().last())
        && !b.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(bucket: &str, prefix: &str) -> Option<S3Url> {
        Some(S3Url {
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    }

    #[test]
    fn parses_bucket_and_prefix() {
        assert_eq!(
            S3Url::parse("s3://mairie-backups"),
            url("mairie-backups", "")
        );
        assert_eq!(
            S3Url::parse("s3://mairie-backups/"),
            url("mairie-backups", "")
        );
        assert_eq!(S3Url::parse("s3://b12/prod/pg"), url("b12", "prod/pg"));
        assert_eq!(S3Url::parse("s3://b12//prod//pg/"), url("b12", "prod/pg"));
        assert_eq!(
            S3Url::parse("s3://my.bucket-1/x y/é"),
            url("my.bucket-1", "x y/é")
        );
    }

    #[test]
    fn refuses_what_is_not_an_s3_url() {
        for bad in [
            "",
            "s3://",
            "s3:///prefix",
            "S3://bucket",
            "https://bucket/x",
            "/var/backups",
            "s3://ab",
            "s3://Bucket",
            "s3://bucket_name",
            "s3://-bucket",
            "s3://bucket-",
            "s3://a..b",
            &format!("s3://{}", "a".repeat(64)),
            "s3://bucket/a/../b",
            "s3://bucket/./b",
            "s3://bucket/a?versionId=1",
            "s3://bucket/a#x",
            "s3://bucket/a\nb",
        ] {
            assert_eq!(S3Url::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_and_display() {
        let u = S3Url::parse("s3://b12/prod/pg/").unwrap();
        assert_eq!(u.key("base/manifest.json"), "prod/pg/base/manifest.json");
        assert_eq!(u.key("/x/"), "prod/pg/x");
        assert_eq!(u.key(""), "prod/pg");
        assert_eq!(u.display(&u.key("x")), "s3://b12/prod/pg/x");
        assert_eq!(u.to_string(), "s3://b12/prod/pg");
        let root = S3Url::parse("s3://b12").unwrap();
        assert_eq!(root.key("x"), "x");
        assert_eq!(root.key(""), "");
        assert_eq!(root.to_string(), "s3://b12");
    }
}
