//! What `import` writes: `calls.csv`, `streams.csv`, and one folder per call
//! with `call.pcap` (cut from the source captures through each call's packet
//! references) and `sip.txt`.

mod batch;
pub use batch::BATCH_PACKETS;
mod csv;
mod floods;
mod frames;
mod naming;
mod pool;
mod signalling;
mod streamed;
mod time;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::calls::{Call, Stream};
pub use csv::{CsvWriter, Row, safe_cell};
pub use floods::{FLOODS_FILE, FLOODS_HEADER};
pub use naming::base_name as folder_base_name;
pub use time::{Ts, civil_from_days, format_ts};
use voxtap_proto::pcapio::{PcapError, PcapReader};

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("call {call_id}: {message}")]
    Processor { call_id: String, message: String },
    #[error("reading back the spilled packet references of call {call_id}: {source}")]
    Spill {
        call_id: String,
        source: std::io::Error,
    },
    #[error("re-reading packets of call {call_id} from {path}: {source}")]
    Source {
        call_id: String,
        path: PathBuf,
        source: PcapError,
    },
    /// Call folders the writer threads could not write (the other calls
    /// and the CSV files are written).
    #[error("{failed} call folder(s) not written; the first: {first}")]
    Writers { failed: u64, first: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) const CALLS_HEADER: &[&str] = &[
    "call_id",
    "start",
    "end",
    "duration_s",
    "from",
    "to",
    "state",
    "status_code",
    "pcap",
    "sip_packets",
    "rtp_packets",
    "rtcp_packets",
    "streams",
    // Beyond what the issue lists: useful, and placed after it so scripts
    // reading the listed columns by position keep working.
    "method",
    "ringing",
    "answer",
    "talk_s",
    "end_reason",
    "request_uri",
    "group",
    "links",
    "facing",
    "latched",
    // Packets the sensor itself lost while the call was open (live capture;
    // always 0 for an import). Last, so earlier positions stay stable.
    "capture_loss",
    // SIP messages (tshark's count); `sip_packets` counts the frames that
    // carried SIP bytes, more when messages were split over TCP segments.
    "sip_messages",
    // When an offer/answer turned the call into T.38 fax (fax.csv has its
    // UDPTL streams).
    "fax_at",
    // Why each link in `links` was made: "other:method: evidence", " | "
    // between links.
    "link_evidence",
    // Empty for SIP in the clear; "tls (decrypted)"; or, for a TLS
    // connection that could not be decrypted, "tls (not decrypted: why)".
    "encrypted_signalling",
    // SIP messages past the limits a SIP stack takes, attributed anyway;
    // and SIP messages whose text was not kept (over the call's SIP budget:
    // sip.txt and the index lack their text, call.pcap has them).
    "sip_oversized",
    "sip_truncated",
    // The encapsulations its SIP came in (`erspan(7)/vlan(100)`; empty for
    // plain traffic). Last, so earlier positions stay stable.
    "outer_path",
];

/// One row per direction of a T.38 fax: its UDPTL packets, never RTP.
pub const FAX_HEADER: &[&str] = &[
    "call_id",
    "src",
    "dst",
    "packets",
    "expected",
    "lost",
    "late",
    "bytes",
    "first",
    "last",
    "duration_s",
    "first_seq",
    "last_seq",
    "fax_at",
];

/// One row per stream per leg of every call with more than one leg, hops in
/// order, so the first hop where loss or jitter starts is visible.
pub(crate) const LEGS_HEADER: &[&str] = &[
    "group",
    "hop",
    "call_id",
    "invite_src",
    "invite_dst",
    "facing",
    "links",
    "stream_src",
    "stream_dst",
    "ssrc_hex",
    "packets",
    "lost",
    "jitter_ms",
    "max_delta_ms",
];

pub(crate) const STREAMS_HEADER: &[&str] = &[
    "call_id",
    "ssrc_hex",
    "src",
    "dst",
    "payload_type",
    "codec",
    "packets",
    "expected",
    "lost",
    "out_of_order",
    "duplicates",
    "jitter_ms",
    "max_delta_ms",
    "min_delta_ms",
    "avg_delta_ms",
    "ptime_ms",
    "max_jitter_ms",
    "seq_wraps",
    "payload_types",
    "rtcp_reports",
    "rtcp_cumulative_lost",
    "rtcp_fraction_lost",
    "rtcp_jitter_ms",
    // E-model estimate from this row's loss and packetisation (random loss,
    // 60 ms jitter buffer); quality.json has the per-packet simulation.
    "mos",
    "r_factor",
];

