//! Opening a CSV file and turning its bytes into UTF-8, strictly.
//!
//! UTF-8 input is passed through untouched (it is validated record by record later, where
//! the error can name the line and column). UTF-16 and Windows-1252 are transcoded with
//! encoding_rs in streaming fashion, without replacement characters: a malformed sequence is
//! an error, never a silent `\u{FFFD}` in the database. The raw bytes read are counted for
//! the progress bar.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use encoding_rs::{Decoder, DecoderResult, Encoding, UTF_16BE, UTF_16LE, WINDOWS_1252};

use crate::load::options::EncodingArg;

/// The encoding actually used for a file, after BOM sniffing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Utf8,
    Transcoded(&'static Encoding),
    /// A DOS (OEM) code page: its name and the characters of its bytes 0x80-0xFF.
    Oem(&'static str, &'static [char; 128]),
}

impl Detected {
    pub fn name(self) -> &'static str {
        match self {
            Detected::Utf8 => "UTF-8",
            Detected::Transcoded(e) => e.name(),
            Detected::Oem(name, _) => name,
        }
    }
}

/// The bytes Windows-1252 leaves undefined (encoding_rs, as WHATWG, maps them to C1 control
/// characters, which a CSV export never means).
const CP1252_UNDEFINED: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];

/// Counts the raw bytes read from the file.
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens `path` and returns a reader of UTF-8 bytes (BOM removed) and the encoding used.
pub fn open(
    path: &Path,
    encoding: EncodingArg,
    count: Arc<AtomicU64>,
) -> io::Result<(Box<dyn Read + Send>, Detected)> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::other("is a directory, not a CSV file"));
    }
    let file = File::open(path)?;
    let mut reader = BufReader::with_capacity(256 * 1024, Counting { inner: file, count });
    let head = reader.fill_buf()?;
    let bom = sniff_bom(head);
    let detected = match (encoding, bom) {
        (EncodingArg::Auto | EncodingArg::Utf8, Some(Bom::Utf8)) => {
            reader.consume(3);
            Detected::Utf8
        }
        (EncodingArg::Auto | EncodingArg::Utf16, Some(Bom::Utf16Le)) => {
            reader.consume(2);
            Detected::Transcoded(UTF_16LE)
        }
        (EncodingArg::Auto | EncodingArg::Utf16, Some(Bom::Utf16Be)) => {
            reader.consume(2);
            Detected::Transcoded(UTF_16BE)
        }
        (EncodingArg::Auto | EncodingArg::Utf8, None) => Detected::Utf8,
        (EncodingArg::Utf16, None) => Detected::Transcoded(UTF_16LE),
        (EncodingArg::Utf16, Some(Bom::Utf8)) => {
            return Err(io::Error::other(
                "starts with a UTF-8 byte-order mark but --encoding utf-16 was given (use --encoding auto)",
            ))
        }
        (EncodingArg::Utf8, Some(_)) => {
            return Err(io::Error::other(
                "starts with a UTF-16 byte-order mark but --encoding utf-8 was given (use --encoding auto)",
            ))
        }
        (
            EncodingArg::Latin1 | EncodingArg::Windows1252 | EncodingArg::Cp850 | EncodingArg::Cp437,
            Some(b),
        ) => {
            return Err(io::Error::other(format!(
                "starts with a {} byte-order mark but --encoding {} was given (use --encoding auto)",
                b.name(),
                match encoding {
                    EncodingArg::Latin1 => "latin1",
                    EncodingArg::Cp850 => "cp850",
                    EncodingArg::Cp437 => "cp437",
                    _ => "windows-1252",
                }
            )))
        }
        (EncodingArg::Cp850, None) => Detected::Oem("IBM850", &oem_cp::code_table::DECODING_TABLE_CP850),
        (EncodingArg::Cp437, None) => Detected::Oem("IBM437", &oem_cp::code_table::DECODING_TABLE_CP437),
        // encoding_rs follows the WHATWG standard: ISO-8859-1 is read as Windows-1252, which
        // only differs in 0x80-0x9F where Latin-1 has unprintable control codes.
        (EncodingArg::Latin1 | EncodingArg::Windows1252, None) => Detected::Transcoded(WINDOWS_1252),
    };
    let out: Box<dyn Read + Send> = match detected {
        Detected::Utf8 => Box::new(reader),
        Detected::Transcoded(enc) => Box::new(Transcoder::new(reader, enc)),
        Detected::Oem(_, table) => Box::new(Oem {
            inner: reader,
            table,
            pending: Vec::new(),
        }),
    };
    Ok((out, detected))
}

