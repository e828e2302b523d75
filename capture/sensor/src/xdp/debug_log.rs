//! The XDP program's debug records (aya-log): which object is loaded, at
//! which level, and the reader of its `AYA_LOGS` ring.
//!
//! Debugging only: each record becomes a `String` (aya-log formats through
//! the `log` crate), collected under a mutex that only the reading thread
//! and aya-log's formatting on that same thread take.

use std::{
    os::fd::AsFd,
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::Ebpf;
use aya_log::EbpfLogger;

use super::{XdpError, wait_readable};

/// Which XDP object to load and what it logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpDebug {
    /// The object without logging (what `voxtap run` loads by default).
    #[default]
    Off,
    /// The logging object with its level off: every record compiled in,
    /// none written. Only to measure what compiling them in costs.
    Silent,
    /// The logging object at debug level: one record per frame with its
    /// innermost addresses, ports and tunnel kinds, one with its verdict.
    On,
}

impl XdpDebug {
    /// `AYA_LOG_LEVEL` for the logging object; `None`: the plain object.
    pub(super) fn log_level(self) -> Option<u8> {
        match self {
            XdpDebug::Off => None,
            XdpDebug::Silent => Some(0),
            XdpDebug::On => Some(aya_log::Level::Debug as u8),
        }
    }
}

impl From<aya_log::Error> for XdpError {
    fn from(e: aya_log::Error) -> Self {
        XdpError::DebugLog(Box::new(e))
    }
}

/// Formatted records since the last [`XdpDebugLog::flush`].
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl log::Log for Lines {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Reads the program's debug records. Until it is dropped the kernel keeps
/// writing them (128 KiB ring; records that do not fit are lost).
pub struct XdpDebugLog {
    logger: EbpfLogger<Lines>,
    lines: Lines,
}

impl XdpDebugLog {
    pub(super) fn init(ebpf: &mut Ebpf) -> Result<Self, XdpError> {
        let lines = Lines::default();
        let logger = EbpfLogger::init_with_logger(ebpf, lines.clone())?;
        Ok(XdpDebugLog { logger, lines })
    }

    /// Waits until records are available or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        wait_readable(self.logger.as_fd(), timeout)
    }

    /// Hands every available record's text to `f`, oldest first; returns
    /// how many.
    pub fn flush(&mut self, mut f: impl FnMut(&str)) -> usize {
        self.logger.flush();
        let taken = match self.lines.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return 0,
        };
        taken.iter().for_each(|l| f(l));
        taken.len()
    }
}
