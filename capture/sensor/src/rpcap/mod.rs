//! Remote capture over RPCAP (libpcap's rpcapd), for hosts that cannot run
//! the XDP sensor. [`proto`] is the pure message codec, [`client`] the
//! connection logic with timeouts, [`bpf`] compiles filters with libpcap,
//! [`hosts`] reads `hosts.toml`, and [`remote`] runs captures on many hosts
//! at once into the same pipeline and outputs as `import`.

pub mod bpf;
pub mod client;
pub mod hosts;
pub mod remote;
pub mod tls;

pub use client::{CaptureOptions, ClientConfig, DataChannel, RpcapError, Session, Transport};
pub use voxtap_proto::rpcap::{Credentials, Interface, Stats};
