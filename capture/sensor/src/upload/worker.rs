//! The uploader: one thread (inside `voxtap run`, or `voxtap upload` on its
//! own) that moves closed files to S3.
//!
//! Each round it
//! 1. **finds new files**: closed rolling files in `store.sqlite` (a file is
//!    closed once it has its packet count or a newer file exists) and the
//!    files of call folders recorded in the call index (`index.sqlite`, a
//!    call is recorded once its folder is written), past a high-water mark
//!    kept in the queue, so each file is enqueued once;
//! 2. **uploads due files** oldest first: PUT below the multipart threshold,
//!    multipart above it (confirmed parts are kept in the queue, so a
//!    restart or an outage resumes the upload without sending a confirmed
//!    part again), then HEAD to confirm size and SHA-256; only then is the
//!    row `uploaded` and, with `delete_after_upload`, the local copy removed;
//! 3. **expires** objects past their lifetime;
//! 4. writes `status/upload.json` (sensor page, `/metrics`).
//!
//! Failures: when S3 does not answer (refused, timeout) the file stays queued
//! and local, no attempt is spent, and the uploader waits with exponential
//! backoff before probing again (one warning per outage). When S3 answers
//! with an error, the file's attempt count grows and it is retried with
//! exponential backoff, until `max_attempts`, then it is `failed` (error log).
//!
//! Spool cap: the spool is the local files waiting in the queue. When adding
//! the next closed file would pass `spool_max_bytes`, new files are not
//! queued: they wait, in order, in the store (still subject to the store's
//! own retention), until uploads bring the spool under the cap. Nothing local
//! is deleted to make room; the episode is logged once when it starts and
//! once when it ends, and counted (`spool_full_episodes`, `deferred_files`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::queue::{Kind, NewItem, Queue, Row};
use super::s3::{S3, S3Error};
use super::{UploadConfig, UploadError, call_key, raw_key};

