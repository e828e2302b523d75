//! NSS key log files (the `SSLKEYLOGFILE` format that browsers, OpenSSL's
//! `-keylogfile`, Python's `ssl` and several SIP servers write): one secret
//! per line, `LABEL <client random hex> <secret hex>`, `#` comments.
//!
//! Read incrementally with [`KeyLog::feed`], so a file that is still being
//! written can be followed: a last line without its newline is held until
//! the rest arrives.

use std::collections::HashMap;

/// The secrets of one connection, by its ClientHello random.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// TLS 1.2 and earlier: `CLIENT_RANDOM`.
    pub master: Option<[u8; 48]>,
    /// TLS 1.3.
    pub client_handshake: Option<Vec<u8>>,
    pub server_handshake: Option<Vec<u8>>,
    pub client_traffic: Option<Vec<u8>>,
    pub server_traffic: Option<Vec<u8>>,
}

/// Why a line was not taken.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum KeyLogError {
    #[error("not three fields (LABEL, client random, secret)")]
    Fields,
    #[error("a field is not hexadecimal")]
    Hex,
    #[error("the client random is not 32 bytes (or the RSA prefix 8)")]
    RandomLen,
    #[error("the secret has the wrong length for its label")]
    SecretLen,
}

/// The secrets read so far. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct KeyLog {
    by_random: HashMap<[u8; 32], Secrets>,
    /// `RSA <first 8 bytes of the encrypted pre-master> <pre-master>`.
    rsa: HashMap<[u8; 8], Vec<u8>>,
    partial: Vec<u8>,
    lines: u64,
    bad_lines: u64,
    ignored_lines: u64,
}

/// Longest line we wait for (a secret line is under 250 bytes).
const MAX_LINE: usize = 4096;

