//! The profiler's spin lock (stack-table overflow, live-table shards, the mapping list, dumps).
//! Never held across a call into the host's code.
//!
//! The lock word holds its owner: the address of the owning thread's state (`thread.rs`,
//! unique among live threads and 64-byte aligned), so that a thread that finds the lock held
//! *by itself* knows it has re-entered the profiler (a signal handler, or a `pthread_atfork`
//! handler running while the fork protocol holds every lock) and must not wait: it would wait
//! forever. `acquire` returns `None` then, and the caller defers its change (`defer.rs`):
//! it queues the change in its thread's state and sets the lock's low bit, `PENDING`. The
//! owner's release is a compare-and-swap from "owned, nothing pending" to free, which fails
//! while that bit is set; the owner then applies the queued changes under the lock and tries
//! again. A signal can land between any two instructions of the owner, but the swap and the
//! bit are single instructions, so no queued change is ever left behind a released lock.
//!
//! Spinning yields to the scheduler after a short while so that a preempted holder can run.
//! `force_unlock` exists for fork: the atfork handlers take every lock in the parent before
//! `fork()` and release them in both processes afterwards.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Set in the lock word by a re-entrant context that queued a change for the owner.
pub const PENDING: usize = 1;

/// The calling thread's owner token (never 0, low bit clear).
#[inline(always)]
pub fn me() -> usize {
    crate::thread::current() as *const crate::thread::ThreadState as usize
}

#[repr(C)]
pub struct SpinLock<T> {
    word: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialized by `word`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: as above; the lock owns its value.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            word: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Waits for the lock. `None` when the calling thread holds it already (re-entry): the
    /// caller must not touch the value, and must not wait.
    #[inline]
    pub fn acquire(&self) -> Option<SpinGuard<'_, T>> {
        let me = me();
        // Uncontended (nearly always): one compare-and-swap, no load before it.
        if let Err(now) =
            self.word
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            && !self.acquire_contended(me, now, u64::MAX)
        {
            return None;
        }
        Some(SpinGuard { lock: self, me })
    }

    /// Like `acquire`, but gives up after about `ns` nanoseconds of waiting for another
    /// thread (the exit path, which must never wait forever).
    pub fn acquire_within(&self, ns: u64) -> Option<SpinGuard<'_, T>> {
        let me = me();
        if let Err(now) = self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            && !self.acquire_contended(me, now, ns)
        {
            return None;
        }
        Some(SpinGuard { lock: self, me })
    }

    /// Takes the lock if it is free now.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        let me = me();
        self.word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self, me })
    }

    /// Waits for the lock (tests, and values no re-entrant path can reach).
    #[cfg(test)]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.acquire().expect("lock re-entered")
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub fn held_by_me(&self) -> bool {
        self.word.load(Ordering::Relaxed) & !PENDING == me()
    }

    #[cold]
    #[inline(never)]
    fn acquire_contended(&self, me: usize, mut now: usize, limit_ns: u64) -> bool {
        let start = if limit_ns == u64::MAX {
            0
        } else {
            crate::sys::now_monotonic_ns()
        };
        let mut spins = 0u32;
        loop {
            if now & !PENDING == me {
                return false; // held by this very thread: waiting would never end
            }
            if now == 0 {
                match self
                    .word
                    .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) => return true,
                    Err(v) => now = v,
                }
                continue;
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                if limit_ns != u64::MAX
                    && crate::sys::now_monotonic_ns().saturating_sub(start) > limit_ns
                {
                    return false;
                }
                crate::sys::sched_yield();
            }
            now = self.word.load(Ordering::Relaxed);
        }
    }

    /// Tells the owner (this thread, interrupted inside its critical section) that a change
    /// was queued for it.
    pub fn mark_pending(&self) {
        self.word.fetch_or(PENDING, Ordering::Relaxed);
    }

    /// Takes the lock without a guard (for the fork protocol). False, without waiting, when
    /// the calling thread holds it already (fork called from a signal handler that interrupted
    /// the profiler): the interrupted code still owns it and will release it.
    pub fn raw_lock(&self) -> bool {
        let me = me();
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(now) => self.acquire_contended(me, now, u64::MAX),
        }
    }

    /// Releases a lock taken by `raw_lock`, running `drain` on the value first for as long
    /// as changes were queued for it (see the module doc).
    ///
    /// # Safety
    /// The calling thread took the lock with `raw_lock` (in a fork child: the only thread).
    pub unsafe fn release_raw(&self, drain: impl FnMut(usize, &mut T)) {
        // SAFETY: held by the caller (contract).
        unsafe { self.release(me(), Some(drain)) }
    }

    /// Releases the lock (owned by `me`), draining queued changes first.
    ///
    /// # Safety
    /// `me` owns the lock.
    #[inline(always)]
    unsafe fn release(&self, me: usize, drain: Option<impl FnMut(usize, &mut T)>) {
        if self
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        // SAFETY: as for `release`.
        unsafe { self.release_pending(me, drain) }
    }

    /// `release` when changes are pending.
    ///
    /// # Safety
    /// `me` owns the lock.
    #[cold]
    #[inline(never)]
    unsafe fn release_pending(&self, me: usize, mut drain: Option<impl FnMut(usize, &mut T)>) {
        while self
            .word
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // PENDING: clear it first, so that a change queued while we drain sets it again.
            self.word.fetch_and(!PENDING, Ordering::Relaxed);
            if let Some(d) = drain.as_mut() {
                // SAFETY: still held by `me`.
                d(self as *const Self as usize, unsafe {
                    &mut *self.value.get()
                });
            }
        }
    }

    /// Releases the lock unconditionally (fork child: the lock word names a thread of the
    /// parent).
    ///
    /// # Safety
    /// No other thread may be using the value.
    pub unsafe fn force_unlock(&self) {
        self.word.store(0, Ordering::Release);
    }

    /// A key identifying this lock in queued changes.
    pub fn key(&self) -> usize {
        self as *const Self as usize
    }
}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    me: usize,
}

