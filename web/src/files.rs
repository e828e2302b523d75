//! Every file the server hands out goes through here: the path must stay
//! inside the data directory after resolving symlinks.

use std::path::{Component, Path, PathBuf};

use thiserror::Error;
use voxtap_sensor::upload::manifest::Manifest;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FileError {
    #[error("bad file name")]
    BadName,
    #[error("path leaves the data directory")]
    Outside,
    #[error("no such file")]
    Missing,
}

/// A plain file name: one normal path component, no hidden files, no
/// separators of either kind.
pub fn check_name(name: &str) -> Result<(), FileError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && matches!(
            Path::new(name).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        );
    if ok { Ok(()) } else { Err(FileError::BadName) }
}

/// `rel` (a path from the index, relative to the data directory) as a
/// canonical path that is inside `data` (itself canonical). Refuses
/// absolute paths and `..` before touching the disk, and symlinks that
/// lead out after.
pub fn resolve(data: &Path, rel: &str) -> Result<PathBuf, FileError> {
    let p = Path::new(rel);
    if rel.is_empty()
        || rel.contains('\0')
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(FileError::BadName);
    }
    let canon = data
        .join(p)
        .canonicalize()
        .map_err(|_| FileError::Missing)?;
    if !canon.starts_with(data) {
        return Err(FileError::Outside);
    }
    Ok(canon)
}

/// A file `name` inside the call folder `folder` (relative to `data`).
pub fn in_folder(data: &Path, folder: &str, name: &str) -> Result<PathBuf, FileError> {
    check_name(name)?;
    let dir = resolve(data, folder)?;
    let f = resolve(data, &format!("{folder}/{name}"))?;
    // A symlink to a sibling call's file stays in the data dir but is not
    // this call's: only the folder's own files.
    if f.parent() != Some(dir.as_path()) || !f.is_file() {
        return Err(if f.is_file() {
            FileError::Outside
        } else {
            FileError::Missing
        });
    }
    Ok(f)
}

/// The S3 manifest of a call folder for a file whose local copy was deleted
/// after a confirmed upload (see `voxtap_sensor::upload::manifest`).
pub fn remote(data: &Path, folder: &str, name: &str) -> Result<Manifest, FileError> {
    check_name(name)?;
    let dir = resolve(data, folder)?;
    let m = Manifest::load(&dir).ok_or(FileError::Missing)?;
    if m.files.contains_key(name) {
        Ok(m)
    } else {
        Err(FileError::Missing)
    }
}

/// What the media work will put in a call folder, when present.
#[derive(Debug, Default)]
pub struct Extras {
    pub decrypted_pcap: bool,
    pub wavs: Vec<String>,
}

pub const DECRYPTED_PCAP: &str = "call-decrypted.pcap";

pub fn extras(data: &Path, folder: &str) -> Extras {
    let mut x = Extras::default();
    let Ok(dir) = resolve(data, folder) else {
        return x;
    };
    x.decrypted_pcap = in_folder(data, folder, DECRYPTED_PCAP).is_ok();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.to_ascii_lowercase().ends_with(".wav") && in_folder(data, folder, &name).is_ok()
            {
                x.wavs.push(name);
            }
        }
    }
    // Files held in S3 only (uploaded, then deleted locally).
    if let Some(m) = Manifest::load(&dir) {
        x.decrypted_pcap |= m.files.contains_key(DECRYPTED_PCAP);
        for name in m.files.keys() {
            if name.to_ascii_lowercase().ends_with(".wav")
                && check_name(name).is_ok()
                && !x.wavs.contains(name)
            {
                x.wavs.push(name.clone());
            }
        }
    }
    x.wavs.sort();
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("a.wav").is_ok());
        for bad in [
            "",
            "..",
            ".",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            ".hidden",
            "x\0",
        ] {
            assert_eq!(check_name(bad), Err(FileError::BadName), "{bad:?}");
        }
    }

    #[test]
    fn resolve_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().canonicalize().unwrap();
        std::fs::create_dir(data.join("c1")).unwrap();
        std::fs::write(data.join("c1/call.pcap"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", data.join("c1/evil.wav")).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("out")).unwrap();
        assert!(resolve(&data, "c1/call.pcap").is_ok());
        assert_eq!(resolve(&data, "../etc/passwd"), Err(FileError::BadName));
        assert_eq!(resolve(&data, "/etc/passwd"), Err(FileError::BadName));
        assert_eq!(resolve(&data, "c1/../../x"), Err(FileError::BadName));
        assert_eq!(resolve(&data, "out/passwd"), Err(FileError::Outside));
        assert_eq!(in_folder(&data, "c1", "evil.wav"), Err(FileError::Outside));
        assert_eq!(in_folder(&data, "c1", "nope.wav"), Err(FileError::Missing));
        assert!(in_folder(&data, "c1", "call.pcap").is_ok());
        assert!(extras(&data, "c1").wavs.is_empty());
    }
}
