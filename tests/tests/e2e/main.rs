//! The end-to-end tests, one binary (one link instead of several): voxtap's
//! libraries on the shared corpus, checked against tshark and others'
//! decoders. `cargo test -p voxtap-e2e --test e2e hep::` runs one module.

/// The codecs crate's reference-encoder helpers (speech, the C reference
/// programs, correlation), shared with its own tests.
#[path = "../../../capture/codecs/tests/codecs/common.rs"]
mod codec_ref;

mod callmodel;
mod codecs;
mod corpus_import;
mod engine_split;
mod hardening;
mod hep;
mod hep_engine;
mod import_workers;
mod legs;
mod media;
mod readers;
mod transports;
mod tunnels;
