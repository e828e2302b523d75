//! Named saved searches: each user keeps up to [`MAX_PER_USER`] call-list
//! searches under names of their own, listed on the calls page. They live
//! in `DATA/searches.sqlite` (mode 0600) as the canonical query string of
//! the call list (the same one its "Link to this search" carries), so a
//! saved search is checked like any search when it is saved and when it is
//! opened, and survives a restart or a rebuilt index.

use std::path::Path;
use std::sync::Mutex;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::csrf::{CheckedForm, accepts_json, json_or_back};
use crate::handlers::{AppError, Filters};
use crate::{Identity, Shared};

pub const SEARCHES_FILE: &str = "searches.sqlite";
/// Searches one user may keep.
pub const MAX_PER_USER: usize = 100;
/// Longest name, in characters.
pub const MAX_NAME: usize = 80;
/// Longest query string stored, in bytes.
pub const MAX_QUERY: usize = 2048;

#[derive(Debug, Error)]
pub enum SaveError {
    #[error("name the search (1 to {MAX_NAME} characters)")]
    BadName,
    #[error("{0}")]
    BadSearch(String),
    #[error("the search is longer than {MAX_QUERY} bytes")]
    TooLong,
    #[error("you keep {MAX_PER_USER} searches already: remove one first")]
    Full,
    #[error("searches.sqlite: {0}")]
    Db(#[from] rusqlite::Error),
}

/// The store of every user's saved searches.
pub struct SavedSearches {
    db: Mutex<rusqlite::Connection>,
}

impl SavedSearches {
    /// Opens (creating) `DATA/searches.sqlite`, readable by its owner only.
    pub fn open(data: &Path) -> rusqlite::Result<SavedSearches> {
        let path = data.join(SEARCHES_FILE);
        let db = rusqlite::Connection::open(&path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        Self::with(db)
    }

    /// A store in memory (tests, read-only data directories).
    pub fn in_memory() -> rusqlite::Result<SavedSearches> {
        Self::with(rusqlite::Connection::open_in_memory()?)
    }

    fn with(db: rusqlite::Connection) -> rusqlite::Result<SavedSearches> {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS searches (
                user TEXT NOT NULL, name TEXT NOT NULL, query TEXT NOT NULL,
                saved_ns INTEGER NOT NULL, PRIMARY KEY (user, name))",
        )?;
        Ok(SavedSearches { db: Mutex::new(db) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user's searches, by name: (name, canonical query string).
    pub fn list(&self, user: &str) -> rusqlite::Result<Vec<(String, String)>> {
        let db = self.conn();
        let mut st =
            db.prepare("SELECT name, query FROM searches WHERE user = ?1 ORDER BY name")?;
        st.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Saves (or replaces) `name` for `user`; `query` is a call-list query
    /// string, checked as a search and stored in canonical form, returned.
    pub fn put(&self, user: &str, name: &str, query: &str) -> Result<String, SaveError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(SaveError::BadName);
        }
        let canonical = canonical_query(query)?;
        let db = self.conn();
        let tx = db.unchecked_transaction()?;
        let (count, exists): (i64, bool) = tx.query_row(
            "SELECT COUNT(*), COALESCE(MAX(name = ?2), 0) FROM searches WHERE user = ?1",
            rusqlite::params![user, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if !exists && count as usize >= MAX_PER_USER {
            return Err(SaveError::Full);
        }
        tx.execute(
            "INSERT OR REPLACE INTO searches (user, name, query, saved_ns) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![user, name, canonical, now_ns()],
        )?;
        tx.commit()?;
        Ok(canonical)
    }

    /// Removes the user's search `name`; false when there was none.
    pub fn delete(&self, user: &str, name: &str) -> rusqlite::Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM searches WHERE user = ?1 AND name = ?2",
            rusqlite::params![user, name],
        )?;
        Ok(n > 0)
    }
}

/// `query` as the call list writes it (without page and sort position it
/// had), after checking it is a search the list accepts.
fn canonical_query(query: &str) -> Result<String, SaveError> {
    let query = query.trim_start_matches('?');
    if query.len() > MAX_QUERY {
        return Err(SaveError::TooLong);
    }
    let f: Filters = serde_urlencoded::from_str(query)
        .map_err(|e| SaveError::BadSearch(format!("not a call-list search: {e}")))?;
    f.to_query().map_err(SaveError::BadSearch)?;
    Ok(crate::pages::query_string(&f, None, None))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SaveError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "saved searches failed"))?
        .map_err(|e| match e {
            SaveError::Db(e) => {
                tracing::error!("searches.sqlite: {e}");
                AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "saved searches failed")
            }
            SaveError::Full => AppError::new(StatusCode::CONFLICT, e.to_string()),
            e => AppError::new(StatusCode::BAD_REQUEST, e.to_string()),
        })
}

