//! The voxtap sensor: what runs on a capture box. The XDP loader and the
//! live threads around the engine's pipeline, the rolling PCAP store with
//! its location index and retention, S3 upload with a local spool, HEP
//! export and listener, RPCAP remote capture, the configuration file and
//! the status files the web UI reads.

#[cfg(feature = "central")]
pub mod central;
pub mod config;
pub mod fsutil;
pub mod hep;
#[cfg(target_os = "linux")]
pub mod live;
pub mod rpcap;
pub mod status;
pub mod store;
pub mod upload;
#[cfg(target_os = "linux")]
pub mod xdp;

pub use config::Config;
#[cfg(target_os = "linux")]
pub use live::{LiveOptions, LiveReport, run_live};
pub use store::extract_call_with;
