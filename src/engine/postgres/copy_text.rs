//! PostgreSQL's COPY text format, as pg_restore writes a table's rows: the statement
//! `COPY schema.table (col, …) FROM stdin`, then one line per row, fields separated by tabs,
//! `\N` for NULL, and backslash escapes. Rows of a ruled table are rewritten here
//! ([`rewrite_block`]); the fields no rule touches are copied byte for byte.

use anyhow::{bail, Result};

use crate::catalog::TableRef;
use crate::privacy::transform::Rewriter;

/// The table and columns of a `COPY … FROM stdin` statement (identifiers unquoted).
pub fn parse_copy(stmt: &str) -> Result<(TableRef, Vec<String>)> {
    let bad = || anyhow::anyhow!("cannot read the COPY statement: {stmt}");
    let rest = stmt.strip_prefix("COPY ").ok_or_else(bad)?;
    let (schema, rest) = ident(rest).ok_or_else(bad)?;
    let rest = rest.strip_prefix('.').ok_or_else(bad)?;
    let (table, rest) = ident(rest).ok_or_else(bad)?;
    let mut rest = rest.trim_start().strip_prefix('(').ok_or_else(bad)?;
    let mut columns = Vec::new();
    loop {
        let (c, r) = ident(rest.trim_start()).ok_or_else(bad)?;
        columns.push(c);
        let r = r.trim_start();
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else if let Some(r) = r.strip_prefix(')') {
            if !r.trim_start().starts_with("FROM stdin") {
                return Err(bad());
            }
            break;
        } else {
            return Err(bad());
        }
    }
    Ok((TableRef::new(schema, table), columns))
}

/// One identifier as pg_dump writes it: bare, or in double quotes with `""` inside.
pub(super) fn ident(s: &str) -> Option<(String, &str)> {
    if let Some(mut rest) = s.strip_prefix('"') {
        let mut out = String::new();
        loop {
            let i = rest.find('"')?;
            out.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            match rest.strip_prefix('"') {
                Some(r) => {
                    out.push('"');
                    rest = r;
                }
                None => return Some((out, rest)),
            }
        }
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

/// A field's value: `None` for `\N`, else the text with its escapes undone.
pub fn decode(field: &[u8]) -> Result<Option<String>> {
    if field == b"\\N" {
        return Ok(None);
    }
    if !field.contains(&b'\\') {
        return Ok(Some(String::from_utf8(field.to_vec())?));
    }
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i == field.len() {
            out.push(b);
            continue;
        }
        let e = field[i];
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match field.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.push(b'x');
                } else {
                    out.push(v as u8);
                }
            }
            other => out.push(other),
        }
    }
    Ok(Some(String::from_utf8(out)?))
}

/// Appends a value as a COPY text field.
pub fn encode(v: Option<&str>, out: &mut Vec<u8>) {
    let Some(v) = v else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for &b in v.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Rewrites the rows of `block` (whole lines) with `rw`. `first_line` numbers the block's
/// first row in errors.
pub fn rewrite_block(rw: &Rewriter, block: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len() + block.len() / 8);
    let width = rw.width();
    let mut fields: Vec<&[u8]> = Vec::with_capacity(width);
    let mut decoded: Vec<Option<String>> = vec![None; width];
    for line in block.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        fields.clear();
        fields.extend(body.split(|b| *b == b'\t'));
        if fields.len() != width {
            bail!(
                "{}: a row of {} fields where the COPY names {width} columns",
                rw.table,
                fields.len()
            );
        }
        for (i, f) in fields.iter().enumerate() {
            decoded[i] = if rw.needs(i) { decode(f)? } else { None };
        }
        let view: Vec<Option<&str>> = decoded.iter().map(|d| d.as_deref()).collect();
        let mut changes = rw.rewrite(&view);
        changes.sort_by_key(|(i, _)| *i);
        let mut next = changes.into_iter().peekable();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            match next.peek() {
                Some((j, _)) if *j == i => {
                    let (_, v) = next.next().expect("peeked");
                    encode(v.as_deref(), &mut out);
                }
                _ => out.extend_from_slice(f),
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::plan::{Action, ColumnPlan, TablePlan, TypeCategory};
    use crate::privacy::transform::Rewrites;
    use crate::privacy::{PrivacyKey, Strategy};

    #[test]
    fn copy_statements_are_read_with_quoted_names() {
        let (t, c) =
            parse_copy(r#"COPY metier.citoyens (id, nom, "Prénom ""x""") FROM stdin"#).unwrap();
        assert_eq!(t, TableRef::new("metier", "citoyens"));
        assert_eq!(c, vec!["id", "nom", "Prénom \"x\""]);
        let (t, _) = parse_copy(r#"COPY "my.schema"."big.table" (a) FROM stdin"#).unwrap();
        assert_eq!(t, TableRef::new("my.schema", "big.table"));
        assert!(parse_copy("COPY metier.citoyens FROM stdin").is_err());
    }

    #[test]
    fn fields_decode_and_encode_back() {
        assert_eq!(decode(b"\\N").unwrap(), None);
        assert_eq!(
            decode(b"a\\tb\\nc\\\\d\\101\\x42").unwrap().as_deref(),
            Some("a\tb\nc\\dAB")
        );
        let mut out = Vec::new();
        encode(Some("a\tb\nc\\d\r"), &mut out);
        assert_eq!(out, b"a\\tb\\nc\\\\d\\r");
        assert_eq!(decode(&out).unwrap().as_deref(), Some("a\tb\nc\\d\r"));
    }

    #[test]
    fn ruled_fields_change_and_the_others_stay_byte_for_byte() {
        let plan = TablePlan {
            table: TableRef::new("metier", "demandes"),
            key: Some("id".into()),
            columns: vec![ColumnPlan {
                column: "commentaire".into(),
                strategy: Strategy::Null,
                action: Action::Null,
                category: TypeCategory::Text,
            }],
        };
        let key = PrivacyKey::from_bytes(b"0123456789abcdef");
        let rw = Rewrites::new(vec![plan], &key, "anonyme.invalid");
        let cols: Vec<String> = ["id", "objet", "commentaire"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = rw
            .rewriter(&TableRef::new("metier", "demandes"), &cols)
            .unwrap()
            .unwrap();
        let out = rewrite_block(&r, b"1\ta\\tb\\101\tappelle\\n\n2\t\\N\t\\N\n").unwrap();
        assert_eq!(out, b"1\ta\\tb\\101\t\\N\n2\t\\N\t\\N\n");
        let e = rewrite_block(&r, b"3\tx\n").unwrap_err().to_string();
        assert!(e.contains("metier.demandes: a row of 2 fields"), "{e}");
    }
}
