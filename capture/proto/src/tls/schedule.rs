//! Key schedules: TLS 1.2's PRF (RFC 5246 section 5) for the master secret
//! and key block, and TLS 1.3's HKDF-Expand-Label (RFC 8446 section 7.1)
//! for traffic keys and key updates.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384};

use super::suite::Hash;

/// HMAC of the concatenation of `parts`.
pub(crate) fn hmac(hash: Hash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut m) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match hash {
        Hash::Sha1 => run::<Hmac<Sha1>>(key, parts),
        Hash::Sha256 => run::<Hmac<Sha256>>(key, parts),
        Hash::Sha384 => run::<Hmac<Sha384>>(key, parts),
    }
}

pub(crate) fn digest(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => Sha1::digest(data).to_vec(),
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha384 => Sha384::digest(data).to_vec(),
    }
}

/// TLS 1.2 PRF: P_hash(secret, label + seed) cut to `len` bytes.
pub fn prf12(hash: Hash, secret: &[u8], label: &[u8], seed: &[&[u8]], len: usize) -> Vec<u8> {
    let mut label_seed = label.to_vec();
    for s in seed {
        label_seed.extend_from_slice(s);
    }
    let mut out = Vec::with_capacity(len + hash.output_len());
    // A(1) = HMAC(secret, label_seed); A(i) = HMAC(secret, A(i-1)).
    let mut a = hmac(hash, secret, &[&label_seed]);
    while out.len() < len {
        out.extend(hmac(hash, secret, &[&a, &label_seed]));
        a = hmac(hash, secret, &[&a]);
    }
    out.truncate(len);
    out
}

/// The master secret from a pre-master secret: RFC 5246 8.1, or the
/// extended master secret of RFC 7627 over `session_hash`.
pub fn master_secret(
    hash: Hash,
    premaster: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    session_hash: Option<&[u8]>,
) -> [u8; 48] {
    let v = match session_hash {
        Some(h) => prf12(hash, premaster, b"extended master secret", &[h], 48),
        None => prf12(
            hash,
            premaster,
            b"master secret",
            &[client_random, server_random],
            48,
        ),
    };
    let mut ms = [0u8; 48];
    for (d, s) in ms.iter_mut().zip(v) {
        *d = s;
    }
    ms
}

/// HKDF-Expand-Label(secret, label, context, len) of TLS 1.3.
pub fn hkdf_expand_label(
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    len: usize,
) -> Vec<u8> {
    let full = [b"tls13 ".as_slice(), label].concat();
    let mut info = Vec::with_capacity(4 + full.len() + context.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(&full);
    info.push(context.len() as u8);
    info.extend_from_slice(context);
    let mut out = vec![0u8; len];
    let ok = match hash {
        Hash::Sha256 => hkdf::Hkdf::<Sha256>::from_prk(secret)
            .ok()
            .and_then(|h| h.expand(&info, &mut out).ok()),
        Hash::Sha384 => hkdf::Hkdf::<Sha384>::from_prk(secret)
            .ok()
            .and_then(|h| h.expand(&info, &mut out).ok()),
        Hash::Sha1 => None,
    };
    if ok.is_none() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The TLS 1.2 PRF test vector (SHA-256) published on the IETF TLS list
    /// and used by NSS and Go's crypto/tls.
    #[test]
    fn prf_sha256_vector() {
        let secret = hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let out = prf12(Hash::Sha256, &secret, b"test label", &[&seed], 100);
        assert_eq!(
            out,
            hex("e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
                 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
                 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
                 87 34 7b 66")
        );
    }

    /// RFC 8448 section 3 (simple 1-RTT handshake): the server's handshake
    /// traffic secret gives the server's handshake key and IV.
    #[test]
    fn hkdf_expand_label_rfc8448() {
        let s_hs = hex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
        );
        assert_eq!(
            hkdf_expand_label(Hash::Sha256, &s_hs, b"key", b"", 16),
            hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(
            hkdf_expand_label(Hash::Sha256, &s_hs, b"iv", b"", 12),
            hex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
        );
    }
}
