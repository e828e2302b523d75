//! REGISTER transactions by binding (address of record, contact): how often
//! it was registered and refreshed, challenged, refused or left unanswered.

use std::collections::HashMap;
use std::net::SocketAddr;

use voxtap_proto::sip::{Message, parse_name_addr, uri_user};

use super::{SignallingConfig, SignallingStats, SipSeen, contact_expires, expires_header, lossy};
use crate::calls::legs::payload_hash;

/// One binding: an address of record registered at a contact.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The user part of the address of record (To).
    pub user: String,
    pub aor: String,
    /// The Contact URI ("*" removes every binding; empty for a query).
    pub contact: String,
    /// Where its latest REGISTER came from and went to.
    pub client: SocketAddr,
    pub registrar: SocketAddr,
    /// REGISTER messages, retransmissions included.
    pub requests: u64,
    /// 2xx answers: the first registers, the others refresh.
    pub registered: u64,
    /// 401/407 challenges.
    pub challenges: u64,
    /// Other final failures (403, 404, 5xx...).
    pub failures: u64,
    /// REGISTERs that got no final response within the transaction wait.
    pub unanswered: u64,
    /// The lifetime granted by the latest 2xx (or asked, before one).
    pub expires: Option<u32>,
    pub last_status: Option<u16>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The latest Call-ID used for it.
    pub call_id: String,
}

impl Binding {
    /// 2xx answers after the first.
    pub fn refreshes(&self) -> u64 {
        self.registered.saturating_sub(1)
    }

    /// The latest outcome: registered, unregistered (expires 0), challenged,
    /// failed, or unanswered/pending without a final response.
    pub fn outcome(&self) -> &'static str {
        match self.last_status {
            Some(200..=299) if self.expires == Some(0) => "unregistered",
            Some(200..=299) => "registered",
            Some(401 | 407) => "challenged",
            Some(_) => "failed",
            None if self.unanswered > 0 => "unanswered",
            None => "pending",
        }
    }
}

struct Pending {
    binding: usize,
    first_ns: u64,
}

#[derive(Default)]
pub(super) struct Registrations {
    bindings: Vec<Binding>,
    /// Hash of (AOR, contact) -> index into `bindings`.
    by_key: HashMap<u64, usize>,
    /// (Call-ID hash, CSeq) of REGISTERs awaiting a final response.
    pending: HashMap<(u64, u32), Pending>,
}

impl Registrations {
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    pub fn on_sip(
        &mut self,
        m: &SipSeen<'_, '_>,
        cfg: &SignallingConfig,
        st: &mut SignallingStats,
    ) {
        let Some(key) = m.tx_key() else { return };
        if m.msg.is_request() {
            self.on_request(m, key, cfg, st);
        } else if let Some(code) = m.msg.status() {
            self.on_response(m, key, code, st);
        }
    }

    fn on_request(
        &mut self,
        m: &SipSeen<'_, '_>,
        key: (u64, u32),
        cfg: &SignallingConfig,
        st: &mut SignallingStats,
    ) {
        let aor = m.msg.to().map(|t| t.uri).unwrap_or_default();
        let contact_v = m.msg.header("Contact").unwrap_or_default();
        let contact = if contact_v.iter().all(|b| b.is_ascii_whitespace()) {
            &[][..]
        } else if contact_v.trim_ascii() == b"*" {
            b"*"
        } else {
            parse_name_addr(contact_v).map_or(contact_v, |n| n.uri)
        };
        let bkey = payload_hash(aor) ^ payload_hash(contact).rotate_left(1);
        let idx = match self.by_key.get(&bkey) {
            Some(&i) => i,
            None => {
                if self.bindings.len() >= cfg.max_bindings {
                    st.bindings_dropped += 1;
                    return;
                }
                self.bindings.push(Binding {
                    user: uri_user(aor).map(lossy).unwrap_or_default(),
                    aor: lossy(aor),
                    contact: lossy(contact),
                    client: m.src,
                    registrar: m.dst,
                    requests: 0,
                    registered: 0,
                    challenges: 0,
                    failures: 0,
                    unanswered: 0,
                    expires: None,
                    last_status: None,
                    first_ns: m.ts_ns,
                    last_ns: m.ts_ns,
                    call_id: String::new(),
                });
                self.by_key.insert(bkey, self.bindings.len() - 1);
                self.bindings.len() - 1
            }
        };
        let b = &mut self.bindings[idx];
        b.requests += 1;
        b.client = m.src;
        b.registrar = m.dst;
        b.last_ns = b.last_ns.max(m.ts_ns);
        let cid = m.msg.call_id().unwrap_or_default();
        if b.call_id.as_bytes() != cid {
            b.call_id = lossy(cid);
        }
        if b.registered == 0 {
            b.expires = contact_expires(contact_v).or_else(|| expires_header(m.msg));
        }
        if self.pending.len() < cfg.max_pending || self.pending.contains_key(&key) {
            self.pending.entry(key).or_insert(Pending {
                binding: idx,
                first_ns: m.ts_ns,
            });
        }
    }

