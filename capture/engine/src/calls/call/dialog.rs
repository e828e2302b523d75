//! The SIP dialog state machine: what a request or a response does to a
//! call's parties, state, times and codes, and how the call ends.

use std::borrow::Cow;
use std::net::SocketAddr;

use voxtap_proto::sip::{Message, Method, StartLine, uri_user};
use voxtap_proto::utf8_lossy;

use super::{Call, CallState, EndReason, Mark, Name, PacketRef};

/// One SIP message as the call table hands it on.
pub(crate) struct SipPacket<'m, 'a> {
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: &'static str,
    pub msg: &'m Message<'a>,
    /// The packets that carried it.
    pub refs: &'m [(u64, PacketRef)],
}

type CSeq<'a> = Option<(u32, Method<'a>)>;

/// Transactions that ended the dialog but are not complete yet: their
/// requests or final responses may still be retransmitted (RFC 3261 Timers
/// F, H and J, 64*T1 = 32 s), so the call waits for them before it closes.
pub(in crate::calls) const AWAIT_BYE: u8 = 1;
pub(in crate::calls) const AWAIT_CANCEL: u8 = 2;
/// A non-2xx final response to the INVITE not acknowledged yet.
pub(in crate::calls) const AWAIT_ACK: u8 = 4;

impl Call {
    /// One SIP message of this call. After BYE, CANCEL or a final failure,
    /// trailing packets still count for `linger_ns`. Its text is kept
    /// within `budget` (see `sip_text`); returns the bytes kept.
    pub(in crate::calls) fn on_sip(
        &mut self,
        p: &SipPacket<'_, '_>,
        linger_ns: u64,
        budget: super::sip_text::SipBudget,
    ) -> usize {
        self.last_ns = self.last_ns.max(p.ts_ns);
        self.last_sip_ns = self.last_sip_ns.max(p.ts_ns);
        self.sip_packets += p.refs.len().max(1) as u64;
        self.sip_messages += 1;
        if self.sip_messages == 1 {
            self.from_tag = from_tag_hash(p.msg);
        }
        self.packets.extend(p.refs);
        if matches!(p.transport, "TLS" | "WSS") {
            self.note_tls();
        }
        if self.from_uri().is_empty() {
            self.note_parties(p.msg);
        }
        let kept = self.keep_sip(p, budget);
        let cseq = p.msg.cseq();
        let linger_until = p.ts_ns.saturating_add(linger_ns);
        match p.msg.start() {
            StartLine::Request { method, uri } => {
                if let Some((n, _)) = cseq {
                    self.max_cseq = self.max_cseq.max(n);
                }
                self.on_request(*method, uri, cseq, p.ts_ns, linger_until);
            }
            StartLine::Response { code, .. } => {
                self.note_transaction_end(*code, &cseq);
                self.on_response(*code, cseq, p.ts_ns, linger_until);
            }
        }
        kept
    }

    /// A final response completes a BYE or CANCEL transaction; a non-2xx
    /// final response to the INVITE waits for its ACK.
    fn note_transaction_end(&mut self, code: u16, cseq: &CSeq<'_>) {
        if code < 200 {
            return;
        }
        match cseq {
            Some((_, Method::Bye)) => self.awaiting &= !AWAIT_BYE,
            Some((_, Method::Cancel)) => self.awaiting &= !AWAIT_CANCEL,
            Some((_, Method::Invite)) if code >= 300 => self.awaiting |= AWAIT_ACK,
            _ => {}
        }
    }

    /// Whether `msg` starts a new call on this Call-ID: the dialog ended (by
    /// BYE, CANCEL or a final failure) and `msg` is a new initial INVITE.
    pub(in crate::calls) fn starts_new_call(&self, msg: &Message<'_>) -> bool {
        self.end_reason.is_some()
            && self.mark(Mark::LingerUntil).is_some()
            && is_new_initial_invite(msg, self.from_tag, self.max_cseq)
    }

    /// What a closed call leaves behind to recognise its late messages:
    /// (hash of the From-tag, highest request CSeq).
    pub(in crate::calls) fn dialog_marks(&self) -> (u64, u32) {
        (self.from_tag, self.max_cseq)
    }

