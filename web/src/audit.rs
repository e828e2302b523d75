//! The audit log: who did what to which call, when and from where: every
//! call page viewed, file downloaded, WAV sent to a player, decrypted PCAP
//! fetched, import, remote capture started or stopped, login and admin
//! action. It lives in `DATA/audit.sqlite` (mode 0600), apart from the call
//! index so rebuilding or replacing the index keeps it, and answers "who
//! listened to this call" by call id.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const AUDIT_FILE: &str = "audit.sqlite";

/// What is recorded, as the `action` column holds it.
pub mod action {
    pub const VIEW: &str = "view";
    pub const DOWNLOAD: &str = "download";
    /// A WAV sent for the page's player (played, or preloaded by it).
    pub const AUDIO: &str = "audio";
    pub const DECRYPTED: &str = "decrypted";
    pub const IMPORT: &str = "import";
    /// A CDR export (CSV or JSON) of a search; the detail names the file
    /// and the search.
    pub const EXPORT: &str = "export";
    /// A SIP pcap added to a remote capture (post-capture correlation).
    pub const CORRELATE: &str = "correlate";
    pub const CAPTURE_START: &str = "capture start";
    pub const CAPTURE_STOP: &str = "capture stop";
    pub const LOGIN: &str = "login";
    pub const LOGIN_FAILED: &str = "login failed";
    pub const LOGOUT_EVERYWHERE: &str = "logout everywhere";
    pub const UNLOCK: &str = "unlock";
    /// An alert rule added, changed or removed.
    pub const ALERT_RULE: &str = "alert rule";
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub id: i64,
    pub ts_ns: u64,
    pub user: String,
    pub remote: String,
    pub action: String,
    pub call: Option<i64>,
    pub detail: String,
}

/// The audit page's filters; empty = any.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filter {
    pub call: Option<String>,
    pub user: Option<String>,
    pub action: Option<String>,
    /// Entries older than this id (the next page).
    pub before: Option<String>,
}

impl Filter {
    fn text(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    pub fn call_id(&self) -> Result<Option<i64>, String> {
        Self::text(&self.call)
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("call '{s}' is not a call id"))
            })
            .transpose()
    }

    fn before_id(&self) -> Result<Option<i64>, String> {
        Self::text(&self.before)
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("before '{s}' is not an entry id"))
            })
            .transpose()
    }
}

pub struct AuditLog {
    db: Mutex<rusqlite::Connection>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl AuditLog {
    /// Opens (creating) `DATA/audit.sqlite`.
    pub fn open(data: &Path) -> rusqlite::Result<AuditLog> {
        let path = data.join(AUDIT_FILE);
        let db = rusqlite::Connection::open(&path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL with full sync: an entry acknowledged is on the disk.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS audit (
                id     INTEGER PRIMARY KEY AUTOINCREMENT,
                ts_ns  INTEGER NOT NULL,
                user   TEXT NOT NULL,
                remote TEXT NOT NULL,
                action TEXT NOT NULL,
                call   INTEGER,
                detail TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS audit_call ON audit(call, id);
            CREATE INDEX IF NOT EXISTS audit_user ON audit(user, id);",
        )?;
        Ok(AuditLog { db: Mutex::new(db) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one entry, stamped now.
    pub fn record(
        &self,
        user: &str,
        remote: &str,
        action: &str,
        call: Option<i64>,
        detail: &str,
    ) -> rusqlite::Result<()> {
        let ts = i64::try_from(now_ns()).unwrap_or(i64::MAX);
        self.conn().execute(
            "INSERT INTO audit (ts_ns, user, remote, action, call, detail) VALUES (?1,?2,?3,?4,?5,?6)",
            rusqlite::params![ts, user, remote, action, call, detail],
        )?;
        Ok(())
    }

    /// The newest `limit` entries matching `f`, newest first. A filter
    /// that does not parse is an `Err(message)` for the user.
    pub fn query(&self, f: &Filter, limit: u32) -> Result<Vec<Entry>, QueryError> {
        let call = f.call_id().map_err(QueryError::Bad)?;
        let before = f.before_id().map_err(QueryError::Bad)?;
        let user = Filter::text(&f.user);
        let action = Filter::text(&f.action);
        let db = self.conn();
        let mut s = db.prepare_cached(
            "SELECT id, ts_ns, user, remote, action, call, detail FROM audit
             WHERE (?1 IS NULL OR call = ?1) AND (?2 IS NULL OR user = ?2)
               AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR id < ?4)
             ORDER BY id DESC LIMIT ?5",
        )?;
        let rows = s.query_map(rusqlite::params![call, user, action, before, limit], |r| {
            Ok(Entry {
                id: r.get(0)?,
                ts_ns: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                user: r.get(2)?,
                remote: r.get(3)?,
                action: r.get(4)?,
                call: r.get(5)?,
                detail: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Bad(String),
    #[error("reading the audit log: {0}")]
    Db(#[from] rusqlite::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_call_user_and_action_and_survives_reopening() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::open(d.path()).unwrap();
        log.record("alice", "10.0.0.1", action::AUDIO, Some(7), "a.wav")
            .unwrap();
        log.record("bob", "10.0.0.2", action::DOWNLOAD, Some(7), "pcap")
            .unwrap();
        log.record("bob", "10.0.0.2", action::VIEW, Some(8), "")
            .unwrap();
        drop(log);
        let log = AuditLog::open(d.path()).unwrap();
        let q = |call: Option<&str>, user: Option<&str>, action: Option<&str>| {
            let f = Filter {
                call: call.map(String::from),
                user: user.map(String::from),
                action: action.map(String::from),
                before: None,
            };
            log.query(&f, 100)
                .unwrap()
                .into_iter()
                .map(|e| format!("{} {}", e.user, e.action))
                .collect::<Vec<_>>()
        };
        assert_eq!(q(Some("7"), None, None), ["bob download", "alice audio"]);
        assert_eq!(q(None, Some("bob"), None), ["bob view", "bob download"]);
        assert_eq!(q(Some("7"), None, Some("audio")), ["alice audio"]);
        assert_eq!(q(Some(" "), None, None).len(), 3, "blank = any");
        let bad = Filter {
            call: Some("x".into()),
            ..Default::default()
        };
        assert!(matches!(log.query(&bad, 10), Err(QueryError::Bad(_))));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join(AUDIT_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
