//! The web UI's integration tests, one binary (one link instead of six).
//! The modules run in parallel threads; the browser tests take turns for
//! the one Chromium (`voxtap_testkit::browser`). `cargo test -p voxtap-web
//! --test web api::` runs one module.

mod common;

mod alerts;
mod api;
mod browser;
mod call_audio;
mod charts;
mod correlate;
mod dashboards;
mod fleet_bench;
mod hardening;
mod hub;
mod hub_ops;
mod live;
mod noncall;
mod page_bench;
mod remote;
mod s3;
mod search;
mod server;
mod tunnels;
