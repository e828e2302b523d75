//! Decryption of real TLS connections (OpenSSL through Python's ssl, made by
//! `testdata/make.py`): every suite family, both versions, key log and RSA
//! key, resumption, and the ways it fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;
use crate::decode::{Decoder, L4};
use crate::pcapio::PcapReader;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/testdata")).join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap()
}

/// One TCP segment: (src, dst, seq, payload).
type Segment = (SocketAddr, SocketAddr, u32, Vec<u8>);

fn segments(pcap: &str) -> Vec<Segment> {
    let mut r = PcapReader::open(&testdata(pcap)).unwrap();
    let mut d = Decoder::new(Default::default());
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        let (link, ts, off) = (p.link, p.ts_ns, p.offset);
        if let Some(g) = d.decode(link, ts, off, p.data).unwrap()
            && let L4::Tcp { seq, .. } = g.l4
            && !g.payload.is_empty()
        {
            out.push((g.src, g.dst, seq, g.payload.to_vec()));
        }
    }
    out
}

/// Plaintext per connection and side, with the final status of each.
#[derive(Debug, Default)]
struct Outcome {
    /// (client, side) -> application data in order.
    plain: HashMap<(SocketAddr, bool), Vec<u8>>,
    status: Vec<TlsStatus>,
}

/// Feeds a capture through one `TlsConnection` per client port, starting
/// at segment `skip`.
fn run(pcap: &str, keys: &mut TlsKeys, skip: usize) -> Outcome {
    let segs = segments(pcap);
    let server_port = segs.first().unwrap().1.port();
    let mut conns: HashMap<SocketAddr, TlsConnection> = HashMap::new();
    let mut order = Vec::new();
    let mut o = Outcome::default();
    for (src, dst, seq, payload) in segs.into_iter().skip(skip) {
        let from_client = dst.port() == server_port;
        let (client, server) = if from_client { (src, dst) } else { (dst, src) };
        let side = if from_client {
            Side::Client
        } else {
            Side::Server
        };
        let c = conns.entry(client).or_insert_with(|| {
            order.push(client);
            TlsConnection::new(Some(server))
        });
        let plain = c.push(side, seq, &payload, keys).to_vec();
        o.plain
            .entry((client, from_client))
            .or_default()
            .extend(plain);
    }
    o.status = order.iter().map(|c| conns[c].status()).collect();
    o
}

fn keylog_of(pcap: &str) -> TlsKeys {
    let mut k = TlsKeys::new();
    k.feed_keylog(&read(&pcap.replace(".pcap", ".keys")));
    k.finish_keylog();
    k
}

fn rsa_keys(pcap: &str) -> TlsKeys {
    let server = segments(pcap).first().unwrap().1;
    let mut k = TlsKeys::new();
    k.add_rsa_pem(server, &String::from_utf8(read("server.key")).unwrap())
        .unwrap();
    k
}

/// Each connection decrypted both ways to exactly the SIP that was sent.
fn assert_dialog(o: &Outcome, connections: usize) {
    let client = [read("invite.sip"), read("bye.sip")].concat();
    let server = [read("ok.sip"), read("ok_bye.sip")].concat();
    assert_eq!(o.status, vec![TlsStatus::Decrypted; connections]);
    assert_eq!(o.plain.len(), 2 * connections);
    for ((_, from_client), p) in &o.plain {
        let want = if *from_client { &client } else { &server };
        assert_eq!(
            String::from_utf8_lossy(p),
            String::from_utf8_lossy(want),
            "client side: {from_client}"
        );
    }
}

const KEYLOG_CASES: &[&str] = &[
    "tls13-aes256gcm.pcap",
    "tls12-ecdhe-aes128gcm.pcap",
    "tls12-ecdhe-chacha20.pcap",
    "tls12-ecdhe-aes256cbc-sha384.pcap",
    "tls12-ecdhe-aes128cbc-sha-noetm.pcap",
    "tls12-rsa-aes128gcm-resume.pcap",
    "tls12-rsa-aes256gcm-sha384.pcap",
    "tls12-rsa-aes128cbc-sha.pcap",
];

#[test]
fn every_suite_decrypts_from_the_key_log() {
    for pcap in KEYLOG_CASES {
        let conns = if pcap.contains("resume") { 2 } else { 1 };
        let o = run(pcap, &mut keylog_of(pcap), 0);
        eprintln!("{pcap}: {:?}", o.status);
        assert_dialog(&o, conns);
    }
}

/// TLS 1.2 RSA key exchange with the server's private key alone (extended
/// master secret on, as OpenSSL negotiates it), and the resumed session
/// from the first connection's master secret.
#[test]
fn rsa_key_exchange_decrypts_with_the_server_key() {
    for (pcap, conns) in [
        ("tls12-rsa-aes128gcm-resume.pcap", 2),
        ("tls12-rsa-aes256gcm-sha384.pcap", 1),
        ("tls12-rsa-aes128cbc-sha.pcap", 1),
    ] {
        let o = run(pcap, &mut rsa_keys(pcap), 0);
        assert_dialog(&o, conns);
    }
}