/// One packet of a call, read back from where the capture keeps it.
#[derive(Clone, Debug)]
pub struct CallFrame {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub link: voxtap_proto::pcapio::LinkType,
    pub data: FrameData,
}

/// A frame's bytes: its own, or a range of one buffer shared by every frame
/// read back in the same batch (import reads a quarter of a million frames
/// at a time: one allocation, not one per frame). Reads as a `[u8]`.
#[derive(Clone)]
pub struct FrameData(Bytes);

#[derive(Clone)]
enum Bytes {
    Own(Vec<u8>),
    Shared {
        buf: Arc<Vec<u8>>,
        start: usize,
        end: usize,
    },
}

impl FrameData {
    /// Bytes `range` of `buf` (a range outside it reads as empty).
    pub fn shared(buf: &Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Self {
        FrameData(Bytes::Shared {
            buf: Arc::clone(buf),
            start: range.start,
            end: range.end,
        })
    }
}

impl std::ops::Deref for FrameData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Bytes::Own(v) => v,
            Bytes::Shared { buf, start, end } => buf.get(*start..*end).unwrap_or_default(),
        }
    }
}

impl From<Vec<u8>> for FrameData {
    fn from(v: Vec<u8>) -> Self {
        FrameData(Bytes::Own(v))
    }
}

impl From<&[u8]> for FrameData {
    fn from(v: &[u8]) -> Self {
        FrameData(Bytes::Own(v.to_vec()))
    }
}

impl std::fmt::Debug for FrameData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameData({} bytes)", self.len())
    }
}

impl PartialEq for FrameData {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// More outputs per call (decrypted media, audio, quality...), run after
/// `call.pcap` and `sip.txt` are written, on the same frames.
pub trait CallProcessor: Send {
    /// `folder` is the call's output folder.
    fn process(
        &mut self,
        call: &Call,
        frames: &[CallFrame],
        folder: &Path,
    ) -> Result<(), OutputError>;

    /// A processor doing the same, for another writer thread.
    fn fork(&self) -> Box<dyn CallProcessor>;
}

/// A call handed to [`CallWriter::write_calls`]: borrowed (its folder is
/// written on the caller's thread) or shared (it may go to a writer thread,
/// see [`CallWriter::with_workers`]).
pub trait CallToWrite {
    fn call(&self) -> &Call;
    fn shared(&self) -> Option<Arc<Call>>;
}

impl CallToWrite for Call {
    fn call(&self) -> &Call {
        self
    }
    fn shared(&self) -> Option<Arc<Call>> {
        None
    }
}

impl CallToWrite for Arc<Call> {
    fn call(&self) -> &Call {
        self
    }
    fn shared(&self) -> Option<Arc<Call>> {
        Some(Arc::clone(self))
    }
}

/// Where the packets of a source id live: the files given to an import (by
/// position), or the rolling files of a live store (by file id). `None` for a
/// source that is unknown or gone (deleted by retention): its packets are
/// skipped.
pub trait SourceFiles: Send {
    fn path(&self, source: u16) -> Option<PathBuf>;

    /// Appends a file and returns its source id, for sources that grow one
    /// file at a time under the writer's control (remote capture segments).
    /// `None` when not supported or past the 65536 ids a `PacketRef` names.
    fn add(&mut self, _path: PathBuf) -> Option<u16> {
        None
    }
}

impl SourceFiles for Vec<PathBuf> {
    fn path(&self, source: u16) -> Option<PathBuf> {
        self.get(usize::from(source)).cloned()
    }

    fn add(&mut self, path: PathBuf) -> Option<u16> {
        let idx = u16::try_from(self.len()).ok()?;
        self.push(path);
        Some(idx)
    }
}

/// Summary figures of one written call (for the end-of-run line).
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// The call's folder relative to the output directory (None with
    /// `without_call_files`), for the call index.
    pub folder: Option<String>,
    pub packets: u64,
    pub streams: u64,
    /// Packets whose link type differed from the call's first packet and so
    /// could not go into its single-link-type pcap.
    pub link_mismatch: u64,
}

