//! Splits a `mariadb-dump` script in two as it streams, so that a copy can be restored with
//! some tables' rows rewritten: the **schema** part (everything but the rows: tables,
//! triggers, views, routines) and the **data** part (the dump's session settings, then only
//! the `INSERT INTO `t` VALUES (…),(…);` statements, the tuples of ruled tables rewritten
//! by their [`Rewriter`]).
//!
//! A statement starts at the beginning of a line, outside a `DELIMITER ;;` block (a trigger
//! or routine body may hold an INSERT of its own). Strings are `'…'` with backslash escapes
//! and doubled quotes. Memory is bounded by the longest row of a ruled table (its tuple is
//! rewritten whole) and a line's first bytes; everything else streams.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};

use super::privacy::logical;
use crate::catalog::TableRef;
use crate::privacy::transform::{Rewriter, Rewrites};

/// Which part of the dump passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Schema,
    Data,
}

const INSERT: &[u8] = b"INSERT INTO `";
/// The longest statement head kept while it may still be `INSERT INTO … VALUES` (a column
/// list can be long).
const MAX_HEAD: usize = 64 * 1024;
/// The bytes of each line kept to recognise `DELIMITER` lines and the header.
const LINE_START: usize = 32;

pub struct DumpFilter {
    part: Part,
    rewrites: Option<Arc<Rewrites>>,
    /// Each ruled table's columns in the server's order (for INSERTs without a column list).
    columns: HashMap<TableRef, Vec<String>>,
    state: State,
    /// Still in the dump's leading comments and settings (the data part keeps them).
    in_header: bool,
    in_delimiter: bool,
    line_start: Vec<u8>,
    /// The line number, for errors.
    line: u64,
}

enum State {
    /// Between statements: the start of the line is kept until it is known whether it is
    /// an INSERT and whether it passes.
    Line {
        head: Vec<u8>,
        pass: Option<bool>,
    },
    Values(Values),
}

struct Values {
    table: String,
    pass: bool,
    rewriter: Option<Arc<Rewriter>>,
    depth: u32,
    quote: Quote,
    tuple: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    No,
    In,
    Escaped,
    /// Just after a quote inside a string: it closes the string unless another follows.
    Closing,
}

impl DumpFilter {
    /// `columns`: the ruled tables' columns in order (by the model's table names).
    pub fn new(
        part: Part,
        rewrites: Option<Arc<Rewrites>>,
        columns: HashMap<TableRef, Vec<String>>,
    ) -> DumpFilter {
        DumpFilter {
            part,
            rewrites,
            columns,
            state: State::Line {
                head: Vec::new(),
                pass: None,
            },
            in_header: true,
            in_delimiter: false,
            line_start: Vec::new(),
            line: 1,
        }
    }