    fn on_response(
        &mut self,
        m: &SipSeen<'_, '_>,
        key: (u64, u32),
        code: u16,
        st: &mut SignallingStats,
    ) {
        if code < 200 {
            return;
        }
        let Some(p) = self.pending.remove(&key) else {
            st.stray_responses += 1;
            return;
        };
        let b = &mut self.bindings[p.binding];
        b.last_ns = b.last_ns.max(m.ts_ns);
        b.last_status = Some(code);
        match code {
            200..=299 => {
                b.registered += 1;
                b.expires = granted_expires(m.msg, &b.contact).or(b.expires);
            }
            401 | 407 => b.challenges += 1,
            _ => b.failures += 1,
        }
    }

    /// REGISTERs without a final response for `wait_ns` are unanswered.
    pub fn expire(&mut self, now_ns: u64, wait_ns: u64) {
        let bindings = &mut self.bindings;
        self.pending.retain(|_, p| {
            if p.first_ns.saturating_add(wait_ns) > now_ns {
                return true;
            }
            bindings[p.binding].unanswered += 1;
            false
        });
    }
}

/// The lifetime a 2xx grants `contact`: its own `;expires=` in the
/// registrar's Contact list, else the Expires header.
fn granted_expires(msg: &Message<'_>, contact: &str) -> Option<u32> {
    msg.header_all("Contact")
        .flat_map(|v| v.split(|&b| b == b','))
        .find(|v| parse_name_addr(v).is_some_and(|n| n.uri == contact.as_bytes()))
        .and_then(contact_expires)
        .or_else(|| expires_header(msg))
}

#[cfg(test)]
mod tests {
    use super::super::Signalling;
    use super::*;

    fn msg(start: &str, cseq: u32, contact: &str, extra: &str) -> Vec<u8> {
        let line = if start.starts_with(|c: char| c.is_ascii_digit()) {
            format!("SIP/2.0 {start}")
        } else {
            format!("{start} SIP/2.0")
        };
        format!(
            "{line}\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK{cseq}\r\nFrom: <sip:1001@x>;tag=9\r\nTo: <sip:1001@x>\r\nCall-ID: reg-1@x\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// Register, challenge, refresh twice, a refused one, an unanswered
    /// one: one binding with its counts.
    #[test]
    fn refreshes_challenges_and_failures_of_one_binding() {
        let ua: SocketAddr = "10.0.0.5:5060".parse().unwrap();
        let reg: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let mut s = Signalling::new(SignallingConfig::default());
        let c = "<sip:1001@10.0.0.5:5060>;expires=600";
        let mut feed = |ms: u64, raw: Vec<u8>| {
            let m = voxtap_proto::sip::parse(&raw).unwrap();
            let (src, dst) = if m.is_request() { (ua, reg) } else { (reg, ua) };
            s.on_sip(ms * 1_000_000, src, dst, &m);
        };
        feed(0, msg("REGISTER sip:x", 1, c, ""));
        feed(10, msg("401 Unauthorized", 1, c, ""));
        feed(20, msg("REGISTER sip:x", 2, c, ""));
        feed(
            30,
            msg("200 OK", 2, "<sip:1001@10.0.0.5:5060>;expires=300", ""),
        );
        for (i, t) in [300_000u64, 600_000].iter().enumerate() {
            let n = 3 + i as u32;
            feed(*t, msg("REGISTER sip:x", n, c, ""));
            feed(*t + 5, msg("REGISTER sip:x", n, c, "")); // retransmission
            feed(
                *t + 9,
                msg("200 OK", n, "<sip:1001@10.0.0.5:5060>;expires=300", ""),
            );
        }
        feed(900_000, msg("REGISTER sip:x", 5, c, ""));
        feed(900_010, msg("403 Forbidden", 5, c, ""));
        feed(1_000_000, msg("REGISTER sip:x", 6, c, ""));
        s.tick(1_000_000_000_000 + 33_000_000_000);
        let b = s.registrations();
        assert_eq!(b.len(), 1);
        let b = &b[0];
        assert_eq!(
            (b.user.as_str(), b.contact.as_str()),
            ("1001", "sip:1001@10.0.0.5:5060")
        );
        assert_eq!(b.requests, 8);
        assert_eq!((b.registered, b.refreshes()), (3, 2));
        assert_eq!((b.challenges, b.failures, b.unanswered), (1, 1, 1));
        assert_eq!(b.last_status, Some(403));
        assert_eq!(b.outcome(), "failed");
        assert_eq!(b.expires, Some(300));
        assert_eq!(b.call_id, "reg-1@x");
    }

    /// A flood of invented bindings stays under the cap.
    #[test]
    fn bindings_are_capped() {
        let mut s = Signalling::new(SignallingConfig {
            max_bindings: 10,
            max_pending: 10,
            ..Default::default()
        });
        let a: SocketAddr = "10.0.0.5:5060".parse().unwrap();
        for i in 0..1000 {
            let raw = msg("REGISTER sip:x", i, &format!("<sip:u{i}@10.0.0.5>"), "");
            let m = voxtap_proto::sip::parse(&raw).unwrap();
            s.on_sip(u64::from(i), a, a, &m);
        }
        assert_eq!(s.registrations().len(), 10);
        assert_eq!(s.stats().bindings_dropped, 990);
    }
}
