//! PostgreSQL's side of pseudonymised copies: the catalogue the rules are checked against,
//! samples of values, and each table's one UPDATE.
//!
//! The HMAC is computed by the server from the padded keys bound as parameters:
//! `sha256(outer || sha256(inner || convert_to(value, 'UTF8')))` (pgcrypto's `hmac()` is not
//! needed). The fake lists are bound as `text[]`. Nothing secret is written into SQL text.

use anyhow::{Context, Result};
use tokio_postgres::types::ToSql;

use super::{db_err, quote_ident, quoted_table, PgConn};
use crate::catalog::TableRef;
use crate::config::Target;
use crate::privacy::fake::FakeKind;
use crate::privacy::plan::{Action, Marker, PrivacyColumn, Secrets, TablePlan, TypeCategory};

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

/// The bound parameters of one UPDATE, numbered in the order of first use.
struct Params<'a> {
    secrets: &'a Secrets,
    used: Vec<Param>,
}

#[derive(Clone, Copy, PartialEq)]
enum Param {
    Inner,
    Outer,
    Domain,
    List(FakeKind),
}

impl Params<'_> {
    fn get(&mut self, p: Param) -> String {
        let i = match self.used.iter().position(|u| *u == p) {
            Some(i) => i,
            None => {
                self.used.push(p);
                self.used.len() - 1
            }
        };
        let cast = match p {
            Param::Inner | Param::Outer => "bytea",
            Param::Domain => "text",
            Param::List(_) => "text[]",
        };
        format!("${}::{cast}", i + 1)
    }

    fn values(&self) -> Vec<Box<dyn ToSql + Sync + Send>> {
        self.used
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync + Send> {
                match p {
                    Param::Inner => Box::new(self.secrets.inner.to_vec()),
                    Param::Outer => Box::new(self.secrets.outer.to_vec()),
                    Param::Domain => Box::new(self.secrets.email_domain.clone()),
                    Param::List(k) => {
                        Box::new(k.list().iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    }
                }
            })
            .collect()
    }
}

/// The raw HMAC (bytea) of a text expression.
fn hmac(p: &mut Params<'_>, expr: &str) -> String {
    let inner = p.get(Param::Inner);
    let outer = p.get(Param::Outer);
    format!("sha256({outer} || sha256({inner} || convert_to({expr}, 'UTF8')))")
}

/// The new value of one column, as an SQL expression over the row `u`.
/// Whether an action needs the HMAC of the column.
fn needs_hmac(action: &Action) -> bool {
    matches!(
        action,
        Action::Hash { .. } | Action::Email | Action::Fake(_)
    )
}

/// `h` is the SQL of the column's HMAC for the row (a column of the joined derived table, so
/// that it is computed once per row; or the HMAC itself when the table has no key).
fn expression(
    p: &mut Params<'_>,
    action: &Action,
    column: &str,
    category: TypeCategory,
    h: &str,
) -> String {
    let col = format!("u.{}", quote_ident(column));
    match action {
        Action::Null => "NULL".into(),
        Action::Hash { max_len } => {
            format!("left(encode({h}, 'hex'), {})", max_len.unwrap_or(64))
        }
        Action::Email => {
            let d = p.get(Param::Domain);
            format!("left(encode({h}, 'hex'), 16) || '@' || {d}")
        }
        Action::Fake(kind) => {
            let list = p.get(Param::List(*kind));
            let n = kind.list().len();
            let i =
                format!("(('x' || substr(encode({h}, 'hex'), 1, 8))::bit(32)::bigint % {n})::int");
            let prefix = if *kind == FakeKind::Street {
                format!(
                    "((('x' || substr(encode({h}, 'hex'), 9, 4))::bit(16)::int % 150) + 1)::text || ' ' || "
                )
            } else {
                String::new()
            };
            let pick = format!("{prefix}({list})[{i} + 1]");
            let next = format!("{prefix}({list})[({i} + 1) % {n} + 1]");
            // The next entry when the chosen one equals the original.
            format!("CASE WHEN {pick} = {col}::text THEN {next} ELSE {pick} END")
        }
        Action::YearOf => match category {
            TypeCategory::Date => format!("date_trunc('year', {col})::date"),
            _ => format!("date_trunc('year', {col})"),
        },
        Action::PhonePrefix => {
            let d = format!("regexp_replace({col}::text, '[^0-9]', '', 'g')");
            format!("left({d}, 4) || repeat('X', greatest(length({d}) - 4, 0))")
        }
        Action::District {
            code_postal,
            arrondissement,
        } => {
            let cp = code_postal.as_ref().map_or("NULL::text".to_string(), |c| {
                format!(
                    "nullif(trim(u.{}::text), '') || ' Marseille'",
                    quote_ident(c)
                )
            });
            let arr = arrondissement
                .as_ref()
                .map_or("NULL::text".to_string(), |a| {
                    let a = format!("u.{}::text", quote_ident(a));
                    format!("'Marseille ' || {a} || CASE WHEN {a} = '1' THEN 'er' ELSE 'e' END")
                });
            format!("CASE WHEN {col} IS NULL THEN NULL ELSE coalesce({cp}, {arr}, 'Marseille') END")
        }
    }
}

pub(super) async fn pseudonymize(
    conn: &PgConn,
    plan: &TablePlan,
    secrets: &Secrets,
) -> Result<u64> {
    let mut p = Params {
        secrets,
        used: Vec::new(),
    };
    let table = quoted_table(&plan.table);
    // Each HMAC is computed once per row, in a derived table joined on the key: the
    // expressions read it several times.
    let mut hashes = Vec::new();
    let mut sets = Vec::new();
    for (n, c) in plan.columns.iter().enumerate() {
        let h = if !needs_hmac(&c.action) {
            String::new()
        } else if plan.key.is_some() {
            hashes.push(format!(
                "{} AS h{n}",
                hmac(&mut p, &format!("{}::text", quote_ident(&c.column)))
            ));
            format!("s.h{n}")
        } else {
            hmac(&mut p, &format!("u.{}::text", quote_ident(&c.column)))
        };
        sets.push(format!(
            "{} = {}",
            quote_ident(&c.column),
            expression(&mut p, &c.action, &c.column, c.category, &h)
        ));
    }
    let sql = match (&plan.key, hashes.is_empty()) {
        (Some(k), false) => format!(
            "UPDATE {table} AS u SET {} FROM (SELECT {k} AS k, {} FROM {table}) AS s WHERE u.{k} = s.k",
            sets.join(", "),
            hashes.join(", "),
            k = quote_ident(k)
        ),
        _ => format!("UPDATE {table} AS u SET {}", sets.join(", ")),
    };
    let values = p.values();
    let refs: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    // The copy's own triggers (an audit journal) would record the originals: not fired.
    conn.client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL statement_timeout = 0; ALTER TABLE {table} DISABLE TRIGGER USER"
        ))
        .await
        .map_err(db_err)
        .with_context(|| format!("{}: disabling its triggers", plan.table))?;
    let res = async {
        let n = conn.client.execute(&sql, &refs).await.map_err(db_err)?;
        conn.client
            .batch_execute(&format!("ALTER TABLE {table} ENABLE TRIGGER USER; COMMIT"))
            .await
            .map_err(db_err)?;
        Ok::<_, anyhow::Error>(n)
    }
    .await;
    if res.is_err() {
        let _ = conn.client.batch_execute("ROLLBACK").await;
    }
    res.with_context(|| format!("pseudonymising {}", plan.table))
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
