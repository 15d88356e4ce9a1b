//! The stack table: interns call stacks and keeps four counters per stack.
//!
//! Lock-free and allocation-free. Stacks are immutable records in an append-only arena of
//! 64-bit words reserved once with `mmap` (pages become resident only when written). An
//! open-addressing index of 32-bit stack ids finds them by hash. Inserting publishes a fully
//! written record with one compare-and-swap on an empty index slot; a thread that loses the
//! race to an identical stack abandons its record (the index never points to it).
//!
//! Record layout, in words: `[hash, depth, frame0, frame1, …]`.
//!
//! Counters live apart from the records, four per stack (in-use and cumulative objects and
//! bytes; objects in fixed point, see `sampler::OBJ_SHIFT`), in `STRIPES` copies of one cache
//! line each. A thread adds to its own stripe (`thread::ThreadState::stripe`), so two threads
//! allocating from the same stack do not bounce one cache line between their cores; readers
//! sum the stripes with wrapping arithmetic (a block allocated on one stripe and freed on
//! another nets out in the sum). The heap table's in-use counters stay at "all allocated":
//! its profiles take in-use counts from the live-block table instead (`dump::InUse::Live`),
//! so that `free` touches no counter; the mapping table keeps its counters both ways.
//!
//! When the index or the arena is full, new stacks are counted under one "overflow" stack
//! and the condition is reported once.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub const HEADER_WORDS: usize = 2;
/// Counter copies per stack; a power of two.
pub const STRIPES: usize = 4;
/// Words per stripe: one 64-byte cache line (4 counters used).
const STRIPE_WORDS: usize = 8;

pub struct StackTable {
    index: AtomicPtr<AtomicU32>,
    index_mask: AtomicUsize,
    words: AtomicPtr<AtomicU64>,
    words_cap: AtomicUsize,
    words_used: AtomicUsize,
    /// id → word offset of its record (0 = not published).
    offsets: AtomicPtr<AtomicU64>,
    /// id → STRIPES cache lines of counters.
    counters: AtomicPtr<AtomicU64>,
    max_ids: AtomicUsize,
    next_id: AtomicU32,
    /// The record counting stacks that did not fit.
    overflow: AtomicU32,
    full_said: AtomicBool,
}

/// The four counter words of a stack's stripe: cumulative allocated and freed objects (fixed
/// point) and bytes. In use is allocated minus freed (wrapping: a block may be freed by a thread
/// writing another stripe), so an allocation and a free each cost two atomic additions.
const FREED_OBJS: usize = 0;
const FREED_BYTES: usize = 1;
const ALLOC_OBJS: usize = 2;
const ALLOC_BYTES: usize = 3;

/// Counters of one stack: in-use and cumulative objects (fixed point) and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub inuse_objs: u64,
    pub inuse_bytes: u64,
    pub alloc_objs: u64,
    pub alloc_bytes: u64,
}