/// Writes each call as it ends; `finish` writes the CSV files sorted by
/// start time.
pub struct CallWriter {
    dir: PathBuf,
    sources: Box<dyn SourceFiles>,
    /// Open readers by source id, with the path they were opened on (a live
    /// store reuses a source id for a later file).
    readers: HashMap<u16, (PathBuf, PcapReader<BufReader<File>>)>,
    names: naming::FolderNames,
    /// calls.csv and streams.csv rows, encoded, by start time (an import
    /// keeps them to write them sorted: one string per row).
    call_rows: Vec<(u64, Box<str>)>,
    stream_rows: Vec<(u64, Box<str>)>,
    /// The same, read through a large window, for [`Self::write_calls`].
    windowed: HashMap<u16, (PathBuf, batch::WindowedReader)>,
    leg_rows: Vec<(u64, Vec<String>)>,
    fax_rows: Vec<(u64, Box<str>)>,
    /// Builds each row of calls.csv, streams.csv and fax.csv.
    row: Row,
    /// transactions.csv, opened on the first rows (they are appended as
    /// transactions finish, never kept).
    transactions: Option<CsvWriter<BufWriter<File>>>,
    /// Folders of the legs of the logical call being written (the call
    /// table hands out a group's legs one after another).
    bundle: Option<(String, Vec<PathBuf>)>,
    write_call_files: bool,
    processors: Vec<Box<dyn CallProcessor>>,
    /// Writer threads for shared calls' folders (1: this thread writes
    /// them), started on the first such call.
    workers: usize,
    pool: Option<pool::WriterPool>,
    /// Multi-leg bundles waiting for their legs' folders (written by the
    /// writer threads), written at `finish`.
    deferred_bundles: Vec<Vec<PathBuf>>,
    /// Rows go to the CSV files as calls are written (live runs).
    streamed: Option<streamed::StreamedCsv>,
    floods: floods::FloodsCsv,
}

impl CallWriter {
    pub fn new(dir: &Path, sources: Vec<PathBuf>) -> Result<Self, OutputError> {
        Self::with_sources(dir, Box::new(sources))
    }

