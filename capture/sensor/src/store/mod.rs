//! The live capture store: rolling raw PCAP files, a retention policy that
//! deletes the oldest first, and `store.sqlite`, the index of where each
//! call's packets are (file id, record offset), from which
//! [`extract_call`] cuts a call's PCAP without scanning the files.
//!
//! Layout of a store directory:
//! ```text
//! store/
//!   store.sqlite          files + call_locations (see index.rs)
//!   pcap/0000000001.pcap  classic pcap, Ethernet, ns timestamps
//!   pcap/0000000002.pcap  ...
//! ```
//! A [`PacketRef`] names a rolling file by the low 16 bits of its id: the
//! store resolves it to the newest file with those bits, which is right as
//! long as fewer than 65536 files are written during one call.

mod index;
mod rolling;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

pub use index::{CallLocation, FileRow, INDEX_FILE, StoreIndex, pack_locations, unpack_locations};
pub use rolling::{
    DEFAULT_RESERVE, FileEvent, RollPolicy, RollingWriter, file_rel_path, whole_records,
};
use voxtap_engine::calls::{Call, PacketRef};
use voxtap_engine::output::{CallFrame, SourceFiles, write_pcap};
use voxtap_proto::pcapio::{PcapError, PcapReader};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store index {path}: {source}")]
    Index {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{0} does not exist: not a voxtap store (or nothing was captured yet)")]
    NoIndex(PathBuf),
    #[error("call {0:?} is not in the store index")]
    UnknownCall(String),
    #[error(
        "call {call_id:?}: {missing} of its {packets} packets were in rolling files that are gone: {}",
        gone.join(", ")
    )]
    FilesGone {
        call_id: String,
        packets: usize,
        missing: usize,
        /// One entry per file: its path and why it is gone.
        gone: Vec<String>,
    },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: PcapError },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] voxtap_engine::output::OutputError),
    #[error("{path} (held remotely): {message}")]
    Remote { path: PathBuf, message: String },
}

/// A random-access byte source: a local rolling file or a remote copy.
pub trait ReadSeek: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ReadSeek for T {}

type FileReader = PcapReader<Box<dyn ReadSeek>>;

/// Rolling files whose local copy is gone but which are held elsewhere (S3,
/// see `crate::upload::remote`), for [`extract_call_with`].
pub trait RemoteFiles {
    /// A reader of file `f` that can read the records at `offsets` (sorted),
    /// or `None` when `f` is not held remotely.
    fn open(&self, f: &FileRow, offsets: &[u64]) -> Option<Result<Box<dyn ReadSeek>, String>>;
    /// Why `f` is not held remotely, when known (for the error message).
    fn why_not(&self, _f: &FileRow) -> Option<String> {
        None
    }
}

/// Retention limits; 0 disables a limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age_ns: u64,
    pub min_free_bytes: u64,
}

/// What retention needs to know about a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileState {
    pub id: u32,
    pub bytes: u64,
    pub last_ts: u64,
    /// Being written: never deleted.
    pub open: bool,
}

/// Which files to delete, oldest first, and why: while the store is over
/// `max_bytes`, the oldest file is older than `max_age_ns`, or the disk has
/// less than `min_free_bytes` free (`free` = current free bytes; deleting a
/// file is assumed to free its size). `files` is sorted oldest first.
pub(crate) fn plan_retention(
    files: &[FileState],
    now_ns: u64,
    free: Option<u64>,
    r: &Retention,
) -> Vec<(u32, &'static str)> {
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut free = free;
    let mut out = Vec::new();
    for f in files {
        if f.open {
            break;
        }
        let reason = if r.max_bytes > 0 && total > r.max_bytes {
            "max_bytes"
        } else if r.max_age_ns > 0 && f.last_ts.saturating_add(r.max_age_ns) < now_ns {
            "max_age"
        } else if r.min_free_bytes > 0 && free.is_some_and(|v| v < r.min_free_bytes) {
            "min_free"
        } else {
            break;
        };
        out.push((f.id, reason));
        total -= f.bytes;
        free = free.map(|v| v + f.bytes);
    }
    out
}

