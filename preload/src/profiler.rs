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
use crate::live::{Block, Inserted, LiveTable, MAX_STACK_ID, Removed};
use crate::mmaps::{MAPS, MapList};
use crate::sampler;
use crate::stacks::StackTable;
use crate::sync::SpinLock;
use crate::thread::{self, Busy, ThreadState};
use crate::{defer, real, sys, unwind};

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
    /// Set by the `prof_trim_signal` handler: the next sample on any thread calls glibc's
    /// `malloc_trim(0)`.
    trim_requested: AtomicBool,
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
    /// Sampling on (`prof_active`, `jeprof-rs start`/`stop`). While off, each thread comes to
    /// the slow path once per `DORMANT_RECHECK` bytes to see whether it was switched on.
    sampling: AtomicBool,
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
    trim_requested: AtomicBool::new(false),
    gdump: AtomicBool::new(false),
    lg_sample: AtomicU32::new(19),
    ln_keep: AtomicU64::new(0),
    next_interval: AtomicU64::new(u64::MAX),
    unloads: AtomicU32::new(0),
    sampling: AtomicBool::new(true),
};

/// Bytes a thread allocates between two looks at `HOT.sampling` while sampling is off.
const DORMANT_RECHECK: i64 = 1 << 20;
/// The same once detached: a slow path per GiB costs nothing measurable, and a thread whose
/// `start` poke was lost still comes back.
const DETACHED_RECHECK: i64 = 1 << 30;
/// When sampling was last switched on (wall clock, microseconds; 0: at start-up).
static SAMPLING_SINCE: AtomicU64 = AtomicU64::new(0);

// ---- detach and restart -----------------------------------------------------------------
//
// `jeprof-rs detach` never unpatches an import slot (another thread may be inside any of our
// hooks, and a block we recorded may be freed through any slot); it turns the hooks into plain
// forwarding instead. Its `prof_signal` handler only stores flags: sampling off, mappings no
// longer followed, and `LIFECYCLE` to DETACH_ASKED. The next slow path on any thread that holds
// no profiler lock (every thread is poked), or the periodic timer's thread, serves the request
// under `CONTROL`: the final dump if asked for, then the live table is emptied and its mapped
// tables given back (`LiveTable::release`: frees of blocks it held then go straight to the real
// free, in exact mode too), the mapping list emptied, the timer disarmed. Each thread that
// comes to the slow path afterwards parks its countdown at 1 GiB: from then on `malloc` is its
// five instructions, `free` its four (only the slots of bootstrap blocks stay marked), and the
// mapping hooks test one flag. The stack tables stay (a sample in flight may be adding to
// them; they are address space that became resident only as it was used). No dump is written
// while detached. `jeprof-rs start` restarts a detached process (RESTART_ASKED, served the same
// way): exact mode's routes again, mappings followed, the timer re-armed, the final dump
// re-armed, sampling on; the live table starts empty, like a fresh attach.

const ON: u32 = 0;
const DETACH_ASKED: u32 = 1;
const DETACH_ASKED_DUMP: u32 = 2;
const DETACHING: u32 = 3;
const DETACHED: u32 = 4;
const RESTART_ASKED: u32 = 5;
const RESTARTING: u32 = 6;
/// Where this process stands between `detach` and `start` (ON: profiling, or stopped).
static LIFECYCLE: AtomicU32 = AtomicU32::new(ON);
/// Serializes the serving of detach and restart requests (never taken in a handler).
static CONTROL: SpinLock<()> = SpinLock::new(());

/// Whether a detach was asked for or done, and no restart since (`Agent_OnAttach` says so).
pub fn detached() -> bool {
    matches!(
        LIFECYCLE.load(Ordering::Acquire),
        DETACH_ASKED | DETACH_ASKED_DUMP | DETACHING | DETACHED
    )
}

