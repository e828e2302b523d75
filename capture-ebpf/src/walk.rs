//! The walk from the Ethernet header through every encapsulation to the
//! innermost IP header and its UDP/TCP header: the rules of userspace's
//! `voxtap_proto::decode::encap`, one header per step.
//!
//! The steps run under `bpf_loop` (kernel 5.17+): a frame takes at most
//! [`MAX_STEPS`] steps and [`XdpConfig::max_depth`] encapsulation headers,
//! each step reads a fixed-size header with `bpf_xdp_load_bytes` at a
//! variable offset (no packet pointer arithmetic for the verifier to
//! follow), and nothing in a step loops.
//!
//! The walk's state lives in a per-CPU map value ([`WALK`]), not on the
//! stack: the verifier does not track what a map value holds, so every
//! iteration of the callback starts from the same abstract state and its
//! verification converges at once (kernels from 6.7 verify callbacks
//! iteration by iteration; with the state on the stack, every distinct
//! offset and state made a new one, past the million-instruction limit).

use core::{ffi::c_void, mem::MaybeUninit};

use core::ops::{Deref, DerefMut};

use aya_ebpf::{
    bindings::xdp_md,
    helpers::{bpf_loop, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::map,
    maps::PerCpuArray,
};
use voxtap_common::{MAX_DEPTH_LIMIT, Tunnel, XdpConfig, proto::*, v4_mapped};

/// Steps of one walk: at most four (Ethernet, EtherType, IP, protocol)
/// between two encapsulation headers, plus IPv6 extension headers and GTP-U
/// extension headers.
pub const MAX_STEPS: u32 = 6 * (MAX_DEPTH_LIMIT as u32 + 2);
/// GTP-U extension headers followed (userspace: `gtpu::MAX_EXTENSIONS`).
const MAX_GTP_EXT: u32 = 8;
/// Userspace's `MPLS_IP_SLACK`: Ethernet padding and FCS after an IP
/// packet under a label stack.
const MPLS_IP_SLACK: u32 = 32;

// What the bytes at `off` are.
const S_ETH: u32 = 0;
const S_ETHERTYPE: u32 = 1;
const S_IP: u32 = 2;
const S_MPLS: u32 = 3;
const S_PROTO: u32 = 4;
const S_GTP_EXT: u32 = 5;
const S_DONE: u32 = 6;

/// How the walk ended.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Outcome {
    Running = 0,
    /// At a UDP or TCP header (`proto`, `l4_off`).
    L4 = 1,
    /// IP, but no UDP or TCP.
    Other = 2,
    /// Not IP at all.
    NotIp = 3,
    /// A non-first IP fragment: no upper-layer header here.
    NonFirstFragment = 4,
    /// A header contradicts its format (userspace: malformed).
    Bad = 5,
    /// More encapsulation headers than `max_depth`.
    TooDeep = 6,
}

/// The walk's state of the frame being classified, one per CPU.
#[map]
static WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

/// The walk's state, in [`WALK`], shared with each step.
#[repr(C)]
pub struct Walk {
    /// Where the header the state names starts.
    off: u32,
    state: u32,
    /// The EtherType (S_ETHERTYPE), IP protocol (S_PROTO) or GTP-U extension
    /// type (S_GTP_EXT) of what is at `off`.
    arg: u32,
    len: u32,
    depth: u32,
    max_depth: u32,
    vxlan_port: u32,
    geneve_port: u32,
    gtpu_port: u32,
    /// The current IP header is IPv6 (extension headers are legal).
    v6: u32,
    /// GTP-U: extension headers read, end of the GTP-U payload, and the
    /// UDP header carrying it (to fall back to plain UDP).
    gtp_ext: u32,
    gtp_end: u32,
    udp_off: u32,
    /// [`Tunnel::bit`] of every kind met.
    pub kinds: u32,
    pub outcome: Outcome,
    /// The innermost IP header's protocol and addresses (IPv4 mapped), and
    /// where its UDP/TCP header is.
    pub proto: u32,
    pub l4_off: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The first fragmented IP header met: its protocol, identification,
    /// addresses, and whether this is a later fragment.
    pub fragmented: u32,
    pub non_first: u32,
    pub frag_proto: u32,
    pub frag_id: u32,
    pub frag_src: [u8; 16],
    pub frag_dst: [u8; 16],
}