    /// A writer that finds packets through `sources` (e.g. a live store).
    pub fn with_sources(dir: &Path, sources: Box<dyn SourceFiles>) -> Result<Self, OutputError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(CallWriter {
            dir: dir.to_path_buf(),
            sources,
            readers: HashMap::new(),
            names: naming::FolderNames::default(),
            windowed: HashMap::new(),
            call_rows: Vec::new(),
            stream_rows: Vec::new(),
            leg_rows: Vec::new(),
            fax_rows: Vec::new(),
            row: Row::default(),
            transactions: None,
            bundle: None,
            write_call_files: true,
            processors: Vec::new(),
            workers: 1,
            pool: None,
            deferred_bundles: Vec::new(),
            streamed: None,
            floods: None,
        })
    }

    /// Run `p` on every call written (after call.pcap and sip.txt).
    pub fn add_processor(&mut self, p: Box<dyn CallProcessor>) {
        self.processors.push(p);
    }

    /// Adds a capture file that is still being written (remote capture
    /// segments appear one after another during a run); returns the source
    /// index to put in its packets' [`crate::calls::PacketRef`]s, or `None`
    /// past the 65536 sources a `PacketRef` can name.
    pub fn add_source(&mut self, path: PathBuf) -> Option<u16> {
        self.sources.add(path)
    }

    /// Writes the folders of shared calls ([`CallToWrite`]) on `n` writer
    /// threads while the caller goes on (1: on the caller's thread). The
    /// files are the same whatever `n`.
    pub fn with_workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Whether the per-call folders are written (not only the CSV files).
    pub fn writes_call_files(&self) -> bool {
        self.write_call_files
    }

    /// Only the CSV files (benchmarks and quick looks).
    pub fn without_call_files(mut self) -> Self {
        self.write_call_files = false;
        self
    }

    fn push_leg_rows(&mut self, call: &Call) {
        let (isrc, idst) = call
            .first_invite()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or_default();
        let base = [
            call.group().to_string(),
            String::new(),
            call.call_id().to_string(),
            isrc,
            idst,
            call.facing().as_str().to_string(),
            links_text(call),
        ];
        if call.streams().is_empty() {
            let mut r = base.to_vec();
            r.extend(std::iter::repeat_n(String::new(), 7));
            self.leg_rows.push((call.start_ns(), r));
        }
        for st in call.streams() {
            let sum = st.stats.summary();
            let mut r = base.to_vec();
            r.extend([
                st.key.src.to_string(),
                st.key.dst.to_string(),
                format!("0x{:08X}", st.key.ssrc),
                sum.packets.to_string(),
                sum.lost.to_string(),
                format!("{:.3}", sum.mean_jitter_ms),
                format!("{:.3}", sum.max_delta_ms),
            ]);
            self.leg_rows.push((call.start_ns(), r));
        }
    }

    /// A free folder name for a call (see `naming`).
    fn folder_name(&mut self, call_id: &[u8]) -> String {
        let taken = if self.streamed.is_some() {
            naming::Taken::Dir(&self.dir)
        } else {
            naming::Taken::Run
        };
        self.names.claim(call_id, taken)
    }

    pub fn write_call(&mut self, call: &Call) -> Result<Written, OutputError> {
        self.write_call_with(call, None, None)
    }

    /// [`Self::write_call`] with the call's frames already read (or None to
    /// read them now); a `shared` call with frames may be written by a
    /// writer thread.
    fn write_call_with(
        &mut self,
        call: &Call,
        shared: Option<Arc<Call>>,
        frames: Option<(Vec<CallFrame>, u64)>,
    ) -> Result<Written, OutputError> {
        if self
            .bundle
            .as_ref()
            .is_some_and(|(g, _)| *g != call.group())
        {
            self.flush_bundle()?;
        }
        let mut w = Written::default();
        let rel_pcap = if self.write_call_files {
            self.write_call_folder(call, shared, frames, &mut w)?
        } else {
            String::new()
        };
        // Media-only records have no calls.csv row: their streams.csv rows
        // have an empty call.
        if !call.is_media_only() {
            let row = call_row(&mut self.row, call, &rel_pcap);
            self.call_rows.push((call.start_ns(), row));
        }
        if !call.links().is_empty() {
            self.push_leg_rows(call);
        }
        for f in call.fax_streams() {
            let row = fax_row(&mut self.row, call, f);
            self.fax_rows.push((f.first_ns, row));
        }
        for s in call.streams() {
            let row = stream_row(&mut self.row, call, s);
            self.stream_rows.push(row);
            w.streams += 1;
        }
        self.spill_rows()?;
        Ok(w)
    }

    /// The call's folder: `call.pcap`, `sip.txt` and what the processors
    /// add (here, or by a writer thread). Returns the pcap's path relative
    /// to the output directory.
    fn write_call_folder(
        &mut self,
        call: &Call,
        shared: Option<Arc<Call>>,
        frames: Option<(Vec<CallFrame>, u64)>,
        w: &mut Written,
    ) -> Result<String, OutputError> {
        let name = if call.is_media_only() {
            self.folder_name(media_only_name(call).as_bytes())
        } else {
            self.folder_name(call.call_id_raw())
        };
        let folder = self.dir.join(&name);
        if !call.links().is_empty() {
            self.bundle
                .get_or_insert_with(|| (call.group().to_string(), Vec::new()))
                .1
                .push(folder.clone());
        }
        match (frames, shared) {
            // Read ahead in a batch (import): every frame goes to the pcap,
            // and the batch only carries calls whose SIP text was all kept.
            (Some((frames, mismatch)), shared) => {
                w.packets = frames.len() as u64;
                w.link_mismatch = mismatch;
                match shared.filter(|_| self.workers > 1) {
                    Some(call) => self.pool()?.send(call, frames, folder)?,
                    None => {
                        let procs = &mut self.processors;
                        write_folder_files(call, Some(frames.as_slice()), &folder, procs)?;
                    }
                }
            }
            (None, _) => {
                std::fs::create_dir_all(&folder).map_err(io_err(&folder))?;
                let copied = self.copy_call_frames(call, &folder.join("call.pcap"))?;
                w.packets = copied.written;
                w.link_mismatch = copied.mismatch;
                let procs = &mut self.processors;
                finish_folder(call, &copied.frames, &folder, procs)?;
            }
        }
        let rel = format!("{name}/call.pcap");
        w.folder = Some(name);
        Ok(rel)
    }

    /// The writer threads, started on first use with copies of the
    /// processors.
    fn pool(&mut self) -> Result<&mut pool::WriterPool, OutputError> {
        let pool = match self.pool.take() {
            Some(p) => p,
            None => pool::WriterPool::start(self.workers, &self.processors)?,
        };
        Ok(self.pool.insert(pool))
    }

    /// Closes the cached readers (a live store calls this after deleting
    /// files, so their space is freed).
    pub fn close_readers(&mut self) {
        self.readers.clear();
        self.windowed.clear();
    }

    /// A logical call with several legs gets, in its first leg's folder,
    /// `sip-plus-media-decrypted.pcap`: every leg's SIP and media (decrypted
    /// where a leg carried SRTP), merged by time.
    fn flush_bundle(&mut self) -> Result<(), OutputError> {
        let Some((_, folders)) = self.bundle.take() else {
            return Ok(());
        };
        if folders.len() < 2 {
            return Ok(());
        }
        // Its legs' folders may still be on their way (writer threads).
        if self.workers > 1 {
            self.deferred_bundles.push(folders);
            return Ok(());
        }
        write_bundle(&folders)
    }

    /// Write `calls.csv` and `streams.csv`.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.flush_bundle()?;
        // Every folder written (a failed one is reported after the CSV
        // files, so the other calls are not lost with it).
        let writers = self.pool.take().map_or(Ok(()), pool::WriterPool::finish);
        for folders in std::mem::take(&mut self.deferred_bundles) {
            write_bundle(&folders)?;
        }
        self.finish_tables()?;
        writers
    }

    fn finish_tables(mut self) -> Result<(), OutputError> {
        if self.streamed.is_some() {
            self.spill_rows()?;
        } else {
            self.call_rows.sort_by_key(|(t, _)| *t);
            self.stream_rows.sort_by_key(|(t, _)| *t);
            write_encoded_csv(&self.dir.join("calls.csv"), CALLS_HEADER, &self.call_rows)?;
            write_encoded_csv(
                &self.dir.join("streams.csv"),
                STREAMS_HEADER,
                &self.stream_rows,
            )?;
            self.fax_rows.sort_by_key(|(t, _)| *t);
            write_encoded_csv(&self.dir.join("fax.csv"), FAX_HEADER, &self.fax_rows)?;
        }
        self.finish_transactions()?;
        // Hops of each logical call in order of their first INVITE.
        self.leg_rows
            .sort_by(|a, b| (&a.1[0], a.0).cmp(&(&b.1[0], b.0)));
        let mut hop = 0;
        let mut last: Option<(String, String)> = None;
        for (_, r) in &mut self.leg_rows {
            let key = (r[0].clone(), r[2].clone());
            match &last {
                Some((g, c)) if *g == key.0 && *c == key.1 => {}
                Some((g, _)) if *g == key.0 => hop += 1,
                _ => hop = 1,
            }
            r[1] = hop.to_string();
            last = Some(key);
        }
        write_csv(&self.dir.join("legs.csv"), LEGS_HEADER, &self.leg_rows)?;
        Ok(())
    }
}

