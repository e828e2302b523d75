//! voxtap's protocols, pure: bytes in, values out. Every packet source feeds
//! these parsers; they do no I/O (a capture file is read through any
//! `std::io::Read` the caller opens), hold no global state and never panic
//! on any input: the crate forbids `unsafe` and, outside tests, denies
//! indexing, `unwrap`, `expect` and `panic!`.
//!
//! - [`wire`]: zero-copy views of link, network and transport headers, with
//!   an emit side that builds and patches frames;
//! - [`decode`]: a captured frame to a datagram or segment (VLAN, IP-in-IP,
//!   fragment reassembly with bounded memory);
//! - [`pcapio`]: pcap and pcapng records from a reader, pcap to a writer;
//! - [`sip`], [`sdp`], [`rtp`], [`rtcp`], [`stream_stats`]: signalling and
//!   media, with RFC 3550 / Wireshark-compatible stream figures;
//! - [`sctp`]: SCTP user messages from DATA chunks (fragments, streams);
//! - [`srtp`]: SRTP/SRTCP (RFC 3711, 7714) with our key derivation;
//! - [`tcp_stream`]: one TCP direction as ordered bytes;
//! - [`tls`]: TLS 1.2/1.3 decryption from a key log or an RSA key;
//! - [`hep`], [`rpcap`]: the HEP v3 and RPCAP wire formats.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod decode;
pub mod hep;
pub mod pcapio;
pub mod rpcap;
pub mod rtcp;
pub mod rtp;
pub mod sctp;
pub mod sdp;
pub mod sip;
pub mod srtp;
pub mod stream_stats;
pub mod tcp_stream;
pub mod tls;
pub mod wire;

/// `b` as text, bytes that are not UTF-8 replaced: what
/// `String::from_utf8_lossy` gives, checked first by `str::from_utf8`, which
/// reads ASCII a word at a time (`from_utf8_lossy` reads it a byte at a time:
/// 12 times the instructions on a 700-byte SIP message, and every replica of
/// the parallel engine reads every message's text and SDP lines).
pub fn utf8_lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

#[cfg(test)]
mod tests {
    /// Valid text is borrowed as it is; anything else is
    /// `from_utf8_lossy`'s answer (each bad sequence one U+FFFD).
    #[test]
    fn utf8_lossy_is_from_utf8_lossys_answer() {
        let cases: [&[u8]; 5] = [
            b"",
            b"INVITE sip:b@x",
            "\u{20ac}".as_bytes(),
            b"a\xffb",
            b"\xe2\x82",
        ];
        for b in cases {
            assert_eq!(super::utf8_lossy(b), String::from_utf8_lossy(b));
        }
        assert!(matches!(
            super::utf8_lossy(b"ok"),
            std::borrow::Cow::Borrowed("ok")
        ));
        assert_eq!(super::utf8_lossy(b"a\xffb"), "a\u{fffd}b");
    }
}
