//! Record decryption: TLS 1.3 AEAD records (RFC 8446 section 5.2), TLS 1.2
//! AES-GCM (RFC 5288), ChaCha20-Poly1305 (RFC 7905) and AES-CBC with
//! HMAC, MAC-then-encrypt or encrypt-then-MAC (RFC 5246 6.2.3.2, RFC 7366).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};
use chacha20poly1305::ChaCha20Poly1305;

use super::schedule::{hkdf_expand_label, hmac};
use super::suite::{Bulk, Hash, Suite};

const TAG_LEN: usize = 16;
const AES_BLOCK: usize = 16;

enum Aead {
    Gcm128(Box<Aes128Gcm>),
    Gcm256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Aead {
    fn new(bulk: Bulk, key: &[u8]) -> Option<Aead> {
        Some(match bulk {
            Bulk::Aes128Gcm => Aead::Gcm128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
            Bulk::Aes256Gcm => Aead::Gcm256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
            Bulk::ChaCha20Poly1305 => {
                Aead::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?))
            }
            Bulk::Aes128Cbc | Bulk::Aes256Cbc => return None,
        })
    }

    /// Decrypts `buf` (ciphertext and tag) in place; false when it does not
    /// authenticate.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> bool {
        let n = aes_gcm::Nonce::from_slice(nonce);
        match self {
            Aead::Gcm128(c) => c.decrypt_in_place(n, aad, buf).is_ok(),
            Aead::Gcm256(c) => c.decrypt_in_place(n, aad, buf).is_ok(),
            Aead::ChaCha(c) => c.decrypt_in_place(n, aad, buf).is_ok(),
        }
    }
}

enum Kind {
    /// TLS 1.3: nonce = iv XOR sequence number.
    Tls13 { aead: Aead, iv: [u8; 12] },
    /// TLS 1.2 GCM: nonce = 4-byte salt || 8-byte explicit nonce.
    Gcm12 { aead: Aead, salt: [u8; 4] },
    /// TLS 1.2 ChaCha20-Poly1305: like TLS 1.3's nonce.
    ChaCha12 { aead: Aead, iv: [u8; 12] },
    Cbc {
        key: Vec<u8>,
        mac: Hash,
        mac_key: Vec<u8>,
        etm: bool,
    },
}

/// One direction's record protection.
pub(crate) struct RecordCipher {
    kind: Kind,
}

fn xor_seq(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (d, s) in n.iter_mut().skip(4).zip(seq.to_be_bytes()) {
        *d ^= s;
    }
    n
}

impl RecordCipher {
    /// TLS 1.3 from a traffic secret.
    pub(crate) fn tls13(suite: &Suite, secret: &[u8]) -> Option<RecordCipher> {
        let key = hkdf_expand_label(suite.prf, secret, b"key", b"", suite.bulk.key_len());
        let iv = hkdf_expand_label(suite.prf, secret, b"iv", b"", 12);
        let iv: [u8; 12] = iv.as_slice().try_into().ok()?;
        Some(RecordCipher {
            kind: Kind::Tls13 {
                aead: Aead::new(suite.bulk, &key)?,
                iv,
            },
        })
    }

    /// TLS 1.2 from this direction's part of the key block.
    pub(crate) fn tls12(
        suite: &Suite,
        mac_key: &[u8],
        key: &[u8],
        iv: &[u8],
        etm: bool,
    ) -> Option<RecordCipher> {
        let kind = match (suite.bulk, suite.mac) {
            (Bulk::Aes128Gcm | Bulk::Aes256Gcm, _) => Kind::Gcm12 {
                aead: Aead::new(suite.bulk, key)?,
                salt: iv.try_into().ok()?,
            },
            (Bulk::ChaCha20Poly1305, _) => Kind::ChaCha12 {
                aead: Aead::new(suite.bulk, key)?,
                iv: iv.try_into().ok()?,
            },
            (Bulk::Aes128Cbc | Bulk::Aes256Cbc, Some(mac)) => Kind::Cbc {
                key: key.to_vec(),
                mac,
                mac_key: mac_key.to_vec(),
                etm,
            },
            (Bulk::Aes128Cbc | Bulk::Aes256Cbc, None) => return None,
        };
        Some(RecordCipher { kind })
    }

