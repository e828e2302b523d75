//! What the XDP program (`capture-ebpf`) and userspace (`voxtap-sensor`,
//! `voxtap-proto`) must agree on, defined once so they agree by construction:
//! map keys and values, counters, map sizes, defaults, and the "looks like
//! RTP/RTCP" rule.
//!
//! Types are `#[repr(C)]` plain data so the kernel and userspace agree on the
//! layout of map keys and values without serialisation. Functions are `const`
//! and branch-only (no loops, no slices) so the BPF verifier accepts them
//! inline.
#![no_std]

/// Version field of every RTP and RTCP header (RFC 3550 5.1, 6.4).
pub const RTP_VERSION: u8 = 2;

/// First and last RTCP packet type kept as RTCP: SR, RR, SDES, BYE, APP
/// (RFC 3550), RTPFB, PSFB (RFC 4585), XR (RFC 3611).
pub const RTCP_PT_FIRST: u8 = 200;
pub const RTCP_PT_LAST: u8 = 207;

/// RTP payload types that, with the marker bit set, read as the RTCP packet
/// types 200..=223: RFC 5761 section 4 reserves them so that RTP and RTCP
/// can share a port. An RTP guess with one of them is RTCP, not RTP.
pub const RTP_PT_RTCP_CONFLICT_FIRST: u8 = 72;
pub const RTP_PT_RTCP_CONFLICT_LAST: u8 = 95;

/// The one "looks like RTP" rule on the first two bytes of a UDP payload:
/// version 2 and a payload type outside the RTCP-conflict range 72..=95.
/// Userspace (`voxtap_proto::rtp::looks_like_rtp`) also checks that the
/// header's lengths fit the datagram; the XDP program only reads these two
/// bytes.
#[inline(always)]
pub const fn rtp_header_plausible(b0: u8, b1: u8) -> bool {
    let pt = b1 & 0x7f;
    b0 >> 6 == RTP_VERSION && !(pt >= RTP_PT_RTCP_CONFLICT_FIRST && pt <= RTP_PT_RTCP_CONFLICT_LAST)
}

/// The first header of an RTCP datagram: version 2 and a packet type in
/// [`RTCP_PT_FIRST`]..=[`RTCP_PT_LAST`].
#[inline(always)]
pub const fn rtcp_header_plausible(b0: u8, b1: u8) -> bool {
    b0 >> 6 == RTP_VERSION && b1 >= RTCP_PT_FIRST && b1 <= RTCP_PT_LAST
}

/// SIP ports of a default configuration (RFC 3261: 5060 for UDP/TCP, 5061
/// for TLS).
pub const DEFAULT_SIP_PORTS: [u16; 2] = [5060, 5061];

/// Entries of the `SIP_PORTS` map: the most SIP ports a configuration may
/// list.
pub const SIP_PORTS_MAX_ENTRIES: u32 = 256;

/// Entries of the `MEDIA_ENDPOINTS` map in the XDP object, and the default of
/// `capture.media_endpoints` (userspace resizes the map from it at load
/// time). A call announces 4 endpoints (RTP and RTCP on each side; 2 with
/// rtcp-mux); a saturated 10 GbE carries about 52,500 concurrent G.711 calls,
/// i.e. 210,000 endpoints. 2^18 = 262,144 covers that with 25% to spare
/// (65,536 calls at 4 endpoints).
pub const MEDIA_ENDPOINTS_MAX_ENTRIES: u32 = 1 << 18;

/// Entries of the `SHARED_MEDIA` map: the most shared media endpoints
/// (`workers.shared_media`) a configuration may list. They are a few media
/// servers' ports, not one per call.
pub const SHARED_MEDIA_MAX_ENTRIES: u32 = 256;

/// Entries of the `SHARED_PORTS` array: one bit per UDP port (65,536 / 64
/// words), set for the folded port of each shared endpoint. Most media
/// frames stop at this one bit test (an array lookup the verifier inlines)
/// instead of a hash lookup in `SHARED_MEDIA`.
pub const SHARED_PORT_WORDS: u32 = 1024;

