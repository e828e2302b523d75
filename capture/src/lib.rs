//! voxtap capture library: every packet source (pcap files, XDP, RPCAP) feeds
//! the same [`pipeline::Pipeline`], which rebuilds calls from SIP, SDP, RTP and
//! RTCP and records where each call's packets are.
//!
//! Protocol modules (`wire`, `sip`, `sdp`, `rtp`, `rtcp`) are pure: bytes in,
//! values out, no I/O, and never panic on any input.

pub mod calls;
pub mod config;
pub mod decode;
pub mod hep;
pub mod import;
pub mod index;
#[cfg(target_os = "linux")]
pub mod live;
pub mod media;
pub mod output;
pub mod pcapio;
pub mod pipeline;
pub mod rpcap;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod status;
pub mod store;
pub mod stream_stats;
pub mod stream_timeline;
pub mod synth;
pub mod tap;
pub mod upload;
pub mod wire;
#[cfg(target_os = "linux")]
pub mod xdp;
