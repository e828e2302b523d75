//! S3 upload of the store's closed rolling PCAPs and of per-call artifacts,
//! through a persistent queue on disk, and reading back from S3 what is no
//! longer local (ranged extraction, retention of objects).
//!
//! * [`queue`]: `upload.sqlite` in the store directory: every file to upload,
//!   once, with its key, size, SHA-256, state, attempts and next try; the
//!   multipart upload in flight and its confirmed parts, so a restart resumes
//!   and never sends a confirmed part again.
//! * [`s3`]: the aws-sdk-s3 client behind a small blocking API (its own
//!   current-thread tokio runtime): PUT or multipart with SHA-256 checksums
//!   that the server verifies, HEAD, ranged GET, DELETE.
//! * [`worker`]: the uploader loop: finds new closed files, uploads due ones
//!   with backoff and a maximum of attempts, keeps files local while S3 is
//!   unreachable, watches the spool cap, deletes local copies only after a
//!   confirmed upload (when asked to), expires old objects, and publishes
//!   `status/upload.json`.
//! * [`remote`]: the rolling files held in S3, for `store::extract_call`:
//!   the byte ranges of a call's packets with coalesced ranged GETs.
//!
//! Keys: `<prefix><sensor>/<yyyy>/<mm>/<dd>/raw/<file>.pcap` for rolling
//! files (date of the file's first packet) and
//! `<prefix><sensor>/<yyyy>/<mm>/<dd>/calls/<call folder>/<file>` for call
//! artifacts (date of the call's start), UTC.

#[cfg(feature = "s3")]
pub mod manifest;
pub mod queue;
#[cfg(feature = "s3")]
mod remote;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "s3")]
mod worker;

use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;
use voxtap_engine::output::civil_from_days;

#[cfg(feature = "s3")]
pub use remote::S3RemoteFiles;
#[cfg(feature = "s3")]
pub use worker::{UploadStatus, Uploader, sha256_file};

/// File name of the queue, in the store directory.
pub(crate) const QUEUE_FILE: &str = "upload.sqlite";

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("upload queue {path}: {source}")]
    Queue {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upload configuration: {0}")]
    Config(String),
    #[cfg(feature = "s3")]
    #[error(transparent)]
    S3(#[from] s3::S3Error),
}

/// `[upload]` of the configuration (see config/voxtap.toml for each key).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    pub enabled: bool,
    /// S3 endpoint URL; empty: AWS's endpoint for the region.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Prepended to every key (e.g. "voip/").
    pub prefix: String,
    /// First key component; empty: the host name.
    pub sensor: String,
    /// Path-style URLs (`endpoint/bucket/key`), for S3-compatible servers.
    pub path_style: bool,
    /// Upload closed rolling PCAP files.
    pub raw: bool,
    /// Upload the per-call folders (call.pcap, sip.txt, media outputs).
    pub calls: bool,
    /// Files from this size on go as multipart uploads.
    pub multipart_threshold_bytes: u64,
    /// Size of each part but the last (S3's minimum is 5 MiB).
    pub part_bytes: u64,
    /// Delete the local copy once the upload is confirmed.
    pub delete_after_upload: bool,
    /// Give up on a file after this many failed attempts that S3 answered
    /// (refusals, server errors). While S3 cannot be reached at all, files
    /// wait locally and no attempt is spent.
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Cap on the bytes of local files waiting for upload (0: none).
    pub spool_max_bytes: u64,
    /// Upload bandwidth cap in bytes per second (0: none).
    pub max_bytes_per_second: u64,
    /// Timeout of one S3 request.
    pub request_timeout_seconds: u64,
    /// Delete rolling files from S3 after this long (0: keep).
    pub raw_lifetime_seconds: u64,
    /// Delete call artifacts from S3 after this long (0: keep).
    pub calls_lifetime_seconds: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: false,
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            sensor: String::new(),
            path_style: false,
            raw: true,
            calls: true,
            multipart_threshold_bytes: 64 << 20,
            part_bytes: 16 << 20,
            delete_after_upload: false,
            max_attempts: 10,
            backoff_initial_ms: 1000,
            backoff_max_ms: 300_000,
            spool_max_bytes: 0,
            max_bytes_per_second: 0,
            request_timeout_seconds: 60,
            raw_lifetime_seconds: 0,
            calls_lifetime_seconds: 0,
        }
    }
}

