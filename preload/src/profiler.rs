//! The profiler proper: what happens when an allocation is sampled, when a sampled block is
//! freed, when a mapping changes, and when a profile is dumped.
//!
//! The hot path lives in `hooks.rs` and reads top to bottom:
//! `malloc → real malloc → countdown -= size → (≤ 0?) → sample()` here:
//! `unwind → intern stack → add weight → record live block`. Everything here runs with the
//! thread marked busy (nested hooks forward), saves and restores `errno`, never allocates from
//! the process allocator and never holds a lock while calling into host code.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::config::{Config, MAX_DEPTH_LIMIT};
use crate::dump::{self, DumpBuf, InUse, Meta};
use crate::fmt::StackBuf;
use crate::live::{Block, LiveTable, MAX_STACK_ID};
use crate::mmaps::MAPS;
use crate::sampler;
use crate::stacks::StackTable;
use crate::sync::SpinLock;
use crate::thread::{self, Busy, ThreadState};
use crate::{real, sys, unwind};

/// Heap stacks and their counters.
pub static HEAP: StackTable = StackTable::new();
/// Mapping stacks (mmap space) and their counters.
pub static MAPPED: StackTable = StackTable::new();
/// Live sampled heap blocks.
pub static LIVE: LiveTable = LiveTable::new();

/// Mapping tracking on (`prof_mmap`).
pub static TRACK_MMAP: AtomicBool = AtomicBool::new(false);

/// What every sample reads besides its thread's state and the tables, in one cache line.
/// Samples are hundreds of allocations apart, long enough for the application to evict our
/// lines; as separate statics these landed in five lines, each a miss per sample. All are
/// written rarely (start-up, fork, a dump request), so sharing the line costs nothing.
#[repr(C, align(64))]
struct Hot {
    /// Set once everything is initialized and the configuration says to profile.
    active: AtomicBool,
    /// Set in a forked child: timers are not inherited, re-create them at the next sample.
    triggers_lost: AtomicBool,
    /// Set by the `prof_signal` handler, served by the next sample on any thread or the next
    /// tick of the periodic timer.
    dump_requested: AtomicBool,
    /// `prof_gdump`, copied from the configuration.
    gdump: AtomicBool,
    lg_sample: AtomicU32,
    /// `sampler::ln_keep(lg_sample)`, as bits.
    ln_keep: AtomicU64,
    /// Allocated bytes at which the next `lg_prof_interval` dump is due (`u64::MAX`: off).
    next_interval: AtomicU64,
    /// Objects the program has unloaded (`dlclose`): a walk memorized before one is not
    /// reused (`memo.rs`).
    unloads: AtomicU32,
}

impl Hot {
    /// Bytes until this thread's next sample, at the configured rate `lg`.
    fn next_wait(&self, rng: &mut u64, lg: u32) -> i64 {
        sampler::next_wait(
            rng,
            lg,
            f64::from_bits(self.ln_keep.load(Ordering::Relaxed)),
        )
    }
}

static HOT: Hot = Hot {
    active: AtomicBool::new(false),
    triggers_lost: AtomicBool::new(false),
    dump_requested: AtomicBool::new(false),
    gdump: AtomicBool::new(false),
    lg_sample: AtomicU32::new(19),
    ln_keep: AtomicU64::new(0),
    next_interval: AtomicU64::new(u64::MAX),
    unloads: AtomicU32::new(0),
};

/// The program unloaded an object: other code, with other unwind rules, may be loaded at its
/// addresses. Forgets the cached rules and, by counting, every thread's memorized walk.
pub fn code_unloaded() {
    HOT.unloads.fetch_add(1, Ordering::AcqRel);
    unwind::forget_rules();
}

/// Written once by `init` before `HOT.active` is published, read-only afterwards.
struct ConfigCell(UnsafeCell<Config>);
// SAFETY: written only by `init` on one thread before HOT.active is set with Release; every
// reader first observes HOT.active with Acquire (or runs in that same thread).
unsafe impl Sync for ConfigCell {}
static CONFIG: ConfigCell = ConfigCell(UnsafeCell::new(Config::default()));

