//! The `voxtap` package's integration tests, one binary (each test binary
//! links the whole sensor: one link instead of eight). The modules are the
//! former test files; they run in parallel threads, so the tests that need
//! the machine to themselves (the live lab, loopback-wide captures) take
//! `lab::SERIAL`, one lock for the whole binary.
//!
//! `cargo test -p voxtap --test sensor live_sipp::` runs one module;
//! `cargo xtask bench` and `soak` run `bench_probes::` in release.

mod lab;

mod bench_probes;
mod faults;
mod live_alerts;
mod live_browser;
mod live_calls;
mod live_export;
mod live_fleet;
mod live_sensor_page;
mod live_sipp;
mod live_tunnels;
mod rpcapd;
mod s3;
mod serve;
mod xdp_debug;
mod xdp_steer;
mod xdp_tunnels;
mod xdp_veth;
