//! A streaming CSV record parser that keeps what the load contract needs and the `csv`
//! crate does not expose: whether each field was quoted (an unquoted empty field is NULL, a
//! quoted one is an empty string), the physical line each record starts on (quoted
//! multi-line fields must not shift error line numbers), and a hard error for a quote left
//! open at the end of the file (the `csv` crate silently closes it).
//!
//! RFC 4180 with a configurable one-byte delimiter and quote: a quote doubles to escape
//! itself inside a quoted field; LF or CRLF ends a record, or CR alone in a file whose first
//! line ends so (old Mac exports; physical lines are then counted by CR); a quote inside an unquoted field is
//! literal (French data writes `12" pouces`). Input must already be UTF-8 (see `decode.rs`);
//! the parser works on bytes, which is safe because the delimiter and quote are ASCII.

use std::io::{self, Read};

use memchr::{memchr, memchr2, memchr_iter};

const BUF_SIZE: usize = 256 * 1024;

/// One record: all field bytes back to back, with the end offset and quoting of each field.
#[derive(Debug, Default)]
pub struct Record {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
    pub quoted: Vec<bool>,
    /// The physical line (1-based) on which the record starts.
    pub line: u64,
}

impl Record {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    /// A line with nothing on it.
    pub fn is_blank(&self) -> bool {
        self.ends.len() == 1 && self.ends[0] == 0 && !self.quoted[0]
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.quoted.clear();
    }

    fn end_field(&mut self, quoted: bool) {
        self.ends.push(self.buf.len());
        self.quoted.push(quoted);
    }
}

#[derive(Debug)]
pub enum ParseError {
    /// Reading (or decoding) failed while on this line.
    Io { line: u64, err: io::Error },
    /// The file ended inside a quoted field opened on this line.
    Unterminated { line: u64 },
    /// A closing quote was followed by something other than a delimiter or a line end.
    AfterQuote { line: u64, found: char },
    /// Field `field` (1-based) of the record starting on `line` grew past `limit` bytes (the
    /// record as a whole when `field` is 0): nothing more is read.
    TooLarge {
        line: u64,
        field: usize,
        limit: usize,
    },
}

pub struct Parser<R> {
    src: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
    delim: u8,
    quote: u8,
    line: u64,
    /// The largest record (its fields' bytes together), hence the largest field.
    max: usize,
    /// What ends a line: LF (CRLF too), or CR alone, decided by the first line break.
    eol: u8,
    sniffed: bool,
}

impl<R: Read> Parser<R> {
    /// A parser whose records never hold more than `max` bytes: memory stays bounded by it
    /// whatever the input (a file without line breaks, `/dev/zero`).
    pub fn new(src: R, delim: u8, quote: u8, max: usize) -> Self {
        Parser {
            src,
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            delim,
            quote,
            line: 1,
            max,
            eol: b'\n',
            sniffed: false,
        }
    }

    /// Whether lines end with CR alone (decided once the first line break has been read).
    pub fn cr_only(&self) -> bool {
        self.eol == b'\r'
    }

