//! Several calls written together: their packets are read back in one pass
//! over each source capture, in file order, through a large window (one
//! read per window instead of a seek and a read per packet), then each
//! call is written exactly as [`CallWriter::write_call`] writes it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CallFrame, CallToWrite, CallWriter, FrameData, OutputError, Written, capture_order};
use crate::calls::PacketRef;
use crate::pcapfile::WindowReader;
use voxtap_proto::pcapio::{FileFormat, LinkType, PcapError, PcapReader};

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
        let read = self.read_in_file_order(calls, &wanted)?;
        for (&(_, c, i), f) in wanted.iter().zip(read) {
            if let Some(slot) = slots[c as usize].as_mut() {
                slot[i as usize] = f;
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

    /// The frames at `wanted` (sorted: file order), None where a source is
    /// unknown or gone. Their bytes go into one buffer the frames share;
    /// each source's path and reader are looked up once per run of its
    /// packets, not per packet.
    fn read_in_file_order<C: CallToWrite>(
        &mut self,
        calls: &[C],
        wanted: &[(PacketRef, u32, u32)],
    ) -> Result<Vec<Option<CallFrame>>, OutputError> {
        let mut buf = Vec::new();
        let mut heads: Vec<Option<(u64, u32, LinkType, usize)>> = Vec::with_capacity(wanted.len());
        let mut run = 0;
        while run < wanted.len() {
            let src = wanted[run].0.source();
            let len = wanted[run..]
                .iter()
                .take_while(|w| w.0.source() == src)
                .count();
            let part = &wanted[run..run + len];
            match self.windowed_reader(calls, part)? {
                Some((path, reader)) => read_run(reader, &path, calls, part, &mut buf, &mut heads)?,
                None => heads.extend(part.iter().map(|_| None)),
            }
            run += len;
        }
        let buf = Arc::new(buf);
        let mut start = 0;
        Ok(heads
            .into_iter()
            .map(|h| {
                let (ts_ns, orig_len, link, end) = h?;
                let data = FrameData::shared(&buf, start..end);
                start = end;
                Some(CallFrame {
                    ts_ns,
                    orig_len,
                    link,
                    data,
                })
            })
            .collect())
    }

    /// The windowed reader of the source of `part` (packets of one source),
    /// opened on first use; None when the source is unknown or gone.
    fn windowed_reader<C: CallToWrite>(
        &mut self,
        calls: &[C],
        part: &[(PacketRef, u32, u32)],
    ) -> Result<Option<(PathBuf, &mut WindowedReader)>, OutputError> {
        let src = part[0].0.source();
        let Some(path) = self.sources.path(src) else {
            return Ok(None);
        };
        if self.windowed.get(&src).is_none_or(|(q, _)| *q != path) {
            let r = open_windowed(&path).map_err(|source| OutputError::Source {
                call_id: calls[part[0].1 as usize].call().call_id().to_string(),
                path: path.clone(),
                source,
            })?;
            self.windowed.insert(src, (path.clone(), r));
        }
        Ok(self.windowed.get_mut(&src).map(|(_, r)| (path, r)))
    }
}

/// Reads the packets of `part` (one source, file order) through `reader`,
/// their bytes appended to `buf` and (time, length, link, end in `buf`) to
/// `heads`.
fn read_run<C: CallToWrite>(
    (reader, reach): &mut WindowedReader,
    path: &Path,
    calls: &[C],
    part: &[(PacketRef, u32, u32)],
    buf: &mut Vec<u8>,
    heads: &mut Vec<Option<(u64, u32, LinkType, usize)>>,
) -> Result<(), OutputError> {
    let mut ahead = 0;
    for (k, &(p, c, _)) in part.iter().enumerate() {
        // A refill here reads up to the last wanted record within one
        // window (and 4 KiB for that record): sparse packets cost small
        // reads, dense ones share a window.
        ahead = ahead.max(k);
        while ahead + 1 < part.len()
            && part[ahead + 1].0.offset() < p.offset() + (WINDOW as u64 - 4096)
        {
            ahead += 1;
        }
        reach.store(part[ahead].0.offset() + 4096, Ordering::Relaxed);
        let rec = reader
            .read_at(p.offset())
            .map_err(|source| OutputError::Source {
                call_id: calls[c as usize].call().call_id().to_string(),
                path: path.to_path_buf(),
                source,
            })?;
        buf.extend_from_slice(rec.data);
        heads.push(Some((rec.ts_ns, rec.orig_len, rec.link, buf.len())));
    }
    Ok(())
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
    use crate::calls::Call;
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
            media_server: None,
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
