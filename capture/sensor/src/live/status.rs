//! `status/sensor.json` for the web UI's sensor page and `/metrics`: the
//! live run's figures, rewritten about once a second by the main thread
//! (see [`crate::status`] for the file contract).
//!
//! The threads publish plain totals through [`LiveCounters`] (relaxed
//! atomics stored once per poll or batch, never per packet); rates are
//! differences between two snapshots, computed here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::xdp::{COUNTERS, Counter, MAX_RINGS, RingCounters, TUNNELS, Tunnel};

/// Rings, as an array length.
pub const RINGS: usize = MAX_RINGS as usize;

/// Pipeline threads in `sensor.json`'s `workers`: the pipeline thread (the
/// dispatcher with `workers.pipeline` > 1) and up to
/// [`crate::config::MAX_PIPELINE`] media workers.
pub const WORKERS: usize = 1 + crate::config::MAX_PIPELINE;

/// Totals one pipeline thread keeps current (stored once per batch).
#[derive(Debug, Default)]
pub struct WorkerLive {
    /// Frames it ran through its pipeline (a media worker: its own and the
    /// broadcast ones; the dispatcher: every frame it steered).
    pub frames: AtomicU64,
    /// Nanoseconds spent on batches (not waiting for them).
    pub busy_ns: AtomicU64,
    /// A media worker's own media frames the dispatcher dropped because it
    /// was behind (`workers.media_queue_bytes`).
    pub dropped: AtomicU64,
}

/// Totals one ring's reader keeps current (stored once per drain).
#[derive(Debug, Default)]
pub struct RingLive {
    /// Frames and bytes of this ring written to the rolling store.
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// The most bytes of ring records found in one drain since the last
    /// status (taken by the publisher).
    pub backlog_bytes: AtomicU64,
    /// Nanoseconds the reader spent handling frames (not waiting for them).
    pub busy_ns: AtomicU64,
}

/// Totals the reader, worker and output threads keep current.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Frames and bytes written to the rolling store (reader).
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Calls open in the pipeline (worker).
    pub calls_open: AtomicU64,
    /// Ring-full losses charged to open calls (worker).
    pub capture_loss: AtomicU64,
    /// Calls written and indexed, and those whose outputs failed (output).
    pub calls_written: AtomicU64,
    pub call_write_errors: AtomicU64,
    /// Rolling files deleted by retention, and the store's current size
    /// (output).
    pub files_deleted: AtomicU64,
    pub store_files: AtomicU64,
    pub store_bytes: AtomicU64,
    /// Capacity of the kernel's media endpoint map (set once at start), and
    /// the updates of it that failed (worker): an insert fails when the map
    /// is full.
    pub endpoint_map_max_entries: AtomicU64,
    pub endpoint_insert_failures: AtomicU64,
    pub endpoint_remove_failures: AtomicU64,
    /// The most bytes of ring records the reader found in one poll since
    /// the last status (readers; taken by the publisher).
    pub ring_backlog_bytes: AtomicU64,
    /// Each ring's reader, by ring index.
    pub rings: [RingLive; RINGS],
    /// The pipeline thread, then the media workers.
    pub workers: [WorkerLive; WORKERS],
}

