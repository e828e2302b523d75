//! voxtap XDP classifier.
//!
//! Walks from the Ethernet header through VLAN/QinQ tags, MPLS label stacks
//! (IP or Ethernet pseudowires), PPPoE sessions, IP-in-IP, GRE (IP,
//! Ethernet, MPLS), ERSPAN I/II/III, VXLAN, Geneve and GTP-U, nested in any
//! order (see [`walk`]), to the innermost IPv4/IPv6 header and its UDP/TCP
//! header, and keeps:
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
//! The same rules apply inside tunnels as outside. Kept frames are copied
//! whole (at most [`MAX_FRAME`] bytes, outer headers included) behind a
//! [`FrameMeta`] into one of the `FRAMES_<i>` ring buffers and then passed to
//! the kernel (or dropped, [`CFG_DROP_AFTER_COPY`]). With `XdpConfig::rings`
//! above 1, ring 0 gets SIP and whatever is not plain media (fragments, TCP)
//! and each media frame goes to the ring of its destination endpoint
//! (`voxtap_common::steer_ring`), so each media ring's reader sees whole
//! streams; media to a shared endpoint (`SHARED_MEDIA`, a media server's
//! single port) goes by both ends instead (`voxtap_common::steer_ring_pair`),
//! so its streams spread over the media rings. Other frames are passed, or
//! dropped when [`CFG_DROP_UNKEPT`] is set. Every outcome increments a
//! per-CPU counter in `COUNTERS` (see `voxtap_common::Counter`); each kind
//! of encapsulation a frame went through increments its slot of `TUNNELS`
//! (`voxtap_common::Tunnel`).
//!
//! Debug logging (feature `log`, see [`xdp_debug`]): one aya-log record per
//! frame with its innermost addresses, ports and tunnel kinds, and one with
//! its verdict, when userspace raised `AYA_LOG_LEVEL` at load time.
#![no_std]
#![no_main]

mod walk;

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, xdp_action},
    helpers::{bpf_ktime_get_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use voxtap_common::{
    CFG_DROP_AFTER_COPY, CFG_DROP_UNKEPT, CFG_HEURISTIC_RTP, CFG_KEEP_FRAGMENTS, CFG_SHARED_MEDIA,
    COUNTER_SLOTS, Counter, EndpointKey, FRAG_IDS_MAX_ENTRIES, FRAME_META_LEN, FragKey, FrameMeta,
    MAX_FRAME, MAX_RINGS, MEDIA_ENDPOINTS_MAX_ENTRIES, RING_BYTES, RING_STAT_KINDS, RING_STAT_LOST,
    RING_STAT_SLOTS, RING_STAT_WRITTEN, SHARED_MEDIA_MAX_ENTRIES, SHARED_PORT_WORDS,
    SIP_PORTS_MAX_ENTRIES, TUNNEL_KINDS, Tunnel, XdpConfig,
    proto::{IPPROTO_GRE, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP},
    rtcp_header_plausible, rtp_header_plausible, steer_ring, steer_ring_pair,
};
use walk::{Outcome, Walk};

/// A debug record to aya-log's `AYA_LOGS` ring (feature `log`); nothing at
/// all without the feature. `AYA_LOG_LEVEL` is a read-only global that
/// userspace sets at load time (off unless asked for), so the verifier sees
/// a constant and drops the disabled branch.
macro_rules! xdp_debug {
    ($ctx:expr, $($arg:tt)+) => {
        #[cfg(feature = "log")]
        aya_log_ebpf::debug!($ctx, $($arg)+);
    };
}

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

/// Shared media endpoints (`EndpointKey::shared`: port's low bit cleared)
/// -> unused value: media to them is steered by both ends. Filled by
/// userspace at load; looked up only when `CFG_SHARED_MEDIA` says it is
/// not empty.
#[map]
static SHARED_MEDIA: HashMap<EndpointKey, u8> =
    HashMap::with_max_entries(SHARED_MEDIA_MAX_ENTRIES, 0);

/// Bit `p % 64` of word `p / 64`: some shared endpoint has the folded port
/// `p`. Tested before `SHARED_MEDIA`, so a frame to another port costs an
/// inlined array lookup, not a hash.
#[map]
static SHARED_PORTS: Array<u64> = Array::with_max_entries(SHARED_PORT_WORDS, 0);

/// Fragmented datagrams whose first fragment was kept.
#[map]
static FRAG_IDS: LruHashMap<FragKey, u8> = LruHashMap::with_max_entries(FRAG_IDS_MAX_ENTRIES, 0);

/// Per-CPU outcome counters, indexed by `Counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Per-CPU frames that went through each kind of encapsulation, indexed by
/// `Tunnel` (a frame counts once per kind).
#[map]
static TUNNELS: PerCpuArray<u64> = PerCpuArray::with_max_entries(TUNNEL_KINDS, 0);

/// Per-CPU number of submissions to each ring since its last forced wake-up.
#[map]
static WAKE: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_RINGS, 0);