/// A logical call's `sip-plus-media-decrypted.pcap`, in its first leg's
/// folder: every leg's SIP and media (decrypted where a leg carried SRTP),
/// merged by time.
fn write_bundle(folders: &[PathBuf]) -> Result<(), OutputError> {
    let mut frames = Vec::new();
    for f in folders {
        let dec = f.join("call-decrypted.pcap");
        let src = if dec.exists() {
            dec
        } else {
            f.join("call.pcap")
        };
        let mut r = crate::pcapfile::open(&src).map_err(|source| OutputError::Source {
            call_id: f.display().to_string(),
            path: src.clone(),
            source,
        })?;
        while let Ok(Some(rec)) = r.next_packet() {
            frames.push(CallFrame {
                ts_ns: rec.ts_ns,
                orig_len: rec.orig_len,
                link: rec.link,
                data: rec.data.into(),
            });
        }
    }
    // Stable: frames of one leg keep their order at equal times.
    frames.sort_by_key(|f| f.ts_ns);
    write_pcap(&frames, &folders[0].join("sip-plus-media-decrypted.pcap"))
}

/// The call's row of `calls.csv` (columns as [`CALLS_HEADER`]).
fn call_row(r: &mut Row, call: &Call, rel_pcap: &str) -> Box<str> {
    r.cell(call.call_id())
        .show(Ts(call.start_ns()))
        .show(Ts(call.end_or_last()))
        .show(format_args!("{:.3}", call.duration_s()))
        .cell(call.from_user())
        .cell(call.to_user())
        .cell(call.state().as_str())
        .show_opt(call.status_code())
        .cell(rel_pcap)
        .show(call.sip_packets())
        .show(call.rtp_packets())
        .show(call.rtcp_packets())
        .show(call.streams().len())
        .cell(call.method())
        .show_opt(call.ringing_ns().map(Ts))
        .show_opt(call.answer_ns().map(Ts))
        .show_opt(call.talk_s().map(|t| Fixed(t, 3)))
        .cell(call.end_reason().map(|r| r.as_str()).unwrap_or_default())
        .cell(call.request_uri())
        .cell(call.group())
        .cell(&links_text(call))
        .cell(call.facing().as_str())
        .show(Latched(call.latched()))
        .show(call.capture_loss())
        .show(call.sip_messages())
        .show_opt(call.fax_ns().map(Ts))
        .cell(&link_evidence(call))
        .cell(call.encrypted_signalling())
        .show(call.sip_oversized())
        .show(call.sip_truncated())
        .cell(call.outer_path())
        .take()
}

