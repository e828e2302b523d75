//! voxtap XDP classifier.
//!
//! Parses Ethernet, up to two 802.1Q/802.1ad VLAN tags, IPv4 (with options)
//! or IPv6 (skipping up to [`MAX_V6_EXT`] extension headers), then UDP/TCP, and
//! keeps:
//!
//! * SIP: UDP or TCP source or destination port in `SIP_PORTS`;
//! * media: UDP source or destination endpoint in `MEDIA_ENDPOINTS` (filled by
//!   userspace from SDP);
//! * heuristic RTP/RTCP (flag [`CFG_HEURISTIC_RTP`]): UDP with both ports >= 1024
//!   whose payload starts like an RTP/RTCP version-2 header with a plausible
//!   payload type (`voxtap_common::rtp_header_plausible`, the rule userspace
//!   applies too);
//! * IP fragments: see [`CFG_KEEP_FRAGMENTS`]; without the flag, non-first
//!   fragments are kept when the first fragment of the same datagram was kept.
//!
//! Kept frames are copied (at most [`MAX_FRAME`] bytes) behind a [`FrameMeta`]
//! into the `FRAMES` ring buffer and then passed to the kernel. Other frames are
//! passed, or dropped when [`CFG_DROP_UNKEPT`] is set. Every outcome increments
//! a per-CPU counter in `COUNTERS` (see `voxtap_common::Counter`).
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, xdp_action},
    helpers::{bpf_ktime_get_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use voxtap_common::{
    CFG_DROP_UNKEPT, CFG_HEURISTIC_RTP, CFG_KEEP_FRAGMENTS, COUNTER_SLOTS, Counter, EndpointKey,
    FRAG_IDS_MAX_ENTRIES, FRAME_META_LEN, FragKey, FrameMeta, MAX_FRAME,
    MEDIA_ENDPOINTS_MAX_ENTRIES, RING_BYTES, SIP_PORTS_MAX_ENTRIES, XdpConfig,
    rtcp_header_plausible, rtp_header_plausible, v4_mapped,
};

/// Slot 0: the sensor configuration. All zero (no flags) until userspace sets it.
#[map]
static CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);

/// SIP ports (host byte order) -> unused value.
#[map]
static SIP_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(SIP_PORTS_MAX_ENTRIES, 0);

/// Media endpoints announced in SDP -> unused value. Only userspace inserts
/// (and counts the inserts that fail); it resizes the map at load time
/// (`capture.media_endpoints`).
#[map]
static MEDIA_ENDPOINTS: HashMap<EndpointKey, u8> =
    HashMap::with_max_entries(MEDIA_ENDPOINTS_MAX_ENTRIES, 0);

/// Fragmented datagrams whose first fragment was kept.
#[map]
static FRAG_IDS: LruHashMap<FragKey, u8> = LruHashMap::with_max_entries(FRAG_IDS_MAX_ENTRIES, 0);

/// Per-CPU outcome counters, indexed by `Counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Per-CPU number of submissions since the last forced wake-up.
#[map]
static WAKE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Kept frames: `FrameMeta` then `cap_len` bytes of frame.
#[map]
static FRAMES: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Per-CPU staging area: the record is assembled here and written to the ring
/// with one `bpf_ringbuf_output` of exactly `FRAME_META_LEN + cap_len` bytes, so
/// small SIP/RTP frames take little ring space.
#[repr(C)]
struct Scratch {
    meta: FrameMeta,
    data: [u8; MAX_FRAME],
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ_OLD: u16 = 0x9100;
const MAX_VLAN: usize = 2;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_MH: u8 = 135;
/// Extension headers skipped before giving up (the frame is then not kept).
const MAX_V6_EXT: usize = 6;

enum Verdict {
    Keep(Counter),
    Unkept,
    Malformed,
}

/// Malformed frame marker used with `?`.
struct Bad;

#[xdp]
pub fn voxtap_xdp(ctx: XdpContext) -> u32 {
    count(Counter::Seen);
    let cfg = match CONFIG.get(0) {
        Some(c) => *c,
        None => XdpConfig::default(),
    };
    let verdict = match classify(&ctx, &cfg) {
        Ok(v) => v,
        Err(Bad) => Verdict::Malformed,
    };
    match verdict {
        Verdict::Keep(reason) => {
            count(reason);
            emit(&ctx, reason, &cfg);
            xdp_action::XDP_PASS
        }
        Verdict::Unkept => {
            if cfg.has(CFG_DROP_UNKEPT) {
                count(Counter::Dropped);
                xdp_action::XDP_DROP
            } else {
                count(Counter::Passed);
                xdp_action::XDP_PASS
            }
        }
        Verdict::Malformed => {
            count(Counter::Malformed);
            if cfg.has(CFG_DROP_UNKEPT) {
                xdp_action::XDP_DROP
            } else {
                xdp_action::XDP_PASS
            }
        }
    }
}

#[inline(always)]
fn count(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // Per-CPU slot: no other writer, no atomics needed.
        unsafe { *p += 1 };
    }
}

