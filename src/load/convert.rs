//! From CSV fields to the text rows a server's bulk loader reads.
//!
//! Decides NULL (only an unquoted empty field, or the unquoted `--null` string: a literal
//! `NULL` or `\N` in the file is text), rewrites dates to ISO according to `--date-order`,
//! numbers with a decimal comma to a decimal point, French booleans (`oui`/`non`), and
//! escapes the result in the tab-separated text format that PostgreSQL's `COPY … FROM STDIN`
//! and MySQL's `LOAD DATA` both read (`\N` for NULL, backslash escapes). Everything else the
//! server validates, and its errors are mapped back to the file's line and column.

use chrono::NaiveDate;

use crate::catalog::ColumnKind;
use crate::load::options::DateOrder;
use crate::load::parser::Record;
use crate::load::{excerpt, Dialect};

/// A field that could not be converted: the field's index and why.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub index: usize,
    pub message: String,
}

pub struct Converter {
    kinds: Vec<ColumnKind>,
    null: Option<Vec<u8>>,
    date_order: DateOrder,
    decimal_comma: bool,
    /// Whether the input may hold invalid UTF-8 (it was not transcoded).
    validate_utf8: bool,
    dialect: Dialect,
    scratch: Vec<u8>,
}

impl Converter {
    pub fn new(
        kinds: Vec<ColumnKind>,
        null: Option<String>,
        date_order: DateOrder,
        decimal_comma: bool,
        validate_utf8: bool,
        dialect: Dialect,
    ) -> Self {
        Converter {
            kinds,
            null: null.map(String::into_bytes),
            date_order,
            decimal_comma,
            validate_utf8,
            dialect,
            scratch: Vec::with_capacity(64),
        }
    }

    /// Appends one encoded row (a record whose fields are in the order of `kinds`) to `out`.
    pub fn encode(&mut self, rec: &Record, out: &mut Vec<u8>) -> Result<(), FieldError> {
        debug_assert_eq!(rec.len(), self.kinds.len());
        let start = out.len();
        for i in 0..rec.len() {
            let (field, q) = (rec.field(i), rec.quoted[i]);
            if i > 0 {
                out.push(b'\t');
            }
            let is_null = !q
                && match &self.null {
                    None => field.is_empty(),
                    Some(n) => field == n.as_slice(),
                };
            if is_null {
                out.extend_from_slice(b"\\N");
                continue;
            }
            if self.validate_utf8 {
                if let Err(e) = std::str::from_utf8(field) {
                    out.truncate(start);
                    return Err(FieldError {
                        index: i,
                        message: format!(
                            "invalid UTF-8 (byte 0x{:02X} at offset {}); is the file in another encoding? \
                             try --encoding windows-1252",
                            field[e.valid_up_to()],
                            e.valid_up_to() + 1
                        ),
                    });
                }
            }
            let res = match self.kinds[i] {
                ColumnKind::Date => self.date(field, false),
                ColumnKind::Timestamp => self.date(field, true),
                ColumnKind::Decimal | ColumnKind::Integer if self.decimal_comma => {
                    self.decimal(field)
                }
                ColumnKind::Boolean => self.boolean(field),
                _ => {
                    escape_into(field, out);
                    continue;
                }
            };
            match res {
                Ok(()) => escape_into(&self.scratch, out),
                Err(message) => {
                    out.truncate(start);
                    return Err(FieldError { index: i, message });
                }
            }
        }
        out.push(b'\n');
        Ok(())
    }

