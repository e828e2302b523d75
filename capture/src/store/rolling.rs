//! The rolling raw PCAP writer: one sequential file at a time, large write
//! buffer, rolled by size and by capture time. Every packet written returns
//! the [`PacketRef`] that finds it again (source = low 16 bits of the file
//! id, offset = its record header), which is what the pipeline stores in the
//! call.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use crate::calls::PacketRef;
use crate::pcapio::{LinkType, PcapWriter};

/// Bytes of a classic pcap file header and of a record header.
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;

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
}

pub struct RollingWriter {
    store: PathBuf,
    policy: RollPolicy,
    next_id: u32,
    cur: Option<Current>,
    events: Sender<FileEvent>,
}

/// Path of file `id` relative to the store directory.
pub fn file_rel_path(id: u32) -> PathBuf {
    PathBuf::from("pcap").join(format!("{id:010}.pcap"))
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
        })
    }

    /// Appends one frame; opens or rolls the file first when needed. No
    /// allocation except when a file is opened.
    pub fn write(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<PacketRef> {
        let rec = RECORD_HEADER + data.len() as u64;
        let roll = self.cur.as_ref().is_some_and(|c| {
            c.packets > 0
                && (c.bytes + rec > self.policy.max_bytes
                    || ts_ns.saturating_sub(c.first_ts) >= self.policy.max_ns)
        });
        if roll {
            self.close()?;
        }
        if self.cur.is_none() {
            self.open(ts_ns)?;
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

    fn open(&mut self, ts_ns: u64) -> io::Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let rel_path = file_rel_path(id);
        let path = self.store.join(&rel_path);
        let f = File::create(&path)
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
        });
        Ok(())
    }

    /// Puts everything written so far on disk (readers of the file see it).
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(c) = &mut self.cur {
            c.w.flush()?;
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
        if let Some(mut c) = self.cur.take() {
            c.w.flush()?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapio::PcapReader;

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
            let mut rd = PcapReader::open(&path).unwrap();
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
