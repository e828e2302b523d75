//! What decrypts TLS: a key log, RSA private keys of servers (TLS 1.2 RSA
//! key exchange), and the master secrets of sessions seen, for their
//! abbreviated (resumed) handshakes.

use std::collections::HashMap;
use std::net::SocketAddr;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey};

use super::keylog::KeyLog;

/// Sessions remembered for resumption; the table is cleared when full.
const MAX_SESSIONS: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA private key in PEM (PKCS#1 or PKCS#8): {0}")]
    Pem(String),
}

/// The keys of one import or sensor. See the module docs.
#[derive(Clone, Default)]
pub struct TlsKeys {
    keylog: KeyLog,
    /// RSA keys with the server (address and port) they belong to.
    rsa: Vec<(SocketAddr, RsaPrivateKey)>,
    sessions: HashMap<Vec<u8>, [u8; 48]>,
    /// Bumped whenever keys are added, so waiting connections try again.
    generation: u64,
}

impl std::fmt::Debug for TlsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsKeys")
            .field("keylog_connections", &self.keylog.connections())
            .field("rsa_keys", &self.rsa.len())
            .field("generation", &self.generation)
            .finish()
    }
}

impl TlsKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any key at all (without one, TLS is only listed, never decrypted).
    pub fn is_empty(&self) -> bool {
        self.keylog.is_empty() && self.rsa.is_empty()
    }

    pub fn keylog(&self) -> &KeyLog {
        &self.keylog
    }

    /// More bytes of a key log file (see [`KeyLog::feed`]).
    pub fn feed_keylog(&mut self, bytes: &[u8]) {
        let before = self.keylog.lines();
        self.keylog.feed(bytes);
        if self.keylog.lines() != before {
            self.generation = self.generation.wrapping_add(1);
        }
    }

    /// The end of a key log file read whole.
    pub fn finish_keylog(&mut self) {
        let before = self.keylog.lines();
        self.keylog.finish();
        if self.keylog.lines() != before {
            self.generation = self.generation.wrapping_add(1);
        }
    }

    /// The RSA private key (PEM, PKCS#1 or PKCS#8) of the TLS server at
    /// `server`.
    pub fn add_rsa_pem(&mut self, server: SocketAddr, pem: &str) -> Result<(), KeyError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|e8| RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e1| format!("{e8}; {e1}")))
            .map_err(KeyError::Pem)?;
        self.rsa.push((server, key));
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Whether an RSA key was given for the server at `server`.
    pub fn has_rsa_key_for(&self, server: SocketAddr) -> bool {
        self.rsa.iter().any(|(s, _)| *s == server)
    }

    pub fn rsa_keys(&self) -> usize {
        self.rsa.len()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The pre-master secret of an RSA key exchange with `server`: from the
    /// key log's `RSA` lines, else by decrypting with the server's key (then
    /// with every other key).
    pub(crate) fn rsa_premaster(
        &self,
        server: Option<SocketAddr>,
        encrypted: &[u8],
    ) -> Option<Vec<u8>> {
        if let Some(p) = self.keylog.rsa_premaster(encrypted) {
            return Some(p.to_vec());
        }
        let ordered = self
            .rsa
            .iter()
            .filter(|(s, _)| Some(*s) == server)
            .chain(self.rsa.iter().filter(|(s, _)| Some(*s) != server));
        ordered
            .filter_map(|(_, k)| k.decrypt(Pkcs1v15Encrypt, encrypted).ok())
            .find(|pms| pms.len() == 48)
    }

    /// A TLS 1.2 session's master secret, by session ID or ticket.
    pub(crate) fn remember_session(&mut self, id: &[u8], master: &[u8; 48]) {
        if id.is_empty() {
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            self.sessions.clear();
        }
        self.sessions.insert(id.to_vec(), *master);
    }

    pub(crate) fn session(&self, id: &[u8]) -> Option<&[u8; 48]> {
        if id.is_empty() {
            return None;
        }
        self.sessions.get(id)
    }
}
