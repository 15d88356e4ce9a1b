//! The table of live sampled blocks: address → (stack id, size), and the filter in front of it.
//!
//! `free` must learn whether a block was sampled, and in sampled mode almost none were. The
//! **filter** answers first: 1 Mi one-byte counters indexed by the address modulo 1 MiB (two
//! instructions; blocks are at least 16-byte aligned, so 64 Ki of them are in use, the same
//! spread a 64 KiB table indexed by a hash gets, without the multiply), each counting the live
//! sampled blocks (and bootstrap blocks) that land there. A zero means "certainly not
//! sampled": one byte load from a table that nobody writes on the fast path, so threads share
//! it read-only in their caches; pages no sample ever touched are the kernel's zero page, so
//! in sampled mode it costs a few pages of memory. A non-zero (a sampled block, or a
//! collision: with n live samples the chance is about n/65536) sends `free` to the table.
//! Counters saturate at 255 and then stay there (still correct, just less selective). In
//! exact mode every block is sampled: the filter is left empty (all of it the kernel's zero
//! page, which costs `free` no cache misses) and `free`'s jump slot goes to the table instead
//! (see `profiler::init`).
//!
//! The **table** is split into 256 shards by hash, each an open-addressing table with linear
//! probing and backward-shift deletion (no tombstones, so probes stay short under churn), under
//! its own spin lock: no global lock anywhere. Tables grow by doubling into fresh memory from
//! `map_anon`; the old one is unmapped (only lock holders ever read a table).
//!
//! Entry: 16 bytes, `key` = address (0 = empty), `val` = stack id (24 bits) | size (40 bits).
//! At load ≤ 3/4 after growth that is 21–43 bytes per live block.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const SHARD_BITS: u32 = 8;
const SHARDS: usize = 1 << SHARD_BITS;
const FILTER_BITS: u32 = 20;
/// `free`'s filter index is `address & FILTER_MASK` (the x86-64 fast path uses it directly).
pub const FILTER_MASK: usize = (1 << FILTER_BITS) - 1;
const MIN_SLOTS: usize = 256;
const SIZE_BITS: u32 = 40;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;
pub const MAX_STACK_ID: u32 = (1 << (64 - SIZE_BITS)) - 1;
const STUCK: u8 = u8::MAX;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    key: u64,
    val: u64,
}

struct Table {
    slots: *mut Slot,
    mask: usize,
    len: usize,
}

#[repr(C, align(64))]
struct Shard {
    lock: AtomicBool,
    table: UnsafeCell<Table>,
}

// SAFETY: `table` is only accessed with `lock` held.
unsafe impl Sync for Shard {}
// SAFETY: the table's memory is owned by the shard (a private mapping), not tied to a thread.
unsafe impl Send for Shard {}

/// `repr(C)` with the filter first: the x86-64 `free` addresses it as the table's own address;
/// cache-line aligned so that no other static shares the filter's lines.
#[repr(C, align(64))]
pub struct LiveTable {
    filter: [AtomicU8; 1 << FILTER_BITS],
    /// Every block is sampled (exact mode): the filter is bypassed and not maintained.
    every: AtomicBool,
    shards: [Shard; SHARDS],
}

const _: () = assert!(core::mem::offset_of!(LiveTable, filter) == 0);

/// What the table remembers of a sampled block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub stack: u32,
    pub size: u64,
}