fn config() -> &'static Config {
    // SAFETY: see ConfigCell.
    unsafe { &*CONFIG.0.get() }
}

/// Serializes dumps; holds the format buffer and the per-process sequence numbers.
struct DumpState {
    buf: DumpBuf,
    seq: u64,
    interval_n: u64,
    manual_n: u64,
    gdump_n: u64,
    final_done: bool,
}

static DUMP: SpinLock<DumpState> = SpinLock::new(DumpState {
    buf: DumpBuf([0; 64 * 1024]),
    seq: 0,
    interval_n: 0,
    manual_n: 0,
    gdump_n: 0,
    final_done: false,
});

/// Bytes allocated process-wide, counted at sample events (for `lg_prof_interval`).
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
/// Unbiased in-use bytes of sampled blocks, and the high-water mark that last caused a dump.
static INUSE: AtomicU64 = AtomicU64::new(0);
static HIGH_WATER: AtomicU64 = AtomicU64::new(0);
static LIVE_FULL_SAID: AtomicBool = AtomicBool::new(false);
/// Round-robin assignment of counter stripes to threads.
static NEXT_STRIPE: AtomicU32 = AtomicU32::new(0);

/// One-time start-up, from the library constructor (or the first hook before it).
pub fn init() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let resolved = real::resolve_all();
    if !real::FREE.get().is_null() {
        LIVE.set_free(real::FREE.get());
    }
    if !resolved {
        sys::say(&[
            b"cannot find the real malloc/free (dlsym RTLD_NEXT failed); profiling disabled",
        ]);
        return;
    }
    let _busy = Busy::enter();
    if sys::is_secure() {
        return; // setuid/setgid: stay passive, write nothing
    }
    // SAFETY: single-threaded start-up, before HOT.active is published (see ConfigCell).
    let cfg = unsafe { &mut *CONFIG.0.get() };
    if let Some(text) = sys::getenv(c"JEPROF_CONF") {
        cfg.apply(text, &mut |entry, why| {
            sys::say(&[b"JEPROF_CONF: ignoring '", entry, b"': ", why.as_bytes()]);
        });
    }
    if !cfg.enabled {
        return;
    }
    // Address space only; pages become resident as stacks are added.
    if !HEAP.init(1 << 18, 1 << 24) || !MAPPED.init(1 << 14, 1 << 21) {
        sys::say(&[b"cannot reserve memory for the stack tables; profiling disabled"]);
        return;
    }
    unwind::init(cfg.libgcc_unwinder);
    HOT.lg_sample.store(cfg.lg_sample, Ordering::Relaxed);
    let ln_keep = sampler::ln_keep(cfg.lg_sample);
    HOT.ln_keep.store(ln_keep.to_bits(), Ordering::Relaxed);
    HOT.gdump.store(cfg.gdump, Ordering::Relaxed);
    if cfg.lg_sample == 0 {
        LIVE.set_every_block();
    }
    find_allocator();
    TRACK_MMAP.store(cfg.mmap, Ordering::Relaxed);
    if cfg.lg_interval >= 0 {
        HOT.next_interval
            .store(1u64 << cfg.lg_interval, Ordering::Relaxed);
    }
    // SAFETY: registering plain extern "C" functions; they take only our own locks.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    HOT.active.store(true, Ordering::Release);
    start_triggers();
}

// ---- dumps on a timer and on demand ----------------------------------------------------------

/// Time-based dumps (`prof_interval_secs`) are written on the thread of a SIGEV_THREAD timer:
/// a thread libc creates, and only when that key asks for it (a profiler that adds a thread to
/// every process would break programs that must stay single-threaded, e.g. to `unshare`).
static PERIODIC: SpinLock<Option<sys::Timer>> = SpinLock::new(None);
/// What the handler writes into the signaled thread's countdown so that its next allocation
/// takes the slow path. Anything below `POKED_BELOW` counts as poked (no real countdown gets
/// there: that would take an allocation of more than 2^61 bytes, which cannot succeed).
const POKED: i64 = i64::MIN / 2;
const POKED_BELOW: i64 = -(1 << 61);

extern "C" fn periodic_fired(_: usize) {
    serve_dump_request();
    dump_now(Trigger::Interval, true);
}