/// The signed-in user's saved searches, for the calls page.
pub async fn list_for(st: &Shared, user: &str) -> Vec<(String, String)> {
    let (st, user) = (st.clone(), user.to_string());
    blocking(move || Ok(st.saved.list(&user)?))
        .await
        .unwrap_or_default()
}

/// `POST /calls/saved` (`name`, `query`): saves the search and opens it.
pub async fn save(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    let name = form.get("name").unwrap_or_default().to_string();
    let query = form.get("query").unwrap_or_default().to_string();
    let user = ident.user.clone();
    let store = st.clone();
    let put = blocking(move || store.saved.put(&user, &name, &query)).await;
    match put {
        Ok(q) => json_or_back(
            json,
            serde_json::json!({ "saved": form.get("name").map(str::trim), "query": q }),
            &format!("/calls?{q}"),
        ),
        Err(e) => e.json_if(json).into_response(),
    }
}

/// `POST /calls/saved/delete` (`name`).
pub async fn delete(
    State(st): State<Shared>,
    Extension(ident): Extension<Identity>,
    headers: HeaderMap,
    form: CheckedForm,
) -> Response {
    let json = accepts_json(&headers);
    let name = form.get("name").unwrap_or_default().to_string();
    let (user, store, n) = (ident.user.clone(), st.clone(), name.clone());
    match blocking(move || Ok(store.saved.delete(&user, &n)?)).await {
        Ok(true) => json_or_back(json, serde_json::json!({ "removed": name }), "/calls"),
        Ok(false) => AppError::new(StatusCode::NOT_FOUND, format!("no saved search {name}"))
            .json_if(json)
            .into_response(),
        Err(e) => e.json_if(json).into_response(),
    }
}

/// `GET /api/saved`: the user's saved searches as JSON.
pub async fn api_list(State(st): State<Shared>, Extension(ident): Extension<Identity>) -> Response {
    let list: Vec<serde_json::Value> = list_for(&st, &ident.user)
        .await
        .into_iter()
        .map(|(name, query)| serde_json::json!({ "name": name, "query": query }))
        .collect();
    axum::Json(serde_json::json!({ "searches": list })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_are_per_user_canonical_checked_and_capped() {
        let s = SavedSearches::in_memory().unwrap();
        let q = s
            .put("ann", " busy ", "?state=busy&page=3&party=44*")
            .unwrap();
        assert_eq!(q, "party=44%2A&state=busy");
        assert_eq!(s.list("ann").unwrap(), [("busy".into(), q.clone())]);
        assert!(s.list("bob").unwrap().is_empty());
        // Replacing keeps one entry.
        s.put("ann", "busy", "state=failed").unwrap();
        assert_eq!(s.list("ann").unwrap()[0].1, "state=failed");
        assert!(matches!(
            s.put("ann", "x", "ip=not-an-ip"),
            Err(SaveError::BadSearch(m)) if m.contains("not an IP")
        ));
        assert!(matches!(
            s.put("ann", "", "state=busy"),
            Err(SaveError::BadName)
        ));
        let long = "party=".to_string() + &"1".repeat(MAX_QUERY);
        assert!(matches!(s.put("ann", "l", &long), Err(SaveError::TooLong)));
        for i in 1..MAX_PER_USER {
            s.put("ann", &format!("s{i}"), "state=busy").unwrap();
        }
        assert!(matches!(
            s.put("ann", "one more", "state=busy"),
            Err(SaveError::Full)
        ));
        // At the cap a search can still be replaced, and removed.
        s.put("ann", "busy", "state=answered").unwrap();
        assert!(s.delete("ann", "busy").unwrap());
        assert!(!s.delete("ann", "busy").unwrap());
        assert!(!s.delete("bob", "s1").unwrap());
        assert_eq!(s.list("ann").unwrap().len(), MAX_PER_USER - 1);
    }
}