/// Entries of the `FRAG_IDS` LRU map (fragmented datagrams whose first
/// fragment was kept); a full LRU map evicts its oldest entry.
pub const FRAG_IDS_MAX_ENTRIES: u32 = 16384;

/// Size in bytes of each `FRAMES_<i>` ring buffer in the XDP object
/// (userspace resizes the rings it uses: `capture.ring_bytes`, and shrinks
/// the others to [`RING_BYTES_UNUSED`]).
pub const RING_BYTES: u32 = 64 << 20;

/// Ring buffers declared in the XDP object (`FRAMES_0` ..= `FRAMES_7`):
/// aya 0.14 cannot create ring buffers as inner maps of a map-in-map, so the
/// rings are static and a configuration uses the first `XdpConfig::rings`.
pub const MAX_RINGS: u32 = 8;

/// Size a ring the configuration does not use is shrunk to at load: one
/// page, the smallest ring the kernel creates.
pub const RING_BYTES_UNUSED: u32 = 4096;

/// Per-ring counters (slot `ring * RING_STAT_KINDS + kind` of the per-CPU
/// `RING_STATS` map): frames written to the ring, and frames lost because it
/// was full. The second sums to `Counter::LostRingFull` over the rings.
pub const RING_STAT_WRITTEN: u32 = 0;
pub const RING_STAT_LOST: u32 = 1;
pub const RING_STAT_KINDS: u32 = 2;
pub const RING_STAT_SLOTS: u32 = MAX_RINGS * RING_STAT_KINDS;

/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), the form IPv4 takes in the
/// 16-byte address fields of the map keys.
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12] = v4[0];
    a[13] = v4[1];
    a[14] = v4[2];
    a[15] = v4[3];
    a
}

/// EtherTypes, IP protocol numbers and PPP protocols of the encapsulations
/// both decoders unwrap (userspace `voxtap_proto::decode` and the XDP
/// program): one list, so they follow the same headers.
pub mod proto {
    pub const ETH_P_IPV4: u16 = 0x0800;
    pub const ETH_P_ARP: u16 = 0x0806;
    pub const ETH_P_VLAN: u16 = 0x8100;
    pub const ETH_P_IPV6: u16 = 0x86dd;
    pub const ETH_P_QINQ: u16 = 0x88a8;
    /// Pre-802.1ad QinQ tag still emitted by some switches.
    pub const ETH_P_QINQ_OLD: u16 = 0x9100;
    pub const ETH_P_MPLS_UC: u16 = 0x8847;
    pub const ETH_P_MPLS_MC: u16 = 0x8848;
    pub const ETH_P_PPPOE_SESSION: u16 = 0x8864;
    /// Transparent Ethernet bridging: a whole Ethernet frame (GRE, Geneve).
    pub const ETH_P_TEB: u16 = 0x6558;
    /// GRE protocol of ERSPAN types I and II (type I: no GRE sequence
    /// number and no ERSPAN header).
    pub const ETH_P_ERSPAN_2: u16 = 0x88be;
    pub const ETH_P_ERSPAN_3: u16 = 0x22eb;

    pub const IPPROTO_IPIP: u8 = 4;
    pub const IPPROTO_TCP: u8 = 6;
    pub const IPPROTO_UDP: u8 = 17;
    pub const IPPROTO_IPV6: u8 = 41;
    pub const IPPROTO_GRE: u8 = 47;

    pub const PPP_IPV4: u16 = 0x0021;
    pub const PPP_IPV6: u16 = 0x0057;

    /// A VLAN tag (802.1Q, 802.1ad or the old QinQ TPID).
    #[inline(always)]
    pub const fn is_vlan(t: u16) -> bool {
        t == ETH_P_VLAN || t == ETH_P_QINQ || t == ETH_P_QINQ_OLD
    }
}