/// Figures published in `status/upload.json`. Flags are 0/1 numbers so
/// `/metrics` can export every field.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct UploadStatus {
    pub bucket: String,
    pub endpoint: String,
    /// 1 while the last request got an answer from S3.
    pub s3_reachable: u64,
    pub queued_files: u64,
    pub queued_bytes: u64,
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    pub failed_files: u64,
    /// Files that disappeared locally before their upload.
    pub lost_files: u64,
    pub expired_objects: u64,
    /// Confirmed payload bytes sent by this process (PUTs and parts).
    pub bytes_sent: u64,
    /// Files confirmed by this process.
    pub uploads: u64,
    /// Failed attempts S3 answered (this process).
    pub retries: u64,
    /// Requests S3 did not answer (this process).
    pub unreachable_errors: u64,
    /// Local files waiting for upload.
    pub spool_files: u64,
    pub spool_bytes: u64,
    pub spool_max_bytes: u64,
    pub spool_cap_reached: u64,
    pub spool_full_episodes: u64,
    /// Closed files waiting outside the queue because the spool is full.
    pub deferred_files: u64,
    pub local_deleted_files: u64,
    pub last_upload_unix: u64,
    pub last_error: String,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What one call of [`Uploader::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// One file confirmed.
    Uploaded,
    /// An attempt failed (or S3 was unreachable); the file stays queued.
    Failed,
    /// Nothing due now.
    Idle,
}

pub struct Uploader {
    cfg: UploadConfig,
    store: PathBuf,
    calls_dir: Option<PathBuf>,
    status_dir: Option<PathBuf>,
    queue: Queue,
    s3: S3,
    sensor: String,
    status: UploadStatus,
    /// No request before this (ms since the epoch) while S3 is unreachable.
    down_until_ms: u64,
    down_backoff_ms: u64,
    next_send: Instant,
    last_expire: Option<Instant>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UploadError + '_ {
    move |source| UploadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The SHA-256 of a file's bytes, lower-case hex (what the queue keeps).
pub fn sha256_file(path: &Path) -> Result<String, UploadError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn read_range(path: &Path, start: u64, len: u64) -> Result<Vec<u8>, UploadError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    f.seek(SeekFrom::Start(start)).map_err(io_err(path))?;
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut buf).map_err(io_err(path))?;
    if buf.len() as u64 != len {
        return Err(UploadError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "file shrank: wanted {len} bytes at {start}, got {}",
                buf.len()
            )),
        });
    }
    Ok(buf)
}

/// One upload attempt's failure.
enum Fail {
    S3(S3Error),
    Local(String),
    /// Stopping: leave the row as it is, to be resumed.
    Stopped,
    /// The local file is gone; the row is `lost`.
    Gone,
}

impl From<UploadError> for Fail {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::S3(e) => Fail::S3(e),
            other => Fail::Local(other.to_string()),
        }
    }
}

impl From<S3Error> for Fail {
    fn from(e: S3Error) -> Self {
        Fail::S3(e)
    }
}

impl Uploader {
    /// `store`: the rolling store (and the queue). `calls_dir`: the per-call
    /// output directory with `index.sqlite` (None: no call artifacts).
    /// `status_dir`: where `status/upload.json` goes (the web's data dir).
    pub fn new(
        cfg: &UploadConfig,
        store: &Path,
        calls_dir: Option<&Path>,
        status_dir: Option<&Path>,
    ) -> Result<Self, UploadError> {
        let mut cfg = cfg.clone();
        cfg.enabled = true;
        cfg.validate()?;
        std::fs::create_dir_all(store).map_err(io_err(store))?;
        let queue = Queue::open(store)?;
        let s3 = S3::new(&cfg)?;
        let status = UploadStatus {
            bucket: cfg.bucket.clone(),
            endpoint: cfg.endpoint.clone(),
            s3_reachable: 1,
            spool_max_bytes: cfg.spool_max_bytes,
            ..Default::default()
        };
        Ok(Uploader {
            sensor: cfg.sensor_name(),
            down_backoff_ms: cfg.backoff_initial_ms,
            cfg,
            store: store.to_path_buf(),
            calls_dir: calls_dir.map(Path::to_path_buf),
            status_dir: status_dir.map(Path::to_path_buf),
            queue,
            s3,
            status,
            down_until_ms: 0,
            next_send: Instant::now(),
            last_expire: None,
        })
    }

    pub fn s3(&self) -> &S3 {
        &self.s3
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub fn status(&self) -> &UploadStatus {
        &self.status
    }

    fn root(&self, kind: Kind) -> Option<&Path> {
        match kind {
            Kind::Raw => Some(&self.store),
            Kind::Call => self.calls_dir.as_deref(),
        }
    }

    fn spool(&self) -> Result<super::queue::Count, UploadError> {
        self.queue.count("queued")
    }

    fn spool_has_room(&mut self, spool: &mut u64, bytes: u64) -> bool {
        let cap = self.cfg.spool_max_bytes;
        if cap == 0 || *spool + bytes <= cap || *spool == 0 {
            // An empty spool always takes the next file, even one larger
            // than the cap, or it would wait forever.
            *spool += bytes;
            return true;
        }
        false
    }

    fn spool_full(&mut self, spool: u64, deferred: u64) {
        if self.status.spool_cap_reached == 0 {
            self.status.spool_cap_reached = 1;
            self.status.spool_full_episodes += 1;
            tracing::warn!(
                spool_bytes = spool,
                spool_max_bytes = self.cfg.spool_max_bytes,
                deferred_files = deferred,
                "upload spool full: {spool} bytes wait for S3 (cap {}); newer closed files are not queued and wait in the store until uploads make room (store retention still applies to them)",
                self.cfg.spool_max_bytes
            );
        }
    }

    /// Queues closed rolling files and call artifacts not seen before.
    pub fn scan(&mut self) -> Result<(), UploadError> {
        let mut spool = self.spool()?.bytes;
        let mut deferred = 0u64;
        let mut full = false;
        if self.cfg.raw {
            let (d, f) = self.scan_raw(&mut spool)?;
            deferred += d;
            full |= f;
        }
        if self.cfg.calls && !full {
            let (d, f) = self.scan_calls(&mut spool)?;
            deferred += d;
            full |= f;
        }
        self.status.deferred_files = deferred;
        if full {
            self.spool_full(spool, deferred);
        } else if self.status.spool_cap_reached == 1 {
            self.status.spool_cap_reached = 0;
            tracing::info!(
                spool_bytes = spool,
                "upload spool below its cap again: queueing new files"
            );
        }
        Ok(())
    }

    fn scan_raw(&mut self, spool: &mut u64) -> Result<(u64, bool), UploadError> {
        let db = self.store.join(crate::store::INDEX_FILE);
        if !db.exists() {
            return Ok((0, false));
        }
        let mark = self.queue.meta("raw_scanned_id")?;
        let (max_id, rows) = store_files_after(&db, mark)?;
        let mut new = Vec::new();
        let mut advanced = mark;
        let mut deferred = 0;
        let mut full = false;
        for (id, rel, first_ts, packets, deleted) in rows {
            // The writer has one file open at a time: any newer file closes
            // this one (also after a crash, which leaves its count at 0).
            let closed = packets > 0 || id < max_id;
            if !closed {
                break;
            }
            if full {
                deferred += 1;
                continue;
            }
            let path = self.store.join(&rel);
            let bytes = match std::fs::metadata(&path) {
                Ok(m) if deleted == 0 => m.len(),
                _ => {
                    self.status.lost_files += 1;
                    tracing::warn!(file = %path.display(), "rolling file gone before it was queued for upload (store retention?)");
                    advanced = id as u64;
                    continue;
                }
            };
            if !self.spool_has_room(spool, bytes) {
                full = true;
                deferred += 1;
                continue;
            }
            new.push(self.raw_item(id, rel, first_ts, bytes));
            advanced = id as u64;
        }
        if !new.is_empty() {
            let n = self.queue.enqueue(&new, now_ms())?;
            tracing::debug!(files = n, "rolling files queued for upload");
        }
        if advanced != mark {
            self.queue.set_meta("raw_scanned_id", advanced)?;
        }
        Ok((deferred, full))
    }

    /// The queue item of rolling file `id` at `rel` in the store.
    fn raw_item(&self, id: i64, rel: String, first_ts: i64, bytes: u64) -> NewItem {
        let name = Path::new(&rel)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| rel.clone());
        NewItem {
            kind: Kind::Raw,
            file_id: Some(id as u32),
            key: raw_key(
                &self.cfg.prefix,
                &self.sensor,
                first_ts.max(0) as u64,
                &name,
            ),
            path: rel,
            bytes,
            data_ts: first_ts.max(0) as u64,
        }
    }

    fn scan_calls(&mut self, spool: &mut u64) -> Result<(u64, bool), UploadError> {
        let Some(dir) = self.calls_dir.clone() else {
            return Ok((0, false));
        };
        let db = dir.join(voxtap_engine::index::INDEX_FILE);
        if !db.exists() {
            return Ok((0, false));
        }
        let e = |source| UploadError::Queue {
            path: db.clone(),
            source,
        };
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(e)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(e)?;
        let mark = self.queue.meta("calls_scanned_id")?;
        let mut st = conn
            .prepare("SELECT id, folder, start_ns FROM calls WHERE id > ?1 ORDER BY id LIMIT 1000")
            .map_err(e)?;
        let rows: Vec<(i64, Option<String>, i64)> = st
            .query_map([mark as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(e)?
            .collect::<Result<_, _>>()
            .map_err(e)?;
        let mut advanced = mark;
        let mut new = Vec::new();
        let mut deferred = 0;
        let mut full = false;
        for (id, folder, start_ns) in rows {
            if full {
                deferred += 1;
                continue;
            }
            let Some(folder) = folder.filter(|f| safe_rel(f)) else {
                advanced = id as u64;
                continue;
            };
            let mut items = Vec::new();
            let mut bytes = 0;
            if let Ok(rd) = std::fs::read_dir(dir.join(&folder)) {
                for ent in rd.flatten() {
                    // Regular files only: no symlinks out of the folder.
                    let Ok(ft) = ent.file_type() else { continue };
                    let name = ent.file_name().to_string_lossy().into_owned();
                    if !ft.is_file() || name.starts_with('.') {
                        continue;
                    }
                    let len = ent.metadata().map(|m| m.len()).unwrap_or(0);
                    let rel = format!("{folder}/{name}");
                    bytes += len;
                    items.push(NewItem {
                        kind: Kind::Call,
                        file_id: None,
                        key: call_key(&self.cfg.prefix, &self.sensor, start_ns.max(0) as u64, &rel),
                        path: rel,
                        bytes: len,
                        data_ts: start_ns.max(0) as u64,
                    });
                }
            }
            if !self.spool_has_room(spool, bytes) {
                full = true;
                deferred += 1;
                continue;
            }
            items.sort_by(|a, b| a.path.cmp(&b.path));
            new.extend(items);
            advanced = id as u64;
        }
        if !new.is_empty() {
            self.queue.enqueue(&new, now_ms())?;
        }
        if advanced != mark {
            self.queue.set_meta("calls_scanned_id", advanced)?;
        }
        Ok((deferred, full))
    }

    fn throttle(&mut self, bytes: u64, stop: &AtomicBool) {
        let rate = self.cfg.max_bytes_per_second;
        if rate == 0 {
            return;
        }
        while Instant::now() < self.next_send && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((self.next_send - Instant::now()).min(Duration::from_millis(50)));
        }
        let start = self.next_send.max(Instant::now());
        self.next_send = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
    }

    fn backoff(&self, attempts: u32) -> u64 {
        let exp = attempts.saturating_sub(1).min(30);
        self.cfg
            .backoff_initial_ms
            .saturating_mul(1u64 << exp)
            .min(self.cfg.backoff_max_ms)
    }

    /// Uploads the queued file due first, if any; `stop` is checked between
    /// requests.
    pub fn step(&mut self, stop: &AtomicBool) -> Result<Step, UploadError> {
        let now = now_ms();
        if now < self.down_until_ms {
            return Ok(Step::Idle);
        }
        let Some(row) = self.queue.next_due(now)? else {
            return Ok(Step::Idle);
        };
        match self.upload(&row, stop) {
            Ok(()) => {
                self.queue.mark_uploaded(row.id, now_ms())?;
                self.status.uploads += 1;
                self.status.last_upload_unix = now_ms() / 1000;
                self.reachable();
                tracing::info!(key = %row.key, bytes = row.bytes, "uploaded");
                if self.cfg.delete_after_upload {
                    self.delete_local(&row)?;
                }
                Ok(Step::Uploaded)
            }
            Err(Fail::Stopped) => Ok(Step::Idle),
            Err(Fail::Gone) => Ok(Step::Failed),
            Err(Fail::S3(e)) if e.unreachable => {
                self.status.unreachable_errors += 1;
                self.status.last_error = e.message.clone();
                let until = now_ms() + self.down_backoff_ms;
                if self.status.s3_reachable == 1 {
                    tracing::warn!(error = %e.message, "S3 unreachable: files stay local and queued; retrying with backoff");
                }
                self.status.s3_reachable = 0;
                self.down_until_ms = until;
                self.down_backoff_ms = (self.down_backoff_ms * 2).min(self.cfg.backoff_max_ms);
                self.queue.postpone(row.id, until, &e.message)?;
                Ok(Step::Failed)
            }
            Err(f) => {
                let msg = match f {
                    Fail::S3(e) => {
                        self.reachable();
                        if e.code.as_deref() == Some("NoSuchUpload") {
                            // The server forgot the upload: start it again.
                            self.queue.set_upload_id(row.id, None)?;
                        }
                        e.message
                    }
                    Fail::Local(m) => m,
                    Fail::Stopped | Fail::Gone => return Ok(Step::Failed),
                };
                self.status.retries += 1;
                self.status.last_error = format!("{}: {msg}", row.key);
                let attempts = row.attempts + 1;
                if attempts >= self.cfg.max_attempts {
                    tracing::error!(key = %row.key, attempts, error = %msg, "upload failed for good; the local file is kept");
                    self.queue.retry_later(row.id, attempts, 0, &msg)?;
                    self.queue.finish(row.id, "failed", &msg)?;
                } else {
                    let next = now_ms() + self.backoff(attempts);
                    tracing::warn!(key = %row.key, attempts, error = %msg, "upload attempt failed; retrying later");
                    self.queue.retry_later(row.id, attempts, next, &msg)?;
                }
                Ok(Step::Failed)
            }
        }
    }

    fn reachable(&mut self) {
        if self.status.s3_reachable == 0 {
            tracing::info!("S3 reachable again");
        }
        self.status.s3_reachable = 1;
        self.down_backoff_ms = self.cfg.backoff_initial_ms;
        self.down_until_ms = 0;
    }

    fn upload(&mut self, row: &Row, stop: &AtomicBool) -> Result<(), Fail> {
        let Some(root) = self.root(row.kind) else {
            return Err(Fail::Local("no directory for call artifacts".into()));
        };
        let path = root.join(&row.path);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => {
                self.status.lost_files += 1;
                tracing::warn!(file = %path.display(), "file gone before its upload (store retention?)");
                self.queue
                    .finish(row.id, "lost", "local file gone before upload")?;
                return Err(Fail::Gone);
            }
        };
        let sha = match &row.sha256 {
            Some(s) if size == row.bytes => s.clone(),
            _ => {
                let s = sha256_file(&path)?;
                self.queue.set_sha256(row.id, &s)?;
                s
            }
        };
        if self.already_there(row, size, &sha) {
            return Ok(());
        }
        if size < self.cfg.multipart_threshold_bytes {
            let data = read_range(&path, 0, size)?;
            self.throttle(size, stop);
            if stop.load(Ordering::Relaxed) {
                return Err(Fail::Stopped);
            }
            self.s3.put(&row.key, data, &sha)?;
            self.status.bytes_sent += size;
        } else {
            self.multipart(row, &path, size, &sha, stop)?;
        }
        // Confirmation: the object S3 now holds has our size and hash.
        match self.s3.head(&row.key)? {
            Some(o) if o.size == size && o.sha256.as_deref() == Some(sha.as_str()) => Ok(()),
            other => {
                // Start the next attempt from scratch (e.g. parts of a
                // different size from before a configuration change).
                self.queue.set_upload_id(row.id, None)?;
                Err(Fail::Local(format!(
                    "s3://{}/{}: not confirmed after upload (HEAD says {other:?}, expected {size} bytes, sha256 {sha})",
                    self.s3.bucket(),
                    row.key
                )))
            }
        }
    }

    /// Whether an earlier attempt already put this very file in S3: a run
    /// stopped (killed) between completing a multipart upload and recording
    /// it would otherwise start the file again, as S3 no longer knows the
    /// finished upload's id. Asked only of files an attempt has touched; a
    /// HEAD that fails says nothing (a HEAD error has no body to explain
    /// it): the upload then runs and reports its own error.
    fn already_there(&mut self, row: &Row, size: u64, sha: &str) -> bool {
        if row.upload_id.is_none() && row.attempts == 0 {
            return false;
        }
        let there = self.s3.head(&row.key).ok().flatten();
        there.is_some_and(|o| o.size == size && o.sha256.as_deref() == Some(sha))
    }

    fn multipart(
        &mut self,
        row: &Row,
        path: &Path,
        size: u64,
        sha: &str,
        stop: &AtomicBool,
    ) -> Result<(), Fail> {
        let part = self.cfg.part_bytes;
        let upload_id = match &row.upload_id {
            Some(u) => u.clone(),
            None => {
                let u = self.s3.create_multipart(&row.key, sha)?;
                self.queue.set_upload_id(row.id, Some(&u))?;
                u
            }
        };
        let mut done = self.queue.parts(row.id)?;
        let n = size.div_ceil(part) as i32;
        for p in 1..=n {
            if done.iter().any(|d| d.0 == p) {
                continue;
            }
            if stop.load(Ordering::Relaxed) {
                return Err(Fail::Stopped);
            }
            let start = (p as u64 - 1) * part;
            let len = part.min(size - start);
            let data = read_range(path, start, len)?;
            self.throttle(len, stop);
            if stop.load(Ordering::Relaxed) {
                return Err(Fail::Stopped);
            }
            let (etag, sum) = self.s3.upload_part(&row.key, &upload_id, p, data)?;
            self.queue.add_part(row.id, p, &etag, &sum)?;
            self.status.bytes_sent += len;
            self.reachable();
            done.push((p, etag, sum));
        }
        done.sort_by_key(|d| d.0);
        self.s3.complete_multipart(&row.key, &upload_id, &done)?;
        Ok(())
    }

    fn delete_local(&mut self, row: &Row) -> Result<(), UploadError> {
        let Some(root) = self.root(row.kind) else {
            return Ok(());
        };
        let path = root.join(&row.path);
        if row.kind == Kind::Call
            && let (Some(dir), Some(name)) = (path.parent(), path.file_name())
        {
            // The web UI finds the file through the folder's manifest.
            let sha256 = self
                .queue
                .get(row.id)?
                .and_then(|r| r.sha256)
                .unwrap_or_default();
            super::manifest::Manifest::record(
                dir,
                &self.cfg,
                &name.to_string_lossy(),
                super::manifest::RemoteEntry {
                    key: row.key.clone(),
                    bytes: row.bytes,
                    sha256,
                },
            )?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(UploadError::Io { path, source }),
        }
        self.queue.mark_local_deleted(row.id)?;
        self.status.local_deleted_files += 1;
        tracing::debug!(file = %path.display(), "local copy deleted after a confirmed upload");
        Ok(())
    }

    /// Deletes objects past their lifetime (S3 retention); for rolling files
    /// whose local copy is gone too, the store index marks them deleted.
    pub fn expire(&mut self) -> Result<usize, UploadError> {
        let now_ns = now_ms().saturating_mul(1_000_000);
        let mut n = 0;
        for (kind, life) in [
            (Kind::Raw, self.cfg.raw_lifetime_seconds),
            (Kind::Call, self.cfg.calls_lifetime_seconds),
        ] {
            if life == 0 {
                continue;
            }
            let before = now_ns.saturating_sub(life.saturating_mul(1_000_000_000));
            for row in self.queue.uploaded_before(kind, before)? {
                if let Err(e) = self.s3.delete(&row.key) {
                    self.status.last_error = e.message.clone();
                    if e.unreachable {
                        self.status.s3_reachable = 0;
                        return Ok(n);
                    }
                    tracing::warn!(key = %row.key, error = %e.message, "deleting an expired object");
                    continue;
                }
                self.queue.finish(row.id, "expired", "lifetime")?;
                let local_gone = self.root(kind).is_none_or(|r| !r.join(&row.path).exists());
                if let (Kind::Raw, Some(id), true) = (kind, row.file_id, local_gone) {
                    mark_store_deleted(&self.store, id, "s3_lifetime")?;
                }
                self.status.expired_objects += 1;
                n += 1;
                tracing::info!(key = %row.key, "expired from S3 (lifetime)");
            }
        }
        Ok(n)
    }

    /// Refreshes the queue figures and writes `status/upload.json`.
    pub fn publish(&mut self) -> Result<(), UploadError> {
        let q = self.queue.count("queued")?;
        let u = self.queue.count("uploaded")?;
        self.status.queued_files = q.files;
        self.status.queued_bytes = q.bytes;
        self.status.spool_files = q.files;
        self.status.spool_bytes = q.bytes;
        self.status.uploaded_files = u.files;
        self.status.uploaded_bytes = u.bytes;
        self.status.failed_files = self.queue.count("failed")?.files;
        if let Some(dir) = &self.status_dir
            && let Err(e) = crate::status::write(dir, "upload", &self.status)
        {
            tracing::warn!(error = %e, "writing the upload status");
        }
        Ok(())
    }

    /// Runs until `stop`: scan, upload what is due, expire, publish.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), UploadError> {
        let mut last_scan: Option<Instant> = None;
        let mut last_publish: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if last_scan.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
                self.scan()?;
                last_scan = Some(Instant::now());
            }
            let step = self.step(stop)?;
            if self
                .last_expire
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
            {
                self.expire()?;
                self.last_expire = Some(Instant::now());
            }
            if step == Step::Uploaded
                || last_publish.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                self.publish()?;
                last_publish = Some(Instant::now());
            }
            if step != Step::Uploaded {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.publish()
    }

    /// Scans once and uploads until nothing is queued (or only files that
    /// failed for good), waiting out backoffs, up to `max_wait`. Returns
    /// whether the queue is empty.
    pub fn drain(&mut self, stop: &AtomicBool, max_wait: Duration) -> Result<bool, UploadError> {
        let deadline = Instant::now() + max_wait;
        self.scan()?;
        self.expire()?;
        loop {
            match self.step(stop)? {
                Step::Uploaded => {
                    // The spool may have room again.
                    if self.status.spool_cap_reached == 1 {
                        self.scan()?;
                    }
                    continue;
                }
                Step::Failed | Step::Idle => {}
            }
            self.publish()?;
            let empty = self.queue.count("queued")?.files == 0;
            if empty && self.status.deferred_files > 0 {
                self.scan()?;
                continue;
            }
            if empty || stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                return Ok(empty);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn safe_rel(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && !path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

fn mark_store_deleted(store: &Path, id: u32, reason: &str) -> Result<(), UploadError> {
    let db = store.join(crate::store::INDEX_FILE);
    let e = |source| UploadError::Queue {
        path: db.clone(),
        source,
    };
    let conn = Connection::open(&db).map_err(e)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(e)?;
    let deleted: Option<i64> = conn
        .query_row("SELECT deleted FROM files WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(e)?;
    if deleted == Some(0) {
        conn.execute(
            "UPDATE files SET deleted = 1, deleted_reason = ?2 WHERE id = ?1",
            params![id, reason],
        )
        .map_err(e)?;
    }
    Ok(())
}

/// A row of the store's `files` table: id, path, first_ts, packets, deleted.
type StoreFileRow = (i64, String, i64, i64, i64);

/// The highest file id in the store's index `db`, and its files after
/// `mark` in id order (read-only: the sensor writes it).
fn store_files_after(db: &Path, mark: u64) -> Result<(i64, Vec<StoreFileRow>), UploadError> {
    let e = |source| UploadError::Queue {
        path: db.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(e)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(e)?;
    let max_id: i64 = conn
        .query_row("SELECT COALESCE(MAX(id), 0) FROM files", [], |r| r.get(0))
        .map_err(e)?;
    let mut st = conn
        .prepare("SELECT id, path, first_ts, packets, deleted FROM files WHERE id > ?1 ORDER BY id")
        .map_err(e)?;
    let rows: Vec<StoreFileRow> = st
        .query_map([mark as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(e)?;
    Ok((max_id, rows))
}
