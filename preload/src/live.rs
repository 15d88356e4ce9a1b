//! The table of live sampled blocks: address → (stack id, size), and the filter in front of it.
//!
//! `free` must learn whether a block was sampled, and in sampled mode almost none were. Two
//! filters answer before the table does. The first is `free`'s jump table (`route.rs`): a free
//! in a slot (about a page) holding no live sample goes straight to the real free. The second,
//! asked by `free_filtered` when the first says "maybe", is 64 Ki one-byte counters indexed by
//! address bits 4–19 (blocks are at least 16-byte aligned), each counting the live sampled
//! blocks (and bootstrap blocks) that land there; a block that merely shares a page with a
//! sample (the usual reason to be asked) differs from it in bits 4–11, so its counter is
//! another one. A zero means "certainly not sampled". A non-zero (a sampled block, or a
//! collision: with n live samples the chance is about n/65536) sends `free` to the table.
//! Counters saturate at 255 and then stay there (still correct, just less selective). The
//! filter is 64 KiB, not bigger: every sample writes a byte somewhere in it, so in a long run
//! all of its pages become real memory (an earlier 1 MiB filter, read by every `free`, made
//! that read a cache and TLB miss often enough to cost more than the instruction it saved). In
//! exact mode every block is sampled: the byte filter is left as it is, every slot of the jump
//! table goes straight to the table (`free_marked`), and the route counts are kept all the
//! same (under the shard lock, in the line the insertion writes anyway), so that every entry
//! is counted in its slot in either mode: `release` (`jeprof-rs detach`) can then drop every
//! entry and send the slots without one back to the real free, leaving marked exactly those
//! that still need the table (bootstrap blocks, entries a racing sample adds).
//!
//! The **table** is split into 256 shards, one per group of 32 route slots (about 128 KiB of
//! one heap), each under its own spin lock (no global lock anywhere), which also guards the
//! route counts of its slots. A shard's first bucket is inside the shard, in the cache line
//! after its lock: in sampled mode, with a heap of up to about 100 MiB (fewer than 200 live
//! samples), a shard rarely holds more than 3 live samples, so a sample is inserted and removed
//! within two adjacent lines of a 32 KiB array (callgrind, one thread: 4.1 → 1.9 L2 misses and
//! 61 → 55 L1 misses per sample, against a mapped table per shard and striped locks for the
//! route counts). Past 3 entries the shard's table is an array of 64-byte buckets of four
//! 16-byte entries, plus one overflow counter per bucket (after F14's design): an entry goes
//! into the first bucket with room from its home bucket on, and each full bucket it passes
//! counts it. A lookup reads the home bucket, compares its four keys without a loop or a branch
//! per key, and goes on to the next bucket only if the key is not there and the overflow
//! counter is non-zero, which at load ≤ 3/4 is rare. Deleting clears the entry and uncounts it
//! on the buckets it had passed: no tombstones, no backward shift, so cost does not grow with
//! churn. (Linear probing ran a probe loop and a backward-shift loop of variable length per
//! operation.) Mapped tables grow by doubling into fresh memory from `map_anon`; the old one is
//! unmapped (only lock holders ever read a table).
//!
//! Entry: `key` = address (0 = empty), `val` = stack id (24 bits) | size (40 bits). At load
//! between 3/8 and 3/4 that is 21–43 bytes per live block, plus 1/64 byte per slot of counters.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::defer;

use crate::route::{self, Counts, Routes};
use crate::sync::SpinLock;

/// One shard per group of route slots.
const SHARDS: usize = route::GROUPS;
/// The byte filter's index is `(address >> FILTER_SHIFT) & FILTER_MASK`.
const FILTER_BITS: u32 = 16;
pub const FILTER_SHIFT: u32 = 4;
pub const FILTER_MASK: usize = (1 << FILTER_BITS) - 1;
const MIN_BUCKETS: usize = 64;
const SIZE_BITS: u32 = 40;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;
pub const MAX_STACK_ID: u32 = (1 << (64 - SIZE_BITS)) - 1;
const STUCK: u8 = u8::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Slot {
    key: u64,
    val: u64,
}

/// Slots per bucket: one 64-byte cache line.
const WAYS: usize = 4;

