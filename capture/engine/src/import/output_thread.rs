//! Import's output thread: everything an ended call turns into (its rows of
//! calls.csv, streams.csv, legs.csv, fax.csv, its folder when written on one
//! writer, its call index rows), floods.csv and transactions.csv, written
//! off the thread that reads the capture.
//!
//! The reading thread drains what ended every few thousand packets and
//! hands it over on a bounded channel ([`QUEUED`] hand-offs at most, so a
//! slow disk stops the reader rather than filling memory). One thread takes
//! the hand-offs in the order they were made and writes exactly what the
//! reading thread used to write, in the same order: the files and the index
//! are byte-identical to writing them on the reading thread. Call folders
//! still go to the writer pool (`--workers N`) from here.
//!
//! The call index gets one transaction per written batch; while the reader
//! is ahead (hand-offs queued), queued hand-offs join the batch, so the
//! slower the output, the fewer and larger its transactions.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};

use super::{ImportError, ImportReport, record_signalling, write_calls_indexed};
use crate::calls::{Call, FloodSummary};
use crate::index::Index;
use crate::output::CallWriter;
use crate::signalling::{SignallingSnapshot, Transaction};

/// Hand-offs waiting for the output thread before the reader waits (a
/// hand-off is what ended in `DRAIN_EVERY` packets).
const QUEUED: usize = 16;

/// Calls written (and indexed in one transaction) together at most when
/// call folders are not written (with folders, `BATCH_PACKETS` decides).
const CSV_BATCH_CALLS: usize = 8192;

/// What ended since the last hand-off.
#[derive(Default)]
pub(super) struct Ended {
    pub calls: Vec<Call>,
    pub floods: Vec<FloodSummary>,
    pub transactions: Vec<Transaction>,
}

impl Ended {
    fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.floods.is_empty() && self.transactions.is_empty()
    }
}

enum Msg {
    Ended(Ended),
    /// End of input: the registrations and pings as they are at the end.
    Finish(Box<SignallingSnapshot>),
}

/// What the output thread hands back: its counts in an [`ImportReport`]
/// (calls, streams, registrations...) and its CPU time.
pub(super) struct Output {
    pub report: ImportReport,
    pub cpu_ns: u64,
}

/// The reading thread's handle on the output thread.
pub(super) struct OutputThread {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<Result<Output, ImportError>>>,
}

impl OutputThread {
    pub fn start(writer: CallWriter, index: Index) -> Result<Self, ImportError> {
        let (tx, rx) = bounded(QUEUED);
        let thread = std::thread::Builder::new()
            .name("voxtap-output".into())
            .spawn(move || {
                let cpu = crate::parallel::thread_cpu_ns();
                let report = Writing::new(writer, index).run(&rx)?;
                Ok(Output {
                    report,
                    cpu_ns: crate::parallel::thread_cpu_ns().saturating_sub(cpu),
                })
            })
            .map_err(|source| crate::output::OutputError::Io {
                path: "(output thread)".into(),
                source,
            })?;
        Ok(OutputThread {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands over what ended (waits while [`QUEUED`] hand-offs wait). An
    /// output error stops the thread: it is returned here.
    pub fn send(&mut self, ended: Ended) -> Result<(), ImportError> {
        if ended.is_empty() {
            return Ok(());
        }
        self.send_msg(Msg::Ended(ended))
    }

    /// End of input: writes the last rows and the CSV files, and returns the
    /// thread's counts once everything is written.
    pub fn finish(mut self, signalling: SignallingSnapshot) -> Result<Output, ImportError> {
        self.send_msg(Msg::Finish(Box::new(signalling)))?;
        drop(self.tx.take());
        self.join()
    }

    fn send_msg(&mut self, msg: Msg) -> Result<(), ImportError> {
        let sent = self.tx.as_ref().map(|tx| tx.send(msg));
        if let Some(Ok(())) = sent {
            return Ok(());
        }
        // The thread stopped: on an error, which it returns.
        drop(self.tx.take());
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(ImportError::Engine(
                "the output thread stopped early".into(),
            )),
        }
    }

    fn join(&mut self) -> Result<Output, ImportError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ImportError::Engine("the output thread panicked".into())),
            None => Err(ImportError::Engine("the output thread is gone".into())),
        }
    }
}

impl Drop for OutputThread {
    /// An import that stops early still waits for its output thread: nothing
    /// writes into the output after the import returned.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The output thread's state: the writer, the index, calls waiting to be
/// written together.
struct Writing {
    writer: CallWriter,
    index: Index,
    report: ImportReport,
    /// Ended calls not written yet, and their packets: written together
    /// (their packets read back in one pass, see `CallWriter::write_calls`).
    /// Shared: a writer thread may write a call's folder.
    pending: Vec<Arc<Call>>,
    pending_packets: u64,
}

impl Writing {
    fn new(writer: CallWriter, index: Index) -> Self {
        Writing {
            writer,
            index,
            report: ImportReport::default(),
            pending: Vec::new(),
            pending_packets: 0,
        }
    }

    fn run(mut self, rx: &Receiver<Msg>) -> Result<ImportReport, ImportError> {
        let mut next = rx.recv().ok();
        while let Some(msg) = next {
            match msg {
                Msg::Ended(e) => self.take(e)?,
                Msg::Finish(sig) => return self.finish(&sig),
            }
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                // Caught up: write what waits, if it is worth writing now.
                Err(TryRecvError::Empty) => {
                    self.write_pending(false, true)?;
                    rx.recv().ok()
                }
                Err(TryRecvError::Disconnected) => None,
            };
        }
        // The reader went away without finishing (it failed): its error is
        // the import's.
        Ok(self.report)
    }

    fn take(&mut self, e: Ended) -> Result<(), ImportError> {
        self.writer.write_floods(&e.floods)?;
        self.writer.write_transactions(&e.transactions)?;
        self.report.transactions += e.transactions.len() as u64;
        for call in e.calls {
            self.pending_packets += call.packet_count();
            self.pending.push(Arc::new(call));
        }
        self.write_pending(false, false)
    }

    /// Writes the waiting calls when enough packets wait (folders: read back
    /// in one pass), or, CSV only, when enough calls wait or the reader is
    /// not ahead (`idle`); at the `last` write, always.
    fn write_pending(&mut self, last: bool, idle: bool) -> Result<(), ImportError> {
        let due = if self.writer.writes_call_files() {
            self.pending_packets >= crate::output::BATCH_PACKETS
        } else {
            idle || self.pending.len() >= CSV_BATCH_CALLS
        };
        if !(last || due) || self.pending.is_empty() {
            return Ok(());
        }
        let calls = std::mem::take(&mut self.pending);
        self.pending_packets = 0;
        write_calls_indexed(
            &calls,
            &mut self.writer,
            Some(&mut self.index),
            &mut self.report,
        )
    }

    fn finish(mut self, sig: &SignallingSnapshot) -> Result<ImportReport, ImportError> {
        self.write_pending(true, true)?;
        record_signalling(
            sig,
            &mut self.writer,
            Some(&mut self.index),
            &mut self.report,
        )?;
        self.writer.finish()?;
        Ok(self.report)
    }
}
