//! Import jobs: uploaded captures run through `run_import` on a blocking
//! thread, into `DATA/imports/<job>/`, then merged into the data
//! directory's index.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use voxtap_engine::import::{ImportOptions, run_import_with_progress};
use voxtap_engine::index::INDEX_FILE;
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
            inner: Arc::new(Mutex::new(JobResult {
                state: JobState::Running,
                calls: 0,
                message: String::new(),
            })),
        }
    }

    pub fn snapshot(&self) -> JobSnapshot {
        let r = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
            calls: r.calls,
            message: r.message,
        }
    }

    fn finish(&self, state: JobState, calls: u64, message: String) {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *r = JobResult {
            state,
            calls,
            message,
        };
    }
}

#[derive(Default)]
pub struct Jobs {
    map: Mutex<BTreeMap<String, Job>>,
    counter: AtomicU64,
}

impl Jobs {
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

/// Run the import in the background; the uploads are deleted afterwards
/// (the calls' own PCAPs are cut from them; keeping the whole captures
/// would keep more recorded traffic than the calls need).
pub fn spawn(st: Shared, job: Job, files: Vec<PathBuf>, upload_dir: PathBuf) {
    tokio::task::spawn_blocking(move || {
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
            let sub = out.join(INDEX_FILE);
            let n = voxtap_engine::index::Index::open(&st.db.path)
                .and_then(|mut main| main.absorb(&sub, &rel))
                .map_err(|e| e.to_string())?;
            Ok((report, n))
        });
        let _ = std::fs::remove_dir_all(&upload_dir);
        match result {
            Ok((report, n)) => {
                let line = report.summary_line();
                tracing::info!(job = %job.id, "{line}");
                job.finish(JobState::Done, n, line);
            }
            Err(e) => {
                tracing::error!(job = %job.id, "import failed: {e}");
                job.finish(JobState::Failed, 0, format!("import failed: {e}"));
            }
        }
    });
}
