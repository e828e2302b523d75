//! The output thread: writes each ended call's outputs with the same
//! [`CallWriter`] as `import` (reading the packets back from the rolling
//! files), records where its packets are in `store.sqlite` and the call in
//! the web's call index, and applies retention.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::clock::wall_ns;
use super::status;
use crate::store::{CallLocation, FileEvent, StoreManager};
use voxtap_engine::calls::Call;
use voxtap_engine::index::{CallFiles, Index};
use voxtap_engine::output::CallWriter;
use voxtap_engine::signalling::{SignallingSnapshot, Transaction};

use super::worker::SignallingBatch;

#[derive(Default)]
pub(super) struct OutputStats {
    pub calls: u64,
    pub write_errors: u64,
    pub files_deleted: u64,
}

/// What the output thread owns.
pub(super) struct Output {
    pub mgr: StoreManager,
    pub writer: CallWriter,
    pub call_index: Index,
    pub file_rx: Receiver<FileEvent>,
}

/// Calls ended by the worker, with the batch that ended them.
type Ended = (u64, Vec<Call>);

pub(super) fn output_loop(
    mut out: Output,
    (ended_rx, sig_rx): (Receiver<Ended>, Receiver<SignallingBatch>),
    durable: &AtomicU64,
    live: &status::LiveCounters,
) -> Result<OutputStats> {
    let mut stats = OutputStats::default();
    let mut pending: VecDeque<Ended> = VecDeque::new();
    let mut last_retention = Instant::now();
    let mut done = false;
    loop {
        let closed = out.record_file_events()?;
        if closed || last_retention.elapsed() >= Duration::from_secs(1) {
            last_retention = Instant::now();
            let n = out.mgr.apply_retention(wall_ns()).context("retention")?;
            if n > 0 {
                stats.files_deleted += n as u64;
                out.writer.close_readers();
            }
        }
        if !done {
            match ended_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(item) => pending.push_back(item),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => done = true,
            }
        }
        out.write_durable_calls(&mut pending, durable, &mut stats)?;
        for (snapshot, done, floods) in sig_rx.try_iter() {
            out.write_signalling(&snapshot, &done, &mut stats);
            if let Err(e) = out.writer.write_floods(&floods) {
                stats.write_errors += 1;
                tracing::warn!(error = %e, "writing floods.csv");
            }
        }
        out.publish(&stats, live);
        if done && pending.is_empty() {
            break;
        }
        if done {
            // Everything was flushed before the worker finished; this only
            // waits for the last durable mark to be seen.
            thread::sleep(Duration::from_millis(5));
        }
    }
    out.record_file_events()?;
    out.mgr.apply_retention(wall_ns()).context("retention")?;
    stats.files_deleted = out.mgr.deleted_files;
    out.writer
        .finish()
        .context("writing calls.csv and streams.csv")?;
    Ok(stats)
}

impl Output {
    /// Records the rolling files' events; true when a file was closed.
    fn record_file_events(&mut self) -> Result<bool> {
        let mut closed = false;
        for ev in self.file_rx.try_iter() {
            closed |= matches!(ev, FileEvent::Closed { .. });
            self.mgr.on_event(ev).context("recording a rolling file")?;
        }
        Ok(closed)
    }

    /// Writes the pending calls whose packets are on disk, then records them
    /// in the call index and their locations in the store's index.
    fn write_durable_calls(
        &mut self,
        pending: &mut VecDeque<Ended>,
        durable: &AtomicU64,
        stats: &mut OutputStats,
    ) -> Result<()> {
        let mut locations = Vec::new();
        let mut indexed: Vec<(Call, CallFiles)> = Vec::new();
        // A call is written once the reader has flushed every batch up to
        // the one that ended it: its packets are then on disk.
        while pending
            .front()
            .is_some_and(|(seq, _)| *seq <= durable.load(Ordering::Acquire))
        {
            let Some((_, calls)) = pending.pop_front() else {
                break;
            };
            self.record_file_events()?;
            for call in calls {
                let (location, call, files) = self.write_call(call, stats);
                // The store's location index finds calls by Call-ID; media
                // without SIP has none (its folder and the call index have it).
                if !call.is_media_only() {
                    locations.push(location);
                    stats.calls += 1;
                }
                indexed.push((call, files));
            }
        }
        if !indexed.is_empty() {
            let batch: Vec<(&Call, CallFiles)> =
                indexed.iter().map(|(c, f)| (c, f.clone())).collect();
            self.call_index
                .record_calls(&batch)
                .context("recording calls in the call index")?;
        }
        if !locations.is_empty() {
            self.mgr
                .index()
                .add_calls(&locations)
                .context("recording call locations")?;
        }
        Ok(())
    }

    /// registrations.csv, pings.csv and transactions.csv, and the index's
    /// registrations and pings; a failure is logged and counted, as for calls.
    fn write_signalling(
        &mut self,
        snapshot: &SignallingSnapshot,
        done: &[Transaction],
        stats: &mut OutputStats,
    ) {
        let r = self
            .writer
            .write_signalling(snapshot)
            .and_then(|()| self.writer.write_transactions(done))
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                self.call_index
                    .record_signalling(snapshot)
                    .map_err(anyhow::Error::from)
            });
        if let Err(e) = r {
            stats.write_errors += 1;
            tracing::warn!(error = %e, "writing registrations, pings and transactions");
        }
    }

    /// One call's outputs; a failure is counted and logged, the call is
    /// still indexed.
    fn write_call(
        &mut self,
        mut call: Call,
        stats: &mut OutputStats,
    ) -> (CallLocation, Call, CallFiles) {
        let unstored = self.mgr.mark_unstored(&mut call);
        if unstored > 0 {
            call.add_capture_loss(unstored);
        }
        let files = match self.writer.write_call(&call) {
            Ok(w) => w
                .folder
                .as_deref()
                .map(CallFiles::folder)
                .unwrap_or_default(),
            Err(e) => {
                stats.write_errors += 1;
                tracing::warn!(call_id = %call.call_id(), error = %e, "writing the call's outputs");
                CallFiles::default()
            }
        };
        if call.capture_loss() > 0 {
            tracing::warn!(
                call_id = %call.call_id(),
                capture_loss = call.capture_loss(),
                "the sensor lost packets while this call was open"
            );
        }
        (self.mgr.locate(&call), call, files)
    }

    fn publish(&self, stats: &OutputStats, live: &status::LiveCounters) {
        let (files, bytes) = self.mgr.usage();
        status::LiveCounters::set(&live.store_files, files);
        status::LiveCounters::set(&live.store_bytes, bytes);
        status::LiveCounters::set(&live.calls_written, stats.calls);
        status::LiveCounters::set(&live.call_write_errors, stats.write_errors);
        status::LiveCounters::set(&live.files_deleted, self.mgr.deleted_files);
    }
}
