//! `free`'s jump table: for each slot (about a 4 KiB page), the function a `free` there goes
//! to.
//!
//! The x86-64 `free` is four instructions: hash the address into a slot (`imul`, `shr`), take
//! the table's address, and jump through `slots[index]`. A slot holds the default target (the
//! real free; in exact mode, and before start-up, something else) unless a live sampled block
//! or a bootstrap block lies in that slot; then it holds `free_filtered`, which asks the live
//! table's byte filter and, only if that says yes too, the table itself. So the "is it
//! sampled?" question and the jump to the real free are one load and one indirect jump, which
//! the branch predictor sees go to the same place nearly every time.
//!
//! 8 Ki slots of 8 bytes (64 KiB). The index is nearly the page number: address bits 12–24 plus
//! bits 16–28 (`imul` by 2^7 + 2^3, then the top 13 of the low 32 bits). Nearly the page
//! number, so that the slots a program's frees read are as few as the pages its heap churns: a
//! 1 MiB heap reads about 272 slots (34 cache lines), where a hash of the whole address spread
//! the same frees over all 1024 lines and added 1.25 L1 misses per malloc/free pair (callgrind:
//! 3.25 misses per pair against 2.00 plain; by page, 2.19). Plus bits 16–28, so that glibc's
//! per-thread arenas, 64 MiB apart and laid out alike, land 1024 slots apart instead of on the
//! same slots: with the page number alone, a sample in one thread's heap sent the other
//! thread's frees at the same offset through the filter too, and each mark wrote a line the
//! other thread's frees read. The price of indexing by address region: every block near a live
//! sample takes the detour through the byte filter, a fraction of about n/P of frees with n
//! live samples on a heap of P pages (0.7% on the benchmark, with one thread or two; 1.2% with
//! two by page number alone). A large heap marks the same share of slots as a hash would: one
//! per live sample.
//!
//! Slots change only when a marked count goes between 0 and 1 or the default changes. The
//! counts come in groups of 32 consecutive slots, and each group is kept by the caller (the
//! live table) under the lock of the shard whose blocks lie in those slots: a count and its
//! slot must change together, or a mark could be overwritten by the default while its block is
//! live, and the insertion that needs the mark already holds that lock and has its line in
//! cache. (Separate striped locks cost every sample two more cold lines and atomic writes.)

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

pub const ROUTE_BITS: u32 = 13;
pub const ROUTE_SLOTS: usize = 1 << ROUTE_BITS;
/// `imul eax, edi, ROUTE_MUL; shr eax, 32 - ROUTE_BITS` is `index`: the 2^7 term shifts
/// address bits 12–24 to the top of the low 32 bits, where the right shift takes them, and
/// the 2^3 term adds bits 16–28 (which separates arenas 64 MiB apart by 1024 slots); bits
/// above 31 drop out. One `imul` with an immediate, and no `mov`.
pub const ROUTE_MUL: u32 = (1 << 7) | (1 << 3);
const STUCK: u8 = u8::MAX;

/// The slot of `addr`, exactly what the x86-64 `free` computes with
/// `imul eax, edi, ROUTE_MUL; shr eax, 32 - ROUTE_BITS`.
#[inline(always)]
pub fn index(addr: usize) -> usize {
    ((addr as u32).wrapping_mul(ROUTE_MUL) >> (32 - ROUTE_BITS)) as usize
}

/// Slots per group of counts: 32 consecutive slots, about 128 KiB of one heap.
pub const GROUP_BITS: u32 = 5;
pub const GROUP: usize = 1 << GROUP_BITS;
pub const GROUPS: usize = ROUTE_SLOTS / GROUP;

/// The group of `addr`'s slot.
#[inline(always)]
pub fn group(addr: usize) -> usize {
    index(addr) >> GROUP_BITS
}

/// Live sampled and bootstrap blocks in each slot of one group; a count saturates at `STUCK`
/// and then stays. The owner keeps it under a lock of its own, held across every call that
/// takes it, so that a slot's count and its target change together.
#[repr(C)]
pub struct Counts([u8; GROUP]);

