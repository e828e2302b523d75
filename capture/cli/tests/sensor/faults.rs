//! Fault tests: damaged capture files, a full disk under the live store and
//! under an import, and `kill -9` in the middle of a live capture. The live
//! ones run as root on the namespace lab of `lab.rs` (like `live_sipp.rs`);
//! disks are small tmpfs mounts made here and unmounted on drop. Every
//! result is checked against tshark or against SQLite itself.
#![cfg(target_os = "linux")]

use crate::lab;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use lab::*;
use voxtap_engine::calls::PacketRef;
use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_proto::pcapio::PcapError;
use voxtap_sensor::store::{FileEvent, RollPolicy, RollingWriter};
use voxtap_testkit::corpus;

/// A tmpfs of `size` mounted on `dir`, unmounted on drop (also on failure).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mounting a {size} tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// tshark's frame count, its exit status and its error output, without
/// failing on a damaged file.
fn tshark_read(file: &Path) -> (usize, bool, String) {
    let out = Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .expect("tshark");
    let err = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("Running as user"))
        .collect::<Vec<_>>()
        .join("\n");
    (
        String::from_utf8_lossy(&out.stdout).lines().count(),
        out.status.success() && err.is_empty(),
        err,
    )
}

// ---------------------------------------------------------------- damage

/// Offsets of the records of a little-endian classic pcap.
fn pcap_records(b: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let caplen = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        v.push(at);
        at += 16 + caplen;
    }
    assert_eq!(at, b.len(), "the base capture is whole");
    v
}

/// (offset, type) of every block of a little-endian pcapng.
fn ng_blocks(b: &[u8]) -> Vec<(usize, u32)> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        let t = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        v.push((at, t));
        at += len;
    }
    assert_eq!(at, b.len(), "the base capture is whole");
    v
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// Packets before the damage (what must be kept).
    keep: usize,
    /// Some(substring of the error) when the damage must be reported; for
    /// an unreadable header, the import fails with it.
    damage: Option<&'static str>,
    /// Whether tshark stops at the same record (so its count is checkable).
    tshark_stops: bool,
}

