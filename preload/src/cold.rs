//! The part of a thread's state that the fast paths never touch: the memo of its last walk
//! (`memo.rs`, about 1 KiB) and the queue of changes it deferred while re-entering the
//! profiler (`defer.rs`). It lives outside TLS, in slots of a process-wide pool, so that the
//! initial-exec TLS block stays small (128 bytes): a library loaded with `dlopen` (attached to
//! a running process) gets its static TLS from glibc's small surplus, and 1.7 KiB did not fit.
//!
//! A thread claims a slot the first time it needs one, lock-free, with its owner token (the
//! address of its TLS block, unique among live threads). Slots are never returned: a thread
//! that exits leaves its slot to the next thread with the same token (glibc reuses a dead
//! thread's stack, and with it the address of its TLS block), which claims it by finding its
//! token there, resets it and uses it. So the pool grows with the number of distinct TLS
//! addresses a process has had, not with the number of threads it ever created. Claiming
//! scans the pool (once per thread) and makes no system call but the `mmap` of a new chunk of
//! 64 slots; it is async-signal-safe (a signal handler's deferred change may be the first).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::memo::Memo;
use crate::thread::{self, Deferred};

#[repr(C)]
pub struct Cold {
    /// Owner token (`sync::me()`); 0 = free.
    owner: AtomicUsize,
    /// Entries of `deferred` in use (`defer.rs`).
    pub deferred_len: AtomicU32,
    _pad: u32,
    pub memo: UnsafeCell<Memo>,
    pub deferred: UnsafeCell<[Deferred; crate::defer::CAPACITY]>,
}

const PER_CHUNK: usize = 64;
const MAX_CHUNKS: usize = 1024;

static CHUNKS: [AtomicPtr<Cold>; MAX_CHUNKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CHUNKS];

fn chunk(i: usize) -> Option<&'static [Cold]> {
    let p = CHUNKS[i].load(Ordering::Acquire);
    // SAFETY: a published chunk is a mapping of PER_CHUNK zero-initialized (valid: all fields
    // are integers and cells of integers) slots that is never unmapped.
    (!p.is_null()).then(|| unsafe { core::slice::from_raw_parts(p, PER_CHUNK) })
}

/// The calling thread's slot, claimed on first use; `None` if the pool cannot grow (out of
/// memory, or a million threads' worth of slots in use): the thread then walks without a memo
/// and cannot defer changes (one stderr line says so, from `defer::overflowed`).
#[inline]
pub fn current() -> Option<&'static Cold> {
    let t = thread::current();
    let p = t.cold.get();
    if !p.is_null() {
        // SAFETY: set by `claim` below to a slot of a chunk that is never unmapped.
        return Some(unsafe { &*p });
    }
    claim(t)
}

#[cold]
#[inline(never)]
fn claim(t: &thread::ThreadState) -> Option<&'static Cold> {
    let me = crate::sync::me();
    // A slot a dead thread with our token left behind.
    for i in 0..MAX_CHUNKS {
        let Some(c) = chunk(i) else { break };
        if let Some(s) = c.iter().find(|s| s.owner.load(Ordering::Relaxed) == me) {
            return Some(adopt(t, s));
        }
    }
    for (i, slot) in CHUNKS.iter().enumerate() {
        let c = match chunk(i) {
            Some(c) => c,
            None => {
                let bytes = PER_CHUNK * core::mem::size_of::<Cold>();
                let fresh = crate::sys::map_anon(bytes)?.cast::<Cold>();
                if slot
                    .compare_exchange(
                        core::ptr::null_mut(),
                        fresh,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_err()
                {
                    // Another thread published this chunk first.
                    // SAFETY: our mapping, never published.
                    unsafe { crate::sys::unmap(fresh.cast(), bytes) };
                }
                chunk(i)?
            }
        };
        for s in c {
            if s.owner.load(Ordering::Relaxed) == 0
                && s.owner
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(adopt(t, s));
            }
        }
    }
    None
}

/// Makes `s` (owned by our token) the thread's slot, as good as new: a memo left by a dead
/// thread names addresses of its stack, which may be gone.
fn adopt(t: &thread::ThreadState, s: &'static Cold) -> &'static Cold {
    // SAFETY: the slot is ours (our token); no other thread touches it, and this thread does
    // not hold a reference to its memo or queue while it adopts it.
    unsafe {
        *s.memo.get() = Memo::EMPTY;
    }
    s.deferred_len.store(0, Ordering::Relaxed);
    t.cold.set(s as *const Cold as *mut Cold);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_slot_and_threads_do_not_share() {
        let a = current().unwrap() as *const Cold as usize;
        assert_eq!(current().unwrap() as *const Cold as usize, a);
        let b = std::thread::spawn(|| current().unwrap() as *const Cold as usize)
            .join()
            .unwrap();
        assert_ne!(a, b);
    }
}
