//! SQL Server backups: `BACKUP DATABASE … WITH CHECKSUM` writes the file on the server's own
//! disk (`backup.<target>.server_dir`), so the manifest, kept locally, records where it is;
//! the server checks it (`RESTORE VERIFYONLY … WITH CHECKSUM`) since it cannot be hashed here;
//! `RESTORE DATABASE … WITH MOVE` puts a copy's files beside the instance's default paths.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};

use crate::config::Target;
use crate::engine::mssql::{self, nstring, quote_ident, BackupFile};
use crate::engine::Driver;
use crate::engine::DumpInfo;

/// The full path of a backup file in the server's directory, with the server's separator.
pub fn server_path(server_dir: &str, file: &str) -> String {
    let sep = if server_dir.contains('\\') { '\\' } else { '/' };
    format!("{}{sep}{file}", server_dir.trim_end_matches(['/', '\\']))
}

pub fn backup_sql(database: &str, path: &str) -> String {
    format!(
        "BACKUP DATABASE {} TO DISK = {} WITH CHECKSUM, INIT, FORMAT, NAME = N'mairie-dba full backup', STATS = 10;",
        quote_ident(database),
        nstring(path)
    )
}

pub fn verify_sql(path: &str) -> String {
    format!(
        "RESTORE VERIFYONLY FROM DISK = {} WITH CHECKSUM;",
        nstring(path)
    )
}

pub fn restore_sql(
    into: &str,
    path: &str,
    files: &[BackupFile],
    data_dir: &str,
    log_dir: &str,
    replace: bool,
) -> String {
    let mut with = vec![
        "CHECKSUM".to_string(),
        "RECOVERY".to_string(),
        "STATS = 10".to_string(),
    ];
    for (i, f) in files.iter().enumerate() {
        let (dir, ext) = if f.kind == "L" {
            (log_dir, "ldf")
        } else {
            (data_dir, if i == 0 { "mdf" } else { "ndf" })
        };
        let target = server_path(dir, &format!("{into}_{}.{ext}", f.logical));
        with.push(format!(
            "MOVE {} TO {}",
            nstring(&f.logical),
            nstring(&target)
        ));
    }
    if replace {
        with.push("REPLACE".into());
    }
    format!(
        "RESTORE DATABASE {} FROM DISK = {} WITH {};",
        quote_ident(into),
        nstring(path),
        with.join(", ")
    )
}

pub fn drop_sql(database: &str) -> String {
    format!(
        "IF DB_ID({0}) IS NOT NULL BEGIN ALTER DATABASE {1} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE {1}; END",
        nstring(database),
        quote_ident(database)
    )
}

/// Backs the target's database up to `path` on the server, then has the server verify it.
/// Returns the dump's facts and the backup's size in bytes.
pub async fn backup(target: &Target, path: &str) -> Result<(DumpInfo, u64)> {
    let conn = mssql::connect(target).await?;
    let server_version = conn.server_version().await?;
    let tables = conn.count_tables().await?;
    let master = mssql::connect(&target.with_database("master")).await?;
    master
        .batch(&backup_sql(&target.connection.database, path))
        .await
        .with_context(|| format!("BACKUP DATABASE to {path}"))?;
    master
        .batch(&verify_sql(path))
        .await
        .with_context(|| format!("RESTORE VERIFYONLY of {path}"))?;
    let size = master
        .scalar_i64(&format!(
            "SELECT TOP 1 CAST(s.backup_size AS bigint) FROM msdb.dbo.backupset s
             JOIN msdb.dbo.backupmediafamily f ON f.media_set_id = s.media_set_id
             WHERE f.physical_device_name = {} ORDER BY s.backup_finish_date DESC",
            nstring(path)
        ))
        .await?
        .unwrap_or(0);
    Ok((
        DumpInfo {
            tool: format!("SQL Server BACKUP DATABASE ({server_version})"),
            server_version,
            tables,
            format: "mssql native".into(),
        },
        size.max(0) as u64,
    ))
}

pub async fn verify(target: &Target, path: &str) -> Result<()> {
    let master = mssql::connect(&target.with_database("master")).await?;
    master.batch(&verify_sql(path)).await
}