/// A shard's table: one bucket of its own (`inline`) while it holds at most 3 entries, then
/// `buckets` cache lines of `WAYS` slots followed by one overflow counter per bucket, all in
/// one private mapping.
#[repr(C)]
struct Table {
    /// The mapping, or null while the table is `inline` alone.
    mem: *mut Slot,
    /// `overflow[b]`: live entries that wanted bucket `b` or an earlier one, found it full, and
    /// went on past `b`. A lookup that misses in `b` stops when it is 0. Saturates at `STUCK`
    /// (then never decremented: still correct, lookups just go on a little further). Null
    /// while the table is `inline`, which never overflows (at most 3 entries in 4 slots).
    overflow: *mut u8,
    /// Number of buckets − 1 (a power of two minus one).
    bmask: u32,
    len: u32,
    inline: [Slot; WAYS],
}

/// A shard: its lock, the route counts of its 32 slots, and its table's header in one cache
/// line, the inline bucket in the next. A sample in a heap of about 100 MiB or less is
/// inserted and removed within these two lines (with the separate mapping they were two
/// cold lines and often a TLB miss, and the route counts a third line under another lock).
#[repr(C, align(128))]
struct Shard(SpinLock<ShardData>);

#[repr(C)]
struct ShardData {
    /// Guarded by the shard's lock, as the route counts must be (`route.rs`).
    counts: Counts,
    table: Table,
}

// The lock (at offset 0), the counts and the header fill the first line; the bucket the second.
const _: () = assert!(core::mem::size_of::<Shard>() == 128);
const _: () = assert!(
    8 + core::mem::offset_of!(ShardData, table) + core::mem::offset_of!(Table, inline) == 64
);

// SAFETY: the table's memory is owned by the shard (a private mapping), not tied to a thread.
unsafe impl Send for ShardData {}

/// `repr(C)` with `free`'s jump table first: the x86-64 `free` addresses it as the table's
/// own address; cache-line aligned so that no other static shares its lines.
#[repr(C, align(64))]
pub struct LiveTable {
    routes: Routes,
    filter: [AtomicU8; 1 << FILTER_BITS],
    /// Every block is sampled (exact mode): the filter is bypassed and not maintained.
    every: AtomicBool,
    /// Which shard locks `lock_all` took (it skips those this thread holds already).
    fork_taken: [AtomicU64; SHARDS / 64],
    shards: [Shard; SHARDS],
}

const _: () = assert!(core::mem::offset_of!(LiveTable, routes) == 0);
/// Where the x86-64 `free_filtered` finds the filter and the default target of `free`.
pub const FILTER_OFFSET: usize = core::mem::offset_of!(LiveTable, filter);
pub const DEFAULT_FREE_OFFSET: usize =
    core::mem::offset_of!(LiveTable, routes) + crate::route::DEFAULT_OFFSET;

/// What the table remembers of a sampled block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub stack: u32,
    pub size: u64,
}

