//! Call folder names: readable, unique, stable across runs, found in a
//! constant number of probes.
//!
//! A folder is named after its Call-ID. A Call-ID that is already a safe
//! file name (letters, digits, `.-_@`, at most 96 characters, not starting
//! with `.`, `-` or `@`) is its own folder name, as before. Any other one is
//! sanitised and cut to 64 characters, and a short hash of the raw Call-ID
//! is appended (`a_b@h-1f2e3d4c`): Call-IDs that differ only in punctuation,
//! or share a long prefix, then get different names at once instead of
//! walking `-2`, `-3`, ... past every earlier one (8,000 such calls took
//! 28.6 s, quadratic in the number of calls). The hash is FNV-1a, the same
//! in every run and on every host, so a name can be recomputed.
//!
//! The same Call-ID seen again (a reused Call-ID, a second run into the same
//! directory) gets `-2`, `-3`, ...: the next suffix per name is remembered,
//! and where it is not (a live run remembers a bounded number of names), a
//! galloping search over the directory finds a free one in O(log n) probes.

use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Longest Call-ID kept as it is.
const MAX_CLEAN: usize = 96;
/// Characters of a sanitised Call-ID kept before its hash.
const PREFIX: usize = 64;
/// Names whose next suffix a live run remembers.
const REMEMBERED: usize = 4096;

/// The folder name of a Call-ID before any `-N` suffix.
pub fn base_name(call_id: &[u8]) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@');
    let clean = !call_id.is_empty()
        && call_id.len() <= MAX_CLEAN
        && call_id.iter().all(|b| safe(*b))
        && !matches!(call_id.first(), Some(b'.' | b'-' | b'@'));
    if clean {
        return String::from_utf8_lossy(call_id).into_owned();
    }
    let mut name = String::with_capacity(PREFIX + 10);
    if !call_id
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        name.push('c');
    }
    // Bytes, not chars: a multi-byte character becomes one '_' per byte,
    // which keeps the prefix a fixed number of bytes.
    name.extend(
        call_id
            .iter()
            .take(PREFIX)
            .map(|&b| if safe(b) { char::from(b) } else { '_' }),
    );
    name.push('-');
    name.push_str(&format!("{:08x}", fnv1a(call_id) as u32));
    name
}

/// FNV-1a, 64 bits: stable across runs and hosts (std's hasher is seeded).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where names are taken: in this run (import), or in the directory, which
/// also holds earlier runs (a live sensor, which keeps no set of every name).
pub(super) enum Taken<'d> {
    Run,
    Dir(&'d Path),
}

#[derive(Default)]
pub(super) struct FolderNames {
    /// Names handed out in this run (import only).
    used: HashSet<String>,
    /// Next suffix to try per base name (bounded in a live run).
    next: HashMap<String, u32>,
    /// Names looked up, for tests that the work per call is constant.
    probes: u64,
}

impl FolderNames {
    /// A free name for `call_id`, claimed.
    pub(super) fn claim(&mut self, call_id: &[u8], taken: Taken<'_>) -> String {
        let base = base_name(call_id);
        // The galloping search has just seen its answer free.
        let (mut n, mut known_free) = match (self.next.get(&base), &taken) {
            (Some(&n), _) => (n, false),
            (None, Taken::Run) => (1, false),
            (None, Taken::Dir(dir)) => (self.gallop(&base, dir), true),
        };
        loop {
            let name = suffixed(&base, n);
            if std::mem::take(&mut known_free) || !self.is_taken(&name, &taken) {
                if let Taken::Dir(_) = taken
                    && self.next.len() >= REMEMBERED
                {
                    self.next.clear();
                }
                self.next.insert(base, n.saturating_add(1));
                return name;
            }
            n = n.saturating_add(1);
        }
    }

    /// The lowest suffix likely free in `dir`: doubling until a free one,
    /// then bisecting (suffixes are handed out in order, so the taken ones
    /// form a prefix unless retention deleted some; then any free one found
    /// is still free, only not the lowest).
    fn gallop(&mut self, base: &str, dir: &Path) -> u32 {
        let exists = |s: &mut Self, n: u32| {
            s.probes += 1;
            dir.join(suffixed(base, n)).exists()
        };
        if !exists(self, 1) {
            return 1;
        }
        let (mut lo, mut hi) = (1u32, 2u32);
        while exists(self, hi) {
            lo = hi;
            hi = hi.saturating_mul(2);
            if hi == u32::MAX {
                return hi;
            }
        }
        // lo taken, hi free.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(self, mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    fn is_taken(&mut self, name: &str, taken: &Taken<'_>) -> bool {
        self.probes += 1;
        match taken {
            Taken::Run => !self.used.insert(name.to_string()),
            Taken::Dir(dir) => dir.join(name).exists(),
        }
    }

    #[cfg(test)]
    pub(super) fn probes(&self) -> u64 {
        self.probes
    }

    #[cfg(test)]
    /// Names remembered in this run (a live run keeps at most a few
    /// thousand, whatever its length).
    pub(super) fn remembered(&self) -> usize {
        self.used.len() + self.next.len()
    }
}

fn suffixed(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_call_ids_are_their_own_names_others_get_a_stable_hash() {
        assert_eq!(base_name(b"1-7668@10.200.0.1"), "1-7668@10.200.0.1");
        assert_eq!(
            base_name(b"a b@h"),
            format!("a_b@h-{:08x}", fnv1a(b"a b@h") as u32)
        );
        // Differ only in punctuation: different names.
        assert_ne!(base_name(b"!!@h"), base_name(b"##@h"));
        // Hostile starts: never a hidden, option-like or formula name.
        for id in [&b".."[..], b"-rf", b"@x", b"=1+1", b"", b"/etc/passwd"] {
            let n = base_name(id);
            assert!(
                n.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'),
                "{n}"
            );
            assert!(!n.contains('/') && n != "." && n != "..", "{n}");
        }
        // A long Call-ID: cut, hashed, and unique per Call-ID.
        let long = |i: u32| format!("{}{i}@h", "p".repeat(100)).into_bytes();
        assert_eq!(base_name(&long(1)).len(), PREFIX + 1 + 8);
        assert_ne!(base_name(&long(1)), base_name(&long(2)));
        // Stable: the same value in every run (a fixed expectation).
        assert_eq!(base_name(b"x y"), "x_y-7f2b3af4");
    }

    #[test]
    fn a_reused_call_id_gets_the_next_suffix_in_constant_probes() {
        let mut names = FolderNames::default();
        for i in 1..=1000u32 {
            let n = names.claim(b"same@h", Taken::Run);
            assert_eq!(n, suffixed("same@h", i));
        }
        assert_eq!(names.probes(), 1000);
    }

    /// A live run that forgot a name (or a second run into the same
    /// directory) finds the next free suffix in O(log n) directory probes.
    #[test]
    fn the_directory_is_searched_in_logarithmic_probes() {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=300u32 {
            std::fs::create_dir(dir.path().join(suffixed("same@h", i))).unwrap();
        }
        let mut names = FolderNames::default();
        assert_eq!(names.claim(b"same@h", Taken::Dir(dir.path())), "same@h-301");
        assert!(names.probes() <= 2 * 10 + 2, "{}", names.probes());
    }
}