    /// Filters `buf`, appending what passes to `out`.
    pub fn feed(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<()> {
        for &b in buf {
            self.byte(b, out)?;
        }
        Ok(())
    }

    /// Checks that the dump did not end inside a statement.
    pub fn finish(&self) -> Result<()> {
        match &self.state {
            State::Values(v) => bail!("the dump ends inside the rows of `{}`", v.table),
            State::Line { .. } => Ok(()),
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) -> Result<()> {
        if let State::Values(v) = &mut self.state {
            if v.byte(b, out, self.line)? {
                // The statement ended; the rest of its line follows it.
                let pass = v.pass;
                self.state = State::Line {
                    head: Vec::new(),
                    pass: Some(pass),
                };
                self.line_start.clear();
                self.line_start.extend_from_slice(b"INSERT");
            }
            if b == b'\n' {
                self.line += 1;
            }
            return Ok(());
        }
        if self.line_start.len() < LINE_START && b != b'\n' {
            self.line_start.push(b);
        }
        let State::Line { head, pass } = &mut self.state else {
            unreachable!()
        };
        if let Some(p) = *pass {
            if p {
                out.push(b);
            }
            if b == b'\n' {
                self.end_line();
            }
            return Ok(());
        }
        if (b == b' ' || b == b'\n' || b == b'\r' || b == b'\t') && !self.in_delimiter {
            if let Some((table, listed)) = insert_head(head) {
                return self.start_insert(table, listed, b, out);
            }
        }
        if b == b'\n' {
            if head.starts_with(b"INSERT ") && !self.in_delimiter {
                bail!(
                    "line {}: an INSERT this restore cannot read: {}",
                    self.line,
                    String::from_utf8_lossy(&head[..head.len().min(120)])
                );
            }
            let head = std::mem::take(head);
            if self.line_passes(&head) {
                out.extend_from_slice(&head);
                out.push(b'\n');
            }
            self.end_line();
            return Ok(());
        }
        head.push(b);
        let maybe_insert = !self.in_delimiter
            && if head.len() <= INSERT.len() {
                INSERT.starts_with(head)
            } else {
                head.starts_with(INSERT) && head.len() <= MAX_HEAD
            };
        if !maybe_insert && (head.len() >= 2 || self.part == Part::Schema) {
            let head = std::mem::take(head);
            let p = self.line_passes(&head);
            if p {
                out.extend_from_slice(&head);
            }
            self.state = State::Line {
                head,
                pass: Some(p),
            };
        }
        Ok(())
    }

    fn end_line(&mut self) {
        let l = &self.line_start;
        if l.starts_with(b"DELIMITER ;;") {
            self.in_delimiter = true;
        } else if l.starts_with(b"DELIMITER ;") {
            self.in_delimiter = false;
        }
        self.line_start.clear();
        self.line += 1;
        self.state = State::Line {
            head: Vec::new(),
            pass: None,
        };
    }

    /// Whether a line that is not an INSERT passes, from its first bytes.
    fn line_passes(&mut self, start: &[u8]) -> bool {
        match self.part {
            Part::Schema => true,
            Part::Data => {
                let header_like = start.is_empty()
                    || start == b"\r"
                    || start.starts_with(b"--")
                    || start.starts_with(b"/*");
                self.in_header &= header_like;
                self.in_header
            }
        }
    }

    fn start_insert(
        &mut self,
        table: String,
        listed: Option<Vec<String>>,
        b: u8,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.in_header = false;
        let pass = self.part == Part::Data;
        let mut rewriter = None;
        if pass {
            if let Some(rw) = &self.rewrites {
                let model = logical(&table);
                if rw.rules(&model) {
                    let columns = match listed {
                        Some(c) => c,
                        None => self.columns.get(&model).cloned().ok_or_else(|| {
                            anyhow!("{model}: its columns are unknown to this restore")
                        })?,
                    };
                    rewriter = rw.rewriter(&model, &columns).map_err(|e| anyhow!(e))?;
                }
            }
        }
        let State::Line { head, .. } = &mut self.state else {
            unreachable!()
        };
        if pass {
            out.extend_from_slice(head);
            out.push(b);
        }
        if b == b'\n' {
            self.line += 1;
        }
        self.state = State::Values(Values {
            table,
            pass,
            rewriter,
            depth: 0,
            quote: Quote::No,
            tuple: Vec::new(),
        });
        Ok(())
    }
}

impl Values {
    /// One byte of the VALUES list; true when it ended the statement.
    fn byte(&mut self, b: u8, out: &mut Vec<u8>, line: u64) -> Result<bool> {
        let mut ended = false;
        let mut tuple_end = false;
        match self.quote {
            Quote::Escaped => self.quote = Quote::In,
            Quote::In => match b {
                b'\\' => self.quote = Quote::Escaped,
                b'\'' => self.quote = Quote::Closing,
                _ => {}
            },
            Quote::Closing | Quote::No => {
                if self.quote == Quote::Closing && b == b'\'' {
                    self.quote = Quote::In;
                } else {
                    self.quote = Quote::No;
                    match b {
                        b'\'' => self.quote = Quote::In,
                        b'(' => self.depth += 1,
                        b')' => {
                            self.depth = self.depth.saturating_sub(1);
                            tuple_end = self.depth == 0;
                        }
                        b';' if self.depth == 0 => ended = true,
                        _ => {}
                    }
                }
            }
        }
        if !self.pass {
            return Ok(ended);
        }
        match &self.rewriter {
            None => out.push(b),
            Some(rw) => {
                if self.depth > 0 || tuple_end {
                    self.tuple.push(b);
                    if tuple_end {
                        rewrite_tuple(rw, &self.tuple, out)
                            .map_err(|e| anyhow!("line {line}: {e}"))?;
                        self.tuple.clear();
                    }
                } else {
                    out.push(b);
                }
            }
        }
        Ok(ended)
    }
}

/// The table and the column list, if any, of a line that is exactly
/// `INSERT INTO `name` VALUES` or `INSERT INTO `name` (`a`, `b`) VALUES`.
fn insert_head(line: &[u8]) -> Option<(String, Option<Vec<String>>)> {
    let rest = line.strip_prefix(b"INSERT INTO ")?;
    let (table, rest) = backticked(rest)?;
    if rest == b" VALUES" {
        return Some((table, None));
    }
    let mut rest = rest.strip_prefix(b" (")?;
    let mut columns = Vec::new();
    loop {
        let (c, r) = backticked(rest)?;
        columns.push(c);
        if let Some(r) = r.strip_prefix(b",") {
            rest = r.strip_prefix(b" ").unwrap_or(r);
        } else {
            return (r == b") VALUES").then_some((table, Some(columns)));
        }
    }
}

/// A `name` in backticks (doubled inside), and what follows it.
fn backticked(s: &[u8]) -> Option<(String, &[u8])> {
    let mut rest = s.strip_prefix(b"`")?;
    let mut name = Vec::new();
    loop {
        let i = rest.iter().position(|b| *b == b'`')?;
        name.extend_from_slice(&rest[..i]);
        rest = &rest[i + 1..];
        match rest.strip_prefix(b"`") {
            Some(r) => {
                name.push(b'`');
                rest = r;
            }
            None => return Some((String::from_utf8(name).ok()?, rest)),
        }
    }
}

/// Splits a tuple `(v1,v2,…)` into its raw values.
fn values(tuple: &[u8]) -> Result<Vec<&[u8]>> {
    let inner = tuple
        .strip_prefix(b"(")
        .and_then(|t| t.strip_suffix(b")"))
        .ok_or_else(|| anyhow!("a row not in parentheses"))?;
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote = Quote::No;
    for (i, &b) in inner.iter().enumerate() {
        match quote {
            Quote::Escaped => quote = Quote::In,
            Quote::In => match b {
                b'\\' => quote = Quote::Escaped,
                b'\'' => quote = Quote::Closing,
                _ => {}
            },
            Quote::Closing | Quote::No => {
                if quote == Quote::Closing && b == b'\'' {
                    quote = Quote::In;
                } else {
                    quote = Quote::No;
                    match b {
                        b'\'' => quote = Quote::In,
                        b',' => {
                            out.push(&inner[start..i]);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    out.push(&inner[start..]);
    Ok(out)
}

/// A value of a tuple as text: `None` for NULL; strings unescaped; `0x…` decoded; numbers
/// as written.
pub fn decode(v: &[u8]) -> Result<Option<String>> {
    let v = v.trim_ascii();
    if v.eq_ignore_ascii_case(b"NULL") {
        return Ok(None);
    }
    let v = v.strip_prefix(b"_binary ").unwrap_or(v);
    if let Some(q) = v.strip_prefix(b"'").and_then(|q| q.strip_suffix(b"'")) {
        let mut out = Vec::with_capacity(q.len());
        let mut i = 0;
        while i < q.len() {
            let b = q[i];
            i += 1;
            if b == b'\'' && q.get(i) == Some(&b'\'') {
                out.push(b'\'');
                i += 1;
            } else if b == b'\\' && i < q.len() {
                let e = q[i];
                i += 1;
                match e {
                    b'0' => out.push(0),
                    b'b' => out.push(8),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'Z' => out.push(0x1a),
                    b'%' | b'_' => out.extend_from_slice(&[b'\\', e]),
                    other => out.push(other),
                }
            } else {
                out.push(b);
            }
        }
        return Ok(Some(String::from_utf8(out)?));
    }
    if let Some(h) = v.strip_prefix(b"0x") {
        let bytes = hex::decode(h).map_err(|e| anyhow!("a hexadecimal value: {e}"))?;
        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
    }
    Ok(Some(String::from_utf8(v.to_vec())?))
}

/// Appends a value as a literal: NULL, or a quoted string with the dump's escapes.
pub fn encode(v: Option<&str>, out: &mut Vec<u8>) {
    let Some(v) = v else {
        out.extend_from_slice(b"NULL");
        return;
    };
    out.push(b'\'');
    for &b in v.as_bytes() {
        match b {
            0 => out.extend_from_slice(b"\\0"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x1a => out.extend_from_slice(b"\\Z"),
            b'\\' | b'\'' | b'"' => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    out.push(b'\'');
}

fn rewrite_tuple(rw: &Rewriter, tuple: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let raw = values(tuple)?;
    if raw.len() != rw.width() {
        bail!(
            "{}: a row of {} values where the table has {} columns",
            rw.table,
            raw.len(),
            rw.width()
        );
    }
    let mut decoded = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        decoded.push(if rw.needs(i) { decode(v)? } else { None });
    }
    let view: Vec<Option<&str>> = decoded.iter().map(|d| d.as_deref()).collect();
    let mut changes = rw.rewrite(&view);
    changes.sort_by_key(|(i, _)| *i);
    let mut next = changes.into_iter().peekable();
    out.push(b'(');
    for (i, v) in raw.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match next.peek() {
            Some((j, _)) if *j == i => {
                let (_, new) = next.next().expect("peeked");
                encode(new.as_deref(), out);
            }
            _ => out.extend_from_slice(v),
        }
    }
    out.push(b')');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::plan::{Action, ColumnPlan, TablePlan, TypeCategory};
    use crate::privacy::{PrivacyKey, Strategy};

    const DUMP: &str = "-- MariaDB dump 10.19\n\
        /*!40101 SET NAMES utf8mb4 */;\n\
        /*!40103 SET TIME_ZONE='+00:00' */;\n\
        \n\
        DROP TABLE IF EXISTS `metier_demandes`;\n\
        CREATE TABLE `metier_demandes` (\n  `id` int NOT NULL,\n  `commentaire` text\n);\n\
        LOCK TABLES `metier_demandes` WRITE;\n\
        INSERT INTO `metier_demandes` VALUES\n(1,'it''s (a) \\'test\\';'),\n(2,NULL);\n\
        UNLOCK TABLES;\n\
        INSERT INTO `other` VALUES (1,'x;'),(2,'y');\n\
        DELIMITER ;;\n\
        INSERT INTO `metier_demandes` VALUES (NEW.id, 'in a trigger') ;;\n\
        DELIMITER ;\n\
        -- Dump completed\n";

    fn filter(part: Part) -> (DumpFilter, Arc<Rewrites>) {
        let plan = TablePlan {
            table: TableRef::new("metier", "demandes"),
            key: Some("id".into()),
            columns: vec![ColumnPlan {
                column: "commentaire".into(),
                strategy: Strategy::Hash,
                action: Action::Hash { max_len: Some(8) },
                category: TypeCategory::Text,
            }],
        };
        let key = PrivacyKey::from_bytes(b"0123456789abcdef");
        let rw = Arc::new(Rewrites::new(vec![plan], &key, "anonyme.invalid"));
        let columns = [(
            TableRef::new("metier", "demandes"),
            vec!["id".to_string(), "commentaire".to_string()],
        )]
        .into();
        (DumpFilter::new(part, Some(rw.clone()), columns), rw)
    }

    fn run(f: &mut DumpFilter, chunk: usize) -> String {
        let mut out = Vec::new();
        for c in DUMP.as_bytes().chunks(chunk) {
            f.feed(c, &mut out).unwrap();
        }
        f.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_schema_part_is_everything_but_the_rows() {
        for chunk in [1, 7, 4096] {
            let (mut f, _) = filter(Part::Schema);
            let out = run(&mut f, chunk);
            assert!(!out.contains("VALUES\n(1"), "{out}");
            assert!(!out.contains("'x;'"), "{out}");
            assert!(out.contains("CREATE TABLE `metier_demandes`"), "{out}");
            assert!(out.contains("LOCK TABLES") && out.contains("UNLOCK TABLES;\n"));
            // The trigger's own INSERT is schema.
            assert!(out.contains("(NEW.id, 'in a trigger') ;;"), "{out}");
        }
    }

    #[test]
    fn the_data_part_is_the_header_and_the_rows_rewritten() {
        let key = PrivacyKey::from_bytes(b"0123456789abcdef");
        let h = &key.hash_hex("it's (a) 'test';".as_bytes())[..8];
        for chunk in [1, 7, 4096] {
            let (mut f, rw) = filter(Part::Data);
            let out = run(&mut f, chunk);
            assert_eq!(
                out,
                format!(
                    "-- MariaDB dump 10.19\n\
                     /*!40101 SET NAMES utf8mb4 */;\n\
                     /*!40103 SET TIME_ZONE='+00:00' */;\n\
                     \n\
                     INSERT INTO `metier_demandes` VALUES\n(1,'{h}'),\n(2,NULL);\n\
                     INSERT INTO `other` VALUES (1,'x;'),(2,'y');\n"
                )
            );
            assert_eq!(rw.made()[0].rows(), 2);
        }
    }

    #[test]
    fn heads_values_and_escapes() {
        assert_eq!(
            insert_head(b"INSERT INTO `a``b` VALUES"),
            Some(("a`b".to_string(), None))
        );
        assert_eq!(
            insert_head(b"INSERT INTO `t` (`x`, `y`) VALUES"),
            Some(("t".to_string(), Some(vec!["x".into(), "y".into()])))
        );
        assert_eq!(insert_head(b"INSERT INTO `t` SELECT"), None);
        assert_eq!(
            values(b"(1,'a,b',NULL,'it''s')").unwrap(),
            vec![&b"1"[..], b"'a,b'", b"NULL", b"'it''s'"]
        );
        assert_eq!(
            decode(b"'a\\nb\\'c\\\\d\\Z'").unwrap().as_deref(),
            Some("a\nb'c\\d\u{1a}")
        );
        assert_eq!(decode(b"NULL").unwrap(), None);
        assert_eq!(decode(b"0x4142").unwrap().as_deref(), Some("AB"));
        let mut out = Vec::new();
        encode(Some("a\nb'c\\d\"\0"), &mut out);
        assert_eq!(out, b"'a\\nb\\'c\\\\d\\\"\\0'");
        assert_eq!(decode(&out).unwrap().as_deref(), Some("a\nb'c\\d\"\0"));
    }

    #[test]
    fn an_unreadable_insert_and_a_cut_dump_are_errors() {
        let (mut f, _) = filter(Part::Data);
        let mut out = Vec::new();
        let e = f
            .feed(b"INSERT INTO `t` SELECT 1;\n", &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1: an INSERT this restore cannot read"),
            "{e}"
        );
        let (mut f, _) = filter(Part::Data);
        f.feed(b"INSERT INTO `t` VALUES (1,'x", &mut out).unwrap();
        assert!(f.finish().unwrap_err().to_string().contains("`t`"));
    }
}
