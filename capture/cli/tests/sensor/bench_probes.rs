//! Measurements for `cargo xtask bench` that need the library itself rather
//! than the `voxtap` binary (ignored: run in release by xtask):
//!
//! * memory per active call: N concurrent calls (INVITE + 200 OK with SDP,
//!   RTP both ways, no BYE) built through the pipeline's call table, RSS
//!   before and after, and again after one more second of audio per call
//!   (a call keeps a 16-byte reference per packet, so its memory grows with
//!   its age);
//! * rolling PCAP write throughput: the store's writer writing G.711-sized
//!   frames to the disk `VOXTAP_BENCH_DIR` is on, including an fdatasync of
//!   every file at the end (compared with `dd … conv=fdatasync` by xtask).
//!
//! Each prints one `BENCH {json}` line.

use std::path::PathBuf;
use std::time::Instant;

use voxtap_engine::calls::PacketRef;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};
use voxtap_engine::synth::held::{self, Msg};
use voxtap_proto::pcapio::LinkType;
use voxtap_sensor::store::{RollPolicy, RollingWriter};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size of this process, from /proc.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// User + system CPU time of this process.
fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data, filled by getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
#[ignore = "benchmark: cargo xtask bench runs it in release"]
fn bench_memory_per_call() {
    let calls = env_u64("VOXTAP_BENCH_CALLS", 100_000) as u32;
    let mut cfg = PipelineConfig::default();
    // No call may time out or be refused during the measurement.
    cfg.calls.idle_timeout_ns = 3600 * 1_000_000_000;
    cfg.calls.max_calls = calls as usize + 1;
    let mut p = Pipeline::new(cfg);
    let mut frame = Vec::with_capacity(2048);
    let mut ts = 1_767_225_600 * 1_000_000_000u64;
    let mut n = 0u64;
    let mut feed = |p: &mut Pipeline, f: &[u8], ts: u64| {
        p.process(LinkType::Ethernet, ts, PacketRef::new(0, n), f);
        n += 1;
    };
    let rtp_round = |p: &mut Pipeline,
                     frame: &mut Vec<u8>,
                     feed: &mut dyn FnMut(&mut Pipeline, &[u8], u64),
                     ts: &mut u64,
                     seq: u16| {
        for i in 0..calls {
            held::rtp_frame(frame, i, i, seq, true);
            feed(p, frame, *ts);
            held::rtp_frame(frame, i, i, seq, false);
            feed(p, frame, *ts);
            *ts += 1_000;
        }
    };
    // Warm the allocator and the tables' first growth out of the figure.
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    for i in 0..calls {
        held::sip_frame(&mut frame, Msg::Invite, i, i);
        feed(&mut p, &frame, ts);
        held::sip_frame(&mut frame, Msg::Answer, i, i);
        feed(&mut p, &frame, ts + 1_000);
        ts += 2_000;
    }
    for seq in 0..10u16 {
        rtp_round(&mut p, &mut frame, &mut feed, &mut ts, seq);
    }
    let open = p.open_calls();
    let rss1 = rss_bytes();
    // One more second of audio per call (50 packets each way).
    for seq in 10..60u16 {
        rtp_round(&mut p, &mut frame, &mut feed, &mut ts, seq);
    }
    let rss2 = rss_bytes();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(open, calls as usize, "every call open");
    assert_eq!(p.open_calls(), calls as usize);
    let per_call = (rss1.saturating_sub(rss0)) as f64 / f64::from(calls);
    let per_call_second = (rss2.saturating_sub(rss1)) as f64 / f64::from(calls);
    println!(
        "BENCH {{\"probe\": \"memory_per_call\", \"calls\": {calls}, \"packets\": {n}, \"rss_before\": {rss0}, \"rss_calls\": {rss1}, \"rss_after_1s_audio\": {rss2}, \"bytes_per_call\": {per_call:.0}, \"bytes_per_call_per_second_of_audio\": {per_call_second:.0}, \"seconds\": {secs:.2}}}"
    );
}

#[test]
#[ignore = "benchmark: cargo xtask bench runs it in release"]
fn bench_store_write() {
    let mib = env_u64("VOXTAP_BENCH_STORE_MIB", 1024);
    let dir =
        PathBuf::from(std::env::var("VOXTAP_BENCH_DIR").unwrap_or_else(|_| "target/bench".into()))
            .join("store-write");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // The live defaults: 512 MiB files, 4 MiB buffer.
    let policy = RollPolicy {
        max_bytes: 512 << 20,
        max_ns: u64::MAX,
        buffer_bytes: 4 << 20,
    };
    let mut w = RollingWriter::new(&dir, policy, 1, tx).unwrap();
    // A G.711 20 ms RTP frame: 14 + 20 + 8 + 12 + 160 = 214 bytes.
    let mut frame = Vec::new();
    held::rtp_frame(&mut frame, 1, 1, 1, true);
    assert_eq!(frame.len(), 214);
    let frames = (mib << 20) / (16 + 214);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut ts = 1_767_225_600 * 1_000_000_000u64;
    for _ in 0..frames {
        let r = w.write(ts, 214, &frame).unwrap();
        assert_ne!(r, PacketRef::NOT_STORED, "the bench disk is full");
        ts += 10_000;
    }
    w.close().unwrap();
    let written = t0.elapsed().as_secs_f64();
    // What dd's conv=fdatasync includes: the data on the disk.
    let mut bytes = 0;
    for e in std::fs::read_dir(dir.join("pcap")).unwrap() {
        let f = std::fs::File::open(e.unwrap().path()).unwrap();
        bytes += f.metadata().unwrap().len();
        f.sync_data().unwrap();
    }
    let synced = t0.elapsed().as_secs_f64();
    // On a shared machine wall time includes waiting for a core.
    let cpu = cpu_seconds() - cpu0;
    drop(rx);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "BENCH {{\"probe\": \"store_write\", \"frames\": {frames}, \"bytes\": {bytes}, \"seconds_written\": {written:.3}, \"seconds_synced\": {synced:.3}, \"cpu_seconds\": {cpu:.3}, \"mib_per_s\": {:.1}, \"frames_per_s\": {:.0}}}",
        bytes as f64 / 1048576.0 / synced,
        frames as f64 / synced
    );
}