    /// A date (or the date part of a timestamp) in the user's order, rewritten as ISO.
    fn date(&mut self, field: &[u8], timestamp: bool) -> Result<(), String> {
        self.scratch.clear();
        let text = std::str::from_utf8(field).map_err(|_| "invalid UTF-8".to_string())?;
        let trimmed = text.trim();
        // Values the server understands as they are.
        if matches!(trimmed, "infinity" | "-infinity") || (timestamp && trimmed == "now") {
            self.scratch.extend_from_slice(trimmed.as_bytes());
            return Ok(());
        }
        let (date_part, rest) = match trimmed.find([' ', 'T']) {
            Some(i) => (&trimmed[..i], &trimmed[i..]),
            None => (trimmed, ""),
        };
        // A date column takes a timestamp at midnight (`1955-05-02 00:00:00+00`, as the
        // Interior ministry writes birth dates), never one with a time of day.
        let (date_part, rest) = if timestamp || rest.is_empty() {
            (date_part, rest)
        } else {
            match time_of(rest) {
                Some(t) if t == chrono::NaiveTime::MIN => (date_part, ""),
                Some(t) => {
                    return Err(format!(
                        "\"{}\" has a time of day ({}) but the column is a date: load it into a \
                         timestamp column, or cut the time",
                        excerpt(text),
                        t.format("%H:%M:%S")
                    ))
                }
                // Not a time: the whole text is judged (and refused) as a date.
                None => (trimmed, ""),
            }
        };
        let d = parse_date(date_part, self.date_order).ok_or_else(|| {
            format!(
                "invalid {} \"{}\" (expected {}{})",
                if timestamp { "timestamp" } else { "date" },
                excerpt(text),
                self.date_order.pattern(),
                match self.date_order {
                    DateOrder::Ymd => "; use --date-order dmy for 31/12/2024",
                    _ => "",
                }
            )
        })?;
        use std::io::Write;
        match self.dialect {
            Dialect::Utc { tz } if timestamp && !rest.trim().is_empty() => {
                let utc = utc_timestamp(d, rest, tz).ok_or_else(|| {
                    format!(
                        "invalid timestamp \"{}\" (expected {} hh:mm[:ss][+hh:mm])",
                        excerpt(text),
                        self.date_order.pattern()
                    )
                })?;
                write!(self.scratch, "{}", utc.format("%Y-%m-%d %H:%M:%S%.f"))
                    .map_err(|e| e.to_string())?;
            }
            _ => {
                write!(self.scratch, "{}", d.format("%Y-%m-%d")).map_err(|e| e.to_string())?;
                self.scratch.extend_from_slice(rest.as_bytes());
            }
        }
        Ok(())
    }

