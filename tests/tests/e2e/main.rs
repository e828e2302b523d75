//! The end-to-end tests, one binary (one link instead of four): voxtap's
//! libraries on the shared corpus, checked against tshark and others'
//! decoders. `cargo test -p voxtap-e2e --test e2e hep::` runs one module.

mod corpus_import;
mod hep;
mod legs;
mod media;
mod tunnels;
