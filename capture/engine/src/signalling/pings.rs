//! OPTIONS pings and CRLF keep-alives, counted per pair of peers (who pings
//! whom): requests, responses by code, round-trip time, loss, first and
//! last. A carrier's SBCs pinging each other every few seconds make one row,
//! not a "call" per ping.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{SignallingConfig, SignallingStats, SipSeen};

#[derive(Clone, Debug, PartialEq)]
pub struct PeerPings {
    /// The pinging peer and the pinged one.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// OPTIONS requests sent, retransmissions included ...
    pub requests: u64,
    /// ... of which retransmissions (same transaction again).
    pub retransmissions: u64,
    /// Final responses, and how many per status code.
    pub responses: u64,
    pub codes: Vec<(u16, u64)>,
    /// Pings without a final response within the transaction wait.
    pub unanswered: u64,
    /// CRLF keep-alives (RFC 5626) from `src` to `dst`.
    pub keepalives: u64,
    /// Round-trip times of answered pings (first request to final response).
    pub rtt_min_ns: Option<u64>,
    pub rtt_max_ns: u64,
    rtt_sum_ns: u64,
    rtt_count: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl PeerPings {
    fn new(src: IpAddr, dst: IpAddr, ts_ns: u64) -> Self {
        PeerPings {
            src,
            dst,
            requests: 0,
            retransmissions: 0,
            responses: 0,
            codes: Vec::new(),
            unanswered: 0,
            keepalives: 0,
            rtt_min_ns: None,
            rtt_max_ns: 0,
            rtt_sum_ns: 0,
            rtt_count: 0,
            first_ns: ts_ns,
            last_ns: ts_ns,
        }
    }

    /// Pings sent (transactions, not retransmissions).
    pub fn pings(&self) -> u64 {
        self.requests - self.retransmissions
    }

    pub fn rtt_avg_ns(&self) -> Option<u64> {
        (self.rtt_count > 0).then(|| self.rtt_sum_ns / self.rtt_count)
    }

    /// Unanswered pings as a share of the pings decided so far (answered or
    /// unanswered), in percent.
    pub fn loss_pct(&self) -> f64 {
        let decided = self.rtt_count + self.unanswered;
        if decided == 0 {
            0.0
        } else {
            self.unanswered as f64 * 100.0 / decided as f64
        }
    }

    /// "200:299 404:1": responses per code.
    pub fn codes_text(&self) -> String {
        self.codes
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn touch(&mut self, ts_ns: u64) {
        self.first_ns = self.first_ns.min(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
    }
}

struct Pending {
    peer: usize,
    first_ns: u64,
}

#[derive(Default)]
pub(super) struct Pings {
    peers: Vec<PeerPings>,
    by_pair: HashMap<(IpAddr, IpAddr), usize>,
    pending: HashMap<(u64, u32), Pending>,
}

impl Pings {
    pub fn peers(&self) -> &[PeerPings] {
        &self.peers
    }

    fn peer(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        ts_ns: u64,
        cfg: &SignallingConfig,
        st: &mut SignallingStats,
    ) -> Option<usize> {
        if let Some(&i) = self.by_pair.get(&(src, dst)) {
            self.peers[i].touch(ts_ns);
            return Some(i);
        }
        if self.peers.len() >= cfg.max_peers {
            st.peers_dropped += 1;
            return None;
        }
        self.peers.push(PeerPings::new(src, dst, ts_ns));
        self.by_pair.insert((src, dst), self.peers.len() - 1);
        Some(self.peers.len() - 1)
    }

    pub fn on_keepalive(
        &mut self,
        ts_ns: u64,
        src: IpAddr,
        dst: IpAddr,
        cfg: &SignallingConfig,
        st: &mut SignallingStats,
    ) {
        if let Some(i) = self.peer(src, dst, ts_ns, cfg, st) {
            self.peers[i].keepalives += 1;
        }
    }

    pub fn on_sip(
        &mut self,
        m: &SipSeen<'_, '_>,
        cfg: &SignallingConfig,
        st: &mut SignallingStats,
    ) {
        let Some(key) = m.tx_key() else { return };
        if m.msg.is_request() {
            let Some(i) = self.peer(m.src.ip(), m.dst.ip(), m.ts_ns, cfg, st) else {
                return;
            };
            self.peers[i].requests += 1;
            if self.pending.contains_key(&key) {
                self.peers[i].retransmissions += 1;
            } else if self.pending.len() < cfg.max_pending {
                self.pending.insert(
                    key,
                    Pending {
                        peer: i,
                        first_ns: m.ts_ns,
                    },
                );
            }
            return;
        }
        let Some(code) = m.msg.status().filter(|c| *c >= 200) else {
            return;
        };
        // The response goes back to the pinging peer.
        let pending = self.pending.remove(&key);
        let i = match &pending {
            Some(p) => p.peer,
            None => match self.by_pair.get(&(m.dst.ip(), m.src.ip())) {
                Some(&i) => i,
                None => {
                    st.stray_responses += 1;
                    return;
                }
            },
        };
        let p = &mut self.peers[i];
        p.touch(m.ts_ns);
        p.responses += 1;
        match p.codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => {
                p.codes.push((code, 1));
                p.codes.sort_unstable();
            }
        }
        if let Some(q) = pending {
            let rtt = m.ts_ns.saturating_sub(q.first_ns);
            p.rtt_min_ns = Some(p.rtt_min_ns.map_or(rtt, |r| r.min(rtt)));
            p.rtt_max_ns = p.rtt_max_ns.max(rtt);
            p.rtt_sum_ns += rtt;
            p.rtt_count += 1;
        }
    }

    /// Pings without a final response for `wait_ns` are unanswered.
    pub fn expire(&mut self, now_ns: u64, wait_ns: u64) {
        let peers = &mut self.peers;
        self.pending.retain(|_, p| {
            if p.first_ns.saturating_add(wait_ns) > now_ns {
                return true;
            }
            peers[p.peer].unanswered += 1;
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::Signalling;
    use super::*;
    use std::net::SocketAddr;

    fn options(cseq: u32, code: Option<u16>) -> Vec<u8> {
        let line = match code {
            Some(c) => format!("SIP/2.0 {c} OK"),
            None => "OPTIONS sip:sbc-b SIP/2.0".to_string(),
        };
        format!(
            "{line}\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{cseq}\r\nFrom: <sip:ping@a>;tag=1\r\nTo: <sip:ping@b>\r\nCall-ID: ping-{cseq}@a\r\nCSeq: {cseq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// OPTIONS every 2 s for 10 minutes, every tenth unanswered, and CRLF
    /// keep-alives: one row for the pair with its counts and RTT.
    #[test]
    fn ten_minutes_of_pings_make_one_row() {
        let a: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let mut s = Signalling::new(SignallingConfig::default());
        for i in 0..300u32 {
            let t = u64::from(i) * 2_000_000_000;
            let req = options(i, None);
            s.on_sip(t, a, b, &voxtap_proto::sip::parse(&req).unwrap());
            if i % 10 != 9 {
                let resp = options(i, Some(200));
                let rtt = 1_000_000 + u64::from(i % 3) * 1_000_000;
                s.on_sip(t + rtt, b, a, &voxtap_proto::sip::parse(&resp).unwrap());
            }
            s.on_keepalive(t + 1, a, b);
            s.tick(t + 10);
        }
        s.tick(700_000_000_000);
        let p = s.pings();
        assert_eq!(p.len(), 1);
        let p = &p[0];
        assert_eq!((p.requests, p.pings(), p.responses), (300, 300, 270));
        assert_eq!(p.unanswered, 30);
        assert_eq!(p.codes_text(), "200:270");
        assert_eq!((p.rtt_min_ns, p.rtt_max_ns), (Some(1_000_000), 3_000_000));
        assert_eq!(p.rtt_avg_ns(), Some(2_000_000));
        assert!((p.loss_pct() - 10.0).abs() < 1e-9);
        assert_eq!(p.keepalives, 300);
        assert_eq!(p.first_ns, 0);
    }
}
