//! Splitting a migration file into the statements or batches an engine runs one at a time.
//!
//! PostgreSQL takes a whole file in one simple-query message and needs no splitting. MySQL
//! runs one statement per query, and trigger bodies contain `;`, so files use the mysql
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
}