/// A read or a check failed: the frame is malformed.
pub struct Bad;

type Step = Result<(), Bad>;

/// What each step is handed: the frame (a context pointer may not be
/// stored in a map value).
#[repr(C)]
struct StepCtx {
    xdp: *mut xdp_md,
}

/// A step's view: the frame, and the walk's state in [`WALK`].
struct Cursor<'a> {
    xdp: *mut xdp_md,
    w: &'a mut Walk,
}

impl Deref for Cursor<'_> {
    type Target = Walk;
    #[inline(always)]
    fn deref(&self) -> &Walk {
        self.w
    }
}

impl DerefMut for Cursor<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Walk {
        self.w
    }
}

impl Walk {
    /// Walks the frame; None only if the per-CPU state cannot be had (not
    /// expected: an array map's slot 0 always exists).
    #[inline(always)]
    pub fn run(ctx: *mut xdp_md, cfg: &XdpConfig) -> Option<&'static mut Walk> {
        let mut max_depth = cfg.max_depth as u32;
        if max_depth > MAX_DEPTH_LIMIT as u32 {
            max_depth = MAX_DEPTH_LIMIT as u32;
        }
        let w = unsafe { &mut *WALK.get_ptr_mut(0)? };
        *w = Walk {
            off: 0,
            state: S_ETH,
            arg: 0,
            len: unsafe { bpf_xdp_get_buff_len(ctx) } as u32,
            depth: 0,
            max_depth,
            vxlan_port: cfg.vxlan_port as u32,
            geneve_port: cfg.geneve_port as u32,
            gtpu_port: cfg.gtpu_port as u32,
            v6: 0,
            gtp_ext: 0,
            gtp_end: 0,
            udp_off: 0,
            kinds: 0,
            outcome: Outcome::Running,
            proto: 0,
            l4_off: 0,
            src: [0; 16],
            dst: [0; 16],
            fragmented: 0,
            non_first: 0,
            frag_proto: 0,
            frag_id: 0,
            frag_src: [0; 16],
            frag_dst: [0; 16],
        };
        let mut sc = StepCtx { xdp: ctx };
        unsafe {
            bpf_loop(
                MAX_STEPS,
                step as *mut c_void,
                (&mut sc as *mut StepCtx).cast(),
                0,
            )
        };
        if w.outcome == Outcome::Running {
            w.outcome = Outcome::TooDeep;
        }
        Some(w)
    }
}

