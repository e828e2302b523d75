//! The status files' history for the sensor page's charts: one compact
//! sample every [`INTERVAL_S`] seconds per component, in a fixed-size ring
//! file `<data>/status/history/<component>.ring` ([`FILE_BYTES`] each, 24 h
//! at 10 s).
//!
//! Written by the component's own process from [`super::write`], not by the
//! web server: the history then covers the hours when no web server ran,
//! survives its restarts, and a hub (no capture) keeps none. Fixed size
//! rather than a table with pruning: the bound is the file's length, set at
//! creation, and a crash mid-write spoils at most one slot.
//!
//! Layout: a [`HEADER`]-byte header (magic line, then the field names, one
//! per line, in the order they were first seen, at most [`MAX_KEYS`]), then
//! [`SLOTS`] slots of [`SLOT`] bytes: the sample's time (u64 LE, seconds,
//! a multiple of the interval) and one f64 LE per field (NaN: absent). The
//! slot of time `t` is `t / INTERVAL_S % SLOTS`, so a slot's time says
//! whether it is current or a day old. Fields are the numeric and boolean
//! leaves of the status object (`a.b` for nested objects, `a[name].b` for
//! items of arrays); strings and `*_unix` times are not sampled.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Seconds between two samples.
pub const INTERVAL_S: u64 = 10;
/// Samples kept: 24 h.
pub const SLOTS: u64 = 8_640;
/// Fields per component; more are not sampled. 127: the sensor's own
/// fields (about 44) plus eight rings' (7 each) and nine workers' (3 each),
/// so the per-ring and per-worker charts have their series.
pub const MAX_KEYS: usize = 127;
pub const HEADER: u64 = 8_192;
pub const SLOT: u64 = 8 * (1 + MAX_KEYS as u64);
/// The size of every history file: 8 855 552 bytes.
pub const FILE_BYTES: u64 = HEADER + SLOTS * SLOT;
const MAGIC: &[u8] = b"voxtap-status-history 1\n";

pub(crate) const DIR: &str = "history";

/// The history file of `component` under `data`.
pub fn path(data: &Path, component: &str) -> PathBuf {
    data.join(super::DIR)
        .join(DIR)
        .join(format!("{component}.ring"))
}

/// Samples of one component, oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub keys: Vec<String>,
    /// (time in Unix seconds, one value per key, NaN where absent).
    pub samples: Vec<(u64, Vec<f64>)>,
}

impl History {
    /// The values of `key` as (time, value), absent ones left out.
    pub fn series(&self, key: &str) -> Vec<(u64, f64)> {
        let Some(k) = self.keys.iter().position(|x| x == key) else {
            return Vec::new();
        };
        self.samples
            .iter()
            .filter_map(|(t, v)| v.get(k).filter(|x| !x.is_nan()).map(|x| (*t, *x)))
            .collect()
    }
}

/// The numeric leaves of a status object as (field, value).
pub fn flatten(v: &Value) -> Vec<(String, f64)> {
    fn walk(out: &mut Vec<(String, f64)>, path: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k.ends_with("_unix") || k.contains(['\n', '\0']) {
                        continue;
                    }
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(out, &p, x);
                }
            }
            Value::Array(items) => {
                for (i, it) in items.iter().enumerate() {
                    walk(out, &format!("{path}[{}]", item_name(it, i)), it);
                }
            }
            Value::Number(n) => {
                if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                    out.push((path.to_string(), f));
                }
            }
            Value::Bool(b) => out.push((path.to_string(), f64::from(u8::from(*b)))),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&mut out, "", v);
    out
}

/// What names an array item: its first naming string field, else its
/// position.
fn item_name(it: &Value, i: usize) -> String {
    ["name", "id", "collector", "host", "target", "bucket", "key"]
        .iter()
        .find_map(|k| it.get(*k).and_then(Value::as_str))
        .filter(|s| !s.contains(['\n', '\0', '[', ']']))
        .map_or_else(|| i.to_string(), String::from)
}

/// Records `v` as the sample of the interval holding `now_unix`, unless
/// that interval has one already. Returns whether it wrote.
pub fn record(data: &Path, component: &str, v: &Value, now_unix: u64) -> io::Result<bool> {
    let t = now_unix / INTERVAL_S * INTERVAL_S;
    let off = HEADER + (now_unix / INTERVAL_S % SLOTS) * SLOT;
    let p = path(data, component);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)?;
    let mut keys = read_keys(&f)?;
    if f.metadata()?.len() != FILE_BYTES {
        // New (sparse until written), or not ours: start over.
        f.set_len(0)?;
        f.set_len(FILE_BYTES)?;
        keys = Some(Vec::new());
    }
    let mut keys = keys.unwrap_or_default();
    let mut at = [0u8; 8];
    f.read_exact_at(&mut at, off)?;
    if u64::from_le_bytes(at) == t {
        return Ok(false);
    }
    let fields = flatten(v);
    let before = keys.len();
    for (k, _) in &fields {
        if keys.len() < MAX_KEYS
            && !keys.contains(k)
            && header_len(&keys) + (k.len() as u64) < HEADER
        {
            keys.push(k.clone());
        }
    }
    if keys.len() != before || before == 0 {
        write_header(&f, &keys)?;
    }
    let mut slot = vec![0u8; SLOT as usize];
    slot[..8].copy_from_slice(&t.to_le_bytes());
    let mut vals = [f64::NAN; MAX_KEYS];
    for (k, x) in fields {
        if let Some(i) = keys.iter().position(|y| *y == k) {
            vals[i] = x;
        }
    }
    for (i, x) in vals.iter().enumerate() {
        slot[8 + 8 * i..16 + 8 * i].copy_from_slice(&x.to_le_bytes());
    }
    f.write_all_at(&slot, off)?;
    Ok(true)
}

