//! The reader thread: polls the kernel ring buffer, appends every frame to
//! the rolling PCAP file (so its [`PacketRef`] is known), copies it into a
//! pooled [`Batch`] and hands full batches to the pipeline worker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
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

/// The reader's state between two frames.
struct Reader {
    roll: RollingWriter,
    full_tx: SyncSender<Batch>,
    empty_rx: Receiver<Batch>,
    batch: Batch,
    /// Number of the last batch sent.
    seq: u64,
    last_flush: Instant,
    /// Frames written since the last flush.
    dirty: bool,
    /// The testing stall happened (or is off).
    stalled: bool,
    /// The first error inside a poll callback, returned after the poll.
    fail: Option<anyhow::Error>,
    stats: ReaderStats,
    clock: Clock,
    /// Bytes of ring records handled in the current poll.
    drained: u64,
}

// Each argument is a distinct channel or shared counter of the thread;
// bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) fn reader_loop(
    mut frames: FrameReader,
    roll: RollingWriter,
    full_tx: SyncSender<Batch>,
    empty_rx: Receiver<Batch>,
    durable: &AtomicU64,
    stop: &AtomicBool,
    testing: &TestingConfig,
    live: &status::LiveCounters,
) -> Result<ReaderStats> {
    let batch = empty_rx.recv().context("batch pool empty")?;
    let mut r = Reader {
        roll,
        full_tx,
        empty_rx,
        batch,
        seq: 0,
        last_flush: Instant::now(),
        dirty: false,
        stalled: testing.stall_reader_after_frames == 0,
        fail: None,
        stats: ReaderStats::default(),
        clock: Clock::new(),
        drained: 0,
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        r.clock.refresh();
        r.drained = 0;
        let n = frames
            .poll(
                if stopping { Duration::ZERO } else { POLL },
                |meta, data| r.on_frame(meta, data, durable, testing),
            )
            .context("polling the ring buffer")?;
        status::LiveCounters::set(&live.frames, r.stats.frames);
        status::LiveCounters::set(&live.bytes, r.stats.bytes);
        live.ring_backlog_bytes
            .fetch_max(r.drained, Ordering::Relaxed);
        if let Some(e) = r.fail.take() {
            return Err(e);
        }
        if !r.batch.is_empty() {
            r.send()?;
        }
        if r.dirty && (r.last_flush.elapsed() >= FLUSH_EVERY || stopping) {
            r.flush(durable)?;
            r.dirty = false;
        }
        // Stop once the ring is drained.
        if stopping && n == 0 {
            break;
        }
    }
    r.finish(durable)
}

impl Reader {
    /// One frame from the ring. An error is kept for after the poll: the
    /// ring's callback cannot return one.
    fn on_frame(
        &mut self,
        meta: FrameMeta,
        data: &[u8],
        durable: &AtomicU64,
        testing: &TestingConfig,
    ) {
        // The record as the kernel ring holds it: an 8-byte header, the
        // meta and the frame, padded to 8.
        self.drained += (8 + FRAME_META_LEN + data.len()).next_multiple_of(8) as u64;
        if self.fail.is_some() {
            return;
        }
        if let Err(e) = self.store_frame(meta, data, durable) {
            self.fail = Some(e);
            return;
        }
        if !self.stalled && self.stats.frames >= testing.stall_reader_after_frames {
            self.stalled = true;
            tracing::warn!(ms = testing.stall_reader_ms, "testing: stalling the reader");
            thread::sleep(Duration::from_millis(testing.stall_reader_ms));
        }
    }

    fn store_frame(&mut self, meta: FrameMeta, data: &[u8], durable: &AtomicU64) -> Result<()> {
        let ts = self.clock.wall(meta.ktime_ns);
        let pref = self
            .roll
            .write(ts, meta.wire_len, data)
            .context("writing the rolling file")?;
        // Not stored (disk full) or not, the call table follows the frame:
        // calls are still indexed.
        self.batch.push(ts, pref, data);
        if pref != PacketRef::NOT_STORED {
            self.stats.frames += 1;
            self.stats.bytes += data.len() as u64;
        }
        self.dirty = true;
        if self.batch.is_full(MAX_FRAME) {
            self.send()?;
            // Under sustained load the ring never drains: flush here too, so
            // ended calls do not wait for a lull.
            if self.last_flush.elapsed() >= FLUSH_EVERY {
                self.flush(durable)?;
            }
        }
        Ok(())
    }

    /// Hands the current batch to the worker and takes an empty one.
    fn send(&mut self) -> Result<()> {
        self.seq += 1;
        self.batch.seq = self.seq;
        // Blocks while the worker has every batch: backpressure into the
        // kernel ring, where loss is counted.
        let next = self
            .empty_rx
            .recv()
            .map_err(|_| anyhow!("pipeline worker stopped"))?;
        let full = std::mem::replace(&mut self.batch, next);
        self.full_tx
            .send(full)
            .map_err(|_| anyhow!("pipeline worker stopped"))
    }

    /// Writes the rolling file's buffer: every batch sent so far is then on
    /// disk, which the output thread waits for.
    fn flush(&mut self, durable: &AtomicU64) -> Result<()> {
        self.roll.flush().context("flushing the rolling file")?;
        durable.store(self.seq, Ordering::Release);
        self.last_flush = Instant::now();
        Ok(())
    }

    fn finish(mut self, durable: &AtomicU64) -> Result<ReaderStats> {
        self.roll.close().context("closing the rolling file")?;
        durable.store(self.seq, Ordering::Release);
        let mut stats = self.stats;
        stats.not_stored = self.roll.not_stored();
        // Frames counted as stored when written, then cut by a failed write.
        stats.frames = stats.frames.saturating_sub(self.roll.cut());
        if stats.not_stored > 0 {
            tracing::error!(
                not_stored = stats.not_stored,
                "frames were not stored: the store's disk was full (their calls count them in capture_loss)"
            );
        }
        Ok(stats)
    }
}