#[inline(always)]
fn hash(addr: usize) -> u64 {
    (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The bucket where `addr`'s entry goes if it has room: high bits of the product, which
/// depend on all the address bits below them (the shard took the top 8).
#[inline(always)]
fn home(h: u64, bmask: usize) -> usize {
    (h >> 24) as usize & bmask
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
    const EMPTY: Table = Table {
        mem: core::ptr::null_mut(),
        overflow: core::ptr::null_mut(),
        bmask: 0,
        len: 0,
        inline: [Slot { key: 0, val: 0 }; WAYS],
    };

    fn buckets(&self) -> usize {
        self.bmask as usize + 1
    }

    /// Every slot, empty ones included.
    fn slots(&self) -> &[Slot] {
        if self.mem.is_null() {
            return &self.inline;
        }
        // SAFETY: a mapped table has (bmask + 1) · WAYS slots, initialized (zeroed mapping).
        unsafe { core::slice::from_raw_parts(self.mem, self.buckets() * WAYS) }
    }

    fn bucket(&mut self, b: usize) -> &mut [Slot; WAYS] {
        if self.mem.is_null() {
            return &mut self.inline;
        }
        // SAFETY: callers mask `b` with `self.bmask`; `mem` has (bmask + 1) · WAYS entries.
        unsafe { &mut *self.mem.add(b * WAYS).cast::<[Slot; WAYS]>() }
    }

    /// Bucket `b`'s overflow counter; only for a mapped table (the inline one never overflows).
    fn overflow(&mut self, b: usize) -> &mut u8 {
        debug_assert!(!self.overflow.is_null());
        // SAFETY: as in `bucket`; the counters follow the slots in the same mapping.
        unsafe { &mut *self.overflow.add(b) }
    }

    /// Bit j set where slot j of bucket `b` holds `key` (0: where it is empty). No loop and
    /// no branch: four compares of one cache line.
    #[inline(always)]
    fn matches(&mut self, b: usize, key: u64) -> u32 {
        let s = self.bucket(b);
        (s[0].key == key) as u32
            | ((s[1].key == key) as u32) << 1
            | ((s[2].key == key) as u32) << 2
            | ((s[3].key == key) as u32) << 3
    }

    /// Makes room for one more entry; false if memory ran out.
    #[inline(always)]
    fn reserve(&mut self) -> bool {
        (self.len as usize + 1) * 4 <= self.buckets() * WAYS * 3 || self.grow()
    }

    /// Moves the entries to a mapped table of twice the buckets (from the inline bucket: to
    /// `MIN_BUCKETS`); false if memory ran out.
    fn grow(&mut self) -> bool {
        let old_buckets = self.buckets();
        let n = if self.mem.is_null() {
            MIN_BUCKETS
        } else {
            old_buckets * 2
        };
        if n > 1 << 31 {
            return false;
        }
        let Some(mem) = crate::sys::map_anon(Self::bytes(n)) else {
            return false;
        };
        let fresh = Table {
            mem: mem.cast(),
            // SAFETY: the mapping holds n · WAYS slots followed by n counters.
            overflow: unsafe { mem.add(n * WAYS * core::mem::size_of::<Slot>()) },
            bmask: (n - 1) as u32,
            len: 0,
            inline: [Slot { key: 0, val: 0 }; WAYS],
        };
        let old = core::mem::replace(self, fresh);
        for &s in old.slots() {
            if s.key != 0 {
                self.put(s);
            }
        }
        if !old.mem.is_null() {
            // SAFETY: the old table was made by map_anon with this size and is no longer
            // referenced (readers hold the shard lock, which we hold).
            unsafe { crate::sys::unmap(old.mem.cast(), Self::bytes(old_buckets)) };
        }
        true
    }

    fn bytes(buckets: usize) -> usize {
        buckets * (WAYS * core::mem::size_of::<Slot>() + 1)
    }

    /// Stores `s` (room was reserved): in the first bucket from its home with an empty slot,
    /// counting an overflow on each full bucket passed.
    #[inline(always)]
    fn put(&mut self, s: Slot) {
        let bmask = self.bmask as usize;
        let mut b = home(hash(s.key as usize), bmask);
        loop {
            let free = self.matches(b, 0);
            if free != 0 {
                self.bucket(b)[free.trailing_zeros() as usize] = s;
                self.len += 1;
                return;
            }
            let o = self.overflow(b);
            *o = o.saturating_add(1);
            b = (b + 1) & bmask;
        }
    }

    /// Removes `key` and returns its value. Almost always one bucket: the home one.
    #[inline(always)]
    fn take(&mut self, key: u64) -> Option<u64> {
        let bmask = self.bmask as usize;
        let start = home(hash(key as usize), bmask);
        let mut b = start;
        for _ in 0..=bmask {
            let m = self.matches(b, key);
            if m != 0 {
                let s = &mut self.bucket(b)[m.trailing_zeros() as usize];
                let val = s.val;
                *s = Slot { key: 0, val: 0 };
                self.len -= 1;
                // It had passed every bucket from its home to here: uncount it.
                let mut p = start;
                while p != b {
                    let o = self.overflow(p);
                    if *o != STUCK {
                        *o -= 1;
                    }
                    p = (p + 1) & bmask;
                }
                return Some(val);
            }
            if self.mem.is_null() || *self.overflow(b) == 0 {
                return None;
            }
            b = (b + 1) & bmask;
        }
        None
    }
}

impl Shard {
    const fn new() -> Self {
        Shard(SpinLock::new(ShardData {
            counts: Counts::new(),
            table: Table::EMPTY,
        }))
    }
}

/// What `LiveTable::insert` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    Done,
    /// The shard is held by this thread (re-entry): queued for the holder (exact mode).
    Queued,
    /// The shard is held by this thread, in sampled mode: the sample is dropped (a queued
    /// insertion would not mark `free`'s slot in time).
    Skipped,
    /// Out of memory.
    Full,
}

/// What `LiveTable::remove` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    Found(Block),
    /// The shard is held by this thread (re-entry): the removal is queued for the holder.
    Queued,
    Absent,
}

