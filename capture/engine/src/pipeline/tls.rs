//! SIP over TLS (and WebSocket over TLS): a TCP connection that opens with a
//! ClientHello, on a SIP port, to a server we hold an RSA key for, or whose
//! client random is in the key log, is decrypted when the keys allow; the
//! plaintext of each direction is framed like SIP over TCP (or WebSocket)
//! and goes to the call table with transport "TLS" ("WSS").
//!
//! A connection that cannot be decrypted (no key, wrong key, handshake not
//! captured, a suite we do not decrypt) and carried no SIP we could read is
//! still listed when it ends: a call whose `encrypted_signalling` says why,
//! holding the connection's packets.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{PipelineStats, Route, TcpFlow};
use crate::calls::{CallTable, PacketRef};
use crate::tap::PacketTap;
use voxtap_proto::sip::StreamReassembler;
use voxtap_proto::tls::{self, Side, TlsConnection, TlsKeys, TlsStatus};

/// Packets of a connection kept for listing it if it stays encrypted.
const MAX_CONN_REFS: usize = 100_000;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// TLS figures of a pipeline: how many connections, and how each ended.
#[derive(Clone, Debug, Default)]
pub struct TlsPipelineStats {
    pub connections: u64,
    /// Connections whose records decrypted.
    pub decrypted: u64,
    pub no_key: u64,
    pub wrong_key: u64,
    /// The capture began after the handshake.
    pub no_handshake: u64,
    /// A suite or version we do not decrypt.
    pub unsupported: u64,
    /// SIP messages read from decrypted connections.
    pub sip_messages: u64,
    pub connections_dropped: u64,
}

struct TlsFlow {
    conn: TlsConnection,
    /// Plaintext framing and the packets not yet owned by a message, per
    /// side (client, server).
    sides: [TcpFlow; 2],
    plain_seq: [u32; 2],
    client: SocketAddr,
    server: SocketAddr,
    first_ns: u64,
    /// Every packet, for listing the connection if it stays encrypted.
    refs: Vec<(u64, PacketRef)>,
    sip_messages: u64,
    fin: [bool; 2],
}

/// The TLS connections being followed, and the keys.
pub(super) struct TlsFlows {
    keys: TlsKeys,
    conns: HashMap<(SocketAddr, SocketAddr), TlsFlow>,
    max: usize,
}

impl TlsFlows {
    pub(super) fn new(keys: TlsKeys, max: usize) -> Self {
        TlsFlows {
            keys,
            conns: HashMap::new(),
            max,
        }
    }

    /// The connection a segment from `src` to `dst` belongs to, and the
    /// side that sent it.
    fn lookup(&self, src: SocketAddr, dst: SocketAddr) -> Option<((SocketAddr, SocketAddr), Side)> {
        if self.conns.contains_key(&(src, dst)) {
            Some(((src, dst), Side::Client))
        } else if self.conns.contains_key(&(dst, src)) {
            Some(((dst, src), Side::Server))
        } else {
            None
        }
    }

    /// A ClientHello opens a connection worth following: on a SIP port,
    /// to a server with an RSA key, or with a client random the key log
    /// knows.
    fn wanted(&self, dst: SocketAddr, payload: &[u8], sip_port: bool) -> bool {
        if !tls::looks_like_client_hello(payload) {
            return false;
        }
        if sip_port || self.keys.has_rsa_key_for(dst) {
            return true;
        }
        tls::record::client_hello_random(payload)
            .is_some_and(|r| self.keys.keylog().get(&r).is_some())
    }

