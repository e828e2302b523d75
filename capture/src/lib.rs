//! voxtap capture library: every packet source (pcap files, XDP, RPCAP) feeds
//! the same [`pipeline::Pipeline`], which rebuilds calls from SIP, SDP, RTP and
//! RTCP and records where each call's packets are.
//!
//! Protocol modules (`wire`, `sip`, `sdp`, `rtp`, `rtcp`) are pure: bytes in,
//! values out, no I/O, and never panic on any input.

// Branch wt-rtp declares only its own modules so the crate builds alone; the
// lead restores the full module list at merge.
pub mod rtcp;
pub mod rtp;
pub mod stream_stats;
