//! Changes that a thread could not make because it re-entered the profiler while holding the
//! lock they need.
//!
//! A signal handler that frees a sampled block can interrupt its own thread inside
//! `LiveTable::remove`, holding that block's shard lock; a `pthread_atfork` handler runs while
//! the fork protocol holds every lock. Waiting would never end, and skipping the change would
//! leave a freed block in the table. So the change is queued here, in the thread's own state
//! (its slot of `cold.rs`),
//! the lock is flagged (`SpinLock::mark_pending`), and the interrupted owner applies the queue
//! before its release goes through (`sync.rs`). Only the thread itself (its code and its
//! signal handlers, which run to completion in between its instructions) touches its queue.
//!
//! Entries are applied in the order they were queued, under the lock they name. A removal
//! cancels a queued insertion of the same block (a handler's `free(malloc(n))` leaves nothing
//! behind), so the queue holds only net changes.

use core::sync::atomic::Ordering;

use crate::thread::Deferred;

pub const CAPACITY: usize = 16;

pub const NONE: u32 = 0;
pub const LIVE_INSERT: u32 = 1;
pub const LIVE_REMOVE: u32 = 2;
pub const MAP: u32 = 3;
pub const UNMAP: u32 = 4;

/// Queues a change for the lock `key`. False when the queue is full.
pub fn push(key: usize, kind: u32, extra: u32, a: usize, b: u64) -> bool {
    let Some(t) = crate::cold::current() else {
        return false;
    };
    // SAFETY: only this thread touches its queue, and a signal handler that interrupts it runs
    // to completion before the interrupted code continues (see the module doc).
    let q = unsafe { &mut *t.deferred.get() };
    let len = t.deferred_len.load(Ordering::Relaxed) as usize;
    if kind == LIVE_REMOVE
        && let Some(e) = q[..len]
            .iter_mut()
            .rev()
            .find(|e| e.key == key && e.a == a && e.kind != NONE)
        && e.kind == LIVE_INSERT
    {
        e.kind = NONE;
        return true;
    }
    if len == CAPACITY {
        return false;
    }
    q[len] = Deferred {
        key,
        kind,
        extra,
        a,
        b,
    };
    // Published after the entry is written: a drain that sees the new length sees the entry.
    core::sync::atomic::compiler_fence(Ordering::Release);
    t.deferred_len.store(len as u32 + 1, Ordering::Relaxed);
    true
}

/// Cancels the last queued removal of `a` under `key` (a `realloc` whose removal was queued
/// failed: the block is still live). True if one was found.
pub fn cancel_remove(key: usize, a: usize) -> bool {
    let Some(t) = crate::cold::current() else {
        return false;
    };
    // SAFETY: as in `push`.
    let q = unsafe { &mut *t.deferred.get() };
    let len = t.deferred_len.load(Ordering::Relaxed) as usize;
    match q[..len]
        .iter_mut()
        .rev()
        .find(|e| e.key == key && e.a == a && e.kind == LIVE_REMOVE)
    {
        Some(e) => {
            e.kind = NONE;
            true
        }
        None => false,
    }
}

/// Applies, in order, every change queued for `key` (the caller holds that lock), then
/// empties the queue if nothing is left in it.
pub fn drain(key: usize, mut apply: impl FnMut(&Deferred)) {
    let Some(t) = crate::cold::current() else {
        return;
    };
    let mut i = 0;
    loop {
        // Re-read each time: a handler may queue more while we apply.
        let len = t.deferred_len.load(Ordering::Relaxed) as usize;
        if i >= len {
            break;
        }
        // SAFETY: as in `push`; the entry is copied out before it is applied.
        let e = unsafe { (*t.deferred.get())[i] };
        if e.key == key && e.kind != NONE {
            // Marked done before it is applied: a nested drain (a handler that takes the same
            // lock after we release it) must not apply it twice.
            // SAFETY: as in `push`.
            unsafe { (*t.deferred.get())[i].kind = NONE };
            apply(&e);
        }
        i += 1;
    }
    // Empty the queue if every entry is done. One compare-and-swap: a handler that queued an
    // entry after our last look made the length differ, and the queue stays.
    // SAFETY: as in `push`.
    let q = unsafe { &*t.deferred.get() };
    let len = t.deferred_len.load(Ordering::Relaxed) as usize;
    if q[..len].iter().all(|e| e.kind == NONE) {
        let _ =
            t.deferred_len
                .compare_exchange(len as u32, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Says once that a change was lost because the queue was full.
pub fn overflowed() {
    static SAID: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        crate::sys::say(&[
            b"too many changes re-entered the profiler inside one critical section; some were lost",
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_cancels_a_queued_insertion_and_drain_applies_in_order() {
        let key = 0x1000;
        assert!(push(key, LIVE_INSERT, 0, 0xa0, 7));
        assert!(push(key, LIVE_REMOVE, 0, 0xb0, 0));
        assert!(push(0x2000, MAP, 3, 0xc000, 0xd000));
        assert!(push(key, LIVE_REMOVE, 0, 0xa0, 0)); // cancels the insertion of 0xa0
        assert!(push(key, LIVE_INSERT, 0, 0xa0, 9));
        let mut seen = Vec::new();
        drain(key, |e| seen.push((e.kind, e.a, e.b)));
        assert_eq!(seen, [(LIVE_REMOVE, 0xb0, 0), (LIVE_INSERT, 0xa0, 9)]);
        // The other lock's entry is still queued.
        let mut other = Vec::new();
        drain(0x2000, |e| other.push((e.kind, e.extra, e.a, e.b)));
        assert_eq!(other, [(MAP, 3, 0xc000, 0xd000)]);
        assert_eq!(
            crate::cold::current()
                .unwrap()
                .deferred_len
                .load(Ordering::Relaxed),
            0,
            "an all-done queue is emptied"
        );
        // Capacity, and cancel_remove.
        for i in 0..CAPACITY {
            assert!(push(key, LIVE_REMOVE, 0, i, 0));
        }
        assert!(!push(key, LIVE_REMOVE, 0, 999, 0));
        assert!(cancel_remove(key, 3));
        assert!(!cancel_remove(key, 3));
        let mut n = 0;
        drain(key, |_| n += 1);
        assert_eq!(n, CAPACITY - 1);
    }
}
