//! A site's `STATUS.json`, read as untrusted input.
//!
//! The deposit zone is written by agents on other machines: whatever is there may be
//! malformed, huge, a symbolic link to `/etc/shadow`, or name `../../etc/passwd`. A report is
//! opened without following a link (`O_NOFOLLOW`, and it must be a regular file), read up to
//! [`MAX_REPORT_BYTES`] and no further, parsed against a schema that denies unknown fields,
//! and every file name in it must be a single path component. Anything else makes the
//! site's jobs UNKNOWN with the reason.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::is_path_component;

/// Reports larger than this are refused unread.
pub const MAX_REPORT_BYTES: u64 = 1024 * 1024;

/// The file name of a site's report.
pub const REPORT_NAME: &str = "STATUS.json";

/// `STATUS.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    pub agent: Agent,
    pub generated_at: DateTime<Utc>,
    pub databases: Vec<DatabaseReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub company: String,
    pub city: String,
    pub site: String,
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupOutcome {
    Success,
    Failed,
}

/// One database's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseReport {
    pub database: String,
    pub engine: String,
    pub status: BackupOutcome,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub backup_seconds: Option<f64>,
    #[serde(default)]
    pub compression_seconds: Option<f64>,
    #[serde(default)]
    pub transfer_seconds: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub last_drill: Option<Drill>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    pub at: DateTime<Utc>,
    pub status: String,
}

/// What a successful database line must carry, checked: the file, its size and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed<'a> {
    pub file: &'a str,
    pub size_bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl DatabaseReport {
    /// The file a success names, or why the line cannot be judged.
    pub fn claimed(&self) -> Result<Claimed<'_>, String> {
        let file = self
            .file
            .as_deref()
            .ok_or_else(|| format!("database `{}`: a success without `file`", self.database))?;
        check_file_name(file).map_err(|e| format!("database `{}`: {e}", self.database))?;
        let size_bytes = self.size_bytes.ok_or_else(|| {
            format!(
                "database `{}`: a success without `size_bytes`",
                self.database
            )
        })?;
        let sha = self
            .sha256
            .as_deref()
            .ok_or_else(|| format!("database `{}`: a success without `sha256`", self.database))?;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "database `{}`: sha256 is not 64 hexadecimal digits",
                self.database
            ));
        }
        Ok(Claimed {
            file,
            size_bytes,
            sha256: sha.to_ascii_lowercase(),
        })
    }
}

/// A file name from a report: one path component, printable, not hidden, not ours.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(80).flat_map(char::escape_debug).collect();
    if !is_path_component(name) {
        return Err(format!(
            "file `{shown}` is not a single file name (no `/`, no `..`, not absolute)"
        ));
    }
    if name.starts_with('.') || name.chars().any(char::is_control) || name.len() > 255 {
        return Err(format!(
            "file `{shown}` is not an acceptable name (hidden, control characters or too long)"
        ));
    }
    Ok(())
}

