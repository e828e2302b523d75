//! The TLS record layer's header (RFC 8446 section 5.1, RFC 5246 6.2) and
//! the handshake messages we read: ClientHello and ServerHello (randoms,
//! session, suite, version, the extensions that change the key schedule),
//! ClientKeyExchange (an RSA-encrypted pre-master secret) and
//! NewSessionTicket.

use crate::wire::{Emit, WireError, be16, byte, emit_target, put_byte, put16, range};

pub const HEADER_LEN: usize = 5;
/// The longest record fragment any version allows (2^14 + 2048).
pub const MAX_FRAGMENT: usize = 16384 + 2048;

const L: &str = "tls";

pub mod content_type {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
    pub const HEARTBEAT: u8 = 24;
}

pub mod handshake_type {
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const NEW_SESSION_TICKET: u8 = 4;
    pub const FINISHED: u8 = 20;
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
    pub const KEY_UPDATE: u8 = 24;
}

/// One whole record.
#[derive(Clone, Copy, Debug)]
pub struct Record<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Record<T> {
    /// The record at the start of `buf`: `Truncated` until all of it is
    /// there; `BadHeader` when the header cannot be TLS (content type,
    /// version 3.x, length).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated { layer: L });
        }
        if !(content_type::CHANGE_CIPHER_SPEC..=content_type::HEARTBEAT).contains(&byte(b, 0)) {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "unknown content type",
            });
        }
        if byte(b, 1) != 3 {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "version is not 3.x",
            });
        }
        let len = usize::from(be16(b, 3));
        if len > MAX_FRAGMENT {
            return Err(WireError::BadHeader {
                layer: L,
                reason: "record longer than 2^14 + 2048",
            });
        }
        if b.len() < HEADER_LEN + len {
            return Err(WireError::Truncated { layer: L });
        }
        Ok(Record { buf })
    }

    pub fn content_type(&self) -> u8 {
        byte(self.buf.as_ref(), 0)
    }

    pub fn version(&self) -> u16 {
        be16(self.buf.as_ref(), 1)
    }

    pub fn len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 3))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Header and fragment.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + self.len()
    }

    pub fn header(&self) -> [u8; HEADER_LEN] {
        crate::wire::bytes_at(self.buf.as_ref(), 0).unwrap_or([0; HEADER_LEN])
    }

    pub fn fragment(&self) -> &[u8] {
        range(self.buf.as_ref(), HEADER_LEN, self.record_len())
    }
}

/// A record header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub content_type: u8,
    pub version: u16,
    pub length: usize,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(r: &Record<T>) -> Repr {
        Repr {
            content_type: r.content_type(),
            version: r.version(),
            length: r.len(),
        }
    }
}

impl Emit for Repr {
    fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = u16::try_from(self.length)
            .ok()
            .filter(|l| usize::from(*l) <= MAX_FRAGMENT)
            .ok_or(WireError::BadHeader {
                layer: L,
                reason: "record longer than 2^14 + 2048",
            })?;
        let b = emit_target(buf, HEADER_LEN, L)?;
        put_byte(b, 0, self.content_type);
        put16(b, 1, self.version);
        put16(b, 3, len);
        Ok(())
    }
}

/// A cursor over handshake message bytes; every read is bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (h, t) = (self.b.get(..n)?, self.b.get(n..)?);
        self.b = t;
        Some(h)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn random(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
}

/// One handshake message at the start of `b`: (type, body, whole length),
/// None until all of it is there.
pub fn handshake_message(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let ty = *b.first()?;
    let len =
        (usize::from(*b.get(1)?) << 16) | (usize::from(*b.get(2)?) << 8) | usize::from(*b.get(3)?);
    let body = b.get(4..4 + len)?;
    Some((ty, body, 4 + len))
}

/// The length a handshake message at the start of `b` says it has (with
/// its 4-byte header), once the header is there.
pub fn handshake_len(b: &[u8]) -> Option<usize> {
    let len =
        (usize::from(*b.get(1)?) << 16) | (usize::from(*b.get(2)?) << 8) | usize::from(*b.get(3)?);
    Some(4 + len)
}

mod ext {
    pub const SESSION_TICKET: u16 = 0x0023;
    pub const ENCRYPT_THEN_MAC: u16 = 0x0016;
    pub const EXTENDED_MASTER_SECRET: u16 = 0x0017;
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    /// The session_ticket extension's contents (resumption by ticket).
    pub ticket: Vec<u8>,
}

pub fn client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut c = Cursor { b: body };
    c.u16()?;
    let random = c.random()?;
    let session_id = c.vec8()?.to_vec();
    c.vec16()?; // cipher suites
    c.vec8()?; // compression methods
    let mut ticket = Vec::new();
    if let Some(exts) = c.vec16() {
        let mut e = Cursor { b: exts };
        while let (Some(ty), Some(data)) = (e.u16(), e.vec16()) {
            if ty == ext::SESSION_TICKET {
                ticket = data.to_vec();
            }
        }
    }
    Some(ClientHello {
        random,
        session_id,
        ticket,
    })
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub suite: u16,
    /// The negotiated version: supported_versions if present, else the
    /// legacy field (0x0303 = TLS 1.2, 0x0304 = TLS 1.3).
    pub version: u16,
    pub extended_master_secret: bool,
    pub encrypt_then_mac: bool,
    /// A HelloRetryRequest (RFC 8446 4.1.3): a second ClientHello follows.
    pub retry_request: bool,
}

/// SHA-256("HelloRetryRequest"): the random of a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

pub fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut c = Cursor { b: body };
    let legacy = c.u16()?;
    let random = c.random()?;
    let session_id = c.vec8()?.to_vec();
    let suite = c.u16()?;
    c.u8()?;
    let mut h = ServerHello {
        random,
        session_id,
        suite,
        version: legacy,
        retry_request: random == HRR_RANDOM,
        ..ServerHello::default()
    };
    if let Some(exts) = c.vec16() {
        let mut e = Cursor { b: exts };
        while let (Some(ty), Some(data)) = (e.u16(), e.vec16()) {
            match ty {
                ext::SUPPORTED_VERSIONS => {
                    if let Some(v) = (Cursor { b: data }).u16() {
                        h.version = v;
                    }
                }
                ext::EXTENDED_MASTER_SECRET => h.extended_master_secret = true,
                ext::ENCRYPT_THEN_MAC => h.encrypt_then_mac = true,
                _ => {}
            }
        }
    }
    Some(h)
}

/// The client random of a ClientHello at the start of a TCP payload (its
/// first record), if the payload holds that far.
pub fn client_hello_random(payload: &[u8]) -> Option<[u8; 32]> {
    let fragment = payload.get(HEADER_LEN..)?;
    (*fragment.first()? == handshake_type::CLIENT_HELLO).then_some(())?;
    fragment.get(6..38)?.try_into().ok()
}

/// The RSA-encrypted pre-master secret of a ClientKeyExchange (TLS 1.0+:
/// a 2-byte length, then the ciphertext).
pub fn rsa_encrypted_premaster(body: &[u8]) -> Option<&[u8]> {
    let mut c = Cursor { b: body };
    let v = c.vec16()?;
    c.b.is_empty().then_some(v)
}

/// The ticket of a TLS 1.2 NewSessionTicket (lifetime hint, ticket).
pub fn new_session_ticket12(body: &[u8]) -> Option<&[u8]> {
    let mut c = Cursor { b: body };
    c.take(4)?;
    c.vec16()
}
