//! MariaDB/MySQL's side of pseudonymised copies: the catalogue the rules are checked
//! against, samples of values, the triggers set aside while rows load, and the marker.
//!
//! The model's `metier.citoyens` is table `metier_citoyens` here. The rows themselves are
//! rewritten as the dump streams ([`super::dump_filter`]).

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;

use super::{my_err, quote_ident, MyConn};
use crate::catalog::TableRef;
use crate::config::Target;
use crate::privacy::plan::{Marker, PrivacyColumn, TypeCategory};

pub async fn database_exists(target: &Target, name: &str) -> Result<bool> {
    let conn = super::connect(target).await?;
    let mut c = conn.conn().await;
    let n: Option<i64> = c
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?",
            (name.to_string(),),
        )
        .await
        .map_err(my_err)?;
    Ok(n.unwrap_or(0) > 0)
}

/// The model's name of a table of this database.
pub(super) fn logical(table: &str) -> TableRef {
    match table.split_once('_') {
        Some((s, n)) => TableRef::new(s, n),
        None => TableRef::new("public", table),
    }
}

/// The table of this database a model name stands for.
fn physical(t: &TableRef) -> String {
    if t.schema == "public" {
        quote_ident(&t.name)
    } else {
        quote_ident(&t.prefixed())
    }
}

type ColumnRow = (
    String,
    String,
    String,
    String,
    Option<u64>,
    String,
    i64,
    i64,
    Option<String>,
);

pub(super) async fn columns(conn: &MyConn) -> Result<Vec<PrivacyColumn>> {
    let mut c = conn.conn().await;
    let rows: Vec<ColumnRow> = c
        .query(
            "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE,
                    c.CHARACTER_MAXIMUM_LENGTH, c.IS_NULLABLE,
                    EXISTS (SELECT 1 FROM information_schema.STATISTICS s
                            WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME
                              AND s.COLUMN_NAME = c.COLUMN_NAME AND s.NON_UNIQUE = 0
                              AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS s2
                                              WHERE s2.TABLE_SCHEMA = s.TABLE_SCHEMA
                                                AND s2.TABLE_NAME = s.TABLE_NAME
                                                AND s2.INDEX_NAME = s.INDEX_NAME
                                                AND s2.COLUMN_NAME <> s.COLUMN_NAME)),
                    EXISTS (SELECT 1 FROM information_schema.KEY_COLUMN_USAGE k
                            WHERE k.TABLE_SCHEMA = c.TABLE_SCHEMA
                              AND ((k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME
                                    AND (k.CONSTRAINT_NAME = 'PRIMARY'
                                         OR k.REFERENCED_TABLE_NAME IS NOT NULL))
                                OR (k.REFERENCED_TABLE_SCHEMA = c.TABLE_SCHEMA
                                    AND k.REFERENCED_TABLE_NAME = c.TABLE_NAME
                                    AND k.REFERENCED_COLUMN_NAME = c.COLUMN_NAME))),
                    (SELECT MIN(k.COLUMN_NAME) FROM information_schema.KEY_COLUMN_USAGE k
                     WHERE k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME
                       AND k.CONSTRAINT_NAME = 'PRIMARY'
                     HAVING COUNT(*) = 1)
             FROM information_schema.COLUMNS c
             JOIN information_schema.TABLES t
               ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
             WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'
             ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
        )
        .await
        .map_err(my_err)?;
    Ok(rows
        .into_iter()
        .map(
            |(table, column, data_type, column_type, max_len, nullable, unique, key, pk)| {
                let category = match data_type.as_str() {
                    "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
                        TypeCategory::Text
                    }
                    "json" => TypeCategory::Json,
                    "date" => TypeCategory::Date,
                    "datetime" | "timestamp" => TypeCategory::Timestamp,
                    "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "decimal"
                    | "float" | "double" => TypeCategory::Number,
                    _ => TypeCategory::Other,
                };
                PrivacyColumn {
                    table: logical(&table),
                    column,
                    data_type: column_type,
                    category,
                    max_len: match data_type.as_str() {
                        "char" | "varchar" => max_len.map(|m| m.min(u64::from(u32::MAX)) as u32),
                        _ => None,
                    },
                    nullable: nullable == "YES",
                    unique: unique != 0,
                    key: key != 0,
                    table_key: pk,
                }
            },
        )
        .collect())
}

