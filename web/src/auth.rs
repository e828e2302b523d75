//! Passwords (argon2id), sessions and CSRF tokens.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// An argon2id PHC string for `password`, with a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// 32 random bytes, hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    // The OS RNG failing is not something to serve through.
    getrandom::fill(&mut b).expect("the OS random number generator failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Comparing secrets without an early exit, so timing does not tell how
/// much of a guessed token was right.
pub fn eq_const(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub csrf: String,
}

/// Where sessions live, beside the call index in the data directory.
pub const SESSIONS_FILE: &str = "sessions.sqlite";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The session id as stored: a BLAKE2s hash, so a copy of the file (a
/// backup, a support bundle) does not hand out live logins.
fn id_hash(id: &str) -> Vec<u8> {
    use blake2::Digest;
    blake2::Blake2s256::digest(id.as_bytes()).to_vec()
}

/// Sessions in a small SQLite file, so a restart of the server does not
/// log everyone out; expiry is enforced on every lookup.
pub struct Sessions {
    db: Mutex<rusqlite::Connection>,
    lifetime: Duration,
}

impl Sessions {
    /// Sessions kept in memory only (tests; a restart forgets them).
    pub fn new(lifetime: Duration) -> Self {
        let db = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
        Self::with(db, lifetime).expect("creating the sessions table")
    }

    /// Sessions persisted in `path` (created with mode 0600).
    pub fn open(path: &Path, lifetime: Duration) -> rusqlite::Result<Self> {
        let db = rusqlite::Connection::open(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        db.busy_timeout(Duration::from_secs(5))?;
        Self::with(db, lifetime)
    }

    fn with(db: rusqlite::Connection, lifetime: Duration) -> rusqlite::Result<Self> {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                id_hash    BLOB PRIMARY KEY,
                user       TEXT NOT NULL,
                csrf       TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                expires_ms INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires_ms);",
        )?;
        Ok(Sessions {
            db: Mutex::new(db),
            lifetime,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `user`: (session id, CSRF token).
    pub fn create(&self, user: &str) -> anyhow::Result<(String, String)> {
        let id = random_token();
        let csrf = random_token();
        let now = now_ms();
        let expires =
            now.saturating_add(i64::try_from(self.lifetime.as_millis()).unwrap_or(i64::MAX));
        let db = self.conn();
        db.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now])?;
        db.execute(
            "INSERT INTO sessions (id_hash, user, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![id_hash(&id), user, csrf, now, expires],
        )?;
        Ok((id, csrf))
    }

    /// The live session with this id; an unknown or expired one is None.
    pub fn get(&self, id: &str) -> Option<Session> {
        if id.len() != 64 {
            return None;
        }
        let r = self.conn().query_row(
            "SELECT user, csrf FROM sessions WHERE id_hash = ?1 AND expires_ms > ?2",
            rusqlite::params![id_hash(id), now_ms()],
            |r| {
                Ok(Session {
                    user: r.get(0)?,
                    csrf: r.get(1)?,
                })
            },
        );
        match r {
            Ok(s) => Some(s),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) => {
                tracing::error!("reading the session store: {e}");
                None
            }
        }
    }

    pub fn remove(&self, id: &str) {
        if let Err(e) = self
            .conn()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash(id)])
        {
            tracing::error!("removing a session: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_its_password() {
        let h = hash_password("s3cret pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "s3cret pass"));
        assert!(!verify_password(&h, "s3cret pasS"));
        assert!(!verify_password("not a hash", "s3cret pass"));
    }

    #[test]
    fn const_eq() {
        assert!(eq_const("abc", "abc"));
        assert!(!eq_const("abc", "abd"));
        assert!(!eq_const("abc", "abcd"));
    }

    #[test]
    fn sessions_expire_and_are_removed() {
        let s = Sessions::new(Duration::from_secs(60));
        let (id, csrf) = s.create("alice").unwrap();
        assert_eq!(s.get(&id).unwrap().csrf, csrf);
        s.remove(&id);
        assert!(s.get(&id).is_none());
        let s = Sessions::new(Duration::ZERO);
        let (id, _) = s.create("bob").unwrap();
        assert!(s.get(&id).is_none());
        let s = Sessions::new(Duration::from_millis(300));
        let (id, _) = s.create("carol").unwrap();
        assert!(s.get(&id).is_some());
        std::thread::sleep(Duration::from_millis(400));
        assert!(s.get(&id).is_none(), "expired");
    }

    #[test]
    fn sessions_survive_reopening_and_store_no_ids() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(SESSIONS_FILE);
        let s = Sessions::open(&p, Duration::from_secs(60)).unwrap();
        let (id, csrf) = s.create("alice").unwrap();
        drop(s);
        let s = Sessions::open(&p, Duration::from_secs(60)).unwrap();
        let got = s.get(&id).unwrap();
        assert_eq!(
            (got.user.as_str(), got.csrf.as_str()),
            ("alice", csrf.as_str())
        );
        let bytes = std::fs::read(&p).unwrap();
        assert!(
            !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
            "the session id itself is not stored"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