impl LiveCounters {
    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What the sensor page shows for drops, by cause.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Drops {
    /// Kept by XDP but the ring to user space was full (user space slow).
    pub ring_full: u64,
    /// Too short or malformed for the XDP parser.
    pub malformed: u64,
    /// Dropped on purpose (`capture.drop_unkept` on a mirror port).
    pub unkept_by_config: u64,
    /// Calls whose outputs could not be written (user space).
    pub call_write_errors: u64,
    /// Media frames the dispatcher dropped because their media worker was
    /// behind (`workers.media_queue_bytes`; the sum of `workers[].dropped`).
    pub worker_queue_full: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Kernel {
    pub seen: u64,
    pub kept_sip: u64,
    pub kept_media: u64,
    pub kept_heuristic: u64,
    pub kept_fragment: u64,
    pub passed: u64,
    /// Frames with more encapsulation headers than `capture.max_encap_depth`
    /// (passed or dropped as not kept).
    pub too_deep: u64,
    /// Frames that went through each kind of encapsulation.
    pub tunnels: Tunnels,
}

/// The kernel's per-kind tunnel counters (`voxtap_common::Tunnel`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tunnels {
    pub vlan: u64,
    pub mpls: u64,
    pub gre: u64,
    pub erspan: u64,
    pub vxlan: u64,
    pub geneve: u64,
    pub pppoe: u64,
    pub gtpu: u64,
    pub ipip: u64,
}

impl Tunnels {
    fn from_counters(t: &[u64; TUNNELS]) -> Self {
        let n = |k: Tunnel| t.get(k as usize).copied().unwrap_or(0);
        Tunnels {
            vlan: n(Tunnel::Vlan),
            mpls: n(Tunnel::Mpls),
            gre: n(Tunnel::Gre),
            erspan: n(Tunnel::Erspan),
            vxlan: n(Tunnel::Vxlan),
            geneve: n(Tunnel::Geneve),
            pppoe: n(Tunnel::Pppoe),
            gtpu: n(Tunnel::Gtpu),
            ipip: n(Tunnel::IpIp),
        }
    }
}

/// What the kernel counted: outcomes (`Counter`), tunnel kinds, and each
/// ring's frames written and lost.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelCounters {
    pub outcomes: [u64; COUNTERS],
    pub tunnels: [u64; TUNNELS],
    pub rings: [RingCounters; RINGS],
}

/// Outcomes alone (no tunnel seen, no ring figures).
impl From<&[u64; COUNTERS]> for KernelCounters {
    fn from(outcomes: &[u64; COUNTERS]) -> Self {
        KernelCounters {
            outcomes: *outcomes,
            ..Default::default()
        }
    }
}

/// One kernel ring and its reader thread (`workers.rings`), in
/// `sensor.json`'s `rings` (a table on the sensor page, a labelled series
/// per ring in /metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RingStatus {
    /// `ring<i>`: the label of its series in /metrics.
    pub name: String,
    /// What it carries: "all" (one ring), "signalling" (ring 0 of several:
    /// SIP, fragments, TCP) or "media".
    pub carries: String,
    /// Frames of this ring stored by its reader, and their rate over the
    /// last interval.
    pub frames_total: u64,
    pub frames_per_second: f64,
    /// Frames the kernel wrote to the ring, and lost because it was full.
    pub kernel_written: u64,
    pub lost_ring_full: u64,
    /// The largest backlog the reader drained at once over the last
    /// interval, as a share of the ring.
    pub backlog_bytes: u64,
    pub fill_percent: f64,
    /// Share of the last interval the reader spent handling frames.
    pub busy_percent: f64,
}

/// One pipeline thread (`workers.pipeline`), in `sensor.json`'s `workers`
/// (a table on the sensor page beside the rings', a labelled series per
/// thread in /metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorkerStatus {
    /// `pipeline` (one pipeline thread), else `dispatcher` and `media<k>`.
    pub name: String,
    pub frames_total: u64,
    pub frames_per_second: f64,
    /// Share of the last interval spent on frames.
    pub busy_percent: f64,
    /// A media worker's own media dropped because it was behind.
    pub dropped: u64,
}

/// The kernel's media endpoint map (`capture.media_endpoints`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MediaEndpoints {
    pub max_entries: u64,
    /// SDP endpoints the map refused (full): their frames are kept only by
    /// the RTP heuristic, if enabled.
    pub insert_failures: u64,
    /// Removals that failed for another reason than an absent key.
    pub remove_failures: u64,
}

