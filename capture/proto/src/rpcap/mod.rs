//! RPCAP protocol version 0 messages, as libpcap's rpcapd speaks them
//! (`rpcap-protocol.h`). Pure: encoders append to a caller's buffer, decoders
//! take bytes and return values or a [`ProtoError`]; no I/O, and no input
//! makes them panic (every read is checked).
//!
//! All integers on the wire are big endian, except the byte-order magic in
//! the authentication reply, which the server writes in its own order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// The only protocol version rpcapd 1.10 speaks (`RPCAP_VERSION`).
pub const VERSION: u8 = 0;
pub const HEADER_LEN: usize = 8;
/// `struct rpcap_pkthdr`.
pub const PKTHDR_LEN: usize = 20;
/// Largest payload we accept in one message. rpcapd never sends more than
/// its 64000-byte buffer for control replies and a snapshot plus 20 bytes for
/// packets; anything bigger is a broken or hostile peer, not a reason to
/// allocate gigabytes.
pub(crate) const MAX_PAYLOAD: u32 = 1 << 20;

pub const MSG_ERROR: u8 = 1;
pub const MSG_FINDALLIF_REQ: u8 = 2;
pub const MSG_OPEN_REQ: u8 = 3;
pub const MSG_STARTCAP_REQ: u8 = 4;
pub const MSG_UPDATEFILTER_REQ: u8 = 5;
pub const MSG_CLOSE: u8 = 6;
pub const MSG_PACKET: u8 = 7;
pub const MSG_AUTH_REQ: u8 = 8;
pub const MSG_STATS_REQ: u8 = 9;
pub const MSG_ENDCAP_REQ: u8 = 10;
pub const MSG_IS_REPLY: u8 = 0x80;

pub const STARTCAP_FLAG_PROMISC: u16 = 0x01;
pub const STARTCAP_FLAG_DGRAM: u16 = 0x02;

const FILTER_BPF: u16 = 1;
const AUTH_NULL: u16 = 0;
const AUTH_PASSWORD: u16 = 1;
const BYTE_ORDER_MAGIC: u32 = 0xa1b2_c3d4;
/// Wire address families (Windows values, whatever the server's OS).
const AF_INET: u16 = 2;
const AF_INET6: u16 = 23;
const SOCKADDR_LEN: usize = 128;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("peer speaks RPCAP version {0}; this client speaks version 0")]
    Version(u8),
    #[error("message payload of {0} bytes is larger than the {MAX_PAYLOAD}-byte limit")]
    TooLong(u32),
    #[error("{0} is too long for an RPCAP message")]
    FieldTooLong(&'static str),
    #[error("unexpected reply: wanted message type {want:#04x}, got {got:#04x}")]
    Unexpected { want: u8, got: u8 },
}

/// A checked reader over a byte slice: each read says what it was reading,
/// so a truncated reply names the field.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cursor { b, at: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtoError> {
        let end = self.at.checked_add(n).ok_or(ProtoError::Truncated {
            what,
            need: usize::MAX,
            have: self.b.len(),
        })?;
        let s = self.b.get(self.at..end).ok_or(ProtoError::Truncated {
            what,
            need: end,
            have: self.b.len(),
        })?;
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtoError> {
        // `take` returned exactly N bytes.
        Ok(crate::wire::array(self.take(N, what)?, 0))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ProtoError> {
        self.array(what).map(u16::from_be_bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        self.array(what).map(u32::from_be_bytes)
    }

    fn rest(&self) -> &'a [u8] {
        self.b.get(self.at..).unwrap_or(&[])
    }
}

/// `struct rpcap_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ver: u8,
    pub msg_type: u8,
    pub value: u16,
    pub plen: u32,
}

impl Header {
    pub fn new(msg_type: u8, value: u16, plen: u32) -> Self {
        Header {
            ver: VERSION,
            msg_type,
            value,
            plen,
        }
    }

    /// Decodes the first 8 bytes; checks the version and the payload limit
    /// so a caller can size its buffer from `plen` safely.
    pub fn parse(b: &[u8]) -> Result<Header, ProtoError> {
        let mut c = Cursor::new(b);
        let h = Header {
            ver: c.u8("RPCAP header")?,
            msg_type: c.u8("RPCAP header")?,
            value: c.u16("RPCAP header")?,
            plen: c.u32("RPCAP header")?,
        };
        // rpcapd answers a request of a version it does not speak with an
        // error message of version 0, so an error is always readable.
        if h.ver != VERSION {
            return Err(ProtoError::Version(h.ver));
        }
        if h.plen > MAX_PAYLOAD {
            return Err(ProtoError::TooLong(h.plen));
        }
        Ok(h)
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.ver;
        h[1] = self.msg_type;
        h[2..4].copy_from_slice(&self.value.to_be_bytes());
        h[4..8].copy_from_slice(&self.plen.to_be_bytes());
        h
    }
}