/// UDP destination ports of the UDP tunnels by default (IANA): VXLAN
/// (RFC 7348), Geneve (RFC 8926), GTP-U (3GPP TS 29.281). Configurable;
/// 0 turns one off.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
pub const DEFAULT_GENEVE_PORT: u16 = 6081;
pub const DEFAULT_GTPU_PORT: u16 = 2152;

/// Encapsulation headers (each VLAN tag, MPLS label, tunnel header, IP-in-IP)
/// a frame may go through before the decoders give up on it, by default:
/// the work per frame is bounded by it.
pub const DEFAULT_MAX_DEPTH: u16 = 8;
/// The most a configuration may ask for: the bound of the XDP program's
/// loop, and the room userspace keeps for a frame's path.
pub const MAX_DEPTH_LIMIT: u16 = 16;

/// An encapsulation both decoders unwrap; counted once per frame that went
/// through it (userspace `DecodeStats`, the XDP program's `TUNNELS` map).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// 802.1Q / 802.1ad tags.
    Vlan = 0,
    /// An MPLS label stack (IP, or an Ethernet pseudowire).
    Mpls = 1,
    /// GRE carrying IP, Ethernet (transparent bridging) or MPLS.
    Gre = 2,
    /// ERSPAN types I, II and III (over GRE).
    Erspan = 3,
    Vxlan = 4,
    Geneve = 5,
    /// PPPoE session stage.
    Pppoe = 6,
    /// GTP-U G-PDUs.
    Gtpu = 7,
    /// IPv4/IPv6 directly in IPv4/IPv6 (4in4, 6in4, 4in6, 6in6).
    IpIp = 8,
}

/// Number of [`Tunnel`] kinds (slots of the `TUNNELS` counter map).
pub const TUNNEL_KINDS: u32 = 9;

impl Tunnel {
    pub const ALL: [Tunnel; TUNNEL_KINDS as usize] = [
        Tunnel::Vlan,
        Tunnel::Mpls,
        Tunnel::Gre,
        Tunnel::Erspan,
        Tunnel::Vxlan,
        Tunnel::Geneve,
        Tunnel::Pppoe,
        Tunnel::Gtpu,
        Tunnel::IpIp,
    ];

    /// Stable lower-case name: in paths (`erspan(7)/vlan(100)`), metrics
    /// and status files.
    pub const fn name(self) -> &'static str {
        match self {
            Tunnel::Vlan => "vlan",
            Tunnel::Mpls => "mpls",
            Tunnel::Gre => "gre",
            Tunnel::Erspan => "erspan",
            Tunnel::Vxlan => "vxlan",
            Tunnel::Geneve => "geneve",
            Tunnel::Pppoe => "pppoe",
            Tunnel::Gtpu => "gtpu",
            Tunnel::IpIp => "ipip",
        }
    }

    /// This kind's bit in a per-frame set of kinds.
    #[inline(always)]
    pub const fn bit(self) -> u16 {
        1 << (self as u32)
    }
}

/// Outcome of the XDP classifier for one frame; each is a per-CPU counter slot.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every frame the program saw.
    Seen = 0,
    /// Kept because a port matched the SIP port map.
    KeptSip = 1,
    /// Kept because an endpoint matched the RTP endpoint map (filled from SDP).
    KeptMedia = 2,
    /// Kept because the UDP payload looked like RTP/RTCP (heuristic mode).
    KeptHeuristic = 3,
    /// Kept because it is an IP fragment of a flow we keep.
    KeptFragment = 4,
    /// Passed to the kernel stack, not VoIP.
    Passed = 5,
    /// Dropped by configuration (dedicated mirror port).
    Dropped = 6,
    /// Frame too short or malformed for the parser.
    Malformed = 7,
    /// Kept but the hand-off to userspace failed (ring full): userspace was slow.
    LostRingFull = 8,
    /// More encapsulation headers than `XdpConfig::max_depth`: the program
    /// stopped looking (the frame is then passed or dropped as not kept).
    TooDeep = 9,
}

