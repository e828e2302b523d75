//! File-system helpers shared by the sensor's writers.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Whether [`write_atomic`] waits for the data to reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Rename as soon as the bytes are written: enough for files that are
    /// rewritten every second (status files), where a crash loses nothing
    /// that the next write would not restore.
    Cached,
    /// `fsync` the temporary file before the rename: for records that must
    /// survive a power cut (what was uploaded where).
    Synced,
}

/// Replaces `path` with `bytes` through a temporary file in the same
/// directory renamed over it, so a reader sees the old or the new content,
/// never part of it. The temporary file is hidden (`.<name>.tmp`) so that
/// directory listings skip it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let tmp = temp_path(path)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Synced {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

/// `dir/.name.tmp` for `dir/name` (`dir/name.tmp` when `name` is already
/// hidden).
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let tmp = if name.starts_with('.') {
        format!("{name}.tmp")
    } else {
        format!(".{name}.tmp")
    };
    Ok(path.with_file_name(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.tsv");
        write_atomic(&p, b"one", Durability::Cached).unwrap();
        write_atomic(&p, b"two", Durability::Synced).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["status.tsv"]);
        assert_eq!(
            temp_path(&d.path().join(".remote.json")).unwrap(),
            d.path().join(".remote.json.tmp")
        );
        assert_eq!(
            temp_path(&d.path().join("sensor.json")).unwrap(),
            d.path().join(".sensor.json.tmp")
        );
        assert!(write_atomic(Path::new("/"), b"x", Durability::Cached).is_err());
    }
}
