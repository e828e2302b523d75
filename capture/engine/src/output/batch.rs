//! Several calls written together: their packets are read back in one pass
//! over each source capture, in file order, through a large window (one
//! read per window instead of a seek and a read per packet), then each
//! call is written exactly as [`CallWriter::write_call`] writes it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CallFrame, CallToWrite, CallWriter, OutputError, Written, capture_order};
use crate::calls::{Call, PacketRef};
use crate::pcapfile::WindowReader;
use voxtap_proto::pcapio::{FileFormat, PcapError, PcapReader};

/// Packets read back per batch: their frames are in memory together
/// (about 60 MiB of G.711 frames).
pub const BATCH_PACKETS: u64 = 1 << 18;
/// Bytes read at once from a source capture.
const WINDOW: usize = 256 * 1024;

/// A call's frames read back, and its packets of another link type.
type ReadBack = (Vec<CallFrame>, u64);

/// A reader through a window, and how far its next refill reads.
pub(super) type WindowedReader = (PcapReader<WindowReader>, Arc<AtomicU64>);

impl CallWriter {
    /// [`Self::write_call`] for each of `calls`, in order; their packets are
    /// read back [`BATCH_PACKETS`] at a time in file order. The outputs are
    /// the same as writing the calls one by one.
    pub fn write_calls<C: CallToWrite>(
        &mut self,
        calls: &[C],
    ) -> Result<Vec<Written>, OutputError> {
        let mut out = Vec::with_capacity(calls.len());
        let mut start = 0;
        while start < calls.len() {
            let mut end = start + 1;
            let mut packets = calls[start].call().packet_count();
            while end < calls.len() && packets + calls[end].call().packet_count() <= BATCH_PACKETS {
                packets += calls[end].call().packet_count();
                end += 1;
            }
            let batch = &calls[start..end];
            let mut frames = if self.write_call_files {
                match self.read_batch_frames(batch) {
                    Ok(f) => f,
                    // A source a window cannot read in place (compressed,
                    // NetMon, snoop): the batch's calls take the streamed
                    // copy, which reads such sources its own way.
                    Err(OutputError::Source {
                        source: PcapError::NeedsSeek(_) | PcapError::OtherFormat(_),
                        ..
                    }) => Vec::new(),
                    Err(e) => return Err(e),
                }
            } else {
                Vec::new()
            };
            for (i, call) in batch.iter().enumerate() {
                let f = frames.get_mut(i).and_then(Option::take);
                out.push(self.write_call_with(call.call(), call.shared(), f)?);
            }
            start = end;
        }
        Ok(out)
    }

    /// Each call's frames as [`Self::read_call_frames`] returns them (capture
    /// order, packets of another link type than the first counted apart),
    /// read in file order. None for the calls copied one by one instead: a
    /// call alone over [`BATCH_PACKETS`] (its `call.pcap` is streamed, not
    /// held) and a call whose SIP text was not all kept (its processors do
    /// not get those frames).
    fn read_batch_frames<C: CallToWrite>(
        &mut self,
        calls: &[C],
    ) -> Result<Vec<Option<ReadBack>>, OutputError> {
        let mut wanted: Vec<(PacketRef, u32, u32)> = Vec::new();
        let mut slots: Vec<Option<Vec<Option<CallFrame>>>> = Vec::with_capacity(calls.len());
        for (c, call) in calls.iter().enumerate() {
            let call = call.call();
            if call.packet_count() > BATCH_PACKETS || !call.sip_unkept().is_empty() {
                slots.push(None);
                continue;
            }
            let refs = capture_order(call)?;
            wanted.extend(
                refs.iter()
                    .enumerate()
                    .map(|(i, p)| (*p, c as u32, i as u32)),
            );
            slots.push(Some(vec![None; refs.len()]));
        }
        wanted.sort_unstable();
        let mut ahead = 0;
        for (k, &(p, c, i)) in wanted.iter().enumerate() {
            // A refill here reads up to the last wanted record within one
            // window (and 4 KiB for that record): sparse packets cost small
            // reads, dense ones share a window.
            ahead = ahead.max(k);
            while ahead + 1 < wanted.len()
                && wanted[ahead + 1].0.source() == p.source()
                && wanted[ahead + 1].0.offset() < p.offset() + (WINDOW as u64 - 4096)
            {
                ahead += 1;
            }
            let reach = wanted[ahead].0.offset() + 4096;
            let call = calls[c as usize].call();
            let frame = self.read_windowed(call, p, reach)?;
            if let Some(slot) = slots[c as usize].as_mut() {
                slot[i as usize] = frame;
            }
        }
        Ok(slots
            .into_iter()
            .map(|s| {
                let s = s?;
                let mut first = None;
                let mut mismatch = 0u64;
                let mut frames = Vec::with_capacity(s.len());
                for f in s.into_iter().flatten() {
                    if *first.get_or_insert(f.link) != f.link {
                        mismatch += 1;
                        continue;
                    }
                    frames.push(f);
                }
                Some((frames, mismatch))
            })
            .collect())
    }

