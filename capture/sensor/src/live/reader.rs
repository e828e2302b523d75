//! The reader threads, one per kernel ring (`workers.rings`): each drains
//! its ring, appends every frame to the rolling PCAP file (so its
//! [`PacketRef`] is known), copies it into a pooled [`Batch`] and hands full
//! batches to the pipeline worker.
//!
//! The readers share the one rolling file, the batch numbering and the batch
//! pool. The file is locked once per drain of up to one batch, never per
//! frame; the pool once per batch. The worker takes batches in the order
//! they are sent: within a ring in capture order, across rings as they
//! arrive (SIP's ring wakes its reader at once, so an SDP is normally in the
//! pipeline before the media it announces).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::batch::Batch;
use super::clock::Clock;
use super::{FLUSH_EVERY, POLL, status};
use crate::config::TestingConfig;
use crate::store::RollingWriter;
use crate::xdp::{FRAME_META_LEN, FrameMeta, FrameReader, MAX_FRAME};
use voxtap_engine::calls::PacketRef;

#[derive(Default)]
pub(super) struct ReaderStats {
    pub frames: u64,
    pub bytes: u64,
    pub not_stored: u64,
}

/// The rolling file and the batch numbering, shared by the readers.
pub(super) struct SharedStore {
    roll: RollingWriter,
    /// Number of the last batch sent by any reader.
    seq: u64,
    last_flush: Instant,
    /// Frames written or batches numbered since the last flush: `durable`
    /// is behind.
    dirty: bool,
}

impl SharedStore {
    pub fn new(roll: RollingWriter) -> Arc<Mutex<SharedStore>> {
        Arc::new(Mutex::new(SharedStore {
            roll,
            seq: 0,
            last_flush: Instant::now(),
            dirty: false,
        }))
    }

    /// Writes the rolling file's buffer: every batch numbered so far is then
    /// on disk, which the output thread waits for.
    fn flush(&mut self, durable: &AtomicU64) -> Result<()> {
        self.roll.flush().context("flushing the rolling file")?;
        durable.store(self.seq, Ordering::Release);
        self.last_flush = Instant::now();
        self.dirty = false;
        Ok(())
    }
}

/// Closes the rolling file once every reader stopped, and turns the
/// readers' totals into the run's: frames cut by a failed write are taken
/// off, frames not stored (disk full) counted.
pub(super) fn close_store(
    store: Arc<Mutex<SharedStore>>,
    durable: &AtomicU64,
    per_ring: &[ReaderStats],
) -> Result<ReaderStats> {
    let mut st = lock(&store);
    st.roll.close().context("closing the rolling file")?;
    durable.store(st.seq, Ordering::Release);
    let frames: u64 = per_ring.iter().map(|r| r.frames).sum();
    let stats = ReaderStats {
        // Frames counted as stored when written, then cut by a failed write.
        frames: frames.saturating_sub(st.roll.cut()),
        bytes: per_ring.iter().map(|r| r.bytes).sum(),
        not_stored: st.roll.not_stored(),
    };
    if stats.not_stored > 0 {
        tracing::error!(
            not_stored = stats.not_stored,
            "frames were not stored: the store's disk was full (their calls count them in capture_loss)"
        );
    }
    Ok(stats)
}

fn lock(store: &Mutex<SharedStore>) -> MutexGuard<'_, SharedStore> {
    // A reader that panicked left the file as it was: keep using it.
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a reader thread is handed: its ring's counterparts of the shared
/// store, the channels to the worker and the run's flags.
pub(super) struct ReaderLinks {
    pub store: Arc<Mutex<SharedStore>>,
    pub full_tx: SyncSender<Batch>,
    /// The pool of empty batches, shared by the readers.
    pub empty_rx: Arc<Mutex<Receiver<Batch>>>,
    pub durable: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    pub live: Arc<status::LiveCounters>,
    pub testing: TestingConfig,
}

/// The reader's state between two drains.
struct Reader {
    links: ReaderLinks,
    ring: usize,
    batch: Batch,
    /// The testing stall happened (or is off for this ring).
    stalled: bool,
    stats: ReaderStats,
    clock: Clock,
    /// Bytes of ring records handled in the current drain.
    drained: u64,
    busy_ns: u64,
}

pub(super) fn reader_loop(mut frames: FrameReader, links: ReaderLinks) -> Result<ReaderStats> {
    let batch = take_empty(&links.empty_rx)?;
    let ring = frames.index() as usize;
    let testing = &links.testing;
    let stalled =
        testing.stall_reader_after_frames == 0 || testing.stall_reader_ring != ring as u32;
    let mut r = Reader {
        links,
        ring,
        batch,
        stalled,
        stats: ReaderStats::default(),
        clock: Clock::new(),
        drained: 0,
        busy_ns: 0,
    };
    loop {
        let stopping = r.links.stop.load(Ordering::Relaxed);
        r.clock.refresh();
        r.drained = 0;
        let mut n = r.timed_drain(&mut frames)?;
        if n == 0 && !stopping {
            // The kernel wakes lazily (every `wakeup_every` frames): drain
            // after the timeout too.
            frames.wait(POLL).context("polling the ring buffer")?;
            r.clock.refresh();
            n = r.timed_drain(&mut frames)?;
        }
        r.publish();
        if !r.batch.is_empty() {
            r.send()?;
        }
        r.flush_if_due(stopping)?;
        r.maybe_stall();
        // Stop once the ring is drained.
        if stopping && n == 0 {
            break;
        }
    }
    Ok(r.stats)
}