// Counting rules (enforced by `capture-ebpf`):
// * every frame increments `Seen` and exactly one of `KeptSip`, `KeptMedia`,
//   `KeptHeuristic`, `KeptFragment`, `Passed`, `Dropped`, `Malformed`;
// * `LostRingFull` additionally counts kept frames that could not be written to
//   the ring buffer (so frames delivered = sum(Kept*) - LostRingFull);
// * `TooDeep` additionally counts frames cut short by the depth cap (they are
//   also `Passed` or `Dropped`).

impl Counter {
    /// All counters in slot order.
    pub const ALL: [Counter; COUNTER_SLOTS as usize] = [
        Counter::Seen,
        Counter::KeptSip,
        Counter::KeptMedia,
        Counter::KeptHeuristic,
        Counter::KeptFragment,
        Counter::Passed,
        Counter::Dropped,
        Counter::Malformed,
        Counter::LostRingFull,
        Counter::TooDeep,
    ];

    /// Counter for a slot number (e.g. [`FrameMeta::reason`]).
    pub const fn from_slot(slot: u32) -> Option<Counter> {
        if slot < COUNTER_SLOTS {
            Some(Self::ALL[slot as usize])
        } else {
            None
        }
    }

    /// Stable snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::KeptSip => "kept_sip",
            Counter::KeptMedia => "kept_media",
            Counter::KeptHeuristic => "kept_heuristic",
            Counter::KeptFragment => "kept_fragment",
            Counter::Passed => "passed",
            Counter::Dropped => "dropped",
            Counter::Malformed => "malformed",
            Counter::LostRingFull => "lost_ring_full",
            Counter::TooDeep => "too_deep",
        }
    }
}

/// Number of counter slots in the per-CPU counter array.
pub const COUNTER_SLOTS: u32 = 10;

/// Key of the RTP/RTCP endpoint map (`MEDIA_ENDPOINTS`): an IPv4 address is
/// stored as an IPv4-mapped IPv6 address so one map serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// IPv6 address in network order (IPv4 as `::ffff:a.b.c.d`).
    pub addr: [u8; 16],
    /// UDP port in host byte order (both sides of the map are little-endian).
    pub port: u16,
    pub _pad: [u8; 2],
}

impl EndpointKey {
    pub const fn new(addr: [u8; 16], port: u16) -> Self {
        EndpointKey {
            addr,
            port,
            _pad: [0; 2],
        }
    }

    pub const fn from_v4(addr: [u8; 4], port: u16) -> Self {
        Self::new(v4_mapped(addr), port)
    }

    /// Key of the `SHARED_MEDIA` map for a destination `addr:port`: its
    /// port's low bit cleared, so that one entry covers an RTP port and
    /// the RTCP port above it, as [`pair_media_worker`] folds them.
    #[inline(always)]
    pub const fn shared(addr: [u8; 16], port: u16) -> Self {
        Self::new(addr, port & !1)
    }
}

/// Multiplier of [`steer_hash`]'s word mixing: 2^32 / golden ratio, odd, so
/// every bit of a word reaches the high bits of the product.
const STEER_MUL: u32 = 0x9e37_79b1;

/// Big-endian 32-bit word `i` (0..=3) of a 16-byte address.
#[inline(always)]
const fn addr_word(a: &[u8; 16], i: usize) -> u32 {
    u32::from_be_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
}