/// Free bytes for unprivileged users on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: zeroed statvfs is a valid out-value; c is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// The rolling files by PacketRef source, shared with the [`CallWriter`] that
/// writes per-call outputs from them.
///
/// [`CallWriter`]: voxtap_engine::output::CallWriter
#[derive(Clone, Default)]
pub struct StoreSources(Arc<Mutex<HashMap<u16, PathBuf>>>);

impl SourceFiles for StoreSources {
    fn path(&self, source: u16) -> Option<PathBuf> {
        // Locked once per packet read back for a call's outputs (the output
        // thread), never on the capture path.
        self.0.lock().ok()?.get(&source).cloned()
    }
}

#[derive(Clone, Debug)]
struct LiveFile {
    rel_path: PathBuf,
    bytes: u64,
    last_ts: u64,
    open: bool,
}

/// The store as the output thread keeps it: file events in, retention,
/// call locations into the index.
pub struct StoreManager {
    dir: PathBuf,
    index: StoreIndex,
    retention: Retention,
    files: BTreeMap<u32, LiveFile>,
    /// PacketRef source -> newest file id with those low 16 bits.
    by_source: HashMap<u16, u32>,
    sources: StoreSources,
    pub deleted_files: u64,
}

impl StoreManager {
    pub fn open(dir: &Path, retention: Retention) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir.join("pcap")).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let index = StoreIndex::open(dir)?;
        recover_unfinished(dir, &index)?;
        let mut files = BTreeMap::new();
        // Files of earlier runs take part in retention too.
        for f in index.files()? {
            if !f.deleted {
                files.insert(
                    f.id,
                    LiveFile {
                        rel_path: f.path,
                        bytes: f.bytes,
                        last_ts: f.last_ts,
                        open: false,
                    },
                );
            }
        }
        Ok(StoreManager {
            dir: dir.to_path_buf(),
            index,
            retention,
            files,
            by_source: HashMap::new(),
            sources: StoreSources::default(),
            deleted_files: 0,
        })
    }

    /// Rolling files in the store and their total size in bytes.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.files.len() as u64,
            self.files.values().map(|f| f.bytes).sum(),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id the next rolling file should take.
    pub fn next_file_id(&self) -> Result<u32, StoreError> {
        Ok(self.index.max_file_id()?.wrapping_add(1).max(1))
    }

    pub fn sources(&self) -> StoreSources {
        self.sources.clone()
    }

    pub fn index(&mut self) -> &mut StoreIndex {
        &mut self.index
    }

    pub fn on_event(&mut self, ev: FileEvent) -> Result<(), StoreError> {
        match ev {
            FileEvent::Opened {
                id,
                rel_path,
                first_ts,
            } => {
                self.index.add_file(id, &rel_path, first_ts)?;
                let src = id as u16;
                self.by_source.insert(src, id);
                if let Ok(mut m) = self.sources.0.lock() {
                    m.insert(src, self.dir.join(&rel_path));
                }
                self.files.insert(
                    id,
                    LiveFile {
                        rel_path,
                        bytes: 24,
                        last_ts: first_ts,
                        open: true,
                    },
                );
            }
            FileEvent::Progress { id, last_ts, bytes } => {
                if let Some(f) = self.files.get_mut(&id) {
                    f.bytes = bytes;
                    f.last_ts = last_ts;
                }
            }
            FileEvent::Closed {
                id,
                last_ts,
                bytes,
                packets,
            } => {
                self.index.update_file(id, last_ts, bytes, Some(packets))?;
                if let Some(f) = self.files.get_mut(&id) {
                    f.bytes = bytes;
                    f.last_ts = last_ts;
                    f.open = false;
                }
            }
            FileEvent::Discarded { id, reason } => {
                self.index.mark_deleted(id, reason)?;
                // Stays known as an empty closed file until its source bits
                // are reused, so references into it read as not stored.
                if let Some(f) = self.files.get_mut(&id) {
                    f.bytes = 0;
                    f.open = false;
                }
            }
        }
        Ok(())
    }

    /// Replaces the call's references to frames the store did not keep (the
    /// disk was full: never written, or cut from the end of a file) with
    /// [`PacketRef::NOT_STORED`], and returns how many of its frames are not
    /// stored. The caller charges them to the call as capture loss.
    pub fn mark_unstored(&self, call: &mut Call) -> u64 {
        let mut n = 0;
        let refs = match call.packets_mut() {
            Ok(r) => r,
            Err(e) => {
                // Its PCAP will lack them; the writer reports the same error.
                tracing::warn!(error = %e, "reading back spilled packet references");
                return 0;
            }
        };
        for (_, p) in refs.iter_mut() {
            if *p == PacketRef::NOT_STORED {
                n += 1;
                continue;
            }
            let Some(f) = self
                .by_source
                .get(&p.source())
                .and_then(|id| self.files.get(id))
            else {
                continue;
            };
            // A closed file ends on a whole record: a record starting past
            // its end never reached the disk.
            if !f.open && p.offset() >= f.bytes {
                *p = PacketRef::NOT_STORED;
                n += 1;
            }
        }
        n
    }

    /// Deletes what the retention policy says; returns how many files went.
    pub fn apply_retention(&mut self, now_ns: u64) -> Result<usize, StoreError> {
        // Closed files the uploader deleted after a confirmed upload no
        // longer count against the store's limits (they are in S3).
        let dir = &self.dir;
        self.files
            .retain(|_, f| f.open || dir.join(&f.rel_path).exists());
        let states: Vec<FileState> = self
            .files
            .iter()
            .map(|(&id, f)| FileState {
                id,
                bytes: f.bytes,
                last_ts: f.last_ts,
                open: f.open,
            })
            .collect();
        let free = if self.retention.min_free_bytes > 0 {
            free_bytes(&self.dir)
        } else {
            None
        };
        let plan = plan_retention(&states, now_ns, free, &self.retention);
        for &(id, reason) in &plan {
            let Some(f) = self.files.remove(&id) else {
                continue;
            };
            let path = self.dir.join(&f.rel_path);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
            self.index.mark_deleted(id, reason)?;
            if let Ok(mut m) = self.sources.0.lock()
                && self.by_source.get(&(id as u16)) == Some(&id)
            {
                m.remove(&(id as u16));
            }
            self.deleted_files += 1;
            tracing::info!(file = %path.display(), bytes = f.bytes, reason, "retention deleted a rolling file");
        }
        Ok(plan.len())
    }

    /// Where the call's packets are, with rolling file ids resolved.
    pub fn locate(&self, call: &Call) -> CallLocation {
        // Read back by `mark_unstored` already; an error was logged there.
        let mut refs: Vec<(u64, PacketRef)> = call
            .packets()
            .map(std::borrow::Cow::into_owned)
            .unwrap_or_default();
        refs.sort_unstable();
        refs.dedup_by_key(|r| r.1);
        let locations = refs
            .iter()
            .filter(|(_, p)| *p != PacketRef::NOT_STORED)
            .filter_map(|(_, p)| {
                let id = *self.by_source.get(&p.source())?;
                Some((id, p.offset()))
            })
            .collect();
        CallLocation {
            call_id: call.call_id().to_string(),
            start_ts: call.start_ns(),
            end_ts: call.end_or_last(),
            state: call.state().as_str().to_string(),
            from_user: call.from_user().to_string(),
            to_user: call.to_user().to_string(),
            capture_loss: call.capture_loss(),
            locations,
        }
    }
}

