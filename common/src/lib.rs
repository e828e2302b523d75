//! Types shared by the XDP program (`capture-ebpf`) and userspace (`capture`).
//!
//! Everything here is `#[repr(C)]` plain data so the kernel and userspace agree
//! on the layout of map keys and values without serialisation.
#![no_std]

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
}

/// Number of counter slots in the per-CPU counter array.
pub const COUNTER_SLOTS: u32 = 9;

/// Key of the RTP/RTCP endpoint map and the SIP port map: an IPv4 address is
/// stored as an IPv4-mapped IPv6 address so one map serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 2],
}

impl EndpointKey {
    pub const fn new(addr: [u8; 16], port: u16) -> Self {
        EndpointKey { addr, port, _pad: [0; 2] }
    }

    pub const fn from_v4(addr: [u8; 4], port: u16) -> Self {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12] = addr[0];
        a[13] = addr[1];
        a[14] = addr[2];
        a[15] = addr[3];
        Self::new(a, port)
    }
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
