//! The upload queue: `upload.sqlite` in the store directory (WAL, so
//! `voxtap extract` reads it while the uploader writes).
//!
//! ```sql
//! queue(id, kind, file_id, path, key, bytes, data_ts, sha256, state,
//!       attempts, next_try_ms, last_error, upload_id, enqueued_ms,
//!       uploaded_ms, local_deleted)       UNIQUE(kind, path)
//! parts(queue_id, part, etag, sha256)     confirmed parts of upload_id
//! meta(name, value)                       how far the scans have gone
//! ```
//! `state`: `queued` (waiting or retrying), `uploaded` (confirmed), `failed`
//! (gave up after `max_attempts`), `lost` (the local file disappeared before
//! its upload, e.g. store retention), `expired` (deleted from S3 by the
//! lifetime rule). A file is enqueued once: `(kind, path)` is unique.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::{QUEUE_FILE, UploadError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue(
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    file_id INTEGER,
    path TEXT NOT NULL,
    key TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    data_ts INTEGER NOT NULL,
    sha256 TEXT,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    upload_id TEXT,
    enqueued_ms INTEGER NOT NULL,
    uploaded_ms INTEGER,
    local_deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE(kind, path)
);
CREATE INDEX IF NOT EXISTS queue_state ON queue(state, next_try_ms);
CREATE INDEX IF NOT EXISTS queue_file ON queue(kind, file_id);
CREATE TABLE IF NOT EXISTS parts(
    queue_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    etag TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY(queue_id, part)
);
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// What kind of file a row is, which decides its root directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A rolling PCAP; path relative to the store directory.
    Raw,
    /// A call artifact; path relative to the call output directory.
    Call,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Call => "call",
        }
    }

    fn parse(s: &str) -> Kind {
        if s == "raw" { Kind::Raw } else { Kind::Call }
    }
}

/// One file to upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItem {
    pub kind: Kind,
    pub file_id: Option<u32>,
    pub path: String,
    pub key: String,
    pub bytes: u64,
    pub data_ts: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub kind: Kind,
    pub file_id: Option<u32>,
    pub path: String,
    pub key: String,
    pub bytes: u64,
    pub data_ts: u64,
    pub sha256: Option<String>,
    pub state: String,
    pub attempts: u32,
    pub next_try_ms: u64,
    pub last_error: Option<String>,
    pub upload_id: Option<String>,
    pub uploaded_ms: Option<u64>,
    pub local_deleted: bool,
}

/// Files and bytes in one state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
}

pub struct Queue {
    conn: Connection,
    path: PathBuf,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const COLS: &str = "id, kind, file_id, path, key, bytes, data_ts, sha256, state, attempts, next_try_ms, last_error, upload_id, uploaded_ms, local_deleted";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        kind: Kind::parse(&r.get::<_, String>(1)?),
        file_id: r.get::<_, Option<i64>>(2)?.map(|v| v as u32),
        path: r.get(3)?,
        key: r.get(4)?,
        bytes: r.get::<_, i64>(5)? as u64,
        data_ts: r.get::<_, i64>(6)? as u64,
        sha256: r.get(7)?,
        state: r.get(8)?,
        attempts: r.get::<_, i64>(9)? as u32,
        next_try_ms: r.get::<_, i64>(10)? as u64,
        last_error: r.get(11)?,
        upload_id: r.get(12)?,
        uploaded_ms: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
        local_deleted: r.get::<_, i64>(14)? != 0,
    })
}

