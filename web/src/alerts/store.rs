//! `DATA/alerts.sqlite`: the rules admins added, changed or removed in the
//! UI (over those of the config), and the history of firing and resolved
//! alerts. Apart from the call index, like the audit log, so rebuilding the
//! index keeps both and the index's migrations stay the index's.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::rules::Rule;

pub const ALERTS_FILE: &str = "alerts.sqlite";

/// One transition of one rule.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub ts_ns: u64,
    pub rule: String,
    pub state: String,
    pub value: Option<f64>,
    pub summary: String,
}

/// An admin's change to a rule: the new rule, or None for removed.
pub type Override = (String, Option<Rule>);

pub struct Store {
    db: Mutex<Connection>,
}

impl Store {
    pub fn open(data: &Path) -> rusqlite::Result<Store> {
        let path = data.join(ALERTS_FILE);
        let db = Connection::open(&path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS rules (
                name       TEXT PRIMARY KEY,
                rule       TEXT,
                updated_ns INTEGER NOT NULL,
                user       TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS history (
                id      INTEGER PRIMARY KEY AUTOINCREMENT,
                ts_ns   INTEGER NOT NULL,
                rule    TEXT NOT NULL,
                state   TEXT NOT NULL,
                value   REAL,
                summary TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS history_rule ON history(rule, id);",
        )?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every override, by name. A row whose JSON no longer parses (a field
    /// renamed by an upgrade) is skipped with a warning.
    pub fn overrides(&self) -> rusqlite::Result<Vec<Override>> {
        let c = self.conn();
        let mut st = c.prepare("SELECT name, rule FROM rules ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, json) = row?;
            match json.map(|j| serde_json::from_str::<Rule>(&j)).transpose() {
                Ok(rule) => out.push((name, rule)),
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "alerts.sqlite: unreadable rule skipped")
                }
            }
        }
        Ok(out)
    }

    /// Sets (Some) or removes (None) the rule `name`.
    pub fn put(
        &self,
        name: &str,
        rule: Option<&Rule>,
        user: &str,
        now_ns: u64,
    ) -> rusqlite::Result<()> {
        let json = rule.map(|r| serde_json::to_string(r).unwrap_or_default());
        self.conn().execute(
            "INSERT INTO rules (name, rule, updated_ns, user) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET rule = ?2, updated_ns = ?3, user = ?4",
            params![name, json, now_ns as i64, user],
        )?;
        Ok(())
    }

    pub fn record(
        &self,
        ts_ns: u64,
        rule: &str,
        state: &str,
        value: Option<f64>,
        summary: &str,
    ) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO history (ts_ns, rule, state, value, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ts_ns as i64, rule, state, value, summary],
        )?;
        Ok(())
    }

    /// The newest `limit` transitions, of one rule or of all.
    pub fn history(&self, rule: Option<&str>, limit: u32) -> rusqlite::Result<Vec<HistoryRow>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT id, ts_ns, rule, state, value, summary FROM history
             WHERE ?1 IS NULL OR rule = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![rule, limit], |r| {
            Ok(HistoryRow {
                id: r.get(0)?,
                ts_ns: r.get::<_, i64>(1)?.max(0) as u64,
                rule: r.get(2)?,
                state: r.get(3)?,
                value: r.get(4)?,
                summary: r.get(5)?,
            })
        })?;
        rows.collect()
    }
}