/// The `prof_signal` handler. Async-signal-safe: two stores, one of them to this thread's own
/// TLS; no dump is ever written inside a signal handler. `jeprof-rs dump` signals every thread
/// of the process, so the first one to allocate writes the dump. (A signal that lands between
/// the fast path's load and store of the countdown loses its poke; the request stays pending.)
extern "C" fn on_signal(_: libc::c_int) {
    HOT.dump_requested.store(true, Ordering::Release);
    thread::current().bytes_until_sample.set(POKED);
}

/// When the last on-demand dump was written (monotonic ns).
static LAST_MANUAL_NS: AtomicU64 = AtomicU64::new(0);

/// Writes the on-demand dump if one was requested (and no other dump is being written). One
/// `jeprof-rs dump` signals every thread, and handlers may run after the request was served:
/// requests within 250 ms of the last on-demand dump are folded into it.
fn serve_dump_request() {
    if !HOT.dump_requested.load(Ordering::Relaxed)
        || !HOT.dump_requested.swap(false, Ordering::AcqRel)
    {
        return;
    }
    let now = sys::now_monotonic_ns();
    let last = LAST_MANUAL_NS.load(Ordering::Relaxed);
    // Claim the request before dumping, so that threads serving it at the same time write one
    // dump between them.
    if now.saturating_sub(last) < 250_000_000
        || LAST_MANUAL_NS
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if !dump_now(Trigger::Manual, false) {
        LAST_MANUAL_NS.store(last, Ordering::Relaxed);
        // A dump was in progress: try again later.
        HOT.dump_requested.store(true, Ordering::Release);
    }
}

fn start_triggers() {
    let cfg = config();
    if cfg.interval_secs > 0 {
        let mut p = PERIODIC.lock();
        if p.is_none() {
            *p = sys::Timer::new(periodic_fired);
        }
        let ns = cfg.interval_secs * 1_000_000_000;
        if !p.as_ref().is_some_and(|t| t.arm(ns, ns)) {
            sys::say(&[b"cannot create the prof_interval_secs timer; periodic dumps are off"]);
        }
    }
    if cfg.signal > 0 {
        // A forked child keeps the parent's handler; installing again fails harmlessly then.
        sys::install_handler(cfg.signal, on_signal);
    }
}

/// In a forked child, before its first sample: timers do not survive fork.
fn restart_triggers_after_fork() {
    if HOT.triggers_lost.swap(false, Ordering::AcqRel) {
        let saved = sys::errno();
        *PERIODIC.lock() = None;
        start_triggers();
        sys::set_errno(saved);
    }
}

/// Whether profiling is on (for tests and the dump trigger).
pub fn active() -> bool {
    HOT.active.load(Ordering::Acquire)
}

/// Slow path of every allocating hook: the countdown reached zero. Decides whether this
/// allocation (already made: `ptr`, `size`) is a sample, and records it.
#[cold]
#[inline(never)]
/// Takes the registers one by one (in registers, not through memory) and returns `ptr`, so
/// that the hook can tail-call it.
pub fn sample(ptr: *mut c_void, size: usize, pc: usize, sp: usize, bp: usize) -> *mut c_void {
    let t = thread::current();
    if t.busy.get() == 0 {
        sample_in(t, ptr, size, unwind::Regs { pc, sp, bp });
    }
    // else: an allocation made by the profiler itself (e.g. inside the unwinder)
    ptr
}

