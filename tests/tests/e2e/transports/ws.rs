//! SIP over WebSocket (RFC 7118) between two real WebSocket stacks (Python's
//! `websockets`, `tests/peers/ws_sip.py`), plain and over TLS, captured on a
//! loopback with a 300-byte MTU so messages span segments.

use std::collections::BTreeMap;
use std::path::Path;

use voxtap_e2e::import_with;
use voxtap_engine::import::load_tls_keys;
use voxtap_engine::pipeline::PipelineConfig;

use super::peers::{Netns, peer_script, run, start_tcpdump, stop_tcpdump, test_cert};
use super::{Rung, our_ladder, tshark_ladder};

/// What the peers sent: per Call-ID, the messages in order.
fn sent(log: &Path) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let cid = format!("ws-{}@example.com", v["call"].as_str().unwrap());
        m.entry(cid)
            .or_default()
            .push(v["text"].as_str().unwrap().to_string());
    }
    m
}

/// Two calls between the peers; returns (capture, message log).
fn capture(ns: &Netns, dir: &Path, tls: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    run(&mut ns.cmd(&["ip", "link", "set", "lo", "mtu", "300"]));
    let pcap = dir.join(if tls { "wss.pcap" } else { "ws.pcap" });
    let log = dir.join("sent.jsonl");
    let td = start_tcpdump(ns, &pcap, "tcp port 8080");
    let script = peer_script("ws_sip.py");
    let (cert, key) = test_cert();
    let keylog = dir.join("keys.log");
    let mut args = vec![
        "python3",
        script.to_str().unwrap(),
        "127.0.0.1",
        "8080",
        "2",
        log.to_str().unwrap(),
    ];
    if tls {
        args.extend([
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            keylog.to_str().unwrap(),
        ]);
    }
    let out = run(&mut ns.cmd(&args));
    assert_eq!(out.trim(), "done");
    stop_tcpdump(td);
    (pcap, log)
}

fn check(pcap: &Path, log: &Path, out: &Path, tshark_args: &[&str], transport: &str) {
    let ours = our_ladder(out);
    let sent = sent(log);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        sent.keys().collect::<Vec<_>>()
    );
    // Each message exactly as the peer sent it, in order, with the transport.
    let idx = voxtap_engine::index::Index::open(&out.join("index.sqlite")).unwrap();
    for c in idx.search(&Default::default()).unwrap().rows {
        let d = idx.call_detail(c.id).unwrap().unwrap();
        let texts: Vec<String> = d.sip.iter().map(|m| m.text.clone()).collect();
        assert_eq!(texts, sent[&c.call_id], "{}", c.call_id);
        assert!(d.sip.iter().all(|m| m.transport == transport));
    }
    // tshark 4.0 dissects every message but the fragmented INVITE (it does
    // not reassemble WebSocket fragments): the rest of both ladders agree,
    // and the INVITE we read is dated at the frame with its last fragment.
    let theirs = tshark_ladder(pcap, tshark_args, "tcp");
    for (cid, rungs) in &ours {
        let fragmented = cid == "ws-1@example.com";
        let mut ours_cmp: Vec<Rung> = rungs.clone();
        if fragmented {
            let invite = ours_cmp.remove(0);
            assert!(invite.3.starts_with("INVITE "));
        }
        assert_eq!(&ours_cmp, &theirs[cid], "{cid}");
    }
}

#[test]
fn sip_over_websocket_between_real_peers_matches_tshark() {
    let ns = Netns::new("ws");
    let dir = tempfile::tempdir().unwrap();
    let (pcap, log) = capture(&ns, dir.path(), false);
    let (out, report) = import_with(std::slice::from_ref(&pcap), PipelineConfig::default());
    eprintln!("{:?}", report.transport_lines());
    assert_eq!(report.stats.websocket_flows, 4);
    check(&pcap, &log, out.path(), &[], "WS");
}

/// The same over TLS (wss), decrypted from the client's key log; tshark
/// with the same key log.
#[test]
fn sip_over_secure_websocket_decrypts_from_the_key_log() {
    let ns = Netns::new("wss");
    let dir = tempfile::tempdir().unwrap();
    let (pcap, log) = capture(&ns, dir.path(), true);
    let keylog = dir.path().join("keys.log");
    let cfg = PipelineConfig {
        tls_keys: load_tls_keys(std::slice::from_ref(&keylog), &[]).unwrap(),
        ..Default::default()
    };
    let (out, report) = import_with(std::slice::from_ref(&pcap), cfg);
    eprintln!("{:?}", report.transport_lines());
    let t = &report.stats.tls;
    assert_eq!((t.connections, t.decrypted, t.sip_messages), (2, 2, 14));
    let kl = format!("tls.keylog_file:{}", keylog.display());
    check(
        &pcap,
        &log,
        out.path(),
        &[
            "-o",
            &kl,
            "-d",
            "tcp.port==8080,tls",
            "-d",
            "tls.port==8080,http",
        ],
        "WSS",
    );
}