fn take_empty(pool: &Mutex<Receiver<Batch>>) -> Result<Batch> {
    // Blocks while the worker has every batch: backpressure into the kernel
    // ring, where loss is counted.
    pool.lock()
        .unwrap_or_else(|e| e.into_inner())
        .recv()
        .map_err(|_| anyhow!("pipeline worker stopped"))
}

impl Reader {
    /// [`Self::drain`], its time counted as busy when it found frames.
    fn timed_drain(&mut self, frames: &mut FrameReader) -> Result<usize> {
        let started = Instant::now();
        let n = self.drain(frames)?;
        if n > 0 {
            self.busy_ns += started.elapsed().as_nanos() as u64;
        }
        Ok(n)
    }

    /// Every frame in the ring now, with the rolling file locked once per
    /// batch's worth. Returns the frames handled.
    fn drain(&mut self, frames: &mut FrameReader) -> Result<usize> {
        let mut n = 0;
        let shared = Arc::clone(&self.links.store);
        loop {
            let mut store = lock(&shared);
            let mut full = false;
            while let Some(frame) = frames.next_frame() {
                let (meta, data) = (frame.meta(), frame.data());
                self.store_frame(&mut store.roll, meta, data)?;
                n += 1;
                store.dirty = true;
                if self.batch.is_full(MAX_FRAME) {
                    full = true;
                    break;
                }
            }
            // Under sustained load the ring never drains: flush here too,
            // so ended calls do not wait for a lull.
            if store.dirty && store.last_flush.elapsed() >= FLUSH_EVERY {
                store.flush(&self.links.durable)?;
            }
            drop(store);
            if !full {
                return Ok(n);
            }
            self.send()?;
        }
    }

    fn store_frame(
        &mut self,
        roll: &mut RollingWriter,
        meta: FrameMeta,
        data: &[u8],
    ) -> Result<()> {
        // The record as the kernel ring holds it: an 8-byte header, the
        // meta and the frame, padded to 8.
        self.drained += (8 + FRAME_META_LEN + data.len()).next_multiple_of(8) as u64;
        let ts = self.clock.wall(meta.ktime_ns);
        let pref = roll
            .write(ts, meta.wire_len, data)
            .context("writing the rolling file")?;
        // Not stored (disk full) or not, the call table follows the frame:
        // calls are still indexed.
        self.batch.push(ts, pref, data);
        if pref != PacketRef::NOT_STORED {
            self.stats.frames += 1;
            self.stats.bytes += data.len() as u64;
        }
        Ok(())
    }

    /// Numbers the current batch (after its frames are in the rolling
    /// file), hands it to the worker and takes an empty one.
    fn send(&mut self) -> Result<()> {
        {
            let mut store = lock(&self.links.store);
            store.seq += 1;
            self.batch.seq = store.seq;
            // Its frames may be on disk already (another reader flushed),
            // but `durable` does not say so until the next flush.
            store.dirty = true;
        }
        let next = take_empty(&self.links.empty_rx)?;
        let full = std::mem::replace(&mut self.batch, next);
        self.links
            .full_tx
            .send(full)
            .map_err(|_| anyhow!("pipeline worker stopped"))
    }

    fn flush_if_due(&mut self, stopping: bool) -> Result<()> {
        let mut store = lock(&self.links.store);
        if store.dirty && (store.last_flush.elapsed() >= FLUSH_EVERY || stopping) {
            store.flush(&self.links.durable)?;
        }
        Ok(())
    }

    /// This ring's totals, and the run's, for status/sensor.json.
    fn publish(&self) {
        let live = &self.links.live;
        let mine = &live.rings[self.ring];
        status::LiveCounters::set(&mine.frames, self.stats.frames);
        status::LiveCounters::set(&mine.bytes, self.stats.bytes);
        status::LiveCounters::set(&mine.busy_ns, self.busy_ns);
        mine.backlog_bytes
            .fetch_max(self.drained, Ordering::Relaxed);
        live.ring_backlog_bytes
            .fetch_max(self.drained, Ordering::Relaxed);
        let frames = live.rings.iter().map(|r| r.frames.load(Ordering::Relaxed));
        let bytes = live.rings.iter().map(|r| r.bytes.load(Ordering::Relaxed));
        status::LiveCounters::set(&live.frames, frames.sum());
        status::LiveCounters::set(&live.bytes, bytes.sum());
    }

    /// The testing knob: this ring's reader stops reading once, outside
    /// any lock, so only its ring fills.
    fn maybe_stall(&mut self) {
        let t = &self.links.testing;
        if !self.stalled && self.stats.frames >= t.stall_reader_after_frames {
            self.stalled = true;
            tracing::warn!(
                ring = self.ring,
                ms = t.stall_reader_ms,
                "testing: stalling the reader"
            );
            thread::sleep(Duration::from_millis(t.stall_reader_ms));
        }
    }
}
