//! One TLS connection seen from the side: both directions' ordered bytes cut
//! into records, the handshake read in the clear (and, in TLS 1.3, after
//! decryption), keys derived once the key log or an RSA key allows, and
//! application data handed out per direction as it decrypts.
//!
//! Records that arrive before their keys (a key log written after the
//! handshake, read by a sensor a moment later) wait in the direction's
//! buffer, bounded like any TCP stream; [`TlsConnection::push`] with no
//! new bytes tries again.

use std::net::SocketAddr;

use super::cipher::RecordCipher;
use super::keys::TlsKeys;
use super::record::{self, ClientHello, Record, ServerHello, content_type, handshake_type};
use super::schedule::{digest, hkdf_expand_label, master_secret, prf12};
use super::suite::{self, Suite};
use crate::tcp_stream::{OrderedBytes, Pushed};
use crate::wire::WireError;

/// Ciphertext held per direction (records waiting for keys included).
const DIRECTION_CAP: usize = 1024 * 1024;
/// Handshake bytes kept for the extended master secret's session hash.
const MAX_TRANSCRIPT: usize = 256 * 1024;
/// Records skipped while looking for the sequence number after a gap.
const MAX_SEQ_SKIP: u64 = 64;

/// Which end sent the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    fn idx(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// Where decryption of a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsStatus {
    /// The handshake is being read; nothing encrypted yet.
    Handshake,
    /// Records decrypt.
    Decrypted,
    /// No key for it: no key log entry for its client random, no RSA key.
    NoKey,
    /// Keys were found but the records do not authenticate with them.
    WrongKey,
    /// The capture began after the handshake: its randoms are unknown.
    NoHandshake,
    /// A cipher suite we do not decrypt.
    UnsupportedSuite(u16),
    /// A version other than TLS 1.2 and 1.3.
    UnsupportedVersion(u16),
    /// The bytes are not TLS records.
    NotTls,
}

impl TlsStatus {
    /// Whether it is over: nothing more will be decrypted.
    pub fn is_failure(self) -> bool {
        !matches!(self, TlsStatus::Handshake | TlsStatus::Decrypted)
    }
}

/// TLS 1.3 secrets of one direction: the one in use and the application
/// secret to move to (after Finished, or a KeyUpdate).
#[derive(Clone, Debug, Default)]
struct Secrets13 {
    current: Vec<u8>,
    next: Option<Vec<u8>>,
}

struct Dir {
    bytes: OrderedBytes,
    /// Plaintext handshake bytes not yet a whole message.
    hs: Vec<u8>,
    /// TLS 1.2: ChangeCipherSpec seen, what follows is encrypted.
    ccs: bool,
    cipher: Option<RecordCipher>,
    seq: u64,
    s13: Option<Secrets13>,
    /// Lost bytes after encryption began: find the next record again.
    lost: bool,
    ok: u64,
    failed: u64,
}

impl Dir {
    fn new() -> Self {
        Dir {
            bytes: OrderedBytes::new(DIRECTION_CAP),
            hs: Vec::new(),
            ccs: false,
            cipher: None,
            seq: 0,
            s13: None,
            lost: false,
            ok: 0,
            failed: 0,
        }
    }
}

/// Counters of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    pub records_decrypted: u64,
    pub records_failed: u64,
    /// Ciphertext bytes dropped (gaps, buffer cap, undecryptable).
    pub bytes_dropped: u64,
}

/// See the module docs.
pub struct TlsConnection {
    server: Option<SocketAddr>,
    dirs: [Dir; 2],
    client_hello: Option<ClientHello>,
    server_hello: Option<ServerHello>,
    suite: Option<&'static Suite>,
    /// TLS 1.2: a ClientKeyExchange was seen (a full handshake), with the
    /// RSA-encrypted pre-master secret if the suite uses RSA key exchange.
    full_handshake: bool,
    encrypted_premaster: Option<Vec<u8>>,
    master: Option<[u8; 48]>,
    /// TLS 1.2 handshake messages through ClientKeyExchange (RFC 7627).
    transcript: Vec<u8>,
    session_hash: Option<Vec<u8>>,
    new_ticket: Option<Vec<u8>>,
    status: TlsStatus,
    /// Key generation of the last failed key lookup: no retry until it
    /// changes.
    tried_generation: Option<u64>,
    out: Vec<u8>,
    scratch: Vec<u8>,
}

