//! Readers as lenient as Wireshark's: records whose captured length is
//! larger than their original length, gzip- and zstd-compressed pcap and
//! pcapng, NetMon 2.x and snoop (written by editcap from a corpus call),
//! each read to the same packet count as capinfos and imported to the
//! calls tshark finds; any other format named, with `editcap -F pcap` as
//! the way through.

use std::path::{Path, PathBuf};
use std::process::Command;

use voxtap_e2e::{corpus, import, read_csv, tshark_call_ids};
use voxtap_proto::pcapio::{LinkType, PcapWriter};

const SOURCE: &str = "generated/sipp-netns-udp-2calls.pcap";

/// capinfos' packet count of `file` (it reads compressed files too).
fn capinfos_count(file: &Path) -> u64 {
    let out = Command::new("capinfos")
        .args(["-c", "-M"])
        .arg(file)
        .output()
        .expect("capinfos must be installed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "capinfos {}: {:?}",
        file.display(),
        out
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Number of packets:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {text}"))
}

/// Records voxtap reads from `file` (panics on a read error).
fn our_count(file: &Path) -> u64 {
    let mut r =
        voxtap_engine::pcapfile::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut n = 0;
    while r.next_packet().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(r.skipped(), 0, "{}: records skipped", file.display());
    n
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

fn editcap(format: &str, src: &Path, dst: &Path) {
    run(Command::new("editcap")
        .args(["-F", format])
        .arg(src)
        .arg(dst));
}

/// Same packet count as capinfos, and the import finds the calls tshark
/// finds in `reference` (the same packets, in a file tshark reads).
fn check(file: &Path, reference: &Path) {
    assert_eq!(our_count(file), capinfos_count(file), "{}", file.display());
    let (dir, report) = import(&[file.to_path_buf()]);
    assert!(
        report.files[0].damage.is_none(),
        "{:?}",
        report.files[0].damage
    );
    let mut ids: Vec<String> = read_csv(&dir.path().join("calls.csv"))
        .iter()
        .map(|c| c["call_id"].clone())
        .collect();
    ids.sort();
    let want = tshark_call_ids(reference);
    assert_eq!(want.len(), 2);
    assert_eq!(ids, want, "{}: Call-IDs", file.display());
}

/// The corpus call as Linux cooked capture (SLL) whose every record claims
/// an original length 4 bytes shorter than what was captured (as a public
/// SLL capture does): Wireshark reads them all, so must voxtap.
#[test]
fn captured_length_larger_than_original_length() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sll-caplen-gt-len.pcap");
    let mut r = voxtap_engine::pcapfile::open(&corpus(SOURCE)).unwrap();
    let out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let mut w = PcapWriter::new(out, LinkType::LinuxSll, 262_144).unwrap();
    while let Some(rec) = r.next_packet().unwrap() {
        // SLL: packet type, ARPHRD_ETHER, address length, address (8),
        // then the Ethernet frame's EtherType and payload.
        let mut sll = vec![0, 0, 0, 1, 0, 6];
        sll.extend_from_slice(&rec.data[6..12]);
        sll.extend_from_slice(&[0, 0]);
        sll.extend_from_slice(&rec.data[12..]);
        w.write_packet(rec.ts_ns, sll.len() as u32 - 4, &sll)
            .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let short = tshark_lenient_count(&file);
    assert_eq!(short, capinfos_count(&file));
    check(&file, &file);
}

/// tshark reads every record of the file (the reference count).
fn tshark_lenient_count(file: &Path) -> u64 {
    voxtap_e2e::tshark_lenient(&[
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .lines()
    .count() as u64
}

fn compressed(tool: &str, src: &Path, dst: &Path) {
    let f = std::fs::File::create(dst).unwrap();
    run(Command::new(tool).arg("-c").arg(src).stdout(f));
}

#[test]
fn gzip_and_zstd_pcap_and_pcapng() {
    let dir = tempfile::tempdir().unwrap();
    let src = corpus(SOURCE);
    let ng = dir.path().join("call.pcapng");
    editcap("pcapng", &src, &ng);
    for plain in [&src, &ng] {
        let name = plain.file_name().unwrap().to_str().unwrap();
        let gz = dir.path().join(format!("{name}.gz"));
        let zst = dir.path().join(format!("{name}.zst"));
        compressed("gzip", plain, &gz);
        compressed("zstd", plain, &zst);
        for f in [&gz, &zst] {
            check(f, plain);
            assert_eq!(our_count(f), our_count(plain));
        }
    }
}

#[test]
fn netmon_2x_and_snoop() {
    let dir = tempfile::tempdir().unwrap();
    let src = corpus(SOURCE);
    for (format, ext) in [("netmon2", "cap"), ("snoop", "snoop")] {
        let f: PathBuf = dir.path().join(format!("call.{ext}"));
        editcap(format, &src, &f);
        check(&f, &src);
    }
}

/// Formats voxtap does not read: the error names the format and
/// `editcap -F pcap`, and that way through reads every packet capinfos
/// counts in the original.
#[test]
fn other_formats_are_named_with_the_way_through() {
    let dir = tempfile::tempdir().unwrap();
    let src = corpus(SOURCE);
    for (format, name) in [
        ("netmon1", "NetMon 1.x"),
        ("ngsniffer", "Sniffer (DOS)"),
        ("ngwsniffer_1_1", "NetXray"),
        ("nettl", "nettl"),
        ("5views", "5View"),
    ] {
        let f = dir.path().join(format!("call.{format}"));
        editcap(format, &src, &f);
        let err = voxtap_engine::pcapfile::open(&f)
            .err()
            .unwrap_or_else(|| panic!("{format} read as a capture"))
            .to_string();
        assert!(
            err.contains(name) && err.contains("editcap -F pcap"),
            "{format}: {err}"
        );
        // nettl's records carry their own link type: editcap needs one
        // for the pcap file (the message says so).
        let converted = dir.path().join(format!("{format}.pcap"));
        let mut c = Command::new("editcap");
        c.args(["-F", "pcap"]);
        if format == "nettl" {
            assert!(err.contains("-T ether"), "{err}");
            c.args(["-T", "ether"]);
        }
        run(c.arg(&f).arg(&converted));
        assert_eq!(our_count(&converted), capinfos_count(&f), "{format}");
    }
}
