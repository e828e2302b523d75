//! Throttling of password and bearer-token guesses, per user name and per
//! source address: a few failures are answered at once, then each attempt
//! must wait a back-off that doubles per failure, and a user name with too
//! many failures is locked out for a while (an admin can clear both).
//!
//! Attempts still being checked count against the free ones: an attempt
//! that would pass the limit with them waits for them to finish instead
//! of being checked in parallel, so a burst of parallel guesses gets no
//! more checks than a sequence (and a burst of right passwords or tokens
//! is only slowed, not refused). Unknown user names are counted exactly
//! like known ones, so the throttle does not tell which names exist.
//! Refused attempts cost no argon2 verification and do not count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::LoginConfig;

/// Entries kept at most (user names and addresses together): a flood of
/// invented names must not grow the map without bound.
const MAX_ENTRIES: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Policy {
    pub free_user: u32,
    pub free_addr: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub lockout_after: u32,
    pub lockout: Duration,
}

impl Policy {
    pub fn from_config(c: &LoginConfig) -> Policy {
        Policy {
            free_user: c.free_attempts.unwrap_or(3),
            free_addr: c.address_free_attempts.unwrap_or(20),
            backoff: Duration::from_secs(c.backoff_seconds.unwrap_or(1)),
            max_backoff: Duration::from_secs(c.max_backoff_seconds.unwrap_or(300)),
            lockout_after: c.lockout_after.unwrap_or(10),
            lockout: Duration::from_secs(c.lockout_minutes.unwrap_or(15).saturating_mul(60)),
        }
    }

    /// Failures are forgotten after this long without one.
    fn forget_after(&self) -> Duration {
        self.lockout.max(self.max_backoff)
    }

    /// The wait after `failures` failures when `free` are answered at once.
    fn delay(&self, failures: u32, free: u32) -> Duration {
        match failures.checked_sub(free) {
            None => Duration::ZERO,
            Some(k) => self
                .backoff
                .saturating_mul(1u32 << k.min(20))
                .min(self.max_backoff),
        }
    }
}

/// Whose failures: a user name, or a source address (IPv6 by /64, as one
/// host usually owns a whole /64).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    User(String),
    Addr(IpAddr),
}

impl Key {
    pub fn addr(ip: IpAddr) -> Key {
        Key::Addr(match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            },
            v4 => v4,
        })
    }
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    /// Attempts being checked now.
    pending: u32,
    /// The last failure (or the first attempt).
    last: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            pending: 0,
            last: now,
            locked_until: None,
        }
    }
}

/// What to do with an attempt now.
enum Decision {
    Check,
    Refuse(Refusal),
    /// Wait for the attempts being checked, then decide again.
    Wait,
}

/// Longest an attempt waits for others to be checked before it is refused.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(30);

/// Why an attempt was not checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Back-off: try again after this long.
    Wait(Duration),
    /// The user name is locked out for this long (or until an admin clears it).
    Locked(Duration),
}

impl Refusal {
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::Wait(d) | Refusal::Locked(d) => d,
        }
    }

    /// For the login page and the API's error.
    pub fn message(self) -> String {
        let secs = self.retry_after().as_secs().max(1);
        match self {
            Refusal::Wait(_) => format!(
                "Too many failed attempts: try again in {secs} s (each failure doubles the wait)."
            ),
            Refusal::Locked(_) => format!(
                "This user name is locked after too many failed attempts: an admin can unlock it, or try again in {} min.",
                secs.div_ceil(60)
            ),
        }
    }
}

/// One entry as the admin page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `user` or `address`.
    pub kind: &'static str,
    pub name: String,
    pub failures: u32,
    /// Seconds until the next attempt is checked (0: now).
    pub wait_seconds: u64,
    /// Seconds the lock-out still lasts, if locked.
    pub locked_seconds: Option<u64>,
}

pub struct Throttle {
    policy: Policy,
    map: Mutex<HashMap<Key, Entry>>,
    /// Woken whenever an attempt is finished.
    finished: tokio::sync::Notify,
}

/// An attempt being checked: report how it went with
/// [`Attempt::succeeded`] or [`Attempt::failed`]; dropped without either,
/// it counts as failed.
#[must_use]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: Vec<Key>,
    done: bool,
}