/// After a crash (`kill -9`, power loss) the file being written was never
/// closed: its row says 0 bytes. Each such file is cut back to its last
/// whole record (a write cut short leaves part of one) and its row gets the
/// real size, packet count and last timestamp; a file without even a
/// complete header is removed, one missing from disk is marked deleted.
fn recover_unfinished(dir: &Path, index: &StoreIndex) -> Result<(), StoreError> {
    // A crash between creating a file and recording it leaves a file the
    // index does not know (the newest): record it first.
    let known = index.max_file_id()?;
    if let Ok(entries) = std::fs::read_dir(dir.join("pcap")) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pcap"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if id > known {
                tracing::warn!(file = %e.path().display(), "rolling file unknown to the index after a restart: recording it");
                index.add_file(id, &file_rel_path(id), 0)?;
            }
        }
    }
    for f in index.files()? {
        if f.deleted || f.bytes != 0 {
            continue;
        }
        let path = dir.join(&f.path);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %path.display(), "unfinished rolling file missing after a restart");
                index.mark_deleted(f.id, "missing after a restart")?;
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        if len < 24 {
            drop(file);
            std::fs::remove_file(&path).map_err(io)?;
            index.mark_deleted(f.id, "no complete header after a restart")?;
            tracing::warn!(file = %path.display(), len, "unfinished rolling file without a complete header removed");
            continue;
        }
        let (end, packets, last_ts) = whole_records(&mut file, 24).map_err(io)?;
        if end < len {
            file.set_len(end).map_err(io)?;
        }
        index.update_file(f.id, last_ts.unwrap_or(f.first_ts), end, Some(packets))?;
        tracing::info!(
            file = %path.display(),
            packets,
            bytes = end,
            cut = len - end,
            "recovered a rolling file left unfinished by the last run"
        );
    }
    Ok(())
}

