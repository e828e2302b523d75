//! A call's packets read back from the captures they are in (the imported
//! files, or the live store) through its packet references.
//!
//! `call.pcap` is copied packet by packet, never held whole: one call of
//! 4,000 SIP messages of 60 KB was 240 MB in memory on its way to the file.
//! The processors (media step) get the frames in memory, except those of
//! SIP messages whose text the call did not keep (over its SIP budget).

use std::collections::HashSet;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use super::{
    CallFrame, CallWriter, OutputError, capture_order, io_err, open_for_random_reads, write_pcap,
};
use crate::calls::{Call, PacketRef};
use voxtap_proto::pcapio::{LinkType, PcapWriter};

/// What copying a call's packets gave.
pub(super) struct Copied {
    /// The frames for the processors.
    pub frames: Vec<CallFrame>,
    /// Packets written to `call.pcap`.
    pub written: u64,
    /// Packets of another link type than the first (not in `call.pcap`).
    pub mismatch: u64,
}

/// One packet as read back, borrowed from its reader.
struct Record<'r> {
    pref: PacketRef,
    ts_ns: u64,
    orig_len: u32,
    link: LinkType,
    data: &'r [u8],
}

impl CallWriter {
    /// Calls `each` on every packet of `call`, in capture order, each once.
    /// Packets whose link type differs from the first one's are counted,
    /// not handed (one pcap has one link type).
    fn for_each_frame(
        &mut self,
        call: &Call,
        mut each: impl FnMut(Record<'_>) -> Result<(), OutputError>,
    ) -> Result<u64, OutputError> {
        let refs = capture_order(call)?;
        let mut first_link = None;
        let mut mismatch = 0u64;
        for pref in refs {
            let src = pref.source();
            let Some(src_path) = self.sources.path(src) else {
                continue;
            };
            let source_err = |source| OutputError::Source {
                call_id: call.call_id().to_string(),
                path: src_path.clone(),
                source,
            };
            if self.readers.get(&src).is_none_or(|(p, _)| *p != src_path) {
                let r = open_for_random_reads(&src_path).map_err(source_err)?;
                self.readers.insert(src, (src_path.clone(), r));
            }
            let Some((_, reader)) = self.readers.get_mut(&src) else {
                continue;
            };
            let rec = reader.read_at(pref.offset()).map_err(source_err)?;
            if *first_link.get_or_insert(rec.link) != rec.link {
                mismatch += 1;
                continue;
            }
            each(Record {
                pref,
                ts_ns: rec.ts_ns,
                orig_len: rec.orig_len,
                link: rec.link,
                data: rec.data,
            })?;
        }
        Ok(mismatch)
    }

    /// Every packet of `call`, in capture order, read back from the source
    /// captures through its packet references. Packets whose link type
    /// differs from the first one's are counted, not returned (one pcap has
    /// one link type).
    pub fn read_call_frames(&mut self, call: &Call) -> Result<(Vec<CallFrame>, u64), OutputError> {
        let mut frames = Vec::with_capacity(call.packet_count() as usize);
        let mismatch = self.for_each_frame(call, |r| {
            frames.push(CallFrame {
                ts_ns: r.ts_ns,
                orig_len: r.orig_len,
                link: r.link,
                data: r.data.into(),
            });
            Ok(())
        })?;
        Ok((frames, mismatch))
    }

    /// Copies every packet of `call` to `pcap` as it is read, and returns
    /// the frames for the processors: all but those of the SIP messages
    /// whose text was not kept.
    pub(super) fn copy_call_frames(
        &mut self,
        call: &Call,
        pcap: &Path,
    ) -> Result<Copied, OutputError> {
        let unkept: HashSet<PacketRef> = call.sip_unkept().iter().copied().collect();
        let mut out: Option<PcapWriter<BufWriter<File>>> = None;
        let mut frames = Vec::new();
        let mut written = 0u64;
        let mismatch = self.for_each_frame(call, |r| {
            let w = match &mut out {
                Some(w) => w,
                None => {
                    let f = File::create(pcap).map_err(io_err(pcap))?;
                    let w = PcapWriter::new(BufWriter::with_capacity(1 << 16, f), r.link, 262_144)
                        .map_err(io_err(pcap))?;
                    out.insert(w)
                }
            };
            w.write_packet(r.ts_ns, r.orig_len, r.data)
                .map_err(io_err(pcap))?;
            written += 1;
            if !unkept.contains(&r.pref) {
                frames.push(CallFrame {
                    ts_ns: r.ts_ns,
                    orig_len: r.orig_len,
                    link: r.link,
                    data: r.data.into(),
                });
            }
            Ok(())
        })?;
        match out {
            Some(mut w) => w.flush().map_err(io_err(pcap))?,
            // No packet: an empty but valid file.
            None => write_pcap(&[], pcap)?,
        }
        Ok(Copied {
            frames,
            written,
            mismatch,
        })
    }
}
