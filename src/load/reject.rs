//! The reject file of `load-csv --reject-file PATH`: one CSV line per row left out of a
//! load, with the file, its physical line, the reason and the record as the file wrote it.
//!
//! Written beside PATH under a temporary name (mode 0600: rows of citizens' files are
//! personal data) and renamed onto PATH when the command ends, so PATH is never half
//! written, and a symlink at PATH is replaced rather than written through. The file is
//! written even when nothing was rejected (a header alone), so that an old reject file
//! never passes for this run's.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::load::Rejected;

pub struct RejectFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    delim: u8,
    quote: u8,
    count: u64,
}

impl RejectFile {
    /// Starts the reject file for PATH; the error names PATH and what is wrong with it.
    pub fn create(path: &Path, delim: u8, quote: u8) -> Result<RejectFile, String> {
        let shown = path.display();
        if path.is_dir() {
            return Err(format!("--reject-file {shown}: is a directory"));
        }
        let name = path
            .file_name()
            .ok_or_else(|| format!("--reject-file {shown}: not a file name"))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(format!(
                "--reject-file {shown}: directory {} does not exist",
                parent.display()
            ));
        }
        let tmp = parent.join(format!(
            ".{}.{}.partial",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&tmp).map_err(|e| {
            format!(
                "--reject-file {shown}: cannot create {}: {e}",
                tmp.display()
            )
        })?;
        let mut r = RejectFile {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::new(file)),
            delim,
            quote,
            count: 0,
        };
        r.line(&["file", "line", "error", "record"])
            .map_err(|e| format!("--reject-file {shown}: {e}"))?;
        Ok(r)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn write(&mut self, file: &str, r: &Rejected) -> io::Result<()> {
        self.line(&[file, &r.line.to_string(), &r.reason, &r.record])?;
        self.count += 1;
        Ok(())
    }

    fn line(&mut self, fields: &[&str]) -> io::Result<()> {
        let (delim, quote) = (self.delim, self.quote);
        let out = self.out.as_mut().expect("reject file used after finish");
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.write_all(&[delim])?;
            }
            let b = f.as_bytes();
            if b.iter()
                .any(|&c| c == delim || c == quote || c == b'\n' || c == b'\r')
            {
                out.write_all(&[quote])?;
                for chunk in b.split_inclusive(|&c| c == quote) {
                    out.write_all(chunk)?;
                    if chunk.last() == Some(&quote) {
                        out.write_all(&[quote])?;
                    }
                }
                out.write_all(&[quote])?;
            } else {
                out.write_all(b)?;
            }
        }
        out.write_all(b"\n")
    }

    /// Flushes, syncs and renames the file onto PATH.
    pub fn finish(mut self) -> io::Result<()> {
        let out = self.out.take().expect("finished once");
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
    }
}

impl Drop for RejectFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TestDir;

    #[test]
    fn rows_are_quoted_as_csv_and_the_file_appears_whole_at_the_end() {
        let dir = TestDir::new("reject");
        let path = dir.path().join("rejets.csv");
        let mut r = RejectFile::create(&path, b';', b'"').unwrap();
        r.write(
            "a.csv",
            &Rejected {
                line: 7,
                reason: "column age: invalid input syntax for type integer: \"douze\"".into(),
                record: "1;Dupont;douze".into(),
            },
        )
        .unwrap();
        assert!(!path.exists(), "nothing at PATH before the end");
        assert_eq!(r.count(), 1);
        r.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "file;line;error;record\na.csv;7;\"column age: invalid input syntax for type integer: \"\"douze\"\"\";\"1;Dupont;douze\"\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_symlink_at_path_is_replaced_not_followed_and_an_abandoned_file_leaves_nothing() {
        let dir = TestDir::new("reject");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.path().join("rejets.csv");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        RejectFile::create(&path, b',', b'"')
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "file,line,error,record\n"
        );
        drop(RejectFile::create(&dir.path().join("other.csv"), b',', b'"').unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        let e = RejectFile::create(&dir.path().join("no/such/x.csv"), b',', b'"')
            .err()
            .unwrap();
        assert!(e.contains("does not exist"), "{e}");
        let e = RejectFile::create(dir.path(), b',', b'"').err().unwrap();
        assert!(e.contains("is a directory"), "{e}");
    }
}
