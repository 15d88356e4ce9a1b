//! The fuzz driver: runs a target on its seeds, then on mutated seeds until its time is up,
//! and reports the first input that panics, runs too long or allocates too much.
//!
//! - **Panics**: each input runs under `catch_unwind`. The workspace's profiles say
//!   `panic = "abort"`, but cargo builds test targets, and the libraries they link, with
//!   unwinding (the test harness needs it), so a panic in the analyzer's code is caught here:
//!   `planted_panic_is_caught_and_minimized` in `fuzz.rs` shows it on every run.
//! - **Hangs**: inputs run on a worker thread; the driver waits for each with a time limit
//!   (2 s) and, past it, reports the input and leaves the stuck worker behind.
//! - **Memory**: a counting global allocator (this test binary's) tracks the bytes in use and
//!   their peak while each input runs; a target states its budget as a function of the input's
//!   length. Counting rather than `RLIMIT_AS` in a child process: what we want to catch is an
//!   allocation sized by an untrusted count, which is heap bytes, and the counter measures
//!   exactly those, deterministically, per input, against a budget that scales with the
//!   input. An address-space limit also counts memory-mapped object files, thread stacks and
//!   glibc's per-thread arenas (64 MiB reservations each), so it would have to be set loose
//!   and would move with the machine. The counter also refuses any request that would take
//!   the heap past [`HARD_CAP`] (a fallible `try_reserve` then fails cleanly; an infallible
//!   one aborts the process, after the input has been saved and named on stderr), so a
//!   blow-up never reaches the machine's memory.
//!
//! Failing inputs are saved under `target/tmp/fuzz-failures/`, with a minimized copy for text
//! targets. Each fuzz test runs in a child process of its own ([`isolated`]): the allocator's
//! counters are process-wide.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use super::mutate::Rng;

/// No input may take the heap past this: the request is refused.
pub const HARD_CAP: usize = 2 << 30;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// The input being run and where to save it if an allocation is refused (NUL-terminated).
static INPUT_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);
static SAVE_PATH: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

/// The system allocator, counted.
pub struct Counting;

fn reserve(bytes: usize) -> bool {
    let now = CURRENT.fetch_add(bytes, Relaxed).wrapping_add(bytes);
    if now > HARD_CAP || now < bytes {
        CURRENT.fetch_sub(bytes, Relaxed);
        refused(bytes);
        return false;
    }
    PEAK.fetch_max(now, Relaxed);
    ALLOCATIONS.fetch_add(1, Relaxed);
    true
}

/// Set when a refusal has been told, so that a target's fallible requests (`try_reserve`,
/// which see an error and go on) do not fill the log.
static TOLD: AtomicBool = AtomicBool::new(false);

/// Save the input being run and say so on stderr (once per run), without allocating: if the
/// request was infallible, the process aborts next.
fn refused(bytes: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = bytes;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let path = SAVE_PATH.load(Relaxed);
    let input = INPUT_PTR.load(Relaxed);
    let len = INPUT_LEN.load(Relaxed);
    let told = TOLD.swap(true, Relaxed);
    let stderr = |b: &[u8]| {
        if !told {
            // SAFETY: writes a live byte slice to fd 2.
            unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
        }
    };
    stderr(b"\nfuzz: refused a request for ");
    stderr(&digits[i..]);
    stderr(b" bytes (the heap would pass the fuzz cap of 2 GiB; told once per target)");
    if !path.is_null() && !input.is_null() {
        // SAFETY: SAVE_PATH points to a leaked NUL-terminated path; INPUT_PTR/LEN describe the
        // input the worker is running, which stays alive until the worker clears them.
        unsafe {
            let fd = libc::open(
                path.cast(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::write(fd, input.cast(), len);
                libc::close(fd);
                stderr(b"; if the process aborts now, the input is in ");
                stderr(std::ffi::CStr::from_ptr(path.cast()).to_bytes());
            }
        }
    }
    stderr(b"\n");
}

// SAFETY: every method forwards to `System` with the same arguments; the counters are only
// arithmetic on atomics and never touch the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            CURRENT.fetch_sub(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                CURRENT.fetch_sub(new_size - old, Relaxed);
            }
        } else if new_size < old {
            CURRENT.fetch_sub(old - new_size, Relaxed);
        }
        p
    }
}