    /// The frame at `p` (None when its source is unknown or gone).
    fn read_windowed(
        &mut self,
        call: &Call,
        p: PacketRef,
        reach: u64,
    ) -> Result<Option<CallFrame>, OutputError> {
        let src = p.source();
        let Some(path) = self.sources.path(src) else {
            return Ok(None);
        };
        let source_err = |source| OutputError::Source {
            call_id: call.call_id().to_string(),
            path: path.clone(),
            source,
        };
        if self.windowed.get(&src).is_none_or(|(q, _)| *q != path) {
            let r = open_windowed(&path).map_err(source_err)?;
            self.windowed.insert(src, (path.clone(), r));
        }
        let Some((_, (reader, r))) = self.windowed.get_mut(&src) else {
            return Ok(None);
        };
        r.store(reach, Ordering::Relaxed);
        let rec = reader.read_at(p.offset()).map_err(source_err)?;
        Ok(Some(CallFrame {
            ts_ns: rec.ts_ns,
            orig_len: rec.orig_len,
            link: rec.link,
            data: rec.data.to_vec(),
        }))
    }
}

/// A reader for `read_at` through a window; a pcapng file is walked once
/// first to learn its interfaces (as for the per-call reader).
fn open_windowed(path: &Path) -> Result<WindowedReader, PcapError> {
    let w = WindowReader::new(File::open(path)?, WINDOW);
    let reach = w.reach();
    let mut r = PcapReader::new(w)?;
    if matches!(r.format(), FileFormat::PcapNg) {
        while let Ok(Some(_)) = r.next_packet() {}
    }
    r.finish_sequential();
    Ok((r, reach))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::synth::{SynthConfig, generate};

    /// Every file of a folder, by relative path.
    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap().display().to_string();
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    /// Calls written together (packets read in file order, spilled
    /// references read back) give the same files as calls written one by
    /// one, and every packet of each call is in its call.pcap.
    #[test]
    fn writing_calls_together_gives_the_same_files_as_one_by_one() {
        let base = std::env::temp_dir().join(format!("voxtap-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let pcap = base.join("in.pcap");
        let cfg = SynthConfig {
            calls: 12,
            seconds: 3,
            ramp_seconds: 1,
            loss_pct: 1.0,
            jitter_ms: 5.0,
            seed: 7,
        };
        generate(&cfg, std::fs::File::create(&pcap).unwrap()).unwrap();
        let mut p = Pipeline::new(PipelineConfig {
            calls: crate::calls::CallConfig {
                spill_dir: Some(base.join("spill")),
                ..Default::default()
            },
            ..Default::default()
        });
        let mut r = crate::pcapfile::open(&pcap).unwrap();
        while let Some(rec) = r.next_packet().unwrap() {
            p.process(rec.link, rec.ts_ns, PacketRef::new(0, rec.offset), rec.data);
        }
        p.finish();
        let calls = p.drain_ended();
        assert_eq!(calls.len(), 12);
        assert!(p.calls_mut().spill_stats().unwrap().chunks > 12);
        let (a, b) = (base.join("one-by-one"), base.join("together"));
        let mut wa = CallWriter::new(&a, vec![pcap.clone()]).unwrap();
        let mut wb = CallWriter::new(&b, vec![pcap.clone()]).unwrap();
        let mut packets = 0;
        for c in &calls {
            packets += wa.write_call(c).unwrap().packets;
        }
        let written = wb.write_calls(&calls).unwrap();
        assert_eq!(written.iter().map(|w| w.packets).sum::<u64>(), packets);
        assert_eq!(packets, calls.iter().map(Call::packet_count).sum::<u64>());
        wa.finish().unwrap();
        wb.finish().unwrap();
        let (fa, fb) = (files(&a), files(&b));
        assert!(fa.iter().filter(|f| f.0.ends_with("call.pcap")).count() == 12);
        assert_eq!(fa, fb);
        let _ = std::fs::remove_dir_all(&base);
    }
}
