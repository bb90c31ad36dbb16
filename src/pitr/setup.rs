//! `pitr setup`: what the server's archiving settings are, what they should be, and why.
//!
//! Engine-free: it judges the values read by `engine::postgres::pitr` against what
//! archiving through `wal push` needs.

use serde::Serialize;

use crate::engine::postgres::pitr::Setting;

/// The `archive_timeout` recommended when none is set (or a long one): a quiet server then
/// still archives a segment at least every minute, bounding what a lost server can lose.
pub const RECOMMENDED_TIMEOUT_S: u32 = 60;
/// The longest `archive_timeout` taken as deliberate.
pub const MAX_TIMEOUT_S: u32 = 300;

/// One setting's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct SettingCheck {
    pub name: String,
    pub current: String,
    pub wanted: String,
    /// `ok` or `change`.
    pub status: &'static str,
    /// What applies a change: `restart` or `reload`.
    pub applies_on: &'static str,
    pub why: String,
}

impl SettingCheck {
    pub fn needs_change(&self) -> bool {
        self.status == "change"
    }
}

/// A word the shell reads back unchanged: quoted only when it has to be.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'/' | b'.' | b'_' | b'-' | b'=' | b':' | b',' | b'+' | b'@'
                )
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The archive_command that calls this binary for `target` with the config `config`.
pub fn wanted_archive_command(exe: &str, config: &str, target: &str) -> String {
    format!(
        "{} -c {} -t {} wal push %p",
        shell_word(exe),
        shell_word(config),
        shell_word(target)
    )
}

/// Judges each archiving setting.
pub fn judge(settings: &[Setting], archive_command: &str) -> Vec<SettingCheck> {
    let mut out = Vec::new();
    for s in settings {
        let applies_on = if s.context == "postmaster" {
            "restart"
        } else {
            "reload"
        };
        let (ok, wanted, why) = match s.name.as_str() {
            "wal_level" => (
                matches!(s.setting.as_str(), "replica" | "logical"),
                if s.setting == "logical" { "logical" } else { "replica" }.to_string(),
                "minimal WAL cannot rebuild a base backup: replica (or logical) is needed".to_string(),
            ),
            "archive_mode" => (
                matches!(s.setting.as_str(), "on" | "always"),
                if s.setting == "always" { "always" } else { "on" }.to_string(),
                "archive_command runs only when archive_mode is on".to_string(),
            ),
            "archive_command" => (
                s.setting == archive_command,
                archive_command.to_string(),
                "each finished segment goes to the archive through `wal push`, with this config and target".to_string(),
            ),
            "archive_timeout" => {
                let secs: u32 = s.setting.parse().unwrap_or(0);
                let ok = (1..=MAX_TIMEOUT_S).contains(&secs);
                (
                    ok,
                    if ok { s.setting.clone() } else { RECOMMENDED_TIMEOUT_S.to_string() },
                    format!(
                        "a quiet server switches segments only this often: at most {MAX_TIMEOUT_S} s bounds the loss (0 means never)"
                    ),
                )
            }
            _ => continue,
        };
        out.push(SettingCheck {
            name: s.name.clone(),
            current: s.setting.clone(),
            wanted,
            status: if ok { "ok" } else { "change" },
            applies_on,
            why,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, v: &str, ctx: &str) -> Setting {
        Setting {
            name: name.into(),
            setting: v.into(),
            context: ctx.into(),
            pending_restart: false,
        }
    }

    #[test]
    fn judges_each_setting() {
        let cmd = wanted_archive_command("/usr/bin/mairie-dba", "/etc/my dba/c.yml", "pg");
        assert_eq!(
            cmd,
            "/usr/bin/mairie-dba -c '/etc/my dba/c.yml' -t pg wal push %p"
        );
        let v = judge(
            &[
                s("wal_level", "minimal", "postmaster"),
                s("archive_mode", "always", "postmaster"),
                s("archive_command", "(disabled)", "sighup"),
                s("archive_timeout", "0", "sighup"),
            ],
            &cmd,
        );
        let st: Vec<_> = v
            .iter()
            .map(|c| (c.name.as_str(), c.status, c.applies_on))
            .collect();
        assert_eq!(
            st,
            [
                ("wal_level", "change", "restart"),
                ("archive_mode", "ok", "restart"),
                ("archive_command", "change", "reload"),
                ("archive_timeout", "change", "reload"),
            ]
        );
        assert_eq!(v[3].wanted, "60");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