fn sample_in(t: &ThreadState, ptr: *mut c_void, size: usize, regs: unwind::Regs) {
    // Park the countdown while we work, so that nested allocations stay on the fast path
    // (after reading it: it says how many bytes were allocated since the last draw).
    let mut countdown = t.bytes_until_sample.get();
    t.bytes_until_sample.set(i64::MAX);
    // No errno save here: nothing on this path changes errno (the system calls it can make
    // restore it themselves, see sys.rs).
    let _busy = Busy::enter();
    if !HOT.active.load(Ordering::Acquire) {
        // Not profiling (not yet, or never): keep this thread off the slow path. A thread that
        // allocated before start-up finished re-checks after this many bytes.
        t.bytes_until_sample
            .set(if real::resolved() { i64::MAX } else { 1 << 20 });
        return;
    }
    if HOT.triggers_lost.load(Ordering::Relaxed) {
        restart_triggers_after_fork();
    }
    serve_dump_request();
    let lg = HOT.lg_sample.load(Ordering::Relaxed);
    if t.rng.get() == 0 || countdown < POKED_BELOW {
        // First allocation of this thread, or the countdown was replaced by a dump request:
        // draw a fresh countdown (waits are memoryless, so this keeps sampling unbiased);
        // this allocation is sampled only if it crosses it.
        let mut rng = t.rng.get();
        if rng == 0 {
            rng = sampler::seed(
                sys::gettid() as u64,
                sys::now_monotonic_ns(),
                t as *const _ as u64,
            );
            t.stripe.set(NEXT_STRIPE.fetch_add(1, Ordering::Relaxed));
        }
        let wait = HOT.next_wait(&mut rng, lg);
        t.rng.set(rng);
        t.last_wait.set(wait as u64);
        countdown = wait - size.min(i64::MAX as usize) as i64;
        if countdown > 0 || (lg != 0 && size == 0) {
            t.bytes_until_sample.set(countdown);
            return;
        }
    }
    // Bytes allocated by this thread since the countdown was drawn (it went from last_wait
    // down to `countdown`).
    let allocated = t.last_wait.get().wrapping_sub(countdown as u64);
    let mut rng = t.rng.get();
    let wait = HOT.next_wait(&mut rng, lg);
    t.rng.set(rng);
    t.last_wait.set(wait as u64);
    t.bytes_until_sample.set(wait);
    if !ptr.is_null() {
        record(ptr as usize, size as u64, lg, regs);
    }
    count_allocated(allocated);
}

/// The id of a walked stack: the thread's last one when the walk found the same frames (a
/// loop allocating from one site through different registers), else from the table.
fn intern_heap_stack(t: &ThreadState, frames: &[usize]) -> u32 {
    let last = t.last_stack.get();
    if last != 0
        && t.last_frame0.get() == frames[0]
        && t.last_depth.get() as usize == frames.len()
        && HEAP.is(last, frames)
    {
        return last;
    }
    let id = HEAP.intern(frames);
    t.last_frame0.set(frames[0]);
    t.last_depth.set(frames.len() as u32);
    t.last_stack.set(id);
    id
}

fn record(addr: usize, size: u64, lg: u32, regs: unwind::Regs) {
    let size = size.min((1 << 40) - 1);
    let t = thread::current();
    // SAFETY: this thread's own memo, and the reentrancy guard is held (the caller entered
    // `Busy`), so no other reference to it exists while this one lives.
    let memo = unsafe { &mut *t.memo.get() };
    let generation = HOT.unloads.load(Ordering::Acquire);
    let id = match memo.repeat(regs, generation) {
        Some(id) => id,
        None => {
            let mut buf = [MaybeUninit::<usize>::uninit(); MAX_DEPTH_LIMIT];
            let mut reads = unwind::Reads::new();
            let frames =
                unwind::backtrace_from(Some(regs), &mut buf[..config().max_depth], &mut reads);
            let id = intern_heap_stack(t, frames);
            memo.remember(regs, &reads, id, generation);
            id
        }
    };
    if id == 0 || id > MAX_STACK_ID {
        return;
    }
    let (objs, bytes) = sampler::weight(size, lg);
    HEAP.add(id, objs, bytes);
    if LIVE.insert(addr, Block { stack: id, size }) {
        // A process-wide counter is a cache line every thread writes: only for prof_gdump.
        if HOT.gdump.load(Ordering::Relaxed) {
            let now = INUSE.fetch_add(bytes, Ordering::Relaxed) + bytes;
            if now > HIGH_WATER.load(Ordering::Relaxed) {
                gdump(now);
            }
        }
    } else {
        // Counted as allocated, never as in use: no entry says it is live.
        if !LIVE_FULL_SAID.swap(true, Ordering::Relaxed) {
            sys::say(&[b"out of memory for the live-block table; some blocks are not tracked"]);
        }
    }
}

