//! Live status files: each long-running component (the XDP sensor, the S3
//! uploader, the HEP exporter, remote captures) publishes its figures as one
//! JSON object in `<data>/status/<component>.json`, rewritten about once a
//! second. The web server is another process (and may run on a box with no
//! capture at all), so a file it can read is the narrowest contract: no socket,
//! no shared memory, and a stale file is visible as such through `updated_unix`.
//!
//! Writes go to a temporary file renamed over the old one, so a reader never
//! sees half an object.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::fsutil::{Durability, write_atomic};

pub mod history;

pub(crate) const DIR: &str = "status";

/// The path of `component`'s status file under `data`.
pub fn path(data: &Path, component: &str) -> PathBuf {
    data.join(DIR).join(format!("{component}.json"))
}

/// Atomically replaces `component`'s status with `value`, adding
/// `component` and `updated_unix` (seconds) fields when `value` is an object,
/// and records it in the component's [`history`] once per interval.
pub fn write(data: &Path, component: &str, value: &impl Serialize) -> std::io::Result<()> {
    let now = now_unix();
    let mut v = serde_json::to_value(value).map_err(std::io::Error::other)?;
    if let Value::Object(m) = &mut v {
        m.insert("component".into(), Value::from(component));
        m.insert("updated_unix".into(), Value::from(now));
    }
    std::fs::create_dir_all(data.join(DIR))?;
    let bytes = serde_json::to_vec_pretty(&v).map_err(std::io::Error::other)?;
    write_atomic(&path(data, component), &bytes, Durability::Cached)?;
    // The current status matters more than its history: a failure here is
    // logged, not returned.
    if let Err(e) = history::record(data, component, &v, now) {
        tracing::debug!(component, error = %e, "recording the status history");
    }
    Ok(())
}

/// Every readable status file under `data`, sorted by component name.
/// Unreadable or malformed files are skipped: a status page must not fail
/// because one writer died mid-way.
pub fn read_all(data: &Path) -> Vec<(String, Value)> {
    let Ok(rd) = std::fs::read_dir(data.join(DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Value)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let comp = name.strip_suffix(".json")?;
            if comp.starts_with('.') {
                return None;
            }
            let text = std::fs::read(e.path()).ok()?;
            Some((comp.to_string(), serde_json::from_slice(&text).ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Reads one component's status, if present and valid.
pub fn read(data: &Path, component: &str) -> Option<Value> {
    let text = std::fs::read(path(data, component)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// `<data>/live/calls.json`: the calls in progress, replaced about once a
/// second by a running sensor (`live::snapshot`). Not under `status/`: the
/// sensor page and `/metrics` render every file there, and this one lists
/// calls.
pub fn live_calls_path(data: &Path) -> PathBuf {
    data.join("live").join("calls.json")
}

/// The live calls file: a snapshot, when it was written, and whether its
/// sensor was still running (false in the last one a run writes).
#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
pub struct LiveCallsFile {
    pub updated_unix: u64,
    pub running: bool,
    #[serde(flatten)]
    pub snapshot: voxtap_engine::live_calls::LiveSnapshot,
}

/// Atomically replaces the live calls file with `snapshot`.
pub fn write_live_calls(
    data: &Path,
    snapshot: &voxtap_engine::live_calls::LiveSnapshot,
    running: bool,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Out<'a> {
        updated_unix: u64,
        running: bool,
        #[serde(flatten)]
        snapshot: &'a voxtap_engine::live_calls::LiveSnapshot,
    }
    let path = live_calls_path(data);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = Out {
        updated_unix: now_unix(),
        running,
        snapshot,
    };
    let bytes = serde_json::to_vec(&out).map_err(std::io::Error::other)?;
    write_atomic(&path, &bytes, Durability::Cached)
}

/// The live calls file, if present and valid.
pub fn read_live_calls(data: &Path) -> Option<LiveCallsFile> {
    let text = std::fs::read(live_calls_path(data)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_adds_component_and_time_and_skips_garbage() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "sensor", &serde_json::json!({"pps": 12})).unwrap();
        std::fs::write(d.path().join(DIR).join("broken.json"), b"{not json").unwrap();
        let all = read_all(d.path());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "sensor");
        assert_eq!(all[0].1["pps"], 12);
        assert_eq!(all[0].1["component"], "sensor");
        assert!(all[0].1["updated_unix"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(read(d.path(), "sensor").unwrap()["pps"], 12);
        assert!(read(d.path(), "nope").is_none());
    }
}