impl LiveTable {
    pub const fn new() -> Self {
        LiveTable {
            routes: Routes::new(
                crate::hooks::free_unresolved as *mut c_void,
                crate::hooks::free_filtered as *mut c_void,
            ),
            filter: [const { AtomicU8::new(0) }; 1 << FILTER_BITS],
            every: AtomicBool::new(false),
            fork_taken: [const { AtomicU64::new(0) }; SHARDS / 64],
            shards: [const { Shard::new() }; SHARDS],
        }
    }

    #[inline(always)]
    fn filter_slot(&self, addr: usize) -> &AtomicU8 {
        &self.filter[(addr >> FILTER_SHIFT) & FILTER_MASK]
    }

    /// Where a `free` of `addr` goes: the first filter and the jump in one (see `route.rs`).
    #[inline(always)]
    pub fn free_target(&self, addr: usize) -> *mut c_void {
        self.routes.target(addr)
    }

    /// Sends frees of unsampled blocks to `f` (the real free, once it is known).
    pub fn set_free(&self, f: *mut c_void) {
        self.routes.set_default(f);
        self.each_group(|g, d| self.routes.refresh(g, &d.counts));
    }

    /// Runs `f` on each group of route slots and its shard, under the shard's lock.
    fn each_group(&self, f: impl Fn(usize, &mut ShardData)) {
        for (g, s) in self.shards.iter().enumerate() {
            let _ = self.with(s, |d| f(g, d));
        }
    }

    /// Runs `f` under the shard's lock; `None` (without waiting) when this thread holds it
    /// already: a signal handler or an atfork handler re-entered the profiler.
    fn with<R>(&self, s: &Shard, f: impl FnOnce(&mut ShardData) -> R) -> Option<R> {
        let mut d = s.0.acquire()?;
        let r = f(&mut d);
        d.release_with(|key, d| self.apply_deferred(key, d));
        Some(r)
    }

    /// The second filter's question: false means `addr` is certainly not a live sampled (or
    /// bootstrap) block. Store-free. (Exact mode answers from `every`, not from a counter: the
    /// counters of a busy heap's frees span all 64 KiB, one more L1 miss per pair.)
    #[inline(always)]
    pub fn filter_hit(&self, addr: usize) -> bool {
        self.every.load(Ordering::Relaxed) || self.filter_slot(addr).load(Ordering::Relaxed) != 0
    }

    /// Whether `realloc` must ask the table about `addr`: what `free` would decide, from the
    /// same jump-table slot (whose line `free` keeps in cache), and the byte filter only where
    /// `free` would ask it. A slot is marked for every live entry in both modes, so a block
    /// whose slot goes to the real free is certainly not recorded (after `release` in exact
    /// mode, nearly all of them).
    #[inline(always)]
    pub fn may_hold(&self, addr: usize) -> bool {
        let t = self.routes.target(addr);
        t == crate::hooks::free_marked as *mut c_void
            || (t == crate::hooks::free_filtered as *mut c_void
                && self.filter_slot(addr).load(Ordering::Relaxed) != 0)
    }

    /// Marks a bootstrap block in both filters, so that `free` takes the slow path for it.
    pub fn filter_add(&self, addr: usize) {
        let _ = self.with(self.shard(addr), |d| self.routes.mark(&mut d.counts, addr));
        self.byte_add(addr);
    }

