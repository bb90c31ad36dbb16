//! From CSV fields to the text rows a server's bulk loader reads.
//!
//! Decides NULL (an unquoted empty field or `--null` value, quoted ones too in `--force-null`
//! columns: a literal `NULL` or `\N` in the file is text), trims fields (`--trim`), rewrites
//! dates to ISO according to `--date-order`, resolves local times by one rule on every
//! engine (`--timezone`, `--dst`), numbers with a decimal comma to a decimal point, French
//! booleans (`oui`/`non`), and
//! escapes the result in the tab-separated text format that PostgreSQL's `COPY … FROM STDIN`
//! and MySQL's `LOAD DATA` both read (`\N` for NULL, backslash escapes). Everything else the
//! server validates, and its errors are mapped back to the file's line and column.

use chrono::NaiveDate;

use crate::catalog::ColumnKind;
use crate::load::options::{DateOrder, DstChoice};
use crate::load::parser::Record;
use crate::load::{excerpt, Dialect};

/// A field that could not be converted: the field's index and why.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub index: usize,
    pub message: String,
}

/// How fields are read, beyond their column's type: the options of `load-csv` that the
/// converter applies.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Unquoted values that mean NULL besides the unquoted empty field (`--null`).
    pub nulls: Vec<String>,
    /// Per field: a quoted empty field (or quoted `--null` value) is NULL too
    /// (`--force-null`). Shorter than the record: the rest are false.
    pub force_null: Vec<bool>,
    pub date_order: DateOrder,
    pub decimal_comma: bool,
    /// Spaces and tabs around every field are removed first (`--trim`).
    pub trim: bool,
    /// The time zone of timestamps written without an offset (`--timezone`, else the
    /// server's when the engine has one).
    pub tz: Option<chrono_tz::Tz>,
    /// Which instant an ambiguous or skipped local time means (`--dst`); None: an error.
    pub dst: Option<DstChoice>,
}

pub struct Converter {
    kinds: Vec<ColumnKind>,
    nulls: Vec<Vec<u8>>,
    force_null: Vec<bool>,
    date_order: DateOrder,
    decimal_comma: bool,
    trim: bool,
    tz: Option<chrono_tz::Tz>,
    dst: Option<DstChoice>,
    /// Whether the input may hold invalid UTF-8 (it was not transcoded).
    validate_utf8: bool,
    dialect: Dialect,
    scratch: Vec<u8>,
}

impl Converter {
    pub fn new(
        kinds: Vec<ColumnKind>,
        reading: Reading,
        validate_utf8: bool,
        dialect: Dialect,
    ) -> Self {
        Converter {
            kinds,
            nulls: reading.nulls.into_iter().map(String::into_bytes).collect(),
            force_null: reading.force_null,
            date_order: reading.date_order,
            decimal_comma: reading.decimal_comma,
            trim: reading.trim,
            tz: reading.tz,
            dst: reading.dst,
            validate_utf8,
            dialect,
            scratch: Vec::with_capacity(64),
        }
    }

    /// Whether field `i`, as read (after `--trim`), is NULL: an unquoted empty field or
    /// `--null` value, or a quoted one in a `--force-null` column.
    fn is_null(&self, i: usize, field: &[u8], quoted: bool) -> bool {
        if quoted && !self.force_null.get(i).copied().unwrap_or(false) {
            return false;
        }
        field.is_empty() || self.nulls.iter().any(|n| n.as_slice() == field)
    }