/// MurmurHash3's 32-bit finaliser (`fmix32`): every input bit flips each
/// output bit with probability about 1/2, so `% n` on the result is even for
/// any `n`, including powers of two.
#[inline(always)]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hash of a media endpoint (a UDP destination: address and port) that picks
/// the media worker owning the stream sent to it: worker
/// `steer_hash(addr, port) % n` (see [`steer_worker`]). The XDP program and
/// the userspace engine use this one function so that a frame steered to ring
/// `k` by the kernel is the frame worker `k` would have picked.
///
/// `addr` is the 16-byte form of [`EndpointKey`] (IPv4 as the mapped
/// `::ffff:a.b.c.d`, see [`v4_mapped`]); `port` is in host order. Not keyed
/// and not collision-resistant: it balances load, it does not defend against
/// an attacker choosing ports (the worst case is one busy worker, never a
/// wrong result). No loops and no slices, so the BPF verifier takes it inline.
#[inline(always)]
pub const fn steer_hash(addr: &[u8; 16], port: u16) -> u32 {
    let mut h = port as u32;
    h = (h ^ addr_word(addr, 0)).wrapping_mul(STEER_MUL);
    h = (h.rotate_left(13) ^ addr_word(addr, 1)).wrapping_mul(STEER_MUL);
    h = (h.rotate_left(13) ^ addr_word(addr, 2)).wrapping_mul(STEER_MUL);
    h = (h.rotate_left(13) ^ addr_word(addr, 3)).wrapping_mul(STEER_MUL);
    fmix32(h)
}

/// Worker (0..n) that owns the endpoint `addr`:`port` among `n` workers;
/// `n == 0` reads as one worker.
#[inline(always)]
pub const fn steer_worker(addr: &[u8; 16], port: u16, n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        steer_hash(addr, port) % n
    }
}

/// The media worker (0..n) that owns datagrams sent to `addr:port`: an RTP
/// port and the RTCP port above it (RFC 3550: p and p + 1) fold to one, so a
/// stream and its reports meet on one worker. The engine's media workers
/// and the XDP program's rings ([`steer_ring`]) both use it.
#[inline(always)]
pub const fn media_worker(addr: &[u8; 16], port: u16, n: u32) -> u32 {
    steer_worker(addr, port & !1, n)
}

/// The media worker (0..n) that owns datagrams from `src_addr:src_port` to
/// a *shared* endpoint `dst_addr:dst_port`: one that many calls send media
/// to (a media server's single port), which [`media_worker`] would put on
/// one worker with all of its calls. Both ends are hashed (each port with
/// its low bit cleared, so that RTCP still meets its RTP): the streams to
/// it spread over the workers, and each stream still has one owner as long
/// as its source does not move.
#[inline(always)]
pub const fn pair_media_worker(
    src_addr: &[u8; 16],
    src_port: u16,
    dst_addr: &[u8; 16],
    dst_port: u16,
    n: u32,
) -> u32 {
    if n <= 1 {
        return 0;
    }
    let d = steer_hash(dst_addr, dst_port & !1);
    let s = steer_hash(src_addr, src_port & !1);
    fmix32(d ^ s.rotate_left(16).wrapping_mul(STEER_MUL)) % n
}

/// The ring a media frame to `addr:port` goes to when the XDP program uses
/// `rings` rings: ring 0 carries SIP and everything that is not plain media
/// (fragments, TCP); media goes to ring `1 + media_worker(addr, port,
/// rings - 1)`, so media ring `1 + k` holds what media worker `k` owns. With
/// one ring (or a value out of range, read as one) everything is on ring 0.
#[inline(always)]
pub const fn steer_ring(addr: &[u8; 16], port: u16, rings: u32) -> u32 {
    if rings <= 1 || rings > MAX_RINGS {
        return 0;
    }
    1 + media_worker(addr, port, rings - 1)
}

/// The ring a media frame from `src_addr:src_port` to a *shared* endpoint
/// `dst_addr:dst_port` goes to with `rings` rings: ring `1 +
/// pair_media_worker(.., rings - 1)`, so media ring `1 + k` still holds
/// what media worker `k` owns (the engine steers such a destination by
/// both ends too). The same range rules as [`steer_ring`]: with one ring,
/// or a value out of range, everything is on ring 0.
#[inline(always)]
pub const fn steer_ring_pair(
    src_addr: &[u8; 16],
    src_port: u16,
    dst_addr: &[u8; 16],
    dst_port: u16,
    rings: u32,
) -> u32 {
    if rings <= 1 || rings > MAX_RINGS {
        return 0;
    }
    1 + pair_media_worker(src_addr, src_port, dst_addr, dst_port, rings - 1)
}

