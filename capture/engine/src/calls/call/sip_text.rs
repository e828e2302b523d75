//! The SIP text a call keeps in memory for `sip.txt`, the index and the
//! call page, within a byte budget.
//!
//! Every SIP message of an open call used to be kept as text: one Call-ID
//! with 4,000 INFO messages of 60 KB held 240 MB (718 MB peak with the
//! copies made to write it). Now a call keeps texts while its entries stay
//! within its allowance (`CallConfig::call_sip_bytes`, and what is left of
//! the table's memory budget), then summaries only (the ladder keeps its
//! shape) within a quarter more, then nothing but a count. The packets are
//! always referenced, so `call.pcap` holds every message whatever the budget.

use super::dialog::{SipPacket, summary};
use super::{Call, SipEntry};

/// Longest start-line summary kept (a Request-URI may be 8 KiB).
const MAX_SUMMARY: usize = 200;

impl Call {
    /// Keeps message `p` as a [`SipEntry`] if `allowance` bytes (the call's
    /// own budget) allow: with its text, or as a summary within a reserve of
    /// a quarter more; `room` is what the table as a whole has left. Returns
    /// the bytes kept.
    pub(super) fn keep_sip(
        &mut self,
        p: &SipPacket<'_, '_>,
        allowance: usize,
        room: usize,
    ) -> usize {
        if p.msg.oversized() {
            self.sip_oversized += 1;
        }
        let mut summary = summary(p.msg);
        if summary.len() > MAX_SUMMARY {
            let mut cut = MAX_SUMMARY;
            while !summary.is_char_boundary(cut) {
                cut -= 1;
            }
            summary.truncate(cut);
        }
        let entry = std::mem::size_of::<SipEntry>() + summary.len();
        // Lossy UTF-8 may grow the text; the raw length is its lower bound.
        let fits =
            |len: usize, cap: usize| self.sip_bytes.saturating_add(len) <= cap && len <= room;
        let mut text = String::new();
        if fits(entry + p.msg.raw().len(), allowance) {
            text = String::from_utf8_lossy(p.msg.raw()).into_owned();
            if !fits(entry + text.len(), allowance) {
                text = String::new();
            }
        }
        let kept = entry + text.len();
        if text.is_empty() {
            self.sip_truncated += 1;
            self.sip_unkept.extend(p.refs.iter().map(|r| r.1));
            if !fits(kept, allowance.saturating_add(allowance / 4)) {
                return 0;
            }
        }
        self.sip_bytes += kept;
        super::push_tight(&mut self.sip, SipEntry {
            ts_ns: p.ts_ns,
            src: p.src,
            dst: p.dst,
            transport: p.transport,
            summary,
            text,
        },);
        kept
    }

    /// Bytes its kept SIP entries take.
    pub fn sip_bytes(&self) -> usize {
        self.sip_bytes
    }

    /// What the call holds in memory, estimated: itself, its SIP entries,
    /// packet references, streams and announced media. The call table holds
    /// the sum to its memory budget.
    pub(in crate::calls) fn mem_estimate(&self) -> usize {
        use std::mem::size_of;
        size_of::<Call>()
            + self.sip_bytes
            + self.packets.held_bytes()
            + self.sip_unkept.capacity() * size_of::<super::PacketRef>()
            + self.streams.capacity() * (size_of::<super::Stream>() + 64)
            + self.media.capacity() * (size_of::<super::MediaInfo>() + 256)
            + self.call_id.len() * 3
            + self.from_uri.len()
            + self.to_uri.len()
            + self.request_uri.len()
    }
}