/// Kept frames: `FrameMeta` then `cap_len` bytes of frame. Ring 0: SIP and
/// everything not plain media; rings 1..rings: media by destination
/// (`steer_ring`), or by both ends to a shared endpoint (`steer_ring_pair`).
/// Userspace shrinks the rings it does not use to one page.
#[map]
static FRAMES_0: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static FRAMES_1: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static FRAMES_2: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static FRAMES_3: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static FRAMES_4: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static FRAMES_5: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static FRAMES_6: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
static FRAMES_7: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Per-CPU frames written to / lost on each ring, slot
/// `ring * RING_STAT_KINDS + RING_STAT_*`.
#[map]
static RING_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RING_STAT_SLOTS, 0);

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

enum Verdict {
    /// Kept for this reason, to this ring.
    Keep(Counter, u32),
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
        Verdict::Keep(reason, ring) => {
            xdp_debug!(&ctx, "kept, reason {}, ring {}", reason as u32, ring);
            count(reason);
            emit(&ctx, reason, ring, &cfg);
            if cfg.has(CFG_DROP_AFTER_COPY) {
                xdp_action::XDP_DROP
            } else {
                xdp_action::XDP_PASS
            }
        }
        Verdict::Unkept => {
            xdp_debug!(&ctx, "not kept");
            if cfg.has(CFG_DROP_UNKEPT) {
                count(Counter::Dropped);
                xdp_action::XDP_DROP
            } else {
                count(Counter::Passed);
                xdp_action::XDP_PASS
            }
        }
        Verdict::Malformed => {
            xdp_debug!(&ctx, "malformed");
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

/// The `N` bytes at `off` (a helper call: the kernel checks the bounds).
#[inline(always)]
fn load<const N: usize>(ctx: &XdpContext, off: u32) -> Result<[u8; N], Bad> {
    // Uninitialised: the helper writes all N bytes or fails.
    let mut b = MaybeUninit::<[u8; N]>::uninit();
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, off, b.as_mut_ptr().cast(), N as u32) };
    if rc != 0 {
        return Err(Bad);
    }
    Ok(unsafe { b.assume_init() })
}

#[inline(always)]
fn be16(b0: u8, b1: u8) -> u16 {
    u16::from_be_bytes([b0, b1])
}

/// Fragments of these protocols may carry UDP (directly or in a tunnel).
#[inline(always)]
fn may_carry_udp(proto: u32) -> bool {
    let p = proto as u8;
    p == IPPROTO_UDP || p == IPPROTO_GRE || p == IPPROTO_IPIP || p == IPPROTO_IPV6
}

