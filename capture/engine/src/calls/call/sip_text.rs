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
//!
//! While the call is open the kept texts wait in the table's spill (they
//! were half of an open call's memory); [`Call::load_sip_texts`] puts them
//! back into the entries when it closes, before anyone reads them.

use std::borrow::Cow;

use voxtap_proto::sip::Message;
use voxtap_proto::utf8_lossy;

use super::dialog::{SipPacket, summary, summary_len};
use super::{Call, SipEntry};
use crate::calls::spill::{ChunkPtr, PinnedSeg, Spill};

/// Where an open call's SIP texts wait: the spill (each entry names its
/// record, [`SipEntry::text_rec`]).
#[derive(Default)]
pub(crate) struct SpilledTexts {
    spill: Option<Spill>,
    /// The segment of the first record (pinned until read back).
    pinned: PinnedSeg,
}

impl SpilledTexts {
    /// Texts go to `spill` from now on (set before the call's first entry).
    pub(crate) fn set_spill(&mut self, spill: Option<Spill>) {
        self.spill = spill;
    }

    /// Copies `text` to the spill: returns the record (0: none) and the
    /// text left in the entry (all of it when there is no spill or it
    /// refused; only then is it copied to the heap).
    fn put(&mut self, text: &str) -> (ChunkPtr, Box<str>) {
        let placed = self.spill.as_ref().and_then(|s| {
            let first = self.pinned.is_none();
            s.append_bytes(text.as_bytes(), first)
        });
        let rec = match placed {
            Some((p, seg)) => {
                if self.pinned.is_none() {
                    self.pinned.set(seg);
                }
                p
            }
            None => 0,
        };
        if rec == 0 {
            (rec, text.into())
        } else {
            (rec, Box::default())
        }
    }

    /// Reads every spilled text back into `entries` and lets go of the spill.
    fn load(&mut self, entries: &mut [SipEntry]) -> std::io::Result<()> {
        let Some(spill) = self.spill.take() else {
            return Ok(());
        };
        let mut res = Ok(());
        for e in entries.iter_mut() {
            let p = std::mem::take(&mut e.text_rec);
            if p == 0 || res.is_err() {
                continue;
            }
            match spill.read_bytes(p).and_then(|b| {
                String::from_utf8(b).map_err(|_| std::io::Error::other("spilled SIP text"))
            }) {
                Ok(t) => e.text = t.into_boxed_str(),
                Err(err) => res = Err(err),
            }
        }
        if let Some(seg) = self.pinned.take() {
            spill.unpin(seg);
        }
        res
    }
}

impl Drop for SpilledTexts {
    fn drop(&mut self) {
        if let (Some(seg), Some(spill)) = (self.pinned.take(), &self.spill) {
            spill.unpin(seg);
        }
    }
}

/// Longest start-line summary kept (a Request-URI may be 8 KiB).
const MAX_SUMMARY: usize = 200;

/// What a call may keep of its SIP messages.
#[derive(Clone, Copy, Debug)]
pub(in crate::calls) struct SipBudget {
    /// Bytes of SIP entries the call may keep.
    pub allowance: usize,
    /// What the table as a whole has left.
    pub room: usize,
    /// Whether entries and their texts are kept at all: not in a replica
    /// whose entries nobody reads (`CallTable::keep_no_sip_texts`). It
    /// counts each as if it kept it, so its budgets decide as everywhere
    /// else.
    pub texts: bool,
}

impl SipBudget {
    #[cfg(test)]
    pub const UNLIMITED: SipBudget = SipBudget {
        allowance: usize::MAX,
        room: usize::MAX,
        texts: true,
    };
}

/// [`summary`] cut to [`MAX_SUMMARY`] bytes (at a character boundary).
fn cut_summary(msg: &Message<'_>) -> Cow<'static, str> {
    let mut summary = summary(msg);
    if summary.len() > MAX_SUMMARY {
        let mut cut = MAX_SUMMARY;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.to_mut().truncate(cut);
    }
    summary
}

/// The length of [`cut_summary`]'s text, mostly without writing it.
fn cut_summary_len(msg: &Message<'_>) -> usize {
    match summary_len(msg) {
        len if len <= MAX_SUMMARY => len,
        _ => cut_summary(msg).len(),
    }
}

impl Call {
    /// Keeps message `p` as a [`SipEntry`] if the budget's `allowance` (the
    /// call's own) allows: with its text, or as a summary within a reserve
    /// of a quarter more; its `room` is what the table as a whole has left.
    /// Returns the bytes kept.
    pub(super) fn keep_sip(&mut self, p: &SipPacket<'_, '_>, budget: SipBudget) -> usize {
        let SipBudget {
            allowance, room, ..
        } = budget;
        if p.msg.oversized() {
            self.rare_mut().sip_oversized += 1;
        }
        // A replica without texts keeps no entries either (nobody reads
        // them: the joining thread and the live view take worker 0's), but
        // counts each as the others keep it.
        let summary = budget.texts.then(|| cut_summary(p.msg));
        let summary_len = summary
            .as_ref()
            .map_or_else(|| cut_summary_len(p.msg), |s| s.len());
        let entry = std::mem::size_of::<SipEntry>() + summary_len;
        // Lossy UTF-8 may grow the text; the raw length is its lower bound.
        let held = self.sip_bytes;
        let fits = |len: usize, cap: usize| held.saturating_add(len) <= cap && len <= room;
        let mut text = Cow::Borrowed("");
        if fits(entry + p.msg.raw().len(), allowance) {
            text = utf8_lossy(p.msg.raw());
            if !fits(entry + text.len(), allowance) {
                text = Cow::Borrowed("");
            }
        }
        let kept = entry + text.len();
        if text.is_empty() {
            let rare = self.rare_mut();
            rare.sip_truncated += 1;
            rare.sip_unkept.extend(p.refs.iter().map(|r| r.1));
            if !fits(kept, allowance.saturating_add(allowance / 4)) {
                return 0;
            }
        }
        self.sip_bytes += kept;
        let Some(summary) = summary else {
            return kept;
        };
        let (text_rec, text) = self.sip_texts.put(&text);
        super::push_tight(
            &mut self.sip,
            SipEntry {
                ts_ns: p.ts_ns,
                src: p.src.into(),
                dst: p.dst.into(),
                transport: p.transport,
                summary,
                text,
                text_rec,
            },
        );
        kept
    }

    /// Puts the texts that waited in the spill back into its SIP entries
    /// (the call is closing). On a read error the texts not read stay
    /// empty, as if over the budget, and the error is logged.
    pub(in crate::calls) fn load_sip_texts(&mut self) {
        if let Err(e) = self.sip_texts.load(&mut self.sip) {
            tracing::warn!(call = %self.call_id(), error = %e, "reading back spilled SIP texts");
        }
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
            + self.rare().sip_unkept.capacity() * size_of::<super::PacketRef>()
            + self.streams.capacity() * (size_of::<super::Stream>() + 64)
            + self.media.capacity() * (size_of::<super::MediaInfo>() + 256)
            + self.call_id().len() * 3
            + self.from_uri().len()
            + self.to_uri().len()
            + self.request_uri().len()
    }
}