/// Serves a pending detach or restart. Called with the thread busy and holding no profiler
/// lock (an allocation's slow path, past the real allocator; the timer's thread). Another
/// thread serving one already: with `wait` (a restart, which is quick: no dump), this one
/// waits for it up to 20 ms, so that its allocation is sampled if sampling is on then (exact
/// mode should not miss allocations right after a `start`); else nothing here, and it looks
/// again later (a detach's dump can take a while, and must not hold up every allocating
/// thread).
fn serve_control(wait: bool) {
    // A bounded wait: the lock's holder may be writing a detach's dump, which can take long
    // and may need a loader lock that an allocating thread holds (`dl_iterate_phdr`).
    let g = if wait {
        CONTROL.acquire_within(20_000_000)
    } else {
        CONTROL.try_lock()
    };
    let Some(_g) = g else {
        return;
    };
    loop {
        let s = LIFECYCLE.load(Ordering::Acquire);
        let (to, done) = match s {
            DETACH_ASKED | DETACH_ASKED_DUMP => (DETACHING, DETACHED),
            RESTART_ASKED => (RESTARTING, ON),
            _ => return,
        };
        if LIFECYCLE
            .compare_exchange(s, to, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        if to == DETACHING {
            detach_now(s == DETACH_ASKED_DUMP);
        } else {
            restart_now();
        }
        // A request that came meanwhile (a start while detaching, a detach while restarting)
        // moved the state on: serve it too.
        if LIFECYCLE
            .compare_exchange(to, done, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        if to == RESTARTING {
            HOT.sampling.store(false, Ordering::Release);
            TRACK_MMAP.store(false, Ordering::Relaxed);
        }
    }
}

/// With sampling off: serves a pending detach or restart; true when that turned sampling on
/// (a restart served by this allocation, which is then its first sample).
fn restarted_here() -> bool {
    let s = LIFECYCLE.load(Ordering::Acquire);
    if s == ON {
        return false;
    }
    serve_control(matches!(s, RESTART_ASKED | RESTARTING));
    HOT.sampling.load(Ordering::Relaxed)
}

fn detach_now(dump: bool) {
    if dump {
        dump_now(Trigger::Detach, true);
    }
    let dropped = LIVE.release(real::FREE.get());
    INUSE.store(0, Ordering::Relaxed);
    HIGH_WATER.store(0, Ordering::Relaxed);
    with_maps(defer::UNMAP, 0, usize::MAX, 0, |m| {
        m.unmap(0, usize::MAX, &mut mapped_delta)
    });
    if let Some(p) = PERIODIC.acquire()
        && let Some(timer) = p.as_ref()
    {
        timer.arm(0, 0);
    }
    use core::fmt::Write as _;
    let mut line = StackBuf::<200>::new();
    let _ = write!(
        line,
        "detached: recording stopped, {dropped} live blocks forgotten; the hooks only forward \
         now (`jeprof-rs start` profiles again)"
    );
    sys::say(&[line.as_bytes()]);
}

fn restart_now() {
    let cfg = config();
    if cfg.lg_sample == 0 {
        LIVE.set_every_block();
    }
    TRACK_MMAP.store(cfg.mmap, Ordering::Relaxed);
    if let Some(mut st) = DUMP.acquire() {
        st.final_done = false;
    }
    start_triggers();
    let (sec, nsec) = sys::now_realtime();
    SAMPLING_SINCE.store(
        sec as u64 * 1_000_000 + nsec as u64 / 1000,
        Ordering::Relaxed,
    );
    HOT.sampling.store(true, Ordering::Release);
}

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
    name: StackBuf<600>,
    mname: StackBuf<600>,
    seq: u64,
    interval_n: u64,
    manual_n: u64,
    gdump_n: u64,
    final_done: bool,
}

static DUMP: SpinLock<DumpState> = SpinLock::new(DumpState {
    buf: DumpBuf::new(),
    name: StackBuf::new(),
    mname: StackBuf::new(),
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
/// The pid this memory belongs to (set at start-up and in a forked child): a `vfork` child,
/// which shares the parent's memory and runs no atfork handler, has another pid.
static OWN_PID: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(0);

/// One-time start-up, from the library constructor (or the first hook before it).
pub fn init() {
    let conf = sys::getenv(c"JEPROF_CONF");
    start(conf, false);
}

/// Set once profiling has been started (or refused) in this process.
static STARTED: AtomicBool = AtomicBool::new(false);

/// Starts profiling in a running process the library was loaded into (`attach.rs`), with
/// `conf` in `JEPROF_CONF` syntax. Err when it was started already (preloaded, or attached
/// before), or could not start (the reason was said on stderr).
pub fn init_attached(conf: &[u8]) -> Result<(), AttachRefusal> {
    if STARTED.load(Ordering::Acquire) {
        return Err(if detached() {
            AttachRefusal::Detached
        } else {
            AttachRefusal::Already
        });
    }
    real::set_attached();
    if start(Some(conf), true) {
        // The JVM is up: read its tables now, outside any hook.
        let _ = crate::hotspot::try_init();
        Ok(())
    } else {
        Err(AttachRefusal::Failed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachRefusal {
    Already,
    /// Profiled before and detached since (`jeprof-rs start` profiles it again).
    Detached,
    Failed,
}

/// One-time start-up with `conf` (`JEPROF_CONF` syntax). True when profiling is on.
fn start(conf: Option<&[u8]>, attached: bool) -> bool {
    if STARTED.swap(true, Ordering::AcqRel) {
        return false;
    }
    let resolved = real::resolve_all();
    if !real::FREE.get().is_null() {
        LIVE.set_free(real::FREE.get());
    }
    if !resolved {
        sys::say(&[
            b"cannot find the real malloc/free (dlsym RTLD_NEXT failed); profiling disabled",
        ]);
        return false;
    }
    let _busy = Busy::enter();
    if sys::is_secure() {
        return false; // setuid/setgid: stay passive, write nothing
    }
    // SAFETY: single-threaded start-up, before HOT.active is published (see ConfigCell).
    let cfg = unsafe { &mut *CONFIG.0.get() };
    if let Some(text) = conf {
        let what: &[u8] = if attached {
            b"agent options"
        } else {
            b"JEPROF_CONF"
        };
        cfg.apply(text, &mut |entry, why| {
            sys::say(&[what, b": ignoring '", entry, b"': ", why.as_bytes()]);
        });
    }
    if !cfg.enabled {
        return false;
    }
    // Address space only; pages become resident as stacks are added.
    if !HEAP.init(1 << 18, 1 << 24) || !MAPPED.init(1 << 14, 1 << 21) {
        // Under a tight RLIMIT_AS the program needs that address space more than we do.
        HEAP.release();
        MAPPED.release();
        sys::say(&[b"cannot reserve memory for the stack tables; profiling disabled"]);
        return false;
    }
    unwind::init(cfg.libgcc_unwinder);
    if !cfg.java {
        crate::hotspot::disable();
    }
    unwind::init_stacks(&mut [0u8; 4096]);
    OWN_PID.store(sys::getpid(), Ordering::Relaxed);
    HOT.lg_sample.store(cfg.lg_sample, Ordering::Relaxed);
    let ln_keep = sampler::ln_keep(cfg.lg_sample);
    HOT.ln_keep.store(ln_keep.to_bits(), Ordering::Relaxed);
    HOT.gdump.store(cfg.gdump, Ordering::Relaxed);
    HOT.sampling.store(cfg.active, Ordering::Relaxed);
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
    if attached {
        // Samples cover only the time since the attach; dumps say so.
        let (sec, nsec) = sys::now_realtime();
        SAMPLING_SINCE.store(
            sec as u64 * 1_000_000 + nsec as u64 / 1000,
            Ordering::Relaxed,
        );
    }
    HOT.active.store(true, Ordering::Release);
    start_triggers();
    true
}

// ---- dumps on a timer and on demand ----------------------------------------------------------

/// Time-based dumps (`prof_interval_secs`) are written on the thread of a SIGEV_THREAD timer:
/// a thread libc creates, and only when that key asks for it (a profiler that adds a thread to
/// every process would break programs that must stay single-threaded, e.g. to `unshare`).
static PERIODIC: SpinLock<Option<sys::Timer>> = SpinLock::new(None);
/// What the handler writes into the signaled thread's `last_wait` (with a countdown of 0, so
/// that its next allocation takes the slow path): no drawn wait is this large.
const POKED: u64 = u64::MAX;

extern "C" fn periodic_fired(_: usize) {
    if LIFECYCLE.load(Ordering::Acquire) != ON {
        let _busy = Busy::enter();
        serve_control(false);
    }
    serve_trim_request();
    serve_dump_request();
    dump_now(Trigger::Interval, true);
}

/// The `prof_signal` handler. Async-signal-safe: a few stores and compare-and-swaps on atomics,
/// and a poke of this thread's own TLS countdown; no dump is ever written, and no lock taken,
/// inside a signal handler (a queued control request, `start`/`stop`/`detach`, is served like
/// a dump request, see "detach and restart"). `jeprof-rs dump` signals every thread
/// of the process, so the first one to allocate writes the dump. (A signal that lands between
/// the fast path's load and store of the countdown loses its poke; the request stays pending.)
extern "C" fn on_signal(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; for SI_QUEUE (sigqueue)
    // its value field holds what the sender queued.
    let queued = unsafe {
        (!info.is_null() && (*info).si_code == libc::SI_QUEUE)
            .then(|| (*info).si_value().sival_ptr as usize as u64)
    };
    // The request in the low 32 bits; a nonce in the high ones (0: none, from an older client).
    let control = queued.map(|v| v as u32 as i32);
    if let Some(v) = queued
        && matches!(
            v as u32 as i32,
            crate::config::CONTROL_START
                | crate::config::CONTROL_STOP
                | crate::config::CONTROL_DETACH
                | crate::config::CONTROL_DETACH_DUMP
        )
        && !first_delivery((v >> 32) as u32)
    {
        // Another thread of this process applied this request already (it is queued to
        // every thread): only the poke, which each thread needs for itself.
        if v as u32 as i32 != crate::config::CONTROL_STOP {
            let t = thread::current();
            t.last_wait.set(POKED);
            t.bytes_until_sample.set(0);
        }
        return;
    }
    match control {
        Some(crate::config::CONTROL_START) => {
            // Detached (or on the way): the restart is served at a slow path; else on now.
            let restart = LIFECYCLE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                matches!(s, DETACH_ASKED | DETACH_ASKED_DUMP | DETACHING | DETACHED)
                    .then_some(RESTART_ASKED)
            });
            if restart.is_err_and(|s| s == ON) && !HOT.sampling.swap(true, Ordering::AcqRel) {
                // clock_gettime is async-signal-safe (vDSO, no lock).
                let (sec, nsec) = sys::now_realtime();
                SAMPLING_SINCE.store(
                    sec as u64 * 1_000_000 + nsec as u64 / 1000,
                    Ordering::Relaxed,
                );
            }
            // `jeprof-rs start` signals every thread: each starts at its next allocation.
            let t = thread::current();
            t.last_wait.set(POKED);
            t.bytes_until_sample.set(0);
            return;
        }
        Some(crate::config::CONTROL_STOP) => {
            HOT.sampling.store(false, Ordering::Release);
            return;
        }
        Some(c @ (crate::config::CONTROL_DETACH | crate::config::CONTROL_DETACH_DUMP)) => {
            // Atomics only: the rest is served at this thread's next allocation (poked below)
            // or any other thread's slow path.
            HOT.sampling.store(false, Ordering::Release);
            TRACK_MMAP.store(false, Ordering::Relaxed);
            let want = if c == crate::config::CONTROL_DETACH_DUMP {
                DETACH_ASKED_DUMP
            } else {
                DETACH_ASKED
            };
            let _ = LIFECYCLE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| match s {
                ON | RESTART_ASKED | RESTARTING => Some(want),
                DETACH_ASKED if want == DETACH_ASKED_DUMP => Some(want),
                _ => None, // detaching or detached already
            });
            let t = thread::current();
            t.last_wait.set(POKED);
            t.bytes_until_sample.set(0);
            return;
        }
        _ => {}
    }
    HOT.dump_requested.store(true, Ordering::Release);
    let t = thread::current();
    t.last_wait.set(POKED);
    t.bytes_until_sample.set(0);
}

/// Nonces of the last control requests applied (`jeprof-rs` queues each request to every
/// thread with one nonce): a thread that runs its handler late, after a later request was
/// applied, must not apply an earlier one again (a `detach` after the `start` that followed it).
static RECENT: [AtomicU32; 8] = [const { AtomicU32::new(0) }; 8];
static RECENT_NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether the request with `nonce` is seen here first (then remembered). Two threads that
/// handle it at the same moment may both apply it: requests are idempotent while current.
/// Async-signal-safe: atomics only.
fn first_delivery(nonce: u32) -> bool {
    if nonce == 0 {
        return true;
    }
    if RECENT.iter().any(|r| r.load(Ordering::Acquire) == nonce) {
        return false;
    }
    let i = RECENT_NEXT.fetch_add(1, Ordering::Relaxed) as usize % RECENT.len();
    RECENT[i].store(nonce, Ordering::Release);
    true
}

/// The `prof_trim_signal` handler: like `on_signal`, two stores and a poke; the trim itself
/// runs at the next allocation of this thread (or any thread's next sample), never here.
extern "C" fn on_trim_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    HOT.trim_requested.store(true, Ordering::Release);
    let t = thread::current();
    t.last_wait.set(POKED);
    t.bytes_until_sample.set(0);
}

/// glibc's `malloc_trim`, when glibc is the allocator under us (0 otherwise).
static MALLOC_TRIM: AtomicU64 = AtomicU64::new(0);

/// Returns free memory to the system if a trim was requested: glibc's `malloc_trim(0)` (it
/// releases the free pages of every arena, not only the top). Runs on an allocation's slow
/// path, after the real allocator returned, so that no arena lock is held by this thread.
fn serve_trim_request() {
    if !HOT.trim_requested.load(Ordering::Relaxed)
        || !HOT.trim_requested.swap(false, Ordering::AcqRel)
    {
        return;
    }
    let f = MALLOC_TRIM.load(Ordering::Relaxed);
    if f == 0 {
        return;
    }
    let saved = sys::errno();
    // SAFETY: `f` is glibc's `int malloc_trim(size_t pad)`, found by dlsym; it takes glibc's
    // arena locks, none of which this thread holds here (we are past the real allocation, and
    // never inside a signal handler: the handler only set the flag).
    unsafe { core::mem::transmute::<u64, extern "C" fn(usize) -> libc::c_int>(f)(0) };
    sys::set_errno(saved);
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
    let t = thread::current();
    // timer_create allocates (libc's helper thread): those blocks are not the program's.
    t.internal.set(t.internal.get() + 1);
    start_triggers_in();
    t.internal.set(t.internal.get() - 1);
}

fn start_triggers_in() {
    let cfg = config();
    if cfg.interval_secs > 0
        && let Some(mut p) = PERIODIC.acquire()
    {
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
    if cfg.trim_signal > 0 && cfg.trim_signal != cfg.signal {
        sys::install_handler(cfg.trim_signal, on_trim_signal);
    }
}

/// In a forked child, before its first sample: timers do not survive fork.
fn restart_triggers_after_fork() {
    if HOT.triggers_lost.swap(false, Ordering::AcqRel) {
        let saved = sys::errno();
        if let Some(mut p) = PERIODIC.acquire() {
            *p = None;
        }
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
    } else {
        // An allocation made while this thread is inside the profiler: a signal handler that
        // interrupted us, or the profiler's own (`internal`). Exact mode records the program's
        // (a small walk, no memo: the interrupted walk owns it); either way the charge is
        // undone, so that the countdown stays where the profiler left it (never below zero:
        // the fast path compares unsigned, and a negative countdown is never reached again).
        // (Exact mode's countdown is zero at rest: adding the size back to a countdown that an
        // interrupted sample has already reset would skip the program's next allocations.)
        let exact = HOT.lg_sample.load(Ordering::Relaxed) == 0;
        let c = t.bytes_until_sample.get().wrapping_add(size as i64);
        t.bytes_until_sample.set(if exact { 0 } else { c.max(0) });
        if !ptr.is_null()
            && t.internal.get() == 0
            && exact
            && HOT.active.load(Ordering::Acquire)
            && HOT.sampling.load(Ordering::Relaxed)
        {
            record_nested(ptr as usize, size as u64, unwind::Regs { pc, sp, bp });
        }
    }
    ptr
}

fn sample_in(t: &ThreadState, ptr: *mut c_void, size: usize, regs: unwind::Regs) {
    // Park the countdown while we work, so that nested allocations stay on the fast path
    // (after reading it: it says how many bytes were allocated since the last draw).
    let mut countdown = t.bytes_until_sample.get();
    // (In exact mode nested allocations, a signal handler's, must still reach the slow path,
    // which records them: the countdown stays at zero there.)
    let exact = HOT.lg_sample.load(Ordering::Relaxed) == 0;
    t.bytes_until_sample.set(if exact { 0 } else { i64::MAX });
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
    if !HOT.sampling.load(Ordering::Relaxed) && !restarted_here() {
        // Dormant (`prof_active:false`, `jeprof-rs stop`): look again after a while; the
        // first sample after a restart draws a fresh countdown (marked like a dump request).
        t.bytes_until_sample.set(DORMANT_RECHECK);
        t.last_wait.set(POKED);
        serve_trim_request();
        serve_dump_request();
        if LIFECYCLE.load(Ordering::Acquire) == DETACHED {
            // Detached: this thread leaves the fast path only once per GiB (a `start`, a dump
            // or trim request pokes it back sooner). Parked first, then checked again: a
            // `start` whose handler ran on this thread before the store would have its poke
            // overwritten.
            t.bytes_until_sample.set(DETACHED_RECHECK);
            core::sync::atomic::compiler_fence(Ordering::SeqCst);
            if LIFECYCLE.load(Ordering::Acquire) != DETACHED {
                t.bytes_until_sample.set(0);
            }
        }
        return;
    }
    if ptr.is_null() {
        // A failed request allocated nothing: undo its charge. (A size that wraps, like
        // malloc(SIZE_MAX - 100), comes here too instead of raising the countdown. Exact
        // mode's countdown is zero at rest.)
        t.bytes_until_sample.set(if exact {
            0
        } else {
            countdown.wrapping_add(size as i64).max(0)
        });
        return;
    }
    if HOT.triggers_lost.load(Ordering::Relaxed) {
        restart_triggers_after_fork();
    }
    serve_trim_request();
    serve_dump_request();
    let lg = HOT.lg_sample.load(Ordering::Relaxed);
    if t.rng.get() == 0 || t.last_wait.get() == POKED {
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
    // (Exact mode: every allocation is a sample, so exactly this one's bytes.)
    let allocated = if lg == 0 {
        size as u64
    } else {
        t.last_wait.get().wrapping_sub(countdown as u64)
    };
    let mut rng = t.rng.get();
    let wait = HOT.next_wait(&mut rng, lg);
    t.rng.set(rng);
    t.last_wait.set(wait as u64);
    t.bytes_until_sample.set(wait);
    record(ptr as usize, size as u64, lg, regs);
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

/// Stack a full walk may use (its frame buffer and the log of its reads, about 3.5 KiB):
/// with less room below the stack pointer, or on a stack that is not the thread's own (a
/// signal handler's alternate stack, a coroutine's), a sample walks into a small buffer and is
/// not memorized, so that it fits in about 1 KiB.
const FULL_WALK_ROOM: usize = 16 << 10;
/// Frames kept by such a small walk.
const SMALL_DEPTH: usize = 24;

fn record(addr: usize, size: u64, lg: u32, regs: unwind::Regs) {
    let size = size.min((1 << 40) - 1);
    // SAFETY: this thread's own memo, and the reentrancy guard is held (the caller entered
    // `Busy`; a nested sample never touches the memo), so no other reference to it exists
    // while this one lives.
    let memo = crate::cold::current().map(|c| unsafe { &mut *c.memo.get() });
    let generation = HOT.unloads.load(Ordering::Acquire);
    // A repeated walk needs no buffer: look it up before deciding how much stack to use.
    let id = match memo {
        Some(memo) => match memo.repeat(regs, generation) {
            Some(id) => id,
            None if unwind::stack_room(regs.sp) >= FULL_WALK_ROOM => {
                walk_full(regs, memo, generation)
            }
            None => walk_small(regs, &HEAP, false).unwrap_or(0),
        },
        None => walk_small(regs, &HEAP, false).unwrap_or(0),
    };
    if id == 0 || id > MAX_STACK_ID {
        return;
    }
    let (objs, bytes) = sampler::weight(size, lg);
    HEAP.add(id, objs, bytes);
    match LIVE.insert(addr, Block { stack: id, size }) {
        Inserted::Done | Inserted::Queued => {
            // A process-wide counter is a cache line every thread writes: only for prof_gdump.
            if HOT.gdump.load(Ordering::Relaxed) {
                let now = INUSE.fetch_add(bytes, Ordering::Relaxed) + bytes;
                if now > HIGH_WATER.load(Ordering::Relaxed) {
                    gdump(now);
                }
            }
        }
        // Counted as allocated, never as in use: no entry says it is live.
        Inserted::Skipped => {}
        Inserted::Full => {
            if !LIVE_FULL_SAID.swap(true, Ordering::Relaxed) {
                sys::say(&[b"out of memory for the live-block table; some blocks are not tracked"]);
            }
        }
    }
}

/// Exact mode, an allocation by a signal handler that interrupted this thread inside the
/// profiler: recorded like any other, with a small walk (the interrupted code may be using
/// the thread's memo); a shard the interrupted code holds gets the insertion queued.
#[cold]
#[inline(never)]
fn record_nested(addr: usize, size: u64, regs: unwind::Regs) {
    let size = size.min((1 << 40) - 1);
    let Some(id) = walk_small(regs, &HEAP, false) else {
        return;
    };
    if id == 0 || id > MAX_STACK_ID {
        return;
    }
    let (objs, bytes) = sampler::weight(size, 0);
    HEAP.add(id, objs, bytes);
    let _ = LIVE.insert(addr, Block { stack: id, size });
}

/// A sample's walk with room to spare: memorized, up to `prof_max_depth` frames.
#[inline(never)]
fn walk_full(regs: unwind::Regs, memo: &mut crate::memo::Memo, generation: u32) -> u32 {
    let t = thread::current();
    let mut buf = [MaybeUninit::<usize>::uninit(); MAX_DEPTH_LIMIT];
    let mut log = unwind::read_log();
    let mut reads = unwind::Reads::new(&mut log);
    let frames = unwind::backtrace_from(Some(regs), &mut buf[..config().max_depth], &mut reads);
    let id = intern_heap_stack(t, frames);
    memo.remember(regs, &reads, id, generation);
    id
}

/// A walk on a small or foreign stack (see `FULL_WALK_ROOM`), interned into `table`; `None`
/// when `skip_allocator` and the call came from the allocator under us.
#[inline(never)]
fn walk_small(regs: unwind::Regs, table: &StackTable, skip_allocator: bool) -> Option<u32> {
    let mut buf = [MaybeUninit::<usize>::uninit(); SMALL_DEPTH];
    let depth = config().max_depth.min(SMALL_DEPTH);
    let frames = unwind::backtrace_from(Some(regs), &mut buf[..depth], &mut unwind::Reads::none());
    if skip_allocator && from_allocator(frames[0]) {
        return None;
    }
    Some(table.intern(frames))
}

/// Slow path of `free` when the filter says the block may be ours. Returns true for a
/// bootstrap block, which must not reach the real free.
#[cold]
#[inline(never)]
pub fn free_slow(addr: usize) -> bool {
    if real::in_bootstrap(addr as *mut c_void) {
        return true;
    }
    let _ = forget(addr);
    false
}

/// Slow path of `free`/`realloc` for a pointer that may be a live sample: forget it. Nothing
/// else to undo: in-use counts are the live table's contents, summed when a profile is
/// written (`LiveTable::tally`). Returns what was recorded, for `realloc` failure recovery.
#[cold]
#[inline(never)]
pub fn forget(addr: usize) -> Removed {
    let _busy = Busy::enter();
    let r = LIVE.remove(addr);
    if let Removed::Found(b) = r
        && HOT.gdump.load(Ordering::Relaxed)
    {
        let (_, bytes) = sampler::weight(b.size, HOT.lg_sample.load(Ordering::Relaxed));
        // Saturating: a detach may have reset the sum since this block was found.
        let _ = INUSE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(bytes))
        });
    }
    r
}

/// Undoes `forget` when the realloc that was to free the block failed: the block is live.
#[cold]
pub fn restore(addr: usize, r: Removed) {
    let _busy = Busy::enter();
    match r {
        Removed::Found(b) => {
            // In use again; the cumulative counters were charged when it was first recorded.
            if matches!(LIVE.insert(addr, b), Inserted::Done | Inserted::Queued)
                && HOT.gdump.load(Ordering::Relaxed)
            {
                let (_, bytes) = sampler::weight(b.size, HOT.lg_sample.load(Ordering::Relaxed));
                INUSE.fetch_add(bytes, Ordering::Relaxed);
            }
        }
        Removed::Queued => LIVE.cancel_queued_remove(addr),
        Removed::Absent => {}
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
        // SAFETY: as above.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_trim".as_ptr()) };
        MALLOC_TRIM.store(f as u64, Ordering::Relaxed);
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

/// Applies a mapping change under the mapping list's lock, or queues it for this thread's
/// interrupted holder of that lock (`defer.rs`). Returns what `f` returned (`None`: queued).
fn with_maps<R>(
    kind: u32,
    start: usize,
    end: usize,
    stack: u32,
    f: impl FnOnce(&mut MapList) -> R,
) -> Option<R> {
    match MAPS.acquire() {
        Some(mut m) => {
            let r = f(&mut m);
            m.release_with(drain_maps);
            Some(r)
        }
        None => {
            if defer::push(MAPS.key(), kind, stack, start, end as u64) {
                MAPS.mark_pending();
            } else {
                defer::overflowed();
            }
            None
        }
    }
}

fn drain_maps(key: usize, m: &mut MapList) {
    defer::drain(key, |e| match e.kind {
        defer::MAP => {
            let _ = m.map(e.a, e.b as usize, e.extra, &mut mapped_delta);
        }
        defer::UNMAP => m.unmap(e.a, e.b as usize, &mut mapped_delta),
        _ => {}
    });
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
        with_maps(defer::UNMAP, addr, end, 0, |m| {
            m.unmap(addr, end, &mut mapped_delta)
        });
    } else {
        let Some(id) = map_stack(regs) else {
            sys::set_errno(saved);
            return;
        };
        let bytes = end - addr;
        MAPPED.adjust_alloc(id, sampler::OBJ_ONE, bytes as u64);
        let ok = with_maps(defer::MAP, addr, end, id, |m| {
            m.map(addr, end, id, &mut mapped_delta)
        });
        if ok == Some(false) && !LIVE_FULL_SAID.swap(true, Ordering::Relaxed) {
            sys::say(&[b"out of memory for the mapping table; some mappings are not tracked"]);
        }
    }
    sys::set_errno(saved);
}

/// The stack of a mapping call, interned into `MAPPED`; `None` for the allocator's own
/// mappings (its heap's backing store).
fn map_stack(regs: unwind::Regs) -> Option<u32> {
    if unwind::stack_room(regs.sp) < FULL_WALK_ROOM {
        return walk_small(regs, &MAPPED, true);
    }
    map_stack_full(regs)
}

#[inline(never)]
fn map_stack_full(regs: unwind::Regs) -> Option<u32> {
    let mut buf = [MaybeUninit::<usize>::uninit(); MAX_DEPTH_LIMIT];
    let frames = unwind::backtrace_from(
        Some(regs),
        &mut buf[..config().max_depth],
        &mut unwind::Reads::none(),
    );
    if from_allocator(frames[0]) {
        return None;
    }
    Some(MAPPED.intern(frames))
}

/// Before munmap (or the old range of an mremap): the range stops being in use. Returns how
/// many bytes of it were recorded as mapped (`usize::MAX`: unknown, the change was queued).
#[cold]
#[inline(never)]
pub fn on_unmap(addr: usize, len: usize) -> usize {
    if !HOT.active.load(Ordering::Acquire) {
        return 0;
    }
    let saved = sys::errno();
    let _busy = Busy::enter();
    let end = addr.saturating_add(page_round(len));
    let removed = with_maps(defer::UNMAP, addr, end, 0, |m| {
        let mut removed = 0i64;
        m.unmap(addr, end, &mut |stack, objs, bytes| {
            removed -= bytes;
            mapped_delta(stack, objs, bytes);
        });
        removed.max(0) as usize
    });
    sys::set_errno(saved);
    removed.unwrap_or(usize::MAX)
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
    /// The final dump `jeprof-rs detach --dump` asks for (tag `f`, written before the live
    /// table is emptied).
    Detach,
}

/// How long the exit path waits for a lock another thread holds before it gives up on the
/// final dump (it must never wait forever: that thread may be stopped for good).
const EXIT_WAIT_NS: u64 = 2_000_000_000;

/// Writes the heap profile (and the mmap profile, if tracked) now. A dump already in progress
/// on another thread makes this one a no-op unless `wait` is set. Returns false for that case.
///
/// Dumps are immune to thread cancellation (`open` and `write` are cancellation points: a
/// thread cancelled inside one would leave the dump lock held forever), and a dump that
/// cannot read the whole live table writes nothing.
pub fn dump_now(trigger: Trigger, wait: bool) -> bool {
    if !HOT.active.load(Ordering::Acquire) {
        return true;
    }
    // Detached, or a detach without a dump is pending: nothing is written (the live table is
    // or is about to be emptied). A pending `detach --dump` still gets its dump, at exit too.
    if trigger != Trigger::Detach
        && matches!(
            LIFECYCLE.load(Ordering::Acquire),
            DETACH_ASKED | DETACHING | DETACHED | RESTART_ASKED
        )
    {
        return true;
    }
    let saved = sys::errno();
    let _busy = Busy::enter();
    let _nocancel = sys::NoCancel::enter();
    let exiting = trigger == Trigger::Final;
    let st = if exiting {
        DUMP.acquire_within(EXIT_WAIT_NS)
    } else if wait {
        DUMP.acquire()
    } else {
        DUMP.try_lock()
    };
    let Some(mut st) = st else {
        if exiting {
            sys::say(&[if DUMP.held_by_me() {
                b"no final dump: the process exited from inside a dump (a signal handler?)"
                    as &[u8]
            } else {
                b"no final dump: another thread is still writing a dump"
            }]);
        }
        sys::set_errno(saved);
        return false;
    };
    if st.final_done {
        return true;
    }
    let mut tag = StackBuf::<24>::new();
    {
        use core::fmt::Write as _;
        let _ = match trigger {
            Trigger::Final | Trigger::Detach => write!(tag, "f"),
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
    let DumpState {
        buf, name, mname, ..
    } = &mut *st;
    dump::file_name(name, cfg.prefix(), pid, seq, tag.as_bytes(), false);
    let lg = HOT.lg_sample.load(Ordering::Relaxed);
    // glibc's statistics lock its arenas: not when exit() was called from a signal handler,
    // which may have interrupted this very thread inside malloc.
    let mallinfo = if exiting && unwind::in_signal_handler() {
        None
    } else {
        mallinfo()
    };
    let meta = Meta {
        kind: "heap",
        tag: tag.as_bytes(),
        mallinfo,
        since: SAMPLING_SINCE.load(Ordering::Relaxed),
        sampling: HOT.sampling.load(Ordering::Relaxed),
        ranges: &[],
    };
    let wait_ns = if exiting { EXIT_WAIT_NS } else { u64::MAX };
    let write = |path: &core::ffi::CStr, buf: &mut DumpBuf, table, inuse, lg, meta: &Meta<'_>| {
        let r = dump::write_profile(path, table, inuse, lg, meta, buf, wait_ns);
        if matches!(r, Err(libc::ENOENT)) && sys::make_parent_dir(path) {
            // `prof_prefix` names a directory that does not exist yet: made, mode 0700.
            return dump::write_profile(path, table, inuse, lg, meta, buf, wait_ns);
        }
        r
    };
    let written = match name.as_cstr() {
        Some(path) => match write(path, buf, &HEAP, InUse::Live(&LIVE), lg, &meta) {
            Ok(w) => Some(w),
            Err(e) => {
                report_write_error(name.as_bytes(), e);
                None
            }
        },
        None => None,
    };
    // (From the configuration: a pending detach has switched `TRACK_MMAP` off already, and
    // its dump still describes the mappings followed until then.)
    if cfg.mmap {
        dump::file_name(mname, cfg.prefix(), pid, seq, tag.as_bytes(), true);
        let ranges = RangesCopy::take(exiting);
        let meta = Meta {
            kind: "mmap",
            tag: tag.as_bytes(),
            mallinfo: None,
            since: 0,
            sampling: true,
            ranges: ranges.as_slice(),
        };
        if let Some(path) = mname.as_cstr()
            && let Err(e) = write(path, buf, &MAPPED, InUse::Counters, 0, &meta)
            && written.is_some()
        {
            report_write_error(mname.as_bytes(), e);
        }
        drop(ranges);
    }
    if matches!(trigger, Trigger::Final | Trigger::Detach) {
        st.final_done = true;
        if cfg.leak
            && let Some(w) = written
        {
            leak_summary(&w, st.name.as_bytes());
        }
    }
    drop(st);
    sys::set_errno(saved);
    true
}

/// A copy of the mapping list's ranges in memory of our own (`map_anon`), taken under its lock
/// and read after it is released: the dump measures each range's resident pages with
/// `mincore`, which must not hold up the program's mmap calls.
struct RangesCopy {
    mem: *mut u8,
    bytes: usize,
    len: usize,
}

impl RangesCopy {
    fn take(exiting: bool) -> RangesCopy {
        let empty = RangesCopy {
            mem: core::ptr::null_mut(),
            bytes: 0,
            len: 0,
        };
        let m = if exiting {
            MAPS.acquire_within(EXIT_WAIT_NS)
        } else {
            MAPS.acquire()
        };
        let Some(m) = m else { return empty };
        let src = m.ranges();
        let bytes = core::mem::size_of_val(src);
        let copy = if src.is_empty() {
            None
        } else {
            sys::map_anon(bytes)
        };
        let out = match copy {
            Some(mem) => {
                // SAFETY: a fresh mapping of `bytes` bytes, suitably aligned (page-aligned),
                // disjoint from the list's own memory.
                unsafe {
                    core::ptr::copy_nonoverlapping(src.as_ptr(), mem.cast(), src.len());
                }
                RangesCopy {
                    mem,
                    bytes,
                    len: src.len(),
                }
            }
            None => empty,
        };
        m.release_with(drain_maps);
        out
    }

    fn as_slice(&self) -> &[crate::mmaps::Range] {
        if self.mem.is_null() {
            return &[];
        }
        // SAFETY: `len` ranges copied into our own mapping by `take`.
        unsafe { core::slice::from_raw_parts(self.mem.cast(), self.len) }
    }
}

impl Drop for RangesCopy {
    fn drop(&mut self) {
        if !self.mem.is_null() {
            // SAFETY: the mapping made by `take`, no longer referenced.
            unsafe { sys::unmap(self.mem, self.bytes) };
        }
    }
}

fn report_write_error(path: &[u8], errno: i32) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    if errno == libc::EDEADLK {
        sys::say(&[
            b"cannot write profile ",
            path,
            b": the live-block table stayed locked (exit from a signal handler that \
              interrupted the profiler, or a stopped thread); no partial profile was written",
        ]);
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

/// The final dump from `_exit`/`_Exit`, which skip the library destructors. Not in a `vfork`
/// child (or any child that shares the parent's memory without running the atfork handlers,
/// like `posix_spawn`'s): its pid differs from the one the profiler's memory belongs to, and
/// whatever it wrote would be the parent's state, in the parent's memory.
pub fn at_quick_exit() {
    if !HOT.active.load(Ordering::Acquire) || !config().final_dump {
        return;
    }
    if sys::getpid() != OWN_PID.load(Ordering::Relaxed) {
        return;
    }
    // A process under a seccomp filter that ends with `_exit` is often a sandboxed one that
    // may not open files (the filter could kill it for our `open`): no dump then. (`exit()`
    // keeps its final dump: containers run everything under a filter that allows files.)
    if sys::seccomp_filtered() {
        return;
    }
    dump_now(Trigger::Final, true);
}

// ---- fork -------------------------------------------------------------------------------

/// Which of PERIODIC, DUMP, MAPS, CONTROL `fork_prepare` took (it skips a lock this thread
/// holds already: fork from a signal handler that interrupted the profiler).
static FORK_TOOK: AtomicU32 = AtomicU32::new(0);

extern "C" fn fork_prepare() {
    let _busy = Busy::enter();
    // CONTROL first: a detach being served takes the others after it.
    let control = (CONTROL.raw_lock() as u32) << 3;
    let took = control
        | PERIODIC.raw_lock() as u32
        | (DUMP.raw_lock() as u32) << 1
        | (MAPS.raw_lock() as u32) << 2;
    FORK_TOOK.store(took, Ordering::Relaxed);
    LIVE.lock_all();
}

/// Releases what `fork_prepare` took, applying the changes that other atfork handlers (which
/// may allocate, free or map while we hold every lock) queued meanwhile.
fn fork_release() {
    let took = FORK_TOOK.swap(0, Ordering::Relaxed);
    // SAFETY: taken in fork_prepare by this thread (in the child: the only thread).
    unsafe {
        LIVE.unlock_all();
        if took & 4 != 0 {
            MAPS.release_raw(drain_maps);
        }
        if took & 2 != 0 {
            DUMP.release_raw(|_, _| {});
        }
        if took & 1 != 0 {
            PERIODIC.release_raw(|_, _| {});
        }
        if took & 8 != 0 {
            CONTROL.release_raw(|_, _| {});
        }
    }
}

extern "C" fn fork_parent() {
    fork_release();
}

extern "C" fn fork_child() {
    fork_release();
    crate::hotspot::after_fork_child();
    OWN_PID.store(sys::getpid(), Ordering::Relaxed);
    HOT.triggers_lost.store(true, Ordering::Relaxed);
    // The child writes its own files under its own pid, numbered from 0.
    if let Some(mut st) = DUMP.acquire() {
        st.seq = 0;
        st.interval_n = 0;
        st.manual_n = 0;
        st.gdump_n = 0;
    }
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