/// Reads and checks a report. `Ok(None)`: there is none. `Err`: the reason it is UNKNOWN.
pub fn read(path: &Path) -> Result<Option<StatusReport>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!("{}: a symbolic link, not followed", path.display()))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let text = read_bounded(file, path)?;
    parse(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_bounded(file: File, path: &Path) -> Result<Vec<u8>, String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if meta.len() > MAX_REPORT_BYTES {
        return Err(format!(
            "{}: {} bytes, over the limit of {MAX_REPORT_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow while read: never take more than the limit.
    file.take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_REPORT_BYTES {
        return Err(format!(
            "{}: over the limit of {MAX_REPORT_BYTES} bytes",
            path.display()
        ));
    }
    Ok(buf)
}

/// Parses a report's bytes against the schema; the error says where and what.
pub fn parse(bytes: &[u8]) -> Result<StatusReport, String> {
    let r: StatusReport =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid report: {e}"))?;
    for (key, v) in [
        ("company", &r.agent.company),
        ("city", &r.agent.city),
        ("site", &r.agent.site),
    ] {
        if !is_path_component(v) {
            return Err(format!("agent.{key} is not a single name"));
        }
    }
    for d in &r.databases {
        if !is_path_component(&d.database) {
            return Err(format!(
                "database `{}` is not a single name",
                d.database.escape_debug()
            ));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestDir;

    const GOOD: &str = r#"{"agent": {"company": "ville", "city": "marseille", "site": "centre", "host": "srv1"},
 "generated_at": "2026-12-06T02:05:00Z",
 "databases": [{"database": "mairie", "engine": "postgres", "status": "success",
                "file": "mairie_full_20261206_020000.dump", "size_bytes": 123,
                "sha256": "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
                "started_at": "2026-12-06T02:00:00Z", "finished_at": "2026-12-06T02:00:04Z",
                "backup_seconds": 4.1, "compression_seconds": 0.0, "transfer_seconds": 0.3,
                "error": null, "last_drill": {"at": "2026-12-01T03:00:00Z", "status": "success"}},
               {"database": "etat_civil", "engine": "mysql", "status": "failed", "error": "disk full"}]}"#;

    #[test]
    fn the_contract_example_parses() {
        let r = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(r.agent.site, "centre");
        let c = r.databases[0].claimed().unwrap();
        assert_eq!(c.size_bytes, 123);
        assert!(c.sha256.starts_with("abcdef"));
        assert_eq!(r.databases[1].status, BackupOutcome::Failed);
        assert!(r.databases[1].claimed().is_err());
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        let text = GOOD.replace("mairie_full_20261206_020000.dump", "../../etc/passwd");
        let r = parse(text.as_bytes()).unwrap();
        let e = r.databases[0].claimed().unwrap_err();
        assert!(
            e.contains("`../../etc/passwd` is not a single file name"),
            "{e}"
        );
        for bad in ["/etc/passwd", "..", "a/b", "", ".hidden", "a\0b", "a\nb"] {
            let mut r = r.clone();
            r.databases[0].file = Some(bad.into());
            let e = r.databases[0].claimed().unwrap_err();
            assert!(e.contains("database `mairie`: file"), "{bad:?}: {e}");
        }
        let e = parse(GOOD.replace("\"centre\"", "\"../x\"").as_bytes()).unwrap_err();
        assert!(e.contains("agent.site"), "{e}");
    }

    #[test]
    fn malformed_and_unknown_fields_are_refused() {
        assert!(parse(b"{not json")
            .unwrap_err()
            .contains("not a valid report"));
        let e = parse(GOOD.replace("\"host\"", "\"hostname\"").as_bytes()).unwrap_err();
        assert!(e.contains("unknown field `hostname`"), "{e}");
        let e = parse(GOOD.replace("\"success\",\n", "\"maybe\",\n").as_bytes()).unwrap_err();
        assert!(e.contains("maybe"), "{e}");
        let r = parse(GOOD.replace("ABCDEF", "XYZ").as_bytes()).unwrap();
        assert!(r.databases[0]
            .claimed()
            .unwrap_err()
            .contains("64 hexadecimal"));
    }

    #[test]
    fn reading_refuses_links_huge_files_and_directories() {
        let d = TestDir::new("report");
        assert_eq!(read(&d.join("STATUS.json")).unwrap(), None);
        std::fs::write(d.join("real.json"), GOOD).unwrap();
        assert!(read(&d.join("real.json")).unwrap().is_some());
        std::os::unix::fs::symlink(d.join("real.json"), d.join("link.json")).unwrap();
        let e = read(&d.join("link.json")).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        // 100 MB (sparse): refused by its size, never read.
        let big = File::create(d.join("big.json")).unwrap();
        big.set_len(100 * 1024 * 1024).unwrap();
        let e = read(&d.join("big.json")).unwrap_err();
        assert!(e.contains("over the limit"), "{e}");
        std::fs::create_dir(d.join("dir.json")).unwrap();
        assert!(read(&d.join("dir.json"))
            .unwrap_err()
            .contains("not a regular file"));
    }
}