impl Cursor<'_> {
    /// Copy of the `N` bytes at `off` (a helper call: the kernel checks the
    /// bounds).
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Result<[u8; N], Bad> {
        // Uninitialised: the helper writes all N bytes or fails (no memset
        // call for the verifier to walk through).
        let mut b = MaybeUninit::<[u8; N]>::uninit();
        let rc = unsafe { bpf_xdp_load_bytes(self.xdp, off, b.as_mut_ptr().cast(), N as u32) };
        if rc != 0 {
            return Err(Bad);
        }
        Ok(unsafe { b.assume_init() })
    }

    #[inline(always)]
    fn be16_at(&self, off: u32) -> Result<u16, Bad> {
        let b = self.load::<2>(off)?;
        Ok(u16::from_be_bytes(b))
    }

    #[inline(always)]
    fn goto(&mut self, state: u32, arg: u32, off: u32) {
        self.state = state;
        self.arg = arg;
        self.off = off;
    }

    #[inline(always)]
    fn finish(&mut self, outcome: Outcome) {
        self.outcome = outcome;
        self.state = S_DONE;
    }

    /// Counts one encapsulation header; past `max_depth` the walk stops.
    #[inline(always)]
    fn push(&mut self, kind: Tunnel) -> Step {
        if self.depth >= self.max_depth {
            self.finish(Outcome::TooDeep);
            return Err(Bad);
        }
        self.depth += 1;
        self.kinds |= kind.bit() as u32;
        Ok(())
    }

    #[inline(always)]
    fn ethernet(&mut self) -> Step {
        let ty = self.be16_at(self.off + 12)?;
        self.goto(S_ETHERTYPE, ty as u32, self.off + 14);
        Ok(())
    }

    #[inline(always)]
    fn ethertype(&mut self) -> Step {
        let ty = self.arg as u16;
        let off = self.off;
        if ty == ETH_P_IPV4 || ty == ETH_P_IPV6 {
            self.goto(S_IP, 0, off);
        } else if is_vlan(ty) {
            let tag = self.load::<4>(off)?;
            self.push(Tunnel::Vlan)?;
            self.goto(
                S_ETHERTYPE,
                u16::from_be_bytes([tag[2], tag[3]]) as u32,
                off + 4,
            );
        } else if ty == ETH_P_MPLS_UC || ty == ETH_P_MPLS_MC {
            self.goto(S_MPLS, 0, off);
        } else if ty == ETH_P_PPPOE_SESSION {
            self.pppoe()?;
        } else if ty == ETH_P_TEB {
            self.goto(S_ETH, 0, off);
        } else {
            self.finish(Outcome::NotIp);
        }
        Ok(())
    }

    /// PPPoE session data (version and type 1, code 0), PPP protocol field
    /// compressed (one odd byte) or not.
    #[inline(always)]
    fn pppoe(&mut self) -> Step {
        let h = self.load::<8>(self.off)?;
        let length = u16::from_be_bytes([h[4], h[5]]) as u32;
        if h[0] != 0x11 || h[1] != 0 || self.off + 6 + length > self.len {
            return Err(Bad);
        }
        let (proto, hlen) = if h[6] & 1 == 1 {
            (h[6] as u16, 7)
        } else {
            (u16::from_be_bytes([h[6], h[7]]), 8)
        };
        if proto != PPP_IPV4 && proto != PPP_IPV6 {
            self.finish(Outcome::NotIp);
            return Ok(());
        }
        self.push(Tunnel::Pppoe)?;
        self.goto(S_IP, 0, self.off + hlen);
        Ok(())
    }

    /// One label stack entry; after the bottom one, what the payload looks
    /// like (userspace `mpls_payload`).
    #[inline(always)]
    fn mpls(&mut self) -> Step {
        let e = self.load::<4>(self.off)?;
        self.push(Tunnel::Mpls)?;
        let off = self.off + 4;
        if e[2] & 1 == 0 {
            self.goto(S_MPLS, 0, off);
            return Ok(());
        }
        let first = self.load::<1>(off)?[0] >> 4;
        let ip = (first == 4 && self.plausible_v4(off)) || (first == 6 && self.plausible_v6(off));
        let next = if ip && !self.plausible_eth(off) {
            S_IP
        } else {
            S_ETH
        };
        let mut at = off;
        // A control word, unless only the frame without one reads right.
        if first == 0 && (self.plausible_eth(off + 4) || !self.plausible_eth(off)) {
            at = off + 4;
        }
        self.goto(next, 0, at);
        Ok(())
    }

    /// Userspace's `plausible_v4`: the header's lengths end the packet
    /// within [`MPLS_IP_SLACK`] bytes of the frame's end.
    #[inline(always)]
    fn plausible_v4(&self, off: u32) -> bool {
        let Ok(h) = self.load::<20>(off) else {
            return false;
        };
        let ihl = ((h[0] & 0x0f) as u32) * 4;
        let total = u16::from_be_bytes([h[2], h[3]]) as u32;
        let rest = self.len.saturating_sub(off);
        ihl >= 20 && total >= ihl && total <= rest && rest - total <= MPLS_IP_SLACK
    }

    #[inline(always)]
    fn plausible_v6(&self, off: u32) -> bool {
        let Ok(h) = self.load::<8>(off) else {
            return false;
        };
        let end = 40 + u16::from_be_bytes([h[4], h[5]]) as u32;
        let rest = self.len.saturating_sub(off);
        end > 40 && end <= rest && rest - end <= MPLS_IP_SLACK
    }

    /// Userspace's `plausible_eth`: a known EtherType at 12 (for IP, with
    /// that version at 14).
    #[inline(always)]
    fn plausible_eth(&self, frame: u32) -> bool {
        let Ok(b) = self.load::<3>(frame + 12) else {
            return false;
        };
        let t = u16::from_be_bytes([b[0], b[1]]);
        let version = b[2] >> 4;
        if t == ETH_P_IPV4 {
            version == 4
        } else if t == ETH_P_IPV6 {
            version == 6
        } else {
            t == ETH_P_ARP
                || t == ETH_P_MPLS_UC
                || t == ETH_P_MPLS_MC
                || t == ETH_P_PPPOE_SESSION
                || is_vlan(t)
        }
    }

    #[inline(always)]
    fn ip(&mut self) -> Step {
        let off = self.off;
        let first = self.load::<1>(off)?[0] >> 4;
        if first == 4 {
            self.ipv4(off)
        } else if first == 6 {
            let h = self.load::<40>(off)?;
            self.src.copy_from_slice(&h[8..24]);
            self.dst.copy_from_slice(&h[24..40]);
            self.v6 = 1;
            self.goto(S_PROTO, h[6] as u32, off + 40);
            Ok(())
        } else {
            Err(Bad)
        }
    }

    #[inline(always)]
    fn ipv4(&mut self, off: u32) -> Step {
        let h = self.load::<20>(off)?;
        let ihl = ((h[0] & 0x0f) as u32) * 4;
        if ihl < 20 {
            return Err(Bad);
        }
        self.src = v4_mapped([h[12], h[13], h[14], h[15]]);
        self.dst = v4_mapped([h[16], h[17], h[18], h[19]]);
        self.v6 = 0;
        let frag = u16::from_be_bytes([h[6], h[7]]);
        let (more, frag_off) = (frag & 0x2000 != 0, frag & 0x1fff);
        if more || frag_off != 0 {
            self.fragment(
                h[9] as u32,
                u16::from_be_bytes([h[4], h[5]]) as u32,
                frag_off != 0,
            );
            if frag_off != 0 {
                return Ok(());
            }
        }
        self.goto(S_PROTO, h[9] as u32, off + ihl);
        Ok(())
    }

    /// The first fragmented header met is the one kept fragments are keyed
    /// by; a later fragment ends the walk (it has no upper-layer header),
    /// a first one is walked on into.
    #[inline(always)]
    fn fragment(&mut self, proto: u32, id: u32, non_first: bool) {
        if self.fragmented == 0 {
            self.fragmented = 1;
            self.frag_proto = proto;
            self.frag_id = id;
            self.frag_src = self.src;
            self.frag_dst = self.dst;
            self.non_first = non_first as u32;
        }
        if non_first {
            self.finish(Outcome::NonFirstFragment);
        }
    }

    #[inline(always)]
    fn proto(&mut self) -> Step {
        let p = self.arg as u8;
        let off = self.off;
        let v6 = self.v6 != 0;
        if p == IPPROTO_UDP {
            return self.udp();
        }
        if p == IPPROTO_TCP {
            self.l4(IPPROTO_TCP, off);
        } else if p == IPPROTO_IPIP || p == IPPROTO_IPV6 {
            let want = if p == IPPROTO_IPIP { 4 } else { 6 };
            if self.load::<1>(off)?[0] >> 4 != want {
                return Err(Bad);
            }
            self.push(Tunnel::IpIp)?;
            self.goto(S_IP, 0, off);
        } else if p == IPPROTO_GRE {
            return self.gre();
        } else if v6 && (p == 0 || p == 43 || p == 60 || p == 51) {
            // Hop-by-hop, routing, destination options; AH.
            let e = self.load::<2>(off)?;
            let len = if p == 51 {
                (e[1] as u32 + 2) * 4
            } else {
                (e[1] as u32 + 1) * 8
            };
            self.goto(S_PROTO, e[0] as u32, off + len);
        } else if v6 && p == 44 {
            let e = self.load::<8>(off)?;
            let frag = u16::from_be_bytes([e[2], e[3]]);
            let (frag_off, more) = (frag & 0xfff8, frag & 1 != 0);
            if frag_off != 0 || more {
                let id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
                self.fragment(e[0] as u32, id, frag_off != 0);
                if frag_off != 0 {
                    return Ok(());
                }
            }
            self.goto(S_PROTO, e[0] as u32, off + 8);
        } else {
            self.finish(Outcome::Other);
        }
        Ok(())
    }

    #[inline(always)]
    fn l4(&mut self, proto: u8, off: u32) {
        self.proto = proto as u32;
        self.l4_off = off;
        self.finish(Outcome::L4);
    }

    /// UDP, or the tunnel its destination port names when the header after
    /// it is one (else plain UDP, as userspace does).
    #[inline(always)]
    fn udp(&mut self) -> Step {
        let off = self.off;
        let h = self.load::<8>(off)?;
        let dport = u16::from_be_bytes([h[2], h[3]]) as u32;
        self.udp_off = off;
        let inner = off + 8;
        if dport == 0 {
            self.l4(IPPROTO_UDP, off);
        } else if dport == self.vxlan_port {
            match self.load::<8>(inner) {
                Ok(v) if v[0] & 0x08 != 0 => {
                    self.push(Tunnel::Vxlan)?;
                    self.goto(S_ETH, 0, inner + 8);
                }
                _ => self.l4(IPPROTO_UDP, off),
            }
        } else if dport == self.geneve_port {
            self.geneve(inner, off + u16::from_be_bytes([h[4], h[5]]) as u32)?;
        } else if dport == self.gtpu_port {
            self.gtpu(inner, off + u16::from_be_bytes([h[4], h[5]]) as u32)?;
        } else {
            self.l4(IPPROTO_UDP, off);
        }
        Ok(())
    }

    #[inline(always)]
    fn geneve(&mut self, at: u32, udp_end: u32) -> Step {
        let Ok(g) = self.load::<8>(at) else {
            self.l4(IPPROTO_UDP, self.udp_off);
            return Ok(());
        };
        let ty = u16::from_be_bytes([g[2], g[3]]);
        let next = if ty == ETH_P_TEB {
            S_ETH
        } else if ty == ETH_P_IPV4 || ty == ETH_P_IPV6 {
            S_IP
        } else {
            0xff
        };
        let hlen = 8 + ((g[0] & 0x3f) as u32) * 4;
        if g[0] >> 6 != 0 || next == 0xff || at + hlen > udp_end {
            self.l4(IPPROTO_UDP, self.udp_off);
            return Ok(());
        }
        self.push(Tunnel::Geneve)?;
        self.goto(next, 0, at + hlen);
        Ok(())
    }

    /// The GTP-U header; its extension headers are the next steps.
    #[inline(always)]
    fn gtpu(&mut self, at: u32, udp_end: u32) -> Step {
        let Ok(g) = self.load::<12>(at) else {
            self.l4(IPPROTO_UDP, self.udp_off);
            return Ok(());
        };
        let end = at + 8 + u16::from_be_bytes([g[2], g[3]]) as u32;
        if g[0] >> 5 != 1 || g[0] & 0x10 == 0 || g[1] != 0xff || end > udp_end {
            self.l4(IPPROTO_UDP, self.udp_off);
            return Ok(());
        }
        self.gtp_end = end;
        self.gtp_ext = 0;
        if g[0] & 0x07 == 0 {
            self.goto(S_GTP_EXT, 0, at + 8);
        } else {
            self.goto(S_GTP_EXT, g[11] as u32, at + 12);
        }
        Ok(())
    }

    /// One GTP-U extension header, or (type 0) the end of them: the payload
    /// must be IP, else the datagram is plain UDP.
    #[inline(always)]
    fn gtp_extension(&mut self) -> Step {
        let off = self.off;
        if off > self.gtp_end || (self.arg != 0 && self.gtp_ext >= MAX_GTP_EXT) {
            self.l4(IPPROTO_UDP, self.udp_off);
            return Ok(());
        }
        if self.arg != 0 {
            let words = self.load::<1>(off)?[0] as u32;
            let next = off + words * 4;
            if words == 0 || next > self.gtp_end {
                self.l4(IPPROTO_UDP, self.udp_off);
                return Ok(());
            }
            let t = self.load::<1>(next - 1)?[0];
            self.gtp_ext += 1;
            self.goto(S_GTP_EXT, t as u32, next);
            return Ok(());
        }
        let v = match self.load::<1>(off) {
            Ok(b) => b[0] >> 4,
            Err(Bad) => 0,
        };
        if v != 4 && v != 6 {
            self.l4(IPPROTO_UDP, self.udp_off);
            return Ok(());
        }
        self.push(Tunnel::Gtpu)?;
        self.goto(S_IP, 0, off);
        Ok(())
    }

    /// GRE version 0 (else IP without UDP/TCP): IP, Ethernet, MPLS, or
    /// ERSPAN I/II/III.
    #[inline(always)]
    fn gre(&mut self) -> Step {
        let off = self.off;
        let h = self.load::<4>(off)?;
        let flags = u16::from_be_bytes([h[0], h[1]]);
        if flags & 7 != 0 {
            self.finish(Outcome::Other);
            return Ok(());
        }
        if flags & 0x4000 != 0 {
            return Err(Bad); // RFC 1701 routing
        }
        let hlen = 4 + 4
            * (((flags >> 15) & 1) as u32
                + ((flags >> 13) & 1) as u32
                + ((flags >> 12) & 1) as u32);
        let payload = off + hlen;
        // The whole GRE header must be there (userspace: truncated).
        self.load::<1>(payload - 1)?;
        let ty = u16::from_be_bytes([h[2], h[3]]);
        if ty == ETH_P_ERSPAN_2 || ty == ETH_P_ERSPAN_3 {
            return self.erspan(payload, ty == ETH_P_ERSPAN_2 && flags & 0x1000 == 0);
        }
        let next = if ty == ETH_P_IPV4 || ty == ETH_P_IPV6 {
            S_IP
        } else if ty == ETH_P_TEB {
            S_ETH
        } else if ty == ETH_P_MPLS_UC || ty == ETH_P_MPLS_MC {
            S_MPLS
        } else {
            self.finish(Outcome::Other);
            return Ok(());
        };
        self.push(Tunnel::Gre)?;
        self.goto(next, 0, payload);
        Ok(())
    }

    /// ERSPAN type I (no header), II (8 bytes) or III (12, or 20 with the
    /// platform subheader; frame type 2 is IP).
    #[inline(always)]
    fn erspan(&mut self, at: u32, type1: bool) -> Step {
        if type1 {
            self.push(Tunnel::Erspan)?;
            self.goto(S_ETH, 0, at);
            return Ok(());
        }
        let e = self.load::<12>(at)?;
        let version = e[0] >> 4;
        let (hlen, next) = if version == 1 {
            (8, S_ETH)
        } else if version == 2 {
            let low = u16::from_be_bytes([e[10], e[11]]);
            let hlen = if low & 1 != 0 { 20 } else { 12 };
            (hlen, if (low >> 10) & 0x1f == 2 { S_IP } else { S_ETH })
        } else {
            return Err(Bad);
        };
        self.load::<1>(at + hlen - 1)?;
        self.push(Tunnel::Erspan)?;
        self.goto(next, 0, at + hlen);
        Ok(())
    }
}

/// One step of the walk (`bpf_loop` callback): 1 stops the loop.
extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    let xdp = unsafe { (*(ctx as *const StepCtx)).xdp };
    let Some(p) = WALK.get_ptr_mut(0) else {
        return 1;
    };
    let mut w = Cursor {
        xdp,
        w: unsafe { &mut *p },
    };
    let r = match w.state {
        S_ETH => w.ethernet(),
        S_ETHERTYPE => w.ethertype(),
        S_IP => w.ip(),
        S_MPLS => w.mpls(),
        S_PROTO => w.proto(),
        S_GTP_EXT => w.gtp_extension(),
        _ => return 1,
    };
    if r.is_err() {
        if w.outcome != Outcome::TooDeep {
            w.finish(Outcome::Bad);
        }
        return 1;
    }
    if w.state == S_DONE { 1 } else { 0 }
}
