//! The rolling raw PCAP writer: one sequential file at a time, large write
//! buffer, rolled by size and by capture time. Every packet written returns
//! the [`PacketRef`] that finds it again (source = low 16 bits of the file
//! id, offset = its record header), which is what the pipeline stores in the
//! call.
//!
//! A full disk does not stop the sensor: the writer stops storing frames
//! (they get [`PacketRef::NOT_STORED`] and are counted), leaves every file it
//! wrote a valid PCAP ending on a whole record, and starts a new file once
//! there is room again. Calls are still followed and indexed; the frames a
//! call lost this way are charged to it as capture loss. It stops before the
//! file system is completely full (`reserve`), so SQLite beside the files
//! can still record what happened.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use voxtap_engine::calls::PacketRef;
use voxtap_proto::pcapio::{LinkType, PcapWriter};

/// Bytes of a classic pcap file header and of a record header.
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;
/// Free space left for the indexes when the store's file system fills.
pub const DEFAULT_RESERVE: u64 = 1 << 20;
/// How often a suspended writer looks for free space again.
const RETRY: Duration = Duration::from_secs(1);

/// What happened to a rolling file, for the store's index and retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileEvent {
    Opened {
        id: u32,
        /// Relative to the store directory.
        rel_path: PathBuf,
        first_ts: u64,
    },
    /// Bytes on disk so far (sent on flush), for retention by size.
    Progress { id: u32, last_ts: u64, bytes: u64 },
    Closed {
        id: u32,
        last_ts: u64,
        bytes: u64,
        packets: u64,
    },
    /// The file could not even keep its header (disk full) and was removed.
    Discarded { id: u32, reason: &'static str },
}

#[derive(Clone, Copy, Debug)]
pub struct RollPolicy {
    pub max_bytes: u64,
    pub max_ns: u64,
    pub buffer_bytes: usize,
}

struct Current {
    id: u32,
    w: PcapWriter<BufWriter<File>>,
    bytes: u64,
    first_ts: u64,
    last_ts: u64,
    packets: u64,
    /// On disk at the last successful flush: a record boundary.
    flushed: u64,
    flushed_packets: u64,
    flushed_ts: u64,
    /// `bytes` at which free space is checked next.
    check_at: u64,
}

pub struct RollingWriter {
    store: PathBuf,
    policy: RollPolicy,
    next_id: u32,
    cur: Option<Current>,
    events: Sender<FileEvent>,
    reserve: u64,
    /// Set while frames are not stored: when to look for room again.
    suspended: Option<Instant>,
    /// Frames refused because the store could not take them.
    not_stored: u64,
    /// Frames accepted but cut from the end of a file by a failed write.
    cut: u64,
}

/// Path of file `id` relative to the store directory.
pub fn file_rel_path(id: u32) -> PathBuf {
    PathBuf::from("pcap").join(format!("{id:010}.pcap"))
}

/// The whole records of a classic pcap we wrote, from `from` (a record
/// boundary) to the end of the file: (end of the last whole record, records,
/// timestamp of the last one). A cut-off record at the end (a crash or a
/// full disk in the middle of a write) is not counted.
pub fn whole_records(file: &mut File, from: u64) -> io::Result<(u64, u64, Option<u64>)> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::with_capacity(1 << 20, &mut *file);
    let mut at = from;
    let mut packets = 0u64;
    let mut last_ts = None;
    let mut h = [0u8; RECORD_HEADER as usize];
    while at + RECORD_HEADER <= len {
        r.read_exact(&mut h)?;
        let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let caplen = u64::from(w(8));
        // Our records never exceed the snaplen; anything else is not ours.
        if caplen > voxtap_common::MAX_FRAME as u64 || at + RECORD_HEADER + caplen > len {
            break;
        }
        r.seek_relative(caplen as i64)?;
        at += RECORD_HEADER + caplen;
        packets += 1;
        last_ts = Some(u64::from(w(0)) * 1_000_000_000 + u64::from(w(4)));
    }
    Ok((at, packets, last_ts))
}

impl RollingWriter {
    /// Files are numbered from `first_id` (one past the last id the store's
    /// index knows, so ids are never reused within a store).
    pub fn new(
        store: &Path,
        policy: RollPolicy,
        first_id: u32,
        events: Sender<FileEvent>,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(store.join("pcap"))?;
        Ok(RollingWriter {
            store: store.to_path_buf(),
            policy,
            next_id: first_id.max(1),
            cur: None,
            events,
            reserve: DEFAULT_RESERVE,
            suspended: None,
            not_stored: 0,
            cut: 0,
        })
    }

    /// Bytes to leave free on the store's file system (default 1 MiB); 0
    /// writes until the disk itself refuses.
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// Frames not stored so far because the store was full: refused, or
    /// accepted and then lost with a write that failed.
    pub fn not_stored(&self) -> u64 {
        self.not_stored + self.cut
    }

    /// Of [`RollingWriter::not_stored`], the frames that were accepted (a
    /// reference was handed out) and then lost with a failed write.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    /// Whether frames are currently being stored.
    pub fn storing(&self) -> bool {
        self.suspended.is_none()
    }