/// A call's latched endpoints, "from->to" space separated.
struct Latched<'a>(&'a [(SocketAddr, SocketAddr)]);

impl std::fmt::Display for Latched<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (to, from)) in self.0.iter().enumerate() {
            let sep = if i > 0 { " " } else { "" };
            write!(f, "{sep}{from}->{to}")?;
        }
        Ok(())
    }
}

/// One stream's row of `streams.csv` (columns as [`STREAMS_HEADER`]), keyed
/// by its first packet's time.
fn stream_row(r: &mut Row, call: &Call, s: &Stream) -> (u64, Box<str>) {
    let sum = s.stats.summary();
    // The payload type quality.json names and rates the stream by.
    let (pt, _) = crate::media::codec::stream_codec(call, s, &sum.payload_types);
    let f3 = |v: f64| Fixed(v, 3);
    let rtcp = s.rtcp.reports > 0;
    let rtcp_jitter_ms = (rtcp && s.clock_rate() > 0)
        .then(|| f3(f64::from(s.rtcp.jitter_units) * 1000.0 / f64::from(s.clock_rate())));
    let codec = call.codec_name(s, pt);
    let est = crate::media::quality::summary_estimate(&codec, sum.lost, sum.expected, sum.ptime_ms);
    let row = r
        .cell(call.call_id())
        .show(format_args!("0x{:08X}", s.key.ssrc))
        .show(s.key.src)
        .show(s.key.dst)
        .show(pt)
        .cell(&codec)
        .show(sum.packets)
        .show(sum.expected)
        .show(sum.lost)
        .show(sum.out_of_order)
        .show(sum.duplicates)
        .show(f3(sum.mean_jitter_ms))
        .show(f3(sum.max_delta_ms))
        .show(f3(sum.min_delta_ms))
        .show(f3(sum.avg_delta_ms))
        .show_opt(sum.ptime_ms.map(f3))
        .show(f3(sum.max_jitter_ms))
        .show(sum.seq_wraps)
        .show(PayloadTypes(&sum.payload_types))
        .show(s.rtcp.reports)
        .show_opt(rtcp.then_some(s.rtcp.cumulative_lost))
        .show_opt(rtcp.then_some(s.rtcp.fraction_lost))
        .show_opt(rtcp_jitter_ms)
        .show_opt(est.map(|e| Fixed(e.1, 2)))
        .show_opt(est.map(|e| Fixed(e.0, 1)))
        .take();
    (sum.first_ns, row)
}

/// A number with a fixed count of decimals, as `{:.N}` formats it.
#[derive(Clone, Copy)]
struct Fixed(f64, usize);

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.*}", self.1, self.0)
    }
}

/// A stream's payload types, "/" separated.
struct PayloadTypes<'a>(&'a [u8]);

impl std::fmt::Display for PayloadTypes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, pt) in self.0.iter().enumerate() {
            let sep = if i > 0 { "/" } else { "" };
            write!(f, "{sep}{pt}")?;
        }
        Ok(())
    }
}

/// A media-only record's folder: "media-only-" and its first stream's
/// endpoints.
fn media_only_name(call: &Call) -> String {
    match call.streams().first() {
        // ':' (and IPv6 brackets) are not safe in a file name: '_', so the
        // name stays readable instead of being hashed (output/naming.rs).
        Some(s) => format!("media-only-{}-{}", s.key.src, s.key.dst).replace([':', '[', ']'], "_"),
        None => format!("media-only-{}", call.no()),
    }
}