/// S3's smallest part (all parts but the last).
pub(crate) const MIN_PART: u64 = 5 << 20;

impl UploadConfig {
    pub fn validate(&self) -> Result<(), UploadError> {
        if !self.enabled {
            return Ok(());
        }
        let bad = |m: String| Err(UploadError::Config(m));
        if self.bucket.is_empty() {
            return bad("upload.bucket is empty".into());
        }
        if self.part_bytes < MIN_PART {
            return bad(format!(
                "upload.part_bytes = {}: S3 needs at least {MIN_PART} (5 MiB)",
                self.part_bytes
            ));
        }
        if self.multipart_threshold_bytes < self.part_bytes {
            return bad(format!(
                "upload.multipart_threshold_bytes = {} is below part_bytes = {}",
                self.multipart_threshold_bytes, self.part_bytes
            ));
        }
        if self.max_attempts == 0 {
            return bad("upload.max_attempts must be at least 1".into());
        }
        if self.prefix.starts_with('/') || self.sensor.contains('/') {
            return bad("upload.prefix must not start with '/', upload.sensor has no '/'".into());
        }
        Ok(())
    }

    /// The sensor name in keys: `sensor`, else the host name.
    pub fn sensor_name(&self) -> String {
        if !self.sensor.is_empty() {
            return self.sensor.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .unwrap_or_else(|| "sensor".into())
    }
}

/// `yyyy/mm/dd` (UTC) of a time in ns since the epoch.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn date_path(ts_ns: u64) -> String {
    let days = (ts_ns / 1_000_000_000 / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}/{m:02}/{d:02}")
}

/// Key of a rolling file (`file_name` like `0000000001.pcap`).
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn raw_key(prefix: &str, sensor: &str, first_ts_ns: u64, file_name: &str) -> String {
    format!(
        "{prefix}{sensor}/{}/raw/{file_name}",
        date_path(first_ts_ns)
    )
}

/// Key of a call artifact (`rel` = `<call folder>/<file>`).
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn call_key(prefix: &str, sensor: &str, start_ts_ns: u64, rel: &str) -> String {
    format!("{prefix}{sensor}/{}/calls/{rel}", date_path(start_ts_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_keys() {
        assert_eq!(date_path(0), "1970/01/01");
        // 2024-02-29 12:00:00 UTC = 1709208000 s.
        assert_eq!(date_path(1_709_208_000 * 1_000_000_000), "2024/02/29");
        // 2000-12-31 23:59:59 UTC = 978307199 s.
        assert_eq!(date_path(978_307_199 * 1_000_000_000), "2000/12/31");
        assert_eq!(
            raw_key("v/", "s1", 1_709_208_000 * 1_000_000_000, "0000000007.pcap"),
            "v/s1/2024/02/29/raw/0000000007.pcap"
        );
        assert_eq!(
            call_key("", "s1", 0, "abc@h/call.pcap"),
            "s1/1970/01/01/calls/abc@h/call.pcap"
        );
    }

    #[test]
    fn validation() {
        assert!(UploadConfig::default().validate().is_ok());
        let on = UploadConfig {
            enabled: true,
            bucket: "b".into(),
            ..Default::default()
        };
        assert!(on.validate().is_ok());
        assert!(
            UploadConfig {
                part_bytes: 1 << 20,
                ..on.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            UploadConfig {
                bucket: String::new(),
                ..on
            }
            .validate()
            .is_err()
        );
    }
}
