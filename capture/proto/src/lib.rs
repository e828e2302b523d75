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