impl<'a, T> SpinGuard<'a, T> {
    /// Releases the lock, running `drain` on the value for the changes queued for it while it
    /// was held (see the module doc).
    pub fn release_with(self, drain: impl FnMut(usize, &mut T)) {
        let (lock, me) = (self.lock, self.me);
        core::mem::forget(self);
        // SAFETY: the guard proves `me` owns the lock.
        unsafe { lock.release(me, Some(drain)) };
    }
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard proves `me` owns the lock. Nothing can be pending on a lock that
        // is released without a drain (no re-entrant path queues changes for it), but the
        // swap keeps the word consistent either way.
        unsafe { self.lock.release(self.me, None::<fn(usize, &mut T)>) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn counts_under_contention() {
        let l = Arc::new(SpinLock::new(0u64));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*l.lock(), 40_000);
    }

    /// A failed `try_lock` must leave the holder's lock alone (it used to build a guard even
    /// when the swap failed, whose drop released the holder's lock: concurrent dumps then
    /// shared one buffer).
    #[test]
    fn try_lock_never_releases_a_lock_it_did_not_take() {
        let l = Arc::new(SpinLock::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let (l, stop) = (l.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut inside = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(mut g) = l.try_lock() {
                            // Exclusive: no one else may change the value while we hold it.
                            let v = *g;
                            *g = v + 1;
                            for _ in 0..50 {
                                core::hint::spin_loop();
                            }
                            assert_eq!(*g, v + 1, "another thread entered the critical section");
                            inside += 1;
                        }
                    }
                    inside
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let total: u64 = holders.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(*l.lock(), total);
        let g = l.lock();
        assert!(l.try_lock().is_none());
        assert!(l.held_by_me());
        drop(g);
        assert!(!l.held_by_me());
        assert!(l.try_lock().is_some());
    }

    #[test]
    fn re_entry_is_refused_and_queued_changes_drain_before_release() {
        static DRAINED: AtomicUsize = AtomicUsize::new(0);
        fn drain(_key: usize, v: &mut u64) {
            *v += 100;
            DRAINED.fetch_add(1, Ordering::Relaxed);
        }
        let l = SpinLock::new(0u64);
        let g = l.acquire().unwrap();
        // What a signal handler on this thread would see.
        assert!(l.acquire().is_none());
        assert!(l.acquire_within(1_000_000).is_none());
        l.mark_pending();
        g.release_with(drain);
        assert_eq!(DRAINED.load(Ordering::Relaxed), 1);
        assert_eq!(*l.lock(), 100);
        // Another thread waits with a bound.
        let l = Arc::new(SpinLock::new(()));
        let g = l.acquire().unwrap();
        let l2 = l.clone();
        let got = std::thread::spawn(move || l2.acquire_within(20_000_000).is_some())
            .join()
            .unwrap();
        assert!(!got);
        drop(g);
    }
}