/// One whole message: header and the payload it announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

/// Splits one message off the front of `b`; returns it and the bytes after
/// it. Used for UDP datagrams (one message each) and recorded streams.
pub fn parse_message(b: &[u8]) -> Result<(Message<'_>, &[u8]), ProtoError> {
    let header = Header::parse(b)?;
    let mut c = Cursor::new(b);
    c.take(HEADER_LEN, "RPCAP header")?;
    let payload = c.take(header.plen as usize, "RPCAP payload")?;
    Ok((Message { header, payload }, c.rest()))
}

fn put_header(out: &mut Vec<u8>, msg_type: u8, value: u16, plen: usize) -> Result<(), ProtoError> {
    let plen = u32::try_from(plen).map_err(|_| ProtoError::FieldTooLong("message"))?;
    out.extend_from_slice(&Header::new(msg_type, value, plen).encode());
    Ok(())
}

/// A request with no payload: find-all-interfaces, stats, end capture, close.
pub fn encode_simple(out: &mut Vec<u8>, msg_type: u8) {
    out.extend_from_slice(&Header::new(msg_type, 0, 0).encode());
}

/// How the client proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// rpcapd started with `-n`.
    Null,
    /// Checked by rpcapd against the server's users (sent in clear unless
    /// the control connection is TLS).
    Password { user: String, password: String },
}

pub fn encode_auth(out: &mut Vec<u8>, cred: &Credentials) -> Result<(), ProtoError> {
    match cred {
        Credentials::Null => {
            put_header(out, MSG_AUTH_REQ, 0, 8)?;
            out.extend_from_slice(&AUTH_NULL.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        Credentials::Password { user, password } => {
            let l1 = u16::try_from(user.len()).map_err(|_| ProtoError::FieldTooLong("user"))?;
            let l2 =
                u16::try_from(password.len()).map_err(|_| ProtoError::FieldTooLong("password"))?;
            put_header(out, MSG_AUTH_REQ, 0, 8 + user.len() + password.len())?;
            out.extend_from_slice(&AUTH_PASSWORD.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&l1.to_be_bytes());
            out.extend_from_slice(&l2.to_be_bytes());
            out.extend_from_slice(user.as_bytes());
            out.extend_from_slice(password.as_bytes());
        }
    }
    Ok(())
}

/// The open request's payload is the bare interface name (no terminator).
pub fn encode_open(out: &mut Vec<u8>, device: &str) -> Result<(), ProtoError> {
    put_header(out, MSG_OPEN_REQ, 0, device.len())?;
    out.extend_from_slice(device.as_bytes());
    Ok(())
}

/// One classic BPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

fn put_filter(out: &mut Vec<u8>, insns: &[BpfInsn]) -> Result<(), ProtoError> {
    let n = u32::try_from(insns.len()).map_err(|_| ProtoError::FieldTooLong("filter"))?;
    out.extend_from_slice(&FILTER_BPF.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&n.to_be_bytes());
    for i in insns {
        out.extend_from_slice(&i.code.to_be_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_be_bytes());
    }
    Ok(())
}

/// `struct rpcap_startcapreq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartCap {
    pub snaplen: u32,
    pub read_timeout_ms: u32,
    pub flags: u16,
    /// Our UDP port in datagram mode; 0 for TCP (the server picks a port).
    pub portdata: u16,
}

/// rpcapd applies a filter as part of starting: the request must carry one.
pub fn encode_startcap(
    out: &mut Vec<u8>,
    req: &StartCap,
    filter: &[BpfInsn],
) -> Result<(), ProtoError> {
    put_header(out, MSG_STARTCAP_REQ, 0, 12 + 8 + 8 * filter.len())?;
    out.extend_from_slice(&req.snaplen.to_be_bytes());
    out.extend_from_slice(&req.read_timeout_ms.to_be_bytes());
    out.extend_from_slice(&req.flags.to_be_bytes());
    out.extend_from_slice(&req.portdata.to_be_bytes());
    put_filter(out, filter)
}

pub fn encode_update_filter(out: &mut Vec<u8>, filter: &[BpfInsn]) -> Result<(), ProtoError> {
    put_header(out, MSG_UPDATEFILTER_REQ, 0, 8 + 8 * filter.len())?;
    put_filter(out, filter)
}

/// Versions the server speaks (from the authentication reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthReply {
    pub min_version: u8,
    pub max_version: u8,
    /// The server is big endian (only informative: the protocol itself is
    /// big endian either way).
    pub server_big_endian: Option<bool>,
}

