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
//! collide together) and not the table's lock.
//!
//! Slots change only when a marked count goes between 0 and 1 or the default changes, under
//! one lock: a count and its slot must change together, or a mark could be overwritten by
//! the default while its block is live. Samples are rare, so the lock is too.

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

/// A code address, in a form the lock's state may hold (raw pointers are not `Send`).
#[derive(Clone, Copy)]
struct Target(*mut c_void);
// SAFETY: a function address, the same in every thread.
unsafe impl Send for Target {}

struct State {
    default: Target,
    marked: Target,
    /// Live sampled and bootstrap blocks per slot; saturates at `STUCK` and then stays.
    counts: [u8; ROUTE_SLOTS],
}

/// `repr(C)` with the slots first: the x86-64 `free` addresses them as the table's address.
#[repr(C, align(64))]
pub struct Routes {
    slots: [AtomicPtr<c_void>; ROUTE_SLOTS],
    state: SpinLock<State>,
}

const _: () = assert!(core::mem::offset_of!(Routes, slots) == 0);

impl Routes {
    /// Every slot goes to `default`; marked slots will go to `marked`.
    pub const fn new(default: *mut c_void, marked: *mut c_void) -> Self {
        Routes {
            slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; ROUTE_SLOTS],
            state: SpinLock::new(State {
                default: Target(default),
                marked: Target(marked),
                counts: [0; ROUTE_SLOTS],
            }),
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
        let mut st = self.state.lock();
        Self::fill_unmarked(&self.slots, &mut st, f);
    }

    /// Sends every slot to the marked target from now on (exact mode: every block is live).
    pub fn mark_everything(&self) {
        let mut st = self.state.lock();
        let f = st.marked.0;
        Self::fill_unmarked(&self.slots, &mut st, f);
    }

    fn fill_unmarked(slots: &[AtomicPtr<c_void>], st: &mut State, f: *mut c_void) {
        st.default = Target(f);
        for (slot, &n) in slots.iter().zip(st.counts.iter()) {
            if n == 0 {
                slot.store(f, Ordering::Release);
            }
        }
    }

    /// A block at `addr` is to be looked up when freed. Before the block is handed out: a
    /// `free` of it can only come after this returns.
    pub fn mark(&self, addr: usize) {
        let i = index(addr);
        let mut st = self.state.lock();
        if st.counts[i] != STUCK {
            st.counts[i] += 1;
        }
        self.slots[i].store(st.marked.0, Ordering::Release);
    }

    /// The block at `addr` that `mark` counted is gone.
    pub fn unmark(&self, addr: usize) {
        let i = index(addr);
        let mut st = self.state.lock();
        let n = st.counts[i];
        if n != STUCK && n != 0 {
            st.counts[i] = n - 1;
            if n == 1 {
                self.slots[i].store(st.default.0, Ordering::Release);
            }
        }
    }

    /// Takes the lock without a guard (before fork).
    pub fn lock_for_fork(&self) {
        self.state.raw_lock();
    }

    /// Releases the lock taken by `lock_for_fork`.
    ///
    /// # Safety
    /// As `SpinLock::force_unlock`.
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: the caller's contract.
        unsafe { self.state.force_unlock() };
    }

    #[cfg(test)]
    fn count(&self, addr: usize) -> u8 {
        self.state.lock().counts[index(addr)]
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
        // A second address with a's slot.
        let a2 = (1..1 << 20)
            .map(|k| a + 16 * k)
            .find(|&x| index(x) == index(a) && x != a)
            .unwrap();
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
        let same: Vec<usize> = (0..1usize << 24)
            .map(|k| base + 16 * k)
            .filter(|&x| index(x) == index(base))
            .take(300)
            .collect();
        assert_eq!(same.len(), 300);
        same.iter().for_each(|&x| r.mark(x));
        same.iter().for_each(|&x| r.unmark(x));
        assert_eq!((r.count(base), r.target(base)), (STUCK, MARKED));
    }

    #[test]
    fn concurrent_marks_never_lose_a_live_mark() {
        // Two threads churn blocks of one slot; a block each keeps alive must keep the slot
        // marked throughout, whatever the interleaving of the others' unmarks.
        let r: &'static Routes = Box::leak(routes());
        let keep = 0x4000usize;
        let peers: Vec<usize> = (1..1usize << 24)
            .map(|k| keep + 16 * k)
            .filter(|&x| index(x) == index(keep))
            .take(2)
            .collect();
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
}