impl TlsConnection {
    /// `server`: the server's address, to pick its RSA key.
    pub fn new(server: Option<SocketAddr>) -> Self {
        TlsConnection {
            server,
            dirs: [Dir::new(), Dir::new()],
            client_hello: None,
            server_hello: None,
            suite: None,
            full_handshake: false,
            encrypted_premaster: None,
            master: None,
            transcript: Vec::new(),
            session_hash: None,
            new_ticket: None,
            status: TlsStatus::Handshake,
            tried_generation: None,
            out: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn status(&self) -> TlsStatus {
        self.status
    }

    /// The ClientHello random (names the connection in a key log).
    pub fn client_random(&self) -> Option<&[u8; 32]> {
        self.client_hello.as_ref().map(|c| &c.random)
    }

    pub fn suite(&self) -> Option<&'static Suite> {
        self.suite
    }

    /// TLS 1.3 (else 1.2, once the ServerHello is known).
    pub fn is_tls13(&self) -> bool {
        self.server_hello
            .as_ref()
            .is_some_and(|h| h.version == 0x0304)
    }

    pub fn stats(&self) -> TlsStats {
        let d = &self.dirs;
        TlsStats {
            records_decrypted: d[0].ok + d[1].ok,
            records_failed: d[0].failed + d[1].failed,
            bytes_dropped: d[0].bytes.stats().bytes_dropped + d[1].bytes.stats().bytes_dropped,
        }
    }

    /// The application data the last [`TlsConnection::push`] gave.
    pub fn last_plaintext(&self) -> &[u8] {
        &self.out
    }

    /// Ciphertext of `side` still held (waiting for keys, or a partial
    /// record).
    pub fn held(&self, side: Side) -> usize {
        self.dirs
            .get(side.idx())
            .map_or(0, |d| d.bytes.data().len())
    }

    /// One TCP segment from `side`: the application data it (and records
    /// that were waiting) decrypted to. With an empty payload, retries
    /// records waiting for keys.
    pub fn push(&mut self, side: Side, seq: u32, payload: &[u8], keys: &mut TlsKeys) -> &[u8] {
        self.out.clear();
        let i = side.idx();
        if let Some(d) = self.dirs.get_mut(i)
            && d.bytes.push(seq, payload) == Pushed::Discontinuity
        {
            d.hs.clear();
            d.lost = d.cipher.is_some() || d.ccs;
        }
        self.drain(side, keys);
        &self.out
    }

    /// Reads every whole record of `side` that can be read now.
    fn drain(&mut self, side: Side, keys: &mut TlsKeys) {
        let i = side.idx();
        loop {
            let Some(d) = self.dirs.get_mut(i) else {
                return;
            };
            if d.lost && !self.resync(side, keys) {
                return;
            }
            let Some(d) = self.dirs.get_mut(i) else {
                return;
            };
            let data = d.bytes.data();
            let rec = match Record::new_checked(data) {
                Ok(r) => r,
                Err(WireError::Truncated { .. }) => return,
                Err(WireError::BadHeader { .. }) => {
                    self.not_records(side);
                    continue;
                }
            };
            let (header, len) = (rec.header(), rec.record_len());
            let fragment = rec.fragment().to_vec();
            if self.encrypted(side, header[0]) {
                if !self.ensure_cipher(side, keys) {
                    if self.status.is_failure() && self.status != TlsStatus::NoKey {
                        if let Some(d) = self.dirs.get_mut(i) {
                            d.bytes.discard(len);
                        }
                        continue;
                    }
                    // Waiting for keys: the record stays.
                    return;
                }
                self.decrypt(side, &header, &fragment);
            } else {
                self.plaintext(side, header[0], &fragment, keys);
            }
            if let Some(d) = self.dirs.get_mut(i) {
                d.bytes.consume(len);
            }
        }
    }

    /// Bytes that do not parse as a record header: before anything was
    /// read this is not TLS; later, a lost record boundary.
    fn not_records(&mut self, side: Side) {
        let nothing_yet = self.client_hello.is_none() && self.server_hello.is_none();
        let Some(d) = self.dirs.get_mut(side.idx()) else {
            return;
        };
        if nothing_yet {
            self.status = TlsStatus::NotTls;
            let n = d.bytes.data().len();
            d.bytes.discard(n);
        } else {
            d.lost = true;
        }
    }

    /// Whether a record of content type `ty` from `side` is encrypted.
    fn encrypted(&self, side: Side, ty: u8) -> bool {
        if self.is_tls13() {
            // After the ServerHello everything but (compatibility)
            // ChangeCipherSpec travels as application_data.
            ty == content_type::APPLICATION_DATA
        } else {
            self.dirs.get(side.idx()).is_some_and(|d| d.ccs)
        }
    }

    /// A record in the clear: handshake messages, ChangeCipherSpec.
    fn plaintext(&mut self, side: Side, ty: u8, fragment: &[u8], keys: &mut TlsKeys) {
        match ty {
            content_type::HANDSHAKE => {
                if let Some(d) = self.dirs.get_mut(side.idx()) {
                    d.hs.extend_from_slice(fragment);
                }
                self.handshake_messages(side, keys);
            }
            content_type::CHANGE_CIPHER_SPEC if !self.is_tls13() => {
                if let Some(d) = self.dirs.get_mut(side.idx()) {
                    d.ccs = true;
                    d.seq = 0;
                }
            }
            // Application data before any cipher change: the capture began
            // after the handshake.
            content_type::APPLICATION_DATA if self.server_hello.is_none() => {
                self.status = TlsStatus::NoHandshake;
            }
            _ => {}
        }
    }

    /// Every whole handshake message buffered for `side`.
    fn handshake_messages(&mut self, side: Side, keys: &mut TlsKeys) {
        loop {
            let Some(d) = self.dirs.get_mut(side.idx()) else {
                return;
            };
            let Some((ty, body, n)) = record::handshake_message(&d.hs) else {
                if record::handshake_len(&d.hs).is_some_and(|n| n > MAX_TRANSCRIPT) {
                    d.hs.clear();
                }
                return;
            };
            let (body, whole) = (body.to_vec(), d.hs.get(..n).unwrap_or(&[]).to_vec());
            d.hs.drain(..n.min(d.hs.len()));
            self.handshake_message(ty, &body, &whole, keys);
        }
    }

    fn handshake_message(&mut self, ty: u8, body: &[u8], whole: &[u8], keys: &mut TlsKeys) {
        if self.session_hash.is_none() && self.transcript.len() + whole.len() <= MAX_TRANSCRIPT {
            self.transcript.extend_from_slice(whole);
        }
        match ty {
            handshake_type::CLIENT_HELLO => {
                if let Some(ch) = record::client_hello(body) {
                    // A second ClientHello (after HelloRetryRequest) starts
                    // the transcript over in TLS 1.3's terms; 1.2 has none.
                    self.client_hello = Some(ch);
                }
            }
            handshake_type::SERVER_HELLO => {
                if let Some(sh) = record::server_hello(body).filter(|h| !h.retry_request) {
                    self.suite = suite::by_id(sh.suite);
                    self.server_hello = Some(sh);
                }
            }
            handshake_type::CLIENT_KEY_EXCHANGE => {
                self.full_handshake = true;
                self.encrypted_premaster =
                    record::rsa_encrypted_premaster(body).map(<[u8]>::to_vec);
                if let Some(s) = self.suite {
                    self.session_hash = Some(digest(s.prf, &self.transcript));
                }
                self.transcript = Vec::new();
            }
            handshake_type::NEW_SESSION_TICKET if !self.is_tls13() => {
                self.new_ticket = record::new_session_ticket12(body).map(<[u8]>::to_vec);
                self.remember(keys);
            }
            _ => {}
        }
    }

    /// Whether `side` has a cipher, deriving both directions' keys if the
    /// handshake and the keys allow.
    fn ensure_cipher(&mut self, side: Side, keys: &mut TlsKeys) -> bool {
        if self
            .dirs
            .get(side.idx())
            .is_some_and(|d| d.cipher.is_some())
        {
            return true;
        }
        if self.status.is_failure() && self.status != TlsStatus::NoKey {
            return false;
        }
        if self.tried_generation == Some(keys.generation()) {
            return false;
        }
        self.tried_generation = Some(keys.generation());
        self.status = match self.derive(keys) {
            Ok(()) => TlsStatus::Handshake,
            Err(s) => s,
        };
        self.dirs
            .get(side.idx())
            .is_some_and(|d| d.cipher.is_some())
    }

    fn derive(&mut self, keys: &mut TlsKeys) -> Result<(), TlsStatus> {
        let (Some(ch), Some(sh)) = (&self.client_hello, &self.server_hello) else {
            return Err(TlsStatus::NoHandshake);
        };
        let suite = self.suite.ok_or(TlsStatus::UnsupportedSuite(sh.suite))?;
        match sh.version {
            0x0304 if suite.tls13 => self.derive13(suite, keys),
            0x0303 if !suite.tls13 => {
                let (cr, sr) = (ch.random, sh.random);
                let ms = self.master12(suite, keys).ok_or(TlsStatus::NoKey)?;
                self.install12(suite, &ms, &cr, &sr);
                self.master = Some(ms);
                self.remember(keys);
                Ok(())
            }
            0x0304 | 0x0303 => Err(TlsStatus::UnsupportedSuite(sh.suite)),
            v => Err(TlsStatus::UnsupportedVersion(v)),
        }
    }

    fn derive13(&mut self, suite: &'static Suite, keys: &TlsKeys) -> Result<(), TlsStatus> {
        let cr = self.client_random().ok_or(TlsStatus::NoHandshake)?;
        let s = keys.keylog().get(cr).ok_or(TlsStatus::NoKey)?;
        let pairs = [
            (&s.client_handshake, &s.client_traffic),
            (&s.server_handshake, &s.server_traffic),
        ];
        let mut any = false;
        for (d, (hs, app)) in self.dirs.iter_mut().zip(pairs) {
            let (current, next) = match (hs, app) {
                (Some(h), a) => (h.clone(), a.clone()),
                (None, Some(a)) => (a.clone(), None),
                (None, None) => continue,
            };
            d.cipher = RecordCipher::tls13(suite, &current);
            d.s13 = Some(Secrets13 { current, next });
            any |= d.cipher.is_some();
        }
        if any { Ok(()) } else { Err(TlsStatus::NoKey) }
    }

    /// The TLS 1.2 master secret: key log, remembered session, or the RSA
    /// pre-master secret.
    fn master12(&self, suite: &Suite, keys: &TlsKeys) -> Option<[u8; 48]> {
        let ch = self.client_hello.as_ref()?;
        let sh = self.server_hello.as_ref()?;
        if let Some(ms) = keys.keylog().get(&ch.random).and_then(|s| s.master) {
            return Some(ms);
        }
        if !self.full_handshake {
            // An abbreviated handshake resumes a session seen before.
            return keys
                .session(&ch.ticket)
                .or_else(|| {
                    (ch.session_id == sh.session_id)
                        .then(|| keys.session(&sh.session_id))
                        .flatten()
                })
                .copied();
        }
        let enc = self
            .encrypted_premaster
            .as_deref()
            .filter(|_| suite.rsa_kx)?;
        let pms = keys.rsa_premaster(self.server, enc)?;
        let hash = self
            .session_hash
            .as_deref()
            .filter(|_| sh.extended_master_secret);
        Some(master_secret(suite.prf, &pms, &ch.random, &sh.random, hash))
    }

    /// Both directions' TLS 1.2 ciphers from the key block (RFC 5246 6.3).
    fn install12(&mut self, suite: &Suite, ms: &[u8; 48], cr: &[u8; 32], sr: &[u8; 32]) {
        let mac = suite.mac.map_or(0, |h| h.output_len());
        let key = suite.bulk.key_len();
        let iv = suite.bulk.fixed_iv_len_12();
        let kb = prf12(
            suite.prf,
            ms,
            b"key expansion",
            &[sr, cr],
            2 * (mac + key + iv),
        );
        let part = |at: usize, n: usize| kb.get(at..at + n).unwrap_or(&[]);
        let etm = self
            .server_hello
            .as_ref()
            .is_some_and(|h| h.encrypt_then_mac);
        let [c, s] = &mut self.dirs;
        c.cipher = RecordCipher::tls12(
            suite,
            part(0, mac),
            part(2 * mac, key),
            part(2 * (mac + key), iv),
            etm,
        );
        s.cipher = RecordCipher::tls12(
            suite,
            part(mac, mac),
            part(2 * mac + key, key),
            part(2 * (mac + key) + iv, iv),
            etm,
        );
    }

    /// Keeps the session's master secret for a later resumption.
    fn remember(&self, keys: &mut TlsKeys) {
        let (Some(sh), Some(ms)) = (&self.server_hello, &self.master) else {
            return;
        };
        keys.remember_session(&sh.session_id, ms);
        if let Some(t) = &self.new_ticket {
            keys.remember_session(t, ms);
        }
    }

    /// Decrypts one record of `side` (its cipher is set).
    fn decrypt(&mut self, side: Side, header: &[u8; 5], fragment: &[u8]) {
        let Some(d) = self.dirs.get_mut(side.idx()) else {
            return;
        };
        let mut ty = d
            .cipher
            .as_ref()
            .and_then(|c| c.open(d.seq, header, fragment, &mut self.scratch));
        if ty.is_none() && self.suite.is_some_and(|s| s.tls13) {
            ty = self.next_secret13(side, header, fragment);
        }
        let Some(d) = self.dirs.get_mut(side.idx()) else {
            return;
        };
        let Some(ty) = ty else {
            d.failed += 1;
            d.seq += 1;
            if d.ok == 0 {
                self.status = TlsStatus::WrongKey;
            }
            return;
        };
        d.ok += 1;
        d.seq += 1;
        self.status = TlsStatus::Decrypted;
        match ty {
            content_type::APPLICATION_DATA => self.out.extend_from_slice(&self.scratch),
            content_type::HANDSHAKE if self.is_tls13() => self.handshake13(side),
            _ => {}
        }
    }

    /// TLS 1.3 handshake messages that change keys: after Finished the
    /// application secret, after KeyUpdate the next one.
    fn handshake13(&mut self, side: Side) {
        let Some(suite) = self.suite else { return };
        let mut rest = self.scratch.as_slice();
        let mut switch = false;
        while let Some((ty, _, n)) = record::handshake_message(rest) {
            switch |= matches!(ty, handshake_type::FINISHED | handshake_type::KEY_UPDATE);
            rest = rest.get(n..).unwrap_or(&[]);
        }
        if switch
            && let Some(d) = self.dirs.get_mut(side.idx())
            && let Some(s) = d.s13.as_mut()
            && let Some(next) = s.next.take()
        {
            s.next = Some(hkdf_expand_label(
                suite.prf,
                &next,
                b"traffic upd",
                b"",
                suite.prf.output_len(),
            ));
            d.cipher = RecordCipher::tls13(suite, &next);
            s.current = next;
            d.seq = 0;
        }
    }

    /// The record did not open with the current secret: try the next one
    /// (a Finished or KeyUpdate we did not see decrypt), from sequence 0.
    fn next_secret13(&mut self, side: Side, header: &[u8; 5], fragment: &[u8]) -> Option<u8> {
        let suite = self.suite?;
        let d = self.dirs.get_mut(side.idx())?;
        let s = d.s13.as_mut()?;
        let next = s.next.clone()?;
        let c = RecordCipher::tls13(suite, &next)?;
        let ty = c.open(0, header, fragment, &mut self.scratch)?;
        s.next = Some(hkdf_expand_label(
            suite.prf,
            &next,
            b"traffic upd",
            b"",
            suite.prf.output_len(),
        ));
        s.current = next;
        d.cipher = Some(c);
        d.seq = 0;
        Some(ty)
    }

    /// After lost bytes in an encrypted direction: the first offset where a
    /// whole record opens with a sequence number a little ahead of ours.
    /// False when more bytes are needed.
    fn resync(&mut self, side: Side, keys: &mut TlsKeys) -> bool {
        if !self.ensure_cipher(side, keys) {
            // Without keys nothing tells a record boundary from noise: drop.
            if let Some(d) = self.dirs.get_mut(side.idx()) {
                let n = d.bytes.data().len();
                d.bytes.discard(n);
            }
            return false;
        }
        let Some(d) = self.dirs.get_mut(side.idx()) else {
            return false;
        };
        let Some(c) = d.cipher.as_ref() else {
            return false;
        };
        let data = d.bytes.data();
        for at in 0..data.len() {
            let Ok(rec) = Record::new_checked(data.get(at..).unwrap_or(&[])) else {
                continue;
            };
            let (header, fragment) = (rec.header(), rec.fragment());
            let hit = (0..MAX_SEQ_SKIP)
                .map(|k| d.seq + k)
                .find(|&seq| c.open(seq, &header, fragment, &mut self.scratch).is_some());
            if let Some(seq) = hit {
                d.seq = seq;
                d.bytes.discard(at);
                d.lost = false;
                return true;
            }
        }
        // Keep a tail that may hold the start of the next record.
        let keep = data.len().min(record::HEADER_LEN + record::MAX_FRAGMENT);
        let drop = data.len() - keep;
        d.bytes.discard(drop);
        false
    }
}