pub(super) async fn sample(
    conn: &MyConn,
    table: &TableRef,
    column: &str,
    key: Option<&str>,
    limit: u32,
) -> Result<Vec<(Option<String>, Option<String>)>> {
    let col = quote_ident(column);
    let key_expr = key.map_or("NULL".to_string(), |k| {
        format!("CAST({} AS CHAR)", quote_ident(k))
    });
    let sql = format!(
        "SELECT {key_expr}, CAST({col} AS CHAR) FROM {} WHERE {col} IS NOT NULL LIMIT {limit}",
        physical(table)
    );
    let mut c = conn.conn().await;
    c.query(sql).await.map_err(my_err)
}

pub(super) async fn values_by_key(
    conn: &MyConn,
    table: &TableRef,
    column: &str,
    key: &str,
    keys: &[String],
) -> Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    let mut c = conn.conn().await;
    // The key itself is compared (not a cast of it): its index finds the rows.
    for chunk in keys.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT CAST({k} AS CHAR), CAST({c} AS CHAR) FROM {t} WHERE {k} IN ({marks})",
            k = quote_ident(key),
            c = quote_ident(column),
            t = physical(table)
        );
        let rows: Vec<(String, Option<String>)> =
            c.exec(sql, chunk.to_vec()).await.map_err(my_err)?;
        out.extend(rows);
    }
    Ok(out)
}

/// Drops every trigger of the database, returning the statements that create them again
/// (by this session's user: the dump's DEFINER may need privileges it lacks). MariaDB cannot
/// disable a trigger, and the rows of a restore must not fire them.
pub(super) async fn set_aside_triggers(c: &mut mysql_async::Conn) -> Result<Vec<String>> {
    let names: Vec<String> = c
        .query(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
             WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER",
        )
        .await
        .map_err(my_err)?;
    let mut recreate = Vec::new();
    for name in &names {
        let row: Option<mysql_async::Row> = c
            .query_first(format!("SHOW CREATE TRIGGER {}", quote_ident(name)))
            .await
            .map_err(my_err)?;
        let text: Option<String> = row.and_then(|r| r.get(2));
        let text = text.with_context(|| format!("reading trigger {name}"))?;
        let text = match text.find(" TRIGGER ") {
            Some(i) if text[..i].contains("DEFINER") => format!("CREATE{}", &text[i..]),
            _ => text,
        };
        recreate.push(text);
        c.query_drop(format!("DROP TRIGGER {}", quote_ident(name)))
            .await
            .map_err(my_err)?;
    }
    Ok(recreate)
}

/// Creates again the triggers [`set_aside_triggers`] dropped.
pub(super) async fn restore_triggers(c: &mut mysql_async::Conn, texts: &[String]) -> Result<()> {
    for text in texts {
        c.query_drop(text)
            .await
            .map_err(my_err)
            .context("creating a trigger again")?;
    }
    Ok(())
}

pub(super) async fn mark(conn: &MyConn, m: &Marker, tables: &[TableRef]) -> Result<()> {
    let mut c = conn.conn().await;
    c.query_drop(
        "CREATE TABLE mairie_dba_anonymized (
             anonymized_at   DATETIME(6)  NOT NULL,
             backup_file     VARCHAR(255) NOT NULL,
             backup_sha256   CHAR(64)     NOT NULL,
             key_fingerprint CHAR(8)      NOT NULL,
             rules           LONGTEXT     NOT NULL
         ) CHARACTER SET utf8mb4
           COMMENT 'This database is a pseudonymised copy made by mairie-dba anonymize.'",
    )
    .await
    .map_err(my_err)
    .context("creating the marker table mairie_dba_anonymized")?;
    c.exec_drop(
        "INSERT INTO mairie_dba_anonymized VALUES (?, ?, ?, ?, ?)",
        (
            m.at.naive_utc(),
            m.backup_file.clone(),
            m.backup_sha256.clone(),
            m.key_fingerprint.clone(),
            m.rules_json.clone(),
        ),
    )
    .await
    .map_err(my_err)?;
    for t in tables {
        c.query_drop(format!("ANALYZE TABLE {}", physical(t)))
            .await
            .map_err(my_err)?;
    }
    Ok(())
}