    /// From and To of the first message that has them.
    fn note_parties(&mut self, msg: &Message<'_>) {
        let user = |uri| uri_user(uri).map(lossy).unwrap_or_default();
        let from = msg.from().map(|f| (lossy(f.uri), user(f.uri)));
        let to = msg.to().map(|t| (lossy(t.uri), user(t.uri)));
        let mut set = Vec::with_capacity(4);
        if let Some((uri, user)) = &from {
            set.extend([
                (Name::FromUri, uri.as_str()),
                (Name::FromUser, user.as_str()),
            ]);
        }
        if let Some((uri, user)) = &to {
            set.extend([(Name::ToUri, uri.as_str()), (Name::ToUser, user.as_str())]);
        }
        if !set.is_empty() {
            self.names.set(&set);
        }
    }

    fn on_request(
        &mut self,
        method: Method<'_>,
        uri: &[u8],
        cseq: CSeq<'_>,
        ts_ns: u64,
        linger_until: u64,
    ) {
        match method {
            Method::Invite => {
                // An initial INVITE (no dialog yet): a new CSeq here is the
                // re-sent INVITE after a 401/407 challenge.
                if self.answer_ns().is_none() && !self.state.is_final() {
                    if let Some((n, _)) = cseq {
                        self.invite_cseq = Some(n);
                    }
                    if self.request_uri().is_empty() {
                        self.names.set(&[(Name::RequestUri, &lossy(uri))]);
                    }
                }
            }
            Method::Cancel => {
                self.awaiting |= AWAIT_CANCEL;
                if !self.state.is_final() {
                    self.state = CallState::Cancelled;
                    self.end(ts_ns, EndReason::Cancel, linger_until);
                }
            }
            Method::Bye => {
                self.awaiting |= AWAIT_BYE;
                self.end(ts_ns, EndReason::Bye, linger_until);
            }
            Method::Ack => self.awaiting &= !AWAIT_ACK,
            _ => {
                if !self.is_invite() && self.request_uri().is_empty() {
                    self.names.set(&[(Name::RequestUri, &lossy(uri))]);
                }
            }
        }
    }

    fn on_response(&mut self, code: u16, cseq: CSeq<'_>, ts_ns: u64, linger_until: u64) {
        let is_invite_tx = matches!(cseq, Some((_, Method::Invite)));
        let initial = match (self.invite_cseq, &cseq) {
            (Some(want), Some((n, _))) => want == *n,
            (None, _) => true,
            _ => false,
        };
        if self.is_invite() && is_invite_tx && initial {
            self.on_invite_response(code, ts_ns, linger_until);
        } else if !self.is_invite()
            && cseq
                .as_ref()
                .is_some_and(|(_, m)| m.as_str() == self.method())
        {
            self.on_transaction_response(code, ts_ns, linger_until);
        }
    }

    /// A response to the initial INVITE.
    fn on_invite_response(&mut self, code: u16, ts_ns: u64, linger_until: u64) {
        match code {
            100..=179 | 190..=199 => {}
            180..=189 => {
                self.mark_first(Mark::Ringing, ts_ns);
                if self.state == CallState::InProgress {
                    self.state = CallState::Ringing;
                }
            }
            200..=299 => {
                if self.answer_ns().is_none() {
                    self.set_mark(Mark::Answer, Some(ts_ns));
                    // A 2xx that crosses a CANCEL wins: the call was set up
                    // and will be ended by a BYE.
                    if self.end_reason == Some(EndReason::Cancel) {
                        self.set_mark(Mark::End, None);
                        self.end_reason = None;
                        self.set_mark(Mark::LingerUntil, None);
                    }
                    self.state = CallState::Answered;
                    self.status_code = Some(code);
                }
            }
            // Authentication challenges are not an outcome: the caller retries.
            401 | 407 => {}
            _ => {
                if self.answer_ns().is_none() && self.state != CallState::Answered {
                    let state = match code {
                        486 | 600 => CallState::Busy,
                        603 => CallState::Declined,
                        487 => CallState::Cancelled,
                        408 | 480 => CallState::NoAnswer,
                        _ => CallState::Failed,
                    };
                    // A CANCEL already set the state; the 487 confirms it.
                    if !(self.state == CallState::Cancelled && code == 487) {
                        self.state = state;
                    }
                    self.status_code = Some(code);
                    self.end(ts_ns, EndReason::FinalResponse, linger_until);
                }
            }
        }
    }