impl Attempt<'_> {
    /// The password or token was right: the user name's failures are
    /// forgotten (the address keeps its own).
    pub fn succeeded(mut self) {
        self.finish(true);
    }

    pub fn failed(mut self) {
        self.finish(false);
    }

    fn finish(&mut self, ok: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.throttle.finish(&self.keys, ok);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Throttle {
    pub fn new(policy: Policy) -> Throttle {
        Throttle {
            policy,
            map: Mutex::new(HashMap::new()),
            finished: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keys(user: &str, addr: Option<IpAddr>) -> Vec<Key> {
        let mut k = vec![Key::User(user.to_string())];
        k.extend(addr.map(Key::addr));
        k
    }

    /// May `user` from `addr` have a password or token checked? Waits while
    /// attempts being checked could use up the free ones; refuses during a
    /// back-off or a lock-out.
    pub async fn attempt(&self, user: &str, addr: Option<IpAddr>) -> Result<Attempt<'_>, Refusal> {
        let keys = Self::keys(user, addr);
        let deadline = tokio::time::Instant::now() + MAX_QUEUE_WAIT;
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            match self.decide(&keys) {
                Decision::Check => {
                    return Ok(Attempt {
                        throttle: self,
                        keys,
                        done: false,
                    });
                }
                Decision::Refuse(r) => return Err(r),
                Decision::Wait => {
                    if tokio::time::timeout_at(deadline, finished).await.is_err() {
                        return Err(Refusal::Wait(Duration::from_secs(1)));
                    }
                }
            }
        }
    }

    /// The decision for `keys` now; a `Check` is counted as pending.
    fn decide(&self, keys: &[Key]) -> Decision {
        let now = Instant::now();
        let p = &self.policy;
        let mut map = self.lock();
        let mut wait = Duration::ZERO;
        let mut busy = false;
        for key in keys {
            let Some(e) = map.get_mut(key) else { continue };
            let free = self.free(key);
            if let Some(until) = e.locked_until {
                if until > now {
                    return Decision::Refuse(Refusal::Locked(until - now));
                }
                e.locked_until = None;
            }
            if e.pending == 0 && now.duration_since(e.last) > p.forget_after() {
                e.failures = 0;
            }
            if e.failures >= free {
                let allowed_at = e.last + p.delay(e.failures, free);
                wait = wait.max(allowed_at.saturating_duration_since(now));
            }
            busy |= e.pending > 0 && e.failures.saturating_add(e.pending) >= free.max(1);
        }
        if !wait.is_zero() {
            return Decision::Refuse(Refusal::Wait(wait));
        }
        if busy {
            return Decision::Wait;
        }
        for key in keys {
            make_room(&mut map, now, p.forget_after());
            let e = map.entry(key.clone()).or_insert_with(|| Entry::new(now));
            e.pending += 1;
        }
        Decision::Check
    }

    fn free(&self, key: &Key) -> u32 {
        match key {
            Key::User(_) => self.policy.free_user,
            Key::Addr(_) => self.policy.free_addr,
        }
    }

    fn finish(&self, keys: &[Key], ok: bool) {
        let now = Instant::now();
        {
            let mut map = self.lock();
            for key in keys {
                let Some(e) = map.get_mut(key) else { continue };
                e.pending = e.pending.saturating_sub(1);
                let is_user = matches!(key, Key::User(_));
                if ok {
                    if is_user {
                        e.failures = 0;
                        e.locked_until = None;
                    }
                } else {
                    e.failures = e.failures.saturating_add(1);
                    e.last = now;
                    if is_user && e.failures >= self.policy.lockout_after {
                        e.locked_until = Some(now + self.policy.lockout);
                    }
                }
                if e.pending == 0 && e.failures == 0 && e.locked_until.is_none() {
                    map.remove(key);
                }
            }
        }
        self.finished.notify_waiters();
    }

    /// Clears a user name's or an address's failures and lock-out; whether
    /// there were any.
    pub fn clear(&self, key: &Key) -> bool {
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(e) if e.failures > 0 || e.locked_until.is_some() => {
                e.failures = 0;
                e.locked_until = None;
                if e.pending == 0 {
                    map.remove(key);
                }
                true
            }
            _ => false,
        }
    }

    /// Every name and address with failures, locked ones first.
    pub fn rows(&self) -> Vec<Row> {
        let now = Instant::now();
        let p = &self.policy;
        let map = self.lock();
        let mut rows: Vec<Row> = map
            .iter()
            .filter(|(_, e)| e.failures > 0 && now.duration_since(e.last) <= p.forget_after())
            .map(|(k, e)| {
                let free = self.free(k);
                let (kind, name) = match k {
                    Key::User(u) => ("user", u.clone()),
                    Key::Addr(a) => ("address", a.to_string()),
                };
                let allowed_at = e.last + p.delay(e.failures, free);
                Row {
                    kind,
                    name,
                    failures: e.failures,
                    wait_seconds: allowed_at.saturating_duration_since(now).as_secs(),
                    locked_seconds: e
                        .locked_until
                        .filter(|u| *u > now)
                        .map(|u| (u - now).as_secs().max(1)),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.locked_seconds.is_some(), b.failures, &a.name).cmp(&(
                a.locked_seconds.is_some(),
                a.failures,
                &b.name,
            ))
        });
        rows
    }
}