    /// Appends one frame; opens or rolls the file first when needed. No
    /// allocation except when a file is opened. While the store is full the
    /// frame is counted and [`PacketRef::NOT_STORED`] returned; write
    /// failures never reach the caller, the writer handles them (see the
    /// module documentation). The `io::Result` stays for invalid frames.
    pub fn write(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<PacketRef> {
        if let Some(retry_at) = self.suspended {
            let now = Instant::now();
            if now < retry_at {
                self.not_stored += 1;
                return Ok(PacketRef::NOT_STORED);
            }
            if !self.room_to_resume() {
                self.suspended = Some(now + RETRY);
                self.not_stored += 1;
                return Ok(PacketRef::NOT_STORED);
            }
            tracing::info!(
                not_stored = self.not_stored,
                store = %self.store.display(),
                "the store has room again: storing frames in a new rolling file"
            );
            self.suspended = None;
        }
        match self.try_write(ts_ns, orig_len, data) {
            Ok(r) => Ok(r),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(e),
            Err(e) => {
                self.suspend(&e);
                self.not_stored += 1;
                Ok(PacketRef::NOT_STORED)
            }
        }
    }

    fn try_write(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<PacketRef> {
        let rec = RECORD_HEADER + data.len() as u64;
        let roll = self.cur.as_ref().is_some_and(|c| {
            c.packets > 0
                && (c.bytes + rec > self.policy.max_bytes
                    || ts_ns.saturating_sub(c.first_ts) >= self.policy.max_ns)
        });
        if roll {
            self.close_current()?;
        }
        if self.cur.is_none() {
            self.open(ts_ns)?;
        }
        let check_every = (self.policy.buffer_bytes as u64 / 2).max(64 << 10);
        if self.reserve > 0 && self.cur.as_ref().is_some_and(|c| c.bytes >= c.check_at) {
            // One statvfs per half buffer written, not per frame.
            let need = self.reserve + self.policy.buffer_bytes as u64;
            if super::free_bytes(&self.store).is_some_and(|f| f < need) {
                // The reserve covers what is buffered: this flush fits.
                self.close_current()?;
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "less than {need} bytes free on the store's file system (reserve {} + write buffer {}): the rolling file was closed",
                        self.reserve, self.policy.buffer_bytes
                    ),
                ));
            }
            if let Some(c) = self.cur.as_mut() {
                c.check_at = c.bytes + check_every;
            }
        }
        let Some(c) = self.cur.as_mut() else {
            return Err(io::Error::other("no rolling file open"));
        };
        let offset = c.bytes;
        c.w.write_packet(ts_ns, orig_len, data)?;
        c.bytes += rec;
        c.packets += 1;
        c.last_ts = c.last_ts.max(ts_ns);
        Ok(PacketRef::new(c.id as u16, offset))
    }

    /// Room for a new file: the reserve, two write buffers (hysteresis: the
    /// writer does not flap at the limit).
    fn room_to_resume(&self) -> bool {
        let need = self.reserve + 2 * self.policy.buffer_bytes as u64 + FILE_HEADER;
        super::free_bytes(&self.store).is_none_or(|f| f >= need)
    }

    fn open(&mut self, ts_ns: u64) -> io::Result<()> {
        if self.reserve > 0 && !self.room_to_resume() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no room for a new rolling file on the store's file system",
            ));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let rel_path = file_rel_path(id);
        let path = self.store.join(&rel_path);
        // Readable too: after a failed write the writer reads the file back
        // to find its last whole record.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        let w = PcapWriter::new(
            BufWriter::with_capacity(self.policy.buffer_bytes, f),
            LinkType::Ethernet,
            voxtap_common::MAX_FRAME as u32,
        )?;
        tracing::debug!(id, path = %path.display(), "rolling file opened");
        // The receiver outlives the writer; if it is gone we are shutting down.
        let _ = self.events.send(FileEvent::Opened {
            id,
            rel_path,
            first_ts: ts_ns,
        });
        self.cur = Some(Current {
            id,
            w,
            bytes: FILE_HEADER,
            first_ts: ts_ns,
            last_ts: ts_ns,
            packets: 0,
            flushed: 0,
            flushed_packets: 0,
            flushed_ts: ts_ns,
            check_at: FILE_HEADER,
        });
        Ok(())
    }

    /// Puts everything written so far on disk (readers of the file see it).
    /// A failure suspends storing (see [`RollingWriter::write`]).
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(c) = &mut self.cur {
            if let Err(e) = c.w.flush() {
                self.suspend(&e);
                return Ok(());
            }
            c.flushed = c.bytes;
            c.flushed_packets = c.packets;
            c.flushed_ts = c.last_ts;
            let _ = self.events.send(FileEvent::Progress {
                id: c.id,
                last_ts: c.last_ts,
                bytes: c.bytes,
            });
        }
        Ok(())
    }

    /// Flushes and closes the current file (the next write opens a new one).
    pub fn close(&mut self) -> io::Result<()> {
        if let Err(e) = self.close_current() {
            self.suspend(&e);
        }
        Ok(())
    }

    fn close_current(&mut self) -> io::Result<()> {
        if let Some(c) = &mut self.cur {
            c.w.flush()?;
        }
        if let Some(c) = self.cur.take() {
            let _ = self.events.send(FileEvent::Closed {
                id: c.id,
                last_ts: c.last_ts,
                bytes: c.bytes,
                packets: c.packets,
            });
            tracing::debug!(id = c.id, bytes = c.bytes, "rolling file closed");
        }
        Ok(())
    }

    /// Stops storing after a write failure or when the file system is
    /// nearly full: the current file is cut back to its last whole record
    /// and closed, so it stays a valid PCAP.
    fn suspend(&mut self, why: &io::Error) {
        self.suspended = Some(Instant::now() + RETRY);
        let Some(c) = self.cur.take() else {
            tracing::error!(
                store = %self.store.display(),
                error = %why,
                "store full or failing: frames are not stored until there is room (calls are still followed and indexed)"
            );
            return;
        };
        let path = self.store.join(file_rel_path(c.id));
        // What did not reach the disk is dropped here: BufWriter's own drop
        // would try to write it again, after the cut.
        let (w, _unwritten) = c.w.into_inner().into_parts();
        let mut file = w;
        let from = c.flushed.max(FILE_HEADER);
        let base_packets = if c.flushed >= FILE_HEADER {
            c.flushed_packets
        } else {
            0
        };
        let scanned = scan_from(&mut file, from).map(|(end, n, ts)| (end, base_packets + n, ts));
        let kept = match scanned {
            Ok(k) => Ok(k),
            // Cannot read it back: the last flush is a known record boundary.
            Err(e) if c.flushed >= FILE_HEADER => {
                tracing::warn!(file = %path.display(), error = %e, "reading the rolling file back; cutting at its last flush");
                Ok((c.flushed, c.flushed_packets, Some(c.flushed_ts)))
            }
            Err(e) => Err(e),
        };
        let kept = kept.and_then(|(end, n, ts)| {
            if end < FILE_HEADER || file.metadata()?.len() < FILE_HEADER {
                return Ok(None);
            }
            file.set_len(end)?;
            Ok(Some((end, n, ts.unwrap_or(c.flushed_ts))))
        });
        match kept {
            Ok(Some((bytes, packets, last_ts))) => {
                self.cut += c.packets.saturating_sub(packets);
                let _ = self.events.send(FileEvent::Closed {
                    id: c.id,
                    last_ts,
                    bytes,
                    packets,
                });
                tracing::error!(
                    store = %self.store.display(),
                    file = %path.display(),
                    error = %why,
                    kept_packets = packets,
                    lost_packets = c.packets - packets,
                    "store full or failing: rolling file closed on its last whole record; frames are not stored until there is room (calls are still followed and indexed)"
                );
            }
            Ok(None) | Err(_) => {
                self.cut += c.packets;
                let _ = std::fs::remove_file(&path);
                let _ = self.events.send(FileEvent::Discarded {
                    id: c.id,
                    reason: "disk full before its header was written",
                });
                tracing::error!(
                    store = %self.store.display(),
                    file = %path.display(),
                    error = %why,
                    lost_packets = c.packets,
                    "store full or failing: rolling file removed (not even its header fit); frames are not stored until there is room (calls are still followed and indexed)"
                );
            }
        }
    }
}