impl Counts {
    pub const fn new() -> Self {
        Counts([0; GROUP])
    }

    /// The count of each slot of the group (tests).
    #[cfg(test)]
    pub fn slots(&self) -> &[u8; GROUP] {
        &self.0
    }
}

impl Default for Counts {
    fn default() -> Self {
        Self::new()
    }
}

/// `repr(C)` with the slots first: the x86-64 `free` addresses them as the table's address.
#[repr(C, align(64))]
pub struct Routes {
    slots: [AtomicPtr<c_void>; ROUTE_SLOTS],
    /// Where unmarked slots go. Stored before the groups are visited when it changes, and
    /// read under a group's lock, so an unmark racing with the change leaves the new value.
    default: AtomicPtr<c_void>,
    /// Where marked slots go: `free_filtered`, or in exact mode `free_marked` (the filter is
    /// not kept there).
    marked: AtomicPtr<c_void>,
}

const _: () = assert!(core::mem::offset_of!(Routes, slots) == 0);
/// Where the x86-64 `free_filtered` finds the default target.
pub const DEFAULT_OFFSET: usize = core::mem::offset_of!(Routes, default);

impl Routes {
    /// Every slot goes to `default`; marked slots will go to `marked`.
    pub const fn new(default: *mut c_void, marked: *mut c_void) -> Self {
        Routes {
            slots: [const { AtomicPtr::new(core::ptr::null_mut()) }; ROUTE_SLOTS],
            default: AtomicPtr::new(default),
            marked: AtomicPtr::new(marked),
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

    /// Unmarked slots go to `f` from now on (the real free, once it is known; in exact mode,
    /// the table's own path). The caller then passes every group to `refresh` (or, in exact
    /// mode, `send_group`), each under its lock.
    pub fn set_default(&self, f: *mut c_void) {
        self.default.store(f, Ordering::Release);
    }

    /// Marked slots go to `f` from now on (exact mode: the table's own path, without the
    /// filter). The caller then passes every group to `send_group`.
    pub fn set_marked(&self, f: *mut c_void) {
        self.marked.store(f, Ordering::Release);
    }

    /// Sends every slot of group `g`, marked or not, to `f` (exact mode, where marks no longer
    /// matter). The caller holds the group's lock.
    pub fn send_group(&self, g: usize, f: *mut c_void) {
        for slot in &self.slots[g * GROUP..(g + 1) * GROUP] {
            slot.store(f, Ordering::Release);
        }
    }

    /// Points the unmarked slots of group `g` at the default. The caller holds the lock of
    /// `counts`, the counts of group `g`.
    pub fn refresh(&self, g: usize, counts: &Counts) {
        let f = self.default.load(Ordering::Acquire);
        for (k, &n) in counts.0.iter().enumerate() {
            if n == 0 {
                set(&self.slots[g * GROUP + k], f);
            }
        }
    }

    /// A block at `addr` is to be looked up when freed. Before the block is handed out: a
    /// `free` of it can only come after this returns. The caller holds the lock of `counts`,
    /// the counts of `group(addr)`.
    pub fn mark(&self, counts: &mut Counts, addr: usize) {
        let i = index(addr);
        let n = &mut counts.0[i % GROUP];
        if *n == 0 {
            // Only on the first mark: a slot with a count is marked already (`refresh` and
            // `unmark` leave such slots alone), and a store would take the line from every
            // core whose frees read it.
            set(&self.slots[i], self.marked.load(Ordering::Relaxed));
        }
        if *n != STUCK {
            *n += 1;
        }
    }

    /// The block at `addr` that `mark` counted is gone. The caller holds the lock of
    /// `counts`, the counts of `group(addr)`.
    pub fn unmark(&self, counts: &mut Counts, addr: usize) {
        let i = index(addr);
        let n = &mut counts.0[i % GROUP];
        if *n != STUCK && *n != 0 {
            *n -= 1;
            if *n == 0 {
                set(&self.slots[i], self.default.load(Ordering::Acquire));
            }
        }
    }
}

/// Stores `f` into a slot unless it holds `f` already: in exact mode marked and unmarked slots
/// go to the same place, and a store would take the line from every core whose frees read it.
#[inline(always)]
fn set(slot: &AtomicPtr<c_void>, f: *mut c_void) {
    if slot.load(Ordering::Relaxed) != f {
        slot.store(f, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: *mut c_void = 0x1000 as *mut c_void;
    const MARKED: *mut c_void = 0x2000 as *mut c_void;
    const REAL: *mut c_void = 0x3000 as *mut c_void;

    /// The routes with each group's counts under a lock, as the live table keeps them.
    struct Locked {
        routes: Routes,
        groups: Vec<crate::sync::SpinLock<Counts>>,
    }

    impl Locked {
        fn mark(&self, addr: usize) {
            self.routes.mark(&mut self.groups[group(addr)].lock(), addr);
        }
        fn unmark(&self, addr: usize) {
            self.routes
                .unmark(&mut self.groups[group(addr)].lock(), addr);
        }
        fn set_default(&self, f: *mut c_void) {
            self.routes.set_default(f);
            for (g, c) in self.groups.iter().enumerate() {
                self.routes.refresh(g, &c.lock());
            }
        }
        fn count(&self, addr: usize) -> u8 {
            self.groups[group(addr)].lock().0[index(addr) % GROUP]
        }
    }

    impl core::ops::Deref for Locked {
        type Target = Routes;
        fn deref(&self) -> &Routes {
            &self.routes
        }
    }

    fn routes() -> Box<Locked> {
        Box::new(Locked {
            routes: Routes::new(DEFAULT, MARKED),
            groups: (0..GROUPS)
                .map(|_| crate::sync::SpinLock::new(Counts::new()))
                .collect(),
        })
    }

    /// `n` addresses above `base` that share its slot: 512 MiB apart (2^29 · 136 is a
    /// multiple of 2^32).
    fn slot_mates(base: usize, n: usize) -> Vec<usize> {
        let span = 512 << 20;
        let mates: Vec<usize> = (1..=n).map(|k| base + k * span).collect();
        assert!(mates.iter().all(|&x| index(x) == index(base)));
        mates
    }

    #[test]
    fn index_is_what_the_asm_computes_and_keeps_heaps_apart() {
        // What `free`'s `imul` and `shr` compute, for addresses across the whole range.
        let asm = |a: u64| {
            let mut r: u64 = 0;
            // SAFETY: pure register arithmetic, the same two instructions as `free`.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                core::arch::asm!(
                    "imul eax, edi, {mul}",
                    "shr eax, {shift}",
                    mul = const ROUTE_MUL as i32,
                    shift = const 32 - ROUTE_BITS,
                    in("rdi") a,
                    inout("rax") r,
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                r = index(a as usize) as u64;
            }
            r as usize
        };
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(index(x as usize), asm(x), "{x:#x}");
            assert_eq!(index(x as usize & !0xf), asm(x & !0xf));
        }
        // Bits 12–24 plus bits 16–28 (no carry from below here).
        assert_eq!(index(0x7f00_1234_5010), 0x0345 + 0x1234);
        // Nearly the page number: a 1 MiB heap reads 256 · 17/16 consecutive slots (34 lines).
        let heap = |base: usize| {
            let mut s: Vec<usize> = (0..1 << 20).step_by(16).map(|o| index(base + o)).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let a = heap(0x7f3c_0400_0000);
        assert!((271..=273).contains(&a.len()), "{}", a.len());
        assert_eq!(a[a.len() - 1] - a[0], a.len() - 1);
        // Four thread arenas, 64 MiB apart and laid out alike, share no slot.
        let mut all: Vec<usize> = (0..4)
            .flat_map(|k| heap(0x7f3c_0400_0000 + (k << 26)))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4 * a.len());
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
        let r: &'static Locked = Box::leak(routes());
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
        let r: &'static Locked = Box::leak(routes());
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