/// What went wrong with one input.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    Panic(String),
    Hang(Duration),
    Memory { peak: usize, budget: usize },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Panic(m) => write!(f, "panicked: {m}"),
            Failure::Hang(d) => write!(f, "still running after {d:?} (hang?)"),
            Failure::Memory { peak, budget } => write!(
                f,
                "allocated {peak} bytes at its peak, over its budget of {budget} bytes \
                 (an allocation sized by an untrusted count?)"
            ),
        }
    }
}

pub type Check = Arc<dyn Fn(&[u8]) + Send + Sync>;
pub type Mutator = Box<dyn Fn(&mut Rng, &[Vec<u8>]) -> Vec<u8>>;

/// A fuzz target: seeds, how to mutate them, what to run, how much it may allocate.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub mutate: Mutator,
    pub check: Check,
    /// Heap bytes one input may have allocated at its peak, by input length.
    pub budget: fn(usize) -> usize,
    /// Line-oriented text: minimize failures by lines, then bytes.
    pub text: bool,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    pub duration: Duration,
    pub time_limit: Duration,
    /// Replay this file instead of generating inputs.
    pub replay: Option<PathBuf>,
}

impl Settings {
    /// From `JEPROF_FUZZ_SECS` (seconds per target, default 2), `JEPROF_FUZZ_SEED` (default:
    /// from the clock, printed), `JEPROF_FUZZ_INPUT` (replay one saved input) and
    /// `JEPROF_FUZZ_LIMIT_SECS` (time limit per input, default 2).
    pub fn from_env() -> Settings {
        let secs = std::env::var("JEPROF_FUZZ_SECS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(2.0);
        let seed = std::env::var("JEPROF_FUZZ_SEED")
            .ok()
            .and_then(|s| {
                let s = s.trim();
                match s.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok(),
                    None => s.parse().ok(),
                }
            })
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                t.as_nanos() as u64 ^ (std::process::id() as u64) << 32
            });
        Settings {
            seed,
            duration: Duration::from_secs_f64(secs),
            time_limit: std::env::var("JEPROF_FUZZ_LIMIT_SECS")
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(Duration::from_secs(2), Duration::from_secs_f64),
            replay: std::env::var_os("JEPROF_FUZZ_INPUT").map(PathBuf::from),
        }
    }
}

/// The outcome of one target's run.
#[derive(Debug)]
pub struct Report {
    pub name: &'static str,
    pub seed: u64,
    pub inputs: u64,
    pub elapsed: Duration,
    /// Largest peak of any input, bytes.
    pub max_peak: usize,
    pub failure: Option<(u64, Failure, Vec<PathBuf>)>,
}

impl Report {
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "fuzz {}: {} inputs in {:.1} s ({:.0}/s), seed {:#x} (JEPROF_FUZZ_SEED), peak heap of one input {} KiB",
            self.name,
            self.inputs,
            secs,
            self.inputs as f64 / secs,
            self.seed,
            self.max_peak / 1024,
        )
    }

    /// Print the summary and fail with the failing input's description.
    pub fn assert_ok(&self) {
        eprintln!("{}", self.summary());
        if let Some((index, failure, saved)) = &self.failure {
            let saved: Vec<String> = saved.iter().map(|p| p.display().to_string()).collect();
            panic!(
                "fuzz {}: input #{index} of seed {:#x} {failure}\n  saved: {}\n  replay: \
                 JEPROF_FUZZ_INPUT={} cargo test --release -p jeprof-rs --test fuzz {}",
                self.name,
                self.seed,
                saved.join(", "),
                saved.last().map_or("?", String::as_str),
                self.name,
            );
        }
    }
}

/// Run the test `name` (this function's caller) in a child process of its own: the
/// allocator's counters are process-wide, so no other test may allocate while an input is
/// measured, and an input that aborts the process (an infallible allocation refused) must not
/// take the other tests down with it. The child is this test binary, asked to run that one
/// test; in the child, `body` runs.
pub fn isolated(name: &str, body: impl FnOnce()) {
    if std::env::var_os("JEPROF_FUZZ_CHILD").is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let output = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("JEPROF_FUZZ_CHILD", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its child process ({}):\n{stdout}{stderr}",
        output.status
    );
    // The counts, also when the parent captures the test's output.
    let summary: String = stderr
        .lines()
        .filter(|l| l.starts_with("fuzz ") || l.starts_with("SKIPPED"))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = std::io::stderr().write_all(summary.as_bytes());
}

