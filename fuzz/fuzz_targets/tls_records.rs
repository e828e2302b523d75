#![no_main]
//! TLS records: the input is TCP segments of one connection,
//! [side][len: 2 bytes][seq delta][payload]..., fed to a TlsConnection holding the
//! keys of a real connection (the unit tests' TLS 1.3 capture, whose
//! segments are among the seeds), so handshakes, key derivation and record
//! decryption are all reached.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::tls::{Side, TlsConnection, TlsKeys};

const KEYLOG: &[u8] = include_bytes!("../../capture/proto/src/tls/testdata/tls13-aes256gcm.keys");
const KEYLOG12: &[u8] = include_bytes!("../../capture/proto/src/tls/testdata/tls12-ecdhe-aes128gcm.keys");

fuzz_target!(|data: &[u8]| {
    let mut keys = TlsKeys::new();
    keys.feed_keylog(KEYLOG);
    keys.feed_keylog(KEYLOG12);
    let mut c = TlsConnection::new(None);
    let mut seq = [1000u32, 5000u32];
    let mut rest = data;
    while let [side, hi, lo, delta, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (payload, next) = tail.split_at(n);
        let (s, i) = if side & 1 == 0 { (Side::Client, 0) } else { (Side::Server, 1) };
        let q = seq[i].wrapping_add_signed(i32::from(*delta as i8));
        let _ = c.push(s, q, payload, &mut keys);
        seq[i] = q.wrapping_add(n as u32);
        rest = next;
    }
    let _ = (c.status(), c.stats(), c.client_random());
});
