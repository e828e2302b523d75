//! Passwords (argon2id), sessions and CSRF tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    expires: Instant,
}

/// Sessions live in memory: a restart logs everyone out, which is the
/// safe failure for an appliance holding recordings.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    /// A new session for `user`: (session id, CSRF token).
    pub fn create(&self, user: &str) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                csrf: csrf.clone(),
                expires: now + self.lifetime,
            },
        );
        (id, csrf)
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
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
        let (id, csrf) = s.create("alice");
        assert_eq!(s.get(&id).unwrap().csrf, csrf);
        s.remove(&id);
        assert!(s.get(&id).is_none());
        let s = Sessions::new(Duration::ZERO);
        let (id, _) = s.create("bob");
        assert!(s.get(&id).is_none());
    }
}
