//! The table of live sampled blocks: address → (stack id, size).
//!
//! `free` must learn whether a block was sampled. In sampled mode almost none were, so the
//! question is answered by a read-only probe: no lock, no store, no shared cache line
//! written. Writers (insert/remove, rare in sampled mode; every call in exact mode) take a
//! per-shard spin lock, so there is no global lock anywhere.
//!
//! The address space is split into 256 shards by hash. Each shard is an open-addressing table
//! with linear probing and backward-shift deletion (no tombstones, so probe lengths stay short
//! under churn). Readers are protected by a per-shard sequence counter (a seqlock): a writer
//! makes it odd while it moves entries; a reader that sees it odd or changed falls back to the
//! locked path. When a shard grows, its old table is not unmapped (a concurrent reader may still
//! be reading it) but its pages are returned to the kernel with `MADV_DONTNEED`: a late reader
//! reads zeros and its sequence check sends it to the locked path.
//!
//! Entry: 16 bytes, `key` = address (0 = empty), `val` = stack id (24 bits) | size (40 bits).
//! At load ≤ 3/4 after growth that is 21–43 bytes per live block.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence};

const SHARD_BITS: u32 = 8;
const SHARDS: usize = 1 << SHARD_BITS;
const MIN_SLOTS: usize = 256;
const SIZE_BITS: u32 = 40;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;
pub const MAX_STACK_ID: u32 = (1 << (64 - SIZE_BITS)) - 1;

#[repr(C)]
struct Table {
    mask: usize,
    bytes: usize,
    // followed by (mask + 1) slots
}

#[repr(C)]
struct Slot {
    key: AtomicU64,
    val: AtomicU64,
}

#[repr(C, align(64))]
struct Shard {
    lock: AtomicBool,
    seq: AtomicUsize,
    len: AtomicUsize,
    table: AtomicPtr<Table>,
}

pub struct LiveTable {
    shards: [Shard; SHARDS],
}

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

fn slots(t: *mut Table) -> *mut Slot {
    // SAFETY: the slots follow the header in the same mapping.
    unsafe { t.add(1).cast() }
}

fn slot<'a>(t: *mut Table, i: usize) -> &'a Slot {
    // SAFETY: callers mask `i` with the table's own mask; tables are never unmapped.
    unsafe { &*slots(t).add(i) }
}

