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
    /// The user's [`credential_fingerprint`] when the session began.
    pub cred: String,
}

/// A digest of a user's password and token hashes: stored in each session,
/// so a changed password or token (a new hash in the config) ends every
/// session begun with the old one.
pub fn credential_fingerprint(password_hash: &str, api_token_hash: Option<&str>) -> String {
    use blake2::Digest;
    let mut h = blake2::Blake2s256::new();
    h.update(password_hash.as_bytes());
    h.update([0u8]);
    h.update(api_token_hash.unwrap_or("").as_bytes());
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
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
                expires_ms INTEGER NOT NULL,
                cred       TEXT NOT NULL DEFAULT ''
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires_ms);",
        )?;
        // A store from before credential fingerprints: its sessions get an
        // empty one, which matches no user, so they end (one new login).
        let has_cred: bool = db
            .prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'cred'")?
            .exists([])?;
        if !has_cred {
            db.execute_batch("ALTER TABLE sessions ADD COLUMN cred TEXT NOT NULL DEFAULT ''")?;
        }
        Ok(Sessions {
            db: Mutex::new(db),
            lifetime,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `user` holding the credential fingerprint `cred`:
    /// (session id, CSRF token).
    pub fn create(&self, user: &str, cred: &str) -> anyhow::Result<(String, String)> {
        let id = random_token();
        let csrf = random_token();
        let now = now_ms();
        let expires =
            now.saturating_add(i64::try_from(self.lifetime.as_millis()).unwrap_or(i64::MAX));
        let db = self.conn();
        db.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now])?;
        db.execute(
            "INSERT INTO sessions (id_hash, user, csrf, created_ms, expires_ms, cred) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![id_hash(&id), user, csrf, now, expires, cred],
        )?;
        Ok((id, csrf))
    }

    /// The live session with this id; an unknown or expired one is None.
    pub fn get(&self, id: &str) -> Option<Session> {
        if id.len() != 64 {
            return None;
        }
        let r = self.conn().query_row(
            "SELECT user, csrf, cred FROM sessions WHERE id_hash = ?1 AND expires_ms > ?2",
            rusqlite::params![id_hash(id), now_ms()],
            |r| {
                Ok(Session {
                    user: r.get(0)?,
                    csrf: r.get(1)?,
                    cred: r.get(2)?,
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

    /// Ends every session of `user` ("log out everywhere"); how many.
    pub fn remove_user(&self, user: &str) -> anyhow::Result<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM sessions WHERE user = ?1", [user])?)
    }

    /// Live sessions per user.
    pub fn count_by_user(&self) -> std::collections::HashMap<String, u64> {
        let db = self.conn();
        let rows = db
            .prepare("SELECT user, count(*) FROM sessions WHERE expires_ms > ?1 GROUP BY user")
            .and_then(|mut s| {
                s.query_map([now_ms()], |r| {
                    Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
                })?
                .collect::<rusqlite::Result<_>>()
            });
        rows.unwrap_or_else(|e| {
            tracing::error!("reading the session store: {e}");
            Default::default()
        })
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
        let (id, csrf) = s.create("alice", "c1").unwrap();
        assert_eq!(s.get(&id).unwrap().csrf, csrf);
        assert_eq!(s.get(&id).unwrap().cred, "c1");
        s.remove(&id);
        assert!(s.get(&id).is_none());
        let s = Sessions::new(Duration::ZERO);
        let (id, _) = s.create("bob", "c").unwrap();
        assert!(s.get(&id).is_none());
        let s = Sessions::new(Duration::from_millis(300));
        let (id, _) = s.create("carol", "c").unwrap();
        assert!(s.get(&id).is_some());
        std::thread::sleep(Duration::from_millis(400));
        assert!(s.get(&id).is_none(), "expired");
    }

    #[test]
    fn log_out_everywhere_and_fingerprints() {
        let s = Sessions::new(Duration::from_secs(60));
        let a1 = s.create("alice", "c").unwrap().0;
        let a2 = s.create("alice", "c").unwrap().0;
        let b = s.create("bob", "c").unwrap().0;
        assert_eq!(s.count_by_user().get("alice"), Some(&2));
        assert_eq!(s.remove_user("alice").unwrap(), 2);
        assert!(s.get(&a1).is_none() && s.get(&a2).is_none());
        assert!(s.get(&b).is_some());
        let f = credential_fingerprint("$argon2id$a", None);
        assert_eq!(f, credential_fingerprint("$argon2id$a", None));
        assert_ne!(f, credential_fingerprint("$argon2id$b", None));
        assert_ne!(
            f,
            credential_fingerprint("$argon2id$a", Some("$argon2id$t"))
        );
    }

    #[test]
    fn an_old_store_gains_fingerprints_and_its_sessions_end() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(SESSIONS_FILE);
        let db = rusqlite::Connection::open(&p).unwrap();
        db.execute_batch(
            "CREATE TABLE sessions (id_hash BLOB PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL,
             created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        let id = random_token();
        db.execute(
            "INSERT INTO sessions VALUES (?1, 'alice', 'x', 0, ?2)",
            rusqlite::params![id_hash(&id), i64::MAX],
        )
        .unwrap();
        drop(db);
        let s = Sessions::open(&p, Duration::from_secs(60)).unwrap();
        assert_eq!(
            s.get(&id).unwrap().cred,
            "",
            "matches no user's fingerprint"
        );
    }

    #[test]
    fn sessions_survive_reopening_and_store_no_ids() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(SESSIONS_FILE);
        let s = Sessions::open(&p, Duration::from_secs(60)).unwrap();
        let (id, csrf) = s.create("alice", "c").unwrap();
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
