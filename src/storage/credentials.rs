//! S3 keys: from the environment or the AWS shared credentials file, never from the
//! configuration (which is committed, copied and shown).
//!
//! The order is the AWS CLI's, restricted to static keys: `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else the profile `AWS_PROFILE`
//! (`default`) of `AWS_SHARED_CREDENTIALS_FILE` (`~/.aws/credentials`).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::ConfigError;

/// Static keys. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Credentials {
    pub fn new(access_key_id: &str, secret_access_key: &str) -> S3Credentials {
        S3Credentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: None,
        }
    }

    /// From this process's environment and HOME.
    pub fn from_env() -> Result<S3Credentials> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        S3Credentials::resolve(|k| std::env::var(k).ok(), home.as_deref())
    }

    /// The lookup, with the environment given as a function (tests).
    pub fn resolve(
        env: impl Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<S3Credentials> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                return Ok(S3Credentials {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token: var("AWS_SESSION_TOKEN"),
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
                )
                .into())
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
                )
                .into())
            }
            (None, None) => {}
        }
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let file = match var("AWS_SHARED_CREDENTIALS_FILE") {
            Some(f) => Some(PathBuf::from(f)),
            None => home.map(|h| h.join(".aws/credentials")),
        };
        let where_ = file
            .as_deref()
            .map_or("~/.aws/credentials".into(), |f| f.display().to_string());
        let none = || {
            anyhow::Error::from(ConfigError::new(format!(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys), or give profile `{profile}` (AWS_PROFILE) aws_access_key_id and aws_secret_access_key in {where_} (AWS_SHARED_CREDENTIALS_FILE)"
            )))
        };
        let Some(file) = file else {
            return Err(none());
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(none()),
            Err(e) => {
                return Err(ConfigError::new(format!("reading {}: {e}", file.display())).into())
            }
        };
        let section = ini_section(&text, &profile);
        match (
            section.get("aws_access_key_id"),
            section.get("aws_secret_access_key"),
        ) {
            (Some(id), Some(secret)) => Ok(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: section.get("aws_session_token").cloned(),
            }),
            _ => Err(none()),
        }
    }
}

/// The `key = value` pairs of `[name]` in an INI text (the AWS credentials file): keys
/// lower-cased, values trimmed, `#` and `;` comment lines skipped, empty values dropped. A
/// section given twice is read as one, the later value winning.
fn ini_section(text: &str, name: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            if !v.is_empty() {
                out.insert(k.trim().to_ascii_lowercase(), v.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FILE: &str = "\
# keys of the DBA
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key=default-secret

; the backup account
[ backups ]
AWS_ACCESS_KEY_ID = AKIABACKUPS
aws_secret_access_key = backups/secret+with=equals
aws_session_token = token-123
region = eu-west-3

[incomplete]
aws_access_key_id = AKIAONLY
";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn home_with_credentials() -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "mairie-dba-s3-creds-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        let file = dir.join(".aws/credentials");
        std::fs::write(&file, FILE).unwrap();
        (dir, file)
    }

    #[test]
    fn environment_first() {
        let c = S3Credentials::resolve(
            env(&[
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", "tok"),
                ("AWS_PROFILE", "backups"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAENV");
        assert_eq!(c.secret_access_key, "env-secret");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert!(!format!("{c:?}").contains("env-secret"));
        assert!(!format!("{c:?}").contains("tok\""));

        let e = S3Credentials::resolve(env(&[("AWS_ACCESS_KEY_ID", "AKIAENV")]), None).unwrap_err();
        assert!(
            e.to_string().contains("AWS_SECRET_ACCESS_KEY is not"),
            "{e}"
        );
    }

    #[test]
    fn profiles_of_the_shared_file() {
        let (home, file) = home_with_credentials();
        let c = S3Credentials::resolve(env(&[]), Some(&home)).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("AKIADEFAULT", "default-secret")
        );
        assert_eq!(c.session_token, None);

        let c = S3Credentials::resolve(env(&[("AWS_PROFILE", "backups")]), Some(&home)).unwrap();
        assert_eq!(c.access_key_id, "AKIABACKUPS");
        assert_eq!(c.secret_access_key, "backups/secret+with=equals");
        assert_eq!(c.session_token.as_deref(), Some("token-123"));

        // AWS_SHARED_CREDENTIALS_FILE wins over HOME.
        let f = file.display().to_string();
        let c = S3Credentials::resolve(
            env(&[
                ("AWS_SHARED_CREDENTIALS_FILE", &f),
                ("AWS_PROFILE", "backups"),
            ]),
            Some(Path::new("/nonexistent")),
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIABACKUPS");

        for profile in ["incomplete", "absent"] {
            let e = S3Credentials::resolve(env(&[("AWS_PROFILE", profile)]), Some(&home))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("profile `{profile}`")), "{e}");
            assert!(e.contains(&f), "{e}");
        }
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn nothing_found_names_every_source() {
        let e = S3Credentials::resolve(env(&[]), Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(crate::error::is_config_error(&e));
        let e = e.to_string();
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/.aws/credentials",
            "profile `default`",
        ] {
            assert!(e.contains(name), "{name} not in {e}");
        }
    }

    #[test]
    fn ini_sections() {
        let s = ini_section(FILE, "backups");
        assert_eq!(s["aws_access_key_id"], "AKIABACKUPS");
        assert_eq!(s["region"], "eu-west-3");
        assert!(ini_section(FILE, "nope").is_empty());
        let s = ini_section("[a]\nk = 1\n[b]\nk = 2\n[a]\nk = 3\nempty =\n", "a");
        assert_eq!(s["k"], "3");
        assert!(!s.contains_key("empty"));
    }
}
