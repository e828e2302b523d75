//! Wall-clock time for kernel timestamps, without a syscall per frame.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(super) fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(super) fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Kernel monotonic time to wall-clock ns, without a syscall per frame: the
/// offset is re-measured once a second.
pub(super) struct Clock {
    offset: i128,
    measured: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            offset: i128::from(wall_ns()) - i128::from(mono_ns()),
            measured: Instant::now(),
        }
    }

    pub(super) fn refresh(&mut self) {
        if self.measured.elapsed() >= Duration::from_secs(1) {
            *self = Clock::new();
        }
    }

    pub(super) fn wall(&self, ktime_ns: u64) -> u64 {
        (i128::from(ktime_ns) + self.offset).max(0) as u64
    }
}