/// The kernel's `FRAMES` ring buffer: one ring shared by every CPU and
/// queue (a BPF ring buffer, not per CPU), drained by the one reader.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ring {
    pub bytes: u64,
    /// The largest backlog the reader drained in one poll over the last
    /// status interval (record headers included).
    pub backlog_bytes: u64,
    /// `backlog_bytes` as a share of the ring (100: full, the kernel then
    /// counts `ring_full` drops).
    pub fill_percent: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Store {
    pub path: String,
    pub files: u64,
    pub bytes: u64,
    pub free_bytes: Option<u64>,
    /// Retention settings (0 = no limit) and what it deleted.
    pub max_bytes: u64,
    pub max_age_seconds: u64,
    pub min_free_bytes: u64,
    pub files_deleted: u64,
}

/// The whole `sensor.json` (plus `component` and `updated_unix`, which
/// [`crate::status::write`] adds).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SensorStatus {
    pub version: String,
    pub iface: String,
    pub attach_mode: String,
    pub started_unix: u64,
    pub uptime_seconds: u64,
    /// Rates over the last interval.
    pub frames_per_second: f64,
    pub bytes_per_second: f64,
    pub kernel_seen_per_second: f64,
    pub frames_total: u64,
    pub bytes_total: u64,
    pub calls_active: u64,
    pub calls_written: u64,
    pub capture_loss: u64,
    /// Frames lost for any reason (sum of `drops`' frame counts).
    pub dropped_total: u64,
    pub drops: Drops,
    pub kernel: Kernel,
    pub media_endpoints: MediaEndpoints,
    pub ring: Ring,
    /// Each ring in use and its reader.
    pub rings: Vec<RingStatus>,
    /// Each pipeline thread.
    pub workers: Vec<WorkerStatus>,
    pub store: Store,
    /// False in the last file a run writes as it stops.
    pub running: bool,
}

/// Static facts of the run.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    pub iface: String,
    pub attach_mode: String,
    /// Size of each kernel ring buffer, and how many are in use.
    pub ring_bytes: u64,
    pub rings: u32,
    /// `workers.pipeline`.
    pub pipeline: u32,
    pub store: PathBuf,
    pub max_bytes: u64,
    pub max_age_seconds: u64,
    pub min_free_bytes: u64,
}

/// Builds and writes `sensor.json`, keeping the previous snapshot for rates.
pub struct SensorPublisher {
    data: PathBuf,
    facts: RunFacts,
    started: Instant,
    started_unix: u64,
    last: Option<(Instant, u64, u64, u64)>,
    /// Each ring's frames and busy time at the last snapshot.
    last_rings: [(u64, u64); RINGS],
    last_workers: [(u64, u64); WORKERS],
}

impl SensorPublisher {
    /// `data` is the web's data directory (the run's `output.dir`).
    pub fn new(data: &Path, facts: RunFacts) -> Self {
        SensorPublisher {
            data: data.to_path_buf(),
            facts,
            started: Instant::now(),
            started_unix: crate::status::now_unix(),
            last: None,
            last_rings: [(0, 0); RINGS],
            last_workers: [(0, 0); WORKERS],
        }
    }