/// Old servers send an empty reply (version 0 only), 1.9 sends two bytes,
/// 1.10 adds padding and the byte-order magic.
pub fn parse_auth_reply(p: &[u8]) -> Result<AuthReply, ProtoError> {
    let mut c = Cursor::new(p);
    if p.is_empty() {
        return Ok(AuthReply {
            min_version: 0,
            max_version: 0,
            server_big_endian: None,
        });
    }
    let min_version = c.u8("authentication reply")?;
    let max_version = c.u8("authentication reply")?;
    let server_big_endian = if p.len() >= 8 {
        c.take(2, "authentication reply")?;
        match c.u32("authentication reply")? {
            BYTE_ORDER_MAGIC => Some(true),
            m if m == BYTE_ORDER_MAGIC.swap_bytes() => Some(false),
            _ => None,
        }
    } else {
        None
    };
    Ok(AuthReply {
        min_version,
        max_version,
        server_big_endian,
    })
}

/// One address of an interface (`struct rpcap_findalldevs_ifaddr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddress {
    pub addr: Option<IpAddr>,
    pub netmask: Option<IpAddr>,
    pub broadaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
}

/// One remote interface from find-all-interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub description: String,
    /// `PCAP_IF_*` flags (loopback 1, up 2, running 4, ...).
    pub flags: u32,
    pub addresses: Vec<IfAddress>,
}

/// Address families other than IPv4/IPv6 decode as `None`.
fn sockaddr(c: &mut Cursor<'_>) -> Result<Option<IpAddr>, ProtoError> {
    let s = c.take(SOCKADDR_LEN, "interface address")?;
    let mut a = Cursor::new(s);
    let family = a.u16("interface address")?;
    Ok(match family {
        AF_INET => {
            a.u16("IPv4 address")?;
            Some(IpAddr::V4(Ipv4Addr::from(a.array::<4>("IPv4 address")?)))
        }
        AF_INET6 => {
            a.u16("IPv6 address")?;
            a.u32("IPv6 address")?;
            Some(IpAddr::V6(Ipv6Addr::from(a.array::<16>("IPv6 address")?)))
        }
        _ => None,
    })
}

/// The find-all-interfaces reply: the header's `value` is the count.
pub fn parse_findalldevs(count: u16, p: &[u8]) -> Result<Vec<Interface>, ProtoError> {
    let mut c = Cursor::new(p);
    // Each entry is at least 12 bytes, so a lying count cannot make us
    // reserve more than the payload can hold.
    let mut out = Vec::with_capacity(usize::from(count).min(p.len() / 12));
    for _ in 0..count {
        let namelen = c.u16("interface entry")?;
        let desclen = c.u16("interface entry")?;
        let flags = c.u32("interface entry")?;
        let naddr = c.u16("interface entry")?;
        c.u16("interface entry")?;
        let name =
            String::from_utf8_lossy(c.take(usize::from(namelen), "interface name")?).into_owned();
        let description =
            String::from_utf8_lossy(c.take(usize::from(desclen), "interface description")?)
                .into_owned();
        let mut addresses = Vec::with_capacity(usize::from(naddr).min(c.rest().len() / 512));
        for _ in 0..naddr {
            addresses.push(IfAddress {
                addr: sockaddr(&mut c)?,
                netmask: sockaddr(&mut c)?,
                broadaddr: sockaddr(&mut c)?,
                dstaddr: sockaddr(&mut c)?,
            });
        }
        out.push(Interface {
            name,
            description,
            flags,
            addresses,
        });
    }
    Ok(out)
}

/// `struct rpcap_openreply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenReply {
    /// LINKTYPE of the remote interface.
    pub linktype: u32,
    pub tzoff: i32,
}

pub fn parse_open_reply(p: &[u8]) -> Result<OpenReply, ProtoError> {
    let mut c = Cursor::new(p);
    Ok(OpenReply {
        linktype: c.u32("open reply")?,
        tzoff: c.u32("open reply")? as i32,
    })
}

/// `struct rpcap_startcapreply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartCapReply {
    pub bufsize: u32,
    /// The server's data port (TCP mode); 0 in datagram mode.
    pub portdata: u16,
}

pub fn parse_startcap_reply(p: &[u8]) -> Result<StartCapReply, ProtoError> {
    let mut c = Cursor::new(p);
    Ok(StartCapReply {
        bufsize: c.u32("start capture reply")?,
        portdata: c.u16("start capture reply")?,
    })
}