fn header_len(keys: &[String]) -> u64 {
    (MAGIC.len() + keys.iter().map(|k| k.len() + 1).sum::<usize>() + 1) as u64
}

fn write_header(f: &File, keys: &[String]) -> io::Result<()> {
    let mut h = MAGIC.to_vec();
    for k in keys {
        h.extend_from_slice(k.as_bytes());
        h.push(b'\n');
    }
    h.resize(HEADER as usize, 0);
    f.write_all_at(&h, 0)
}

/// The field names, or None when the file is empty or not a history file.
fn read_keys(f: &File) -> io::Result<Option<Vec<String>>> {
    let mut h = vec![0u8; HEADER as usize];
    if f.metadata()?.len() < HEADER {
        return Ok(None);
    }
    f.read_exact_at(&mut h, 0)?;
    let Some(rest) = h.strip_prefix(MAGIC) else {
        return Ok(None);
    };
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let keys = String::from_utf8_lossy(&rest[..end])
        .lines()
        .map(String::from)
        .take(MAX_KEYS)
        .collect();
    Ok(Some(keys))
}

/// The samples of `component` with times in `[from_unix, to_unix]`, oldest
/// first; an empty history when there is no (valid) file. Reads only the
/// slots of the range.
pub fn read(data: &Path, component: &str, from_unix: u64, to_unix: u64) -> History {
    let Ok(f) = File::open(path(data, component)) else {
        return History::default();
    };
    match read_range(&f, from_unix, to_unix) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(component, error = %e, "reading the status history");
            History::default()
        }
    }
}

fn read_range(f: &File, from: u64, to: u64) -> io::Result<History> {
    if f.metadata()?.len() != FILE_BYTES {
        return Ok(History::default());
    }
    let Some(keys) = read_keys(f)? else {
        return Ok(History::default());
    };
    let (a, b) = (from / INTERVAL_S, to / INTERVAL_S);
    let n = (b.saturating_sub(a) + 1).min(SLOTS);
    let first = (b + 1 - n) % SLOTS;
    // At most two reads: up to the end of the file, then from its start.
    let head = n.min(SLOTS - first);
    let mut buf = vec![0u8; (n * SLOT) as usize];
    let (x, y) = buf.split_at_mut((head * SLOT) as usize);
    f.read_exact_at(x, HEADER + first * SLOT)?;
    f.read_exact_at(y, HEADER)?;
    let mut samples: Vec<(u64, Vec<f64>)> = buf
        .chunks_exact(SLOT as usize)
        .filter_map(|s| {
            let t = u64::from_le_bytes(s[..8].try_into().ok()?);
            (t != 0 && t >= from && t <= to).then(|| {
                let vals = s[8..]
                    .chunks_exact(8)
                    .take(keys.len())
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                (t, vals)
            })
        })
        .collect();
    samples.sort_by_key(|s| s.0);
    Ok(History { keys, samples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_sample_per_interval_bounded_file_and_range_reads() {
        let d = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000u64; // a multiple of 10
        for i in 0..30u64 {
            let v = json!({"frames_total": i * 100, "drops": {"ring_full": i}, "iface": "x",
                           "started_unix": 5, "running": true,
                           "collectors": [{"collector": "c1", "queue_depth": i * 2}]});
            assert!(record(d.path(), "sensor", &v, t0 + i * INTERVAL_S).unwrap());
            // A second write in the same interval is not a sample.
            assert!(
                !record(
                    d.path(),
                    "sensor",
                    &json!({"frames_total": 7}),
                    t0 + i * INTERVAL_S + 3
                )
                .unwrap()
            );
        }
        let p = path(d.path(), "sensor");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), FILE_BYTES);
        let h = read(d.path(), "sensor", t0 + 50, t0 + 100);
        let mut keys = h.keys.clone();
        keys.sort();
        assert_eq!(
            keys,
            [
                "collectors[c1].queue_depth",
                "drops.ring_full",
                "frames_total",
                "running"
            ]
        );
        let f = h.series("frames_total");
        assert_eq!(
            f,
            (5..=10)
                .map(|i| (t0 + i * 10, (i * 100) as f64))
                .collect::<Vec<_>>()
        );
        assert_eq!(h.series("collectors[c1].queue_depth")[0], (t0 + 50, 10.0));
        assert!(h.series("started_unix").is_empty());
        // A day later the same slots hold the new samples only.
        let day = SLOTS * INTERVAL_S;
        record(d.path(), "sensor", &json!({"frames_total": 1}), t0 + day).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), FILE_BYTES);
        let h = read(d.path(), "sensor", t0, t0 + day);
        assert_eq!(h.samples.len(), 30);
        assert_eq!(h.samples[0].0, t0 + 10);
        assert_eq!(h.series("frames_total").last(), Some(&(t0 + day, 1.0)));
        // A range over the wrap reads both ends.
        let h = read(d.path(), "sensor", t0 + day - 100, t0 + day + 100);
        assert_eq!(h.samples.len(), 1);
    }

    #[test]
    fn garbage_file_is_replaced_and_fields_are_capped() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path(), "x");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not a history").unwrap();
        assert!(read(d.path(), "x", 0, u64::MAX / 2).samples.is_empty());
        let many: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("k{i:03}"), json!(i))).collect();
        record(d.path(), "x", &Value::Object(many), 1_800_000_000).unwrap();
        let h = read(d.path(), "x", 1_799_999_000, 1_800_000_000);
        assert_eq!(h.keys.len(), MAX_KEYS);
        assert_eq!(h.series("k126"), [(1_800_000_000, 126.0)]);
        assert!(h.series("k127").is_empty());
    }
}