/// Slow path of `free` when the filter says the block may be ours. Returns true for a
/// bootstrap block, which must not reach the real free.
#[cold]
#[inline(never)]
pub fn free_slow(addr: usize) -> bool {
    if real::in_bootstrap(addr as *mut c_void) {
        return true;
    }
    forget(addr);
    false
}

/// Slow path of `free`/`realloc` for a pointer that may be a live sample: forget it. Nothing
/// else to undo: in-use counts are the live table's contents, summed when a profile is
/// written (`LiveTable::tally`). Returns what was recorded, for `realloc` failure recovery.
#[cold]
#[inline(never)]
pub fn forget(addr: usize) -> Option<Block> {
    let _busy = Busy::enter();
    let b = LIVE.remove(addr);
    if let Some(b) = b
        && HOT.gdump.load(Ordering::Relaxed)
    {
        let (_, bytes) = sampler::weight(b.size, HOT.lg_sample.load(Ordering::Relaxed));
        INUSE.fetch_sub(bytes, Ordering::Relaxed);
    }
    b
}

/// Puts back a block that `forget` removed, when the realloc that was to free it failed.
#[cold]
pub fn restore(addr: usize, b: Block) {
    let _busy = Busy::enter();
    // In use again; the cumulative counters were charged when the block was first recorded.
    if LIVE.insert(addr, b) && HOT.gdump.load(Ordering::Relaxed) {
        let (_, bytes) = sampler::weight(b.size, HOT.lg_sample.load(Ordering::Relaxed));
        INUSE.fetch_add(bytes, Ordering::Relaxed);
    }
}

// ---- mappings ---------------------------------------------------------------------------

/// Code range of the allocator under us when it is not glibc (jemalloc, tcmalloc): its own
/// mmap calls go through our hook, but they are the heap's backing store, not the program's
/// mappings.
static ALLOCATOR_LO: AtomicU64 = AtomicU64::new(0);
static MALLINFO2: AtomicU64 = AtomicU64::new(0);

/// glibc's allocator statistics, when glibc is the allocator under us.
fn mallinfo() -> Option<sys::MallInfo2> {
    let f = MALLINFO2.load(Ordering::Relaxed);
    if f == 0 {
        return None;
    }
    // SAFETY: `f` is glibc's mallinfo2, which returns the struct by value and takes no
    // arguments; it locks glibc's arenas briefly, and no dump runs inside glibc's malloc.
    Some(unsafe { core::mem::transmute::<u64, extern "C" fn() -> sys::MallInfo2>(f)() })
}
static ALLOCATOR_HI: AtomicU64 = AtomicU64::new(0);

fn find_allocator() {
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr only writes `info`; the address is the real malloc.
    if unsafe { libc::dladdr(real::MALLOC.get(), &mut info) } == 0 || info.dli_fbase.is_null() {
        return;
    }
    // SAFETY: dli_fname is NUL-terminated when set.
    let name = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
    if name.windows(7).any(|w| w == b"libc.so") {
        // glibc maps its arenas through internal calls we never see; its statistics say how
        // much it holds beyond what the program uses (the "leak or allocator?" question).
        // SAFETY: looking up a symbol by name.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"mallinfo2".as_ptr()) };
        MALLINFO2.store(f as u64, Ordering::Relaxed);
        return;
    }
    // SAFETY: dli_fbase is the load address of the mapped ELF object defining malloc.
    let (lo, hi) = unsafe { unwind::exec_range(info.dli_fbase as usize) };
    ALLOCATOR_LO.store(lo as u64, Ordering::Relaxed);
    ALLOCATOR_HI.store(hi as u64, Ordering::Relaxed);
}

fn from_allocator(frame: usize) -> bool {
    (frame as u64) >= ALLOCATOR_LO.load(Ordering::Relaxed)
        && (frame as u64) < ALLOCATOR_HI.load(Ordering::Relaxed)
}

fn page_round(len: usize) -> usize {
    len.checked_add(sys::PAGE - 1)
        .map_or(usize::MAX & !(sys::PAGE - 1), |l| l & !(sys::PAGE - 1))
}

fn mapped_delta(stack: u32, objs: i64, bytes: i64) {
    MAPPED.adjust_inuse(stack, objs * sampler::OBJ_ONE as i64, bytes);
}