/// `struct rpcap_stats`: what the remote side counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets the remote kernel filter received (`ps_recv`).
    pub received: u32,
    /// Dropped by the interface (`ps_ifdrop`).
    pub if_dropped: u32,
    /// Dropped by the kernel, buffer full (`ps_drop`).
    pub kernel_dropped: u32,
    /// Sent to us by rpcapd.
    pub server_sent: u32,
}

pub fn parse_stats(p: &[u8]) -> Result<Stats, ProtoError> {
    let mut c = Cursor::new(p);
    Ok(Stats {
        received: c.u32("statistics reply")?,
        if_dropped: c.u32("statistics reply")?,
        kernel_dropped: c.u32("statistics reply")?,
        server_sent: c.u32("statistics reply")?,
    })
}

/// An error message from the server: a code (header `value`) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub message: String,
}

pub fn parse_error(code: u16, p: &[u8]) -> ServerError {
    // The text may carry a C terminator or trailing newline; neither belongs
    // in a message shown to a person.
    let message = String::from_utf8_lossy(p)
        .trim_end_matches(['\0', '\n', '\r', ' '])
        .to_string();
    ServerError { code, message }
}

/// Names of rpcapd's error codes (`PCAP_ERR_*`).
pub fn error_code_name(code: u16) -> &'static str {
    match code {
        1 => "network error",
        2 => "initial timeout expired",
        3 => "authentication error",
        4 => "interface listing failed",
        5 => "no interfaces",
        6 => "open failed",
        7 => "filter update failed",
        8 => "statistics failed",
        9 => "read failed",
        10 => "host not authorized",
        11 => "remote accept failed",
        12 => "start capture failed",
        13 => "end capture failed",
        14 => "run-time timeout expired",
        15 => "sampling setting failed",
        16 => "message not recognized",
        17 => "version not supported",
        18 => "authentication failed",
        19 => "TLS required",
        20 => "authentication type not supported",
        _ => "unknown error",
    }
}

/// One captured packet from a packet message (`struct rpcap_pkthdr` and
/// the bytes); borrows the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ts_sec: u32,
    pub ts_usec: u32,
    pub caplen: u32,
    /// Length on the wire.
    pub len: u32,
    /// rpcapd's ordinal of this packet, from 1: a jump means loss between
    /// rpcapd and us (UDP data channel).
    pub npkt: u32,
    pub data: &'a [u8],
}

impl Packet<'_> {
    pub fn ts_ns(&self) -> u64 {
        u64::from(self.ts_sec) * 1_000_000_000 + u64::from(self.ts_usec.min(999_999)) * 1_000
    }
}

pub fn parse_packet(p: &[u8]) -> Result<Packet<'_>, ProtoError> {
    let mut c = Cursor::new(p);
    let ts_sec = c.u32("packet header")?;
    let ts_usec = c.u32("packet header")?;
    let caplen = c.u32("packet header")?;
    let len = c.u32("packet header")?;
    let npkt = c.u32("packet header")?;
    let data = c.take(caplen as usize, "packet data")?;
    Ok(Packet {
        ts_sec,
        ts_usec,
        caplen,
        len,
        npkt,
        data,
    })
}

/// Any message decoded by type, for logs, tests and the fuzz target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Error(ServerError),
    AuthReply(AuthReply),
    Interfaces(Vec<Interface>),
    OpenReply(OpenReply),
    StartCapReply(StartCapReply),
    Stats(Stats),
    Packet(Packet<'a>),
    /// Replies without payload (filter, end capture) and requests.
    Other(Header),
}

pub fn decode<'a>(m: &Message<'a>) -> Result<Decoded<'a>, ProtoError> {
    let (h, p) = (m.header, m.payload);
    Ok(match h.msg_type {
        MSG_ERROR => Decoded::Error(parse_error(h.value, p)),
        t if t == MSG_AUTH_REQ | MSG_IS_REPLY => Decoded::AuthReply(parse_auth_reply(p)?),
        t if t == MSG_FINDALLIF_REQ | MSG_IS_REPLY => {
            Decoded::Interfaces(parse_findalldevs(h.value, p)?)
        }
        t if t == MSG_OPEN_REQ | MSG_IS_REPLY => Decoded::OpenReply(parse_open_reply(p)?),
        t if t == MSG_STARTCAP_REQ | MSG_IS_REPLY => {
            Decoded::StartCapReply(parse_startcap_reply(p)?)
        }
        t if t == MSG_STATS_REQ | MSG_IS_REPLY => Decoded::Stats(parse_stats(p)?),
        MSG_PACKET => Decoded::Packet(parse_packet(p)?),
        _ => Decoded::Other(h),
    })
}