    /// The status now, from the kernel counters and the threads' totals.
    pub fn snapshot(
        &mut self,
        kc: impl Into<KernelCounters>,
        c: &LiveCounters,
        running: bool,
    ) -> SensorStatus {
        let kc = kc.into();
        let k = &kc.outcomes;
        let now = Instant::now();
        let frames = LiveCounters::get(&c.frames);
        let bytes = LiveCounters::get(&c.bytes);
        let seen = k[Counter::Seen as usize];
        let dt = self
            .last
            .map(|(t, ..)| now.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        let rings = self.rings(&kc, c, dt);
        let workers = self.workers(c, dt);
        let (fps, bps, sps) = match self.last {
            Some((t, f, b, s)) if now > t => {
                let dt = now.duration_since(t).as_secs_f64();
                (
                    frames.saturating_sub(f) as f64 / dt,
                    bytes.saturating_sub(b) as f64 / dt,
                    seen.saturating_sub(s) as f64 / dt,
                )
            }
            _ => (0.0, 0.0, 0.0),
        };
        self.last = Some((now, frames, bytes, seen));
        let drops = Drops {
            ring_full: k[Counter::LostRingFull as usize],
            malformed: k[Counter::Malformed as usize],
            unkept_by_config: k[Counter::Dropped as usize],
            call_write_errors: LiveCounters::get(&c.call_write_errors),
            worker_queue_full: c
                .workers
                .iter()
                .map(|w| LiveCounters::get(&w.dropped))
                .sum(),
        };
        let backlog = c.ring_backlog_bytes.swap(0, Ordering::Relaxed);
        let ring = Ring {
            bytes: self.facts.ring_bytes,
            backlog_bytes: backlog,
            fill_percent: percent(backlog, self.facts.ring_bytes),
        };
        SensorStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            iface: self.facts.iface.clone(),
            attach_mode: self.facts.attach_mode.clone(),
            started_unix: self.started_unix,
            uptime_seconds: self.started.elapsed().as_secs(),
            frames_per_second: fps,
            bytes_per_second: bps,
            kernel_seen_per_second: sps,
            frames_total: frames,
            bytes_total: bytes,
            calls_active: LiveCounters::get(&c.calls_open),
            calls_written: LiveCounters::get(&c.calls_written),
            capture_loss: LiveCounters::get(&c.capture_loss),
            dropped_total: drops.ring_full + drops.malformed + drops.worker_queue_full,
            drops,
            kernel: Kernel {
                seen,
                kept_sip: k[Counter::KeptSip as usize],
                kept_media: k[Counter::KeptMedia as usize],
                kept_heuristic: k[Counter::KeptHeuristic as usize],
                kept_fragment: k[Counter::KeptFragment as usize],
                passed: k[Counter::Passed as usize],
                too_deep: k[Counter::TooDeep as usize],
                tunnels: Tunnels::from_counters(&kc.tunnels),
            },
            media_endpoints: MediaEndpoints {
                max_entries: LiveCounters::get(&c.endpoint_map_max_entries),
                insert_failures: LiveCounters::get(&c.endpoint_insert_failures),
                remove_failures: LiveCounters::get(&c.endpoint_remove_failures),
            },
            ring,
            rings,
            workers,
            store: Store {
                path: self.facts.store.display().to_string(),
                files: LiveCounters::get(&c.store_files),
                bytes: LiveCounters::get(&c.store_bytes),
                free_bytes: crate::store::free_bytes(&self.facts.store),
                max_bytes: self.facts.max_bytes,
                max_age_seconds: self.facts.max_age_seconds,
                min_free_bytes: self.facts.min_free_bytes,
                files_deleted: LiveCounters::get(&c.files_deleted),
            },
            running,
        }
    }

    /// Each ring's figures; rates over the `dt` seconds since the last
    /// snapshot (0: none yet).
    fn rings(&mut self, kc: &KernelCounters, c: &LiveCounters, dt: f64) -> Vec<RingStatus> {
        let n = (self.facts.rings.max(1) as usize).min(RINGS);
        let carries = |i: usize| match (n, i) {
            (1, _) => "all",
            (_, 0) => "signalling",
            _ => "media",
        };
        (0..n)
            .map(|i| {
                let live = &c.rings[i];
                let frames = LiveCounters::get(&live.frames);
                let busy = LiveCounters::get(&live.busy_ns);
                let backlog = live.backlog_bytes.swap(0, Ordering::Relaxed);
                let (f0, b0) = std::mem::replace(&mut self.last_rings[i], (frames, busy));
                let per_s = |d: u64| if dt > 0.0 { d as f64 / dt } else { 0.0 };
                RingStatus {
                    name: format!("ring{i}"),
                    carries: carries(i).into(),
                    frames_total: frames,
                    frames_per_second: per_s(frames.saturating_sub(f0)),
                    kernel_written: kc.rings[i].written,
                    lost_ring_full: kc.rings[i].lost,
                    backlog_bytes: backlog,
                    fill_percent: percent(backlog, self.facts.ring_bytes),
                    busy_percent: (per_s(busy.saturating_sub(b0)) / 1e7).min(100.0),
                }
            })
            .collect()
    }