fn hash_frames(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ frames.len() as u64;
    for &f in frames {
        h = (h ^ f as u64).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

impl StackTable {
    pub const fn new() -> Self {
        StackTable {
            index: AtomicPtr::new(core::ptr::null_mut()),
            index_mask: AtomicUsize::new(0),
            words: AtomicPtr::new(core::ptr::null_mut()),
            words_cap: AtomicUsize::new(0),
            words_used: AtomicUsize::new(1), // offset 0 means "none"
            offsets: AtomicPtr::new(core::ptr::null_mut()),
            counters: AtomicPtr::new(core::ptr::null_mut()),
            max_ids: AtomicUsize::new(0),
            next_id: AtomicU32::new(1),
            overflow: AtomicU32::new(0),
            full_said: AtomicBool::new(false),
        }
    }

    /// Reserves address space for up to `max_stacks` stacks of `arena_words` frame words in
    /// total. Called once, before any other method, by a single thread.
    pub fn init(&self, max_stacks: usize, arena_words: usize) -> bool {
        let slots = (max_stacks * 2).next_power_of_two();
        let sizes = Self::sizes(max_stacks, arena_words);
        let mut maps = [core::ptr::null_mut::<u8>(); 4];
        for (m, &len) in maps.iter_mut().zip(&sizes) {
            match crate::sys::map_anon(len) {
                Some(p) => *m = p,
                None => {
                    // Give back what was reserved (a tight RLIMIT_AS must not lose it to us).
                    for (&m, &len) in maps.iter().zip(&sizes).filter(|(m, _)| !m.is_null()) {
                        // SAFETY: made just above by map_anon with this length, unused.
                        unsafe { crate::sys::unmap(m, len) };
                    }
                    return false;
                }
            }
        }
        let [index, words, offsets, counters] = maps;
        self.counters.store(counters.cast(), Ordering::Relaxed);
        self.index_mask.store(slots - 1, Ordering::Relaxed);
        self.words_cap.store(arena_words, Ordering::Relaxed);
        self.max_ids.store(max_stacks, Ordering::Relaxed);
        self.index.store(index.cast(), Ordering::Relaxed);
        self.words.store(words.cast(), Ordering::Relaxed);
        self.offsets.store(offsets.cast(), Ordering::Release);
        // The overflow record: one frame, the address of `overflow_marker`, so that a report
        // names what happened instead of attributing bytes to a random stack.
        let marker = [overflow_marker as *const () as usize + 1];
        let id = self.intern(&marker);
        self.overflow.store(id, Ordering::Relaxed);
        true
    }

    fn sizes(max_stacks: usize, arena_words: usize) -> [usize; 4] {
        [
            (max_stacks * 2).next_power_of_two() * 4,
            arena_words * 8,
            (max_stacks + 1) * 8,
            (max_stacks + 1) * STRIPES * STRIPE_WORDS * 8,
        ]
    }

    /// Gives back the memory of a table that `init` set up, when profiling is abandoned
    /// before any other method was called (start-up, single-threaded).
    pub fn release(&self) {
        let max_stacks = self.max_ids.load(Ordering::Relaxed);
        let arena_words = self.words_cap.load(Ordering::Relaxed);
        let ptrs = [
            self.index
                .swap(core::ptr::null_mut(), Ordering::Relaxed)
                .cast::<u8>(),
            self.words
                .swap(core::ptr::null_mut(), Ordering::Relaxed)
                .cast::<u8>(),
            self.offsets
                .swap(core::ptr::null_mut(), Ordering::Relaxed)
                .cast::<u8>(),
            self.counters
                .swap(core::ptr::null_mut(), Ordering::Relaxed)
                .cast::<u8>(),
        ];
        if ptrs[0].is_null() {
            return;
        }
        for (p, len) in ptrs.into_iter().zip(Self::sizes(max_stacks, arena_words)) {
            // SAFETY: the mappings `init` made with these sizes; nothing uses the table.
            unsafe { crate::sys::unmap(p, len) };
        }
        self.max_ids.store(0, Ordering::Relaxed);
        self.words_cap.store(0, Ordering::Relaxed);
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: callers pass offsets inside the arena (they come from `publish`, which
        // bounds-checks against `words_cap`); the arena lives for the whole process.
        unsafe { &*self.words.load(Ordering::Relaxed).add(i) }
    }

    fn slot(&self, i: usize) -> &AtomicU32 {
        // SAFETY: `i` is masked by `index_mask`, within the index mapping.
        unsafe { &*self.index.load(Ordering::Relaxed).add(i) }
    }

    fn offset_of(&self, id: u32) -> usize {
        // SAFETY: ids are < max_ids + 1 (checked at allocation), within the offsets mapping.
        unsafe {
            (*self.offsets.load(Ordering::Acquire).add(id as usize)).load(Ordering::Acquire)
                as usize
        }
    }

    /// Writes a record and gives it an id, without indexing it.
    fn publish(&self, frames: &[usize], hash: u64) -> Option<(u32, usize)> {
        let need = HEADER_WORDS + frames.len();
        let off = self.words_used.fetch_add(need, Ordering::Relaxed);
        if off + need > self.words_cap.load(Ordering::Relaxed) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id as usize > self.max_ids.load(Ordering::Relaxed) {
            return None;
        }
        let rec = self.words_at(off, need);
        rec[0].store(hash, Ordering::Relaxed);
        rec[1].store(frames.len() as u64, Ordering::Relaxed);
        for (w, &f) in rec[HEADER_WORDS..].iter().zip(frames) {
            w.store(f as u64, Ordering::Relaxed);
        }
        // SAFETY: id ≤ max_ids, inside the offsets mapping.
        unsafe {
            (*self.offsets.load(Ordering::Relaxed).add(id as usize))
                .store(off as u64, Ordering::Release)
        };
        Some((id, off))
    }

    /// `len` words of the arena from `off` (the base pointer is loaded once, not per word).
    fn words_at(&self, off: usize, len: usize) -> &[AtomicU64] {
        // SAFETY: callers stay inside a published record (its header says how long it is), and
        // the arena lives for the whole process.
        unsafe { core::slice::from_raw_parts(self.words.load(Ordering::Relaxed).add(off), len) }
    }

    fn same(&self, off: usize, hash: u64, frames: &[usize]) -> bool {
        let head = self.words_at(off, HEADER_WORDS);
        if head[0].load(Ordering::Relaxed) != hash
            || head[1].load(Ordering::Relaxed) != frames.len() as u64
        {
            return false;
        }
        let stored = self.words_at(off + HEADER_WORDS, frames.len());
        stored
            .iter()
            .zip(frames)
            .all(|(w, &f)| w.load(Ordering::Relaxed) == f as u64)
    }

    /// Whether stack `id` is exactly `frames`.
    pub fn is(&self, id: u32, frames: &[usize]) -> bool {
        let off = self.offset_of(id);
        off != 0 && {
            let head = self.words_at(off, HEADER_WORDS);
            head[1].load(Ordering::Relaxed) == frames.len() as u64
                && self
                    .words_at(off + HEADER_WORDS, frames.len())
                    .iter()
                    .zip(frames)
                    .all(|(w, &f)| w.load(Ordering::Relaxed) == f as u64)
        }
    }

    /// The id of `frames`, adding it if new. Returns the overflow id when full (and 0 if the
    /// table was never initialized).
    pub fn intern(&self, frames: &[usize]) -> u32 {
        if self.index.load(Ordering::Acquire).is_null() {
            return 0;
        }
        let hash = hash_frames(frames);
        let mask = self.index_mask.load(Ordering::Relaxed);
        let mut i = hash as usize & mask;
        let mut mine: Option<(u32, usize)> = None;
        for _ in 0..=mask {
            let id = self.slot(i).load(Ordering::Acquire);
            if id == 0 {
                let (new_id, _) = match mine {
                    Some(m) => m,
                    None => match self.publish(frames, hash) {
                        Some(m) => {
                            mine = Some(m);
                            m
                        }
                        None => return self.full(),
                    },
                };
                match self
                    .slot(i)
                    .compare_exchange(0, new_id, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return new_id,
                    Err(other) => {
                        if self.same(self.offset_of(other), hash, frames) {
                            return other; // our record is abandoned
                        }
                    }
                }
            } else if self.same(self.offset_of(id), hash, frames) {
                return id;
            }
            i = (i + 1) & mask;
        }
        self.full()
    }

    #[cold]
    fn full(&self) -> u32 {
        if !self.full_said.swap(true, Ordering::Relaxed) {
            crate::sys::say(&[
                b"stack table full; further new stacks are counted as one overflow stack",
            ]);
        }
        self.overflow.load(Ordering::Relaxed)
    }

    /// The calling thread's stripe of the four counters of stack `id`.
    fn counters(&self, id: u32) -> &[AtomicU64] {
        self.stripe(id, crate::thread::current().stripe())
    }

    fn stripe(&self, id: u32, stripe: usize) -> &[AtomicU64] {
        let at = (id as usize * STRIPES + (stripe & (STRIPES - 1))) * STRIPE_WORDS;
        // SAFETY: ids are ≤ max_ids (checked when published), so the line is inside the
        // counters mapping, which lives for the whole process.
        unsafe { core::slice::from_raw_parts(self.counters.load(Ordering::Relaxed).add(at), 4) }
    }

    /// Adds an allocation of weight (objs, bytes) to stack `id`.
    pub fn add(&self, id: u32, objs: u64, bytes: u64) {
        if id == 0 {
            return;
        }
        let c = self.counters(id);
        c[ALLOC_OBJS].fetch_add(objs, Ordering::Relaxed);
        c[ALLOC_BYTES].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Calls `f(id, frames, counts)` for every stack, by id: the work is proportional to the
    /// stacks that exist, not to the table's capacity (whose untouched pages stay untouched).
    /// Ids whose record lost a publication race were never handed out and have zero counts.
    pub fn for_each(&self, scratch: &mut [usize], mut f: impl FnMut(u32, &[usize], Counts)) {
        if self.index.load(Ordering::Acquire).is_null() {
            return;
        }
        let last = (self.next_id.load(Ordering::Acquire) as usize - 1)
            .min(self.max_ids.load(Ordering::Relaxed));
        for id in 1..=last as u32 {
            if self.offset_of(id) == 0 {
                continue; // being published right now
            }
            let depth = self.frames(id, scratch);
            f(id, &scratch[..depth], self.counts(id));
        }
    }

    /// Copies the frames of stack `id` into `out`; returns how many.
    pub fn frames(&self, id: u32, out: &mut [usize]) -> usize {
        let off = self.offset_of(id);
        let depth = (self.word(off + 1).load(Ordering::Relaxed) as usize).min(out.len());
        for (k, s) in out[..depth].iter_mut().enumerate() {
            *s = self.word(off + HEADER_WORDS + k).load(Ordering::Relaxed) as usize;
        }
        depth
    }

    /// A snapshot of the counters of stack `id`.
    pub fn counts(&self, id: u32) -> Counts {
        let mut sum = [0u64; 4];
        for k in 0..STRIPES {
            for (total, c) in sum.iter_mut().zip(self.stripe(id, k)) {
                *total = total.wrapping_add(c.load(Ordering::Relaxed));
            }
        }
        Counts {
            inuse_objs: sum[ALLOC_OBJS].wrapping_sub(sum[FREED_OBJS]),
            inuse_bytes: sum[ALLOC_BYTES].wrapping_sub(sum[FREED_BYTES]),
            alloc_objs: sum[ALLOC_OBJS],
            alloc_bytes: sum[ALLOC_BYTES],
        }
    }

    /// Number of distinct stacks interned so far.
    pub fn len(&self) -> usize {
        self.next_id.load(Ordering::Relaxed).saturating_sub(1) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for StackTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Named frame for the overflow stack (never called).
#[inline(never)]
pub extern "C" fn overflow_marker() {}

impl StackTable {
    /// Adjusts only the in-use counters by signed deltas (mappings split, shrink and go away).
    pub fn adjust_inuse(&self, id: u32, objs_delta: i64, bytes_delta: i64) {
        if id == 0 {
            return;
        }
        let c = self.counters(id);
        c[FREED_OBJS].fetch_sub(objs_delta as u64, Ordering::Relaxed);
        c[FREED_BYTES].fetch_sub(bytes_delta as u64, Ordering::Relaxed);
    }
}

impl StackTable {
    /// Adds to the cumulative counters only (a mapping's bytes when made).
    pub fn adjust_alloc(&self, id: u32, objs: u64, bytes: u64) {
        if id == 0 {
            return;
        }
        let c = self.counters(id);
        c[ALLOC_OBJS].fetch_add(objs, Ordering::Relaxed);
        c[ALLOC_BYTES].fetch_add(bytes, Ordering::Relaxed);
        c[FREED_OBJS].fetch_add(objs, Ordering::Relaxed);
        c[FREED_BYTES].fetch_add(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_and_counts() {
        let t = StackTable::new();
        assert!(t.init(64, 4096));
        let a = t.intern(&[1, 2, 3]);
        let b = t.intern(&[1, 2, 4]);
        assert_ne!(a, b);
        assert_eq!(t.intern(&[1, 2, 3]), a);
        assert!(t.is(a, &[1, 2, 3]));
        assert!(!t.is(a, &[1, 2, 4]) && !t.is(a, &[1, 2]) && !t.is(b, &[1, 2, 3]));
        t.add(a, 1024, 100);
        t.add(a, 1024, 50);
        t.adjust_inuse(a, -1024, -100);
        let mut seen = Vec::new();
        let mut scratch = [0usize; 8];
        t.for_each(&mut scratch, |_, f, c| seen.push((f.to_vec(), c)));
        let row = seen.iter().find(|(f, _)| f == &[1, 2, 3]).unwrap();
        assert_eq!(
            row.1,
            Counts {
                inuse_objs: 1024,
                inuse_bytes: 50,
                alloc_objs: 2048,
                alloc_bytes: 150
            }
        );
        assert_eq!(seen.len(), 3, "two stacks plus the overflow marker");
    }

    #[test]
    fn overflows_into_one_stack() {
        let t = StackTable::new();
        assert!(t.init(4, 4096));
        let ids: Vec<u32> = (0..10).map(|i| t.intern(&[i, i + 1])).collect();
        let overflow = t.overflow.load(Ordering::Relaxed);
        assert!(ids[..3].iter().all(|&i| i != overflow));
        assert!(ids[4..].iter().all(|&i| i == overflow));
    }

    #[test]
    fn concurrent_interning_gives_one_id_per_stack() {
        let t = std::sync::Arc::new(StackTable::new());
        assert!(t.init(10_000, 1 << 20));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..2000usize)
                        .map(|i| (i, t.intern(&[i, i * 3, 7])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        for r in &results[1..] {
            assert_eq!(r, &results[0]);
        }
    }
}
