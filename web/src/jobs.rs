//! Import jobs: uploaded captures run through `run_import` on a blocking
//! thread, into `DATA/imports/<job>/`, then merged into the data
//! directory's index. At most `[import] concurrent` jobs run at once, the
//! others wait in a queue; merges into the index run one at a time and are
//! retried while SQLite reports the index busy, so parallel uploads are
//! never lost to "database is locked".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use voxtap_engine::import::{ImportOptions, run_import_with_progress};
use voxtap_engine::index::{INDEX_FILE, Index, IndexError};
use voxtap_engine::pipeline::PipelineConfig;

use crate::Shared;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub user: String,
    pub files: Vec<String>,
    pub total_bytes: u64,
    pub read_bytes: Arc<AtomicU64>,
    /// Waiting for a free slot (its state is still `running`: under way).
    pub queued: Arc<AtomicBool>,
    pub inner: Arc<Mutex<JobResult>>,
}

#[derive(Clone, Debug)]
pub struct JobResult {
    pub state: JobState,
    pub calls: u64,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobSnapshot {
    pub id: String,
    pub user: String,
    pub files: Vec<String>,
    pub state: JobState,
    pub total_bytes: u64,
    pub read_bytes: u64,
    pub percent: f64,
    /// Waiting for another import to finish before it starts.
    pub queued: bool,
    pub calls: u64,
    pub message: String,
}

impl Job {
    pub fn new(id: String, user: String, files: Vec<String>, total_bytes: u64) -> Self {
        Job {
            id,
            user,
            files,
            total_bytes,
            read_bytes: Arc::new(AtomicU64::new(0)),
            queued: Arc::new(AtomicBool::new(true)),
            inner: Arc::new(Mutex::new(JobResult {
                state: JobState::Running,
                calls: 0,
                message: String::new(),
            })),
        }
    }

    pub fn snapshot(&self) -> JobSnapshot {
        let r = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let queued = r.state == JobState::Running && self.queued.load(Ordering::Relaxed);
        let read = if r.state == JobState::Running {
            self.read_bytes.load(Ordering::Relaxed)
        } else {
            self.total_bytes
        };
        JobSnapshot {
            id: self.id.clone(),
            user: self.user.clone(),
            files: self.files.clone(),
            state: r.state,
            total_bytes: self.total_bytes,
            read_bytes: read,
            percent: if self.total_bytes > 0 {
                (read as f64 * 100.0 / self.total_bytes as f64).min(100.0)
            } else {
                100.0
            },
            queued,
            calls: r.calls,
            message: r.message,
        }
    }

    pub(crate) fn finish(&self, state: JobState, calls: u64, message: String) {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *r = JobResult {
            state,
            calls,
            message,
        };
    }
}

pub struct Jobs {
    map: Mutex<BTreeMap<String, Job>>,
    counter: AtomicU64,
    /// Jobs allowed to run at once.
    slots: Arc<tokio::sync::Semaphore>,
    /// Held while a job merges into the index: one writer at a time.
    merging: Mutex<()>,
}

impl Jobs {
    pub fn new(concurrent: u32) -> Jobs {
        Jobs {
            map: Mutex::default(),
            counter: AtomicU64::new(0),
            slots: Arc::new(tokio::sync::Semaphore::new(concurrent.max(1) as usize)),
            merging: Mutex::new(()),
        }
    }

    /// Unique per server run and sortable: start time, then a counter.
    pub fn next_id(&self) -> String {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!(
            "{secs}-{}",
            self.counter.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    pub fn insert(&self, j: Job) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(j.id.clone(), j);
    }

    pub fn get(&self, id: &str) -> Option<JobSnapshot> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(Job::snapshot)
    }

    /// Newest first.
    pub fn list(&self) -> Vec<JobSnapshot> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().rev().map(Job::snapshot).collect()
    }

    pub fn counts(&self) -> (u64, u64, u64) {
        let mut c = (0, 0, 0);
        for j in self.list() {
            match j.state {
                JobState::Running => c.0 += 1,
                JobState::Done => c.1 += 1,
                JobState::Failed => c.2 += 1,
            }
        }
        c
    }
}

/// Queue the import to run in the background once a slot is free. The
/// uploads (`upload_dir`, when given) are deleted once it is indexed (the
/// calls' own PCAPs are cut from them; keeping the whole captures would
/// keep more recorded traffic than the calls need), and kept when it
/// failed, so nothing is lost. A correlation passes none: its files are
/// the remote capture's own.
pub fn spawn(st: Shared, job: Job, files: Vec<PathBuf>, upload_dir: Option<PathBuf>) {
    tokio::spawn(async move {
        let Ok(permit) = st.jobs.slots.clone().acquire_owned().await else {
            return; // the semaphore is never closed
        };
        job.queued.store(false, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            run(&st, &job, files, upload_dir.as_deref());
        })
        .await;
    });
}

fn run(st: &Shared, job: &Job, files: Vec<PathBuf>, upload_dir: Option<&Path>) {
    let rel = format!("imports/{}", job.id);
    let out = st.data.join(&rel);
    let progress = job.read_bytes.clone();
    let opts = ImportOptions {
        files,
        out: out.clone(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(voxtap_engine::media::MediaOptions::default()),
    };
    tracing::info!(job = %job.id, user = %job.user, files = ?job.files, "import started");
    let result = run_import_with_progress(&opts, &|p| {
        progress.store(p.read_bytes, Ordering::Relaxed);
    })
    .map_err(|e| e.to_string())
    .and_then(|report| {
        let n = merge(st, &out.join(INDEX_FILE), &rel).map_err(|e| e.to_string())?;
        Ok((report, n))
    });
    match result {
        Ok((report, n)) => {
            if let Some(d) = upload_dir {
                let _ = std::fs::remove_dir_all(d);
            }
            let line = report.summary_line();
            tracing::info!(job = %job.id, "{line}");
            job.finish(JobState::Done, n, line);
        }
        Err(e) => {
            let kept = upload_dir
                .map(|d| d.strip_prefix(&st.data).unwrap_or(d).display().to_string())
                .map_or(String::new(), |k| {
                    format!(" (the uploaded files are kept in {k})")
                });
            tracing::error!(job = %job.id, "import failed: {e}{kept}");
            job.finish(JobState::Failed, 0, format!("import failed: {e}{kept}"));
        }
    }
}

/// Attempts at merging a job's index while SQLite says the main one is
/// busy (the live sensor writing, a long read), waiting longer each time.
const MERGE_ATTEMPTS: u32 = 6;

/// Merges a finished job's index into the main one: one job at a time,
/// retried while the index is busy.
fn merge(st: &Shared, sub: &Path, rel: &str) -> Result<u64, IndexError> {
    let _one_at_a_time = st.jobs.merging.lock().unwrap_or_else(|p| p.into_inner());
    let mut wait = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match Index::open(&st.db.path).and_then(|mut main| main.absorb(sub, rel)) {
            Err(e) if is_busy(&e) && attempt < MERGE_ATTEMPTS => {
                tracing::warn!("merging {rel} into the index (attempt {attempt}): {e}; retrying");
                std::thread::sleep(wait);
                wait *= 2;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED ("database is locked").
fn is_busy(e: &IndexError) -> bool {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    matches!(
        e,
        IndexError::Sqlite {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } if matches!(f.code, DatabaseBusy | DatabaseLocked)
    )
}
