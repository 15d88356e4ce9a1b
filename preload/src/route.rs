//! `free`'s jump table: for each hash of an address, the function a `free` of it goes to.
//!
//! The x86-64 `free` is four instructions: hash the address (`imul`, `shr`), take the table's
//! address, and jump through `slots[hash]`. A slot holds the default target (the real free;
//! in exact mode, and before start-up, something else) unless a live sampled block or a
//! bootstrap block hashes to it; then it holds `free_filtered`, which asks the live table's
//! byte filter and, only if that says yes too, the table itself. So the "is it sampled?"
//! question and the jump to the real free are one load and one indirect jump, which the
//! branch predictor sees go to the same place nearly every time.
//!
//! 8 Ki slots of 8 bytes: 64 KiB, the same footprint in cache as the byte filter behind it.
//! With n live samples, a free of an unsampled block lands on a marked slot with chance about
//! n/8192; it then costs the byte-filter check (indexed differently, so the two rarely
//! collide together) and not the table's lock. A smaller table misses the cache less (8 KiB
//! measured about 3% less CPU on the two-thread benchmark, whose few live samples leave it
//! nearly empty), but with a thousand live samples, a few hundred MiB of heap at the default
//! rate, it would send most frees the long way.
//!
//! Slots change only when a marked count goes between 0 and 1 or the default changes, under
//! one of 64 striped locks: a count and its slot must change together, or a mark could be
//! overwritten by the default while its block is live. (One lock for all would be a line that
//! both threads of a two-thread program write at every sample.)

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::sync::SpinLock;

pub const ROUTE_BITS: u32 = 13;
pub const ROUTE_SLOTS: usize = 1 << ROUTE_BITS;
/// Multiplier of the slot hash: 2^32 / φ, odd (Fibonacci hashing), so that consecutive
/// 16-byte blocks land far apart and every address bit below bit 32 counts.
pub const ROUTE_MUL: u32 = 0x9E37_79B9;
const STUCK: u8 = u8::MAX;

/// The slot of `addr`: the top `ROUTE_BITS` bits of the low 32 bits of `addr · ROUTE_MUL`,
/// exactly what the x86-64 `free` computes with `imul eax, edi, MUL; shr eax, 32 - BITS`.
#[inline(always)]
pub fn index(addr: usize) -> usize {
    ((addr as u32).wrapping_mul(ROUTE_MUL) >> (32 - ROUTE_BITS)) as usize
}

/// Live sampled and bootstrap blocks of the slots `i` with `i % STRIPES == s`, at `i / STRIPES`;
/// a count saturates at `STUCK` and then stays. A slot's count and its target change together
/// under the stripe's lock. Striped, not one lock, so that two threads' samples rarely write
/// the same line.
#[repr(C, align(64))]
struct Stripe(SpinLock<[u8; ROUTE_SLOTS / STRIPES]>);

const STRIPES: usize = 64;

/// `repr(C)` with the slots first: the x86-64 `free` addresses them as the table's address.
#[repr(C, align(64))]
pub struct Routes {
    slots: [AtomicPtr<c_void>; ROUTE_SLOTS],
    /// Where unmarked slots go. Stored before the slots are visited when it changes, and read
    /// under a stripe lock, so an unmark racing with the change leaves the new value.
    default: AtomicPtr<c_void>,
    /// Where marked slots go (`free_filtered`); fixed.
    marked: AtomicPtr<c_void>,
    stripes: [Stripe; STRIPES],
}

const _: () = assert!(core::mem::offset_of!(Routes, slots) == 0);

