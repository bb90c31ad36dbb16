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

// ---------------------------------------------------------------------------------------------
// What `pitr check` (and the `wal_archiving` health check, and the exporter) ask the server.

/// The archiver's state and the settings it depends on, as one query reads them. Ages are
/// measured on the server's clock (`clock_timestamp()`), never below zero (clamped here:
/// SQL's `greatest` would turn a NULL time into a zero age); times are UTC, as RFC 3339
/// text for messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchiverState {
    /// `current_user`, for the grants messages name.
    pub user: String,
    pub in_recovery: bool,
    /// `wal_segment_size`, in bytes.
    pub wal_segment_size: u64,
    /// `pg_walfile_name(pg_current_wal_lsn())`: the segment being written (None on a standby).
    pub current_wal: Option<String>,
    /// `archive_mode`; None when this role may not read it.
    pub archive_mode: Option<String>,
    /// Whether `archive_mode` waits for a restart to take a new value.
    pub archive_mode_pending_restart: bool,
    /// `archive_command`; None when this role may not read it.
    pub archive_command: Option<String>,
    /// `archive_library` (PostgreSQL 15 and later); None before, or when hidden.
    pub archive_library: Option<String>,
    /// `archive_timeout`, in seconds; None when hidden.
    pub archive_timeout: Option<i64>,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_age: Option<f64>,
    pub last_archived_time: Option<String>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_age: Option<f64>,
    pub last_failed_time: Option<String>,
    pub stats_reset: Option<String>,
}

/// A UTC time as RFC 3339 text, in SQL.
macro_rules! utc {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    };
}

/// Reads `pg_stat_archiver`, the archiving settings this role may see (`pg_settings` leaves
/// out those it may not), and the segment being written. `pg_current_wal_lsn()` fails during
/// recovery: CASE keeps a standby from calling it.
pub async fn archiver_state(conn: &PgConn) -> Result<ArchiverState> {
    let r = conn
        .client
        .query_one(
            concat!(
                "SELECT current_user::text, pg_is_in_recovery(),
                        pg_size_bytes(current_setting('wal_segment_size'))::bigint,
                        CASE WHEN pg_is_in_recovery() THEN NULL
                             ELSE pg_walfile_name(pg_current_wal_lsn()) END,
                        a.archived_count, a.last_archived_wal,
                        extract(epoch FROM clock_timestamp() - a.last_archived_time)::float8,
                        ",
                utc!("a.last_archived_time"),
                ",
                        a.failed_count, a.last_failed_wal,
                        extract(epoch FROM clock_timestamp() - a.last_failed_time)::float8,
                        ",
                utc!("a.last_failed_time"),
                ", ",
                utc!("a.stats_reset"),
                "
                 FROM pg_stat_archiver a"
            ),
            &[],
        )
        .await
        .map_err(db_err)?;
    let mut s = ArchiverState {
        user: r.get(0),
        in_recovery: r.get(1),
        wal_segment_size: r.get::<_, i64>(2).max(0) as u64,
        current_wal: r.get(3),
        archived_count: r.get(4),
        last_archived_wal: r.get(5),
        last_archived_age: r.get::<_, Option<f64>>(6).map(|a| a.max(0.0)),
        last_archived_time: r.get(7),
        failed_count: r.get(8),
        last_failed_wal: r.get(9),
        last_failed_age: r.get::<_, Option<f64>>(10).map(|a| a.max(0.0)),
        last_failed_time: r.get(11),
        stats_reset: r.get(12),
        ..ArchiverState::default()
    };
    let names: Vec<String> = [
        "archive_mode",
        "archive_command",
        "archive_library",
        "archive_timeout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows = conn
        .client
        .query(
            "SELECT name, setting, pending_restart FROM pg_settings WHERE name = ANY($1)",
            &[&names],
        )
        .await
        .map_err(db_err)?;
    for row in rows {
        let (name, setting, pending): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        match name.as_str() {
            "archive_mode" => {
                s.archive_mode = Some(setting);
                s.archive_mode_pending_restart = pending;
            }
            "archive_command" => s.archive_command = Some(setting),
            "archive_library" => s.archive_library = Some(setting),
            "archive_timeout" => s.archive_timeout = setting.parse().ok(),
            _ => {}
        }
    }
    Ok(s)
}

/// The WAL files waiting for `archive_command`: `pg_wal/archive_status/*.ready`.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadyFiles {
    Counted {
        count: u64,
        /// The oldest waiting file (by name: the archiver takes them in that order).
        oldest: Option<String>,
        /// Seconds since the oldest was marked ready.
        oldest_age: Option<f64>,
    },
    /// Not counted: the role may not call `pg_ls_archive_statusdir()`; the grant it needs.
    NotPermitted(String),
    /// Not counted: the server has no `pg_ls_archive_statusdir()` (before PostgreSQL 12).
    Unsupported(String),
}

/// Counts the `.ready` files with `pg_ls_archive_statusdir()` (PostgreSQL 12 and later),
/// which only superusers and members of `pg_monitor` may call: asked first, so that a role
/// without it gets the grant to give rather than an error.
pub async fn ready_files(conn: &PgConn) -> Result<ReadyFiles> {
    let r = conn
        .client
        .query_one(
            "SELECT to_regprocedure('pg_catalog.pg_ls_archive_statusdir()') IS NOT NULL,
                    coalesce(has_function_privilege(
                        to_regprocedure('pg_catalog.pg_ls_archive_statusdir()'), 'EXECUTE'), false),
                    current_user::text, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(db_err)?;
    let (exists, allowed, user, version): (bool, bool, String, String) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    if !exists {
        return Ok(ReadyFiles::Unsupported(format!(
            "PostgreSQL {version} has no pg_ls_archive_statusdir() (12 and later)"
        )));
    }
    let not_permitted = || {
        ReadyFiles::NotPermitted(format!(
            "role {user} may not call pg_ls_archive_statusdir(): GRANT pg_monitor TO {}",
            super::quote_ident(&user)
        ))
    };
    if !allowed {
        return Ok(not_permitted());
    }
    let res = conn
        .client
        .query_one(
            "SELECT count(*)::bigint, min(name),
                    extract(epoch FROM clock_timestamp() - min(modification))::float8
             FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
            &[],
        )
        .await;
    match res {
        Ok(r) => Ok(ReadyFiles::Counted {
            count: r.get::<_, i64>(0).max(0) as u64,
            oldest: r
                .get::<_, Option<String>>(1)
                .map(|n| n.trim_end_matches(".ready").to_string()),
            oldest_age: r.get::<_, Option<f64>>(2).map(|a| a.max(0.0)),
        }),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            Ok(not_permitted())
        }
        Err(e) => Err(db_err(e)),
    }
}