fn damage_cases() -> Vec<Case> {
    let pcap = std::fs::read(corpus("generated/sipp-netns-udp-2calls.pcap")).unwrap();
    let recs = pcap_records(&pcap);
    let n = recs.len();
    let k = n / 2;
    let rk = recs[k];
    let mut c = vec![
        Case {
            name: "empty file",
            bytes: Vec::new(),
            keep: 0,
            damage: Some("truncated"),
            tshark_stops: true,
        },
        Case {
            name: "truncated global header",
            bytes: pcap[..10].to_vec(),
            keep: 0,
            damage: Some("truncated"),
            tshark_stops: true,
        },
        Case {
            name: "wrong magic",
            bytes: {
                let mut b = pcap.clone();
                put32(&mut b, 0, 0xdead_beef);
                b
            },
            keep: 0,
            damage: Some("not a pcap or pcapng file"),
            tshark_stops: true,
        },
        Case {
            name: "truncated record header",
            bytes: pcap[..rk + 7].to_vec(),
            keep: k,
            damage: Some("truncated"),
            tshark_stops: true,
        },
        Case {
            name: "truncated record data",
            bytes: pcap[..rk + 16 + 5].to_vec(),
            keep: k,
            damage: Some("truncated"),
            tshark_stops: true,
        },
        Case {
            name: "absurd caplen 0xFFFFFFF0",
            bytes: {
                let mut b = pcap.clone();
                put32(&mut b, rk + 8, 0xFFFF_FFF0);
                put32(&mut b, rk + 12, 0xFFFF_FFF0);
                b
            },
            keep: k,
            damage: Some("captured length"),
            tshark_stops: true,
        },
        Case {
            name: "caplen > snaplen (300000)",
            bytes: {
                let mut b = pcap.clone();
                put32(&mut b, rk + 8, 300_000);
                put32(&mut b, rk + 12, 300_000);
                b
            },
            keep: k,
            damage: Some("captured length"),
            tshark_stops: true,
        },
        Case {
            name: "caplen > origlen",
            bytes: {
                let mut b = pcap.clone();
                let cap = u32::from_le_bytes(b[rk + 8..rk + 12].try_into().unwrap());
                put32(&mut b, rk + 12, cap - 1);
                b
            },
            // Read on, as Wireshark does (Linux SLL captures have such
            // records; Tunnels and transports): every packet, no damage.
            keep: n,
            damage: None,
            tshark_stops: true,
        },
        Case {
            name: "zero-length records",
            bytes: {
                let mut b = pcap[..rk].to_vec();
                for _ in 0..3 {
                    let mut h = [0u8; 16];
                    h[..8].copy_from_slice(&pcap[rk..rk + 8]);
                    b.extend_from_slice(&h);
                }
                b.extend_from_slice(&pcap[rk..]);
                b
            },
            keep: n + 3,
            damage: None,
            tshark_stops: true,
        },
        Case {
            name: "garbage after the last record",
            bytes: {
                let mut b = pcap.clone();
                b.extend(
                    b"GARBAGE! this is not a pcap record at all "
                        .iter()
                        .cycle()
                        .take(100),
                );
                b
            },
            keep: n,
            damage: Some("bad record"),
            tshark_stops: true,
        },
    ];

    let ng = std::fs::read(corpus("ndpi/sip_hello.pcapng")).unwrap();
    let blocks = ng_blocks(&ng);
    let epbs: Vec<usize> = blocks
        .iter()
        .filter(|(_, t)| *t == 6)
        .map(|(o, _)| *o)
        .collect();
    let m = epbs.len();
    let j = m / 2;
    let ej = epbs[j];
    c.extend([
        Case {
            name: "pcapng: absurd block length",
            bytes: {
                let mut b = ng.clone();
                put32(&mut b, ej + 4, 0xFFFF_FFF0);
                b
            },
            keep: j,
            damage: Some("block"),
            tshark_stops: true,
        },
        Case {
            name: "pcapng: block length below the minimum",
            bytes: {
                let mut b = ng.clone();
                put32(&mut b, ej + 4, 8);
                b
            },
            keep: j,
            damage: Some("block"),
            tshark_stops: true,
        },
        Case {
            name: "pcapng: unknown block types",
            bytes: {
                let mut b = ng[..ej].to_vec();
                // Two unknown blocks (one with a body), then the rest.
                for (t, body) in [(0x0BAD_0001u32, &b""[..]), (0x4000_0F00, &b"vendorXX"[..])] {
                    let len = 12 + body.len() as u32;
                    b.extend_from_slice(&t.to_le_bytes());
                    b.extend_from_slice(&len.to_le_bytes());
                    b.extend_from_slice(body);
                    b.extend_from_slice(&len.to_le_bytes());
                }
                b.extend_from_slice(&ng[ej..]);
                b
            },
            keep: m,
            damage: None,
            tshark_stops: true,
        },
        Case {
            name: "pcapng: truncated block",
            bytes: ng[..ej + 30].to_vec(),
            keep: j,
            damage: Some("truncated"),
            tshark_stops: true,
        },
        Case {
            name: "pcapng: trailing length differs",
            bytes: {
                let mut b = ng.clone();
                let len = u32::from_le_bytes(b[ej + 4..ej + 8].try_into().unwrap()) as usize;
                put32(&mut b, ej + len - 4, len as u32 + 4);
                b
            },
            keep: j,
            damage: Some("block"),
            tshark_stops: true,
        },
        Case {
            name: "pcapng: garbage after the last block",
            bytes: {
                let mut b = ng.clone();
                b.extend(b"GARBAGE! ".iter().cycle().take(64));
                b
            },
            keep: m,
            damage: Some("block"),
            tshark_stops: true,
        },
    ]);
    c
}