impl Routes {
    /// Every slot goes to `default`; marked slots will go to `marked`.
    pub const fn new(default: *mut c_void, marked: *mut c_void) -> Self {
        Routes {
            slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; ROUTE_SLOTS],
            default: AtomicPtr::new(default),
            marked: AtomicPtr::new(marked),
            stripes: [const { Stripe(SpinLock::new([0; ROUTE_SLOTS / STRIPES])) }; STRIPES],
        }
        .filled(default)
    }

    const fn filled(mut self, f: *mut c_void) -> Self {
        let mut i = 0;
        while i < ROUTE_SLOTS {
            self.slots[i] = AtomicPtr::new(f);
            i += 1;
        }
        self
    }

    /// Where a `free` of `addr` goes now.
    #[inline(always)]
    pub fn target(&self, addr: usize) -> *mut c_void {
        self.slots[index(addr)].load(Ordering::Relaxed)
    }

    /// Sends every unmarked slot to `f` from now on (the real free, once it is known).
    pub fn set_default(&self, f: *mut c_void) {
        self.default.store(f, Ordering::Release);
        for (s, stripe) in self.stripes.iter().enumerate() {
            let counts = stripe.0.lock();
            for (k, &n) in counts.iter().enumerate() {
                if n == 0 {
                    self.slots[k * STRIPES + s].store(f, Ordering::Release);
                }
            }
        }
    }

    /// Sends every slot to the marked target from now on (exact mode: every block is live).
    pub fn mark_everything(&self) {
        self.set_default(self.marked.load(Ordering::Relaxed));
    }

    /// A block at `addr` is to be looked up when freed. Before the block is handed out: a
    /// `free` of it can only come after this returns.
    pub fn mark(&self, addr: usize) {
        let i = index(addr);
        let mut counts = self.stripes[i % STRIPES].0.lock();
        let n = &mut counts[i / STRIPES];
        if *n != STUCK {
            *n += 1;
        }
        self.slots[i].store(self.marked.load(Ordering::Relaxed), Ordering::Release);
    }

    /// The block at `addr` that `mark` counted is gone.
    pub fn unmark(&self, addr: usize) {
        let i = index(addr);
        let mut counts = self.stripes[i % STRIPES].0.lock();
        let n = &mut counts[i / STRIPES];
        if *n != STUCK && *n != 0 {
            *n -= 1;
            if *n == 0 {
                self.slots[i].store(self.default.load(Ordering::Acquire), Ordering::Release);
            }
        }
    }

    /// Takes every lock without a guard (before fork).
    pub fn lock_for_fork(&self) {
        for s in &self.stripes {
            s.0.raw_lock();
        }
    }

    /// Releases the locks taken by `lock_for_fork`.
    ///
    /// # Safety
    /// As `SpinLock::force_unlock`.
    pub unsafe fn unlock_after_fork(&self) {
        for s in &self.stripes {
            // SAFETY: the caller's contract.
            unsafe { s.0.force_unlock() };
        }
    }

    #[cfg(test)]
    fn count(&self, addr: usize) -> u8 {
        let i = index(addr);
        self.stripes[i % STRIPES].0.lock()[i / STRIPES]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: *mut c_void = 0x1000 as *mut c_void;
    const MARKED: *mut c_void = 0x2000 as *mut c_void;
    const REAL: *mut c_void = 0x3000 as *mut c_void;

    fn routes() -> Box<Routes> {
        Box::new(Routes::new(DEFAULT, MARKED))
    }

    /// `n` 16-byte-aligned addresses above `base` that share its slot.
    fn slot_mates(base: usize, n: usize) -> Vec<usize> {
        let mates: Vec<usize> = (1..1usize << 24)
            .map(|k| base + 16 * k)
            .filter(|&x| index(x) == index(base))
            .take(n)
            .collect();
        assert_eq!(mates.len(), n);
        mates
    }

    #[test]
    fn index_matches_the_documented_hash_and_spreads_neighbours() {
        assert_eq!(index(0), 0);
        assert_eq!(
            index(0x10),
            (0x10u32.wrapping_mul(ROUTE_MUL) >> 19) as usize
        );
        // Only the low 32 bits count.
        assert_eq!(index(0x7f00_0000_1230), index(0x1230));
        // 4096 consecutive 16-byte blocks: no slot takes more than a handful.
        let mut per = vec![0u32; ROUTE_SLOTS];
        for k in 0..4096usize {
            per[index(0x5555_0000 + 16 * k)] += 1;
        }
        assert!(
            per.iter().all(|&n| n <= 2),
            "max {}",
            per.iter().max().unwrap()
        );
    }

    #[test]
    fn marks_count_and_the_default_spares_marked_slots() {
        let r = routes();
        let (a, b) = (0x5000usize, 0x9000usize);
        let a2 = slot_mates(a, 1)[0];
        assert_eq!(r.target(a), DEFAULT);
        r.mark(a);
        r.mark(a2);
        assert_eq!((r.target(a), r.count(a)), (MARKED, 2));
        r.set_default(REAL);
        assert_eq!(r.target(a), MARKED, "a marked slot keeps its mark");
        assert_eq!(r.target(b), REAL);
        r.unmark(a);
        assert_eq!(r.target(a2), MARKED, "one block of the slot is still live");
        r.unmark(a2);
        assert_eq!(
            (r.target(a), r.count(a)),
            (REAL, 0),
            "back to the new default"
        );
        r.unmark(a);
        assert_eq!(r.count(a), 0, "an unmatched unmark is ignored");
        assert!(r.slots.iter().all(|s| s.load(Ordering::Relaxed) == REAL));
    }

    #[test]
    fn saturated_counts_stay_marked() {
        let r = routes();
        let base = 0x7000_0000usize;
        let same = slot_mates(base, 300);
        same.iter().for_each(|&x| r.mark(x));
        same.iter().for_each(|&x| r.unmark(x));
        assert_eq!((r.count(base), r.target(base)), (STUCK, MARKED));
    }

    #[test]
    fn concurrent_marks_never_lose_a_live_mark() {
        // Two threads mark and unmark other blocks of one slot while a third block there
        // stays live: the slot must stay marked throughout, whatever the interleaving.
        let r: &'static Routes = Box::leak(routes());
        let keep = 0x4000usize;
        let peers = slot_mates(keep, 2);
        r.mark(keep);
        let hs: Vec<_> = peers
            .into_iter()
            .map(|x| {
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        r.mark(x);
                        assert_eq!(r.target(keep), MARKED);
                        r.unmark(x);
                        assert_eq!(r.target(keep), MARKED);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(r.count(keep), 1);
        r.unmark(keep);
        assert_eq!(r.target(keep), DEFAULT);
    }

    #[test]
    fn a_new_default_reaches_slots_unmarked_meanwhile() {
        // A thread marks and unmarks while the default changes; after each change, with the
        // thread paused between a mark and its unmark, every empty slot holds the new default.
        use std::sync::atomic::AtomicU8;
        const RUN: u8 = 0;
        const PAUSE: u8 = 1;
        const PAUSED: u8 = 2;
        const STOP: u8 = 3;
        let r: &'static Routes = Box::leak(routes());
        let state: &'static AtomicU8 = Box::leak(Box::new(AtomicU8::new(RUN)));
        let h = std::thread::spawn(move || {
            let mut k = 0usize;
            loop {
                match state.load(Ordering::Acquire) {
                    STOP => return,
                    PAUSE => state.store(PAUSED, Ordering::Release),
                    PAUSED => core::hint::spin_loop(),
                    _ => {
                        let a = 0x10_0000 + 16 * (k % 4096);
                        r.mark(a);
                        r.unmark(a);
                        k += 1;
                    }
                }
            }
        });
        for round in 0..300 {
            let d = if round % 2 == 0 { REAL } else { DEFAULT };
            // Land the change at varying points of the thread's work.
            for _ in 0..(round * 7919) % 20_000 {
                core::hint::spin_loop();
            }
            r.set_default(d);
            state.store(PAUSE, Ordering::Release);
            while state.load(Ordering::Acquire) != PAUSED {
                core::hint::spin_loop();
            }
            let stale = r
                .slots
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) != d)
                .count();
            assert_eq!(stale, 0, "round {round}: slots left on an old default");
            state.store(RUN, Ordering::Release);
        }
        state.store(STOP, Ordering::Release);
        h.join().unwrap();
    }
}