#[derive(Debug, Clone, Copy)]
enum Bom {
    Utf8,
    Utf16Le,
    Utf16Be,
}

impl Bom {
    fn name(self) -> &'static str {
        match self {
            Bom::Utf8 => "UTF-8",
            Bom::Utf16Le | Bom::Utf16Be => "UTF-16",
        }
    }
}

fn sniff_bom(head: &[u8]) -> Option<Bom> {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        Some(Bom::Utf8)
    } else if head.starts_with(&[0xFF, 0xFE]) {
        Some(Bom::Utf16Le)
    } else if head.starts_with(&[0xFE, 0xFF]) {
        Some(Bom::Utf16Be)
    } else {
        None
    }
}

/// A strict streaming transcoder to UTF-8.
struct Transcoder<R> {
    inner: R,
    decoder: Decoder,
    input: Vec<u8>,
    in_pos: usize,
    in_len: usize,
    input_done: bool,
    finished: bool,
    /// An error found after some good output: returned by the next read, once the text
    /// before it has been handed over (so that the parser names the line of the bad bytes).
    pending: Option<io::Error>,
}

impl<R: Read> Transcoder<R> {
    fn new(inner: R, enc: &'static Encoding) -> Self {
        Transcoder {
            inner,
            decoder: enc.new_decoder_without_bom_handling(),
            input: vec![0; 64 * 1024],
            in_pos: 0,
            in_len: 0,
            input_done: false,
            finished: false,
            pending: None,
        }
    }

    /// The error of an undefined Windows-1252 byte, with what it would be in code page 850.
    fn undefined_1252(byte: u8) -> io::Error {
        let dos = oem_cp::code_table::DECODING_TABLE_CP850[(byte - 0x80) as usize];
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "byte 0x{byte:02X} is not defined in Windows-1252; in the DOS code page 850 it is \
                 '{dos}': if this is a DOS export, use --encoding cp850 (or cp437)"
            ),
        )
    }
}

impl<R: Read> Read for Transcoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // encoding_rs needs room for one whole UTF-8 character at least.
        if out.len() < 4 {
            let mut tmp = [0u8; 4];
            let n = self.read(&mut tmp)?;
            let n = n.min(out.len());
            out[..n].copy_from_slice(&tmp[..n]);
            return Ok(n);
        }
        loop {
            if let Some(e) = self.pending.take() {
                self.finished = true;
                return Err(e);
            }
            if self.finished {
                return Ok(0);
            }
            if self.in_pos == self.in_len && !self.input_done {
                let n = self.inner.read(&mut self.input)?;
                self.in_pos = 0;
                self.in_len = n;
                self.input_done = n == 0;
            }
            let (res, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.in_pos..self.in_len],
                out,
                self.input_done,
            );
            self.in_pos += read;
            if self.decoder.encoding() == WINDOWS_1252 {
                // Undefined bytes decode to U+0081… (C2 81 in UTF-8): the text before the
                // first one is handed over, then the error.
                if let Some(at) = out[..written]
                    .windows(2)
                    .position(|w| w[0] == 0xC2 && CP1252_UNDEFINED.contains(&w[1]))
                {
                    let byte = out[at + 1];
                    if at > 0 {
                        self.pending = Some(Self::undefined_1252(byte));
                        return Ok(at);
                    }
                    self.finished = true;
                    return Err(Self::undefined_1252(byte));
                }
            }
            match res {
                DecoderResult::Malformed(_, _) => {
                    let e = io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("invalid {} byte sequence", self.decoder.encoding().name()),
                    );
                    if written > 0 {
                        self.pending = Some(e);
                        return Ok(written);
                    }
                    self.finished = true;
                    return Err(e);
                }
                DecoderResult::InputEmpty if self.input_done => {
                    self.finished = true;
                    return Ok(written);
                }
                _ if written > 0 => return Ok(written),
                _ => continue,
            }
        }
    }
}