/// One fuzz target at a time: the allocator's counters are shared by the whole process.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set on the worker thread: its panics are recorded here instead of printed.
    static CAUGHT: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = CAUGHT.with(|c| {
                let mut c = c.borrow_mut();
                match c.as_mut() {
                    Some(slot) => {
                        let message = info
                            .payload()
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| info.payload().downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "(non-string payload)".to_string());
                        let at = info
                            .location()
                            .map(|l| format!(" at {}:{}", l.file(), l.line()))
                            .unwrap_or_default();
                        *slot = Some(format!("{message}{at}"));
                        true
                    }
                    None => false,
                }
            });
            if !quiet {
                default(info);
            }
        }));
    });
}

type Job = (Arc<Vec<u8>>, usize);
type Outcome = (Option<Failure>, usize);

/// A thread that runs inputs one by one and measures each.
fn spawn_worker(check: Check) -> (mpsc::Sender<Job>, mpsc::Receiver<Outcome>) {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (out_tx, out_rx) = mpsc::channel::<Outcome>();
    std::thread::Builder::new()
        .name("fuzz-worker".into())
        .spawn(move || {
            CAUGHT.with(|c| *c.borrow_mut() = Some(None));
            for (input, budget) in job_rx {
                INPUT_LEN.store(input.len(), Relaxed);
                INPUT_PTR.store(input.as_ptr().cast_mut(), Relaxed);
                let base = CURRENT.load(Relaxed);
                PEAK.store(base, Relaxed);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    check(&input);
                }));
                let peak = PEAK.load(Relaxed).saturating_sub(base);
                INPUT_PTR.store(std::ptr::null_mut(), Relaxed);
                let failure = match result {
                    Err(_) => Some(Failure::Panic(
                        CAUGHT
                            .with(|c| c.borrow_mut().as_mut().and_then(Option::take))
                            .unwrap_or_default(),
                    )),
                    Ok(()) if peak > budget => Some(Failure::Memory { peak, budget }),
                    Ok(()) => None,
                };
                if out_tx.send((failure, peak)).is_err() {
                    break;
                }
            }
        })
        .expect("spawn fuzz worker");
    (job_tx, out_rx)
}

/// Run `f` alone (no fuzz target at the same time) and return its result with the peak of the
/// heap bytes it added.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    let result = f();
    (result, PEAK.load(Relaxed).saturating_sub(base))
}

/// Runs inputs on a worker, replacing the worker after a hang.
struct Runner {
    check: Check,
    worker: (mpsc::Sender<Job>, mpsc::Receiver<Outcome>),
    time_limit: Duration,
    budget: fn(usize) -> usize,
}

impl Runner {
    fn new(check: Check, time_limit: Duration, budget: fn(usize) -> usize) -> Runner {
        Runner {
            worker: spawn_worker(check.clone()),
            check,
            time_limit,
            budget,
        }
    }

    fn run(&mut self, input: Arc<Vec<u8>>) -> (Option<Failure>, usize) {
        let budget = (self.budget)(input.len());
        let started = Instant::now();
        if self.worker.0.send((input, budget)).is_ok() {
            match self.worker.1.recv_timeout(self.time_limit) {
                Ok(outcome) => return outcome,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return (Some(Failure::Panic("worker died".into())), 0);
                }
            }
        }
        // The old worker is stuck on this input: leave it, start another.
        self.worker = spawn_worker(self.check.clone());
        (Some(Failure::Hang(started.elapsed())), 0)
    }
}

