//! voxtap capture library: every packet source (pcap files, XDP, RPCAP) feeds
//! the same [`pipeline::Pipeline`], which rebuilds calls from SIP, SDP, RTP and
//! RTCP and records where each call's packets are.
//!
//! Protocol modules (`wire`, `sip`, `sdp`, `rtp`, `rtcp`) are pure: bytes in,
//! values out, no I/O, and never panic on any input.
//!
//! (wt-sip branch: only the SIP/SDP modules are declared here so this crate
//! builds alone; the lead reconciles this file at merge.)

pub mod sdp;
pub mod sip;