/// A DOS code page to UTF-8: ASCII as it is, bytes 0x80-0xFF from the page's table.
struct Oem<R> {
    inner: R,
    table: &'static [char; 128],
    /// Encoded characters that did not fit in the caller's buffer.
    pending: Vec<u8>,
}

impl<R: Read> Read for Oem<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() {
            let mut raw = vec![0u8; (out.len() / 2).clamp(1, 64 * 1024)];
            let n = self.inner.read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            for &b in &raw[..n] {
                if b < 0x80 {
                    self.pending.push(b);
                } else {
                    let mut buf = [0u8; 4];
                    let c = self.table[(b - 0x80) as usize].encode_utf8(&mut buf);
                    self.pending.extend_from_slice(c.as_bytes());
                }
            }
        }
        let n = self.pending.len().min(out.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], enc: EncodingArg) -> io::Result<(String, Detected)> {
        let dir = std::env::temp_dir().join(format!("mairie-dba-decode-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let p = dir.join(format!(
            "{:x}.csv",
            bytes
                .iter()
                .fold(0u64, |h, &b| h.wrapping_mul(31) ^ b as u64)
        ));
        std::fs::write(&p, bytes)?;
        let (mut r, d) = open(&p, enc, Arc::new(AtomicU64::new(0)))?;
        let mut s = Vec::new();
        r.read_to_end(&mut s)?;
        Ok((String::from_utf8(s).expect("utf-8 out"), d))
    }

    #[test]
    fn utf8_bom_is_dropped() {
        let (s, d) = decode(b"\xEF\xBB\xBFnom\n", EncodingArg::Auto).unwrap();
        assert_eq!((s.as_str(), d), ("nom\n", Detected::Utf8));
    }

    #[test]
    fn utf16_both_endians() {
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for u in "Hélène;1\n".encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        assert_eq!(decode(&le, EncodingArg::Auto).unwrap().0, "Hélène;1\n");
        assert_eq!(decode(&be, EncodingArg::Utf16).unwrap().0, "Hélène;1\n");
    }

    #[test]
    fn windows_1252_has_the_euro_and_oe() {
        let (s, _) = decode(b"\x80 \x9c\xe9\n", EncodingArg::Windows1252).unwrap();
        assert_eq!(s, "€ œé\n");
        let (s, _) = decode(b"caf\xe9\n", EncodingArg::Latin1).unwrap();
        assert_eq!(s, "café\n");
    }

    #[test]
    fn undefined_windows_1252_bytes_are_refused_and_dos_pages_read() {
        // MOUNIÉ in code page 850.
        let e = decode(b"nom\nMOUNI\x90\n", EncodingArg::Windows1252).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("byte 0x90 is not defined in Windows-1252"),
            "{m}"
        );
        assert!(m.contains("'É'") && m.contains("--encoding cp850"), "{m}");
        let (s, d) = decode(b"nom\nMOUNI\x90\n", EncodingArg::Cp850).unwrap();
        assert_eq!(s, "nom\nMOUNIÉ\n");
        assert_eq!(d.name(), "IBM850");
        let (s, _) = decode(b"\x82t\x82\n", EncodingArg::Cp437).unwrap();
        assert_eq!(s, "été\n");
    }

    #[test]
    fn malformed_utf16_is_an_error() {
        // A lone high surrogate.
        let e = decode(&[0xFF, 0xFE, 0x00, 0xD8, 0x41, 0x00], EncodingArg::Auto).unwrap_err();
        assert!(e.to_string().contains("invalid UTF-16LE"), "{e}");
    }

    #[test]
    fn mismatched_bom_is_refused() {
        let e = decode(b"\xEF\xBB\xBFnom\n", EncodingArg::Windows1252).unwrap_err();
        assert!(e.to_string().contains("UTF-8 byte-order mark"), "{e}");
    }
}
