//! Splitting a migration file into the statements or batches an engine runs one at a time.
//!
//! PostgreSQL's statements are split on `;` outside quotes, dollar quotes and comments, so that
//! each runs on its own (an error without a cursor position still names its statement's line,
//! and `CREATE INDEX CONCURRENTLY` must be sent alone). MySQL runs one statement per query, and trigger bodies contain `;`, so files use the mysql
//! client's `DELIMITER` directive; this splitter follows the client's rules (quotes,
//! backticks, comments, `DELIMITER` lines). SQL Server scripts separate batches with a line
//! holding only `GO`, as sqlcmd does. Each piece keeps the file line it starts on, so an
//! error can point at `V002__metier.sql:45`.

/// One statement or batch and the 1-based line of the file where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub line: usize,
    pub sql: String,
}

/// Splits a MySQL script the way the `mysql` client does.
pub fn split_mysql(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut delim = ";".to_string();
    let mut cur = String::new();
    let mut cur_line = 0usize; // line of the first non-blank character of `cur`
    let mut state = State::Normal;
    for (idx, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_no = idx + 1;
        // A DELIMITER directive is only recognised between statements.
        if state == State::Normal && cur.trim().is_empty() {
            let t = raw_line.trim();
            if t.len() >= 10 && t[..10].eq_ignore_ascii_case("delimiter ") {
                delim = t[10..].trim().to_string();
                cur.clear();
                continue;
            }
        }
        let bytes = raw_line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            match state {
                State::Normal => {
                    if raw_line[i..].starts_with(delim.as_str()) {
                        push_piece(&mut out, &mut cur, cur_line);
                        i += delim.len();
                        continue;
                    }
                    match c {
                        b'\'' => state = State::Quote(b'\''),
                        b'"' => state = State::Quote(b'"'),
                        b'`' => state = State::Quote(b'`'),
                        b'#' => state = State::LineComment,
                        b'-' if raw_line[i..].starts_with("-- ")
                            || raw_line[i..].starts_with("--\n")
                            || raw_line[i..].trim_end() == "--" =>
                        {
                            state = State::LineComment
                        }
                        b'/' if raw_line[i..].starts_with("/*") => {
                            state = State::BlockComment;
                            cur.push_str("/*");
                            i += 2;
                            continue;
                        }
                        _ => {}
                    }
                }
                State::Quote(q) => {
                    if c == b'\\' && q != b'`' {
                        // Backslash escapes the next byte inside ' and " strings.
                        let next = raw_line[i + 1..]
                            .chars()
                            .next()
                            .map(char::len_utf8)
                            .unwrap_or(0);
                        cur.push_str(&raw_line[i..i + 1 + next]);
                        i += 1 + next;
                        continue;
                    }
                    if c == q {
                        state = State::Normal;
                    }
                }
                State::LineComment => {
                    if c == b'\n' {
                        state = State::Normal;
                    }
                }
                State::BlockComment => {
                    if raw_line[i..].starts_with("*/") {
                        state = State::Normal;
                        cur.push_str("*/");
                        i += 2;
                        continue;
                    }
                }
            }
            let ch_len = raw_line[i..]
                .chars()
                .next()
                .map(char::len_utf8)
                .unwrap_or(1);
            if state != State::LineComment {
                if cur.trim().is_empty() && !c.is_ascii_whitespace() {
                    cur.clear();
                    cur_line = line_no;
                }
                cur.push_str(&raw_line[i..i + ch_len]);
            }
            i += ch_len;
        }
        if state == State::LineComment {
            state = State::Normal;
            cur.push('\n');
        }
    }
    push_piece(&mut out, &mut cur, cur_line);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Quote(u8),
    LineComment,
    BlockComment,
}

fn push_piece(out: &mut Vec<Piece>, cur: &mut String, line: usize) {
    let sql = cur.trim();
    // A piece made only of a block comment is not a statement.
    let only_comment =
        sql.starts_with("/*") && sql.ends_with("*/") && sql[2..].find("*/") == Some(sql.len() - 4);
    if !sql.is_empty() && !only_comment {
        out.push(Piece {
            line,
            sql: sql.to_string(),
        });
    }
    cur.clear();
}