/// A successful mmap/mmap64 (or the new range of an mremap).
#[cold]
#[inline(never)]
pub fn on_map(addr: usize, len: usize, prot: i32, regs: unwind::Regs) {
    if !HOT.active.load(Ordering::Acquire) {
        return;
    }
    let saved = sys::errno();
    let _busy = Busy::enter();
    let end = addr.saturating_add(page_round(len));
    if prot == libc::PROT_NONE {
        // A reservation (or a decommit with MAP_FIXED|PROT_NONE): not memory in use.
        MAPS.lock().unmap(addr, end, &mut mapped_delta);
    } else {
        let mut buf = [MaybeUninit::<usize>::uninit(); MAX_DEPTH_LIMIT];
        let frames = unwind::backtrace_from(
            Some(regs),
            &mut buf[..config().max_depth],
            &mut unwind::Reads::new(),
        );
        if from_allocator(frames[0]) {
            sys::set_errno(saved);
            return;
        }
        let id = MAPPED.intern(frames);
        let bytes = end - addr;
        MAPPED.adjust_alloc(id, sampler::OBJ_ONE, bytes as u64);
        let ok = MAPS.lock().map(addr, end, id, &mut mapped_delta);
        if !ok && !LIVE_FULL_SAID.swap(true, Ordering::Relaxed) {
            sys::say(&[b"out of memory for the mapping table; some mappings are not tracked"]);
        }
    }
    sys::set_errno(saved);
}

/// Before munmap (or the old range of an mremap): the range stops being in use.
#[cold]
#[inline(never)]
pub fn on_unmap(addr: usize, len: usize) {
    if !HOT.active.load(Ordering::Acquire) {
        return;
    }
    let saved = sys::errno();
    let _busy = Busy::enter();
    MAPS.lock().unmap(
        addr,
        addr.saturating_add(page_round(len)),
        &mut mapped_delta,
    );
    sys::set_errno(saved);
}

// ---- dumps ------------------------------------------------------------------------------

fn count_allocated(bytes: u64) {
    let next = HOT.next_interval.load(Ordering::Relaxed);
    if next == u64::MAX {
        return;
    }
    let now = ALLOCATED.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if now >= next {
        let step = 1u64 << config().lg_interval;
        let new_next = (now / step + 1) * step;
        if HOT
            .next_interval
            .compare_exchange(next, new_next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            dump_now(Trigger::Interval, false);
        }
    }
}