/// Header the XDP program puts in front of every frame it hands to userspace
/// through the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FrameMeta {
    /// Kernel monotonic time in nanoseconds (bpf_ktime_get_ns).
    pub ktime_ns: u64,
    /// Original length of the frame on the wire.
    pub wire_len: u32,
    /// Bytes of the frame that follow this header.
    pub cap_len: u32,
    /// RX queue the frame arrived on.
    pub queue: u32,
    /// Why it was kept (a [`Counter`] value).
    pub reason: u32,
}

/// Largest frame the ring buffer path copies.
pub const MAX_FRAME: usize = 2048;

/// Size of [`FrameMeta`] as written in front of every ring buffer record.
pub const FRAME_META_LEN: usize = core::mem::size_of::<FrameMeta>();

/// Config flag: keep UDP whose payload looks like RTP/RTCP version 2.
pub const CFG_HEURISTIC_RTP: u32 = 1 << 0;
/// Config flag: keep every IPv4/IPv6 fragment (first or not) of every UDP
/// datagram, so reassembly in userspace never misses a piece, whatever the
/// arrival order. Without it, a first fragment is kept only when its UDP ports
/// or endpoints match, and a non-first fragment only when the first fragment of
/// the same datagram was kept before it (tracked in the `FRAG_IDS` LRU map keyed
/// by addresses and identification): out-of-order fragments are then missed.
pub const CFG_KEEP_FRAGMENTS: u32 = 1 << 1;
/// Config flag: `XDP_DROP` every frame that is not kept (dedicated mirror
/// port); kept frames are `XDP_PASS`ed after the copy unless
/// [`CFG_DROP_AFTER_COPY`] is set too.
pub const CFG_DROP_UNKEPT: u32 = 1 << 2;
/// Config flag: `XDP_DROP` kept frames once copied to their ring (dedicated
/// mirror port: the kernel stack then does nothing for them). They are
/// still counted as kept, not as `Dropped`.
pub const CFG_DROP_AFTER_COPY: u32 = 1 << 3;
/// Config flag: the `SHARED_MEDIA` map holds endpoints (userspace sets it
/// when it fills the map), so media to one of them is steered by both ends
/// ([`steer_ring_pair`]). Without it the program skips that map lookup.
pub const CFG_SHARED_MEDIA: u32 = 1 << 4;

/// Sensor configuration, slot 0 of the `CONFIG` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// `CFG_*` bits.
    pub flags: u32,
    /// Wake the ring buffer reader once every this many frames per CPU (the
    /// other submissions use `BPF_RB_NO_WAKEUP`); 0 or 1 means wake on every
    /// frame. The reader polls with a timeout, so no frame waits longer than
    /// that timeout.
    pub wakeup_every: u32,
    /// UDP destination ports of VXLAN, Geneve and GTP-U (0: not unwrapped).
    pub vxlan_port: u16,
    pub geneve_port: u16,
    pub gtpu_port: u16,
    /// Encapsulation headers followed per frame (at most
    /// [`MAX_DEPTH_LIMIT`]); a frame with more counts as `TooDeep`.
    pub max_depth: u16,
    /// Ring buffers used, 1..=[`MAX_RINGS`] (0 reads as 1): see
    /// [`steer_ring`].
    pub rings: u32,
}

