//! `free`'s jump table: for each 4 KiB page (modulo 32 MiB), the function a `free` there goes to.
//!
//! The x86-64 `free` is four instructions: take the page number's low 13 bits (`imul`, `shr`),
//! take the table's address, and jump through `slots[page]`. A slot holds the default target
//! (the real free; in exact mode, and before start-up, something else) unless a live sampled
//! block or a bootstrap block starts in a page of that slot; then it holds `free_filtered`,
//! which asks the live table's byte filter and, only if that says yes too, the table itself.
//! So the "is it sampled?" question and the jump to the real free are one load and one
//! indirect jump, which the branch predictor sees go to the same place nearly every time.
//!
//! 8 Ki slots of 8 bytes (64 KiB). Indexed by page, not by a hash of the address, so that the
//! slots a program's frees read are as few as the pages its heap churns: a 1 MiB heap reads
//! 256 slots (32 cache lines), where a hash of the whole address spread the same frees over
//! all 1024 lines and added 1.25 L1 misses per malloc/free pair (callgrind: 3.25 misses per
//! pair against 2.00 plain; by page, 2.19). The price is that every block of a page holding a
//! live sample (and of the pages 32 MiB apart) takes the detour through the byte filter: with
//! n live samples on a heap of P pages, a fraction of about n/P of frees (0.7% on the
//! benchmark, 1.2% with two threads, whose arenas are 64 MiB apart and share slots). A large
//! heap marks the same share of slots as a hash would: one per live sample.
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
/// A slot stands for the pages whose number is equal modulo `ROUTE_SLOTS`.
pub const ROUTE_PAGE_SHIFT: u32 = 12;
/// `imul eax, edi, ROUTE_MUL; shr eax, 32 - ROUTE_BITS` is `index`: multiplying by 2^7
/// shifts address bits 12–24 to the top of the low 32 bits (and drops the ones above), where
/// the right shift takes them; an `imul` with an immediate also saves the `mov` a `shl` needs.
pub const ROUTE_MUL: u32 = 1 << (32 - ROUTE_BITS - ROUTE_PAGE_SHIFT);
const STUCK: u8 = u8::MAX;

/// The slot of `addr`: its page number modulo `ROUTE_SLOTS`, exactly what the x86-64 `free`
/// computes with `imul eax, edi, ROUTE_MUL; shr eax, 32 - ROUTE_BITS`.
#[inline(always)]
pub fn index(addr: usize) -> usize {
    (addr >> ROUTE_PAGE_SHIFT) & (ROUTE_SLOTS - 1)
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

    /// `n` addresses above `base` that share its slot: the same page offset, 32 MiB apart.
    fn slot_mates(base: usize, n: usize) -> Vec<usize> {
        let span = ROUTE_SLOTS << ROUTE_PAGE_SHIFT;
        let mates: Vec<usize> = (1..=n).map(|k| base + k * span).collect();
        assert!(mates.iter().all(|&x| index(x) == index(base)));
        mates
    }

    #[test]
    fn index_is_the_page_number_the_asm_computes() {
        // What `free`'s `imul` and `shr` compute, for addresses across the whole range.
        let asm = |a: usize| ((a as u32).wrapping_mul(ROUTE_MUL) >> (32 - ROUTE_BITS)) as usize;
        let mut x = 0x9E37_79B9_7F4A_7C15usize;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(index(x), asm(x), "{x:#x}");
            assert_eq!(index(x & !0xf), asm(x & !0xf));
        }
        assert_eq!(index(0x7f00_1234_5010), 0x345);
        // A page is one slot; neighbouring pages are neighbouring slots (one cache line holds
        // the slots of 8 pages); the slots repeat every 32 MiB.
        assert_eq!(index(0x5555_1000), index(0x5555_1ff0));
        assert_eq!(index(0x5555_2000), index(0x5555_1000) + 1);
        assert_eq!(index(0x5555_1000 + (32 << 20)), index(0x5555_1000));
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