#[test]
fn missing_wrong_and_late_keys() {
    let pcap = "tls12-ecdhe-aes128gcm.pcap";
    // No key at all.
    let o = run(pcap, &mut TlsKeys::new(), 0);
    assert_eq!(o.status, vec![TlsStatus::NoKey]);
    assert!(o.plain.values().all(Vec::is_empty));
    // A key log for other connections.
    let o = run(pcap, &mut keylog_of("tls13-aes256gcm.pcap"), 0);
    assert_eq!(o.status, vec![TlsStatus::NoKey]);
    // The right client random with a wrong master secret.
    let text = String::from_utf8(read("tls12-ecdhe-aes128gcm.keys")).unwrap();
    let (head, secret) = text.trim_end().rsplit_once(' ').unwrap();
    let wrong = format!("{head} {}\n", secret.chars().rev().collect::<String>());
    let mut k = TlsKeys::new();
    k.feed_keylog(wrong.as_bytes());
    let o = run(pcap, &mut k, 0);
    assert_eq!(o.status, vec![TlsStatus::WrongKey]);
    // An RSA key cannot open an ECDHE exchange.
    let o = run(pcap, &mut rsa_keys(pcap), 0);
    assert_eq!(o.status, vec![TlsStatus::NoKey]);
    // The capture began after the handshake.
    let o = run(pcap, &mut keylog_of(pcap), 4);
    assert_eq!(o.status[0], TlsStatus::NoHandshake);
}

/// The key log arrives after the records (a sensor reading a growing
/// file): they wait, then decrypt when the key is fed and pushed again.
#[test]
fn records_wait_for_a_late_key_log() {
    let pcap = "tls13-aes256gcm.pcap";
    let segs = segments(pcap);
    let server_port = segs[0].1.port();
    let mut keys = TlsKeys::new();
    let mut c = TlsConnection::new(Some(segs[0].1));
    let mut got: HashMap<bool, Vec<u8>> = HashMap::new();
    for (src, dst, seq, p) in &segs {
        let _ = src;
        let from_client = dst.port() == server_port;
        let side = if from_client {
            Side::Client
        } else {
            Side::Server
        };
        let plain = c.push(side, *seq, p, &mut keys).to_vec();
        assert!(plain.is_empty());
    }
    assert_eq!(c.status(), TlsStatus::NoKey);
    assert!(c.held(Side::Client) > 0 && c.held(Side::Server) > 0);
    keys.feed_keylog(&read("tls13-aes256gcm.keys"));
    for (side, from_client) in [(Side::Client, true), (Side::Server, false)] {
        got.insert(from_client, c.push(side, 0, &[], &mut keys).to_vec());
    }
    assert_eq!(c.status(), TlsStatus::Decrypted);
    assert_eq!(got[&true], [read("invite.sip"), read("bye.sip")].concat());
    assert_eq!(got[&false], [read("ok.sip"), read("ok_bye.sip")].concat());
}

/// Segments cut to single bytes, and a lost segment in the middle of the
/// application data: decryption picks up again at the next record.
#[test]
fn byte_by_byte_and_after_a_gap() {
    let pcap = "tls12-ecdhe-chacha20.pcap";
    let segs = segments(pcap);
    let server_port = segs[0].1.port();
    let mut keys = keylog_of(pcap);
    let mut c = TlsConnection::new(None);
    let mut client = Vec::new();
    let last_client = segs
        .iter()
        .rposition(|s| s.1.port() == server_port)
        .unwrap();
    // The client's segment before its last (the INVITE's record) is lost.
    let lost = segs[..last_client]
        .iter()
        .rposition(|s| s.1.port() == server_port)
        .unwrap();
    for (i, (_, dst, seq, p)) in segs.iter().enumerate() {
        let side = if dst.port() == server_port {
            Side::Client
        } else {
            Side::Server
        };
        if i == lost {
            continue;
        }
        for (k, b) in p.iter().enumerate() {
            let out = c.push(
                side,
                seq.wrapping_add(k as u32),
                std::slice::from_ref(b),
                &mut keys,
            );
            if side == Side::Client {
                client.extend_from_slice(out);
            }
        }
    }
    assert_eq!(c.status(), TlsStatus::Decrypted);
    let s = String::from_utf8_lossy(&client);
    assert!(s.starts_with("BYE ") || s.starts_with("INVITE "), "{s}");
    assert!(s.ends_with(&*String::from_utf8_lossy(&read("bye.sip"))));
}

#[test]
fn client_hello_is_recognised() {
    let segs = segments("tls13-aes256gcm.pcap");
    assert!(looks_like_client_hello(&segs[0].3));
    assert!(!looks_like_client_hello(&segs[1].3));
    assert!(!looks_like_client_hello(b"INVITE sip:x SIP/2.0\r\n"));
}
