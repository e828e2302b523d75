//! The Internet checksum (RFC 1071): the 16-bit ones'-complement sum used by
//! the IPv4 header, UDP and TCP, with the IPv4 and IPv6 pseudo-headers
//! (RFC 768, RFC 9293, RFC 8200 section 8.1). The one implementation in
//! voxtap: the views' `fill_checksum`/`verify_checksum` use it.
//!
//! Sums are kept folded to 16 bits and not complemented, so they combine:
//! the checksum field is `!combine(&[pseudo_header(..), data(segment)])`,
//! and a segment verifies when the same sum over it (checksum included) is
//! `0xffff`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Folds the carries of a wide sum into 16 bits (end-around carry).
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Ones'-complement sum of `bytes` as big-endian 16-bit words, an odd last
/// byte padded with a zero.
pub fn data(bytes: &[u8]) -> u16 {
    let (words, rest) = bytes.as_chunks::<2>();
    let mut acc: u64 = words
        .iter()
        .map(|w| u64::from(u16::from_be_bytes(*w)))
        .sum();
    if let [b] = rest {
        acc += u64::from(*b) << 8;
    }
    fold(acc)
}

/// Ones'-complement sum of partial sums.
pub(crate) fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The IPv4 pseudo-header's sum: addresses, protocol, transport length.
pub(crate) fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: u8, len: u32) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        u16::from(protocol),
        fold(u64::from(len)),
    ])
}

/// The IPv6 pseudo-header's sum: addresses, upper-layer length, next header.
pub(crate) fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u16 {
    combine(&[
        data(&src.octets()),
        data(&dst.octets()),
        fold(u64::from(len)),
        u16::from(next_header),
    ])
}

/// The pseudo-header of either family; a mixed pair is summed as IPv6 with
/// the IPv4 address mapped (what a v4-mapped IPv6 packet carries).
pub(crate) fn pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: u8, len: u32) -> u16 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, protocol, len),
        _ => pseudo_header_v6(&to_v6(src), &to_v6(dst), protocol, len),
    }
}

fn to_v6(ip: &IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => *a,
    }
}

/// The value for a checksum field: the complement of the sum of `parts`
/// (computed with the field itself zero).
pub fn finish(parts: &[u16]) -> u16 {
    !combine(parts)
}

/// True when the sum of `parts` (taken over data that includes its checksum
/// field) says the data is intact.
pub fn verifies(parts: &[u16]) -> bool {
    combine(parts) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&b), 0xddf2);
        assert_eq!(finish(&[data(&b)]), !0xddf2);
        // Split anywhere on a word boundary, the partial sums combine.
        assert_eq!(combine(&[data(&b[..2]), data(&b[2..])]), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn carries_fold_on_long_data() {
        // 70,000 words of 0xffff: far past a u32 of unfolded words.
        let b = vec![0xff; 140_000];
        assert_eq!(data(&b), 0xffff);
        let b = vec![0x80; 140_001];
        let words = 70_000u64 * 0x8080 + 0x8000;
        assert_eq!(data(&b), fold(words));
    }

    #[test]
    fn known_ipv4_header() {
        // A header from the Wikipedia IPv4 checksum example: b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(&[data(&h)]), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verifies(&[data(&h)]));
        h[0] ^= 1;
        assert!(!verifies(&[data(&h)]));
    }

    #[test]
    fn mixed_families_are_summed_as_mapped_v6() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            pseudo_header(&a, &b, 17, 12),
            pseudo_header(&mapped, &b, 17, 12)
        );
    }
}