/// What [`extract_call`] wrote.
#[derive(Clone, Debug, Default)]
pub struct ExtractReport {
    pub packets: u64,
    /// Rows of the index with this Call-ID that were merged.
    pub calls: usize,
    pub files: Vec<u32>,
    pub capture_loss: u64,
    /// Files read from the remote copy (their local copy was gone).
    pub remote_files: Vec<u32>,
}

/// Writes the PCAP of `call_id` from the store in `store` to `out`, using the
/// index only (no scan). Fails naming the files when any of the call's
/// files were deleted (retention) or are missing.
pub fn extract_call(store: &Path, call_id: &str, out: &Path) -> Result<ExtractReport, StoreError> {
    extract_call_with(store, call_id, out, None)
}

/// [`extract_call`], reading the files whose local copy is gone from
/// `remote` when it holds them: the same records, so the same PCAP.
pub fn extract_call_with(
    store: &Path,
    call_id: &str,
    out: &Path,
    remote: Option<&dyn RemoteFiles>,
) -> Result<ExtractReport, StoreError> {
    let index = StoreIndex::open_read_only(store)?;
    let rows = index.call(call_id)?;
    if rows.is_empty() {
        return Err(StoreError::UnknownCall(call_id.to_string()));
    }
    let files: HashMap<u32, FileRow> = index.files()?.into_iter().map(|f| (f.id, f)).collect();
    let mut locs: Vec<(u32, u64)> = rows.iter().flat_map(|r| r.locations.clone()).collect();
    let mut report = ExtractReport {
        calls: rows.len(),
        capture_loss: rows.iter().map(|r| r.capture_loss).sum(),
        ..Default::default()
    };
    locs.sort_unstable();
    locs.dedup();
    let mut by_file: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for &(id, off) in &locs {
        by_file.entry(id).or_default().push(off);
    }
    let mut gone = Vec::new();
    let mut missing = 0usize;
    let mut readers: Vec<(u32, PathBuf, FileReader)> = Vec::new();
    for (&id, offsets) in &by_file {
        let Some(f) = files.get(&id) else {
            missing += offsets.len();
            gone.push(format!("file id {id} (not in the index)"));
            continue;
        };
        match open_stored_file(store, f, offsets, remote)? {
            Opened::Local(path, r) => readers.push((id, path, r)),
            Opened::Remote(path, r) => {
                report.remote_files.push(id);
                readers.push((id, path, r));
            }
            Opened::Gone(why) => {
                missing += offsets.len();
                gone.push(why);
            }
        }
    }
    if !gone.is_empty() {
        return Err(StoreError::FilesGone {
            call_id: call_id.to_string(),
            packets: locs.len(),
            missing,
            gone,
        });
    }
    let mut frames = read_call_frames(&mut readers, &by_file, locs.len())?;
    // Capture order: by time, then by position in the store.
    frames.sort_by_key(|(id, off, f)| (f.ts_ns, *id, *off));
    let frames: Vec<CallFrame> = frames.into_iter().map(|(_, _, f)| f).collect();
    write_pcap(&frames, out)?;
    report.packets = frames.len() as u64;
    report.files = by_file.keys().copied().collect();
    Ok(report)
}