/// Every kind of damage: the import keeps exactly the packets before it,
/// reports the damage (or fails clearly when not even the header is
/// readable), never panics; where tshark also stops there, it has read the
/// same number of packets.
#[test]
fn import_damage_matrix_keeps_packets_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in damage_cases().into_iter().enumerate() {
        let file = dir.path().join(format!("case{i}.pcap"));
        std::fs::write(&file, &case.bytes).unwrap();
        // Our reader alone.
        let (ours, err) = match voxtap_engine::pcapfile::open(&file) {
            Err(e) => (0, Some(e.to_string())),
            Ok(mut r) => {
                let mut n = 0;
                let err = loop {
                    match r.next_packet() {
                        Ok(Some(_)) => n += 1,
                        Ok(None) => break None,
                        Err(e) => break Some(e.to_string()),
                    }
                };
                (n, err)
            }
        };
        // The whole import.
        let opts = ImportOptions {
            files: vec![file.clone()],
            out: dir.path().join(format!("out{i}")),
            pipeline: PipelineConfig::default(),
            call_files: true,
            media: None,
        };
        let import = run_import(&opts);
        let (tshark_n, tshark_ok, tshark_err) = tshark_read(&file);
        let (imported, import_damage) = match &import {
            Ok(r) => (r.files[0].packets as usize, r.files[0].damage.clone()),
            Err(e) => (0, Some(format!("import failed: {e}"))),
        };
        eprintln!(
            "{:<42} keep {:>4} | reader {:>4} {:?} | import {:>4} {:?} | tshark {:>4}{}",
            case.name,
            case.keep,
            ours,
            err,
            imported,
            import_damage,
            tshark_n,
            if tshark_ok {
                String::new()
            } else {
                format!(" ({})", tshark_err.lines().last().unwrap_or(""))
            }
        );
        let mut bad = |what: String| failures.push(format!("{}: {what}", case.name));
        if ours != case.keep || imported != case.keep {
            bad(format!(
                "kept {ours} (reader) / {imported} (import), want {}",
                case.keep
            ));
        }
        match (case.damage, &import_damage) {
            (None, None) => {}
            (Some(want), Some(got)) if got.to_lowercase().contains(want) => {}
            (want, got) => bad(format!("damage {got:?}, want {want:?}")),
        }
        if err.is_some() != case.damage.is_some() {
            bad(format!("reader error {err:?}"));
        }
        if case.tshark_stops && tshark_n != case.keep {
            bad(format!("tshark read {tshark_n}, we kept {}", case.keep));
        }
        // A header too broken to read fails the import with the file's name.
        if case.keep == 0
            && let Err(e) = &import
            && !e.to_string().contains(file.to_str().unwrap())
        {
            bad(format!("error does not name the file: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ------------------------------------------------------------- disk full

/// The rolling writer on a 1 MiB tmpfs with no reserve: the kernel itself
/// refuses the write (ENOSPC) in the middle of a buffer. The file is cut
/// back to its last whole record (tshark reads it without an error, every
/// reference below its end reads back its own frame), the writer keeps
/// refusing cheaply, and once space is freed it stores again in a new file.
#[test]
fn rolling_writer_on_a_full_disk_leaves_a_valid_pcap_and_resumes() {
    require_root();
    let dir = tempdir("enospc");
    let store = dir.join("store");
    let _fs = Tmpfs::mount(&store, "1m");
    let (tx, rx) = std::sync::mpsc::channel();
    let policy = RollPolicy {
        max_bytes: 64 << 20,
        max_ns: u64::MAX,
        buffer_bytes: 64 << 10,
    };
    let mut w = RollingWriter::new(&store, policy, 1, tx)
        .unwrap()
        .with_reserve(0);
    let frame = |i: u32| {
        let mut f = vec![0u8; 200];
        f[..4].copy_from_slice(&i.to_le_bytes());
        f
    };
    let mut refs = Vec::new();
    let mut i = 0u32;
    while w.storing() && i < 100_000 {
        refs.push(
            w.write(1_000_000_000 + u64::from(i), 200, &frame(i))
                .unwrap(),
        );
        i += 1;
    }
    assert!(!w.storing(), "1 MiB never filled");
    // Refused frames are counted, not errors.
    for j in 0..100 {
        let r = w.write(2_000_000_000 + j, 200, &frame(i)).unwrap();
        assert_eq!(r, PacketRef::NOT_STORED);
    }
    let events: Vec<FileEvent> = rx.try_iter().collect();
    let Some(FileEvent::Closed {
        id, bytes, packets, ..
    }) = events
        .iter()
        .find(|e| matches!(e, FileEvent::Closed { .. }))
        .cloned()
    else {
        panic!("no Closed event: {events:?}");
    };
    let path = store.join(voxtap_sensor::store::file_rel_path(id));
    let len = std::fs::metadata(&path).unwrap().len();
    let (tn, tok, terr) = tshark_read(&path);
    eprintln!(
        "wrote {i} frames before the disk was full; file {len} bytes, {packets} packets kept; not stored {}; tshark {tn} ({terr})",
        w.not_stored()
    );
    assert_eq!(len, bytes, "file size = Closed event");
    assert!(tok, "tshark reads the cut file without error: {terr}");
    assert_eq!(tn as u64, packets);
    assert!(packets > 1000, "{packets}");
    let stored: Vec<_> = refs
        .iter()
        .enumerate()
        .filter(|(_, r)| **r != PacketRef::NOT_STORED && r.offset() < bytes)
        .collect();
    assert_eq!(stored.len() as u64, packets, "refs below the cut = packets");
    let mut rd = voxtap_engine::pcapfile::open(&path).unwrap();
    for (k, r) in stored {
        let rec = rd.read_at(r.offset()).unwrap();
        assert_eq!(rec.data, &frame(k as u32)[..], "ref {k}");
    }
    // An open reader would keep the file's space after it is deleted below.
    drop(rd);
    // Everything handed out is either on disk or counted as not stored.
    assert_eq!(packets + w.not_stored(), u64::from(i) + 100);

    // Room again (retention deleted the file): storing resumes in a new file
    // after the retry delay.
    std::fs::remove_file(&path).unwrap();
    thread::sleep(Duration::from_millis(1100));
    let r = w.write(3_000_000_000, 200, &frame(7)).unwrap();
    assert_ne!(r, PacketRef::NOT_STORED);
    assert!(w.storing());
    w.close().unwrap();
    let reopened = rx
        .try_iter()
        .find_map(|e| match e {
            FileEvent::Opened { id, .. } => Some(id),
            _ => None,
        })
        .expect("a new file");
    assert!(reopened > id);
    drop(_fs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `voxtap import` into an output directory on a full 64 KiB tmpfs: a
/// non-zero exit, an error naming the file it could not write and the
/// cause, no panic.
#[test]
fn import_into_a_full_output_directory_fails_clearly() {
    require_root();
    let dir = tempdir("importfull");
    let out = dir.join("out");
    let _fs = Tmpfs::mount(&out, "64k");
    let o = Command::new(VOXTAP)
        .args(["import", "--out", out.to_str().unwrap()])
        .arg(corpus("generated/sipp-netns-udp-2calls.pcap"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    eprintln!("exit {:?}; stderr: {err}", o.status.code());
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("No space left on device") || err.contains("disk is full"),
        "{err}"
    );
    assert!(err.contains(out.to_str().unwrap()), "names the path: {err}");
    drop(_fs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads `files` of store.sqlite: (id, path, bytes, packets, deleted).
fn store_files(store: &Path) -> Vec<(u32, String, u64, u64, bool)> {
    let conn = rusqlite::Connection::open(store.join("store.sqlite")).unwrap();
    conn.prepare("SELECT id, path, bytes, packets, deleted FROM files ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
                r.get::<_, i64>(4)? != 0,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn web_index_calls(out: &Path) -> u64 {
    let conn = rusqlite::Connection::open(out.join("index.sqlite")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

/// "... for 12.3 s: 9960 frames ..." -> 9960.
fn summary_frames(stdout: &str) -> u64 {
    summary_value(stdout, " s: ")
}

/// Every file the index knows and every file on disk agree: same set, same
/// sizes, and tshark reads each without an error and counts the index's
/// packets. Returns the packets stored.
fn check_store_consistent(store: &Path) -> u64 {
    let rows = store_files(store);
    let mut on_disk: Vec<String> = std::fs::read_dir(store.join("pcap"))
        .unwrap()
        .map(|e| format!("pcap/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    let live: Vec<String> = rows.iter().filter(|r| !r.4).map(|r| r.1.clone()).collect();
    assert_eq!(live, on_disk, "files in the index vs on disk");
    let mut total = 0;
    for (_, path, bytes, packets, deleted) in &rows {
        if *deleted {
            continue;
        }
        let p = store.join(path);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), *bytes, "{path}: size");
        let (n, ok, err) = tshark_read(&p);
        assert!(ok, "{path}: tshark: {err}");
        assert_eq!(n as u64, *packets, "{path}: packets");
        total += packets;
    }
    total
}

/// The live sensor's store on a 4 MiB tmpfs and 40 SIPp calls (~4.3 MB of
/// frames): when less than the reserve is left, the rolling file is closed
/// and frames are no longer stored, but voxtap keeps running: every call is
/// still followed, written to calls.csv and the web index, and charged with
/// exactly the frames of it that were not stored. Every file left is a valid
/// PCAP matching the index; stored + not stored = tcpdump's count.
#[test]
fn live_store_disk_full_keeps_capturing_calls_and_files_stay_valid() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("diskfull");
    let _fs = Tmpfs::mount(&dir.join("store"), "4m");
    let lab = Lab::up(&format!("vf{}", std::process::id() % 10000), 214);
    let cfg = "[store]\nroll_bytes = 1048576\nwrite_buffer_bytes = 65536\nmin_free_bytes = 0\n";
    let vox = start_voxtap(&lab, &dir, cfg, 120);
    let td = dir.join("tcpdump.pcap");
    let tcpdump = start_tcpdump(&lab, &td);
    sipp_calls(&lab, &dir, 40, 20);
    wait_calls_written(&dir.join("out"), 40);
    vox.signal(libc::SIGTERM);
    let out = vox.wait(Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait(Duration::from_secs(10));
    eprintln!("{stdout}");
    for l in stderr.lines().filter(|l| l.contains("store")) {
        eprintln!("{l}");
    }
    assert!(out.status.success(), "voxtap run: {stderr}");
    assert!(
        stderr.contains("store full or failing") && stderr.contains("bytes free"),
        "the log says why: {stderr}"
    );
    assert_eq!(summary_value(&stdout, "lost_ring_full"), 0);
    let not_stored = summary_value(&stdout, "not stored (store full)");
    let stored = summary_frames(&stdout);
    let theirs = count(&td, None) as u64;
    eprintln!("tcpdump {theirs}; stored {stored}; not stored {not_stored}");
    assert!(not_stored > 1000, "the disk did not fill: {not_stored}");
    assert_eq!(stored + not_stored, theirs, "every frame stored or counted");
    assert_eq!(check_store_consistent(&dir.join("store")), stored);
    assert_eq!(
        integrity(&dir.join("store/store.sqlite")),
        "ok",
        "store.sqlite"
    );

    let calls = read_csv(&dir.join("out/calls.csv"));
    assert_eq!(calls.len(), 40, "every call still followed");
    assert_eq!(web_index_calls(&dir.join("out")), 40, "web index");
    let mut charged = 0;
    let mut checked = [0u32; 2];
    for (i, c) in calls.iter().enumerate() {
        let cid = &c["call_id"];
        assert_eq!(c["state"], "answered", "{cid}");
        let total: u64 = ["sip_packets", "rtp_packets", "rtcp_packets"]
            .iter()
            .map(|k| c[*k].parse::<u64>().unwrap())
            .sum();
        let loss: u64 = c["capture_loss"].parse().unwrap();
        charged += loss;
        // Every 4th call is enough (extract and tshark take a while).
        if i % 4 != 0 {
            continue;
        }
        checked[usize::from(loss > 0)] += 1;
        // What extract finds is exactly what the call did not lose.
        let x = dir.join(format!("x-{cid}.pcap"));
        let o = extract(&dir, cid, &x);
        assert!(
            o.status.success(),
            "{cid}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let (n, ok, err) = tshark_read(&x);
        assert!(ok, "{err}");
        assert_eq!(
            n as u64,
            total - loss,
            "{cid}: extracted = packets - not stored"
        );
    }
    eprintln!(
        "capture_loss charged to calls: {charged}; extracted calls without/with loss: {checked:?}"
    );
    // The disk fills while most (often all) calls are up.
    assert!(checked[1] > 0, "{checked:?}");
    assert!(charged >= not_stored, "{charged} < {not_stored}");
    drop(lab);
    drop(_fs);
    let _ = std::fs::remove_dir_all(&dir);
}

// --------------------------------------------------------------- kill -9

/// `kill -9` in the middle of live capture: every rolling file reads up to
/// its last flush (only the file being written may end in a cut-off record,
/// which is the one error tshark and our reader report); both SQLite files
/// pass integrity_check; calls recorded before the crash are extracted
/// exactly. Restarted on the same store, voxtap cuts the unfinished file to
/// its last whole record and records its real size and packet count, and
/// continues with new file ids.
#[test]
fn live_kill_9_files_readable_and_index_recovers_on_restart() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("kill9");
    let lab = Lab::up(&format!("vk{}", std::process::id() % 10000), 215);
    // Small files and buffer: several files, and the crash lands inside a
    // buffer write often enough to leave a cut record.
    let cfg = "[store]\nroll_bytes = 262144\nwrite_buffer_bytes = 65536\nmin_free_bytes = 0\n";
    let vox = start_voxtap(&lab, &dir, cfg, 120);
    let store = dir.join("store");
    // A first batch that ends (and is indexed) before the crash.
    sipp_calls(&lab, &dir, 4, 4);
    let t0 = Instant::now();
    let indexed = loop {
        let n = rusqlite::Connection::open(store.join("store.sqlite"))
            .and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM call_locations", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap_or(0);
        if n >= 4 || t0.elapsed() > Duration::from_secs(20) {
            break n;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(indexed, 4, "the first calls were indexed before the crash");
    // Kill it while a second batch is in full flow.
    thread::scope(|s| {
        s.spawn(|| sipp_calls(&lab, &dir, 10, 10));
        thread::sleep(Duration::from_secs(3));
        vox.signal(libc::SIGKILL);
    });
    let out = vox.wait(Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGKILL)
    );

    // The files as the crash left them.
    let mut paths: Vec<PathBuf> = std::fs::read_dir(store.join("pcap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 2, "{paths:?}");
    let newest = paths.last().unwrap().clone();
    let mut before = 0u64;
    for p in &paths {
        let mut r = voxtap_engine::pcapfile::open(p).unwrap();
        let mut n = 0u64;
        let err = loop {
            match r.next_packet() {
                Ok(Some(_)) => n += 1,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let (tn, tok, terr) = tshark_read(p);
        eprintln!(
            "{}: reader {n} {err:?}; tshark {tn} {terr}",
            p.file_name().unwrap().to_string_lossy()
        );
        assert_eq!(tn as u64, n, "{}: tshark and our reader", p.display());
        if p != &newest {
            assert!(err.is_none() && tok, "{}: closed file damaged", p.display());
        } else {
            assert!(
                matches!(err, None | Some(PcapError::Truncated { .. })),
                "{err:?}"
            );
            assert!(
                tok || terr.contains("cut short in the middle of a packet"),
                "{terr}"
            );
        }
        before += n;
    }
    assert_eq!(integrity(&store.join("store.sqlite")), "ok");
    assert_eq!(integrity(&dir.join("out/index.sqlite")), "ok");
    let rows_before = store_files(&store);
    let unfinished = rows_before.iter().filter(|r| r.2 == 0).count();
    // The file being written has no size yet (or no row, when the crash came
    // between creating it and recording it).
    assert!(unfinished <= 1, "{rows_before:?}");
    let first_calls: Vec<String> = {
        let conn = rusqlite::Connection::open(store.join("store.sqlite")).unwrap();
        conn.prepare("SELECT call_id FROM call_locations")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let check_calls = |when: &str| {
        for cid in &first_calls {
            let x = dir.join(format!("x-{cid}.pcap"));
            let o = extract(&dir, cid, &x);
            assert!(
                o.status.success(),
                "{when}: {cid}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let (n, ok, err) = tshark_read(&x);
            assert!(ok && n > 400, "{when}: {cid}: {n} {err}");
        }
    };
    check_calls("after the crash");

    // Restart on the same store: recovery, then a short clean run.
    let vox = start_voxtap(&lab, &dir, cfg, 3);
    let out = vox.wait(Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "restart: {stderr}");
    let rec_line = stderr
        .lines()
        .find(|l| l.contains("recovered a rolling file"))
        .unwrap_or_else(|| panic!("no recovery in the log: {stderr}"));
    eprintln!("{rec_line}");
    let stored_after = check_store_consistent(&store);
    // Nothing whole was lost: the recovered files hold every whole record.
    assert_eq!(stored_after, before);
    let rows_after = store_files(&store);
    let max_before = rows_before.iter().map(|r| r.0).max().unwrap();
    assert!(rows_after.iter().all(|r| r.2 > 0), "{rows_after:?}");
    assert!(
        rows_after.iter().filter(|r| r.0 > max_before).count() <= 1,
        "the restart's own file (if any frame arrived) has a new id"
    );
    assert_eq!(integrity(&store.join("store.sqlite")), "ok");
    assert_eq!(integrity(&dir.join("out/index.sqlite")), "ok");
    check_calls("after the restart");
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}