#[inline(always)]
fn hash(addr: usize) -> u64 {
    ((addr as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline(always)]
fn home(h: u64, mask: usize) -> usize {
    (h >> 8) as usize & mask
}

fn pack(b: Block) -> u64 {
    ((b.stack as u64) << SIZE_BITS) | b.size.min(SIZE_MASK)
}

fn unpack(v: u64) -> Block {
    Block {
        stack: (v >> SIZE_BITS) as u32,
        size: v & SIZE_MASK,
    }
}

impl Table {
    fn slot(&mut self, i: usize) -> &mut Slot {
        // SAFETY: callers mask `i` with `self.mask`; `slots` has mask + 1 entries.
        unsafe { &mut *self.slots.add(i) }
    }

    fn find(&mut self, key: u64, h: u64) -> Option<usize> {
        if self.slots.is_null() {
            return None;
        }
        let mut i = home(h, self.mask);
        loop {
            let k = self.slot(i).key;
            if k == key {
                return Some(i);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Makes room for one more entry; false if memory ran out.
    fn reserve(&mut self) -> bool {
        let cap = if self.slots.is_null() {
            0
        } else {
            self.mask + 1
        };
        if (self.len + 1) * 4 <= cap * 3 {
            return true;
        }
        let n = (cap * 2).max(MIN_SLOTS);
        let Some(mem) = crate::sys::map_anon(n * core::mem::size_of::<Slot>()) else {
            return false;
        };
        let old = Table {
            slots: self.slots,
            mask: self.mask,
            len: self.len,
        };
        *self = Table {
            slots: mem.cast(),
            mask: n - 1,
            len: 0,
        };
        if !old.slots.is_null() {
            for i in 0..cap {
                // SAFETY: i < cap, within the old table.
                let s = unsafe { *old.slots.add(i) };
                if s.key != 0 {
                    self.put(s);
                }
            }
            // SAFETY: the old table was made by map_anon with this size and is no longer
            // referenced (readers hold the shard lock, which we hold).
            unsafe { crate::sys::unmap(old.slots.cast(), cap * core::mem::size_of::<Slot>()) };
        }
        true
    }

    fn put(&mut self, s: Slot) {
        let mut i = home(hash(s.key as usize), self.mask);
        while self.slot(i).key != 0 {
            i = (i + 1) & self.mask;
        }
        *self.slot(i) = s;
        self.len += 1;
    }

    /// Backward-shift deletion of slot `i`.
    fn delete(&mut self, mut i: usize) {
        let mask = self.mask;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = *self.slot(j);
            if s.key == 0 {
                break;
            }
            // Entry j may move into the hole at i unless its home lies cyclically in (i, j].
            let from_home = j.wrapping_sub(home(hash(s.key as usize), mask)) & mask;
            let from_hole = j.wrapping_sub(i) & mask;
            if from_home >= from_hole {
                *self.slot(i) = s;
                i = j;
            }
        }
        *self.slot(i) = Slot { key: 0, val: 0 };
        self.len -= 1;
    }
}

impl Shard {
    const fn new() -> Self {
        Shard {
            lock: AtomicBool::new(false),
            table: UnsafeCell::new(Table {
                slots: core::ptr::null_mut(),
                mask: 0,
                len: 0,
            }),
        }
    }

    fn lock(&self) {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                crate::sys::sched_yield();
            }
        }
    }

    fn unlock(&self) {
        self.lock.store(false, Ordering::Release);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held, so this is the only reference to the table.
        let r = f(unsafe { &mut *self.table.get() });
        self.unlock();
        r
    }
}

impl LiveTable {
    pub const fn new() -> Self {
        LiveTable {
            filter: [const { AtomicU8::new(0) }; 1 << FILTER_BITS],
            every: AtomicBool::new(false),
            shards: [const { Shard::new() }; SHARDS],
        }
    }

    #[inline(always)]
    fn filter_slot(&self, addr: usize) -> &AtomicU8 {
        &self.filter[addr & FILTER_MASK]
    }

    /// The fast-path question: false means `addr` is certainly not a live sampled (or
    /// bootstrap) block. Store-free.
    #[inline(always)]
    pub fn filter_hit(&self, addr: usize) -> bool {
        self.filter_slot(addr).load(Ordering::Relaxed) != 0 || self.every.load(Ordering::Relaxed)
    }

    /// Marks `addr` in the filter (insertions, and bootstrap blocks).
    pub fn filter_add(&self, addr: usize) {
        let f = self.filter_slot(addr);
        let _ = f.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v != STUCK).then(|| v + 1)
        });
    }

    fn filter_remove(&self, addr: usize) {
        let f = self.filter_slot(addr);
        let _ = f.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v != STUCK && v != 0).then(|| v - 1)
        });
    }

    /// Exact mode: every block is sampled, so every free must consult the table; the filter
    /// says yes to every address from now on and is no longer maintained.
    pub fn set_every_block(&self) {
        self.every.store(true, Ordering::Relaxed);
    }

    /// The shard of `addr`: chosen by the 64 KiB region it lies in, not by the address itself,
    /// so that blocks from one allocator arena (glibc gives each thread its own) share shards
    /// and two threads rarely take the same shard lock.
    #[inline(always)]
    fn shard(&self, addr: usize) -> &Shard {
        let region = ((addr as u64) >> 16).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(region >> (64 - SHARD_BITS)) as usize]
    }

    /// Records a sampled block. False if the table could not grow (out of memory).
    pub fn insert(&self, addr: usize, b: Block) -> bool {
        let ok = self.shard(addr).with(|t| {
            let ok = t.reserve();
            if ok {
                t.put(Slot {
                    key: addr as u64,
                    val: pack(b),
                });
            }
            ok
        });
        if ok && !self.every.load(Ordering::Relaxed) {
            // After the insertion: a free of `addr` can only come after this returns.
            self.filter_add(addr);
        }
        ok
    }

    /// Removes `addr` if it is a live sampled block and returns what was recorded for it.
    pub fn remove(&self, addr: usize) -> Option<Block> {
        let h = hash(addr);
        let r = self.shard(addr).with(|t| {
            let i = t.find(addr as u64, h)?;
            let b = unpack(t.slot(i).val);
            t.delete(i);
            Some(b)
        });
        if r.is_some() && !self.every.load(Ordering::Relaxed) {
            self.filter_remove(addr);
        }
        r
    }

    /// Takes every shard lock (before fork).
    pub fn lock_all(&self) {
        for s in &self.shards {
            s.lock();
        }
    }

    /// Releases every shard lock (after fork, in parent and child).
    pub fn unlock_all(&self) {
        for s in &self.shards {
            s.unlock();
        }
    }

    /// Number of live sampled blocks (takes every shard lock in turn: not for hot paths; a
    /// process-wide counter would be a cache line that every thread writes).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.with(|t| t.len)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for LiveTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_lookup_remove() {
        static T: LiveTable = LiveTable::new(); // 1 MiB: not on a test thread's stack
        let t = &T;
        assert!(!t.filter_hit(0x1000));
        assert!(t.insert(0x1000, Block { stack: 5, size: 77 }));
        assert!(t.filter_hit(0x1000));
        assert_eq!(t.remove(0x1000), Some(Block { stack: 5, size: 77 }));
        assert_eq!(t.remove(0x1000), None);
        assert!(!t.filter_hit(0x1000));
    }

    #[test]
    fn churn_keeps_every_live_entry_findable() {
        static T: LiveTable = LiveTable::new(); // 1 MiB: not on a test thread's stack
        let t = &T;
        let mut live = std::collections::HashMap::new();
        let mut x: u64 = 12345;
        for round in 0..200_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let addr = ((x >> 20) as usize % 50_000) * 16 + 0x10000;
            if let Some(b) = live.remove(&addr) {
                assert!(t.filter_hit(addr));
                assert_eq!(t.remove(addr), Some(b), "round {round}");
            } else {
                let b = Block {
                    stack: (round % 1000) as u32 + 1,
                    size: round,
                };
                assert_eq!(t.remove(addr), None);
                assert!(t.insert(addr, b));
                live.insert(addr, b);
            }
        }
        assert_eq!(t.len(), live.len());
        for (&a, &b) in &live {
            assert!(t.filter_hit(a));
            assert_eq!(t.remove(a), Some(b));
        }
        assert!(t.is_empty());
        assert!(
            t.filter.iter().all(|f| f.load(Ordering::Relaxed) == 0),
            "filter drains to zero"
        );
    }

    #[test]
    fn filter_saturates_and_stays_correct() {
        static T: LiveTable = LiveTable::new(); // 1 MiB: not on a test thread's stack
        let t = &T;
        // 300 addresses in the same filter slot: the counter sticks at 255.
        let target = t.filter_slot(0x1000) as *const AtomicU8;
        let same: Vec<usize> = (1..40_000_000usize)
            .map(|i| 0x1000 + i * 16)
            .filter(|&a| std::ptr::eq(t.filter_slot(a), target))
            .take(300)
            .collect();
        assert_eq!(same.len(), 300);
        for &a in &same {
            t.insert(a, Block { stack: 1, size: 1 });
        }
        for &a in &same {
            assert!(t.filter_hit(a));
            assert!(t.remove(a).is_some());
        }
        assert!(t.filter_hit(same[0]), "stuck counters never return to zero");
        assert!(!t.filter_hit(0x5555_0000));
        t.set_every_block();
        assert!(t.filter_hit(0x5555_0000));
    }

    #[test]
    fn concurrent_threads_insert_and_remove() {
        static T: LiveTable = LiveTable::new();
        let t = &T;
        let hs: Vec<_> = (0..4usize)
            .map(|k| {
                std::thread::spawn(move || {
                    for r in 0..20 {
                        let base = (k + 1) << 32;
                        for i in 0..5000 {
                            t.insert(
                                base + i * 16,
                                Block {
                                    stack: 1,
                                    size: i as u64 + r,
                                },
                            );
                        }
                        for i in 0..5000 {
                            assert!(t.filter_hit(base + i * 16));
                            assert_eq!(t.remove(base + i * 16).map(|b| b.size), Some(i as u64 + r));
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.is_empty());
    }

    #[test]
    fn sizes_and_ids_pack() {
        let b = Block {
            stack: MAX_STACK_ID,
            size: SIZE_MASK,
        };
        assert_eq!(unpack(pack(b)), b);
    }
}