#[inline(always)]
fn classify(ctx: &XdpContext, cfg: &XdpConfig) -> Result<Verdict, Bad> {
    let w: &Walk = Walk::run(ctx.ctx, cfg).ok_or(Bad)?;
    count_tunnels(w.kinds);
    match w.outcome {
        Outcome::Bad | Outcome::Running => return Err(Bad),
        Outcome::TooDeep => {
            count(Counter::TooDeep);
            return Ok(Verdict::Unkept);
        }
        _ => {}
    }
    let fragmented = w.fragmented != 0;
    if fragmented && may_carry_udp(w.frag_proto) && cfg.has(CFG_KEEP_FRAGMENTS) {
        // Documented choice: keep every fragment of every UDP datagram
        // (and of every tunnel that may carry one).
        // Fragments go to the signalling ring: the pieces of one datagram
        // must meet in one reader, and non-first fragments have no ports.
        if w.outcome != Outcome::L4 {
            return Ok(Verdict::Keep(Counter::KeptFragment, 0));
        }
        return Ok(match classify_l4(ctx, cfg, w)? {
            Verdict::Keep(r, _) => Verdict::Keep(r, 0),
            _ => Verdict::Keep(Counter::KeptFragment, 0),
        });
    }
    match w.outcome {
        Outcome::L4 => {}
        Outcome::NonFirstFragment => {
            let key = frag_key(w);
            if unsafe { FRAG_IDS.get(key) }.is_some() {
                return Ok(Verdict::Keep(Counter::KeptFragment, 0));
            }
            return Ok(Verdict::Unkept);
        }
        _ => return Ok(Verdict::Unkept),
    }
    let v = classify_l4(ctx, cfg, w)?;
    if fragmented && let Verdict::Keep(r, _) = v {
        // Best effort: a full LRU map evicts the oldest entry, it never fails.
        let _ = FRAG_IDS.insert(frag_key(w), 1, 0);
        // The first fragment goes where its other fragments go.
        return Ok(Verdict::Keep(r, 0));
    }
    Ok(v)
}

/// One increment per kind of encapsulation the frame went through.
#[inline(always)]
fn count_tunnels(kinds: u32) {
    if kinds == 0 {
        return;
    }
    for t in Tunnel::ALL {
        if kinds & t.bit() as u32 != 0
            && let Some(p) = TUNNELS.get_ptr_mut(t as u32)
        {
            // Per-CPU slot: no other writer, no atomics needed.
            unsafe { *p += 1 };
        }
    }
}

#[inline(always)]
fn frag_key(w: &Walk) -> FragKey {
    FragKey {
        src: w.frag_src,
        dst: w.frag_dst,
        id: w.frag_id,
    }
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
fn classify_l4(ctx: &XdpContext, cfg: &XdpConfig, w: &Walk) -> Result<Verdict, Bad> {
    let proto = w.proto as u8;
    if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
        return Ok(Verdict::Unkept);
    }
    // Ports are the first four bytes of both UDP and TCP.
    let ports = load::<4>(ctx, w.l4_off)?;
    let sport = be16(ports[0], ports[1]);
    let dport = be16(ports[2], ports[3]);
    xdp_debug!(
        ctx,
        "[{:i}]:{} -> [{:i}]:{} proto {} tunnels {:x}",
        w.src,
        sport,
        w.dst,
        dport,
        w.proto,
        w.kinds
    );
    if is_sip_port(dport) || is_sip_port(sport) {
        return Ok(Verdict::Keep(Counter::KeptSip, 0));
    }
    if proto != IPPROTO_UDP {
        return Ok(Verdict::Unkept);
    }
    let reason = if is_media(&w.dst, dport) || is_media(&w.src, sport) {
        Counter::KeptMedia
    } else if cfg.has(CFG_HEURISTIC_RTP)
        && sport >= 1024
        && dport >= 1024
        && let Ok(hdr) = load::<12>(ctx, w.l4_off + 8)
        && looks_like_rtp(hdr[0], hdr[1])
    {
        Counter::KeptHeuristic
    } else {
        return Ok(Verdict::Unkept);
    };
    Ok(Verdict::Keep(reason, media_ring(cfg, w, sport, dport)))
}

