//! Following a TLS key log file while SIP servers append to it: the bytes
//! added since the last look go to the pipeline, which decrypts connections
//! that were waiting for them.
//!
//! The file is opened before the sensor drops its privileges (it is often
//! readable by root or the SIP server only) and read through that handle;
//! when it is truncated it is read again from the start, and when a new file
//! replaces it (rotation) the new one is opened if we still may.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the file is looked at.
const EVERY: Duration = Duration::from_millis(250);
/// At most this much is read per look (a key log line is ~200 bytes).
const MAX_READ: u64 = 4 << 20;

pub(super) struct KeyLogFollower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    last: Option<Instant>,
    warned: bool,
}

impl KeyLogFollower {
    /// Opens `path` now (before privileges are dropped); a file that does
    /// not exist yet is opened when it appears.
    pub(super) fn open(path: &Path) -> Self {
        let file = File::open(path).ok();
        if file.is_none() {
            tracing::warn!(path = %path.display(), "TLS key log not there yet: following it when it appears");
        }
        KeyLogFollower {
            path: path.to_path_buf(),
            file,
            offset: 0,
            last: None,
            warned: false,
        }
    }

    /// What was appended since the last call (at most every 250 ms; empty
    /// when nothing was).
    pub(super) fn poll(&mut self, now: Instant) -> Vec<u8> {
        if self.last.is_some_and(|l| now.duration_since(l) < EVERY) {
            return Vec::new();
        }
        self.last = Some(now);
        self.reopen_if_replaced();
        let Some(f) = self.file.as_mut() else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            tracing::info!(path = %self.path.display(), "TLS key log truncated: reading it again");
            self.offset = 0;
        }
        let mut buf = Vec::new();
        let want = (len - self.offset).min(MAX_READ);
        if want == 0 {
            return buf;
        }
        let read = f
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| f.take(want).read_to_end(&mut buf));
        match read {
            Ok(n) => self.offset += n as u64,
            Err(e) => tracing::warn!(path = %self.path.display(), "reading the TLS key log: {e}"),
        }
        buf
    }

    /// A different file at the path (rotated, or created after start):
    /// switch to it when we can open it.
    fn reopen_if_replaced(&mut self) {
        let on_disk = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let ours = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if on_disk.is_none() || on_disk == ours {
            return;
        }
        match File::open(&self.path) {
            Ok(f) => {
                self.file = Some(f);
                self.offset = 0;
                self.warned = false;
            }
            Err(e) if !self.warned => {
                self.warned = true;
                tracing::warn!(path = %self.path.display(), "cannot open the new TLS key log: {e}");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn follows_appends_truncation_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        let mut k = KeyLogFollower::open(&path);
        let start = Instant::now();
        let mut n = 0u32;
        let mut tick = || {
            n += 1;
            start + EVERY * n
        };
        assert!(k.poll(tick()).is_empty());
        std::fs::write(&path, b"line 1\n").unwrap();
        assert_eq!(k.poll(tick()), b"line 1\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"line 2\npart").unwrap();
        let last = tick();
        assert_eq!(k.poll(last), b"line 2\npart");
        // Too soon after the last look: nothing read yet.
        f.write_all(b"ial\n").unwrap();
        assert!(k.poll(last + EVERY / 2).is_empty());
        assert_eq!(k.poll(tick()), b"ial\n");
        // Truncated and rewritten shorter.
        std::fs::write(&path, b"new\n").unwrap();
        assert_eq!(k.poll(tick()), b"new\n");
        // Replaced by another file (rotation).
        let other = dir.path().join("keys.log.new");
        std::fs::write(&other, b"rotated\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(k.poll(tick()), b"rotated\n");
    }
}