impl Queue {
    /// Opens (creating if needed) the queue of the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, UploadError> {
        let path = dir.join(QUEUE_FILE);
        let conn = Connection::open(&path).map_err(|source| UploadError::Queue {
            path: path.clone(),
            source,
        })?;
        let q = Queue { conn, path };
        q.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(q.err())?;
        // FULL: a confirmed upload must survive a power cut, or the local
        // copy could be deleted while the queue forgets it was uploaded.
        q.conn
            .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(q.err())?;
        q.conn.execute_batch(SCHEMA).map_err(q.err())?;
        Ok(q)
    }

    /// Opens an existing queue read-only; `None` when no uploader ever ran.
    pub fn open_read_only(dir: &Path) -> Result<Option<Self>, UploadError> {
        let path = dir.join(QUEUE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| UploadError::Queue {
            path: path.clone(),
            source,
        })?;
        let q = Queue { conn, path };
        q.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(q.err())?;
        Ok(Some(q))
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> UploadError + '_ {
        move |source| UploadError::Queue {
            path: self.path.clone(),
            source,
        }
    }

    pub fn meta(&self, name: &str) -> Result<u64, UploadError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    pub fn set_meta(&self, name: &str, value: u64) -> Result<(), UploadError> {
        self.conn
            .execute(
                "INSERT INTO meta(name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, i(value)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Adds files not queued before, in one transaction; returns how many
    /// were new.
    pub fn enqueue(&mut self, items: &[NewItem], now_ms: u64) -> Result<usize, UploadError> {
        let path = self.path.clone();
        let e = |source| UploadError::Queue {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(e)?;
        let mut n = 0;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO queue(kind, file_id, path, key, bytes, data_ts, enqueued_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(e)?;
            for it in items {
                n += st
                    .execute(params![
                        it.kind.as_str(),
                        it.file_id,
                        it.path,
                        it.key,
                        i(it.bytes),
                        i(it.data_ts),
                        i(now_ms)
                    ])
                    .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(n)
    }

    /// The queued file due first (oldest first among those due).
    pub fn next_due(&self, now_ms: u64) -> Result<Option<Row>, UploadError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLS} FROM queue WHERE state = 'queued' AND next_try_ms <= ?1
                     ORDER BY id LIMIT 1"
                ),
                [i(now_ms)],
                row,
            )
            .optional()
            .map_err(self.err())
    }

    /// When the next queued file is due, if any is queued.
    pub fn next_try_ms(&self) -> Result<Option<u64>, UploadError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(next_try_ms) FROM queue WHERE state = 'queued'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(v.map(|v| v.max(0) as u64))
    }

    pub fn get(&self, id: i64) -> Result<Option<Row>, UploadError> {
        self.conn
            .query_row(
                &format!("SELECT {COLS} FROM queue WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(self.err())
    }

    /// Every row, oldest first (status output and tests).
    pub fn rows(&self) -> Result<Vec<Row>, UploadError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLS} FROM queue ORDER BY id"))
            .map_err(self.err())?;
        let rows = st.query_map([], row).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Files and bytes per state.
    pub fn count(&self, state: &str) -> Result<Count, UploadError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM queue WHERE state = ?1",
                [state],
                |r| {
                    Ok(Count {
                        files: r.get::<_, i64>(0)? as u64,
                        bytes: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .map_err(self.err())
    }

    pub fn set_sha256(&self, id: i64, hex: &str) -> Result<(), UploadError> {
        self.conn
            .execute(
                "UPDATE queue SET sha256 = ?2 WHERE id = ?1",
                params![id, hex],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Records (or, with `None`, forgets) the multipart upload in flight;
    /// forgetting also forgets its parts.
    pub fn set_upload_id(&self, id: i64, upload_id: Option<&str>) -> Result<(), UploadError> {
        // One transaction: a forgotten upload never keeps its parts.
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.execute(
            "UPDATE queue SET upload_id = ?2 WHERE id = ?1",
            params![id, upload_id],
        )
        .map_err(self.err())?;
        if upload_id.is_none() {
            tx.execute("DELETE FROM parts WHERE queue_id = ?1", [id])
                .map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }

    pub fn add_part(
        &self,
        id: i64,
        part: i32,
        etag: &str,
        sha256: &str,
    ) -> Result<(), UploadError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO parts(queue_id, part, etag, sha256) VALUES (?1, ?2, ?3, ?4)",
                params![id, part, etag, sha256],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Confirmed parts of the row's upload: (part number, etag, sha256 base64).
    pub fn parts(&self, id: i64) -> Result<Vec<(i32, String, String)>, UploadError> {
        let mut st = self
            .conn
            .prepare("SELECT part, etag, sha256 FROM parts WHERE queue_id = ?1 ORDER BY part")
            .map_err(self.err())?;
        let rows = st
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// The row uploaded and its parts forgotten, in one transaction: a
    /// reader (or a run killed in between) never finds an uploaded file
    /// still holding parts.
    pub fn mark_uploaded(&self, id: i64, now_ms: u64) -> Result<(), UploadError> {
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        tx.execute(
            "UPDATE queue SET state = 'uploaded', uploaded_ms = ?2, last_error = NULL, upload_id = NULL WHERE id = ?1",
            params![id, i(now_ms)],
        )
        .map_err(self.err())?;
        tx.execute("DELETE FROM parts WHERE queue_id = ?1", [id])
            .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    /// A failed attempt: counted, retried at `next_try_ms`.
    pub fn retry_later(
        &self,
        id: i64,
        attempts: u32,
        next_try_ms: u64,
        error: &str,
    ) -> Result<(), UploadError> {
        self.conn
            .execute(
                "UPDATE queue SET attempts = ?2, next_try_ms = ?3, last_error = ?4 WHERE id = ?1",
                params![id, attempts, i(next_try_ms), error],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// S3 could not be reached: no attempt spent, tried again at `next_try_ms`.
    pub fn postpone(&self, id: i64, next_try_ms: u64, error: &str) -> Result<(), UploadError> {
        self.conn
            .execute(
                "UPDATE queue SET next_try_ms = ?2, last_error = ?3 WHERE id = ?1",
                params![id, i(next_try_ms), error],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Ends a row in `state` (`failed`, `lost`, `expired`) with a reason.
    pub fn finish(&self, id: i64, state: &str, error: &str) -> Result<(), UploadError> {
        self.conn
            .execute(
                "UPDATE queue SET state = ?2, last_error = ?3 WHERE id = ?1",
                params![id, state, error],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn mark_local_deleted(&self, id: i64) -> Result<(), UploadError> {
        self.conn
            .execute("UPDATE queue SET local_deleted = 1 WHERE id = ?1", [id])
            .map_err(self.err())?;
        Ok(())
    }

    /// The confirmed object holding rolling file `file_id`: (key, bytes).
    pub fn raw_object(&self, file_id: u32) -> Result<Option<(String, u64)>, UploadError> {
        self.conn
            .query_row(
                "SELECT key, bytes FROM queue WHERE kind = 'raw' AND file_id = ?1 AND state = 'uploaded'",
                [file_id],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()
            .map_err(self.err())
    }

    /// The SHA-256 (hex) of rolling file `file_id` as uploaded, to check
    /// a copy fetched back.
    pub fn raw_sha256(&self, file_id: u32) -> Result<Option<String>, UploadError> {
        self.conn
            .query_row(
                "SELECT sha256 FROM queue WHERE kind = 'raw' AND file_id = ?1 AND state = 'uploaded'",
                [file_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// Why rolling file `file_id` is not readable from S3, when the queue
    /// knows it (e.g. `expired`, `failed`, `queued`).
    pub fn raw_state(&self, file_id: u32) -> Result<Option<String>, UploadError> {
        self.conn
            .query_row(
                "SELECT state FROM queue WHERE kind = 'raw' AND file_id = ?1",
                [file_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Uploaded objects of `kind` whose data is older than `before_ns`.
    pub fn uploaded_before(&self, kind: Kind, before_ns: u64) -> Result<Vec<Row>, UploadError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLS} FROM queue WHERE state = 'uploaded' AND kind = ?1 AND data_ts < ?2 ORDER BY id"
            ))
            .map_err(self.err())?;
        let rows = st
            .query_map(params![kind.as_str(), i(before_ns)], row)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, bytes: u64) -> NewItem {
        NewItem {
            kind: Kind::Raw,
            file_id: Some(1),
            path: path.into(),
            key: format!("k/{path}"),
            bytes,
            data_ts: 5,
        }
    }

    #[test]
    fn enqueued_once_and_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut q = Queue::open(d.path()).unwrap();
            assert_eq!(q.enqueue(&[item("a", 10), item("b", 20)], 1).unwrap(), 2);
            assert_eq!(q.enqueue(&[item("a", 10)], 2).unwrap(), 0);
            let r = q.next_due(0).unwrap().unwrap();
            q.retry_later(r.id, 1, 100, "boom").unwrap();
            q.set_upload_id(r.id, Some("u1")).unwrap();
            q.add_part(r.id, 1, "e1", "s1").unwrap();
        }
        let q = Queue::open(d.path()).unwrap();
        assert_eq!(
            q.count("queued").unwrap(),
            Count {
                files: 2,
                bytes: 30
            }
        );
        // "a" waits until 100; "b" is due now.
        assert_eq!(q.next_due(50).unwrap().unwrap().path, "b");
        let a = q.next_due(100).unwrap().unwrap();
        assert_eq!((a.path.as_str(), a.attempts), ("a", 1));
        assert_eq!(a.upload_id.as_deref(), Some("u1"));
        assert_eq!(q.parts(a.id).unwrap(), vec![(1, "e1".into(), "s1".into())]);
        q.mark_uploaded(a.id, 7).unwrap();
        assert!(q.parts(a.id).unwrap().is_empty());
        assert_eq!(q.raw_object(1).unwrap(), Some(("k/a".into(), 10)));
        assert_eq!(q.count("uploaded").unwrap().files, 1);
    }
}