fn new_table(n: usize) -> *mut Table {
    let bytes = core::mem::size_of::<Table>() + n * core::mem::size_of::<Slot>();
    match crate::sys::map_anon(bytes) {
        Some(p) => {
            let t = p.cast::<Table>();
            // SAFETY: fresh, zeroed, writable mapping large enough for the header.
            unsafe { t.write(Table { mask: n - 1, bytes }) };
            t
        }
        None => core::ptr::null_mut(),
    }
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

impl Shard {
    const fn new() -> Self {
        Shard {
            lock: AtomicBool::new(false),
            seq: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            table: AtomicPtr::new(core::ptr::null_mut()),
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

    /// Starts a write section (the lock is held).
    fn write_begin(&self) {
        self.seq
            .store(self.seq.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    fn write_end(&self) {
        self.seq
            .store(self.seq.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// Locked: probe for `key` in the current table.
    fn find(&self, key: u64, h: u64) -> Option<(usize, *mut Table)> {
        let t = self.table.load(Ordering::Relaxed);
        if t.is_null() {
            return None;
        }
        // SAFETY: `t` is a live table header.
        let mask = unsafe { (*t).mask };
        let mut i = (h >> SHARD_BITS) as usize & mask;
        loop {
            let k = slot(t, i).key.load(Ordering::Relaxed);
            if k == key {
                return Some((i, t));
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Locked: makes room for one more entry. False if memory ran out.
    fn reserve(&self) -> bool {
        let t = self.table.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        // SAFETY: `t`, when non-null, is a live table header.
        let cap = if t.is_null() {
            0
        } else {
            unsafe { (*t).mask + 1 }
        };
        if (len + 1) * 4 <= cap * 3 {
            return true;
        }
        let n = (cap * 2).max(MIN_SLOTS);
        let nt = new_table(n);
        if nt.is_null() {
            return false;
        }
        if !t.is_null() {
            for i in 0..cap {
                let s = slot(t, i);
                let k = s.key.load(Ordering::Relaxed);
                if k != 0 {
                    let mut j = (hash(k as usize) >> SHARD_BITS) as usize & (n - 1);
                    while slot(nt, j).key.load(Ordering::Relaxed) != 0 {
                        j = (j + 1) & (n - 1);
                    }
                    slot(nt, j)
                        .val
                        .store(s.val.load(Ordering::Relaxed), Ordering::Relaxed);
                    slot(nt, j).key.store(k, Ordering::Relaxed);
                }
            }
        }
        self.write_begin();
        self.table.store(nt, Ordering::Release);
        self.write_end();
        if !t.is_null() {
            // SAFETY: header of the old table, still mapped.
            let bytes = unsafe { (*t).bytes };
            let page = crate::sys::PAGE;
            // Keep the first page (the header, which a late reader reads for the mask).
            if bytes > page {
                // SAFETY: discarding pages of our own private anonymous mapping; readers that
                // still look at it read zeros, which their sequence check rejects.
                unsafe {
                    libc::madvise(
                        t.cast::<u8>().add(page).cast(),
                        bytes - page,
                        libc::MADV_DONTNEED,
                    )
                };
            }
        }
        true
    }
}

impl LiveTable {
    pub const fn new() -> Self {
        LiveTable {
            shards: [const { Shard::new() }; SHARDS],
        }
    }

    #[inline(always)]
    fn shard(&self, h: u64) -> &Shard {
        &self.shards[(h >> (64 - SHARD_BITS)) as usize]
    }

    /// Records a sampled block. False if the table could not grow (out of memory).
    pub fn insert(&self, addr: usize, b: Block) -> bool {
        let h = hash(addr);
        let s = self.shard(h);
        s.lock();
        let ok = s.reserve();
        if ok {
            let t = s.table.load(Ordering::Relaxed);
            // SAFETY: `reserve` made `t` a live table.
            let mask = unsafe { (*t).mask };
            let mut i = (h >> SHARD_BITS) as usize & mask;
            while slot(t, i).key.load(Ordering::Relaxed) != 0 {
                i = (i + 1) & mask;
            }
            s.write_begin();
            slot(t, i).val.store(pack(b), Ordering::Relaxed);
            slot(t, i).key.store(addr as u64, Ordering::Relaxed);
            s.len
                .store(s.len.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            s.write_end();
        }
        s.unlock();
        ok
    }

    /// Lock-free, store-free check: false means `addr` is certainly not a live sampled block
    /// (given that its insertion happened-before this call, as malloc-then-free guarantees).
    #[inline(always)]
    pub fn may_contain(&self, addr: usize) -> bool {
        let h = hash(addr);
        let s = self.shard(h);
        if s.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.probe_readonly(s, addr, h)
    }

    #[inline(never)]
    fn probe_readonly(&self, s: &Shard, addr: usize, h: u64) -> bool {
        let seq = s.seq.load(Ordering::Acquire);
        if seq & 1 != 0 {
            return true;
        }
        let t = s.table.load(Ordering::Acquire);
        if t.is_null() {
            return s.seq.load(Ordering::Acquire) != seq;
        }
        // SAFETY: header pages of tables are never discarded or unmapped.
        let mask = unsafe { (*t).mask };
        let mut i = (h >> SHARD_BITS) as usize & mask;
        let mut found = false;
        for _ in 0..=mask {
            let k = slot(t, i).key.load(Ordering::Relaxed);
            if k == addr as u64 {
                found = true;
                break;
            }
            if k == 0 {
                break;
            }
            i = (i + 1) & mask;
        }
        fence(Ordering::Acquire);
        found || s.seq.load(Ordering::Relaxed) != seq
    }

    /// Removes `addr` if it is a live sampled block and returns what was recorded for it.
    pub fn remove(&self, addr: usize) -> Option<Block> {
        let h = hash(addr);
        let s = self.shard(h);
        s.lock();
        let r = s.find(addr as u64, h).map(|(mut i, t)| {
            // SAFETY: live table header.
            let mask = unsafe { (*t).mask };
            let b = unpack(slot(t, i).val.load(Ordering::Relaxed));
            s.write_begin();
            // Backward-shift deletion: pull later entries of the cluster into the hole when
            // their home position allows it.
            let mut j = i;
            loop {
                j = (j + 1) & mask;
                let k = slot(t, j).key.load(Ordering::Relaxed);
                if k == 0 {
                    break;
                }
                let home = (hash(k as usize) >> SHARD_BITS) as usize & mask;
                // Move j to i if home is not cyclically within (i, j].
                let dist_home = j.wrapping_sub(home) & mask;
                let dist_hole = j.wrapping_sub(i) & mask;
                if dist_home >= dist_hole {
                    slot(t, i)
                        .val
                        .store(slot(t, j).val.load(Ordering::Relaxed), Ordering::Relaxed);
                    slot(t, i).key.store(k, Ordering::Relaxed);
                    i = j;
                }
            }
            slot(t, i).key.store(0, Ordering::Relaxed);
            slot(t, i).val.store(0, Ordering::Relaxed);
            s.len
                .store(s.len.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
            s.write_end();
            b
        });
        s.unlock();
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

    /// Number of live sampled blocks.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.len.load(Ordering::Relaxed))
            .sum()
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
        let t = LiveTable::new();
        assert!(!t.may_contain(0x1000));
        assert!(t.insert(0x1000, Block { stack: 5, size: 77 }));
        assert!(t.may_contain(0x1000));
        assert_eq!(t.remove(0x1000), Some(Block { stack: 5, size: 77 }));
        assert_eq!(t.remove(0x1000), None);
        assert!(!t.may_contain(0x1000));
    }

    #[test]
    fn churn_keeps_every_live_entry_findable() {
        let t = LiveTable::new();
        let mut live = std::collections::HashMap::new();
        let mut x: u64 = 12345;
        for round in 0..200_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let addr = ((x >> 20) as usize % 50_000) * 16 + 0x10000;
            if let Some(b) = live.remove(&addr) {
                assert_eq!(t.remove(addr), Some(b), "round {round}");
            } else {
                let b = Block {
                    stack: (round % 1000) as u32 + 1,
                    size: round,
                };
                assert!(!t.may_contain(addr) || t.remove(addr).is_none());
                assert!(t.insert(addr, b));
                live.insert(addr, b);
            }
        }
        assert_eq!(t.len(), live.len());
        for (&a, &b) in &live {
            assert!(t.may_contain(a));
            assert_eq!(t.remove(a), Some(b));
        }
        assert!(t.is_empty());
    }

    #[test]
    fn concurrent_threads_insert_and_remove() {
        let t = std::sync::Arc::new(LiveTable::new());
        let hs: Vec<_> = (0..4usize)
            .map(|k| {
                let t = t.clone();
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
                            assert!(t.may_contain(base + i * 16));
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
