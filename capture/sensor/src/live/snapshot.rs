//! The calls in progress for the web's Live page: the pipeline thread
//! builds a [`LiveSnapshot`] from its call table once per
//! [`SNAPSHOT_EVERY`] (never per packet) and hands it to a writer thread,
//! which replaces `<data>/live/calls.json` atomically (see
//! [`crate::status::live_calls_path`]). The hand-over holds one snapshot:
//! when the writer is still busy with the previous one the new one is
//! dropped (counted), so a slow disk never holds up the pipeline.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use voxtap_engine::calls::{Call, CallTable};
use voxtap_engine::live_calls::{LiveSnapshot, LiveSnapshots};

/// How often the pipeline thread builds a snapshot.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// The pipeline thread's end: builds snapshots and hands them over.
pub(super) struct LivePublisher {
    snaps: LiveSnapshots,
    last: Option<Instant>,
    tx: Option<SyncSender<(LiveSnapshot, bool)>>,
    writer: Option<JoinHandle<()>>,
    /// Snapshots dropped because the writer was busy.
    pub dropped: u64,
}

impl LivePublisher {
    /// Starts the writer thread for `data` (the run's `output.dir`).
    pub fn start(data: PathBuf, max_calls: usize) -> Result<Self> {
        let (tx, rx) = sync_channel::<(LiveSnapshot, bool)>(1);
        let writer = std::thread::Builder::new()
            .name("voxtap-live".into())
            .spawn(move || write_loop(&data, &rx))
            .context("starting the live snapshot thread")?;
        Ok(LivePublisher {
            snaps: LiveSnapshots::new(max_calls),
            last: None,
            tx: Some(tx),
            writer: Some(writer),
            dropped: 0,
        })
    }

    /// Calls that just closed (at capture time `now_ns`): shown as ended
    /// for a while.
    pub fn note_ended(&mut self, ended: &[Call], now_ns: u64) {
        self.snaps.note_ended(ended, now_ns);
    }

    /// Builds and hands over a snapshot when [`SNAPSHOT_EVERY`] has passed.
    pub fn tick(&mut self, table: &CallTable) {
        if self.due() {
            let snap = self.snaps.snapshot(table.open(), table.now_ns());
            self.send(snap, true);
        }
    }

    /// True (once per [`SNAPSHOT_EVERY`]) when a snapshot is to be made.
    pub fn due(&mut self) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < SNAPSHOT_EVERY) {
            return false;
        }
        self.last = Some(Instant::now());
        true
    }

    /// Hands over a snapshot the media workers built and the engine merged
    /// (`workers.pipeline` > 1): its open calls, with the ended ones and
    /// the numbering kept here.
    pub fn send_merged(&mut self, merged: LiveSnapshot) {
        let mut snap = self.snaps.snapshot(std::iter::empty(), merged.now_ns);
        snap.open_calls = merged.open_calls;
        snap.truncated = merged.truncated;
        snap.build_us = merged.build_us;
        snap.calls = merged.calls;
        self.send(snap, true);
    }

    fn send(&mut self, snap: LiveSnapshot, running: bool) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((snap, running)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    /// The last snapshot (the run is stopping: no call open, the ended ones
    /// listed), written before the writer thread is joined.
    pub fn finish<'a>(mut self, open: impl Iterator<Item = &'a Call>, now_ns: u64) {
        if let Some(tx) = self.tx.take() {
            let snap = self.snaps.snapshot(open, now_ns);
            // Blocking send: the last one must not be dropped.
            let _ = tx.send((snap, false));
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_loop(data: &std::path::Path, rx: &Receiver<(LiveSnapshot, bool)>) {
    let mut failing = false;
    while let Ok((snap, running)) = rx.recv() {
        match crate::status::write_live_calls(data, &snap, running) {
            Ok(()) => failing = false,
            // Logged when failures start, not once a second.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(dir = %data.display(), error = %e, "writing live/calls.json");
            }
            Err(_) => {}
        }
    }
}