impl Default for XdpConfig {
    /// No flags, wake on every frame, the default tunnel ports and depth,
    /// one ring.
    fn default() -> Self {
        XdpConfig {
            flags: 0,
            wakeup_every: 0,
            vxlan_port: DEFAULT_VXLAN_PORT,
            geneve_port: DEFAULT_GENEVE_PORT,
            gtpu_port: DEFAULT_GTPU_PORT,
            max_depth: DEFAULT_MAX_DEPTH,
            rings: 1,
        }
    }
}

impl XdpConfig {
    /// Default wake-up batch.
    pub const DEFAULT_WAKEUP_EVERY: u32 = 32;

    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

/// Key of the fragment-tracking LRU map: IPv4 uses mapped addresses and the
/// 16-bit identification zero-extended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_rule_rejects_exactly_the_rtcp_conflict_range() {
        for b1 in 0..=255u8 {
            let pt = b1 & 0x7f;
            assert_eq!(
                rtp_header_plausible(0x80, b1),
                !(72..=95).contains(&pt),
                "byte 1 = {b1}"
            );
            // Versions 0, 1 and 3 are never RTP.
            for b0 in [0x00, 0x40, 0xc0] {
                assert!(!rtp_header_plausible(b0, b1));
            }
        }
        // Every RTCP packet type read as RTP is in the conflict range.
        for b1 in RTCP_PT_FIRST..=RTCP_PT_LAST {
            assert!(rtcp_header_plausible(0x81, b1));
            assert!(!rtp_header_plausible(0x81, b1));
        }
        assert!(!rtcp_header_plausible(0x81, 199));
        assert!(!rtcp_header_plausible(0x81, 208));
        assert!(!rtcp_header_plausible(0x41, 200));
    }

    #[test]
    fn mapped_v4_key() {
        let k = EndpointKey::from_v4([192, 0, 2, 1], 4000);
        assert_eq!(
            k.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]
        );
        assert_eq!(k.port, 4000);
    }

    // Computed by an independent Python transcription of the algorithm
    // (arbitrary-precision ints masked to 32 bits):
    //   h = port; h = (h ^ w0) * K; h = (rotl(h, 13) ^ wi) * K for w1..w3;
    //   fmix32(h), wi the big-endian words of the address.
    // The XDP program and userspace must keep producing exactly these.
    const VEC_V4_4000: u32 = 0xb209_2927;
    const VEC_V4_4002: u32 = 0xf74e_34fd;
    const VEC_V6_5004: u32 = 0xa874_9f21;
    const VEC_ZERO: u32 = 0;

    #[test]
    fn steer_hash_vectors() {
        let v4 = v4_mapped([192, 0, 2, 1]);
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[2] = 0x0d;
        v6[3] = 0xb8;
        v6[15] = 1;
        assert_eq!(steer_hash(&v4, 4000), VEC_V4_4000);
        assert_eq!(steer_hash(&v4, 4002), VEC_V4_4002);
        assert_eq!(steer_hash(&v6, 5004), VEC_V6_5004);
        assert_eq!(steer_hash(&[0; 16], 0), VEC_ZERO);
    }

    #[test]
    fn steer_worker_spreads_evenly() {
        // 40,000 endpoints of a typical SBC/media-gateway layout: a few
        // addresses, consecutive even ports. Every worker of n = 2..=8 gets
        // within 5% of the mean.
        for n in 2..=8u32 {
            let mut load = [0u32; 8];
            for host in 0..10u8 {
                let a = v4_mapped([10, 0, 0, host]);
                for i in 0..4000u16 {
                    load[steer_worker(&a, 10000 + 2 * i, n) as usize] += 1;
                }
            }
            let mean = 40_000 / n;
            for (w, &l) in load.iter().take(n as usize).enumerate() {
                assert!(
                    l.abs_diff(mean) * 20 < mean,
                    "n={n} worker {w}: {l} vs {mean}"
                );
            }
        }
        assert_eq!(steer_worker(&[1; 16], 9, 0), 0);
        assert_eq!(steer_worker(&[1; 16], 9, 1), 0);
    }

    #[test]
    fn pair_media_worker_spreads_one_endpoint_and_keeps_rtcp_with_rtp() {
        let dst = v4_mapped([192, 0, 2, 10]);
        let mut seen = [0u32; 4];
        for i in 0..4_000u32 {
            let src = v4_mapped([10, 1, (i >> 8) as u8, i as u8]);
            let port = 20_000 + 2 * (i % 500) as u16;
            let w = pair_media_worker(&src, port, &dst, 5004, 4);
            // RTCP (both ports + 1) lands with its RTP.
            assert_eq!(pair_media_worker(&src, port + 1, &dst, 5005, 4), w);
            seen[w as usize] += 1;
        }
        // 4,000 streams to one endpoint: each worker gets about a quarter.
        assert!(seen.iter().all(|&c| (850..=1150).contains(&c)), "{seen:?}");
        assert_eq!(pair_media_worker(&dst, 1, &dst, 5004, 1), 0);
    }

    #[test]
    fn steer_ring_pair_is_the_pair_worker_on_the_media_rings() {
        let dst = v4_mapped([192, 0, 2, 10]);
        for rings in 2..=MAX_RINGS {
            let mut seen = [0u32; MAX_RINGS as usize];
            for i in 0..400u32 {
                let src = v4_mapped([10, 2, (i >> 8) as u8, i as u8]);
                let port = 30_000 + 2 * (i % 97) as u16;
                let ring = steer_ring_pair(&src, port, &dst, 5004, rings);
                // Media ring 1 + k holds what media worker k owns.
                let k = pair_media_worker(&src, port, &dst, 5004, rings - 1);
                assert_eq!(ring, 1 + k, "rings={rings} source {i}");
                // RTCP (both ports + 1) rides with its RTP.
                assert_eq!(steer_ring_pair(&src, port + 1, &dst, 5005, rings), ring);
                seen[ring as usize] += 1;
            }
            // Ring 0 is signalling's; every media ring gets a share.
            assert_eq!(seen[0], 0);
            let media = &seen[1..rings as usize];
            assert!(media.iter().all(|&c| c > 0), "rings={rings}: {seen:?}");
        }
        // One ring, or a value out of range: everything on ring 0.
        let src = v4_mapped([10, 0, 0, 1]);
        assert_eq!(steer_ring_pair(&src, 4000, &dst, 5004, 1), 0);
        assert_eq!(steer_ring_pair(&src, 4000, &dst, 5004, 0), 0);
        assert_eq!(steer_ring_pair(&src, 4000, &dst, 5004, MAX_RINGS + 1), 0);
    }

    #[test]
    fn shared_key_folds_rtcp_onto_rtp() {
        let a = v4_mapped([192, 0, 2, 10]);
        assert_eq!(EndpointKey::shared(a, 5005), EndpointKey::new(a, 5004));
        assert_eq!(EndpointKey::shared(a, 5004), EndpointKey::new(a, 5004));
        assert_ne!(EndpointKey::shared(a, 5006), EndpointKey::new(a, 5004));
    }

    #[test]
    fn steer_ring_keeps_ring_0_for_signalling() {
        let a = v4_mapped([192, 0, 2, 1]);
        for port in (6000..8000).step_by(2) {
            // Media ring 1 + k is media worker k's.
            assert_eq!(steer_ring(&a, port, 4), 1 + steer_worker(&a, port, 3));
        }
        // RTCP (the odd port above) goes where its RTP goes.
        assert_eq!(steer_ring(&a, 7001, 4), steer_ring(&a, 7000, 4));
        assert_eq!(media_worker(&a, 7001, 3), steer_worker(&a, 7000, 3));
        // One ring, or a value out of range: everything on ring 0.
        assert_eq!(steer_ring(&a, 6000, 1), 0);
        assert_eq!(steer_ring(&a, 6000, 0), 0);
        assert_eq!(steer_ring(&a, 6000, MAX_RINGS + 1), 0);
    }
}