    /// Each pipeline thread's figures; rates over the last `dt` seconds.
    fn workers(&mut self, c: &LiveCounters, dt: f64) -> Vec<WorkerStatus> {
        let media = self.facts.pipeline as usize;
        let n = if media > 1 { 1 + media } else { 1 }.min(WORKERS);
        (0..n)
            .map(|i| {
                let live = &c.workers[i];
                let frames = LiveCounters::get(&live.frames);
                let busy = LiveCounters::get(&live.busy_ns);
                let (f0, b0) = std::mem::replace(&mut self.last_workers[i], (frames, busy));
                let per_s = |d: u64| if dt > 0.0 { d as f64 / dt } else { 0.0 };
                let name = match (n, i) {
                    (1, _) => "pipeline".to_string(),
                    (_, 0) => "dispatcher".to_string(),
                    _ => format!("media{}", i - 1),
                };
                WorkerStatus {
                    name,
                    frames_total: frames,
                    frames_per_second: per_s(frames.saturating_sub(f0)),
                    busy_percent: (per_s(busy.saturating_sub(b0)) / 1e7).min(100.0),
                    dropped: LiveCounters::get(&live.dropped),
                }
            })
            .collect()
    }

    /// Writes `status/sensor.json`; a failure is logged, never fatal: the
    /// capture matters more than its dashboard.
    pub fn publish(&mut self, k: impl Into<KernelCounters>, c: &LiveCounters, running: bool) {
        let s = self.snapshot(k, c, running);
        if let Err(e) = crate::status::write(&self.data, "sensor", &s) {
            tracing::warn!(dir = %self.data.display(), error = %e, "writing status/sensor.json");
        }
    }
}