/// A steady call rate through the pipeline, paced to the wall clock (capture
/// time = wall time), with each ended call handed to the same `CallWriter`
/// as the live sensor (CSV rows, no per-call files; `VOXTAP_SOAK_WRITER=0`
/// leaves it out). RSS sampled every 5 s; flat = the last quarter's mean
/// within 5 % of the second quarter's.
#[test]
#[ignore = "soak: cargo xtask soak runs it in release"]
fn soak() {
    let minutes = env_u64("VOXTAP_SOAK_MINUTES", 1);
    let cps = env_u64("VOXTAP_SOAK_CPS", 20) as f64;
    let call_s = env_u64("VOXTAP_SOAK_CALL_SECONDS", 30);
    let with_writer = env_u64("VOXTAP_SOAK_WRITER", 1) == 1;
    let out =
        PathBuf::from(std::env::var("VOXTAP_BENCH_DIR").unwrap_or_else(|_| "target/bench".into()))
            .join(format!("soak-out-{}", std::process::id()));
    let mut writer = with_writer.then(|| {
        // As the live sensor sets it up (CSV rows streamed), minus the files.
        voxtap_engine::output::CallWriter::new(&out, Vec::new())
            .and_then(voxtap_engine::output::CallWriter::streaming_csv)
            .unwrap()
            .without_call_files()
    });
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut frame = Vec::with_capacity(2048);
    let t0 = Instant::now();
    let ts0 = 1_767_225_600 * 1_000_000_000u64;
    let end = std::time::Duration::from_secs(minutes * 60);
    // (call index, start tick) of the calls in progress.
    let mut active: std::collections::VecDeque<(u32, u64)> = Default::default();
    let mut next_call = 0u32;
    let mut due = 0.0f64;
    let mut tick = 0u64;
    let mut n = 0u64;
    let mut ended = 0u64;
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut next_sample = 0.0;
    let call_ticks = call_s * 50;
    while t0.elapsed() < end {
        let ts = ts0 + tick * 20_000_000;
        let mut send = |p: &mut Pipeline, frame: &[u8]| {
            p.process(LinkType::Ethernet, ts, PacketRef::new(0, n), frame);
            n += 1;
        };
        due += cps / 50.0;
        while due >= 1.0 {
            due -= 1.0;
            let i = next_call;
            next_call = next_call.wrapping_add(1);
            for msg in [Msg::Invite, Msg::Answer] {
                held::sip_frame(&mut frame, msg, i, i % 60_000);
                send(&mut p, &frame);
            }
            active.push_back((i, tick));
        }
        for &(i, start) in &active {
            let seq = (tick - start) as u16;
            for forward in [true, false] {
                held::rtp_frame(&mut frame, i, i % 60_000, seq, forward);
                send(&mut p, &frame);
            }
        }
        while active.front().is_some_and(|&(_, s)| tick - s >= call_ticks) {
            let Some((i, _)) = active.pop_front() else {
                break;
            };
            for msg in [Msg::Bye, Msg::ByeOk] {
                held::sip_frame(&mut frame, msg, i, i % 60_000);
                send(&mut p, &frame);
            }
        }
        for call in p.drain_ended() {
            ended += 1;
            if let Some(w) = writer.as_mut() {
                w.write_call(&call).unwrap();
            }
        }
        let el = t0.elapsed().as_secs_f64();
        if el >= next_sample {
            next_sample += 5.0;
            let rss = rss_bytes();
            println!(
                "SOAK t={el:.0}s rss={:.1}MiB open_calls={} ended={ended} packets={n}",
                rss as f64 / 1048576.0,
                p.open_calls()
            );
            samples.push((el, rss, p.open_calls()));
        }
        tick += 1;
        // Capture time follows the wall clock.
        let target = std::time::Duration::from_millis(tick * 20);
        if let Some(wait) = target.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let q = samples.len() / 4;
    let mean =
        |s: &[(f64, u64, usize)]| s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len().max(1) as f64;
    let second = mean(&samples[q..2 * q]);
    let last = mean(&samples[samples.len() - q..]);
    let change = last / second.max(1.0) - 1.0;
    let flat = change.abs() < 0.05;
    println!(
        "BENCH {{\"probe\": \"soak\", \"minutes\": {minutes}, \"cps\": {cps}, \"call_seconds\": {call_s}, \"writer\": {with_writer}, \"calls_ended\": {ended}, \"packets\": {n}, \"samples\": {}, \"rss_second_quarter_mib\": {:.2}, \"rss_last_quarter_mib\": {:.2}, \"change_pct\": {:.2}, \"flat\": {flat}}}",
        samples.len(),
        second / 1048576.0,
        last / 1048576.0,
        change * 100.0
    );
    if let Some(w) = writer {
        w.finish().unwrap();
    }
    let _ = std::fs::remove_dir_all(&out);
}