/// Pointer to a `T` at `off` bytes into the packet, bounds-checked for the
/// verifier.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Result<*const T, Bad> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return Err(Bad);
    }
    Ok((start + off) as *const T)
}

/// Copy of the `N` bytes at `off`, after one bounds check: every field of a
/// header is then read from this copy, so the verifier never sees a packet
/// pointer that was derived separately from the checked one.
#[inline(always)]
fn bytes_at<const N: usize>(ctx: &XdpContext, off: usize) -> Result<[u8; N], Bad> {
    let p = ptr_at::<[u8; N]>(ctx, off)?;
    Ok(unsafe { *p })
}

#[inline(always)]
fn be16(b0: u8, b1: u8) -> u16 {
    u16::from_be_bytes([b0, b1])
}

/// What the IP layer found.
struct L3 {
    src: [u8; 16],
    dst: [u8; 16],
    /// Upper-layer protocol (after IPv6 extension headers).
    proto: u8,
    /// Offset of the upper-layer header (meaningless for non-first fragments).
    l4_off: usize,
    /// Part of a fragmented datagram.
    fragmented: bool,
    /// Fragment offset is non-zero: no upper-layer header in this frame.
    non_first: bool,
    /// IPv4 identification or IPv6 fragment id.
    frag_id: u32,
}

#[inline(always)]
fn classify(ctx: &XdpContext, cfg: &XdpConfig) -> Result<Verdict, Bad> {
    let eth = bytes_at::<ETH_HLEN>(ctx, 0)?;
    let mut ethertype = be16(eth[12], eth[13]);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD || ethertype == ETH_P_QINQ_OLD {
            let tag = bytes_at::<4>(ctx, off)?;
            ethertype = be16(tag[2], tag[3]);
            off += 4;
        }
    }
    let l3 = match ethertype {
        ETH_P_IPV4 => parse_v4(ctx, off)?,
        ETH_P_IPV6 => match parse_v6(ctx, off)? {
            Some(l3) => l3,
            None => return Ok(Verdict::Unkept),
        },
        _ => return Ok(Verdict::Unkept),
    };

    if l3.fragmented && l3.proto == IPPROTO_UDP && cfg.has(CFG_KEEP_FRAGMENTS) {
        // Documented choice: keep every fragment of every UDP datagram.
        if l3.non_first {
            return Ok(Verdict::Keep(Counter::KeptFragment));
        }
        return Ok(match classify_l4(ctx, cfg, &l3)? {
            Verdict::Keep(r) => Verdict::Keep(r),
            _ => Verdict::Keep(Counter::KeptFragment),
        });
    }
    if l3.non_first {
        let key = frag_key(&l3);
        if unsafe { FRAG_IDS.get(key) }.is_some() {
            return Ok(Verdict::Keep(Counter::KeptFragment));
        }
        return Ok(Verdict::Unkept);
    }
    let v = classify_l4(ctx, cfg, &l3)?;
    if l3.fragmented && matches!(v, Verdict::Keep(_)) {
        // Best effort: a full LRU map evicts the oldest entry, it never fails.
        let _ = FRAG_IDS.insert(frag_key(&l3), 1, 0);
    }
    Ok(v)
}

#[inline(always)]
fn frag_key(l3: &L3) -> FragKey {
    FragKey {
        src: l3.src,
        dst: l3.dst,
        id: l3.frag_id,
    }
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, off: usize) -> Result<L3, Bad> {
    let h = bytes_at::<20>(ctx, off)?;
    if h[0] >> 4 != 4 {
        return Err(Bad);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Bad);
    }
    let frag = be16(h[6], h[7]);
    let more = frag & 0x2000 != 0;
    let frag_off = frag & 0x1fff;
    Ok(L3 {
        src: v4_mapped([h[12], h[13], h[14], h[15]]),
        dst: v4_mapped([h[16], h[17], h[18], h[19]]),
        proto: h[9],
        l4_off: off + ihl,
        fragmented: more || frag_off != 0,
        non_first: frag_off != 0,
        frag_id: be16(h[4], h[5]) as u32,
    })
}

/// `Ok(None)`: an IPv6 frame whose upper layer we do not reach (too many
/// extension headers, ESP, ...): passed, not counted as malformed.
#[inline(always)]
fn parse_v6(ctx: &XdpContext, off: usize) -> Result<Option<L3>, Bad> {
    let h = bytes_at::<40>(ctx, off)?;
    if h[0] >> 4 != 6 {
        return Err(Bad);
    }
    let mut next = h[6];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let mut l4 = off + 40;
    let mut fragmented = false;
    let mut non_first = false;
    let mut frag_id = 0u32;
    for _ in 0..MAX_V6_EXT {
        if !matches!(
            next,
            IPPROTO_HOPOPTS
                | IPPROTO_ROUTING
                | IPPROTO_DSTOPTS
                | IPPROTO_MH
                | IPPROTO_AH
                | IPPROTO_FRAGMENT
        ) {
            break;
        }
        // Every extension header we skip is at least 8 bytes long.
        let e = bytes_at::<8>(ctx, l4)?;
        let len = match next {
            IPPROTO_FRAGMENT => {
                frag_id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                fragmented = true;
                non_first = be16(e[2], e[3]) & 0xfff8 != 0;
                8
            }
            IPPROTO_AH => (e[1] as usize + 2) * 4,
            _ => (e[1] as usize + 1) * 8,
        };
        next = e[0];
        l4 += len;
    }
    if next != IPPROTO_UDP && next != IPPROTO_TCP {
        return Ok(None);
    }
    Ok(Some(L3 {
        src,
        dst,
        proto: next,
        l4_off: l4,
        fragmented,
        non_first,
        frag_id,
    }))
}

