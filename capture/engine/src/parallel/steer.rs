//! What the dispatcher decides for each frame, decoding it once: the
//! worker takes a decoded UDP datagram as it is ([`Steer::Udp`]), without
//! decoding the frame again; only frames a worker must decode itself
//! (fragments, TCP, SCTP, SIP in a tunnel) travel as captured.

use voxtap_proto::decode::{Decoder, IpPair, L4, PlainUdp, UdpEnds, v6_bytes};
use voxtap_proto::pcapio::LinkType;
use voxtap_proto::sip;

use crate::calls::PacketRef;
use crate::pipeline::PipelineConfig;

/// Where a frame goes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Steer {
    /// The decoder rejected it: worker 0 counts it.
    Malformed,
    /// To every worker as captured, each decoding it: not UDP, an IP
    /// fragment (every replica's reassembly must see it), SIP in a tunnel
    /// (the call notes the tunnel path).
    Raw,
    /// A UDP datagram, decoded: to its owner only when `steered`, else
    /// (SIP, RTCP) to every worker.
    Udp(Udp),
}

/// A decoded UDP datagram.
#[derive(Clone, Copy, Debug)]
pub(super) struct Udp {
    pub ends: UdpEnds,
    /// Where its payload is: in the frame, then in the batch.
    pub at: u32,
    pub len: u32,
    pub verdict: Verdict,
}

/// Where a UDP datagram goes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Verdict {
    /// The worker owning it ([`super::Owners`]: its destination's hash).
    pub owner: u16,
    /// On a SIP port, or looking like SIP.
    pub sip_like: bool,
    /// To its owner only (neither SIP nor RTCP).
    pub steered: bool,
}

pub(super) struct Steerer {
    owners: super::Owners,
    decoder: Decoder,
    sip: SipTest,
}

/// The pipeline's SIP test (`Pipeline::process`).
struct SipTest {
    ports: Box<[u64; 1024]>,
    by_content: bool,
}

impl SipTest {
    fn is_sip_port(&self, p: u16) -> bool {
        self.ports[usize::from(p) / 64] & (1 << (p % 64)) != 0
    }

    /// Port bitmap first, then the content. A first byte with the top bit
    /// set (RTP and RTCP: version 2, 0x80-0xBF) is neither CR, LF nor a
    /// token character, so `looks_like_sip` would say no: tested here, it
    /// spares each media datagram a call (about 60 instructions).
    #[inline]
    fn sip_like(&self, src: u16, dst: u16, payload: &[u8]) -> bool {
        self.is_sip_port(src)
            || self.is_sip_port(dst)
            || (self.by_content
                && !matches!(payload.first(), Some(b) if *b >= 0x80)
                && sip::looks_like_sip(payload))
    }
}

impl Steerer {
    pub fn new(cfg: &PipelineConfig, n: usize) -> Self {
        let mut sip_ports = Box::new([0u64; 1024]);
        for p in &cfg.sip_ports {
            sip_ports[usize::from(*p) / 64] |= 1 << (p % 64);
        }
        Steerer {
            owners: super::Owners::new(&cfg.shared_media, n),
            decoder: Decoder::with_tunnels(cfg.frag, cfg.tunnels),
            sip: SipTest {
                ports: sip_ports,
                by_content: cfg.sip_by_content,
            },
        }
    }

    pub fn owners(&self) -> &super::Owners {
        &self.owners
    }