    /// Reads ahead until the first line break (and the byte after it) is buffered, the buffer
    /// is full or the input ends, and decides what ends a line: a first CR not followed by LF
    /// makes CR alone the line end of the whole file.
    fn sniff(&mut self) -> Result<(), ParseError> {
        self.sniffed = true;
        loop {
            let seen = &self.buf[self.pos..self.len];
            if let Some(i) = memchr2(b'\n', b'\r', seen) {
                if seen[i] == b'\n' {
                    return Ok(());
                }
                if i + 1 < seen.len() {
                    if seen[i + 1] != b'\n' {
                        self.eol = b'\r';
                    }
                    return Ok(());
                }
            }
            if self.eof || self.len == self.buf.len() {
                if seen.last() == Some(&b'\r') {
                    self.eol = b'\r';
                }
                return Ok(());
            }
            match self.src.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(ParseError::Io {
                        line: self.line,
                        err,
                    })
                }
            }
        }
    }

    /// Appends `bytes` to the field being read, unless the record would pass the limit.
    fn push(&self, rec: &mut Record, bytes: &[u8]) -> Result<(), ParseError> {
        if rec.buf.len() + bytes.len() > self.max {
            return Err(ParseError::TooLarge {
                line: rec.line,
                field: rec.ends.len() + 1,
                limit: self.max,
            });
        }
        rec.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The physical line the parser is on (for errors raised between records).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Makes sure unread bytes are buffered; false at the end of the input.
    fn fill(&mut self) -> Result<bool, ParseError> {
        if self.pos < self.len {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.src.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    self.pos = 0;
                    self.len = 0;
                    return Ok(false);
                }
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(ParseError::Io {
                        line: self.line,
                        err,
                    })
                }
            }
        }
    }

    /// Skips `n` physical lines (title lines before the header), whatever they hold: quotes
    /// in them open nothing. Returns how many were skipped (fewer when the input ends).
    pub fn skip_lines(&mut self, n: u64) -> Result<u64, ParseError> {
        if !self.sniffed {
            self.sniff()?;
        }
        let mut skipped = 0;
        while skipped < n {
            if !self.fill()? {
                break;
            }
            let chunk = &self.buf[self.pos..self.len];
            match memchr(self.eol, chunk) {
                Some(i) => {
                    self.pos += i + 1;
                    self.line += 1;
                    skipped += 1;
                }
                None => self.pos = self.len,
            }
        }
        Ok(skipped)
    }

    /// Reads the next record into `rec`; false at the end of the input.
    pub fn next_record(&mut self, rec: &mut Record) -> Result<bool, ParseError> {
        rec.clear();
        rec.line = self.line;
        if !self.sniffed {
            self.sniff()?;
        }
        let eol = self.eol;
        if !self.fill()? {
            return Ok(false);
        }
        loop {
            // At the start of a field.
            if !self.fill()? {
                rec.end_field(false);
                return Ok(true);
            }
            if self.buf[self.pos] == self.quote {
                self.pos += 1;
                let opened_on = self.line;
                loop {
                    if !self.fill()? {
                        return Err(ParseError::Unterminated { line: opened_on });
                    }
                    let chunk = &self.buf[self.pos..self.len];
                    match memchr(self.quote, chunk) {
                        None => {
                            self.line += memchr_iter(eol, chunk).count() as u64;
                            self.push(rec, chunk)?;
                            self.pos = self.len;
                        }
                        Some(q) => {
                            let part = &chunk[..q];
                            self.line += memchr_iter(eol, part).count() as u64;
                            self.push(rec, part)?;
                            self.pos += q + 1;
                            if !self.fill()? {
                                rec.end_field(true);
                                return Ok(true);
                            }
                            let b = self.buf[self.pos];
                            if b == self.quote {
                                self.push(rec, &[self.quote])?;
                                self.pos += 1;
                            } else if b == self.delim {
                                self.pos += 1;
                                rec.end_field(true);
                                break;
                            } else if b == eol {
                                self.pos += 1;
                                self.line += 1;
                                rec.end_field(true);
                                return Ok(true);
                            } else if b == b'\r' {
                                self.pos += 1;
                                if self.fill()? && self.buf[self.pos] == b'\n' {
                                    self.pos += 1;
                                    self.line += 1;
                                    rec.end_field(true);
                                    return Ok(true);
                                }
                                return Err(ParseError::AfterQuote {
                                    line: self.line,
                                    found: '\r',
                                });
                            } else {
                                return Err(ParseError::AfterQuote {
                                    line: self.line,
                                    found: self.char_at_pos(),
                                });
                            }
                        }
                    }
                }
            } else {
                let field_start = rec.buf.len();
                loop {
                    if !self.fill()? {
                        rec.end_field(false);
                        return Ok(true);
                    }
                    let chunk = &self.buf[self.pos..self.len];
                    match memchr2(self.delim, eol, chunk) {
                        None => {
                            self.push(rec, chunk)?;
                            self.pos = self.len;
                        }
                        Some(i) => {
                            let is_delim = chunk[i] == self.delim;
                            self.push(rec, &chunk[..i])?;
                            self.pos += i + 1;
                            if is_delim {
                                rec.end_field(false);
                                break;
                            }
                            if eol == b'\n'
                                && rec.buf.len() > field_start
                                && rec.buf.last() == Some(&b'\r')
                            {
                                rec.buf.pop();
                            }
                            self.line += 1;
                            rec.end_field(false);
                            return Ok(true);
                        }
                    }
                }
            }
        }
    }

    /// The (UTF-8) character at the read position, for messages.
    fn char_at_pos(&self) -> char {
        let end = (self.pos + 4).min(self.len);
        let bytes = &self.buf[self.pos..end];
        match std::str::from_utf8(bytes) {
            Ok(s) => s.chars().next().unwrap_or('?'),
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()])
                .ok()
                .and_then(|s| s.chars().next())
                .unwrap_or('?'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte at a time, to exercise every buffer boundary.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    /// Each record's line and its fields with their quoting.
    type Parsed = Vec<(u64, Vec<(String, bool)>)>;

    fn parse_with<R: Read>(p: &mut Parser<R>) -> Result<Parsed, ParseError> {
        let mut out = Vec::new();
        let mut rec = Record::default();
        while p.next_record(&mut rec)? {
            let fields = (0..rec.len())
                .map(|i| {
                    (
                        String::from_utf8(rec.field(i).to_vec()).unwrap(),
                        rec.quoted[i],
                    )
                })
                .collect();
            out.push((rec.line, fields));
        }
        Ok(out)
    }

    fn parse(input: &str, delim: u8) -> Result<Parsed, ParseError> {
        let whole = parse_with(&mut Parser::new(input.as_bytes(), delim, b'"', 1 << 20));
        let trickled = parse_with(&mut Parser::new(
            Trickle(input.as_bytes()),
            delim,
            b'"',
            1 << 20,
        ));
        if let (Ok(a), Ok(b)) = (&whole, &trickled) {
            assert_eq!(a, b, "byte-at-a-time reading must give the same records");
        }
        whole
    }

    fn f(s: &str, q: bool) -> (String, bool) {
        (s.to_string(), q)
    }

    #[test]
    fn lines_ended_by_cr_alone_are_records_and_counted_lines() {
        let text = b"a;b\r1;\"x\ry\"\r2;z\r";
        for trickle in [false, true] {
            let mut p = if trickle {
                Parser::new(
                    Box::new(Trickle(text)) as Box<dyn Read>,
                    b';',
                    b'"',
                    1 << 20,
                )
            } else {
                Parser::new(Box::new(&text[..]) as Box<dyn Read>, b';', b'"', 1 << 20)
            };
            let r = parse_with(&mut p).unwrap();
            assert!(p.cr_only());
            assert_eq!(r.len(), 3, "{r:?}");
            assert_eq!(r[1].0, 2);
            assert_eq!(r[1].1[1], ("x\ry".to_string(), true));
            assert_eq!(r[2].0, 4, "the quoted CR counts as a line");
            assert_eq!(r[2].1[1].0, "z");
        }
        // CRLF stays CRLF; a CR inside a field of an LF file is data.
        let mut p = Parser::new(&b"a\r\nb\r\n"[..], b',', b'"', 1 << 20);
        let r = parse_with(&mut p).unwrap();
        assert!(!p.cr_only());
        assert_eq!(r[1].1[0].0, "b");
    }

    #[test]
    fn title_lines_are_skipped_whatever_they_hold() {
        let text = b"Effectifs \"2024\r\nsource: INSEE\r\nid;nom\r\n1;a\r\n";
        for trickle in [false, true] {
            let src: Box<dyn Read> = if trickle {
                Box::new(Trickle(text))
            } else {
                Box::new(&text[..])
            };
            let mut p = Parser::new(src, b';', b'"', 1 << 20);
            assert_eq!(p.skip_lines(2).unwrap(), 2);
            let r = parse_with(&mut p).unwrap();
            assert_eq!(r[0], (3, vec![f("id", false), f("nom", false)]));
            assert_eq!(r[1].0, 4);
        }
        let mut p = Parser::new(&b"only\ntwo"[..], b',', b'"', 1 << 20);
        assert_eq!(
            p.skip_lines(5).unwrap(),
            1,
            "a last line without its end is not counted"
        );
        assert!(parse_with(&mut p).unwrap().is_empty());
    }

    #[test]
    fn plain_and_quoted_fields() {
        let r = parse("a,b,c\n1,\"x, y\",\"\"\n", b',').unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].1, vec![f("1", false), f("x, y", true), f("", true)]);
    }

    #[test]
    fn empty_unquoted_vs_quoted() {
        let r = parse("1,,\"\"\n", b',').unwrap();
        assert_eq!(r[0].1, vec![f("1", false), f("", false), f("", true)]);
    }

    #[test]
    fn doubled_quotes_and_crlf() {
        let r = parse("\"say \"\"hi\"\"\";x\r\ny;\"z\"\r\n", b';').unwrap();
        assert_eq!(r[0].1, vec![f("say \"hi\"", true), f("x", false)]);
        assert_eq!(r[1].1, vec![f("y", false), f("z", true)]);
        assert_eq!((r[0].0, r[1].0), (1, 2));
    }

    #[test]
    fn multiline_fields_keep_physical_lines() {
        let r = parse("h1,h2\n1,\"two\nlines\"\n2,x\n", b',').unwrap();
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(r[1].1[1].0, "two\nlines");
    }

    #[test]
    fn no_final_newline_and_trailing_empty_field() {
        let r = parse("a,b\n1,", b',').unwrap();
        assert_eq!(r[1].1, vec![f("1", false), f("", false)]);
    }

    #[test]
    fn literal_quote_inside_unquoted_field() {
        let r = parse("écran 12\" pouces,1\n", b',').unwrap();
        assert_eq!(r[0].1[0].0, "écran 12\" pouces");
    }

    #[test]
    fn unterminated_quote_is_an_error_naming_where_it_opened() {
        match parse("a,b\n1,\"open\n2,3\n", b',') {
            Err(ParseError::Unterminated { line }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_after_closing_quote_is_an_error() {
        match parse("a\n\"x\"y,1\n", b',') {
            Err(ParseError::AfterQuote { line, found }) => assert_eq!((line, found), (2, 'y')),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn blank_lines_are_visible() {
        let mut p = Parser::new("a\n\nb\n".as_bytes(), b',', b'"', 1 << 20);
        let mut rec = Record::default();
        assert!(p.next_record(&mut rec).unwrap());
        assert!(p.next_record(&mut rec).unwrap() && rec.is_blank() && rec.line == 2);
        assert!(p.next_record(&mut rec).unwrap() && rec.line == 3);
        assert!(!p.next_record(&mut rec).unwrap());
    }

    #[test]
    fn a_record_past_the_limit_stops_the_parser_naming_line_and_field() {
        let long = format!("a,b\n1,{}\n", "x".repeat(5000));
        let mut p = Parser::new(long.as_bytes(), b',', b'"', 4096);
        let mut rec = Record::default();
        assert!(p.next_record(&mut rec).unwrap());
        match p.next_record(&mut rec) {
            Err(ParseError::TooLarge { line, field, limit }) => {
                assert_eq!((line, field, limit), (2, 2, 4096));
            }
            other => panic!("{other:?}"),
        }
        // Quoted, and an endless line: the same.
        let quoted = format!("\"{}", "y".repeat(10_000));
        let mut p = Parser::new(quoted.as_bytes(), b',', b'"', 4096);
        assert!(matches!(
            p.next_record(&mut rec),
            Err(ParseError::TooLarge {
                line: 1,
                field: 1,
                ..
            })
        ));
        let endless = std::io::repeat(0).take(1 << 20);
        let mut p = Parser::new(endless, b',', b'"', 4096);
        assert!(matches!(
            p.next_record(&mut rec),
            Err(ParseError::TooLarge {
                line: 1,
                field: 1,
                ..
            })
        ));
        assert!(rec.buf.capacity() <= 2 * 4096 + BUF_SIZE);
    }
}