/// [`whole_records`] from a record boundary, for a file that may be shorter
/// than it (nothing past its header reached the disk).
fn scan_from(file: &mut File, from: u64) -> io::Result<(u64, u64, Option<u64>)> {
    if file.metadata()?.len() < from {
        return Ok((from.min(FILE_HEADER), 0, None));
    }
    whole_records(file, from)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_by_size_and_time_and_refs_read_back() {
        let dir = tempdir();
        let (tx, rx) = std::sync::mpsc::channel();
        let policy = RollPolicy {
            max_bytes: 24 + 3 * (16 + 100),
            max_ns: 10_000_000_000,
            buffer_bytes: 4096,
        };
        let mut w = RollingWriter::new(&dir, policy, 7, tx).unwrap();
        let mut refs = Vec::new();
        for i in 0..7u64 {
            // Packet 5 comes 11 s later: a roll by time.
            let ts = if i >= 5 {
                20_000_000_000 + i
            } else {
                1_000 + i
            };
            refs.push(w.write(ts, 100, &[i as u8; 100]).unwrap());
        }
        w.close().unwrap();
        let ids: Vec<u16> = refs.iter().map(|r| r.source()).collect();
        // 3 per file by size, then a time roll at packet 5.
        assert_eq!(ids, vec![7, 7, 7, 8, 8, 9, 9]);
        for (i, r) in refs.iter().enumerate() {
            let path = dir.join(file_rel_path(u32::from(r.source())));
            let mut rd = voxtap_engine::pcapfile::open(&path).unwrap();
            let rec = rd.read_at(r.offset()).unwrap();
            assert_eq!(rec.data, &[i as u8; 100][..]);
        }
        let closed: Vec<_> = rx
            .try_iter()
            .filter(|e| matches!(e, FileEvent::Closed { .. }))
            .collect();
        assert_eq!(closed.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "voxtap-rolling-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