/// Where a rolling file of a call was found.
enum Opened {
    Local(PathBuf, FileReader),
    /// Its local copy is gone; read from the remote copy.
    Remote(PathBuf, FileReader),
    /// Neither: why, for the error message.
    Gone(String),
}

/// Opens the rolling file `f` locally, else from `remote`.
fn open_stored_file(
    store: &Path,
    f: &FileRow,
    offsets: &[u64],
    remote: Option<&dyn RemoteFiles>,
) -> Result<Opened, StoreError> {
    let path = store.join(&f.path);
    let local = !f.deleted && path.exists();
    let src: Box<dyn ReadSeek> = if local {
        let file = std::fs::File::open(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, file))
    } else if let Some(r) = remote.and_then(|r| r.open(f, offsets)) {
        r.map_err(|message| StoreError::Remote {
            path: f.path.clone(),
            message,
        })?
    } else {
        let local_why = if f.deleted {
            format!(
                "deleted by retention: {}",
                f.deleted_reason.as_deref().unwrap_or("unknown")
            )
        } else {
            "missing from disk".to_string()
        };
        let remote_why = remote
            .and_then(|r| r.why_not(f))
            .map(|w| format!("; {w}"))
            .unwrap_or_default();
        return Ok(Opened::Gone(format!(
            "{} ({local_why}{remote_why})",
            f.path.display()
        )));
    };
    let r = PcapReader::new(src).map_err(|source| StoreError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(if local {
        Opened::Local(path, r)
    } else {
        Opened::Remote(path, r)
    })
}

