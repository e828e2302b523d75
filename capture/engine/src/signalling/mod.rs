//! SIP that is not a call: registrations (REGISTER), keep-alives (OPTIONS
//! pings and CRLF keep-alives, counted per pair of peers) and the other
//! transactions outside any INVITE dialog (SUBSCRIBE/NOTIFY, MESSAGE,
//! PUBLISH, and stray in-dialog requests whose call is not in the capture).
//! They go to registrations.csv, pings.csv and transactions.csv, not to
//! calls.csv. Every table is capped: a sender inventing millions of bindings
//! or peers fills the cap, and the rest is counted, not stored.

mod pings;
mod registrations;
mod transactions;

use std::net::SocketAddr;

use voxtap_proto::sip::{Message, Method, StartLine};

pub use pings::PeerPings;
pub use registrations::Binding;
pub use transactions::Transaction;

#[derive(Clone, Debug)]
pub struct SignallingConfig {
    /// Registration bindings (AOR, contact) kept at most.
    pub max_bindings: usize,
    /// Pairs of peers whose pings are counted at most.
    pub max_peers: usize,
    /// Open transactions (awaiting a response, or retransmissions) kept at
    /// most, per table.
    pub max_pending: usize,
    /// A transaction without a final response for this long is unanswered
    /// (RFC 3261 Timer F: 64*T1 = 32 s), and a completed one stops
    /// absorbing retransmissions.
    pub transaction_wait_ns: u64,
}

impl Default for SignallingConfig {
    fn default() -> Self {
        SignallingConfig {
            max_bindings: 100_000,
            max_peers: 100_000,
            max_pending: 100_000,
            transaction_wait_ns: 32_000_000_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignallingStats {
    pub register_messages: u64,
    pub ping_messages: u64,
    pub keepalives: u64,
    pub transaction_messages: u64,
    /// Bindings, peer pairs or transactions not stored: their cap was full.
    pub bindings_dropped: u64,
    pub peers_dropped: u64,
    pub transactions_dropped: u64,
    /// Responses whose request was not seen (and whose binding or peer is
    /// unknown).
    pub stray_responses: u64,
}

/// One SIP message as the tables read it.
pub(crate) struct SipSeen<'m, 'a> {
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub msg: &'m Message<'a>,
}

impl SipSeen<'_, '_> {
    /// (hash of the Call-ID, CSeq number): names a transaction without
    /// keeping its Call-ID.
    fn tx_key(&self) -> Option<(u64, u32)> {
        let cid = self.msg.call_id()?;
        let (n, _) = self.msg.cseq()?;
        Some((crate::calls::legs::payload_hash(cid), n))
    }
}

/// The registrations and pings as they are at one moment, for the outputs
/// (a live sensor hands one to its writer thread now and then).
#[derive(Clone, Debug, Default)]
pub struct SignallingSnapshot {
    pub registrations: Vec<Binding>,
    pub pings: Vec<PeerPings>,
}

pub struct Signalling {
    cfg: SignallingConfig,
    registrations: registrations::Registrations,
    pings: pings::Pings,
    transactions: transactions::Transactions,
    stats: SignallingStats,
}

impl Signalling {
    pub fn new(cfg: SignallingConfig) -> Self {
        Signalling {
            registrations: registrations::Registrations::default(),
            pings: pings::Pings::default(),
            transactions: transactions::Transactions::default(),
            cfg,
            stats: SignallingStats::default(),
        }
    }

    pub fn stats(&self) -> SignallingStats {
        self.stats
    }

    /// A SIP message that belongs to no call.
    pub fn on_sip(&mut self, ts_ns: u64, src: SocketAddr, dst: SocketAddr, msg: &Message<'_>) {
        let m = SipSeen {
            ts_ns,
            src,
            dst,
            msg,
        };
        let method = match msg.start() {
            StartLine::Request { method, .. } => Some(*method),
            StartLine::Response { .. } => msg.cseq().map(|c| c.1),
        };
        let (cfg, st) = (&self.cfg, &mut self.stats);
        match method {
            Some(Method::Register) => {
                st.register_messages += 1;
                self.registrations.on_sip(&m, cfg, st);
            }
            Some(Method::Options) => {
                st.ping_messages += 1;
                self.pings.on_sip(&m, cfg, st);
            }
            _ => {
                st.transaction_messages += 1;
                self.transactions.on_sip(&m, cfg, st);
            }
        }
    }

    /// A CRLF keep-alive from `src` to `dst` (RFC 5626).
    pub fn on_keepalive(&mut self, ts_ns: u64, src: SocketAddr, dst: SocketAddr) {
        self.stats.keepalives += 1;
        self.pings
            .on_keepalive(ts_ns, src.ip(), dst.ip(), &self.cfg, &mut self.stats);
    }

    /// Capture time moved to `now_ns`: requests without an answer for the
    /// transaction wait are unanswered, completed transactions are done.
    pub fn tick(&mut self, now_ns: u64) {
        let wait = self.cfg.transaction_wait_ns;
        self.registrations.expire(now_ns, wait);
        self.pings.expire(now_ns, wait);
        self.transactions.expire(now_ns, wait);
    }

    /// End of capture: every transaction is done (one still waiting within
    /// the transaction wait is not called unanswered: its answer may be past
    /// the end of the capture).
    pub fn finish(&mut self) {
        self.transactions.expire(u64::MAX, 0);
    }

    /// Every binding seen, in order of first sight.
    pub fn registrations(&self) -> &[Binding] {
        self.registrations.bindings()
    }

    /// Every pair of peers that pinged, in order of first sight.
    pub fn pings(&self) -> &[PeerPings] {
        self.pings.peers()
    }

    /// A copy of the registrations and pings as they are now.
    pub fn snapshot(&self) -> SignallingSnapshot {
        SignallingSnapshot {
            registrations: self.registrations().to_vec(),
            pings: self.pings().to_vec(),
        }
    }

    /// Transactions done since the last drain (answered and past their
    /// retransmissions, or unanswered), in the order they finished.
    pub fn drain_transactions(&mut self) -> Vec<Transaction> {
        self.transactions.drain()
    }
}

/// Lossy UTF-8.
fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// `;expires=N` in a Contact value's header parameters (after the URI).
fn contact_expires(v: &[u8]) -> Option<u32> {
    let params = match memchr_gt(v) {
        Some(gt) => &v[gt..],
        None => v,
    };
    let s = String::from_utf8_lossy(params).to_ascii_lowercase();
    let at = s.find("expires=")?;
    let digits: String = s[at + 8..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn memchr_gt(v: &[u8]) -> Option<usize> {
    v.iter().position(|&b| b == b'>')
}

/// The Expires header as a number.
fn expires_header(msg: &Message<'_>) -> Option<u32> {
    msg.header("Expires")
        .and_then(|v| String::from_utf8_lossy(v).trim().parse().ok())
}
