//! Giving freed memory back to the system.
//!
//! glibc's malloc keeps what is freed inside its heap for later
//! allocations: after 50,000 calls start together, the room their burst
//! took (recent INVITEs, unanswered INVITEs, maps grown past what they
//! hold now) stays resident for good, about 1.4 KB of RSS per call above
//! the heap in use. The table shrinks its maps at sweeps when they are
//! less than half full ([`shrink_map`]), and once that has freed at least
//! [`TRIM_AFTER`] bytes, the next sweep asks glibc to give its free pages
//! back (`malloc_trim`, which walks the heap and releases free pages: not
//! done at every sweep, since its cost grows with the heap and with what
//! it releases; 0.01-0.06 ms with 50,000 calls open and nothing left to
//! release, `memory_long_calls`; median 1.2 ms and up to 5 ms for the
//! trims the sweeps made while those calls started, on a loaded 2-core
//! VM). Other allocators and systems: the shrinks only.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes freed by shrinks since the last trim. One count for the process:
/// the allocator is shared by every table (the parallel engine's replicas).
static FREED: AtomicUsize = AtomicUsize::new(0);

/// What shrinks must have freed before a trim.
const TRIM_AFTER: usize = 1 << 20;

/// Counts `bytes` freed by a shrink.
pub(super) fn note_freed(bytes: usize) {
    FREED.fetch_add(bytes, Ordering::Relaxed);
}

/// Shrinks `map` to fit when less than half of its room is used (as
/// `capacity` counts it, less the slots removals left as tombstones; it then
/// holds at least about half again, so a map holding steady is not shrunk
/// at every sweep), counting what that freed.
pub(super) fn shrink_map<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    let before = map.capacity();
    if !worth_shrinking(map.len(), before) {
        return;
    }
    map.shrink_to_fit();
    // An entry and its control byte per slot.
    note_freed((before - map.capacity()) * (std::mem::size_of::<(K, V)>() + 1));
}

/// Whether a table holding `len` in room for `capacity` is shrunk (see
/// [`shrink_map`]; `call_ids.rs` applies the same rule to its table).
pub(super) fn worth_shrinking(len: usize, capacity: usize) -> bool {
    capacity > 64 && len < capacity / 2
}

/// At a sweep: gives the free memory back if shrinks freed enough since
/// the last time.
pub(super) fn at_sweep() {
    if FREED.load(Ordering::Relaxed) >= TRIM_AFTER {
        FREED.store(0, Ordering::Relaxed);
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own
    // heaps; it touches no allocation in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map emptied to below half is shrunk and its room counted; one
    /// still half full is left alone.
    #[test]
    fn shrinks_only_maps_under_half_full() {
        let mut m: HashMap<u64, u64> = (0..10_000).map(|i| (i, i)).collect();
        m.retain(|&k, _| k < 8_000);
        // (Removals leave tombstones: what `capacity` counts may fall.)
        let cap = m.capacity();
        assert!(8_000 >= cap / 2, "{cap}");
        shrink_map(&mut m);
        assert_eq!(m.capacity(), cap, "at least half full: kept");
        m.retain(|&k, _| k < 100);
        shrink_map(&mut m);
        assert!(m.capacity() < 200, "{}", m.capacity());
        assert_eq!(m.len(), 100);
        assert!((0..100).all(|k| m[&k] == k));
    }
}