    /// Plain UDP over Ethernet (nearly every frame of a VoIP link), read by
    /// [`Decoder::decode_plain_udp`]: the same addresses and payload as
    /// `decode`, left as the frame's bytes. None for every other frame,
    /// which [`Self::decoded`] decodes in full.
    #[inline(always)]
    pub fn plain<'a>(
        &mut self,
        link: LinkType,
        ts_ns: u64,
        frame: &'a [u8],
    ) -> Option<PlainUdp<'a>> {
        self.decoder.decode_plain_udp(link, ts_ns, frame)
    }

    /// The verdict on a plain datagram, from the frame's bytes: the ports
    /// tested and the destination hashed without building `SocketAddr`s.
    #[inline(always)]
    pub fn plain_verdict(&self, p: &PlainUdp) -> Verdict {
        self.verdict(&p.ends, p.payload)
    }

    /// Where a frame [`Self::plain`] refused goes, decoding it in full.
    #[inline(never)]
    pub fn decoded(&mut self, link: LinkType, ts_ns: u64, pref: PacketRef, frame: &[u8]) -> Steer {
        let dg = match self.decoder.decode(link, ts_ns, pref.0, frame) {
            Ok(Some(dg)) => dg,
            Ok(None) => return Steer::Raw,
            Err(_) => return Steer::Malformed,
        };
        if !matches!(dg.l4, L4::Udp) || !dg.fragments.is_empty() {
            return Steer::Raw;
        }
        let Some(at) = offset_in(frame, dg.payload) else {
            return Steer::Raw;
        };
        // The same bytes, borrowed from `frame` rather than the decoder.
        let payload = &frame[at as usize..at as usize + dg.payload.len()];
        let (src, dst) = (dg.src, dg.dst);
        if !dg.encap.is_empty() && self.sip.sip_like(src.port(), dst.port(), payload) {
            // SIP in a tunnel: the call notes the tunnel path.
            return Steer::Raw;
        }
        let Some(ends) = UdpEnds::of(src, dst) else {
            return Steer::Raw;
        };
        Steer::Udp(Udp {
            ends,
            at,
            len: payload.len() as u32,
            verdict: self.verdict(&ends, payload),
        })
    }

    /// A UDP datagram's verdict: SIP or RTCP to every worker, the rest to
    /// its owner ([`super::Owners`]).
    #[inline(always)]
    fn verdict(&self, ends: &UdpEnds, payload: &[u8]) -> Verdict {
        let sip_like = self.sip.sip_like(ends.src_port, ends.dst_port, payload);
        let rtcp =
            matches!(payload, [b0, b1, ..] if voxtap_common::rtcp_header_plausible(*b0, *b1));
        Verdict {
            owner: self.owners.owner_of(ends) as u16,
            sip_like,
            steered: !(sip_like || rtcp),
        }
    }
}

/// [`super::worker_of`] the destination of `ends`, hashed per family: an
/// IPv4 address's mapped prefix is then constant words of the hash.
#[inline(always)]
pub(super) fn owner(ends: &UdpEnds, n: usize) -> u32 {
    let (port, n) = (ends.dst_port, n as u32);
    match ends.ips {
        IpPair::V4 { dst, .. } => {
            voxtap_common::media_worker(&voxtap_common::v4_mapped(dst.to_be_bytes()), port, n)
        }
        IpPair::V6 { dst, .. } => voxtap_common::media_worker(&v6_bytes(dst), port, n),
    }
}

/// Where `part` (a slice of `frame`) starts in `frame`.
fn offset_in(frame: &[u8], part: &[u8]) -> Option<u32> {
    let at = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
    (at.checked_add(part.len())? <= frame.len()).then_some(at as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_found_in_its_frame() {
        let frame = [0u8; 64];
        assert_eq!(offset_in(&frame, &frame[42..]), Some(42));
        assert_eq!(offset_in(&frame, &frame[64..]), Some(64));
        let other = [0u8; 8];
        assert_eq!(offset_in(&frame[..8], &other), None);
    }

    /// The hash of a datagram's ends is the common hash of its destination
    /// (`worker_of`), for both families and any worker count.
    #[test]
    fn owner_is_worker_of_the_destination() {
        let pairs = [
            ("192.0.2.1:4000", "198.51.100.7:5060"),
            ("192.0.2.1:4001", "198.51.100.7:40001"),
            ("[2001:db8::1]:7078", "[2001:db8::2]:9001"),
            ("[2001:db8::1]:7078", "[::ffff:198.51.100.7]:9000"),
        ];
        for (s, d) in pairs {
            let (src, dst) = (s.parse().unwrap(), d.parse().unwrap());
            let ends = UdpEnds::of(src, dst).unwrap();
            assert_eq!((ends.src(), ends.dst()), (src, dst));
            for n in 1..=8 {
                assert_eq!(owner(&ends, n) as usize, super::super::worker_of(dst, n));
            }
        }
    }
}