/// One direction of a fax (columns as [`FAX_HEADER`]).
fn fax_row(r: &mut Row, call: &Call, f: &crate::calls::FaxStream) -> Box<str> {
    r.cell(call.call_id())
        .show(f.src)
        .show(f.dst)
        .show(f.packets)
        .show(f.expected())
        .show(f.lost())
        .show(f.late)
        .show(f.bytes)
        .show(Ts(f.first_ns))
        .show(Ts(f.last_ns))
        .show(format_args!("{:.3}", f.duration_s()))
        .show(f.first_seq)
        .show(f.last_seq())
        .show_opt(call.fax_ns().map(Ts))
        .take()
}

/// "other:method: evidence" for each link, " | " between them.
fn link_evidence(call: &Call) -> String {
    call.links()
        .iter()
        .map(|l| format!("{}:{}: {}", l.other, l.method.as_str(), l.detail))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// "other-call-id:method" for each link, space separated.
fn links_text(call: &Call) -> String {
    call.links()
        .iter()
        .map(|l| format!("{}:{}", l.other, l.method.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A reader for `read_at`. pcapng packets name their interface (link type,
/// time resolution) declared earlier in the file, so a pcapng file is walked
/// once first to learn every interface.
fn open_for_random_reads(path: &Path) -> Result<PcapReader<BufReader<File>>, PcapError> {
    // A small buffer: every random read refills it.
    let mut r = crate::pcapfile::open_with_capacity(path, 4096)?;
    if matches!(r.format(), voxtap_proto::pcapio::FileFormat::PcapNg) {
        // Damage past the packets we index was reported by the import; the
        // interfaces read before it are what the indexed packets need.
        while let Ok(Some(_)) = r.next_packet() {}
    }
    r.finish_sequential();
    Ok(r)
}

/// Where the call's packets are, in capture order (time, then position),
/// each once (a TCP segment ending one SIP message and starting the next is
/// listed twice), without the ones a store did not keep.
fn capture_order(call: &Call) -> Result<Vec<crate::calls::PacketRef>, OutputError> {
    let mut refs = call
        .packets()
        .map_err(|source| OutputError::Spill {
            call_id: call.call_id().to_string(),
            source,
        })?
        .into_owned();
    refs.sort_unstable();
    let mut seen = HashSet::with_capacity(refs.len());
    refs.retain(|r| seen.insert(r.1));
    Ok(refs
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| *p != crate::calls::PacketRef::NOT_STORED)
        .collect())
}

/// Write `frames` as a classic pcap (an empty but valid file when there are
/// none).
pub fn write_pcap(frames: &[CallFrame], path: &Path) -> Result<(), OutputError> {
    write_pcap_each(frames, path)
}

/// [`write_pcap`] from frames held anywhere (the media step's decrypted
/// captures point into the call's frames instead of copying them). The
/// records go through one buffer, written [`PCAP_CHUNK`] bytes at a time:
/// the kernel copies a contiguous buffer into the page cache 1.7 to 3.4
/// times faster per byte than `writev` of two small slices per frame (perf
/// of 2,000-call imports), which saved more system time (0.9 s median,
/// less in each of 10 paired runs) than the copy into the buffer costs in
/// user time (about 0.5 s of memmove).
pub fn write_pcap_each<'f>(
    frames: impl IntoIterator<Item = &'f CallFrame>,
    path: &Path,
) -> Result<(), OutputError> {
    let mut frames = frames.into_iter().peekable();
    let link = frames
        .peek()
        .map_or(voxtap_proto::pcapio::LinkType::Ethernet, |f| f.link);
    let mut f = File::create(path).map_err(io_err(path))?;
    let mut buf = Vec::with_capacity(PCAP_CHUNK + 4096);
    buf.extend_from_slice(&voxtap_proto::pcapio::file_header(link, 262_144));
    for fr in frames {
        let head = voxtap_proto::pcapio::record_header(fr.ts_ns, fr.orig_len, fr.data.len())
            .map_err(io_err(path))?;
        buf.extend_from_slice(&head);
        buf.extend_from_slice(&fr.data);
        if buf.len() >= PCAP_CHUNK {
            f.write_all(&buf).map_err(io_err(path))?;
            buf.clear();
        }
    }
    f.write_all(&buf).map_err(io_err(path))
}

/// Bytes per `write` in [`write_pcap_each`] (a 10 s G.711 call's pcap is
/// 230 KB: one write).
const PCAP_CHUNK: usize = 256 * 1024;

pub(crate) fn write_csv(
    path: &Path,
    header: &[&str],
    rows: &[(u64, Vec<String>)],
) -> Result<(), OutputError> {
    let f = File::create(path).map_err(io_err(path))?;
    let mut w = CsvWriter::new(BufWriter::new(f));
    w.row(header.iter().copied()).map_err(io_err(path))?;
    for (_, r) in rows {
        w.row(r.iter().map(String::as_str)).map_err(io_err(path))?;
    }
    w.into_inner().flush().map_err(io_err(path))
}

fn write_encoded_csv(
    path: &Path,
    header: &[&str],
    rows: &[(u64, Box<str>)],
) -> Result<(), OutputError> {
    let f = File::create(path).map_err(io_err(path))?;
    let mut w = CsvWriter::new(BufWriter::new(f));
    w.row(header.iter().copied()).map_err(io_err(path))?;
    for (_, r) in rows {
        w.encoded(r).map_err(io_err(path))?;
    }
    w.into_inner().flush().map_err(io_err(path))
}

/// A call folder from the call's frames, read back already: the folder,
/// `call.pcap`, then [`finish_folder`]. The same on any thread.
pub(super) fn write_folder_files(
    call: &Call,
    frames: Option<&[CallFrame]>,
    folder: &Path,
    processors: &mut [Box<dyn CallProcessor>],
) -> Result<(), OutputError> {
    std::fs::create_dir_all(folder).map_err(io_err(folder))?;
    let frames = frames.unwrap_or_default();
    write_pcap(frames, &folder.join("call.pcap"))?;
    finish_folder(call, frames, folder, processors)
}

/// What follows `call.pcap` in a call folder: `sip.txt` (not for a
/// media-only record) and the processors' outputs.
fn finish_folder(
    call: &Call,
    frames: &[CallFrame],
    folder: &Path,
    processors: &mut [Box<dyn CallProcessor>],
) -> Result<(), OutputError> {
    if !call.is_media_only() {
        write_sip_txt(call, &folder.join("sip.txt"))?;
    }
    for p in processors {
        p.process(call, frames, folder)?;
    }
    Ok(())
}

fn write_sip_txt(call: &Call, path: &Path) -> Result<(), OutputError> {
    let f = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(f);
    let mut shown = 0u64;
    for e in call.sip() {
        let text = if e.text.is_empty() {
            shown += 1;
            format!(
                "{}\n[text not kept: over the call's SIP budget; call.pcap has it]",
                e.summary
            )
        } else {
            e.text.trim_end_matches(['\r', '\n']).to_string()
        };
        writeln!(
            w,
            "{} {} {} -> {}\n{}",
            format_ts(e.ts_ns),
            e.transport,
            e.src,
            e.dst,
            text
        )
        .map_err(io_err(path))?;
        writeln!(w).map_err(io_err(path))?;
    }
    let unlisted = call.sip_truncated().saturating_sub(shown);
    if unlisted > 0 {
        writeln!(
            w,
            "[{unlisted} more SIP messages not kept: over the call's SIP budget; call.pcap has them]"
        )
        .map_err(io_err(path))?;
    }
    w.flush().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxtap_proto::pcapio::{LinkType, PcapWriter};

    /// `write_pcap` (1,203 frames of up to 2,000 bytes, 0.74 MB: three
    /// writes) writes the bytes `PcapWriter` writes packet by packet; so
    /// does it for no frames.
    #[test]
    fn chunked_pcap_equals_the_buffered_writer() {
        let frames: Vec<CallFrame> = (0..1_203u32)
            .map(|i| CallFrame {
                ts_ns: 1_767_225_600_000_000_000 + u64::from(i) * 20_000_000,
                orig_len: if i == 7 { 0 } else { 60 + i % 2000 },
                link: LinkType::Ethernet,
                data: vec![(i % 251) as u8; (i % 2000) as usize].into(),
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("voxtap-pcap-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.pcap");
        write_pcap(&frames, &path).unwrap();
        let mut want = PcapWriter::new(Vec::new(), LinkType::Ethernet, 262_144).unwrap();
        for f in &frames {
            want.write_packet(f.ts_ns, f.orig_len, &f.data).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), want.into_inner());
        write_pcap(&[], &path).unwrap();
        let empty = PcapWriter::new(Vec::new(), LinkType::Ethernet, 262_144).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), empty.into_inner());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