fn gdump(now: u64) {
    // A new high-water mark; dump only when it beats the last one by a sample period, so that
    // a plateau does not produce a file per allocation.
    let hw = HIGH_WATER.load(Ordering::Relaxed);
    let step = config().sample_period().max(1 << 20);
    if now >= hw.saturating_add(step)
        && HIGH_WATER
            .compare_exchange(hw, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        dump_now(Trigger::HighWater, false);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Final,
    Interval,
    HighWater,
    Manual,
}

/// Writes the heap profile (and the mmap profile, if tracked) now. A dump already in progress
/// on another thread makes this one a no-op unless `wait` is set. Returns false for that case.
pub fn dump_now(trigger: Trigger, wait: bool) -> bool {
    if !HOT.active.load(Ordering::Acquire) {
        return true;
    }
    let saved = sys::errno();
    let _busy = Busy::enter();
    let mut st = if wait {
        DUMP.lock()
    } else {
        match DUMP.try_lock() {
            Some(g) => g,
            None => return false,
        }
    };
    if st.final_done {
        return true;
    }
    let mut tag = StackBuf::<24>::new();
    {
        use core::fmt::Write as _;
        let _ = match trigger {
            Trigger::Final => write!(tag, "f"),
            Trigger::Interval => {
                st.interval_n += 1;
                write!(tag, "i{}", st.interval_n - 1)
            }
            Trigger::HighWater => {
                st.gdump_n += 1;
                write!(tag, "u{}", st.gdump_n - 1)
            }
            Trigger::Manual => {
                st.manual_n += 1;
                write!(tag, "m{}", st.manual_n - 1)
            }
        };
    }
    let cfg = config();
    let pid = sys::getpid();
    let seq = st.seq;
    st.seq += 1;
    let mut name = StackBuf::<600>::new();
    dump::file_name(&mut name, cfg.prefix(), pid, seq, tag.as_bytes(), false);
    let lg = HOT.lg_sample.load(Ordering::Relaxed);
    let meta = Meta {
        kind: "heap",
        tag: tag.as_bytes(),
        mallinfo: mallinfo(),
    };
    let written = match name.as_cstr() {
        Some(path) => {
            match dump::write_profile(path, &HEAP, InUse::Live(&LIVE), lg, &meta, &mut st.buf) {
                Ok(w) => Some(w),
                Err(e) => {
                    report_write_error(name.as_bytes(), e);
                    None
                }
            }
        }
        None => None,
    };
    if TRACK_MMAP.load(Ordering::Relaxed) {
        let mut mname = StackBuf::<600>::new();
        dump::file_name(&mut mname, cfg.prefix(), pid, seq, tag.as_bytes(), true);
        let meta = Meta {
            kind: "mmap",
            tag: tag.as_bytes(),
            mallinfo: None,
        };
        if let Some(path) = mname.as_cstr()
            && let Err(e) =
                dump::write_profile(path, &MAPPED, InUse::Counters, 0, &meta, &mut st.buf)
            && written.is_some()
        {
            report_write_error(mname.as_bytes(), e);
        }
    }
    if trigger == Trigger::Final {
        st.final_done = true;
        if cfg.leak
            && let Some(w) = written
        {
            leak_summary(&w, name.as_bytes());
        }
    }
    drop(st);
    sys::set_errno(saved);
    true
}

fn report_write_error(path: &[u8], errno: i32) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut msg = StackBuf::<64>::new();
    // SAFETY: strerror returns a pointer to a static (or thread-local) NUL-terminated string.
    let s = unsafe { core::ffi::CStr::from_ptr(libc::strerror(errno)) };
    msg.push(s.to_bytes());
    sys::say(&[b"cannot write profile ", path, b": ", msg.as_bytes()]);
}

fn leak_summary(w: &dump::Written, path: &[u8]) {
    use core::fmt::Write as _;
    let mut line = StackBuf::<200>::new();
    let exact = HOT.lg_sample.load(Ordering::Relaxed) == 0;
    let approx = if exact { "" } else { "~" };
    let _ = write!(
        line,
        "Leak summary: {approx}{} bytes in {approx}{} objects still in use, from {} stacks; profile: ",
        w.est_bytes.round() as u64,
        w.est_objs.round() as u64,
        w.stacks
    );
    sys::say(&[line.as_bytes(), path]);
}

/// The final dump, from the library destructor.
pub fn at_exit() {
    if config().final_dump {
        dump_now(Trigger::Final, true);
    }
}

// ---- fork -------------------------------------------------------------------------------

extern "C" fn fork_prepare() {
    let _busy = Busy::enter();
    PERIODIC.raw_lock();
    DUMP.raw_lock();
    MAPS.raw_lock();
    LIVE.lock_all();
}

extern "C" fn fork_parent() {
    // SAFETY: taken in fork_prepare by this thread.
    unsafe {
        LIVE.unlock_all();
        MAPS.force_unlock();
        DUMP.force_unlock();
        PERIODIC.force_unlock();
    }
}

extern "C" fn fork_child() {
    // SAFETY: the child has only this thread, which took the locks in fork_prepare.
    unsafe {
        LIVE.unlock_all();
        MAPS.force_unlock();
        DUMP.force_unlock();
        PERIODIC.force_unlock();
    }
    HOT.triggers_lost.store(true, Ordering::Relaxed);
    // The child writes its own files under its own pid, numbered from 0.
    let mut st = DUMP.lock();
    st.seq = 0;
    st.interval_n = 0;
    st.manual_n = 0;
    st.gdump_n = 0;
}

/// Whether the calling thread is inside the profiler (hooks forward then).
#[inline(always)]
pub fn busy(t: &ThreadState) -> bool {
    t.busy.get() != 0
}

/// Convenience for hooks that need the state only to test `busy`.
#[inline(always)]
pub fn thread_busy() -> bool {
    busy(thread::current())
}
