//! The SIP dialog state machine: what a request or a response does to a
//! call's parties, state, times and codes, and how the call ends.

use std::net::SocketAddr;

use voxtap_proto::sip::{Message, Method, StartLine, uri_user};

use super::{Call, CallState, EndReason, PacketRef, SipEntry};

/// One SIP message as the call table hands it on.
pub(in crate::calls) struct SipPacket<'m, 'a> {
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: &'static str,
    pub msg: &'m Message<'a>,
    /// The packets that carried it.
    pub refs: &'m [(u64, PacketRef)],
}

type CSeq<'a> = Option<(u32, Method<'a>)>;

impl Call {
    /// One SIP message of this call. After BYE, CANCEL or a final failure,
    /// trailing packets still count for `linger_ns`.
    pub(in crate::calls) fn on_sip(&mut self, p: &SipPacket<'_, '_>, linger_ns: u64) {
        self.last_ns = self.last_ns.max(p.ts_ns);
        self.sip_packets += p.refs.len().max(1) as u64;
        self.packets.extend_from_slice(p.refs);
        if self.from_uri.is_empty() {
            self.note_parties(p.msg);
        }
        self.sip.push(SipEntry {
            ts_ns: p.ts_ns,
            src: p.src,
            dst: p.dst,
            transport: p.transport,
            summary: summary(p.msg),
            text: lossy(p.msg.raw()),
        });
        let cseq = p.msg.cseq();
        let linger_until = p.ts_ns.saturating_add(linger_ns);
        match p.msg.start() {
            StartLine::Request { method, uri } => {
                self.on_request(*method, uri, cseq, p.ts_ns, linger_until);
            }
            StartLine::Response { code, .. } => {
                self.on_response(*code, cseq, p.ts_ns, linger_until);
            }
        }
    }

    /// From and To of the first message that has them.
    fn note_parties(&mut self, msg: &Message<'_>) {
        if let Some(f) = msg.from() {
            self.from_uri = lossy(f.uri);
            self.from_user = uri_user(f.uri).map(lossy).unwrap_or_default();
        }
        if let Some(t) = msg.to() {
            self.to_uri = lossy(t.uri);
            self.to_user = uri_user(t.uri).map(lossy).unwrap_or_default();
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
                if self.answer_ns.is_none() && !self.state.is_final() {
                    if let Some((n, _)) = cseq {
                        self.invite_cseq = Some(n);
                    }
                    if self.request_uri.is_empty() {
                        self.request_uri = lossy(uri);
                    }
                }
            }
            Method::Cancel => {
                if !self.state.is_final() {
                    self.state = CallState::Cancelled;
                    self.end(ts_ns, EndReason::Cancel, linger_until);
                }
            }
            Method::Bye => self.end(ts_ns, EndReason::Bye, linger_until),
            _ => {
                if !self.is_invite() && self.request_uri.is_empty() {
                    self.request_uri = lossy(uri);
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
                .is_some_and(|(_, m)| m.as_str() == self.method.as_str())
        {
            self.on_transaction_response(code, ts_ns, linger_until);
        }
    }

    /// A response to the initial INVITE.
    fn on_invite_response(&mut self, code: u16, ts_ns: u64, linger_until: u64) {
        match code {
            100..=179 | 190..=199 => {}
            180..=189 => {
                self.ringing_ns.get_or_insert(ts_ns);
                if self.state == CallState::InProgress {
                    self.state = CallState::Ringing;
                }
            }
            200..=299 => {
                if self.answer_ns.is_none() {
                    self.answer_ns = Some(ts_ns);
                    // A 2xx that crosses a CANCEL wins: the call was set up
                    // and will be ended by a BYE.
                    if self.end_reason == Some(EndReason::Cancel) {
                        self.end_ns = None;
                        self.end_reason = None;
                        self.linger_until = None;
                    }
                    self.state = CallState::Answered;
                    self.status_code = Some(code);
                }
            }
            // Authentication challenges are not an outcome: the caller retries.
            401 | 407 => {}
            _ => {
                if self.answer_ns.is_none() && self.state != CallState::Answered {
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
        self.end_ns = Some(ts_ns);
        self.end_reason = Some(EndReason::FinalResponse);
        self.linger_until = Some(linger_until);
    }

    /// The dialog ended (the first end named wins); trailing packets count
    /// until `linger_until`.
    fn end(&mut self, ts_ns: u64, reason: EndReason, linger_until: u64) {
        self.end_ns.get_or_insert(ts_ns);
        self.end_reason.get_or_insert(reason);
        self.linger_until = Some(linger_until);
    }

    /// Due to be closed at `now_ns`: its linger time is over, or it has been
    /// idle for `idle_ns`.
    pub(in crate::calls) fn due(&self, now_ns: u64, idle_ns: u64) -> bool {
        self.linger_until.is_some_and(|t| t <= now_ns)
            || self.last_ns.saturating_add(idle_ns) <= now_ns
    }

    /// The table closes the call. One that ended by its own SIP (BYE,
    /// CANCEL, a final response) and lingered keeps that end; any other
    /// ends now, at its last packet, for `reason`.
    pub(in crate::calls) fn close(&mut self, reason: EndReason) {
        if self.linger_until.is_some() {
            return;
        }
        if reason == EndReason::IdleTimeout && !self.state.is_final() {
            self.state = CallState::TimedOut;
        }
        if self.end_reason.is_none() {
            self.end_reason = Some(reason);
        }
        if self.end_ns.is_none() {
            self.end_ns = Some(self.last_ns);
        }
    }
}

/// The start line as `sip.txt` and the ladder show it: "INVITE sip:bob@x" or
/// "200 OK (INVITE)".
fn summary(msg: &Message<'_>) -> String {
    match msg.start() {
        StartLine::Request { method, uri } => format!("{} {}", method.as_str(), lossy(uri)),
        StartLine::Response { code, reason } => {
            format!("{code} {} ({})", lossy(reason), cseq_method(msg))
        }
    }
}

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
    String::from_utf8_lossy(b).into_owned()
}
