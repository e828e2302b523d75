//! `store.sqlite`: the rolling files and, for each call, where its packets
//! are, so a call is cut from the rolling files without scanning them.
//!
//! ```sql
//! files(id, path, first_ts, last_ts, bytes, packets, deleted, deleted_reason)
//! call_locations(call_id, start_ts, end_ts, state, from_user, to_user,
//!                packets, capture_loss, locations)
//! ```
//! `locations` packs one 12-byte little-endian (file_id: u32, offset: u64)
//! pair per packet, in capture order. Timestamps are ns since the epoch.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

pub const INDEX_FILE: &str = "store.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    packets INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    deleted_reason TEXT
);
CREATE TABLE IF NOT EXISTS call_locations(
    call_id TEXT NOT NULL,
    start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL,
    state TEXT NOT NULL,
    from_user TEXT NOT NULL,
    to_user TEXT NOT NULL,
    packets INTEGER NOT NULL,
    capture_loss INTEGER NOT NULL,
    locations BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS call_locations_call_id ON call_locations(call_id);
CREATE INDEX IF NOT EXISTS call_locations_start ON call_locations(start_ts);
";

/// One row of `files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow {
    pub id: u32,
    /// Relative to the store directory.
    pub path: PathBuf,
    pub first_ts: u64,
    pub last_ts: u64,
    pub bytes: u64,
    pub packets: u64,
    pub deleted: bool,
    pub deleted_reason: Option<String>,
}

/// One row of `call_locations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLocation {
    pub call_id: String,
    pub start_ts: u64,
    pub end_ts: u64,
    pub state: String,
    pub from_user: String,
    pub to_user: String,
    pub capture_loss: u64,
    /// (file id, record offset), in capture order.
    pub locations: Vec<(u32, u64)>,
}

pub struct StoreIndex {
    conn: Connection,
}

fn sql(path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Index {
        path: path.to_path_buf(),
        source,
    }
}

pub fn pack_locations(locs: &[(u32, u64)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(locs.len() * 12);
    for (f, o) in locs {
        b.extend_from_slice(&f.to_le_bytes());
        b.extend_from_slice(&o.to_le_bytes());
    }
    b
}

pub fn unpack_locations(b: &[u8]) -> Vec<(u32, u64)> {
    b.chunks_exact(12)
        .map(|c| {
            let mut f = [0u8; 4];
            let mut o = [0u8; 8];
            f.copy_from_slice(&c[..4]);
            o.copy_from_slice(&c[4..]);
            (u32::from_le_bytes(f), u64::from_le_bytes(o))
        })
        .collect()
}

/// SQLite stores signed 64-bit integers; our figures stay far below 2^63.
fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl StoreIndex {
    /// Opens (creating if needed) the index of the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(INDEX_FILE);
        let conn = Connection::open(&path).map_err(sql(&path))?;
        // WAL: extract (another process) reads while the sensor writes.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(sql(&path))?;
        conn.execute_batch(SCHEMA).map_err(sql(&path))?;
        Ok(StoreIndex { conn })
    }

    /// Opens an existing index read-only (extract).
    pub fn open_read_only(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(INDEX_FILE);
        if !path.exists() {
            return Err(StoreError::NoIndex(path));
        }
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql(&path))?;
        Ok(StoreIndex { conn })
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Index {
            path: PathBuf::from(self.conn.path().unwrap_or(INDEX_FILE)),
            source,
        }
    }

    pub fn max_file_id(&self) -> Result<u32, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM files", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(v.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
    }

    pub fn add_file(&self, id: u32, rel_path: &Path, first_ts: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO files(id, path, first_ts, last_ts) VALUES (?1, ?2, ?3, ?3)",
                params![id, rel_path.to_string_lossy(), i(first_ts)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn update_file(
        &self,
        id: u32,
        last_ts: u64,
        bytes: u64,
        packets: Option<u64>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE files SET last_ts = ?2, bytes = ?3, packets = COALESCE(?4, packets) WHERE id = ?1",
                params![id, i(last_ts), i(bytes), packets.map(i)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn mark_deleted(&self, id: u32, reason: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE files SET deleted = 1, deleted_reason = ?2 WHERE id = ?1",
                params![id, reason],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn files(&self) -> Result<Vec<FileRow>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, path, first_ts, last_ts, bytes, packets, deleted, deleted_reason FROM files ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok(FileRow {
                    id: r.get(0)?,
                    path: PathBuf::from(r.get::<_, String>(1)?),
                    first_ts: r.get::<_, i64>(2)? as u64,
                    last_ts: r.get::<_, i64>(3)? as u64,
                    bytes: r.get::<_, i64>(4)? as u64,
                    packets: r.get::<_, i64>(5)? as u64,
                    deleted: r.get::<_, i64>(6)? != 0,
                    deleted_reason: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn file(&self, id: u32) -> Result<Option<FileRow>, StoreError> {
        Ok(self.files()?.into_iter().find(|f| f.id == id))
    }

    /// Records calls in one transaction.
    pub fn add_calls(&mut self, calls: &[CallLocation]) -> Result<(), StoreError> {
        let path = PathBuf::from(self.conn.path().unwrap_or(INDEX_FILE));
        let tx = self.conn.transaction().map_err(sql(&path))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO call_locations(call_id, start_ts, end_ts, state, from_user, to_user, packets, capture_loss, locations)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql(&path))?;
            for c in calls {
                st.execute(params![
                    c.call_id,
                    i(c.start_ts),
                    i(c.end_ts),
                    c.state,
                    c.from_user,
                    c.to_user,
                    c.locations.len() as i64,
                    i(c.capture_loss),
                    pack_locations(&c.locations),
                ])
                .map_err(sql(&path))?;
            }
        }
        tx.commit().map_err(sql(&path))
    }

    /// Every recorded call with this Call-ID (a Call-ID seen again later is
    /// a second row), oldest first.
    pub fn call(&self, call_id: &str) -> Result<Vec<CallLocation>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT call_id, start_ts, end_ts, state, from_user, to_user, capture_loss, locations
                 FROM call_locations WHERE call_id = ?1 ORDER BY start_ts",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([call_id], |r| {
                Ok(CallLocation {
                    call_id: r.get(0)?,
                    start_ts: r.get::<_, i64>(1)? as u64,
                    end_ts: r.get::<_, i64>(2)? as u64,
                    state: r.get(3)?,
                    from_user: r.get(4)?,
                    to_user: r.get(5)?,
                    capture_loss: r.get::<_, i64>(6)? as u64,
                    locations: unpack_locations(&r.get::<_, Vec<u8>>(7)?),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Number of calls recorded.
    pub fn call_count(&self) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT COUNT(*) FROM call_locations", [], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        Ok(n.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip() {
        let v = vec![(1, 24), (u32::MAX, u64::MAX), (7, 0)];
        assert_eq!(unpack_locations(&pack_locations(&v)), v);
    }
}
