//! Which media worker owns a datagram that is not SIP: the one its
//! destination hashes to ([`super::worker_of`]), except for a destination
//! configured as shared (`PipelineConfig::shared_media`: a media server's
//! single port that many calls send to), whose streams are spread by both
//! ends ([`voxtap_common::pair_media_worker`]) instead of all landing on
//! one worker.

use std::net::SocketAddr;

use voxtap_proto::decode::UdpEnds;

/// The owner rule of one engine: the dispatcher and every worker's pipeline
/// (for datagrams it decodes itself, such as reassembled fragments) use the
/// same one.
#[derive(Clone, Debug)]
pub struct Owners {
    n: u32,
    /// Shared endpoints, ports with the low bit cleared (RTCP folds onto RTP).
    shared: Box<[SocketAddr]>,
    /// Bit per folded port of a shared endpoint: most frames are rejected by
    /// one bit test. Empty when nothing is shared.
    ports: Box<[u64]>,
}

impl Owners {
    pub fn new(shared: &[SocketAddr], n: usize) -> Self {
        let shared: Box<[SocketAddr]> = shared
            .iter()
            .map(|s| SocketAddr::new(s.ip().to_canonical(), s.port() & !1))
            .collect();
        let mut ports = if shared.is_empty() {
            Box::default()
        } else {
            vec![0u64; 1024].into_boxed_slice()
        };
        for s in &shared {
            ports[usize::from(s.port()) / 64] |= 1 << (s.port() % 64);
        }
        Owners {
            n: n as u32,
            shared,
            ports,
        }
    }

    /// The worker (0..n) owning a datagram from `src` to `dst`.
    #[inline]
    pub fn owner(&self, src: SocketAddr, dst: SocketAddr) -> usize {
        if !self.is_shared(dst) {
            return super::worker_of(dst, self.n as usize);
        }
        let (s, d) = (super::octets(src.ip()), super::octets(dst.ip()));
        voxtap_common::pair_media_worker(&s, src.port(), &d, dst.port(), self.n) as usize
    }

    /// [`Self::owner`] of a datagram's ends as the dispatcher read them
    /// from the frame: the destination's hash straight from its words
    /// ([`super::steer::owner`]) unless its port is a shared endpoint's.
    #[inline(always)]
    pub(super) fn owner_of(&self, ends: &UdpEnds) -> usize {
        if self.port_listed(ends.dst_port) {
            self.owner(ends.src(), ends.dst())
        } else {
            super::steer::owner(ends, self.n as usize) as usize
        }
    }

    /// Whether datagrams to `ep` are steered by both ends.
    #[inline]
    pub fn is_shared(&self, ep: SocketAddr) -> bool {
        let (p, ip) = (ep.port() & !1, ep.ip().to_canonical());
        self.port_listed(p) && self.shared.iter().any(|s| s.port() == p && s.ip() == ip)
    }

    /// Whether `port` (its low bit cleared) is a shared endpoint's: the one
    /// bit test most frames stop at.
    #[inline(always)]
    fn port_listed(&self, port: u16) -> bool {
        let p = port & !1;
        self.ports
            .get(usize::from(p) / 64)
            .is_some_and(|bits| bits & (1 << (p % 64)) != 0)
    }

    /// Whether frames sent to `ep` may have been worker `k`'s: a shared
    /// endpoint's streams may be on any worker.
    pub fn may_own(&self, ep: SocketAddr, k: usize) -> bool {
        self.is_shared(ep) || super::worker_of(ep, self.n as usize) == k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_shared_endpoint_is_steered_by_both_ends() {
        let o = Owners::new(&[ep("192.0.2.10:5004")], 4);
        let media_server = ep("192.0.2.10:5004");
        assert!(o.is_shared(media_server));
        assert!(o.is_shared(ep("192.0.2.10:5005")), "its RTCP port too");
        assert!(!o.is_shared(ep("192.0.2.10:5006")));
        assert!(!o.is_shared(ep("192.0.2.11:5004")));
        assert!(o.is_shared(ep("[::ffff:192.0.2.10]:5004")));
        // Not shared: the destination's worker, whoever sends.
        let other = ep("198.51.100.7:4000");
        for i in 0..50u8 {
            let src = SocketAddr::from(([10, 0, 0, i], 30_000));
            assert_eq!(o.owner(src, other), super::super::worker_of(other, 4));
        }
        // Shared: spread by the sender, RTCP with its RTP.
        let mut seen = [false; 4];
        for i in 0..200u8 {
            let src = SocketAddr::from(([10, 0, 1, i], 30_000));
            let rtcp_src = SocketAddr::from(([10, 0, 1, i], 30_001));
            let w = o.owner(src, media_server);
            assert_eq!(o.owner(rtcp_src, ep("192.0.2.10:5005")), w);
            seen[w] = true;
            assert!(o.may_own(media_server, (w + 1) % 4));
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn the_dispatchers_form_gives_the_same_owner() {
        let o = Owners::new(&[ep("192.0.2.10:5004"), ep("[2001:db8::5]:7000")], 4);
        for i in 0..100u16 {
            for (s, d) in [
                (
                    format!("10.0.0.{}:{}", i % 250, 30_000 + i),
                    "192.0.2.10:5004",
                ),
                (
                    format!("10.0.0.{}:{}", i % 250, 30_000 + i),
                    "192.0.2.10:5005",
                ),
                (
                    format!("10.0.0.{}:{}", i % 250, 30_000 + i),
                    "192.0.2.11:5004",
                ),
                (
                    format!("[2001:db8::{i:x}]:{}", 9000 + i),
                    "[2001:db8::5]:7000",
                ),
                (
                    format!("[2001:db8::{i:x}]:{}", 9000 + i),
                    "[2001:db8::6]:7000",
                ),
            ] {
                let (src, dst) = (ep(&s), ep(d));
                let ends = UdpEnds::of(src, dst).unwrap();
                assert_eq!(o.owner_of(&ends), o.owner(src, dst), "{s} -> {d}");
            }
        }
    }

    /// The XDP program's media ring `1 + k` holds what worker `k` owns,
    /// with `rings - 1` workers: for a shared destination too.
    #[test]
    fn the_xdp_rings_follow_the_owners() {
        let rings = 4u32;
        let o = Owners::new(&[ep("192.0.2.10:5004")], rings as usize - 1);
        for i in 0..200u16 {
            let src = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 30_000 + i));
            for dst in [
                ep("192.0.2.10:5004"),
                ep("192.0.2.10:5005"),
                ep("192.0.2.11:5004"),
            ] {
                let ends = UdpEnds::of(src, dst).unwrap();
                let (s, d) = (
                    super::super::octets(src.ip()),
                    super::super::octets(dst.ip()),
                );
                let ring = match o.is_shared(dst) {
                    true => voxtap_common::steer_ring_pair(&s, src.port(), &d, dst.port(), rings),
                    false => voxtap_common::steer_ring(&d, dst.port(), rings),
                };
                assert_eq!(o.owner_of(&ends) as u32, ring - 1, "{src} -> {dst}");
            }
        }
    }

    #[test]
    fn nothing_shared_is_the_destination_rule() {
        let o = Owners::new(&[], 3);
        let dst = ep("192.0.2.1:7000");
        assert!(!o.is_shared(dst));
        assert_eq!(
            o.owner(ep("10.0.0.1:1"), dst),
            super::super::worker_of(dst, 3)
        );
        assert!(o.may_own(dst, super::super::worker_of(dst, 3)));
    }
}