/// Keeps the map under [`MAX_ENTRIES`]: forgotten entries go first, then
/// the oldest that are not locked.
fn make_room(map: &mut HashMap<Key, Entry>, now: Instant, forget: Duration) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, e| {
        e.pending > 0
            || e.locked_until.is_some_and(|u| u > now)
            || now.duration_since(e.last) <= forget
    });
    while map.len() >= MAX_ENTRIES {
        let oldest = map
            .iter()
            .filter(|(_, e)| e.pending == 0 && e.locked_until.is_none_or(|u| u <= now))
            .min_by_key(|(_, e)| e.last)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                map.remove(&k);
            }
            // All locked: the oldest lock-out goes.
            None => {
                let k = map
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = k {
                    map.remove(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            free_user: 3,
            free_addr: 5,
            backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(600),
            lockout_after: 6,
            lockout: Duration::from_secs(900),
        }
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    async fn fail(t: &Throttle, user: &str, addr: Option<IpAddr>) -> Result<(), Refusal> {
        t.attempt(user, addr).await.map(Attempt::failed)
    }

    #[tokio::test]
    async fn free_attempts_then_back_off_per_user() {
        let t = Throttle::new(policy());
        for _ in 0..3 {
            assert_eq!(fail(&t, "alice", A).await, Ok(()));
        }
        let r = fail(&t, "alice", A).await.unwrap_err();
        assert!(
            matches!(r, Refusal::Wait(d) if d > Duration::from_secs(55)),
            "{r:?}"
        );
        // Another address does not help the name, another name is free.
        assert!(matches!(fail(&t, "alice", B).await, Err(Refusal::Wait(_))));
        assert_eq!(fail(&t, "bob", A).await, Ok(()));
    }

    #[tokio::test]
    async fn per_address_across_names() {
        let t = Throttle::new(policy());
        for i in 0..5 {
            assert_eq!(fail(&t, &format!("u{i}"), A).await, Ok(()));
        }
        assert!(matches!(fail(&t, "u9", A).await, Err(Refusal::Wait(_))));
        assert_eq!(fail(&t, "u9", B).await, Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_attempts_wait_for_those_being_checked() {
        let t = std::sync::Arc::new(Throttle::new(policy()));
        // 3 attempts held open: a 4th waits rather than being checked.
        let held: Vec<Attempt<'_>> = vec![
            t.attempt("alice", A).await.unwrap(),
            t.attempt("alice", A).await.unwrap(),
            t.attempt("alice", A).await.unwrap(),
        ];
        let t2 = t.clone();
        let fourth =
            tokio::spawn(async move { t2.attempt("alice", A).await.map(Attempt::succeeded) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!fourth.is_finished(), "checked beside three others");
        // They were right: the 4th goes ahead.
        held.into_iter().for_each(Attempt::succeeded);
        assert_eq!(fourth.await.unwrap(), Ok(()));
        // Had they been wrong, it would have been refused without a check.
        let held: Vec<Attempt<'_>> = vec![
            t.attempt("bob", A).await.unwrap(),
            t.attempt("bob", A).await.unwrap(),
            t.attempt("bob", A).await.unwrap(),
        ];
        let t2 = t.clone();
        let fourth =
            tokio::spawn(async move { t2.attempt("bob", A).await.map(Attempt::succeeded) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        assert!(matches!(fourth.await.unwrap(), Err(Refusal::Wait(_))));
    }

    #[tokio::test]
    async fn success_forgets_the_user_and_clearing_unlocks() {
        let t = Throttle::new(Policy {
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            ..policy()
        });
        fail(&t, "alice", A).await.unwrap();
        t.attempt("alice", A).await.unwrap().succeeded();
        assert!(t.rows().iter().all(|r| r.name != "alice"));
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            fail(&t, "alice", A).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(matches!(
            fail(&t, "alice", A).await,
            Err(Refusal::Locked(_))
        ));
        let rows = t.rows();
        assert!(
            rows[0].name == "alice" && rows[0].locked_seconds.is_some(),
            "{rows:?}"
        );
        assert!(t.clear(&Key::User("alice".into())));
        assert_eq!(fail(&t, "alice", A).await, Ok(()));
    }

    #[test]
    fn delays_double_and_cap() {
        let p = policy();
        assert_eq!(p.delay(2, 3), Duration::ZERO);
        assert_eq!(p.delay(3, 3), Duration::from_secs(60));
        assert_eq!(p.delay(4, 3), Duration::from_secs(120));
        assert_eq!(p.delay(u32::MAX, 3), Duration::from_secs(600));
    }

    #[test]
    fn ipv6_by_64_and_mapped_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(Key::addr(a), Key::addr(b));
        let m: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Key::addr(m), Key::addr(A.unwrap()));
    }

    #[tokio::test]
    async fn the_map_stays_bounded() {
        let t = Throttle::new(policy());
        for i in 0..MAX_ENTRIES + 50 {
            let _ = fail(&t, &format!("n{i}"), None).await;
        }
        assert!(t.lock().len() <= MAX_ENTRIES);
    }
}
