//! `.remote.json` in a call folder: the folder's files whose local copy was
//! deleted after a confirmed upload, with the object holding each, so the web
//! UI (another process, which knows only its data directory) serves them
//! from S3 as if they were local. It names the endpoint and bucket, never
//! credentials: the reader uses the standard AWS chain like the uploader.
//!
//! Written (atomically) before the local file is deleted, so a file is
//! always either local or in the manifest.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::s3::{S3, S3Error};
use super::{UploadConfig, UploadError};
use crate::fsutil::{Durability, write_atomic};

pub const FILE: &str = ".remote.json";

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Manifest {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    /// File name in the folder -> its object.
    pub files: BTreeMap<String, RemoteEntry>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RemoteEntry {
    pub key: String,
    pub bytes: u64,
    /// Hex SHA-256 of the file, checked again when it is fetched.
    pub sha256: String,
}

impl Manifest {
    /// The manifest of the call folder `dir`, if any.
    pub fn load(dir: &Path) -> Option<Manifest> {
        let text = std::fs::read(dir.join(FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Adds `name` to the manifest of `dir` (created if needed).
    pub fn record(
        dir: &Path,
        cfg: &UploadConfig,
        name: &str,
        entry: RemoteEntry,
    ) -> Result<(), UploadError> {
        let mut m = Manifest::load(dir).unwrap_or_default();
        m.endpoint = cfg.endpoint.clone();
        m.region = cfg.region.clone();
        m.bucket = cfg.bucket.clone();
        m.path_style = cfg.path_style;
        m.files.insert(name.to_string(), entry);
        let path = dir.join(FILE);
        serde_json::to_vec_pretty(&m)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomic(&path, &bytes, Durability::Synced))
            .map_err(|source| UploadError::Io { path, source })
    }

    /// The bytes of `name` from S3, checked against the recorded size and
    /// SHA-256. Blocking (call it from a blocking task).
    pub fn fetch(&self, name: &str) -> Result<Vec<u8>, UploadError> {
        let e = self
            .files
            .get(name)
            .ok_or_else(|| UploadError::Config(format!("{name} is not in {FILE}")))?;
        let cfg = UploadConfig {
            enabled: true,
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            path_style: self.path_style,
            ..Default::default()
        };
        let data = S3::new(&cfg)?.get(&e.key)?;
        let sum: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if data.len() as u64 != e.bytes || sum != e.sha256 {
            return Err(UploadError::S3(S3Error {
                unreachable: false,
                code: None,
                message: format!(
                    "s3://{}/{}: {} bytes with sha256 {sum}, expected {} bytes with {}",
                    self.bucket,
                    e.key,
                    data.len(),
                    e.bytes,
                    e.sha256
                ),
            }));
        }
        Ok(data)
    }
}