#[inline(always)]
fn is_sip_port(port: u16) -> bool {
    unsafe { SIP_PORTS.get(port) }.is_some()
}

#[inline(always)]
fn is_media(addr: &[u8; 16], port: u16) -> bool {
    let key = EndpointKey::new(*addr, port);
    unsafe { MEDIA_ENDPOINTS.get(key) }.is_some()
}

#[inline(always)]
fn classify_l4(ctx: &XdpContext, cfg: &XdpConfig, l3: &L3) -> Result<Verdict, Bad> {
    if l3.proto != IPPROTO_UDP && l3.proto != IPPROTO_TCP {
        return Ok(Verdict::Unkept);
    }
    // Ports are the first four bytes of both UDP and TCP.
    let ports = bytes_at::<4>(ctx, l3.l4_off)?;
    let sport = be16(ports[0], ports[1]);
    let dport = be16(ports[2], ports[3]);
    if is_sip_port(dport) || is_sip_port(sport) {
        return Ok(Verdict::Keep(Counter::KeptSip));
    }
    if l3.proto != IPPROTO_UDP {
        return Ok(Verdict::Unkept);
    }
    if is_media(&l3.dst, dport) || is_media(&l3.src, sport) {
        return Ok(Verdict::Keep(Counter::KeptMedia));
    }
    if cfg.has(CFG_HEURISTIC_RTP)
        && sport >= 1024
        && dport >= 1024
        && let Ok(hdr) = bytes_at::<12>(ctx, l3.l4_off + 8)
        && looks_like_rtp(hdr[0], hdr[1])
    {
        return Ok(Verdict::Keep(Counter::KeptHeuristic));
    }
    Ok(Verdict::Unkept)
}

/// RTCP, or RTP with a payload type outside the RTCP-conflict range: the
/// rule userspace applies too (`voxtap_common`).
#[inline(always)]
fn looks_like_rtp(b0: u8, b1: u8) -> bool {
    rtcp_header_plausible(b0, b1) || rtp_header_plausible(b0, b1)
}

#[inline(always)]
fn emit(ctx: &XdpContext, reason: Counter, cfg: &XdpConfig) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        count(Counter::LostRingFull);
        return;
    };
    let wire_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    let mut cap = wire_len as usize;
    if cap > MAX_FRAME {
        cap = MAX_FRAME;
    }
    if cap == 0 {
        count(Counter::LostRingFull);
        return;
    }
    let scratch = unsafe { &mut *scratch };
    let rc =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, scratch.data.as_mut_ptr().cast(), cap as u32) };
    if rc != 0 {
        count(Counter::LostRingFull);
        return;
    }
    scratch.meta = FrameMeta {
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        wire_len,
        cap_len: cap as u32,
        queue: ctx.rx_queue_index(),
        reason: reason as u32,
    };
    // SIP wakes the reader at once: its SDP is what adds the call's media
    // endpoints to MEDIA_ENDPOINTS, and RTP follows the 200 OK within
    // milliseconds. Media and the rest wake lazily.
    let flags = if matches!(reason, Counter::KeptSip) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        wake_flags(cfg)
    };
    let record = unsafe {
        core::slice::from_raw_parts(
            (scratch as *const Scratch).cast::<u8>(),
            FRAME_META_LEN + cap,
        )
    };
    if FRAMES.output::<[u8]>(record, flags).is_err() {
        count(Counter::LostRingFull);
    }
}

/// Lazy wake-up: `BPF_RB_NO_WAKEUP` except once every `wakeup_every` frames.
#[inline(always)]
fn wake_flags(cfg: &XdpConfig) -> u64 {
    let every = cfg.wakeup_every;
    if every <= 1 {
        return BPF_RB_FORCE_WAKEUP as u64;
    }
    match WAKE.get_ptr_mut(0) {
        Some(n) => unsafe {
            *n += 1;
            if *n >= every {
                *n = 0;
                BPF_RB_FORCE_WAKEUP as u64
            } else {
                BPF_RB_NO_WAKEUP as u64
            }
        },
        None => BPF_RB_FORCE_WAKEUP as u64,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable call to this; it only exists to link.
    loop {}
}

/// No GPL-only helper is used (ring buffer output, xdp_load_bytes,
/// ktime_get_ns and map helpers are all available to any license).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 11] = *b"Apache-2.0\0";