impl KeyLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole text of a key log file.
    pub fn parse(text: &[u8]) -> KeyLog {
        let mut k = KeyLog::new();
        k.feed(text);
        k.finish();
        k
    }

    /// More bytes of the file: every complete line is read; an unfinished
    /// last line waits for the next call.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, tail) = (
                rest.get(..nl).unwrap_or(&[]),
                rest.get(nl + 1..).unwrap_or(&[]),
            );
            if self.partial.is_empty() {
                self.take_line(line);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.take_line(&whole);
            }
            rest = tail;
        }
        if self.partial.len() + rest.len() > MAX_LINE {
            self.partial.clear();
            self.bad_lines = self.bad_lines.saturating_add(1);
        } else {
            self.partial.extend_from_slice(rest);
        }
    }

    /// The end of the file: a last line without a newline counts too.
    pub fn finish(&mut self) {
        let last = std::mem::take(&mut self.partial);
        if !last.is_empty() {
            self.take_line(&last);
        }
    }

    fn take_line(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            return;
        }
        self.lines = self.lines.saturating_add(1);
        match self.add_line(line) {
            Ok(true) => {}
            Ok(false) => self.ignored_lines = self.ignored_lines.saturating_add(1),
            Err(_) => self.bad_lines = self.bad_lines.saturating_add(1),
        }
    }

    /// One line (no newline). Ok(false): a label we have no use for
    /// (exporter and early secrets).
    pub fn add_line(&mut self, line: &[u8]) -> Result<bool, KeyLogError> {
        let mut f = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let (Some(label), Some(random), Some(secret), None) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(KeyLogError::Fields);
        };
        let secret = unhex(secret).ok_or(KeyLogError::Hex)?;
        let random = unhex(random).ok_or(KeyLogError::Hex)?;
        if label == b"RSA" {
            let prefix: [u8; 8] = random
                .as_slice()
                .try_into()
                .map_err(|_| KeyLogError::RandomLen)?;
            if secret.len() != 48 {
                return Err(KeyLogError::SecretLen);
            }
            self.rsa.insert(prefix, secret);
            return Ok(true);
        }
        let random: [u8; 32] = random
            .as_slice()
            .try_into()
            .map_err(|_| KeyLogError::RandomLen)?;
        let tls13_len = |s: &Vec<u8>| matches!(s.len(), 32 | 48);
        let e = self.by_random.entry(random).or_default();
        let slot = match label {
            b"CLIENT_RANDOM" => {
                e.master = Some(
                    secret
                        .as_slice()
                        .try_into()
                        .map_err(|_| KeyLogError::SecretLen)?,
                );
                return Ok(true);
            }
            b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut e.client_handshake,
            b"SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut e.server_handshake,
            b"CLIENT_TRAFFIC_SECRET_0" => &mut e.client_traffic,
            b"SERVER_TRAFFIC_SECRET_0" => &mut e.server_traffic,
            _ => return Ok(false),
        };
        if !tls13_len(&secret) {
            return Err(KeyLogError::SecretLen);
        }
        *slot = Some(secret);
        Ok(true)
    }

    pub fn get(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.by_random.get(client_random)
    }

    /// The pre-master secret logged for an RSA key exchange whose encrypted
    /// pre-master secret starts with `prefix`.
    pub fn rsa_premaster(&self, encrypted: &[u8]) -> Option<&[u8]> {
        let prefix: [u8; 8] = encrypted.get(..8)?.try_into().ok()?;
        self.rsa.get(&prefix).map(Vec::as_slice)
    }

    /// Connections (client randoms) with at least one secret.
    pub fn connections(&self) -> usize {
        self.by_random.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_random.is_empty() && self.rsa.is_empty()
    }

    /// Lines read (not counting comments and blank lines).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Lines that were not key log lines.
    pub fn bad_lines(&self) -> u64 {
        self.bad_lines
    }
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(*p.first()?)? * 16 + d(*p.get(1)?)?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CR: &str = "5f1e3a4c0b27d0b21ef4e1b6ec9e6a8e0ad2ad5e1e0a3a0e8e3d7c3c9c1a2b3c";

    #[test]
    fn lines_of_both_versions_comments_and_junk() {
        let text = format!(
            "# SSL/TLS secrets log file\n\
             CLIENT_RANDOM {CR} {ms}\n\
             CLIENT_HANDSHAKE_TRAFFIC_SECRET {CR} {s32}\r\n\
             SERVER_TRAFFIC_SECRET_0 {CR} {s48}\n\
             EXPORTER_SECRET {CR} {s32}\n\
             RSA 0102030405060708 {ms}\n\
             \n\
             garbage\n\
             CLIENT_RANDOM {CR} 00\n",
            ms = "ab".repeat(48),
            s32 = "cd".repeat(32),
            s48 = "ef".repeat(48),
        );
        let k = KeyLog::parse(text.as_bytes());
        let cr: [u8; 32] = unhex(CR.as_bytes()).unwrap().try_into().unwrap();
        let s = k.get(&cr).unwrap();
        assert_eq!(s.master, Some([0xab; 48]));
        assert_eq!(s.client_handshake.as_deref(), Some(&[0xcd; 32][..]));
        assert_eq!(s.server_traffic.as_deref(), Some(&[0xef; 48][..]));
        assert!(s.client_traffic.is_none());
        assert_eq!(
            k.rsa_premaster(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Some(&[0xab; 48][..])
        );
        assert_eq!((k.lines(), k.bad_lines()), (7, 2));
    }

    #[test]
    fn fed_in_pieces_like_a_growing_file() {
        let line = format!("CLIENT_RANDOM {CR} {}\n", "11".repeat(48));
        let mut k = KeyLog::new();
        let (a, b) = line.as_bytes().split_at(50);
        k.feed(a);
        assert!(k.is_empty());
        k.feed(b);
        assert_eq!(k.connections(), 1);
        // No newline yet: held, then taken at the end of the file.
        let mut k = KeyLog::new();
        k.feed(line.trim_end().as_bytes());
        assert!(k.is_empty());
        k.finish();
        assert_eq!(k.connections(), 1);
    }
}