pub async fn restore(target: &Target, path: &str, into: &str, force: bool) -> Result<()> {
    let master = mssql::connect(&target.with_database("master")).await?;
    let exists = master
        .scalar_i64(&format!(
            "SELECT CASE WHEN DB_ID({}) IS NULL THEN 0 ELSE 1 END",
            nstring(into)
        ))
        .await?
        == Some(1);
    if exists {
        let n = mssql::connect(&target.with_database(into))
            .await?
            .scalar_i64("SELECT COUNT_BIG(*) FROM sys.tables WHERE is_ms_shipped = 0")
            .await?
            .unwrap_or(0);
        if n > 0 && !force {
            bail!("database {into} holds {n} tables: restore into another one with --into, or use --force to replace it");
        }
    }
    let files = master
        .file_list(&format!(
            "RESTORE FILELISTONLY FROM DISK = {};",
            nstring(path)
        ))
        .await?;
    if files.is_empty() {
        bail!("{path}: RESTORE FILELISTONLY lists no file");
    }
    let data_dir = master
        .scalar_string("SELECT CAST(SERVERPROPERTY('InstanceDefaultDataPath') AS nvarchar(4000))")
        .await?
        .ok_or_else(|| anyhow!("the server does not tell its default data path"))?;
    let log_dir = master
        .scalar_string("SELECT CAST(SERVERPROPERTY('InstanceDefaultLogPath') AS nvarchar(4000))")
        .await?
        .unwrap_or_else(|| data_dir.clone());
    master
        .batch(&restore_sql(
            into,
            path,
            &files,
            &data_dir,
            &log_dir,
            exists && force,
        ))
        .await
        .with_context(|| format!("RESTORE DATABASE {into}"))
}

pub async fn count_rows(target: &Target, database: &str) -> Result<BTreeMap<String, u64>> {
    mssql::connect(&target.with_database(database))
        .await?
        .count_tables()
        .await
}

pub async fn drop_database(target: &Target, name: &str) -> Result<()> {
    let master = mssql::connect(&target.with_database("master")).await?;
    master.batch(&drop_sql(name)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_and_verify_statements() {
        assert_eq!(
            backup_sql("mairie", "/var/opt/mssql/backup/mairie_full_20261121_020000.bak"),
            "BACKUP DATABASE [mairie] TO DISK = N'/var/opt/mssql/backup/mairie_full_20261121_020000.bak' \
             WITH CHECKSUM, INIT, FORMAT, NAME = N'mairie-dba full backup', STATS = 10;"
        );
        assert_eq!(
            verify_sql("C:\\b\\x.bak"),
            "RESTORE VERIFYONLY FROM DISK = N'C:\\b\\x.bak' WITH CHECKSUM;"
        );
        assert_eq!(nstring("it's"), "N'it''s'");
    }

    #[test]
    fn server_paths_keep_the_servers_separator() {
        assert_eq!(
            server_path("/var/opt/mssql/backup/", "a.bak"),
            "/var/opt/mssql/backup/a.bak"
        );
        assert_eq!(server_path("D:\\Backups", "a.bak"), "D:\\Backups\\a.bak");
    }

    #[test]
    fn restore_moves_every_file_and_replaces_only_when_asked() {
        let files = vec![
            BackupFile {
                logical: "mairie".into(),
                kind: "D".into(),
            },
            BackupFile {
                logical: "mairie_log".into(),
                kind: "L".into(),
            },
        ];
        let sql = restore_sql("mairie_copy", "/b/x.bak", &files, "/data/", "/log", false);
        assert_eq!(
            sql,
            "RESTORE DATABASE [mairie_copy] FROM DISK = N'/b/x.bak' WITH CHECKSUM, RECOVERY, STATS = 10, \
             MOVE N'mairie' TO N'/data/mairie_copy_mairie.mdf', MOVE N'mairie_log' TO N'/log/mairie_copy_mairie_log.ldf';"
        );
        assert!(restore_sql("m", "/b/x.bak", &files, "/d", "/l", true).ends_with(", REPLACE;"));
    }

    #[test]
    fn drop_kicks_sessions_out_first() {
        assert_eq!(
            drop_sql("m]x"),
            "IF DB_ID(N'm]x') IS NOT NULL BEGIN ALTER DATABASE [m]]x] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [m]]x]; END"
        );
    }
}