    /// A response to the request that created a non-INVITE call (REGISTER,
    /// OPTIONS, MESSAGE...): its first final one (not a challenge) ends it.
    fn on_transaction_response(&mut self, code: u16, ts_ns: u64, linger_until: u64) {
        if code < 200 || matches!(code, 401 | 407) || self.state.is_final() {
            return;
        }
        self.state = if code < 300 {
            CallState::Completed
        } else {
            CallState::Failed
        };
        self.status_code = Some(code);
        self.set_mark(Mark::End, Some(ts_ns));
        self.end_reason = Some(EndReason::FinalResponse);
        self.set_mark(Mark::LingerUntil, Some(linger_until));
    }

    /// The dialog ended (the first end named wins); trailing packets count
    /// until `linger_until`.
    fn end(&mut self, ts_ns: u64, reason: EndReason, linger_until: u64) {
        self.mark_first(Mark::End, ts_ns);
        self.end_reason.get_or_insert(reason);
        self.set_mark(Mark::LingerUntil, Some(linger_until));
    }

    /// Due to be closed at `now_ns`: its linger time is over and the
    /// transactions that ended it are complete (or their last message is
    /// `tx_wait_ns` old: no retransmission comes after that), or it has been
    /// idle for `idle_ns`.
    pub(in crate::calls) fn due(&self, now_ns: u64, idle_ns: u64, tx_wait_ns: u64) -> bool {
        let settled = self.awaiting == 0 || self.last_sip_ns.saturating_add(tx_wait_ns) <= now_ns;
        self.mark(Mark::LingerUntil)
            .is_some_and(|t| t <= now_ns && settled)
            || self.last_ns.saturating_add(idle_ns) <= now_ns
    }

    /// The table closes the call. One that ended by its own SIP (BYE,
    /// CANCEL, a final response) and lingered keeps that end; any other
    /// ends now, at its last packet, for `reason`.
    pub(in crate::calls) fn close(&mut self, reason: EndReason) {
        if self.mark(Mark::LingerUntil).is_some() {
            return;
        }
        if reason == EndReason::IdleTimeout && !self.state.is_final() {
            self.state = CallState::TimedOut;
        }
        if self.end_reason.is_none() {
            self.end_reason = Some(reason);
        }
        self.mark_first(Mark::End, self.last_ns);
    }
}

