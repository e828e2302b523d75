//! The one stop flag of a long-running subcommand: set by SIGINT/SIGTERM,
//! or after a duration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

/// A flag that SIGINT or SIGTERM sets, and, with `after`, a timer.
pub fn on_signals(after: Option<Duration>) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .with_context(|| format!("installing handler for signal {sig}"))?;
    }
    if let Some(d) = after {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        });
    }
    Ok(stop)
}
