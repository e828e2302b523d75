//! The cipher suites we decrypt: TLS 1.3's three, and the TLS 1.2 AEAD and
//! AES-CBC suites SIP trunks and phones negotiate (RSA, DHE and ECDHE key
//! exchange; the key exchange only matters for the RSA-key path, since a key
//! log gives the master secret whatever the exchange was).

/// A hash: the PRF's / HKDF's, or a CBC suite's MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
}

impl Hash {
    /// Digest (and HMAC) length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

/// The record protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bulk {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
    Aes128Cbc,
    Aes256Cbc,
}

impl Bulk {
    pub fn key_len(self) -> usize {
        match self {
            Bulk::Aes128Gcm | Bulk::Aes128Cbc => 16,
            Bulk::Aes256Gcm | Bulk::ChaCha20Poly1305 | Bulk::Aes256Cbc => 32,
        }
    }

    /// The implicit IV of TLS 1.2's key block (RFC 5288: 4 bytes for GCM;
    /// RFC 7905: 12 for ChaCha20; none for CBC, whose IV is explicit).
    pub fn fixed_iv_len_12(self) -> usize {
        match self {
            Bulk::Aes128Gcm | Bulk::Aes256Gcm => 4,
            Bulk::ChaCha20Poly1305 => 12,
            Bulk::Aes128Cbc | Bulk::Aes256Cbc => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    pub id: u16,
    pub name: &'static str,
    pub bulk: Bulk,
    /// CBC suites' MAC (None for AEAD).
    pub mac: Option<Hash>,
    /// The PRF (TLS 1.2) or HKDF (TLS 1.3) hash.
    pub prf: Hash,
    pub tls13: bool,
    /// RSA key exchange: an RSA private key of the server can decrypt it.
    pub rsa_kx: bool,
}

const fn s(
    id: u16,
    name: &'static str,
    bulk: Bulk,
    mac: Option<Hash>,
    prf: Hash,
    rsa_kx: bool,
) -> Suite {
    Suite {
        id,
        name,
        bulk,
        mac,
        prf,
        tls13: false,
        rsa_kx,
    }
}

const fn t13(id: u16, name: &'static str, bulk: Bulk, prf: Hash) -> Suite {
    Suite {
        id,
        name,
        bulk,
        mac: None,
        prf,
        tls13: true,
        rsa_kx: false,
    }
}

use Bulk::*;
use Hash::*;

const SUITES: &[Suite] = &[
    t13(0x1301, "TLS_AES_128_GCM_SHA256", Aes128Gcm, Sha256),
    t13(0x1302, "TLS_AES_256_GCM_SHA384", Aes256Gcm, Sha384),
    t13(
        0x1303,
        "TLS_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        Sha256,
    ),
    s(
        0x009C,
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        None,
        Sha256,
        true,
    ),
    s(
        0x009D,
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        None,
        Sha384,
        true,
    ),
    s(
        0x009E,
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        None,
        Sha256,
        false,
    ),
    s(
        0x009F,
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        None,
        Sha384,
        false,
    ),
    s(
        0xC02B,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        None,
        Sha256,
        false,
    ),
    s(
        0xC02C,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        None,
        Sha384,
        false,
    ),
    s(
        0xC02F,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Aes128Gcm,
        None,
        Sha256,
        false,
    ),
    s(
        0xC030,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Aes256Gcm,
        None,
        Sha384,
        false,
    ),
    s(
        0xCCA8,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        None,
        Sha256,
        false,
    ),
    s(
        0xCCA9,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        None,
        Sha256,
        false,
    ),
    s(
        0xCCAA,
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ChaCha20Poly1305,
        None,
        Sha256,
        false,
    ),
    s(
        0x002F,
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        Aes128Cbc,
        Some(Sha1),
        Sha256,
        true,
    ),
    s(
        0x0035,
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        Aes256Cbc,
        Some(Sha1),
        Sha256,
        true,
    ),
    s(
        0x003C,
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        Aes128Cbc,
        Some(Sha256),
        Sha256,
        true,
    ),
    s(
        0x003D,
        "TLS_RSA_WITH_AES_256_CBC_SHA256",
        Aes256Cbc,
        Some(Sha256),
        Sha256,
        true,
    ),
    s(
        0x0033,
        "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        Aes128Cbc,
        Some(Sha1),
        Sha256,
        false,
    ),
    s(
        0x0039,
        "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        Aes256Cbc,
        Some(Sha1),
        Sha256,
        false,
    ),
    s(
        0x0067,
        "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        Aes128Cbc,
        Some(Sha256),
        Sha256,
        false,
    ),
    s(
        0x006B,
        "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        Aes256Cbc,
        Some(Sha256),
        Sha256,
        false,
    ),
    s(
        0xC009,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        Aes128Cbc,
        Some(Sha1),
        Sha256,
        false,
    ),
    s(
        0xC00A,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        Aes256Cbc,
        Some(Sha1),
        Sha256,
        false,
    ),
    s(
        0xC013,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        Aes128Cbc,
        Some(Sha1),
        Sha256,
        false,
    ),
    s(
        0xC014,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        Aes256Cbc,
        Some(Sha1),
        Sha256,
        false,
    ),
    s(
        0xC023,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        Aes128Cbc,
        Some(Sha256),
        Sha256,
        false,
    ),
    s(
        0xC024,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        Aes256Cbc,
        Some(Sha384),
        Sha384,
        false,
    ),
    s(
        0xC027,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        Aes128Cbc,
        Some(Sha256),
        Sha256,
        false,
    ),
    s(
        0xC028,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        Aes256Cbc,
        Some(Sha384),
        Sha384,
        false,
    ),
];

/// The suite with IANA number `id`, if we decrypt it.
pub fn by_id(id: u16) -> Option<&'static Suite> {
    SUITES.iter().find(|s| s.id == id)
}