    fn byte_add(&self, addr: usize) {
        let f = self.filter_slot(addr);
        let _ = f.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v != STUCK).then(|| v + 1)
        });
    }

    fn byte_remove(&self, addr: usize) {
        let f = self.filter_slot(addr);
        let _ = f.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v != STUCK && v != 0).then(|| v - 1)
        });
    }

    /// Exact mode: every block is sampled, so every free must consult the table; the filters
    /// say yes to every address from now on and are no longer maintained.
    pub fn set_every_block(&self) {
        self.every.store(true, Ordering::Relaxed);
        // Every slot, marked ones too: `free_filtered` asks only the filter, which exact mode
        // does not maintain.
        let f = crate::hooks::free_marked as *mut c_void;
        self.routes.set_default(f);
        self.routes.set_marked(f);
        self.each_group(|g, _| self.routes.send_group(g, f));
    }

    /// Forgets every entry and gives the mapped tables back (`jeprof-rs detach`), then sends
    /// the frees of every slot without a mark to `free` (the real free). Shard by shard under
    /// its lock: a `free` racing with this finds its entry or finds it gone, never half of it.
    /// Each entry's route count is taken back (every entry was counted, in both modes), so the
    /// slots left marked are those of bootstrap blocks and of entries a sample in flight adds
    /// afterwards, which are counted and found like any other. Returns the entries dropped.
    pub fn release(&self, free: *mut c_void) -> usize {
        let every = self.every.load(Ordering::Relaxed);
        let mut dropped = 0;
        for s in &self.shards {
            let _ = self.with(s, |d| {
                for slot in d.table.slots() {
                    if slot.key != 0 {
                        self.routes.unmark(&mut d.counts, slot.key as usize);
                        if !every {
                            self.byte_remove(slot.key as usize);
                        }
                        dropped += 1;
                    }
                }
                let old = core::mem::replace(&mut d.table, Table::EMPTY);
                if !old.mem.is_null() {
                    // SAFETY: a table made by `grow` with this many buckets; nothing else
                    // references it (readers hold the shard lock, which we hold).
                    unsafe { crate::sys::unmap(old.mem.cast(), Table::bytes(old.buckets())) };
                }
            });
        }
        if !free.is_null() {
            self.set_free(free);
        }
        dropped
    }

    /// The shard of `addr`: the one that keeps the route counts of its slot, so about 128 KiB
    /// of one heap. Blocks from one allocator arena (glibc gives each thread its own, 64 MiB
    /// apart, which the route index sets 32 shards apart) share shards, and two threads rarely
    /// take the same shard lock.
    #[inline(always)]
    fn shard(&self, addr: usize) -> &Shard {
        &self.shards[route::group(addr)]
    }

    /// Records a sampled block.
    pub fn insert(&self, addr: usize, b: Block) -> Inserted {
        let every = self.every.load(Ordering::Relaxed);
        let shard = self.shard(addr);
        let Some(mut d) = shard.0.acquire() else {
            if !every {
                return Inserted::Skipped;
            }
            if !crate::defer::push(shard.0.key(), defer::LIVE_INSERT, 0, addr, pack(b)) {
                defer::overflowed();
                return Inserted::Skipped;
            }
            shard.0.mark_pending();
            return Inserted::Queued;
        };
        let ok = self.put(&mut d, addr, pack(b));
        if ok && !every {
            // Under the shard's lock, as `release` takes entries and their filter counts out
            // under it: a filter byte shared with a bootstrap block never drops to 0 between.
            self.byte_add(addr);
        }
        d.release_with(|key, d| self.apply_deferred(key, d));
        if !ok {
            return Inserted::Full;
        }
        Inserted::Done
    }

    /// Stores an entry and counts it in its route slot (in both modes: see the module doc).
    #[inline(always)]
    fn put(&self, d: &mut ShardData, addr: usize, val: u64) -> bool {
        let ok = d.table.reserve();
        if ok {
            d.table.put(Slot {
                key: addr as u64,
                val,
            });
            self.routes.mark(&mut d.counts, addr);
        }
        ok
    }

    #[inline(always)]
    fn take(&self, d: &mut ShardData, addr: usize) -> Option<Block> {
        let r = d.table.take(addr as u64).map(unpack);
        if r.is_some() {
            self.routes.unmark(&mut d.counts, addr);
        }
        r
    }

    /// Applies the changes this thread queued for shard `key` while it held it (`defer.rs`).
    #[cold]
    #[inline(never)]
    fn apply_deferred(&self, key: usize, d: &mut ShardData) {
        let every = self.every.load(Ordering::Relaxed);
        defer::drain(key, |e| match e.kind {
            defer::LIVE_INSERT if !self.put(d, e.a, e.b) => defer::overflowed(),
            defer::LIVE_REMOVE if self.take(d, e.a).is_some() && !every => self.byte_remove(e.a),
            _ => {}
        });
    }

    /// Removes `addr` if it is a live sampled block and returns what was recorded for it.
    pub fn remove(&self, addr: usize) -> Removed {
        let every = self.every.load(Ordering::Relaxed);
        let shard = self.shard(addr);
        let Some(mut d) = shard.0.acquire() else {
            if !crate::defer::push(shard.0.key(), defer::LIVE_REMOVE, 0, addr, 0) {
                defer::overflowed();
                return Removed::Absent;
            }
            shard.0.mark_pending();
            return Removed::Queued;
        };
        let r = self.take(&mut d, addr);
        d.release_with(|key, d| self.apply_deferred(key, d));
        match r {
            Some(b) => {
                if !every {
                    self.byte_remove(addr);
                }
                Removed::Found(b)
            }
            None => Removed::Absent,
        }
    }

    /// Forgets a queued removal of `addr` (the `realloc` that was to free it failed).
    pub fn cancel_queued_remove(&self, addr: usize) {
        defer::cancel_remove(self.shard(addr).0.key(), addr);
    }

    /// Adds the weight of every live block to `out[stack]` as (objects in fixed point, bytes),
    /// shard by shard under each shard's lock: the in-use counts of a profile. Blocks of
    /// stacks past the end of `out` (interned after the caller sized it) are left out. Waits
    /// at most `wait_ns` for a shard another thread holds; false (and `out` incomplete) when
    /// a shard could not be read: held that long, or by this thread (a dump from a signal
    /// handler that interrupted the profiler, whose table is then half-changed).
    pub fn tally(&self, lg_sample: u32, out: &mut [[u64; 2]], wait_ns: u64) -> bool {
        for s in &self.shards {
            let Some(d) = s.0.acquire_within(wait_ns) else {
                return false;
            };
            for slot in d.table.slots().iter().filter(|s| s.key != 0) {
                let b = unpack(slot.val);
                if let Some(acc) = out.get_mut(b.stack as usize) {
                    let (objs, bytes) = crate::sampler::weight(b.size, lg_sample);
                    acc[0] += objs;
                    acc[1] += bytes;
                }
            }
            d.release_with(|key, d| self.apply_deferred(key, d));
        }
        true
    }

    /// Takes every lock (before fork), except those this thread holds already (a fork from a
    /// signal handler that interrupted the profiler: the interrupted code releases them).
    pub fn lock_all(&self) {
        for (i, s) in self.shards.iter().enumerate() {
            let took = s.0.raw_lock();
            self.fork_taken[i / 64].fetch_or((took as u64) << (i % 64), Ordering::Relaxed);
        }
    }

    /// Releases the locks `lock_all` took (after fork, in parent and child), applying the
    /// changes atfork handlers queued meanwhile.
    ///
    /// # Safety
    /// The calling thread called `lock_all` (in the child: the only thread left).
    pub unsafe fn unlock_all(&self) {
        for (i, s) in self.shards.iter().enumerate() {
            let bit = 1u64 << (i % 64);
            if self.fork_taken[i / 64].fetch_and(!bit, Ordering::Relaxed) & bit != 0 {
                // SAFETY: taken in `lock_all` by this thread (the caller's contract).
                unsafe { s.0.release_raw(|key, d| self.apply_deferred(key, d)) };
            }
        }
    }

    /// Number of live sampled blocks (takes every shard lock in turn: not for hot paths; a
    /// process-wide counter would be a cache line that every thread writes).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| self.with(s, |d| d.table.len as usize).unwrap_or(0))
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

    impl LiveTable {
        fn ins(&self, addr: usize, b: Block) -> bool {
            self.insert(addr, b) == Inserted::Done
        }
        fn rem(&self, addr: usize) -> Option<Block> {
            match self.remove(addr) {
                Removed::Found(b) => Some(b),
                _ => None,
            }
        }
    }

    #[test]
    fn insert_lookup_remove() {
        static T: LiveTable = LiveTable::new(); // 80 KiB: not on a test thread's stack
        let t = &T;
        assert!(!t.filter_hit(0x1000));
        assert!(t.ins(0x1000, Block { stack: 5, size: 77 }));
        assert!(t.filter_hit(0x1000));
        assert_eq!(t.rem(0x1000), Some(Block { stack: 5, size: 77 }));
        assert_eq!(t.rem(0x1000), None);
        assert!(!t.filter_hit(0x1000));
    }

    #[test]
    fn churn_keeps_every_live_entry_findable() {
        static T: LiveTable = LiveTable::new(); // 80 KiB: not on a test thread's stack
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
                assert_eq!(t.rem(addr), Some(b), "round {round}");
            } else {
                let b = Block {
                    stack: (round % 1000) as u32 + 1,
                    size: round,
                };
                assert_eq!(t.rem(addr), None);
                assert!(t.ins(addr, b));
                live.insert(addr, b);
            }
        }
        assert_eq!(t.len(), live.len());
        for (&a, &b) in &live {
            assert!(t.filter_hit(a));
            assert_eq!(t.rem(a), Some(b));
        }
        assert!(t.is_empty());
        assert!(
            t.filter.iter().all(|f| f.load(Ordering::Relaxed) == 0),
            "filter drains to zero"
        );
    }

    #[test]
    fn filter_saturates_and_stays_correct() {
        static T: LiveTable = LiveTable::new(); // 80 KiB: not on a test thread's stack
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
            t.ins(a, Block { stack: 1, size: 1 });
        }
        for &a in &same {
            assert!(t.filter_hit(a));
            assert!(t.rem(a).is_some());
        }
        assert!(t.filter_hit(same[0]), "stuck counters never return to zero");
        assert!(!t.filter_hit(0x5555_0000));
        assert!(t.ins(same[0], Block { stack: 1, size: 1 }));
        assert_eq!(
            t.free_target(same[0]),
            crate::hooks::free_filtered as *mut c_void
        );
        t.set_every_block();
        assert!(t.filter_hit(0x5555_0000));
        assert!((0..1 << 20).step_by(16).all(|a| t.filter_hit(a)));
        // Every slot, the marked one too, now goes to the table without asking the filter.
        let exact = crate::hooks::free_marked as *mut c_void;
        assert!(
            (0..64 << 20)
                .step_by(4096)
                .all(|a| t.free_target(a) == exact)
        );
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
                            t.ins(
                                base + i * 16,
                                Block {
                                    stack: 1,
                                    size: i as u64 + r,
                                },
                            );
                        }
                        for i in 0..5000 {
                            assert!(t.filter_hit(base + i * 16));
                            assert_eq!(t.rem(base + i * 16).map(|b| b.size), Some(i as u64 + r));
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
    fn overflowing_buckets_stay_findable_and_drain() {
        let mut t = Table::EMPTY;
        assert!(t.grow());
        let bmask = t.bmask as usize;
        // 14 keys with one home bucket: they fill it and the next two, and one more spills
        // into a fourth bucket (wrapping past the end if the home is the last one).
        let target = home(hash(0x10_0000), bmask);
        let keys: Vec<u64> = (0..)
            .map(|i: u64| 0x10_0000 + i * 16)
            .filter(|&k| home(hash(k as usize), bmask) == target)
            .take(14)
            .collect();
        for (i, &k) in keys.iter().enumerate() {
            assert!(t.reserve());
            t.put(Slot {
                key: k,
                val: i as u64,
            });
        }
        assert_eq!(*t.overflow(target), 10, "10 keys went past their home");
        assert_eq!(*t.overflow((target + 3) & bmask), 0);
        // Take them from the middle out: every remaining one must stay findable.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&i| (i as i64 - 7).abs());
        for (n, &i) in order.iter().enumerate() {
            assert_eq!(t.take(keys[i]), Some(i as u64), "key {i}");
            assert_eq!(t.take(keys[i]), None);
            for &j in &order[n + 1..] {
                let b = (0..4)
                    .map(|d| (target + d) & bmask)
                    .find(|&b| t.matches(b, keys[j]) != 0);
                assert!(b.is_some(), "key {j} lost after removing {i}");
            }
        }
        assert_eq!(t.len, 0);
        for d in 0..4 {
            assert_eq!(*t.overflow((target + d) & bmask), 0, "counter {d} drains");
        }
    }

    #[test]
    fn the_inline_bucket_holds_three_then_moves_out() {
        let mut t = Table::EMPTY;
        let keys: Vec<u64> = (1..=5).map(|i| i * 0x1_0010).collect();
        for (i, &k) in keys[..3].iter().enumerate() {
            assert!(t.reserve());
            t.put(Slot {
                key: k,
                val: i as u64,
            });
        }
        assert!(t.mem.is_null(), "three entries stay inline");
        assert_eq!(t.take(keys[1]), Some(1));
        assert_eq!(t.take(keys[1]), None);
        assert_eq!(
            t.take(keys[4]),
            None,
            "a miss in the inline bucket ends there"
        );
        assert!(t.reserve());
        t.put(Slot {
            key: keys[3],
            val: 3,
        });
        assert!(t.mem.is_null(), "three again after the removal");
        for &i in &[4, 1] {
            assert!(t.reserve());
            t.put(Slot {
                key: keys[i],
                val: i as u64,
            });
        }
        assert_eq!(
            t.buckets(),
            MIN_BUCKETS,
            "the fourth moves them to a mapping"
        );
        assert_eq!(t.inline, [Slot { key: 0, val: 0 }; WAYS]);
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(t.take(k), Some(i as u64));
        }
        assert_eq!(t.len, 0);
    }

    #[test]
    fn tally_sums_live_blocks_by_stack() {
        static T: LiveTable = LiveTable::new();
        let t = &T;
        for i in 0..1000usize {
            t.ins(
                0x10_0000 + i * 48,
                Block {
                    stack: (i % 3) as u32 + 1,
                    size: i as u64,
                },
            );
        }
        for i in (0..1000usize).step_by(2) {
            t.rem(0x10_0000 + i * 48);
        }
        let mut out = [[0u64; 2]; 3]; // stack 3 is past the end: left out
        assert!(t.tally(0, &mut out, u64::MAX));
        let one = crate::sampler::OBJ_ONE;
        let want = |k: usize| {
            let sizes = (1..1000u64)
                .step_by(2)
                .filter(|i| (i % 3) as usize + 1 == k);
            [sizes.clone().count() as u64 * one, sizes.sum()]
        };
        assert_eq!(out, [[0, 0], want(1), want(2)]);
    }

    /// `release` (detach) in both modes: every entry gone and its memory given back, every
    /// slot without a live mark back to the real free, a bootstrap block's slot still marked
    /// and its filter byte still set, no count below zero; an entry added afterwards (a sample
    /// in flight) is counted and found like any other.
    #[test]
    fn release_forgets_everything_but_bootstrap_marks() {
        static SAMPLED: LiveTable = LiveTable::new();
        static EXACT: LiveTable = LiveTable::new();
        let real = 0x5eed_0000 as *mut c_void;
        let filtered = crate::hooks::free_filtered as *mut c_void;
        let marked = crate::hooks::free_marked as *mut c_void;
        for (t, exact) in [(&SAMPLED, false), (&EXACT, true)] {
            // In a slot of its own (not one of the entries' slots below).
            let boot = 0x6543_2010usize;
            t.filter_add(boot);
            t.set_free(real);
            if exact {
                t.set_every_block();
            }
            let addrs: Vec<usize> = (0..20_000usize).map(|i| 0x1000_0000 + i * 48).collect();
            for (i, &a) in addrs.iter().enumerate() {
                assert!(t.ins(
                    a,
                    Block {
                        stack: 1,
                        size: i as u64
                    }
                ));
            }
            for &a in addrs.iter().step_by(3) {
                assert!(t.rem(a).is_some());
            }
            let live = t.len();
            assert_eq!(t.release(real), live, "exact {exact}");
            assert!(t.is_empty());
            assert!(
                t.shards
                    .iter()
                    .all(|s| s.0.lock().table.mem.is_null() && s.0.lock().table.len == 0)
            );
            for &a in &addrs {
                assert_eq!(t.free_target(a), real, "exact {exact}: {a:#x}");
                assert!(!t.may_hold(a));
                assert_eq!(t.rem(a), None);
            }
            let boot_target = if exact { marked } else { filtered };
            assert_eq!(t.free_target(boot), boot_target);
            assert!(
                t.may_hold(boot),
                "a bootstrap block must still reach free_marked"
            );
            let g = route::group(boot);
            let k = route::index(boot) % route::GROUP;
            assert_eq!(
                t.shards[g].0.lock().counts.slots()[k],
                1,
                "only the bootstrap mark"
            );
            let marks: usize = t
                .shards
                .iter()
                .map(|s| {
                    s.0.lock()
                        .counts
                        .slots()
                        .iter()
                        .map(|&n| n as usize)
                        .sum::<usize>()
                })
                .sum();
            assert_eq!(marks, 1, "exact {exact}: every other count back to zero");
            if !exact {
                let bytes: usize = t
                    .filter
                    .iter()
                    .map(|f| f.load(Ordering::Relaxed) as usize)
                    .sum();
                assert_eq!(bytes, 1, "only the bootstrap block's filter byte");
            }
            // A sample in flight inserts after the release: marked, found, unmarked.
            let late = addrs[1];
            assert!(t.ins(late, Block { stack: 2, size: 7 }));
            assert_eq!(t.free_target(late), boot_target);
            assert!(t.may_hold(late));
            assert_eq!(t.rem(late), Some(Block { stack: 2, size: 7 }));
            assert_eq!(t.free_target(late), real);
            // Releasing again is harmless.
            assert_eq!(t.release(real), 0);
            assert_eq!(t.free_target(boot), boot_target);
        }
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
