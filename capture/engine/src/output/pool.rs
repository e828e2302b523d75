//! The per-call output stage on writer threads (`import --workers N`).
//!
//! Ended calls are independent: once the pipeline thread has read a call's
//! frames back and claimed its folder name (both in call order, so names
//! and CSV rows are what one thread gives), the call's folder (call.pcap,
//! sip.txt, the processors' media outputs) is written by whichever writer
//! thread takes it, while the pipeline thread goes on. Each folder depends
//! only on its call and frames, so the files are byte-identical to writing
//! them on one thread.
//!
//! The hand-off is a bounded crossbeam channel (several receivers take from
//! one queue; std's mpsc has one receiver and needs a mutex around it; the
//! README has both measured). The bound is `workers` calls waiting, so at
//! most `2 × workers` calls' frames are held beyond the batch being read.
//!
//! A folder that cannot be written does not stop the others: the writer
//! counts it and keeps the first failure (in call order), which
//! [`WriterPool::finish`] returns once every call is written.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{CallFrame, CallProcessor, OutputError, write_folder_files};
use crate::calls::Call;

/// One call's folder to write.
pub(super) struct Job {
    /// Position in call order, to report the first failure the same way
    /// whatever thread met it.
    pub seq: u64,
    pub call: Arc<Call>,
    pub frames: Vec<CallFrame>,
    pub folder: PathBuf,
}

/// Folders a writer could not write: how many, and the earliest one's error.
#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<(u64, OutputError)>,
}

impl Failures {
    fn note(&mut self, seq: u64, e: OutputError) {
        self.count += 1;
        if self.first.as_ref().is_none_or(|(s, _)| seq < *s) {
            self.first = Some((seq, e));
        }
    }

    fn merge(&mut self, other: Failures) {
        self.count += other.count;
        if let Some((seq, e)) = other.first {
            self.count -= 1;
            self.note(seq, e);
        }
    }
}

pub(super) struct WriterPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<Failures>>,
    next_seq: u64,
}

impl WriterPool {
    /// `workers` threads, each with its own copy of `processors`.
    pub fn start(
        workers: usize,
        processors: &[Box<dyn CallProcessor>],
    ) -> Result<Self, OutputError> {
        let (tx, rx) = bounded::<Job>(workers);
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx = rx.clone();
            let procs: Vec<Box<dyn CallProcessor>> = processors.iter().map(|p| p.fork()).collect();
            let t = std::thread::Builder::new()
                .name(format!("voxtap-writer-{i}"))
                .spawn(move || work(&rx, procs))
                .map_err(|source| OutputError::Io {
                    path: PathBuf::from("(writer thread)"),
                    source,
                })?;
            threads.push(t);
        }
        Ok(WriterPool {
            tx: Some(tx),
            threads,
            next_seq: 0,
        })
    }

    /// Hands a call's folder to a writer (waits while `workers` are queued).
    pub fn send(
        &mut self,
        call: Arc<Call>,
        frames: Vec<CallFrame>,
        folder: PathBuf,
    ) -> Result<(), OutputError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let job = Job {
            seq,
            call,
            frames,
            folder,
        };
        match self.tx.as_ref().map(|tx| tx.send(job)) {
            Some(Ok(())) => Ok(()),
            // Every writer is gone: only a panic ends one early.
            _ => Err(OutputError::Writers {
                failed: 0,
                first: "the writer threads stopped (a panic)".into(),
            }),
        }
    }

    /// Waits until every call handed over is written; the first failure
    /// (in call order) and how many folders failed, if any did.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), OutputError> {
        drop(self.tx.take());
        let mut all = Failures::default();
        let mut panicked = false;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(f) => all.merge(f),
                Err(_) => panicked = true,
            }
        }
        if panicked {
            return Err(OutputError::Writers {
                failed: all.count,
                first: "a writer thread panicked".into(),
            });
        }
        match all.first {
            None => Ok(()),
            Some((_, e)) => Err(OutputError::Writers {
                failed: all.count,
                first: e.to_string(),
            }),
        }
    }
}

impl Drop for WriterPool {
    /// An import that stops early still waits for its writers: no thread
    /// writes into the output after the import returned.
    fn drop(&mut self) {
        let _ = self.join();
    }
}

fn work(rx: &Receiver<Job>, mut processors: Vec<Box<dyn CallProcessor>>) -> Failures {
    let mut failures = Failures::default();
    for job in rx.iter() {
        if let Err(e) = write_folder_files(
            &job.call,
            Some(job.frames.as_slice()),
            &job.folder,
            &mut processors,
        ) {
            failures.note(job.seq, e);
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_the_earliest_whatever_the_order() {
        let e = |n: u64| OutputError::Processor {
            call_id: n.to_string(),
            message: String::new(),
        };
        let mut a = Failures::default();
        a.note(7, e(7));
        a.note(3, e(3));
        let mut b = Failures::default();
        b.note(5, e(5));
        b.note(1, e(1));
        b.note(9, e(9));
        a.merge(b);
        assert_eq!(a.count, 5);
        assert!(
            matches!(a.first, Some((1, OutputError::Processor { ref call_id, .. })) if call_id == "1")
        );
    }
}
