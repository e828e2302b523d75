//! TLS decryption for a passive tap: SIP over TLS (and WebSocket over TLS)
//! read from a capture when the keys are given — an NSS key log
//! (`SSLKEYLOGFILE`, TLS 1.2 and 1.3) or, for TLS 1.2 with RSA key
//! exchange, the server's RSA private key.
//!
//! No TLS library decrypts a connection it did not take part in, so the
//! record layer and both key schedules are ours ([`conn`], [`schedule`]);
//! the primitives are RustCrypto's (AES-GCM, ChaCha20-Poly1305, AES-CBC,
//! HMAC, HKDF, SHA-2, RSA PKCS#1 v1.5).
//!
//! - [`keylog`]: key log lines, read incrementally;
//! - [`TlsKeys`]: key log, RSA keys and resumable sessions;
//! - [`TlsConnection`]: one connection, fed TCP segments per direction,
//!   giving back decrypted application data;
//! - [`record`]: the record header view and the handshake messages read.

mod cipher;
mod conn;
pub mod keylog;
mod keys;
pub mod record;
mod schedule;
mod suite;

pub use conn::{Side, TlsConnection, TlsStats, TlsStatus};
pub use keylog::KeyLog;
pub use keys::{KeyError, TlsKeys};
pub use schedule::{hkdf_expand_label, master_secret, prf12};
pub use suite::{Bulk, Hash, Suite, by_id as suite_by_id};

/// Whether a TCP payload starts with a TLS handshake record carrying a
/// ClientHello (how a connection is recognised as TLS).
pub fn looks_like_client_hello(payload: &[u8]) -> bool {
    matches!(
        payload,
        [
            record::content_type::HANDSHAKE,
            3,
            0..=4,
            _,
            _,
            record::handshake_type::CLIENT_HELLO,
            ..
        ]
    )
}

#[cfg(test)]
mod tests;