/// The ring of a kept media frame: its destination's, or its pair's when
/// the destination is shared (the engine's owner rule, `parallel::Owners`).
/// The map is looked up only when userspace filled it.
#[inline(always)]
fn media_ring(cfg: &XdpConfig, w: &Walk, sport: u16, dport: u16) -> u32 {
    if cfg.has(CFG_SHARED_MEDIA) && is_shared(&w.dst, dport) {
        return steer_ring_pair(&w.src, sport, &w.dst, dport, cfg.rings);
    }
    steer_ring(&w.dst, dport, cfg.rings)
}

/// The port's bit first: most frames stop there, before the key is built.
#[inline(always)]
fn is_shared(addr: &[u8; 16], port: u16) -> bool {
    let p = u32::from(port & !1);
    let listed = match SHARED_PORTS.get(p / 64) {
        Some(bits) => *bits & (1u64 << (p % 64)) != 0,
        None => false,
    };
    if !listed {
        return false;
    }
    let key = EndpointKey::shared(*addr, port);
    unsafe { SHARED_MEDIA.get(key) }.is_some()
}

/// RTCP, or RTP with a payload type outside the RTCP-conflict range: the
/// rule userspace applies too (`voxtap_common`).
#[inline(always)]
fn looks_like_rtp(b0: u8, b1: u8) -> bool {
    rtcp_header_plausible(b0, b1) || rtp_header_plausible(b0, b1)
}

/// One more frame written to (`RING_STAT_WRITTEN`) or lost on
/// (`RING_STAT_LOST`, with `LostRingFull`) ring `ring`.
#[inline(always)]
fn count_ring(ring: u32, kind: u32) {
    if kind == RING_STAT_LOST {
        count(Counter::LostRingFull);
    }
    if let Some(p) = RING_STATS.get_ptr_mut(ring * RING_STAT_KINDS + kind) {
        // Per-CPU slot: no other writer, no atomics needed.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn emit(ctx: &XdpContext, reason: Counter, ring: u32, cfg: &XdpConfig) {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        count_ring(ring, RING_STAT_LOST);
        return;
    };
    let wire_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as u32;
    let mut cap = wire_len as usize;
    if cap > MAX_FRAME {
        cap = MAX_FRAME;
    }
    if cap == 0 {
        count_ring(ring, RING_STAT_LOST);
        return;
    }
    let scratch = unsafe { &mut *scratch };
    let rc =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, scratch.data.as_mut_ptr().cast(), cap as u32) };
    if rc != 0 {
        count_ring(ring, RING_STAT_LOST);
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
        wake_flags(cfg, ring)
    };
    let record = unsafe {
        core::slice::from_raw_parts(
            (scratch as *const Scratch).cast::<u8>(),
            FRAME_META_LEN + cap,
        )
    };
    let written = match ring {
        0 => FRAMES_0.output::<[u8]>(record, flags),
        1 => FRAMES_1.output::<[u8]>(record, flags),
        2 => FRAMES_2.output::<[u8]>(record, flags),
        3 => FRAMES_3.output::<[u8]>(record, flags),
        4 => FRAMES_4.output::<[u8]>(record, flags),
        5 => FRAMES_5.output::<[u8]>(record, flags),
        6 => FRAMES_6.output::<[u8]>(record, flags),
        _ => FRAMES_7.output::<[u8]>(record, flags),
    };
    match written {
        Ok(()) => count_ring(ring, RING_STAT_WRITTEN),
        Err(_) => count_ring(ring, RING_STAT_LOST),
    }
}

/// Lazy wake-up: `BPF_RB_NO_WAKEUP` except once every `wakeup_every` frames.
#[inline(always)]
fn wake_flags(cfg: &XdpConfig, ring: u32) -> u64 {
    let every = cfg.wakeup_every;
    if every <= 1 {
        return BPF_RB_FORCE_WAKEUP as u64;
    }
    match WAKE.get_ptr_mut(ring) {
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