/// The call's records, file by file in offset order (sequential reads),
/// each with its file id and offset.
fn read_call_frames(
    readers: &mut [(u32, PathBuf, FileReader)],
    by_file: &BTreeMap<u32, Vec<u64>>,
    packets: usize,
) -> Result<Vec<(u32, u64, CallFrame)>, StoreError> {
    let mut frames: Vec<(u32, u64, CallFrame)> = Vec::with_capacity(packets);
    for (id, path, r) in readers.iter_mut() {
        r.finish_sequential();
        for &off in by_file.get(id).map(Vec::as_slice).unwrap_or_default() {
            let rec = r.read_at(off).map_err(|source| StoreError::Read {
                path: path.clone(),
                source,
            })?;
            frames.push((
                *id,
                off,
                CallFrame {
                    ts_ns: rec.ts_ns,
                    orig_len: rec.orig_len,
                    link: rec.link,
                    data: rec.data.into(),
                },
            ));
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: u32, bytes: u64, last_ts: u64, open: bool) -> FileState {
        FileState {
            id,
            bytes,
            last_ts,
            open,
        }
    }

    /// A crash leaves the file being written with 0 bytes in the index and
    /// maybe half a record at its end, and maybe a newer file the index
    /// never heard of: opening the store cuts both to whole records and
    /// records their real figures.
    #[test]
    fn open_recovers_files_left_unfinished_by_a_crash() {
        use voxtap_proto::pcapio::{LinkType, PcapWriter};
        let dir = std::env::temp_dir().join(format!("voxtap-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pcap")).unwrap();
        let write = |id: u32, n: u64, tail: &[u8]| {
            let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 2048).unwrap();
            for i in 0..n {
                w.write_packet(1_000_000_000 * (i + 1), 60, &[i as u8; 60])
                    .unwrap();
            }
            let mut b = w.into_inner();
            b.extend_from_slice(tail);
            std::fs::write(dir.join(file_rel_path(id)), &b).unwrap();
            b.len() as u64
        };
        {
            let idx = StoreIndex::open(&dir).unwrap();
            idx.add_file(1, &file_rel_path(1), 1_000_000_000).unwrap();
            idx.update_file(1, 5_000_000_000, 24 + 5 * 76, Some(5))
                .unwrap();
            idx.add_file(2, &file_rel_path(2), 1_000_000_000).unwrap();
            idx.add_file(3, &file_rel_path(3), 1_000_000_000).unwrap();
        }
        write(1, 5, &[]);
        // 7 whole records, then a record header and 10 of its 60 bytes.
        let mut half = vec![0u8; 16];
        half[8] = 60;
        half[12] = 60;
        half.extend_from_slice(&[9; 10]);
        write(2, 7, &half);
        // File 3 is in the index but never reached the disk; file 4 reached
        // the disk but not the index; file 5 has half a header.
        write(4, 2, &half[..5]);
        std::fs::write(dir.join(file_rel_path(5)), [0xd4, 0xc3]).unwrap();
        let m = StoreManager::open(&dir, Retention::default()).unwrap();
        let rows = m.index.files().unwrap();
        let row = |id: u32| rows.iter().find(|r| r.id == id).unwrap().clone();
        assert_eq!((row(1).bytes, row(1).packets), (24 + 5 * 76, 5));
        assert_eq!((row(2).bytes, row(2).packets), (24 + 7 * 76, 7));
        assert_eq!(row(2).last_ts, 7_000_000_000);
        let len2 = std::fs::metadata(dir.join(file_rel_path(2))).unwrap().len();
        assert_eq!(len2, 24 + 7 * 76);
        assert!(row(3).deleted);
        assert_eq!(
            (row(4).bytes, row(4).packets, row(4).deleted),
            (24 + 2 * 76, 2, false)
        );
        assert!(row(5).deleted);
        assert!(!dir.join(file_rel_path(5)).exists());
        // Every surviving file reads to a clean end.
        for id in [1, 2, 4] {
            let mut r = voxtap_engine::pcapfile::open(&dir.join(file_rel_path(id))).unwrap();
            let mut n = 0;
            while r.next_packet().unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, row(id).packets);
        }
        assert_eq!(m.next_file_id().unwrap(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retention_by_size_age_and_free_space_oldest_first_never_open() {
        let files = [
            f(1, 100, 10, false),
            f(2, 100, 20, false),
            f(3, 100, 30, false),
            f(4, 100, 40, true),
        ];
        let size = Retention {
            max_bytes: 250,
            ..Default::default()
        };
        assert_eq!(
            plan_retention(&files, 50, None, &size),
            vec![(1, "max_bytes"), (2, "max_bytes")]
        );
        let age = Retention {
            max_age_ns: 15,
            ..Default::default()
        };
        // Files whose last packet is before 50 - 15 = 35.
        assert_eq!(
            plan_retention(&files, 50, None, &age),
            vec![(1, "max_age"), (2, "max_age"), (3, "max_age")]
        );
        let free = Retention {
            min_free_bytes: 1000,
            ..Default::default()
        };
        assert_eq!(
            plan_retention(&files, 50, Some(850), &free),
            vec![(1, "min_free"), (2, "min_free")]
        );
        // The open file is never deleted even when it alone is over the limit.
        let tiny = Retention {
            max_bytes: 1,
            ..Default::default()
        };
        assert_eq!(plan_retention(&files, 50, None, &tiny).len(), 3);
        assert!(plan_retention(&files, 50, None, &Retention::default()).is_empty());
    }
}
