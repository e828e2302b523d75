//! Memory of long calls: `VOXTAP_BENCH_LONG_CALLS` concurrent calls
//! (default 5,000; INVITE + 200 OK with SDP, then G.711 RTP both ways every
//! 20 ms) held open through `VOXTAP_BENCH_MINUTES` minutes of capture time
//! (default 10, at least 1), built through the pipeline's call table.
//! `VOXTAP_BENCH_RTP_MS` spaces the RTP rounds (default 20 ms; 1000 sends one
//! packet each way per second, for runs of 50,000 calls × 10 minutes that a
//! 2-core machine cannot feed at the full rate: a call's memory depends on
//! what it has seen and on the spill, not on the rate). Prints
//! RSS per call after each minute (and, with glibc, the heap in use per
//! call, mallinfo2, which RSS exceeds by what the allocator keeps free): with the spill (the default) the last
//! minute should equal the first; `VOXTAP_BENCH_SPILL=off` keeps every
//! packet reference in memory (the engine before the spill).
//! `VOXTAP_BENCH_GAP=1` loses one packet of every stream (sequence number 1
//! is never sent): the duplicate detector keeps that run missing inline
//! (a stream takes its 128-byte bitmap only with more than three runs
//! missing at once), so a call should take no more than without the gap.
//! Ignored by default; run it optimised:
//! `cargo test -p voxtap-engine --release --test memory_long_calls -- --ignored --nocapture`

use std::time::Instant;

use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_engine::synth::held::Feed;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process (VmRSS), bytes.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Bytes the allocator has handed out and not had back (glibc's
/// `mallinfo2`: arena and mmapped chunks in use), so that RSS can be told
/// apart from memory the allocator keeps free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_bytes() -> u64 {
    0
}

/// Milliseconds one `malloc_trim(0)` takes now: what a sweep pays when the
/// table gives memory back (`calls/trim.rs`), with every call still open.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_ms() -> f64 {
    let t = Instant::now();
    // SAFETY: malloc_trim only releases the allocator's free pages.
    unsafe {
        libc::malloc_trim(0);
    }
    t.elapsed().as_secs_f64() * 1e3
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_ms() -> f64 {
    0.0
}

#[test]
#[ignore = "benchmark: run in release"]
fn memory_of_long_calls() {
    let calls = env_u64("VOXTAP_BENCH_LONG_CALLS", 5_000) as u32;
    let minutes = env_u64("VOXTAP_BENCH_MINUTES", 10).max(1);
    let mut cfg = PipelineConfig::default();
    // No call may time out or be refused during the measurement.
    cfg.calls.idle_timeout_ns = 3600 * 1_000_000_000;
    cfg.calls.max_calls = calls as usize + 1;
    let step_ms = env_u64("VOXTAP_BENCH_RTP_MS", 20).clamp(1, 60_000);
    let rounds_per_minute = 60_000 / step_ms;
    let spill = std::env::var("VOXTAP_BENCH_SPILL").as_deref() != Ok("off");
    let gap = u64::from(std::env::var("VOXTAP_BENCH_GAP").as_deref() == Ok("1"));
    if !spill {
        cfg.calls.spill_dir = None;
    }
    let mut f = Feed::new(Pipeline::new(cfg));
    let start = 1_767_225_600 * 1_000_000_000u64;
    let rss0 = rss_bytes();
    let heap0 = heap_bytes();
    for i in 0..calls {
        f.answer(start, i);
    }
    let t0 = Instant::now();
    let mut per_minute = Vec::new();
    let mut heap_per_minute = Vec::new();
    for round in 0..minutes * rounds_per_minute {
        // With the gap, sequence numbers 0, 2, 3...: number 1 lost.
        let seq = if round == 0 { 0 } else { round + gap };
        f.rtp_round(
            start + 1_000 + round * step_ms * 1_000_000,
            seq as u16,
            calls,
        );
        if (round + 1) % rounds_per_minute == 0 {
            per_minute.push(rss_bytes().saturating_sub(rss0) / u64::from(calls));
            heap_per_minute.push(heap_bytes().saturating_sub(heap0) / u64::from(calls));
            eprintln!(
                "minute {}: {} bytes of RSS per call, {} of heap in use ({:.0} s)",
                per_minute.len(),
                per_minute[per_minute.len() - 1],
                heap_per_minute[heap_per_minute.len() - 1],
                t0.elapsed().as_secs_f64()
            );
        }
    }
    assert_eq!(f.pipeline.open_calls(), calls as usize, "every call open");
    let s = f.pipeline.calls_mut().spill_stats().unwrap_or_default();
    let trims: Vec<String> = (0..3).map(|_| format!("{:.2}", trim_ms())).collect();
    println!(
        "BENCH {{\"probe\": \"memory_long_calls\", \"spill\": {spill}, \"gap\": {gap}, \"calls\": {calls}, \"minutes\": {minutes}, \"rtp_every_ms\": {step_ms}, \"packets\": {}, \"rss_bytes_per_call_each_minute\": {per_minute:?}, \"heap_bytes_per_call_each_minute\": {heap_per_minute:?}, \"reference_bytes_held\": {}, \"spill_chunks\": {}, \"spill_segments\": {}, \"malloc_trim_ms\": [{}], \"seconds\": {:.1}}}",
        f.frames,
        f.pipeline.calls_mut().packet_bytes_held(),
        s.chunks,
        s.segments,
        trims.join(", "),
        t0.elapsed().as_secs_f64()
    );
}