/// Splits a T-SQL script into batches on lines holding only `GO` (any case, optional `;`).
pub fn split_go(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (idx, line) in text.lines().enumerate() {
        let t = line.trim().trim_end_matches(';');
        if t.eq_ignore_ascii_case("go") {
            if !cur.trim().is_empty() {
                out.push(Piece {
                    line: start,
                    sql: cur.trim_end().to_string(),
                });
            }
            cur.clear();
            start = idx + 2;
            continue;
        }
        if cur.trim().is_empty() && line.trim().is_empty() {
            start = idx + 2;
            cur.clear();
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        out.push(Piece {
            line: start,
            sql: cur.trim_end().to_string(),
        });
    }
    out
}

/// Splits a PostgreSQL script into statements on `;`, as psql does: not inside '…' (nor E'…'
/// with its backslash escapes), "…", $tag$…$tag$ bodies, -- and (nested) /* */ comments.
/// Each piece is the statement's exact text from its first token (comments inside it kept),
/// so a server's cursor position within it maps to a line of the file.
///
/// A SQL-standard function body (`BEGIN ATOMIC … END`) holds `;` that psql itself only
/// finds with a parser: a script holding one is returned whole, as one piece from line 1.
pub fn split_postgres(text: &str) -> Vec<Piece> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut words: [String; 2] = Default::default();
    let mut atomic = false;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut i = 0;
    let push = |out: &mut Vec<Piece>, from: Option<usize>, to: usize| {
        if let Some(from) = from {
            let sql = text[from..to].trim_end();
            if !sql.is_empty() {
                out.push(Piece {
                    line: 1 + text[..from].matches('\n').count(),
                    sql: sql.to_string(),
                });
            }
        }
    };
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b';' {
            push(&mut out, start.take(), i);
            words = Default::default();
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        match c {
            b'\'' => {
                // E'…' takes backslash escapes; the E is the word just before the quote.
                let escapes =
                    i > 0 && matches!(b[i - 1], b'e' | b'E') && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'$' if i == 0 || !ident(b[i - 1]) => {
                // $tag$ opens a dollar-quoted body when the tag is empty or an identifier
                // (not $1, a parameter).
                let mut j = i + 1;
                while j < b.len() && ident(b[j]) && !(j == i + 1 && b[j].is_ascii_digit()) {
                    j += 1;
                }
                if b.get(j) == Some(&b'$') {
                    let tag = &text[i..=j];
                    match text[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = b.len(),
                    }
                } else {
                    i += 1;
                }
            }
            c if ident(c) => {
                let from = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = text[from..i].to_ascii_uppercase();
                if word == "ATOMIC" && words[1] == "BEGIN" {
                    atomic = true;
                }
                words = [std::mem::take(&mut words[1]), word];
            }
            _ => i += 1,
        }
    }
    push(&mut out, start, b.len());
    if atomic {
        return if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![Piece {
                line: 1,
                sql: text.to_string(),
            }]
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(p: &[Piece]) -> Vec<(usize, &str)> {
        p.iter().map(|p| (p.line, p.sql.as_str())).collect()
    }

    #[test]
    fn mysql_statements_with_lines() {
        let s = "-- header; not a statement\nCREATE TABLE a (x int);\n\nINSERT INTO a VALUES (1);INSERT INTO a VALUES (2);\n";
        assert_eq!(
            sqls(&split_mysql(s)),
            [
                (2, "CREATE TABLE a (x int)"),
                (4, "INSERT INTO a VALUES (1)"),
                (4, "INSERT INTO a VALUES (2)")
            ]
        );
    }

    #[test]
    fn mysql_quotes_and_comments_hide_semicolons() {
        let s = "INSERT INTO t VALUES ('a;b', \"c;d\", 'it\\'s;'); # x;y\nSELECT `we;ird` /* ; */ FROM t;\n";
        let p = split_mysql(s);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].sql, "INSERT INTO t VALUES ('a;b', \"c;d\", 'it\\'s;')");
        assert_eq!(p[1].sql, "SELECT `we;ird` /* ; */ FROM t");
        assert_eq!(p[1].line, 2);
    }

    #[test]
    fn mysql_delimiter_directive_for_trigger_bodies() {
        let s = "DELIMITER $$\nCREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW\nBEGIN\n  INSERT INTO j VALUES (NEW.x);\n  INSERT INTO j VALUES (2);\nEND$$\nDELIMITER ;\nSELECT 1;\n";
        let p = split_mysql(s);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].sql.starts_with("CREATE TRIGGER") && p[0].sql.ends_with("END"));
        assert_eq!((p[0].line, p[1].line), (2, 8));
        assert_eq!(p[1].sql, "SELECT 1");
    }

    #[test]
    fn mysql_utf8_text_survives() {
        let p = split_mysql("INSERT INTO a VALUES ('Hôtel de Ville; 13002');\n");
        assert_eq!(p[0].sql, "INSERT INTO a VALUES ('Hôtel de Ville; 13002')");
    }

    #[test]
    fn go_batches() {
        let s = "CREATE SCHEMA metier;\nGO\n\nCREATE VIEW v AS\nSELECT 1 AS x;\ngo\nSELECT 2;\n";
        assert_eq!(
            sqls(&split_go(s)),
            [
                (1, "CREATE SCHEMA metier;"),
                (4, "CREATE VIEW v AS\nSELECT 1 AS x;"),
                (7, "SELECT 2;")
            ]
        );
    }

    #[test]
    fn postgres_statements_with_lines() {
        let s = "-- V009: header; not a statement\nCREATE TABLE a (x int);\n\n/* a; /* nested; */ b */\nINSERT INTO a VALUES (1); INSERT INTO a\n  VALUES (2)\n";
        assert_eq!(
            sqls(&split_postgres(s)),
            [
                (2, "CREATE TABLE a (x int)"),
                (5, "INSERT INTO a VALUES (1)"),
                (5, "INSERT INTO a\n  VALUES (2)")
            ]
        );
        assert!(split_postgres("-- only a comment;\n\n").is_empty());
    }

    #[test]
    fn postgres_quotes_dollar_bodies_and_comments_hide_semicolons() {
        let s = "SELECT 'a;b', E'c\\';d', \"e;\"\"f\" -- g;\nFROM t;\nCREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1; RETURN $1;\nEND\n$body$;\nSELECT $$x;y$$, $1;\n";
        let p = split_postgres(s);
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(
            p[0].sql,
            "SELECT 'a;b', E'c\\';d', \"e;\"\"f\" -- g;\nFROM t"
        );
        assert!(p[1].sql.starts_with("CREATE FUNCTION") && p[1].sql.ends_with("$body$"));
        assert_eq!((p[1].line, p[2].line), (3, 8));
        assert_eq!(p[2].sql, "SELECT $$x;y$$, $1");
        // A lone `;` is no statement; UTF-8 text survives.
        assert_eq!(
            sqls(&split_postgres(";\nCOMMENT ON TABLE a IS 'Hôtel; ville';")),
            [(2, "COMMENT ON TABLE a IS 'Hôtel; ville'")]
        );
    }

    #[test]
    fn postgres_begin_atomic_bodies_keep_the_script_whole() {
        let s = "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\nEND;\n";
        assert_eq!(sqls(&split_postgres(s)), [(1, s)]);
    }
}
