//! voxtap capture library: every packet source (pcap files, XDP, RPCAP) feeds
//! the same pipeline, which rebuilds calls from SIP, SDP, RTP and RTCP and
//! records where each call's packets are.
//!
//! Protocol modules are pure: bytes in, values out, no I/O, and never panic on
//! any input.

pub mod decode;
pub mod pcapio;
pub mod wire;
