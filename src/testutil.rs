//! Helpers of the unit tests.

use std::path::{Path, PathBuf};

/// A directory of the test's own under the system's temporary directory, removed with
/// everything in it when the value is dropped: a test leaves nothing behind.
pub struct TestDir(PathBuf);

impl TestDir {
    /// `what` names the test module in the directory's name.
    pub fn new(what: &str) -> TestDir {
        let d = std::env::temp_dir().join(format!(
            "mairie-dba-{what}-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TestDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