fn failure_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Run `target` with `settings`: its seeds first, then mutated seeds until the time is up.
pub fn run(target: &Target, settings: &Settings) -> Report {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    install_panic_hook();
    let seed = settings.seed;
    let dir = failure_dir();
    let name = target.name;
    let path_of = |index: u64, suffix: &str| dir.join(format!("{name}-{seed:x}-{index}{suffix}"));
    // Where the allocator saves the input if it refuses a request.
    let refused = path_of(u64::MAX, ".refused");
    let refused_c = std::ffi::CString::new(refused.as_os_str().as_encoded_bytes()).unwrap();
    TOLD.store(false, Relaxed);
    let old = SAVE_PATH.swap(refused_c.into_raw().cast(), Relaxed);
    if !old.is_null() {
        // SAFETY: `old` came from `CString::into_raw` above, in an earlier run.
        drop(unsafe { std::ffi::CString::from_raw(old.cast()) });
    }

    let mut runner = Runner::new(target.check.clone(), settings.time_limit, target.budget);
    let mut report = Report {
        name,
        seed,
        inputs: 0,
        elapsed: Duration::ZERO,
        max_peak: 0,
        failure: None,
    };
    let started = Instant::now();
    let replay = settings
        .replay
        .as_ref()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
    let mut index = 0u64;
    loop {
        let input = match &replay {
            Some(bytes) if index == 0 => bytes.clone(),
            Some(_) => break,
            None if (index as usize) < target.seeds.len() => target.seeds[index as usize].clone(),
            None if started.elapsed() >= settings.duration => break,
            None => {
                let mut rng = Rng::for_input(seed, index);
                (target.mutate)(&mut rng, &target.seeds)
            }
        };
        let input = Arc::new(input);
        let (failure, peak) = runner.run(input.clone());
        report.inputs += 1;
        report.max_peak = report.max_peak.max(peak);
        if let Some(failure) = failure {
            let mut saved = vec![path_of(index, ".bin")];
            let _ = std::fs::write(&saved[0], &*input);
            if target.text && !matches!(failure, Failure::Hang(_)) {
                let small = minimize(&mut runner, &input, &failure, Duration::from_secs(10));
                if small.len() < input.len() {
                    let p = path_of(index, ".min.bin");
                    let _ = std::fs::write(&p, &small);
                    saved.push(p);
                }
            }
            report.failure = Some((index, failure, saved));
            break;
        }
        index += 1;
    }
    report.elapsed = started.elapsed();
    // Refused requests, if any, were fallible ones: the process lives on.
    let _ = std::fs::remove_file(&refused);
    report
}

/// Same kind of failure (a panic at the same place, a hang, a memory blow-up).
fn same(a: &Failure, b: &Failure) -> bool {
    match (a, b) {
        (Failure::Panic(x), Failure::Panic(y)) => {
            x.rsplit_once(" at ").map(|p| p.1) == y.rsplit_once(" at ").map(|p| p.1)
        }
        (Failure::Hang(_), Failure::Hang(_)) => true,
        (Failure::Memory { .. }, Failure::Memory { .. }) => true,
        _ => false,
    }
}

/// A smaller input that fails the same way: drop runs of lines, then runs of bytes, halving
/// the run length (delta debugging, bounded by `limit`).
fn minimize(runner: &mut Runner, input: &[u8], failure: &Failure, limit: Duration) -> Vec<u8> {
    let started = Instant::now();
    let mut best = input.to_vec();
    let fails = |runner: &mut Runner, candidate: Vec<u8>| {
        let (f, _) = runner.run(Arc::new(candidate));
        f.is_some_and(|f| same(&f, failure))
    };
    // Lines (each with its newline), then bytes.
    for by_lines in [true, false] {
        let units = |data: &[u8]| -> Vec<(usize, usize)> {
            if by_lines {
                let mut out = Vec::new();
                let mut start = 0;
                for (i, &b) in data.iter().enumerate() {
                    if b == b'\n' {
                        out.push((start, i + 1));
                        start = i + 1;
                    }
                }
                if start < data.len() {
                    out.push((start, data.len()));
                }
                out
            } else {
                (0..data.len()).map(|i| (i, i + 1)).collect()
            }
        };
        let mut chunk = units(&best).len().div_ceil(2).max(1);
        loop {
            let mut i = 0;
            while i < units(&best).len() {
                if started.elapsed() > limit {
                    return best;
                }
                let u = units(&best);
                let end = (i + chunk).min(u.len());
                let (from, to) = (u[i].0, u[end - 1].1);
                let mut candidate = best[..from].to_vec();
                candidate.extend_from_slice(&best[to..]);
                if fails(runner, candidate.clone()) {
                    best = candidate;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    best
}