    /// Decrypts one record (`header` is its 5 bytes, `fragment` what follows)
    /// with sequence number `seq` into `out`; returns the content type of the
    /// plaintext (TLS 1.3: the inner one), or None when the record does not
    /// authenticate.
    pub(crate) fn open(
        &self,
        seq: u64,
        header: &[u8; 5],
        fragment: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<u8> {
        let (ty, version) = (header[0], [header[1], header[2]]);
        out.clear();
        match &self.kind {
            Kind::Tls13 { aead, iv } => {
                out.extend_from_slice(fragment);
                if !aead.open(&xor_seq(iv, seq), header, out) {
                    return None;
                }
                // TLSInnerPlaintext: content, type, zero padding.
                let end = out.iter().rposition(|b| *b != 0)?;
                let inner = *out.get(end)?;
                out.truncate(end);
                Some(inner)
            }
            Kind::Gcm12 { aead, salt } => {
                let explicit = fragment.get(..8)?;
                let body = fragment.get(8..)?;
                let plain_len = body.len().checked_sub(TAG_LEN)?;
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(salt);
                nonce[4..].copy_from_slice(explicit);
                out.extend_from_slice(body);
                let aad = aad12(seq, ty, version, plain_len);
                aead.open(&nonce, &aad, out).then_some(ty)
            }
            Kind::ChaCha12 { aead, iv } => {
                let plain_len = fragment.len().checked_sub(TAG_LEN)?;
                out.extend_from_slice(fragment);
                let aad = aad12(seq, ty, version, plain_len);
                aead.open(&xor_seq(iv, seq), &aad, out).then_some(ty)
            }
            Kind::Cbc {
                key,
                mac,
                mac_key,
                etm,
            } => cbc_open(key, *mac, mac_key, *etm, seq, ty, version, fragment, out).then_some(ty),
        }
    }
}

/// seq_num || type || version || length: TLS 1.2's AEAD additional data
/// and the start of its MAC input.
fn aad12(seq: u64, ty: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = ty;
    a[9..11].copy_from_slice(&version);
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// AES-CBC with an explicit IV (TLS 1.1+) and HMAC; the MAC covers the
/// plaintext (RFC 5246) or, with encrypt-then-MAC, the IV and ciphertext.
#[allow(clippy::too_many_arguments)]
fn cbc_open(
    key: &[u8],
    mac: Hash,
    mac_key: &[u8],
    etm: bool,
    seq: u64,
    ty: u8,
    version: [u8; 2],
    fragment: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let mac_len = mac.output_len();
    let mut enc = fragment;
    if etm {
        let Some(split) = fragment.len().checked_sub(mac_len) else {
            return false;
        };
        let (e, tag) = fragment.split_at(split);
        if hmac(mac, mac_key, &[&aad12(seq, ty, version, e.len()), e]) != tag {
            return false;
        }
        enc = e;
    }
    if enc.len() < 2 * AES_BLOCK || !enc.len().is_multiple_of(AES_BLOCK) {
        return false;
    }
    let (iv, ct) = enc.split_at(AES_BLOCK);
    out.extend_from_slice(ct);
    let ok = match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()
            .and_then(|d| d.decrypt_padded_mut::<NoPadding>(out).ok().map(|_| ())),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()
            .and_then(|d| d.decrypt_padded_mut::<NoPadding>(out).ok().map(|_| ())),
        _ => None,
    };
    if ok.is_none() {
        return false;
    }
    // Padding: the last byte says how many bytes before it are padding, each
    // holding the same value.
    let Some(&pad) = out.last() else { return false };
    let pad_total = usize::from(pad) + 1;
    let Some(content_end) = out.len().checked_sub(pad_total) else {
        return false;
    };
    if out
        .get(content_end..)
        .is_none_or(|p| p.iter().any(|b| *b != pad))
    {
        return false;
    }
    out.truncate(content_end);
    if etm {
        return true;
    }
    let Some(split) = out.len().checked_sub(mac_len) else {
        return false;
    };
    let expected = hmac(
        mac,
        mac_key,
        &[
            &aad12(seq, ty, version, split),
            out.get(..split).unwrap_or(&[]),
        ],
    );
    let ok = out.get(split..) == Some(expected.as_slice());
    out.truncate(split);
    ok
}