    /// Appends one encoded row (a record whose fields are in the order of `kinds`) to `out`.
    pub fn encode(&mut self, rec: &Record, out: &mut Vec<u8>) -> Result<(), FieldError> {
        debug_assert_eq!(rec.len(), self.kinds.len());
        let start = out.len();
        for i in 0..rec.len() {
            let (mut field, q) = (rec.field(i), rec.quoted[i]);
            if self.trim {
                field = trim_blanks(field);
            }
            if i > 0 {
                out.push(b'\t');
            }
            if self.is_null(i, field, q) {
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
        let iso_date = |scratch: &mut Vec<u8>| {
            write!(scratch, "{}", d.format("%Y-%m-%d")).map_err(|e| e.to_string())
        };
        if !timestamp || rest.trim().is_empty() {
            iso_date(&mut self.scratch)?;
            return Ok(());
        }
        let utc_dialect = matches!(self.dialect, Dialect::Utc);
        let Some((time, offset)) = time_and_offset(rest) else {
            if utc_dialect {
                return Err(format!(
                    "invalid timestamp \"{}\" (expected {} hh:mm[:ss][+hh:mm])",
                    excerpt(text),
                    self.date_order.pattern()
                ));
            }
            // PostgreSQL reads more forms than these (time zone names, AM/PM): it judges.
            iso_date(&mut self.scratch)?;
            self.scratch.extend_from_slice(rest.as_bytes());
            return Ok(());
        };
        let local = d.and_time(time);
        match (offset, self.tz) {
            (Some(minutes), _) => {
                if utc_dialect {
                    let utc = local - chrono::Duration::minutes(minutes);
                    write!(self.scratch, "{}", utc.format("%Y-%m-%d %H:%M:%S%.f"))
                        .map_err(|e| e.to_string())?;
                } else {
                    iso_date(&mut self.scratch)?;
                    self.scratch.extend_from_slice(rest.as_bytes());
                }
            }
            // One rule on every engine for a local time the clocks skip or repeat.
            (None, Some(tz)) => {
                let at = resolve_local(local, tz, self.dst)
                    .map_err(|why| format!("\"{}\" {why}", excerpt(text)))?;
                if utc_dialect {
                    write!(
                        self.scratch,
                        "{}",
                        at.naive_utc().format("%Y-%m-%d %H:%M:%S%.f")
                    )
                } else {
                    write!(self.scratch, "{}", at.format("%Y-%m-%d %H:%M:%S%.f%:z"))
                }
                .map_err(|e| e.to_string())?;
            }
            (None, None) => {
                if utc_dialect {
                    write!(self.scratch, "{}", local.format("%Y-%m-%d %H:%M:%S%.f"))
                        .map_err(|e| e.to_string())?;
                } else {
                    iso_date(&mut self.scratch)?;
                    self.scratch.extend_from_slice(rest.as_bytes());
                }
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
            (Some(true), Dialect::Utc) => b"1",
            (Some(false), Dialect::Utc) => b"0",
            (Some(true), Dialect::Postgres) => b"true",
            (Some(false), Dialect::Postgres) => b"false",
            (None, Dialect::Utc) => {
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

/// `field` without the spaces and tabs around it.
fn trim_blanks(field: &[u8]) -> &[u8] {
    let start = field
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &field[start..end]
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

/// The time of a timestamp's time part (` 10:30[:00[.123]][ ][Z|+01|+01:00|-0530]`) and its
/// offset east of UTC in minutes (None: no offset written). None when it is not one.
fn time_and_offset(rest: &str) -> Option<(chrono::NaiveTime, Option<i64>)> {
    use chrono::NaiveTime;
    let rest = rest.strip_prefix(['T', ' '])?.trim();
    let split = rest.find(['Z', 'z', '+', '-', ' ']).unwrap_or(rest.len());
    let (time_s, offset_s) = (&rest[..split], rest[split..].trim());
    let time = ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(time_s, f).ok())?;
    if offset_s.is_empty() {
        return Some((time, None));
    }
    if offset_s.eq_ignore_ascii_case("z") || offset_s.eq_ignore_ascii_case("utc") {
        return Some((time, Some(0)));
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
    Some((time, Some(sign * (h * 60 + m))))
}

/// A local time of `tz` as an instant. When a clock change repeats it (the autumn night)
/// or skips it (the spring night) it can mean two instants: `dst` picks the earlier or the
/// later, and without it the error (completing "<value> …") says which change is at fault.
pub fn resolve_local(
    local: chrono::NaiveDateTime,
    tz: chrono_tz::Tz,
    dst: Option<DstChoice>,
) -> Result<chrono::DateTime<chrono_tz::Tz>, String> {
    use chrono::{LocalResult, Offset, TimeZone};
    let pick = |a: chrono::DateTime<chrono_tz::Tz>, b: chrono::DateTime<chrono_tz::Tz>| {
        let (early, late) = if a <= b { (a, b) } else { (b, a) };
        match dst {
            Some(DstChoice::Earlier) => Some(early),
            Some(DstChoice::Later) => Some(late),
            None => None,
        }
    };
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(at),
        LocalResult::Ambiguous(a, b) => pick(a, b).ok_or_else(|| {
            format!(
                "happened twice in {tz}: the clocks went back that night, so it means UTC{} \
                 and then UTC{} (an overlap); give --dst earlier or --dst later",
                a.offset().fix(),
                b.offset().fix()
            )
        }),
        LocalResult::None => {
            // The offsets on either side of the change (changes are months apart).
            let before = tz
                .offset_from_utc_datetime(&(local - chrono::Duration::hours(12)))
                .fix();
            let after = tz
                .offset_from_utc_datetime(&(local + chrono::Duration::hours(12)))
                .fix();
            let as_utc = |off: chrono::FixedOffset| {
                tz.from_utc_datetime(
                    &(local - chrono::Duration::seconds(off.local_minus_utc() as i64)),
                )
            };
            pick(as_utc(before), as_utc(after)).ok_or_else(|| {
                format!(
                    "does not exist in {tz}: the clocks went forward that night from UTC{before} \
                     to UTC{after}, skipping it (a gap); give --dst earlier or --dst later"
                )
            })
        }
    }
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
        let mut c = Converter::new(vec![Text; 4], Reading::default(), true, Dialect::Postgres);
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
            Reading {
                nulls: vec!["NA".into()],
                ..Default::default()
            },
            true,
            Dialect::Postgres,
        );
        // --null adds to the empty-field rule; a quoted value stays a value.
        assert_eq!(
            enc(&mut c, &["NA", "NA", ""], &[false, true, false]).unwrap(),
            "\\N\tNA\t\\N\n"
        );
    }

    #[test]
    fn force_null_makes_quoted_empties_null_in_its_columns_only() {
        let reading = Reading {
            nulls: vec!["ND".into()],
            force_null: vec![true, false, true],
            ..Default::default()
        };
        let mut c = Converter::new(vec![Text, Text, Date], reading, true, Dialect::Postgres);
        assert_eq!(
            enc(&mut c, &["", "", ""], &[true, true, true]).unwrap(),
            "\\N\t\t\\N\n"
        );
        assert_eq!(
            enc(&mut c, &["ND", "ND", "2024-01-02"], &[true, true, true]).unwrap(),
            "\\N\tND\t2024-01-02\n"
        );
    }

    #[test]
    fn trim_removes_blanks_around_fields_before_the_null_rule() {
        let reading = Reading {
            trim: true,
            decimal_comma: true,
            ..Default::default()
        };
        let mut c = Converter::new(
            vec![Text, Text, Decimal, Text],
            reading,
            true,
            Dialect::Postgres,
        );
        assert_eq!(
            enc(
                &mut c,
                &["  Dupont\t", "   ", " 12,5 ", " a b "],
                &[true, false, true, false]
            )
            .unwrap(),
            "Dupont\t\\N\t12.5\ta b\n"
        );
        assert_eq!(trim_blanks(b" \t "), b"");
    }

    #[test]
    fn one_dst_rule_for_every_engine() {
        let paris = Some(chrono_tz::Europe::Paris);
        for dialect in [Dialect::Postgres, Dialect::Utc] {
            let mut c = Converter::new(
                vec![Timestamp],
                Reading {
                    date_order: DateOrder::Dmy,
                    tz: paris,
                    ..Default::default()
                },
                true,
                dialect,
            );
            let e = enc(&mut c, &["27/10/2024 02:30"], &[false]).unwrap_err();
            assert!(
                e.message.contains("happened twice in Europe/Paris")
                    && e.message.contains("UTC+02:00 and then UTC+01:00")
                    && e.message.contains("--dst earlier"),
                "{}",
                e.message
            );
            let e = enc(&mut c, &["31/03/2024 02:30"], &[false]).unwrap_err();
            assert!(
                e.message.contains("does not exist in Europe/Paris")
                    && e.message.contains("from UTC+01:00 to UTC+02:00")
                    && e.message.contains("(a gap)"),
                "{}",
                e.message
            );
            // An explicit offset is never ambiguous.
            assert!(enc(&mut c, &["27/10/2024 02:30+01"], &[false]).is_ok());
            let expected = |pg: &str, utc: &str| match dialect {
                Dialect::Postgres => format!("{pg}\n"),
                Dialect::Utc => format!("{utc}\n"),
            };
            assert_eq!(
                enc(&mut c, &["14/03/2026 09:30"], &[false]).unwrap(),
                expected("2026-03-14 09:30:00+01:00", "2026-03-14 08:30:00")
            );
            for (dst, overlap, gap) in [
                (
                    DstChoice::Earlier,
                    expected("2024-10-27 02:30:00+02:00", "2024-10-27 00:30:00"),
                    expected("2024-03-31 01:30:00+01:00", "2024-03-31 00:30:00"),
                ),
                (
                    DstChoice::Later,
                    expected("2024-10-27 02:30:00+01:00", "2024-10-27 01:30:00"),
                    expected("2024-03-31 03:30:00+02:00", "2024-03-31 01:30:00"),
                ),
            ] {
                let mut c = Converter::new(
                    vec![Timestamp],
                    Reading {
                        date_order: DateOrder::Dmy,
                        tz: paris,
                        dst: Some(dst),
                        ..Default::default()
                    },
                    true,
                    dialect,
                );
                assert_eq!(
                    enc(&mut c, &["27/10/2024 02:30"], &[false]).unwrap(),
                    overlap
                );
                assert_eq!(enc(&mut c, &["31/03/2024 02:30"], &[false]).unwrap(), gap);
            }
        }
    }

    #[test]
    fn escapes_control_characters() {
        let mut c = Converter::new(vec![Text], Reading::default(), true, Dialect::Postgres);
        assert_eq!(
            enc(&mut c, &["a\tb\nc\\d\re"], &[true]).unwrap(),
            "a\\tb\\nc\\\\d\\re\n"
        );
    }

    #[test]
    fn a_date_column_takes_a_timestamp_at_midnight_and_refuses_a_time_of_day() {
        for dialect in [Dialect::Postgres, Dialect::Utc] {
            let mut c = Converter::new(vec![Date], Reading::default(), true, dialect);
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
            Reading {
                date_order: DateOrder::Dmy,
                ..Default::default()
            },
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
        let mut c = Converter::new(vec![Date], Reading::default(), true, Dialect::Postgres);
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
            Reading {
                decimal_comma: true,
                ..Default::default()
            },
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
            Reading::default(),
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
            Reading {
                date_order: DateOrder::Dmy,
                tz: paris,
                ..Default::default()
            },
            true,
            Dialect::Utc,
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
            Reading::default(),
            true,
            Dialect::Utc,
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
            Reading::default(),
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