    /// One TCP segment; false when it is not TLS we follow.
    pub(super) fn segment(
        &mut self,
        route: &mut Route<'_>,
        seq: u32,
        flags: u8,
        payload: &[u8],
        sip_port: bool,
    ) -> bool {
        let (src, dst) = (route.src, route.dst);
        let found = if self.conns.is_empty() {
            None
        } else {
            self.lookup(src, dst)
        };
        let (key, side) = match found {
            Some(f) => f,
            None if !payload.is_empty() && self.wanted(dst, payload, sip_port) => {
                if self.conns.len() >= self.max {
                    route.stats.tls.connections_dropped += 1;
                    return false;
                }
                route.stats.tls.connections += 1;
                self.conns
                    .insert((src, dst), TlsFlow::new(src, dst, route.ts_ns));
                ((src, dst), Side::Client)
            }
            None => return false,
        };
        route.calls.tick(route.ts_ns);
        let Some(flow) = self.conns.get_mut(&key) else {
            return true;
        };
        if !payload.is_empty() {
            flow.note_packet(route.refs, side);
        }
        flow.fin[idx(side)] |= flags & FIN != 0;
        let n = flow.conn.push(side, seq, payload, &mut self.keys).len();
        flow.deliver(route, side, n);
        if flow.closed(flags)
            && let Some(f) = self.conns.remove(&key)
        {
            f.end(route.calls, route.stats, &self.keys);
        }
        true
    }

    /// Connections idle for `idle_ns` end.
    pub(super) fn sweep(
        &mut self,
        now_ns: u64,
        idle_ns: u64,
        calls: &mut CallTable,
        stats: &mut PipelineStats,
    ) {
        let idle: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, f)| f.last_ns().saturating_add(idle_ns) <= now_ns)
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            if let Some(f) = self.conns.remove(&k) {
                f.end(calls, stats, &self.keys);
            }
        }
    }

    /// End of the capture: every connection ends.
    pub(super) fn finish(&mut self, calls: &mut CallTable, stats: &mut PipelineStats) {
        let mut all: Vec<_> = self.conns.drain().map(|(_, f)| f).collect();
        all.sort_by_key(|f| f.first_ns);
        for f in all {
            f.end(calls, stats, &self.keys);
        }
    }

    /// More key log: connections holding records for want of keys try
    /// again, their messages dated at their last packet.
    pub(super) fn add_keylog(
        &mut self,
        bytes: &[u8],
        calls: &mut CallTable,
        stats: &mut PipelineStats,
        mut tap: Option<&mut (dyn PacketTap + 'static)>,
    ) {
        self.keys.feed_keylog(bytes);
        for flow in self.conns.values_mut() {
            if flow.conn.status() != TlsStatus::NoKey {
                continue;
            }
            for side in [Side::Client, Side::Server] {
                // The side's last packet stands for "this segment".
                let Some(last) = flow.sides[idx(side)].pending.last().copied() else {
                    continue;
                };
                let mut route = Route {
                    calls,
                    stats,
                    tap: tap.as_deref_mut(),
                    ts_ns: last.0,
                    src: flow.client,
                    dst: flow.server,
                    refs: std::slice::from_ref(&last),
                    // Records held for want of keys: their path was noted
                    // (or not) when their segments came.
                    encap: &voxtap_proto::decode::Encap::EMPTY,
                    // SIP over TLS: every replica takes it.
                    shard: None,
                    mine: None,
                };
                let n = flow.conn.push(side, 0, &[], &mut self.keys).len();
                flow.deliver(&mut route, side, n);
            }
        }
    }
}

fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl TlsFlow {
    fn new(client: SocketAddr, server: SocketAddr, ts_ns: u64) -> Self {
        let side = || TcpFlow {
            reasm: StreamReassembler::new(),
            pending: Vec::new(),
            last_ns: ts_ns,
        };
        TlsFlow {
            conn: TlsConnection::new(Some(server)),
            sides: [side(), side()],
            plain_seq: [0, 0],
            client,
            server,
            first_ns: ts_ns,
            refs: Vec::new(),
            sip_messages: 0,
            fin: [false, false],
        }
    }

    fn last_ns(&self) -> u64 {
        self.sides[0].last_ns.max(self.sides[1].last_ns)
    }

    /// A segment with payload: its packets go with the next message of
    /// `side` (acknowledgements alone belong to no message, as over TCP).
    fn note_packet(&mut self, refs: &[(u64, PacketRef)], side: Side) {
        let s = &mut self.sides[idx(side)];
        if let Some(t) = refs.last() {
            s.last_ns = t.0;
        }
        s.pending.extend_from_slice(refs);
        if self.refs.len() < MAX_CONN_REFS {
            self.refs.extend_from_slice(refs);
        }
    }

    /// Both sides said FIN, or one reset: the connection is over.
    fn closed(&self, flags: u8) -> bool {
        flags & RST != 0 || (self.fin[0] && self.fin[1])
    }

    /// The `n` plaintext bytes `conn.push` just gave for `side` (still in
    /// its buffer): framed as SIP (or WebSocket) and handed to the calls.
    fn deliver(&mut self, route: &mut Route<'_>, side: Side, n: usize) {
        if n == 0 {
            return;
        }
        let i = idx(side);
        let (src, dst) = match side {
            Side::Client => (self.client, self.server),
            Side::Server => (self.server, self.client),
        };
        let plain = self.conn.last_plaintext();
        let s = &mut self.sides[i];
        s.reasm.push(self.plain_seq[i], plain);
        self.plain_seq[i] = self.plain_seq[i].wrapping_add(n as u32);
        let (osrc, odst) = (route.src, route.dst);
        route.src = src;
        route.dst = dst;
        let got = route.sip_messages(s, ["TLS", "WSS"]);
        route.src = osrc;
        route.dst = odst;
        self.sip_messages += got;
        route.stats.tls.sip_messages += got;
    }

    /// The connection ended: its outcome is counted, and if it never gave
    /// readable SIP it is listed as encrypted signalling.
    fn end(self, calls: &mut CallTable, stats: &mut PipelineStats, keys: &TlsKeys) {
        let status = self.conn.status();
        let t = &mut stats.tls;
        match status {
            TlsStatus::Decrypted => t.decrypted += 1,
            TlsStatus::NoKey => t.no_key += 1,
            TlsStatus::WrongKey => t.wrong_key += 1,
            TlsStatus::NoHandshake => t.no_handshake += 1,
            TlsStatus::UnsupportedSuite(_) | TlsStatus::UnsupportedVersion(_) => t.unsupported += 1,
            TlsStatus::Handshake | TlsStatus::NotTls => {}
        }
        if self.sip_messages > 0 || matches!(status, TlsStatus::NotTls | TlsStatus::Decrypted) {
            return;
        }
        let reason = describe(
            &self.conn,
            keys.has_rsa_key_for(self.server).then_some(self.server),
        );
        tracing::warn!(client = %self.client, server = %self.server, "TLS not decrypted: {reason}");
        calls.on_encrypted_signalling(
            self.first_ns,
            self.last_ns(),
            self.client,
            self.server,
            &format!("tls (not decrypted: {reason})"),
            &self.refs,
        );
    }
}

/// Why a connection was not decrypted, in words a user can act on;
/// `rsa_for` is the server when an RSA key was given for it.
fn describe(conn: &TlsConnection, rsa_for: Option<SocketAddr>) -> String {
    let random = conn
        .client_random()
        .map(|r| r.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .unwrap_or_default();
    match conn.status() {
        TlsStatus::NoKey if conn.is_tls13() => {
            format!("no key log entry for client random {random}")
        }
        TlsStatus::NoKey => match conn.suite() {
            Some(s) if s.rsa_kx => match rsa_for {
                Some(server) => format!(
                    "the RSA key given for {server} does not decrypt its premaster secret (wrong key), and no key log entry for client random {random}"
                ),
                None => format!(
                    "no key log entry for client random {random} and no RSA key of the server that decrypts it"
                ),
            },
            _ => format!("no key log entry for client random {random}"),
        },
        TlsStatus::WrongKey => {
            format!("the key for client random {random} does not decrypt it (wrong key)")
        }
        TlsStatus::NoHandshake => "the handshake was not captured".to_string(),
        TlsStatus::UnsupportedSuite(s) => format!("cipher suite 0x{s:04x} is not supported"),
        TlsStatus::UnsupportedVersion(v) => format!("TLS version 0x{v:04x} is not supported"),
        TlsStatus::Handshake => "the handshake did not complete".to_string(),
        TlsStatus::Decrypted | TlsStatus::NotTls => String::new(),
    }
}
