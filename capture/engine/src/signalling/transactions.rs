//! Transactions outside any INVITE dialog: SUBSCRIBE/NOTIFY, MESSAGE,
//! PUBLISH, and requests of a dialog whose call is not in the capture. One
//! row per transaction (request, its retransmissions and its final
//! response), handed out once no retransmission can follow.

use std::collections::HashMap;
use std::net::SocketAddr;

use voxtap_proto::sip::{StartLine, uri_user};

use super::{SignallingConfig, SignallingStats, SipSeen, lossy};

#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    pub method: String,
    pub call_id: String,
    pub cseq: u32,
    pub from_user: String,
    pub to_user: String,
    pub request_uri: String,
    /// Who sent the request (for a response seen alone: where it went).
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Request messages, retransmissions included (0: only a response seen).
    pub requests: u64,
    /// Final responses, retransmissions included.
    pub responses: u64,
    pub status: Option<u16>,
    pub first_ns: u64,
    /// The first request and the first final response.
    pub request_ns: Option<u64>,
    pub response_ns: Option<u64>,
    pub last_ns: u64,
}

impl Transaction {
    /// Time from the first request to the first final response.
    pub fn response_time_ns(&self) -> Option<u64> {
        Some(self.response_ns?.saturating_sub(self.request_ns?))
    }
}

#[derive(Default)]
pub(super) struct Transactions {
    open: HashMap<(u64, u32, u64), Transaction>,
    done: Vec<Transaction>,
}

impl Transactions {
    pub fn on_sip(
        &mut self,
        m: &SipSeen<'_, '_>,
        cfg: &SignallingConfig,
        st: &mut SignallingStats,
    ) {
        let Some((cid, n)) = m.tx_key() else { return };
        let Some((_, method)) = m.msg.cseq() else {
            return;
        };
        let key = (
            cid,
            n,
            crate::calls::legs::payload_hash(method.as_str().as_bytes()),
        );
        if !self.open.contains_key(&key) {
            if self.open.len() >= cfg.max_pending {
                st.transactions_dropped += 1;
                return;
            }
            let (src, dst) = if m.msg.is_request() {
                (m.src, m.dst)
            } else {
                (m.dst, m.src)
            };
            self.open.insert(
                key,
                new_transaction(m, method.as_str().into_owned(), n, src, dst),
            );
        }
        let Some(t) = self.open.get_mut(&key) else {
            return;
        };
        t.last_ns = t.last_ns.max(m.ts_ns);
        match m.msg.start() {
            StartLine::Request { uri, .. } => {
                t.requests += 1;
                t.request_ns.get_or_insert(m.ts_ns);
                if t.request_uri.is_empty() {
                    t.request_uri = lossy(uri);
                }
            }
            StartLine::Response { code, .. } if *code >= 200 => {
                t.responses += 1;
                if t.status.is_none() {
                    t.status = Some(*code);
                    t.response_ns = Some(m.ts_ns);
                }
            }
            StartLine::Response { .. } => {}
        }
    }

    /// Transactions whose last message is `wait_ns` old are done.
    pub fn expire(&mut self, now_ns: u64, wait_ns: u64) {
        let done = &mut self.done;
        self.open.retain(|_, t| {
            if t.last_ns.saturating_add(wait_ns) > now_ns {
                return true;
            }
            done.push(t.clone());
            false
        });
    }

    pub fn drain(&mut self) -> Vec<Transaction> {
        let mut v = std::mem::take(&mut self.done);
        v.sort_by_key(|t| t.first_ns);
        v
    }
}

fn new_transaction(
    m: &SipSeen<'_, '_>,
    method: String,
    cseq: u32,
    src: SocketAddr,
    dst: SocketAddr,
) -> Transaction {
    let user = |u: Option<&[u8]>| u.and_then(uri_user).map(lossy).unwrap_or_default();
    Transaction {
        method,
        call_id: m.msg.call_id().map(lossy).unwrap_or_default(),
        cseq,
        from_user: user(m.msg.from().map(|f| f.uri)),
        to_user: user(m.msg.to().map(|t| t.uri)),
        request_uri: String::new(),
        src,
        dst,
        requests: 0,
        responses: 0,
        status: None,
        first_ns: m.ts_ns,
        request_ns: None,
        response_ns: None,
        last_ns: m.ts_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Signalling;
    use super::*;

    fn raw(start: &str, cseq: &str) -> Vec<u8> {
        let line = if start.starts_with(|c: char| c.is_ascii_digit()) {
            format!("SIP/2.0 {start}")
        } else {
            format!("{start} SIP/2.0")
        };
        format!(
            "{line}\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:alice@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: sub-1@x\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// SUBSCRIBE, its 200 retransmitted, two NOTIFYs (one unanswered): three
    /// rows, each handed out once nothing more can come.
    #[test]
    fn one_row_per_transaction_after_its_retransmissions() {
        let a: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let mut s = Signalling::new(SignallingConfig::default());
        let mut feed = |ms: u64, start: &str, cseq: &str, from_a: bool| {
            let r = raw(start, cseq);
            let m = voxtap_proto::sip::parse(&r).unwrap();
            let (src, dst) = if from_a { (a, b) } else { (b, a) };
            s.on_sip(ms * 1_000_000, src, dst, &m);
        };
        feed(0, "SUBSCRIBE sip:bob@x", "1 SUBSCRIBE", true);
        feed(8, "200 OK", "1 SUBSCRIBE", false);
        feed(500, "200 OK", "1 SUBSCRIBE", false);
        feed(10, "NOTIFY sip:alice@x", "1 NOTIFY", false);
        feed(12, "200 OK", "1 NOTIFY", true);
        feed(20, "NOTIFY sip:alice@x", "2 NOTIFY", false);
        s.tick(20_000);
        assert!(
            s.drain_transactions().is_empty(),
            "retransmissions may still come"
        );
        s.tick(40_000_000_000);
        let t = s.drain_transactions();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t.iter()
                .map(|t| (t.method.as_str(), t.status))
                .collect::<Vec<_>>(),
            [
                ("SUBSCRIBE", Some(200)),
                ("NOTIFY", Some(200)),
                ("NOTIFY", None)
            ]
        );
        assert_eq!((t[0].requests, t[0].responses), (1, 2));
        assert_eq!(t[0].response_time_ns(), Some(8_000_000));
        assert_eq!((t[1].src, t[1].dst), (b, a));
        assert_eq!(t[0].request_uri, "sip:bob@x");
    }
}
