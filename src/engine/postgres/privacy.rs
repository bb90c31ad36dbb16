//! PostgreSQL's side of pseudonymised copies: the catalogue the rules are checked against,
//! samples of values, and the marker. The rows themselves are rewritten as they are
//! restored ([`super::copy_text`]).

use anyhow::{Context, Result};

use super::{db_err, quote_ident, quoted_table, PgConn};
use crate::catalog::TableRef;
use crate::config::Target;
use crate::privacy::plan::{Marker, PrivacyColumn, TypeCategory};

pub async fn database_exists(target: &Target, name: &str) -> Result<bool> {
    let admin = super::connect(&target.with_database("postgres")).await?;
    Ok(admin
        .client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(db_err)?
        .is_some())
}

pub(super) async fn columns(conn: &PgConn) -> Result<Vec<PrivacyColumn>> {
    let rows = conn
        .client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text,
                    format_type(a.atttypid, a.atttypmod), t.typcategory::text, t.typname::text,
                    CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4
                         THEN a.atttypmod - 4 END,
                    NOT a.attnotnull,
                    EXISTS (SELECT 1 FROM pg_index i
                            WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1
                              AND i.indkey[0] = a.attnum),
                    EXISTS (SELECT 1 FROM pg_constraint k
                            WHERE (k.contype IN ('p', 'f') AND k.conrelid = c.oid
                                   AND a.attnum = ANY (k.conkey))
                               OR (k.contype = 'f' AND k.confrelid = c.oid
                                   AND a.attnum = ANY (k.confkey))),
                    (SELECT a2.attname::text FROM pg_index i
                     JOIN pg_attribute a2 ON a2.attrelid = i.indrelid AND a2.attnum = i.indkey[0]
                     WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1, 2, a.attnum",
            &[],
        )
        .await
        .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            let cat: String = r.get(4);
            let typname: String = r.get(5);
            let category = match (cat.as_str(), typname.as_str()) {
                ("S", _) => TypeCategory::Text,
                (_, "date") => TypeCategory::Date,
                (_, "timestamp" | "timestamptz") => TypeCategory::Timestamp,
                ("N", _) => TypeCategory::Number,
                (_, "json" | "jsonb") => TypeCategory::Json,
                _ => TypeCategory::Other,
            };
            let max_len: Option<i32> = r.get(6);
            PrivacyColumn {
                table: TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1)),
                column: r.get(2),
                data_type: r.get(3),
                category,
                max_len: max_len.map(|m| m as u32),
                nullable: r.get(7),
                unique: r.get(8),
                key: r.get(9),
                table_key: r.get(10),
            }
        })
        .collect())
}