/// The start line as `sip.txt` and the ladder show it: "INVITE sip:bob@x" or
/// "200 OK (INVITE)".
pub(super) fn summary(msg: &Message<'_>) -> Cow<'static, str> {
    match msg.start() {
        StartLine::Request { method, uri } => {
            // Written into one allocation of its final size (worker 0 does
            // this for every request of every call).
            let (method, uri) = (method.as_str(), utf8_lossy(uri));
            let mut s = String::with_capacity(method.len() + 1 + uri.len());
            s.push_str(&method);
            s.push(' ');
            s.push_str(&uri);
            s.into()
        }
        StartLine::Response { code, reason } => {
            let cseq = msg.cseq();
            let method = cseq.as_ref().map(|(_, m)| m.as_str());
            let method = method.as_deref().unwrap_or_default();
            // Found by its parts, so that the usual text is neither
            // formatted nor allocated (worker 0 does this for every
            // response of every call).
            let usual = USUAL_RESPONSES
                .iter()
                .find(|u| u.code == *code && u.reason.as_bytes() == *reason && u.method == method);
            match usual {
                Some(u) => Cow::Borrowed(u.text),
                None => format!("{code} {} ({method})", lossy(reason)).into(),
            }
        }
    }
}

/// The length of [`summary`]'s text, not written (a replica that keeps no
/// SIP entries counts them by it).
pub(super) fn summary_len(msg: &Message<'_>) -> usize {
    let lossy_len = |b: &[u8]| utf8_lossy(b).len();
    match msg.start() {
        StartLine::Request { method, uri } => method.as_str().len() + " ".len() + lossy_len(uri),
        StartLine::Response { code, reason } => {
            let method = msg.cseq().map_or(0, |(_, m)| m.as_str().len());
            let digits = code.checked_ilog10().map_or(1, |d| d as usize + 1);
            digits + " ".len() + lossy_len(reason) + " (".len() + method + ")".len()
        }
    }
}

/// A response most calls get, and its text as [`summary`] writes it: an
/// open call keeps its SIP entries, and a separate allocation for "200 OK
/// (INVITE)" in each took 32 bytes of heap for 15 of text.
struct UsualResponse {
    code: u16,
    reason: &'static str,
    method: &'static str,
    text: &'static str,
}

/// A usual response by its parts, its text made of them at compile time.
macro_rules! usual {
    ($code:literal, $reason:literal, $method:literal) => {
        UsualResponse {
            code: $code,
            reason: $reason,
            method: $method,
            text: concat!($code, " ", $reason, " (", $method, ")"),
        }
    };
}

const USUAL_RESPONSES: &[UsualResponse] = &[
    usual!(100, "Trying", "INVITE"),
    usual!(180, "Ringing", "INVITE"),
    usual!(183, "Session Progress", "INVITE"),
    usual!(200, "OK", "INVITE"),
    usual!(200, "OK", "BYE"),
    usual!(200, "OK", "CANCEL"),
    usual!(200, "OK", "UPDATE"),
    usual!(200, "OK", "PRACK"),
    usual!(401, "Unauthorized", "INVITE"),
    usual!(407, "Proxy Authentication Required", "INVITE"),
    usual!(487, "Request Terminated", "INVITE"),
];

/// Which message carried an SDP: "INVITE", "200 INVITE", "UPDATE"...
pub(in crate::calls) fn announced_by(msg: &Message<'_>) -> String {
    match msg.start() {
        StartLine::Request { method, .. } => method.as_str().to_string(),
        StartLine::Response { code, .. } => format!("{code} {}", cseq_method(msg)),
    }
}

/// The method a response answers (from its CSeq), or "".
fn cseq_method(msg: &Message<'_>) -> String {
    msg.cseq()
        .map(|(_, m)| m.as_str().to_string())
        .unwrap_or_default()
}

fn lossy(b: &[u8]) -> String {
    utf8_lossy(b).into_owned()
}

/// A hash of the From-tag (0 without one): the call keeps 8 bytes, not the tag.
pub(in crate::calls) fn from_tag_hash(msg: &Message<'_>) -> u64 {
    msg.from()
        .and_then(|f| f.tag)
        .map_or(0, |t| crate::calls::legs::payload_hash(t) | 1)
}

/// An INVITE outside any dialog (no To-tag) that is not a retransmission or
/// a challenge retry of the one that made a call with `from_tag` and
/// `max_cseq`: another From-tag, or a CSeq past the old dialog's.
pub(in crate::calls) fn is_new_initial_invite(
    msg: &Message<'_>,
    from_tag: u64,
    max_cseq: u32,
) -> bool {
    let invite = matches!(
        msg.start(),
        StartLine::Request {
            method: Method::Invite,
            ..
        }
    );
    let in_dialog = msg.to().is_some_and(|t| t.tag.is_some());
    invite
        && !in_dialog
        && (from_tag_hash(msg) != from_tag || msg.cseq().is_some_and(|(n, _)| n > max_cseq))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: u64 = 5_000_000_000;

    fn a() -> SocketAddr {
        "10.0.0.1:5060".parse().unwrap()
    }

    fn b() -> SocketAddr {
        "10.0.0.2:5060".parse().unwrap()
    }

    /// `start` is "INVITE sip:bob@x" or "486 Busy Here"; `cseq` like "1 INVITE".
    fn raw(start: &str, cseq: &str) -> Vec<u8> {
        let line = if start.starts_with(|c: char| c.is_ascii_digit()) {
            format!("SIP/2.0 {start}")
        } else {
            format!("{start} SIP/2.0")
        };
        format!(
            "{line}\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:alice@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: c1@x\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// A call created by `method`, fed each (time in ms, start line, CSeq).
    fn run(method: &str, msgs: &[(u64, &str, &str)]) -> Call {
        let mut call = Call::new(1, b"c1@x", method.to_string(), 0);
        for &(ms, start, cseq) in msgs {
            let bytes = raw(start, cseq);
            let msg = voxtap_proto::sip::parse(&bytes).unwrap();
            let request = msg.is_request();
            let p = SipPacket {
                ts_ns: ms * 1_000_000,
                src: if request { a() } else { b() },
                dst: if request { b() } else { a() },
                transport: "UDP",
                msg: &msg,
                refs: &[],
            };
            call.on_sip(&p, LINGER, crate::calls::call::SipBudget::UNLIMITED);
        }
        call
    }

    /// `summary_len` is the length of the text `summary` writes, for
    /// requests and responses, usual or not, with or without a CSeq, with
    /// codes of any width and with bytes that are not UTF-8 (each becomes a
    /// three-byte U+FFFD).
    #[test]
    fn summary_len_is_the_summary_texts_length() {
        let mut cases: Vec<Vec<u8>> = [
            ("INVITE sip:bob@x", "1 INVITE"),
            ("FOO sip:bob@x;user=phone", "7 FOO"),
            ("200 OK", "1 INVITE"),
            ("200 OK", "2 BYE"),
            ("183 Session Progress", "1 INVITE"),
            ("486 Busy Here", "1 INVITE"),
            ("299 Something New", "3 FOO"),
            ("100 Trying", "1 INVITE"),
        ]
        .iter()
        .map(|(start, cseq)| raw(start, cseq))
        .collect();
        cases.push(b"INVITE sip:b\xffob@x SIP/2.0\r\nCall-ID: c\r\n\r\n".to_vec());
        cases.push(b"SIP/2.0 200 \xfe\xffOK\r\nCall-ID: c\r\n\r\n".to_vec());
        cases.push(b"SIP/2.0 603 Decline\r\nCall-ID: c\r\n\r\n".to_vec());
        cases.push(b"INVITE sip:\xe2\x82\xac@x SIP/2.0\r\nCall-ID: c\r\n\r\n".to_vec());
        for bytes in &cases {
            let msg = voxtap_proto::sip::parse(bytes).unwrap();
            assert_eq!(
                summary_len(&msg),
                summary(&msg).len(),
                "{:?}",
                summary(&msg)
            );
        }
    }

    /// A request's summary is its method, a space and its Request-URI (as
    /// lossy UTF-8).
    #[test]
    fn request_summary_is_method_and_uri() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"INVITE sip:bob@x SIP/2.0\r\nCall-ID: c\r\n\r\n",
                "INVITE sip:bob@x",
            ),
            (
                b"FOO sip:b@x;user=phone SIP/2.0\r\nCall-ID: c\r\n\r\n",
                "FOO sip:b@x;user=phone",
            ),
            (
                b"BYE sip:b\xffob@x SIP/2.0\r\nCall-ID: c\r\n\r\n",
                "BYE sip:b\u{fffd}ob@x",
            ),
        ];
        for (bytes, want) in cases {
            let msg = voxtap_proto::sip::parse(bytes).unwrap();
            assert_eq!(summary(&msg), want);
        }
    }

    /// Each usual response's text is what its parts format to, and
    /// `summary` gives it (borrowed) for that response alone: a different
    /// reason, method or code is formatted.
    #[test]
    fn usual_responses_are_their_parts() {
        for u in USUAL_RESPONSES {
            assert_eq!(format!("{} {} ({})", u.code, u.reason, u.method), u.text);
            let start = format!("{} {}", u.code, u.reason);
            let msg_bytes = raw(&start, &format!("1 {}", u.method));
            let msg = voxtap_proto::sip::parse(&msg_bytes).unwrap();
            assert!(matches!(summary(&msg), Cow::Borrowed(t) if t == u.text));
        }
        for (start, cseq, want) in [
            ("200 Ok", "1 INVITE", "200 Ok (INVITE)"),
            ("200 OK", "1 REGISTER", "200 OK (REGISTER)"),
            ("202 OK", "1 INVITE", "202 OK (INVITE)"),
            ("180 Ringing", "", "180 Ringing ()"),
        ] {
            let msg_bytes = raw(start, cseq);
            let msg = voxtap_proto::sip::parse(&msg_bytes).unwrap();
            assert!(
                matches!(summary(&msg), Cow::Owned(t) if t == want),
                "{start} {cseq}"
            );
        }
    }

    #[test]
    fn answered_then_bye() {
        let c = run(
            "INVITE",
            &[
                (0, "INVITE sip:bob@x", "1 INVITE"),
                (100, "180 Ringing", "1 INVITE"),
                (900, "200 OK", "1 INVITE"),
                (5000, "BYE sip:alice@x", "2 BYE"),
            ],
        );
        assert_eq!(c.state(), CallState::Answered);
        assert_eq!(c.status_code(), Some(200));
        assert_eq!(c.ringing_ns(), Some(100_000_000));
        assert_eq!(c.answer_ns(), Some(900_000_000));
        assert_eq!(c.end_ns(), Some(5_000_000_000));
        assert_eq!(c.end_reason(), Some(EndReason::Bye));
        assert_eq!((c.from_user(), c.to_user()), ("alice", "bob"));
        assert_eq!(c.request_uri(), "sip:bob@x");
        assert_eq!(c.sip()[1].summary, "180 Ringing (INVITE)");
        assert!(!c.due(5_000_000_000 + LINGER - 1, u64::MAX, 0));
        assert!(c.due(5_000_000_000 + LINGER, u64::MAX, 0));
    }

    #[test]
    fn challenge_is_no_outcome_and_the_retry_counts() {
        let c = run(
            "INVITE",
            &[
                (0, "INVITE sip:bob@x", "1 INVITE"),
                (10, "407 Proxy Authentication Required", "1 INVITE"),
                (20, "INVITE sip:bob@x", "2 INVITE"),
                (30, "603 Decline", "2 INVITE"),
                // A late response to the challenged INVITE changes nothing.
                (40, "486 Busy Here", "1 INVITE"),
            ],
        );
        assert_eq!(c.state(), CallState::Declined);
        assert_eq!(c.status_code(), Some(603));
        assert_eq!(c.end_reason(), Some(EndReason::FinalResponse));
    }

    #[test]
    fn cancel_then_487_stays_cancelled_and_a_crossing_2xx_wins() {
        let c = run(
            "INVITE",
            &[
                (0, "INVITE sip:bob@x", "1 INVITE"),
                (50, "CANCEL sip:bob@x", "1 CANCEL"),
                (60, "487 Request Terminated", "1 INVITE"),
            ],
        );
        assert_eq!(c.state(), CallState::Cancelled);
        assert_eq!(c.status_code(), Some(487));
        assert_eq!(c.end_reason(), Some(EndReason::Cancel));
        assert_eq!(c.end_ns(), Some(50_000_000));
        let c = run(
            "INVITE",
            &[
                (0, "INVITE sip:bob@x", "1 INVITE"),
                (50, "CANCEL sip:bob@x", "1 CANCEL"),
                (55, "200 OK", "1 INVITE"),
            ],
        );
        assert_eq!(c.state(), CallState::Answered);
        assert_eq!((c.end_ns(), c.end_reason()), (None, None));
        assert!(!c.due(u64::MAX / 2, u64::MAX, 0));
    }

    #[test]
    fn non_invite_transaction_completes() {
        let c = run(
            "REGISTER",
            &[
                (0, "REGISTER sip:x", "1 REGISTER"),
                (5, "401 Unauthorized", "1 REGISTER"),
                (10, "REGISTER sip:x", "2 REGISTER"),
                (15, "200 OK", "2 REGISTER"),
            ],
        );
        assert_eq!(c.state(), CallState::Completed);
        assert_eq!(c.status_code(), Some(200));
        assert_eq!(c.end_ns(), Some(15_000_000));
        assert_eq!(c.request_uri(), "sip:x");
    }

    #[test]
    fn close_times_out_an_open_call_but_keeps_an_ended_one() {
        let mut open = run("INVITE", &[(0, "INVITE sip:bob@x", "1 INVITE")]);
        open.close(EndReason::IdleTimeout);
        assert_eq!(open.state(), CallState::TimedOut);
        assert_eq!(open.end_reason(), Some(EndReason::IdleTimeout));
        assert_eq!(open.end_ns(), Some(0));
        let mut busy = run(
            "INVITE",
            &[
                (0, "INVITE sip:bob@x", "1 INVITE"),
                (10, "486 Busy Here", "1 INVITE"),
            ],
        );
        busy.close(EndReason::EndOfCapture);
        assert_eq!(busy.state(), CallState::Busy);
        assert_eq!(busy.end_reason(), Some(EndReason::FinalResponse));
    }
}
