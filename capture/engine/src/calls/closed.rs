//! Calls closed recently, remembered by Call-ID for as long as RFC 3261 lets
//! their transactions retransmit (Timers F, H and J: 64*T1 = 32 s after
//! their last SIP): a late CANCEL, BYE, ACK, final response or NOTIFY is
//! theirs and starts no call; only a new initial INVITE (another From-tag, or
//! a CSeq past the old dialog's) does.

use std::collections::HashMap;

use voxtap_proto::sip::Message;

use super::call::is_new_initial_invite;

struct Tomb {
    /// Late messages are theirs until then.
    until_ns: u64,
    from_tag: u64,
    max_cseq: u32,
}

pub(super) struct Closed {
    by_call_id: HashMap<Box<[u8]>, Tomb>,
    max: usize,
    /// Late messages absorbed.
    late: u64,
    /// Calls not remembered because the cap was reached.
    not_kept: u64,
}

impl Closed {
    pub fn new(max: usize) -> Self {
        Closed {
            by_call_id: HashMap::new(),
            max,
            late: 0,
            not_kept: 0,
        }
    }

    /// Remember a closed call until `until_ns`.
    pub fn add(&mut self, call_id: &[u8], marks: (u64, u32), until_ns: u64) {
        if self.by_call_id.len() >= self.max && !self.by_call_id.contains_key(call_id) {
            self.not_kept += 1;
            return;
        }
        self.by_call_id.insert(
            call_id.into(),
            Tomb {
                until_ns,
                from_tag: marks.0,
                max_cseq: marks.1,
            },
        );
    }

    /// Whether `msg` on `call_id` at `ts_ns` is a late message of a closed
    /// call (counted, and then nothing else is to be done with it).
    pub fn absorbs(&mut self, call_id: &[u8], msg: &Message<'_>, ts_ns: u64) -> bool {
        let Some(t) = self.by_call_id.get(call_id) else {
            return false;
        };
        if t.until_ns < ts_ns || is_new_initial_invite(msg, t.from_tag, t.max_cseq) {
            self.by_call_id.remove(call_id);
            return false;
        }
        self.late += 1;
        true
    }

    pub fn expire(&mut self, now_ns: u64) {
        self.by_call_id.retain(|_, t| t.until_ns >= now_ns);
    }

    /// Shrinks the map once most of what a burst of closes put in expired.
    pub fn give_back(&mut self) {
        super::trim::shrink_map(&mut self.by_call_id);
    }

    /// (late messages absorbed, calls not remembered for lack of room).
    pub fn counts(&self) -> (u64, u64) {
        (self.late, self.not_kept)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_call_id.len()
    }
}
