#![no_main]
//! Key log lines, fed in two pieces as a growing file is read, and the
//! handshake message parsers over the same bytes.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::tls::record;
use voxtap_proto::tls::KeyLog;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(cut);
    let mut k = KeyLog::new();
    k.feed(a);
    k.feed(b);
    k.finish();
    let whole = KeyLog::parse(data);
    assert_eq!(whole.connections(), k.connections());
    let _ = (
        record::client_hello(data),
        record::server_hello(data),
        record::rsa_encrypted_premaster(data),
        record::new_session_ticket12(data),
        record::handshake_message(data),
        record::client_hello_random(data),
    );
});