    /// `1 234,56` -> `1234.56`. A `.` is refused: with a decimal comma it is ambiguous.
    fn decimal(&mut self, field: &[u8]) -> Result<(), String> {
        self.scratch.clear();
        let text = std::str::from_utf8(field).map_err(|_| "invalid UTF-8".to_string())?;
        let mut commas = 0;
        for ch in text.trim().chars() {
            match ch {
                ' ' | '\u{a0}' | '\u{202f}' | '\'' => {}
                ',' => {
                    commas += 1;
                    self.scratch.push(b'.');
                }
                '.' => {
                    return Err(format!(
                        "number \"{}\" has a '.' but --decimal-comma was given (write 1234,5)",
                        excerpt(text)
                    ))
                }
                c => {
                    let mut b = [0u8; 4];
                    self.scratch
                        .extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if commas > 1 {
            return Err(format!(
                "number \"{}\" has more than one decimal comma",
                excerpt(text)
            ));
        }
        Ok(())
    }

    fn boolean(&mut self, field: &[u8]) -> Result<(), String> {
        self.scratch.clear();
        let lower = field.trim_ascii().to_ascii_lowercase();
        let truth = match lower.as_slice() {
            b"oui" | b"o" | b"vrai" | b"true" | b"t" | b"yes" | b"y" | b"on" | b"1" => Some(true),
            b"non" | b"n" | b"faux" | b"false" | b"f" | b"no" | b"off" | b"0" => Some(false),
            _ => None,
        };
        let v: &[u8] = match (truth, self.dialect) {
            (Some(true), Dialect::Utc { .. }) => b"1",
            (Some(false), Dialect::Utc { .. }) => b"0",
            (Some(true), Dialect::Postgres) => b"true",
            (Some(false), Dialect::Postgres) => b"false",
            (None, Dialect::Utc { .. }) => {
                return Err(format!(
                    "invalid boolean \"{}\" (expected true/false, oui/non, 1/0)",
                    excerpt(&String::from_utf8_lossy(field))
                ))
            }
            (None, Dialect::Postgres) => field,
        };
        self.scratch.extend_from_slice(v);
        Ok(())
    }
}

impl DateOrder {
    pub fn pattern(self) -> &'static str {
        match self {
            DateOrder::Ymd => "yyyy-mm-dd",
            DateOrder::Dmy => "dd/mm/yyyy",
            DateOrder::Mdy => "mm/dd/yyyy",
        }
    }
}

/// The time of day of a timestamp's time part (` 10:30[:00[.123]][ ][Z|+01|+01:00]`),
/// whatever its offset; None when it is not one.
fn time_of(rest: &str) -> Option<chrono::NaiveTime> {
    let rest = rest.strip_prefix(['T', ' '])?.trim();
    let split = rest.find(['Z', 'z', '+', '-', ' ']).unwrap_or(rest.len());
    let offset = rest[split..].trim();
    let offset_ok = offset.is_empty()
        || offset.eq_ignore_ascii_case("z")
        || offset.eq_ignore_ascii_case("utc")
        || (offset.len() >= 3
            && matches!(offset.as_bytes()[0], b'+' | b'-')
            && offset[1..].bytes().all(|b| b.is_ascii_digit() || b == b':'));
    if !offset_ok {
        return None;
    }
    ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveTime::parse_from_str(&rest[..split], f).ok())
}

/// The time part of a timestamp (` 10:30[:00[.123]][ ][Z|+01|+01:00|-0530]`) on `date`, in
/// UTC: from its offset, else from `tz`, else taken as it is.
fn utc_timestamp(
    date: NaiveDate,
    rest: &str,
    tz: Option<chrono_tz::Tz>,
) -> Option<chrono::NaiveDateTime> {
    use chrono::{NaiveTime, TimeZone};
    let rest = rest.strip_prefix(['T', ' '])?.trim();
    let split = rest.find(['Z', 'z', '+', '-', ' ']).unwrap_or(rest.len());
    let (time_s, offset_s) = (&rest[..split], rest[split..].trim());
    let time = ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(time_s, f).ok())?;
    let local = date.and_time(time);
    if offset_s.is_empty() {
        return match tz {
            Some(tz) => tz
                .from_local_datetime(&local)
                .earliest()
                .map(|d| d.naive_utc()),
            None => Some(local),
        };
    }
    if offset_s.eq_ignore_ascii_case("z") || offset_s.eq_ignore_ascii_case("utc") {
        return Some(local);
    }
    let sign = match offset_s.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = offset_s[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (
            digits[..2].parse::<i64>().ok()?,
            digits[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    Some(local - chrono::Duration::minutes(sign * (h * 60 + m)))
}

/// Three numbers separated by `/`, `-` or `.`, in the given order; the year has 4 digits.
pub fn parse_date(s: &str, order: DateOrder) -> Option<NaiveDate> {
    let mut parts = s.split(['/', '-', '.']);
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let num = |p: &str, min: usize, max: usize| -> Option<u32> {
        if p.len() < min || p.len() > max || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let (y, m, d) = match order {
        DateOrder::Ymd => (num(a, 4, 4)?, num(b, 1, 2)?, num(c, 1, 2)?),
        DateOrder::Dmy => (num(c, 4, 4)?, num(b, 1, 2)?, num(a, 1, 2)?),
        DateOrder::Mdy => (num(c, 4, 4)?, num(a, 1, 2)?, num(b, 1, 2)?),
    };
    NaiveDate::from_ymd_opt(y as i32, m, d)
}

/// The text-format escaping shared by PostgreSQL COPY and MySQL LOAD DATA.
#[inline]
pub fn escape_into(field: &[u8], out: &mut Vec<u8>) {
    if !field
        .iter()
        .any(|&b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(field);
        return;
    }
    for &b in field {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnKind::*;

    fn record(fields: &[&[u8]], quoted: &[bool]) -> Record {
        let mut r = Record::default();
        for (f, q) in fields.iter().zip(quoted) {
            r.buf.extend_from_slice(f);
            r.ends.push(r.buf.len());
            r.quoted.push(*q);
        }
        r
    }

    fn enc(c: &mut Converter, fields: &[&str], quoted: &[bool]) -> Result<String, FieldError> {
        let f: Vec<&[u8]> = fields.iter().map(|s| s.as_bytes()).collect();
        let mut out = Vec::new();
        c.encode(&record(&f, quoted), &mut out)
            .map(|_| String::from_utf8(out).unwrap())
    }

    #[test]
    fn null_rules() {
        let mut c = Converter::new(
            vec![Text; 4],
            None,
            DateOrder::Ymd,
            false,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(
                &mut c,
                &["", "", "NULL", "\\N"],
                &[false, true, false, false]
            )
            .unwrap(),
            "\\N\t\tNULL\t\\\\N\n"
        );
        let mut c = Converter::new(
            vec![Text; 3],
            Some("NA".into()),
            DateOrder::Ymd,
            false,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(&mut c, &["NA", "NA", ""], &[false, true, false]).unwrap(),
            "\\N\tNA\t\n"
        );
    }

    #[test]
    fn escapes_control_characters() {
        let mut c = Converter::new(
            vec![Text],
            None,
            DateOrder::Ymd,
            false,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(&mut c, &["a\tb\nc\\d\re"], &[true]).unwrap(),
            "a\\tb\\nc\\\\d\\re\n"
        );
    }

    #[test]
    fn a_date_column_takes_a_timestamp_at_midnight_and_refuses_a_time_of_day() {
        for dialect in [Dialect::Postgres, Dialect::Utc { tz: None }] {
            let mut c = Converter::new(vec![Date], None, DateOrder::Ymd, false, true, dialect);
            for midnight in [
                "1955-05-02 00:00:00+00",
                "1955-05-02T00:00:00Z",
                "1955-05-02 00:00",
                "1955-05-02 00:00:00.000+02:00",
            ] {
                assert_eq!(
                    enc(&mut c, &[midnight], &[false]).unwrap(),
                    "1955-05-02\n",
                    "{midnight}"
                );
            }
            let e = enc(&mut c, &["1955-05-02 10:30:00+00"], &[false]).unwrap_err();
            assert!(
                e.message
                    .contains("has a time of day (10:30:00) but the column is a date"),
                "{}",
                e.message
            );
            let e = enc(&mut c, &["1955-05-02 soir"], &[false]).unwrap_err();
            assert!(e.message.contains("invalid date"), "{}", e.message);
        }
    }

    #[test]
    fn dates_in_every_order() {
        let mut c = Converter::new(
            vec![Date, Timestamp],
            None,
            DateOrder::Dmy,
            false,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(&mut c, &["31/12/2024", "14/03/2026 09:30"], &[false, false]).unwrap(),
            "2024-12-31\t2026-03-14 09:30\n"
        );
        let e = enc(&mut c, &["32/13/2024", "01/01/2024"], &[false, false]).unwrap_err();
        assert_eq!(e.index, 0);
        assert!(
            e.message.contains("invalid date \"32/13/2024\"") && e.message.contains("dd/mm/yyyy")
        );
        let mut c = Converter::new(
            vec![Date],
            None,
            DateOrder::Ymd,
            false,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(&mut c, &["2024-02-29"], &[false]).unwrap(),
            "2024-02-29\n"
        );
        assert!(enc(&mut c, &["2023-02-29"], &[false]).is_err());
        assert!(enc(&mut c, &["31/12/2024"], &[false])
            .unwrap_err()
            .message
            .contains("--date-order dmy"));
        assert_eq!(
            parse_date("12/31/2024", DateOrder::Mdy),
            NaiveDate::from_ymd_opt(2024, 12, 31)
        );
        assert_eq!(parse_date("1/2/24", DateOrder::Dmy), None);
    }

    #[test]
    fn decimal_comma() {
        let mut c = Converter::new(
            vec![Decimal, Integer, Text],
            None,
            DateOrder::Ymd,
            true,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(
                &mut c,
                &["1 234,56", "1\u{a0}000", "3,5"],
                &[false, false, false]
            )
            .unwrap(),
            "1234.56\t1000\t3,5\n"
        );
        assert!(enc(&mut c, &["1.5", "1", ""], &[false, false, false])
            .unwrap_err()
            .message
            .contains("'.'"));
        assert!(enc(&mut c, &["1,2,3", "1", ""], &[false, false, false]).is_err());
    }

    #[test]
    fn french_booleans() {
        let mut c = Converter::new(
            vec![Boolean; 3],
            None,
            DateOrder::Ymd,
            false,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(&mut c, &["Oui", "non", "t"], &[false; 3]).unwrap(),
            "true\tfalse\ttrue\n"
        );
    }

    #[test]
    fn mysql_timestamps_go_to_utc_and_booleans_to_digits() {
        let paris = Some(chrono_tz::Europe::Paris);
        let mut c = Converter::new(
            vec![Timestamp, Timestamp, Timestamp, Boolean],
            None,
            DateOrder::Dmy,
            false,
            true,
            Dialect::Utc { tz: paris },
        );
        assert_eq!(
            enc(
                &mut c,
                &[
                    "14/03/2026 09:30",
                    "03/12/2026 10:30:00+01",
                    "01/07/2026 12:00:00.5Z",
                    "oui"
                ],
                &[false; 4]
            )
            .unwrap(),
            "2026-03-14 08:30:00\t2026-12-03 09:30:00\t2026-07-01 12:00:00.500\t1\n"
        );
        let mut c = Converter::new(
            vec![Timestamp, Boolean],
            None,
            DateOrder::Ymd,
            false,
            true,
            Dialect::Utc { tz: None },
        );
        assert_eq!(
            enc(&mut c, &["2026-07-01 12:00", "false"], &[false; 2]).unwrap(),
            "2026-07-01 12:00:00\t0\n"
        );
        assert!(enc(&mut c, &["2026-07-01 25:00", "1"], &[false; 2]).is_err());
        assert!(enc(&mut c, &["2026-07-01", "peut-être"], &[false; 2])
            .unwrap_err()
            .message
            .contains("invalid boolean"));
    }

    #[test]
    fn invalid_utf8_names_the_field() {
        let mut c = Converter::new(
            vec![Text, Text],
            None,
            DateOrder::Ymd,
            false,
            true,
            Dialect::Postgres,
        );
        let mut out = Vec::new();
        let e = c
            .encode(&record(&[b"ok", b"caf\xe9"], &[false, false]), &mut out)
            .unwrap_err();
        assert_eq!(e.index, 1);
        assert!(
            e.message.contains("0xE9") && e.message.contains("windows-1252"),
            "{}",
            e.message
        );
        assert!(out.is_empty(), "nothing half-written");
    }
}