/// `part` as a share of `whole`, at most 100 (0 when `whole` is 0).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (100.0 * part as f64 / whole as f64).min(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_carries_the_counters_and_rates() {
        let d = tempfile::tempdir().unwrap();
        let c = LiveCounters::default();
        let mut p = SensorPublisher::new(
            d.path(),
            RunFacts {
                iface: "veth0".into(),
                attach_mode: "Skb".into(),
                ring_bytes: 1 << 20,
                rings: 3,
                pipeline: 2,
                store: d.path().to_path_buf(),
                max_bytes: 1 << 30,
                max_age_seconds: 3600,
                min_free_bytes: 0,
            },
        );
        let mut k = KernelCounters::default();
        p.publish(k, &c, true);
        std::thread::sleep(std::time::Duration::from_millis(200));
        k.outcomes[Counter::Seen as usize] = 5000;
        k.outcomes[Counter::LostRingFull as usize] = 7;
        k.outcomes[Counter::Malformed as usize] = 2;
        k.outcomes[Counter::TooDeep as usize] = 3;
        k.tunnels[Tunnel::Vxlan as usize] = 11;
        k.tunnels[Tunnel::Mpls as usize] = 12;
        LiveCounters::set(&c.frames, 1000);
        LiveCounters::set(&c.bytes, 200_000);
        LiveCounters::set(&c.calls_open, 3);
        LiveCounters::set(&c.files_deleted, 4);
        LiveCounters::set(&c.endpoint_map_max_entries, 262_144);
        LiveCounters::set(&c.endpoint_insert_failures, 6);
        c.ring_backlog_bytes.fetch_max(1 << 18, Ordering::Relaxed);
        k.rings[0] = RingCounters {
            written: 40,
            lost: 0,
        };
        k.rings[2] = RingCounters {
            written: 600,
            lost: 7,
        };
        LiveCounters::set(&c.rings[0].frames, 40);
        LiveCounters::set(&c.rings[1].frames, 360);
        LiveCounters::set(&c.rings[2].frames, 600);
        c.rings[2]
            .backlog_bytes
            .fetch_max(1 << 19, Ordering::Relaxed);
        // 50 ms busy in a bit over 0.2 s: a bit under 25%.
        LiveCounters::set(&c.rings[1].busy_ns, 50_000_000);
        // The dispatcher and two media workers (one of them idle).
        LiveCounters::set(&c.workers[0].frames, 1000);
        LiveCounters::set(&c.workers[1].frames, 700);
        LiveCounters::set(&c.workers[1].busy_ns, 50_000_000);
        let s = p.snapshot(k, &c, true);
        let w: Vec<_> = s.workers.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(w, ["dispatcher", "media0", "media1"]);
        assert_eq!(s.workers[1].frames_total, 700);
        assert!(s.workers[1].busy_percent > 10.0 && s.workers[1].busy_percent < 25.0);
        assert_eq!(s.workers[2].busy_percent, 0.0);
        assert!((s.workers[0].frames_per_second - s.frames_per_second).abs() < 1e-6);
        assert_eq!(s.rings.len(), 3);
        let r: Vec<_> = s.rings.iter().map(|r| r.carries.as_str()).collect();
        assert_eq!(r, ["signalling", "media", "media"]);
        assert_eq!(s.rings[2].fill_percent, 50.0);
        assert_eq!(s.rings[2].lost_ring_full, 7);
        assert!(s.rings[1].busy_percent > 10.0 && s.rings[1].busy_percent < 25.0);
        let per_ring: f64 = s.rings.iter().map(|r| r.frames_per_second).sum();
        assert!((per_ring - s.frames_per_second).abs() < 1e-6);
        assert_eq!(s.ring.backlog_bytes, 1 << 18);
        assert_eq!(s.ring.fill_percent, 25.0);
        // 1000 frames in a bit over 0.2 s.
        assert!(
            s.frames_per_second > 1000.0 && s.frames_per_second <= 5000.0,
            "{}",
            s.frames_per_second
        );
        assert!((s.bytes_per_second / s.frames_per_second - 200.0).abs() < 1e-6);
        p.publish(k, &c, false);
        let v = crate::status::read(d.path(), "sensor").unwrap();
        assert_eq!(v["component"], "sensor");
        assert_eq!(v["frames_total"], 1000);
        assert_eq!(v["drops"]["ring_full"], 7);
        assert_eq!(v["drops"]["malformed"], 2);
        assert_eq!(v["dropped_total"], 9);
        assert_eq!(v["calls_active"], 3);
        assert_eq!(v["store"]["files_deleted"], 4);
        assert_eq!(v["store"]["max_age_seconds"], 3600);
        assert_eq!(v["kernel"]["seen"], 5000);
        assert_eq!(v["kernel"]["too_deep"], 3);
        assert_eq!(v["kernel"]["tunnels"]["vxlan"], 11);
        assert_eq!(v["kernel"]["tunnels"]["mpls"], 12);
        assert_eq!(v["kernel"]["tunnels"]["gre"], 0);
        assert_eq!(v["media_endpoints"]["max_entries"], 262_144);
        assert_eq!(v["media_endpoints"]["insert_failures"], 6);
        assert_eq!(v["media_endpoints"]["remove_failures"], 0);
        assert_eq!(v["running"], false);
        // The backlog is per interval: taken by the snapshot above.
        assert_eq!(v["ring"]["backlog_bytes"], 0);
        assert_eq!(v["ring"]["bytes"], 1 << 20);
        assert_eq!(v["rings"][2]["name"], "ring2");
        assert_eq!(v["rings"][2]["kernel_written"], 600);
        assert_eq!(v["rings"][1]["frames_total"], 360);
        assert_eq!(v["workers"][1]["name"], "media0");
        assert_eq!(v["workers"][1]["frames_total"], 700);
        // No new frames since the last snapshot.
        assert_eq!(v["frames_per_second"], 0.0);
    }
}
