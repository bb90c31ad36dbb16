//! What `pitr setup` asks a PostgreSQL server: its archiving settings, and `ALTER SYSTEM`
//! to change them.

use anyhow::{bail, Result};

use super::{db_err, PgConn};

/// One row of `pg_settings`.
#[derive(Debug, Clone)]
pub struct Setting {
    pub name: String,
    /// The value in the setting's base unit (seconds for archive_timeout).
    pub setting: String,
    /// `postmaster` (a restart applies it) or `sighup` (a reload does).
    pub context: String,
    pub pending_restart: bool,
}

/// The settings WAL archiving depends on.
pub const ARCHIVING: [&str; 4] = [
    "wal_level",
    "archive_mode",
    "archive_command",
    "archive_timeout",
];

/// Reads the archiving settings, and whether the session is a superuser.
pub async fn archiving_settings(conn: &PgConn) -> Result<(Vec<Setting>, bool)> {
    let names: Vec<String> = ARCHIVING.iter().map(|s| s.to_string()).collect();
    let rows = conn
        .client
        .query(
            "SELECT name, setting, context, pending_restart FROM pg_settings \
             WHERE name = ANY($1) ORDER BY name",
            &[&names],
        )
        .await
        .map_err(db_err)?;
    let settings = rows
        .iter()
        .map(|r| Setting {
            name: r.get(0),
            setting: r.get(1),
            context: r.get(2),
            pending_restart: r.get(3),
        })
        .collect();
    let row = conn
        .client
        .query_one("SELECT current_setting('is_superuser') = 'on'", &[])
        .await
        .map_err(db_err)?;
    Ok((settings, row.get(0)))
}

/// A string literal in PostgreSQL's standard syntax (utility statements take no parameters).
fn literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// `ALTER SYSTEM SET name = value` for each pair, then `pg_reload_conf()`.
pub async fn alter_system(conn: &PgConn, changes: &[(String, String)]) -> Result<()> {
    for (name, value) in changes {
        if !ARCHIVING.contains(&name.as_str()) {
            bail!("{name}: not an archiving setting");
        }
        let sql = format!("ALTER SYSTEM SET {name} = {}", literal(value));
        if let Err(e) = conn.client.batch_execute(&sql).await {
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                bail!(
                    "ALTER SYSTEM SET {name}: permission denied: it needs a superuser (or \
                     GRANT ALTER SYSTEM ON PARAMETER {name}); connect as one, or make the \
                     changes listed by `pitr setup` by hand"
                );
            }
            return Err(db_err(e));
        }
    }
    conn.client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(db_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_are_quoted() {
        assert_eq!(super::literal("a'b"), "'a''b'");
        assert_eq!(super::literal("a\\b'"), "E'a\\\\b'''");
    }
}