pub(super) async fn sample(
    conn: &PgConn,
    table: &TableRef,
    column: &str,
    key: Option<&str>,
    limit: u32,
) -> Result<Vec<(Option<String>, Option<String>)>> {
    let col = quote_ident(column);
    let key_expr = key.map_or("NULL::text".to_string(), |k| {
        format!("{}::text", quote_ident(k))
    });
    let sql = format!(
        "SELECT {key_expr}, {col}::text FROM {} WHERE {col} IS NOT NULL LIMIT {limit}",
        quoted_table(table)
    );
    let rows = conn.client.query(&sql, &[]).await.map_err(db_err)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn values_by_key(
    conn: &PgConn,
    table: &TableRef,
    column: &str,
    key: &str,
    keys: &[String],
) -> Result<Vec<(String, Option<String>)>> {
    // The keys are cast to the key's own type, so that its index finds the rows (a cast of
    // the column would read the whole table for each column checked).
    let ty: String = conn
        .client
        .query_one(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = $1::text::regclass AND a.attname = $2",
            &[&quoted_table(table), &key],
        )
        .await
        .map_err(db_err)?
        .get(0);
    let sql = format!(
        "SELECT u.{k}::text, u.{c}::text FROM {t} AS u \
         WHERE u.{k} = ANY (SELECT CAST(x AS {ty}) FROM unnest($1::text[]) AS x)",
        k = quote_ident(key),
        c = quote_ident(column),
        t = quoted_table(table)
    );
    let rows = conn.client.query(&sql, &[&keys]).await.map_err(db_err)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn mark(conn: &PgConn, m: &Marker, tables: &[TableRef]) -> Result<()> {
    conn.client
        .batch_execute(
            "CREATE TABLE public.mairie_dba_anonymized (
                 anonymized_at   timestamptz NOT NULL,
                 backup_file     text        NOT NULL,
                 backup_sha256   text        NOT NULL,
                 key_fingerprint text        NOT NULL,
                 rules           jsonb       NOT NULL);
             COMMENT ON TABLE public.mairie_dba_anonymized IS
                 'This database is a pseudonymised copy made by mairie-dba anonymize.'",
        )
        .await
        .map_err(db_err)
        .context("creating the marker table mairie_dba_anonymized")?;
    conn.client
        .execute(
            "INSERT INTO public.mairie_dba_anonymized VALUES ($1, $2, $3, $4, $5::text::jsonb)",
            &[
                &m.at,
                &m.backup_file,
                &m.backup_sha256,
                &m.key_fingerprint,
                &m.rules_json,
            ],
        )
        .await
        .map_err(db_err)?;
    let db: String = conn
        .client
        .query_one("SELECT current_database()::text", &[])
        .await
        .map_err(db_err)?
        .get(0);
    let comment = format!(
        "mairie-dba anonymized copy of {} (sha256 {}) made {}; key fingerprint {}",
        m.backup_file,
        m.backup_sha256,
        m.at.format("%Y-%m-%dT%H:%M:%SZ"),
        m.key_fingerprint
    );
    conn.client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS '{}'",
            quote_ident(&db),
            comment.replace('\'', "''")
        ))
        .await
        .map_err(db_err)?;
    for t in tables {
        conn.client
            .batch_execute(&format!("ANALYZE {}", quoted_table(t)))
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// The key and unique-constraint facts of `columns` (read after pre-data, when no
/// constraint exists yet) completed from the archive's post-data script, which holds them:
/// `ALTER TABLE ONLY s.t ADD CONSTRAINT c PRIMARY KEY|UNIQUE|FOREIGN KEY (…) [REFERENCES
/// s.t(…)]` and `CREATE UNIQUE INDEX i ON s.t USING m (col)`.
pub fn complete_keys(columns: &mut [PrivacyColumn], post_data: &str) {
    fn mark(
        columns: &mut [PrivacyColumn],
        t: &TableRef,
        cols: &[String],
        f: impl Fn(&mut PrivacyColumn),
    ) {
        for c in columns
            .iter_mut()
            .filter(|c| &c.table == t && cols.contains(&c.column))
        {
            f(c);
        }
    }
    for stmt in post_data.split(";\n") {
        let s = stmt
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("ALTER TABLE ") {
            let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
            let Some((table, rest)) = qualified(rest) else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix("ADD CONSTRAINT ") else {
                continue;
            };
            let Some((_, rest)) = super::copy_text::ident(rest) else {
                continue;
            };
            let rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix("PRIMARY KEY ") {
                if let Some((cols, _)) = column_list(r) {
                    let one = cols.len() == 1;
                    let first = cols[0].clone();
                    mark(columns, &table, &cols, |c| {
                        c.key = true;
                        c.unique |= one;
                    });
                    if one {
                        for c in columns.iter_mut().filter(|c| c.table == table) {
                            c.table_key = Some(first.clone());
                        }
                    }
                }
            } else if let Some(r) = rest.strip_prefix("UNIQUE ") {
                let r = r.strip_prefix("NULLS NOT DISTINCT ").unwrap_or(r);
                if let Some((cols, _)) = column_list(r).filter(|(c, _)| c.len() == 1) {
                    mark(columns, &table, &cols, |c| c.unique = true);
                }
            } else if let Some(r) = rest.strip_prefix("FOREIGN KEY ") {
                if let Some((cols, r)) = column_list(r) {
                    mark(columns, &table, &cols, |c| c.key = true);
                    let r = r.trim_start();
                    if let Some((parent, r)) = r.strip_prefix("REFERENCES ").and_then(qualified) {
                        if let Some((pcols, _)) = column_list(r) {
                            mark(columns, &parent, &pcols, |c| c.key = true);
                        }
                    }
                }
            }
        } else if let Some(rest) = s.strip_prefix("CREATE UNIQUE INDEX ") {
            let Some((_, rest)) = super::copy_text::ident(rest) else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix("ON ") else {
                continue;
            };
            let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
            let Some((table, rest)) = qualified(rest) else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix("USING ") else {
                continue;
            };
            let Some(i) = rest.find(' ') else { continue };
            // A partial index (WHERE) does not make the column unique.
            if let Some((cols, r)) = column_list(&rest[i + 1..]).filter(|(c, _)| c.len() == 1) {
                if !r.contains(" WHERE ") {
                    mark(columns, &table, &cols, |c| c.unique = true);
                }
            }
        }
    }
}

/// `schema.table` as pg_dump writes it, and what follows.
fn qualified(s: &str) -> Option<(TableRef, &str)> {
    let (schema, rest) = super::copy_text::ident(s)?;
    let (table, rest) = super::copy_text::ident(rest.strip_prefix('.')?)?;
    Some((TableRef::new(schema, table), rest))
}

/// `(a, b)` of plain column names (an expression gives `None`), and what follows.
fn column_list(s: &str) -> Option<(Vec<String>, &str)> {
    let mut rest = s.trim_start().strip_prefix('(')?;
    let mut cols = Vec::new();
    loop {
        let (c, r) = super::copy_text::ident(rest.trim_start())?;
        cols.push(c);
        let r = r.trim_start();
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else {
            return r.strip_prefix(')').map(|r| (cols, r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(t: &str, c: &str) -> PrivacyColumn {
        PrivacyColumn {
            table: TableRef::parse(t).unwrap(),
            column: c.into(),
            data_type: "text".into(),
            category: TypeCategory::Text,
            max_len: None,
            nullable: true,
            unique: false,
            key: false,
            table_key: None,
        }
    }

    #[test]
    fn keys_come_from_the_post_data_script() {
        let mut cols = vec![
            col("metier.citoyens", "id"),
            col("metier.citoyens", "email"),
            col("metier.citoyens", "nir"),
            col("metier.citoyens", "nom"),
            col("metier.demandes", "id"),
            col("metier.demandes", "citoyen_id"),
            col("metier.demandes", "ref"),
        ];
        let sql = "--\n-- Name: citoyens citoyens_pkey\n--\n\n\
            ALTER TABLE ONLY metier.citoyens\n    ADD CONSTRAINT citoyens_pkey PRIMARY KEY (id);\n\n\
            ALTER TABLE ONLY metier.citoyens\n    ADD CONSTRAINT citoyens_email_key UNIQUE (email);\n\n\
            CREATE UNIQUE INDEX nir_idx ON metier.citoyens USING btree (nir);\n\n\
            CREATE UNIQUE INDEX nom_idx ON metier.citoyens USING btree (nom) WHERE (nom IS NOT NULL);\n\n\
            CREATE UNIQUE INDEX ref_idx ON metier.demandes USING btree (lower(ref));\n\n\
            ALTER TABLE ONLY metier.demandes\n    ADD CONSTRAINT d_fkey FOREIGN KEY (citoyen_id) REFERENCES metier.citoyens(id) ON DELETE CASCADE;\n";
        complete_keys(&mut cols, sql);
        let get = |t: &str, c: &str| {
            cols.iter()
                .find(|x| x.table.to_string() == t && x.column == c)
                .unwrap()
                .clone()
        };
        let id = get("metier.citoyens", "id");
        assert!(id.key && id.unique && id.table_key.as_deref() == Some("id"));
        assert!(get("metier.citoyens", "email").unique && !get("metier.citoyens", "email").key);
        assert!(get("metier.citoyens", "nir").unique);
        assert!(!get("metier.citoyens", "nom").unique);
        assert!(!get("metier.demandes", "ref").unique);
        assert!(get("metier.demandes", "citoyen_id").key);
        assert_eq!(get("metier.demandes", "ref").table_key, None);
    }
}
