//! The fleet's live calls: the latest snapshot each sensor pushed through
//! its tunnel (about once a second, capped by `protocol::parse_live`), kept
//! in memory, one per sensor (only sensors with a tunnel secret can log
//! in, so the store is as large as the fleet). A sensor whose tunnel
//! closes is dropped at once; one that goes quiet with its tunnel open is
//! marked stale after [`STALE_AFTER`] and dropped after [`DROP_AFTER`]
//! (`[central] live_stale_seconds`, `live_drop_seconds`). Each push is
//! capped again by the hub's own `live_max_calls`, `live_max_ended` and
//! `live_max_bytes` (default 200, 50, 2 MiB).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use voxtap_sensor::central::protocol;
use voxtap_sensor::status::LiveCallsFile;

/// No push for this long: the sensor's calls are shown as stale (default).
pub const STALE_AFTER: Duration = Duration::from_secs(5);
/// No push for this long: the sensor's calls are gone from the page
/// (default).
pub const DROP_AFTER: Duration = Duration::from_secs(15);

struct Held {
    at: Instant,
    /// The tunnel connection it came through (a reconnect replaces it).
    generation: u64,
    file: LiveCallsFile,
}

pub struct LiveStore {
    by_sensor: Mutex<HashMap<String, Held>>,
    stale_after: Duration,
    drop_after: Duration,
    /// What the hub keeps of a push (`[central] live_max_*`).
    caps: protocol::LiveCaps,
}

impl Default for LiveStore {
    fn default() -> LiveStore {
        LiveStore::new(None, None)
    }
}

/// One sensor's live calls as the hub shows them.
#[derive(Clone, Debug, Serialize)]
pub struct SensorLive {
    pub sensor: String,
    /// Seconds since its last push.
    pub age_s: f64,
    pub stale: bool,
    #[serde(flatten)]
    pub file: LiveCallsFile,
}

impl LiveStore {
    /// Stale after `stale_s` seconds without a push (2 to 3600, default
    /// 5), dropped after `drop_s` (beyond the first, at most 86400,
    /// default 15): out-of-range values are clamped, like the request TTL.
    pub fn new(stale_s: Option<u64>, drop_s: Option<u64>) -> LiveStore {
        let stale = stale_s.unwrap_or(STALE_AFTER.as_secs()).clamp(2, 3600);
        let drop = drop_s
            .unwrap_or(DROP_AFTER.as_secs())
            .clamp(stale + 1, 86_400);
        LiveStore {
            by_sensor: Mutex::default(),
            stale_after: Duration::from_secs(stale),
            drop_after: Duration::from_secs(drop),
            caps: protocol::LiveCaps::default(),
        }
    }

    /// The same store capping each push by `caps`.
    pub fn with_caps(self, caps: protocol::LiveCaps) -> LiveStore {
        LiveStore { caps, ..self }
    }

    /// A push from `sensor`'s tunnel; false if it was not a valid push.
    pub fn receive(&self, sensor: &str, generation: u64, text: &str) -> bool {
        let Some(file) = protocol::parse_live(text, self.caps) else {
            return false;
        };
        let held = Held {
            at: Instant::now(),
            generation,
            file,
        };
        self.lock().insert(sensor.to_string(), held);
        true
    }

    /// The tunnel `generation` of `sensor` closed: its calls go.
    pub fn forget(&self, sensor: &str, generation: u64) {
        let mut m = self.lock();
        if m.get(sensor).is_some_and(|h| h.generation == generation) {
            m.remove(sensor);
        }
    }

    /// Every sensor's latest calls, by name; drops the ones past their
    /// drop time.
    pub fn fleet(&self) -> Vec<SensorLive> {
        let (stale_after, drop_after) = (self.stale_after, self.drop_after);
        let mut m = self.lock();
        m.retain(|_, h| h.at.elapsed() < drop_after);
        let mut v: Vec<SensorLive> = m
            .iter()
            .map(|(name, h)| SensorLive {
                sensor: name.clone(),
                age_s: h.at.elapsed().as_secs_f64(),
                stale: h.at.elapsed() >= stale_after,
                file: h.file.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.sensor.cmp(&b.sensor));
        v
    }

    /// When each sensor last pushed, as seconds ago.
    pub fn last_push_ago(&self) -> HashMap<String, u64> {
        self.lock()
            .iter()
            .map(|(n, h)| (n.clone(), h.at.elapsed().as_secs()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.by_sensor.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_replace_and_tunnels_forget() {
        let store = LiveStore::default();
        let mut f = LiveCallsFile::default();
        f.snapshot.seq = 3;
        let push = protocol::live_push(f, protocol::LiveCaps::default()).unwrap();
        assert!(store.receive("s1", 1, &push));
        assert!(!store.receive("s1", 1, "not json"));
        let fleet = store.fleet();
        assert_eq!(fleet.len(), 1);
        assert_eq!(fleet[0].file.snapshot.seq, 3);
        assert!(!fleet[0].stale);
        // An older connection's end does not drop the newer one's calls.
        store.forget("s1", 0);
        assert_eq!(store.fleet().len(), 1);
        store.forget("s1", 1);
        assert!(store.fleet().is_empty());
    }

    #[test]
    fn staleness_is_configured_and_clamped() {
        let s = LiveStore::default();
        assert_eq!((s.stale_after, s.drop_after), (STALE_AFTER, DROP_AFTER));
        let s = LiveStore::new(Some(30), Some(120));
        assert_eq!(s.stale_after, Duration::from_secs(30));
        assert_eq!(s.drop_after, Duration::from_secs(120));
        // Stale below the push interval, drop before stale: clamped.
        let s = LiveStore::new(Some(0), Some(1));
        assert_eq!(s.stale_after, Duration::from_secs(2));
        assert_eq!(s.drop_after, Duration::from_secs(3));
        // A held push past its stale time (set back, not waited for).
        let s = LiveStore::new(Some(10), Some(20));
        let push =
            protocol::live_push(LiveCallsFile::default(), protocol::LiveCaps::default()).unwrap();
        assert!(s.receive("s1", 1, &push));
        s.lock().get_mut("s1").unwrap().at -= Duration::from_secs(11);
        assert!(s.fleet()[0].stale);
        s.lock().get_mut("s1").unwrap().at -= Duration::from_secs(10);
        assert!(s.fleet().is_empty());
    }

    #[test]
    fn pushes_are_capped_by_the_hubs_keys() {
        let caps = protocol::LiveCaps::from_keys(Some(2), Some(1), None).unwrap();
        let s = LiveStore::default().with_caps(caps);
        let mut f = LiveCallsFile::default();
        f.snapshot.calls = vec![Default::default(); 5];
        f.snapshot.ended = vec![Default::default(); 3];
        let push = protocol::live_push(f, protocol::LiveCaps::default()).unwrap();
        assert!(s.receive("s1", 1, &push));
        let held = &s.fleet()[0].file.snapshot;
        assert_eq!((held.calls.len(), held.ended.len()), (2, 1));
        assert!(held.truncated);
        // Larger than the hub's byte cap: refused.
        let small = protocol::LiveCaps {
            max_bytes: push.len() - 1,
            ..Default::default()
        };
        assert!(
            !LiveStore::default()
                .with_caps(small)
                .receive("s1", 1, &push)
        );
    }
}
