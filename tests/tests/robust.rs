//! Robustness under hostile programs: the findings of an adversarial sweep, one test each (the
//! finding it covers is in its doc comment). Every program (`c/robust_*.c`, compiled `-O2`)
//! runs to the end without the preload (the control), and then under it in both sampled mode
//! (the default rate) and exact mode (`lg_prof_sample:0`), each run under a small timeout that
//! kills the process group and turns a hang into a failure. A failure in one mode does not hide
//! the other: both modes run and the test reports each mode's failure. Where the answer is exact
//! (exact mode), the dump must show exactly the bytes and objects the program leaked at the
//! named function that leaked them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jeprof_tests::*;

/// Timeout of one run of a test program (each takes at most about a second when it works).
const CASE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sampled,
    Exact,
}

impl Mode {
    /// `JEPROF_CONF` for this mode writing under `dir`, plus `extra` keys.
    fn conf(self, dir: &TempDir, extra: &str) -> String {
        let mut conf = format!("prof_prefix:{}", dir.prefix());
        if self == Mode::Exact {
            conf.push_str(",lg_prof_sample:0");
        }
        if !extra.is_empty() {
            conf.push(',');
            conf.push_str(extra);
        }
        conf
    }
}

/// Runs `check` in sampled mode, then in exact mode (even if sampled mode failed), and fails
/// naming every mode that failed.
fn each_mode(check: impl Fn(Mode)) {
    let mut failed = Vec::new();
    for mode in [Mode::Sampled, Mode::Exact] {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(mode))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{mode:?} mode: {}", summary(&why)));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The first line of a panic message and the lines that say how a run ended (the whole message
/// was printed when it happened).
fn summary(why: &str) -> String {
    let mut lines = why.lines();
    let mut out: Vec<&str> = lines.next().into_iter().collect();
    out.extend(lines.filter(|l| {
        ["status:", "command:", "  left:", " right:"]
            .iter()
            .any(|p| l.starts_with(p))
    }));
    out.join("\n")
}

/// Compiles `c/<name>.c` into `dir` at `-O2` (the helper's flags, then `-O2` and `extra`).
fn build(name: &str, dir: &TempDir, extra: &[&str]) -> PathBuf {
    let mut flags = vec!["-O2"];
    flags.extend_from_slice(extra);
    compile_c(name, dir.path(), &flags)
}

/// The control: `binary args` without the preload must exit with `code`.
fn control(binary: &Path, args: &[&str], code: i32) -> Outcome {
    let out = Run::new(binary).args(args).timeout(CASE_TIMEOUT).run();
    out.expect_code(code);
    out
}

/// `binary args` under the preload with `conf`, under the case timeout.
fn profiled(binary: &Path, args: &[&str], conf: &str) -> Outcome {
    Run::new(binary)
        .args(args)
        .profiled(conf)
        .timeout(CASE_TIMEOUT)
        .run()
}

/// In exact mode: the final dump of `out` shows exactly `(bytes, objects)` at each named site.
/// Every mismatch is named, not only the first.
fn expect_exact(dir: &TempDir, out: &Outcome, sites: &[(&str, i64, i64)]) {
    expect_sites(&top(&final_dump(dir, out.pid), &[]), sites);
}

/// `t` shows exactly `(bytes, objects)` flat at each named site; names every mismatch.
fn expect_sites(t: &Top, sites: &[(&str, i64, i64)]) {
    let wrong: Vec<String> = sites
        .iter()
        .filter(|&&(name, bytes, objects)| t.flat(name) != (bytes, objects))
        .map(|&(name, bytes, objects)| {
            let (b, o) = t.flat(name);
            format!("{name}: {b} B in {o} objects, expected {bytes} B in {objects}")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{}: wrong sites: {}\n{}",
        t.command,
        wrong.join("; "),
        t.render()
    );
}

/// Every dump in `dir` is whole: it parses (the independent parser and `jeprof-rs top`), has one
/// header and one `MAPPED_LIBRARIES:`, ends with a newline, and its maps section holds only
/// `/proc/self/maps` lines (a dump cut short, or two dumps interleaved, breaks one of these).
/// `jeprof-rs top` reads every one of them too (up to 400, beyond that 400 spread over the series,
/// and the last). Returns the number of dumps.
fn expect_whole_dumps(dir: &TempDir) -> usize {
    let dumps = dumps_in(dir.path(), "jeprof");
    let stride = dumps.len().div_ceil(400).max(1);
    for (i, d) in dumps.iter().enumerate() {
        let heap = read_heap(&d.path);
        let text = std::fs::read_to_string(&d.path).unwrap();
        let name = d.path.display();
        assert_eq!(text.matches("heap_v2/").count(), 1, "{name}: header count");
        assert_eq!(
            text.matches("MAPPED_LIBRARIES:").count(),
            1,
            "{name}: MAPPED_LIBRARIES count"
        );
        assert!(text.ends_with('\n'), "{name}: does not end with a newline");
        for line in heap.maps.lines() {
            assert!(
                line.is_empty() || parse_maps_range(line).is_some(),
                "{name}: not a maps line in MAPPED_LIBRARIES: {line:?}"
            );
        }
        if i % stride != 0 && i + 1 != dumps.len() {
            continue;
        }
        let out = Run::new(analyzer())
            .args(&["top", &d.path.to_string_lossy(), "-n", "5"])
            .timeout(CASE_TIMEOUT)
            .run();
        assert_eq!(
            out.code(),
            Some(0),
            "jeprof-rs top rejects {name}: {}",
            out.stderr.trim()
        );
    }
    dumps.len()
}

fn parse_maps_range(line: &str) -> Option<(u64, u64)> {
    let range = line.split_whitespace().next()?;
    let (lo, hi) = range.split_once('-')?;
    Some((
        u64::from_str_radix(lo, 16).ok()?,
        u64::from_str_radix(hi, 16).ok()?,
    ))
}

// ---- 1. signal-handler re-entry ------------------------------------------------------------

/// Shared by the three variants of finding 1: SIGALRM every 100 µs whose handler does
/// `free(malloc(200))` while the program allocates for a second; it must finish, and exact
/// mode must show exactly the leaked bytes.
fn sigalrm(variant: &str) {
    each_mode(|mode| {
        let dir = TempDir::new("sigalrm");
        let bin = build("robust_sigalrm", &dir, &[]);
        control(&bin, &[variant], 0);
        for run in 0..SIGALRM_RUNS {
            sigalrm_run(&bin, variant, mode, run);
        }
    });
}

/// Runs per mode of each variant of finding 1 (a hang there is likely, not certain, per run).
const SIGALRM_RUNS: usize = 3;

fn sigalrm_run(bin: &Path, variant: &str, mode: Mode, run: usize) {
    let dir = TempDir::new("sigalrm");
    eprintln!("{variant} {mode:?} run {run}");
    let out = profiled(bin, &[variant], &mode.conf(&dir, ""));
    out.expect_success();
    assert_eq!(out.value("handled_some"), "1", "{}", out.report());
    let leaks: i64 = out.value("loop_leaks").parse().unwrap();
    let dump = final_dump(&dir, out.pid);
    read_heap(&dump);
    if mode == Mode::Exact {
        let mut sites = vec![("loop_leak", 100 * leaks, leaks), ("main_leak", 10000, 10)];
        if variant == "thread" {
            sites.push(("thread_leak", 15000, 5));
        }
        expect_exact(&dir, &out, &sites);
    }
}

/// Finding 1: a SIGALRM handler (setitimer, every 100 µs) that mallocs and frees re-enters the
/// preload while the interrupted thread is inside it (a sample, a live-table shard lock, the
/// final dump): the program hangs.
#[test]
fn signal_handler_reentry() {
    sigalrm("plain");
}

/// Finding 1, variant: the same handler runs on a sigaltstack.
#[test]
fn signal_handler_reentry_on_sigaltstack() {
    sigalrm("altstack");
}

/// Finding 1, variant: a second thread allocates too (the signal lands on either thread).
#[test]
fn signal_handler_reentry_with_second_thread() {
    sigalrm("thread");
}

/// Finding 1, exact counts: a handler that keeps what it allocates. Exact mode must show every
/// block, also those allocated while the interrupted code was inside the profiler (recorded
/// through the re-entrant path) or between a fast path's charge and its slow path.
#[test]
fn signal_handler_allocations_are_exact() {
    let dir = TempDir::new("handler-leak");
    let bin = build("robust_handler_leak", &dir, &[]);
    control(&bin, &[], 0);
    let out = profiled(&bin, &[], &Mode::Exact.conf(&dir, ""));
    out.expect_success();
    let n: i64 = out.value("handler_leaks").parse().unwrap();
    assert!(n > 100, "the handler ran {n} times: {}", out.report());
    expect_exact(&dir, &out, &[("handler_leak", 64 * n, n)]);
}

// ---- 2. fork handlers that allocate -----------------------------------------------------------

fn fork_handlers(who: &str) {
    each_mode(|mode| {
        let dir = TempDir::new("atfork");
        let lib = compile_shared("robust_atfork_lib", dir.path());
        let bin = build("robust_atfork", &dir, &[&lib.to_string_lossy()]);
        control(&bin, &[who], 0);
        let out = profiled(&bin, &[who], &mode.conf(&dir, ""));
        out.expect_success();
        assert_eq!(out.value("forks"), "6", "{}", out.report());
        expect_whole_dumps(&dir);
        if mode == Mode::Exact {
            expect_exact(&dir, &out, &[("fork_leak", 15000, 3)]);
        }
    });
}

/// Finding 2: pthread_atfork handlers that malloc and free, registered by the program's
/// constructor (after the preload's: POSIX runs this prepare handler before the preload's, and
/// these parent/child handlers after the preload's); the program forks 6 times, children leave
/// by `_exit` or `exit`. Must finish.
#[test]
fn fork_handlers_registered_after_the_preload_allocate() {
    fork_handlers("program");
}

/// Finding 2: the same handlers registered by the constructor of a DT_NEEDED library, which
/// runs before the preload's: the library's prepare handler runs after the preload's, while it
/// holds its locks, and allocates. Must finish.
#[test]
fn fork_handlers_registered_before_the_preload_allocate() {
    fork_handlers("library");
}

// ---- 3. concurrent dumps ----------------------------------------------------------------------

/// Runs per mode of finding 3 (in sampled mode a torn dump is likely, not certain, per run).
const DUMPS_RUNS: usize = 2;

fn concurrent_dumps(extra: &str) {
    each_mode(|mode| {
        let build_dir = TempDir::new("dumps");
        let bin = build("robust_dumps", &build_dir, &[]);
        control(&bin, &[], 0);
        for run in 0..DUMPS_RUNS {
            let dir = TempDir::new("dumps");
            let out = profiled(&bin, &[], &mode.conf(&dir, extra));
            out.expect_success();
            let n = expect_whole_dumps(&dir);
            eprintln!("{mode:?} [{extra}] run {run}: {n} dump files, all whole");
            assert!(
                n >= 3,
                "only {n} dump files for 512 MiB allocated with {extra}"
            );
            if mode == Mode::Exact {
                expect_exact(&dir, &out, &[("dumps_leak", 80000, 8)]);
            }
        }
    });
}

/// Finding 3: 8 threads allocating with `lg_prof_interval:24` cross the interval together;
/// every dump file written must be whole (parse with the independent parser and with
/// `jeprof-rs top`, not cut short, not interleaved with another).
#[test]
fn concurrent_interval_dumps_are_whole() {
    concurrent_dumps("lg_prof_interval:24");
}

/// Finding 3, with `prof_gdump:true` as well: high-water dumps race with the interval ones.
#[test]
fn concurrent_gdump_and_interval_dumps_are_whole() {
    concurrent_dumps("lg_prof_interval:24,prof_gdump:true");
}

// ---- 4. small stacks --------------------------------------------------------------------------

fn small_stack(variant: &str, extra: &str, sites: &[(&str, i64, i64)]) {
    each_mode(|mode| {
        let dir = TempDir::new("smallstack");
        let bin = build("robust_smallstack", &dir, &[]);
        control(&bin, &[variant], 0);
        let out = profiled(&bin, &[variant], &mode.conf(&dir, extra));
        out.expect_success();
        assert!(
            !out.stderr.contains("stack smashing") && !out.stderr.contains("Fatal glibc"),
            "glibc aborted\n{}",
            out.report()
        );
        read_heap(&final_dump(&dir, out.pid));
        if mode == Mode::Exact {
            expect_exact(&dir, &out, sites);
        }
    });
}

/// Finding 4: a thread with a 16 KiB stack (PTHREAD_STACK_MIN) allocates (sampled, every
/// allocation in exact mode) and calls `exit()`: the final dump runs on that stack. No SIGSEGV.
#[test]
fn small_thread_stack_exit_writes_final_dump() {
    small_stack("exit16k", "", &[("small_leak", 65536, 4)]);
}

/// Finding 4: interval dumps (`lg_prof_interval:20`) written on a 16 KiB thread stack.
#[test]
fn small_thread_stack_interval_dumps() {
    small_stack(
        "interval16k",
        "lg_prof_interval:20",
        &[("small_leak", 65536, 4)],
    );
}

/// Finding 4: a signal handler that mallocs on an 8 KiB sigaltstack (8192 bytes, SIGSTKSZ
/// without _GNU_SOURCE), raised 2000 times: samples taken on that stack must fit in it.
#[test]
fn malloc_on_8k_sigaltstack() {
    small_stack("altmalloc", "", &[("small_leak", 65536, 4)]);
}

/// Finding 4: the same handler on an 8 KiB sigaltstack only mmaps and munmaps.
#[test]
fn mmap_on_8k_sigaltstack() {
    small_stack("altmmap", "", &[("small_leak", 65536, 4)]);
}

// ---- 5. cancellation --------------------------------------------------------------------------

fn cancellation(args: &[&str], extra: &str) {
    each_mode(|mode| {
        let dir = TempDir::new("cancel");
        let bin = build("robust_cancel", &dir, &[]);
        control(&bin, args, 0);
        let out = profiled(&bin, args, &mode.conf(&dir, extra));
        out.expect_success();
        expect_whole_dumps(&dir);
        read_heap(&final_dump(&dir, out.pid));
        if mode == Mode::Exact {
            expect_exact(&dir, &out, &[("cancel_leak", 49000, 7)]);
        }
    });
}

/// Finding 5: threads allocating with deferred cancellation are `pthread_cancel`ed while
/// interval dumps (`lg_prof_interval:22`, every 4 MiB) are written on them; the main thread then returns:
/// the final dump must be written and the process must exit.
#[test]
fn cancelled_threads_during_interval_dumps() {
    cancellation(&["20", "20000"], "lg_prof_interval:22");
}

/// Finding 5 with time-based dumps (`prof_interval_secs:1`) and cancellations for 1.5 s.
#[test]
fn cancelled_threads_during_timer_dumps() {
    cancellation(&["75", "20000"], "prof_interval_secs:1");
}

// ---- 6. exit from a signal handler -----------------------------------------------------------

/// Runs `c/robust_sigterm.c` with `threads` allocating threads 30 times per mode: the SIGTERM
/// handler's `exit(3)` must end every run.
fn exit_from_handler(threads: &str) {
    const RUNS: usize = 30;
    each_mode(|mode| {
        let dir = TempDir::new("sigterm");
        let bin = build("robust_sigterm", &dir, &[]);
        for _ in 0..3 {
            control(&bin, &[threads], 3);
        }
        for i in 0..RUNS {
            let out = Run::new(&bin)
                .arg(threads)
                .profiled(&mode.conf(&dir, ""))
                .timeout(Duration::from_secs(10))
                .run();
            assert_eq!(
                out.code(),
                Some(3),
                "run {i} of {RUNS}: exit(3) from the SIGTERM handler\n{}",
                out.report()
            );
        }
        // Whatever dumps the runs wrote are whole.
        expect_whole_dumps(&dir);
    });
}

/// Finding 6: a SIGTERM handler calling `exit()` while 1 thread allocates in a tight loop
/// (30 runs per mode): the final dump, written from the handler, must not hang on a lock the
/// interrupted allocation holds.
#[test]
fn exit_from_signal_handler_one_thread() {
    exit_from_handler("1");
}

/// Finding 6 with 2 allocating threads.
#[test]
fn exit_from_signal_handler_two_threads() {
    exit_from_handler("2");
}

// ---- 7. failed huge requests ----------------------------------------------------------------

/// Finding 7: after failed huge requests (calloc overflow, malloc/aligned_alloc/pvalloc/
/// posix_memalign/memalign/valloc/realloc of SIZE_MAX-100) the profiler must keep recording:
/// exact mode shows every later block, exact count and bytes (each is a small block, 40-96 B:
/// a huge size charged to the countdown as a negative number would push it up by 101 bytes and
/// hide them); sampled mode estimates the 64 MiB
/// allocated afterwards (1024 x 64 KiB: ~118 samples expected, bound at about 4 standard
/// deviations).
#[test]
fn allocations_after_failed_huge_requests() {
    each_mode(|mode| {
        let dir = TempDir::new("huge");
        let bin = build("robust_huge", &dir, &[]);
        control(&bin, &[], 0);
        let out = profiled(&bin, &[], &mode.conf(&dir, ""));
        out.expect_success();
        let dump = final_dump(&dir, out.pid);
        let t = top(&dump, &[]);
        if mode == Mode::Exact {
            expect_sites(
                &t,
                &[
                    ("after_calloc", 40, 1),
                    ("after_malloc", 48, 1),
                    ("after_aligned_alloc", 56, 1),
                    ("after_pvalloc", 64, 1),
                    ("after_posix_memalign", 72, 1),
                    ("after_memalign", 80, 1),
                    ("after_valloc", 88, 1),
                    ("after_realloc", 96, 1),
                    ("realloc_base", 100, 1),
                    ("after_all", 64 << 20, 1024),
                ],
            );
        } else {
            let (bytes, _) = t.flat("after_all");
            let want = 64i64 << 20;
            assert!(
                (want * 6 / 10..=want * 14 / 10).contains(&bytes),
                "after_all: estimated {bytes} B of {want} B\n{}",
                t.render()
            );
        }
    });
}

// ---- 8. sandbox -------------------------------------------------------------------------------

/// Finding 8: a seccomp filter that kills the process on open/openat, then new threads that
/// allocate (their stacks are walked for the first time): the profiler must not open anything
/// on that path (the process would die of SIGSYS).
#[test]
fn seccomp_sandbox_no_open_on_sampling_path() {
    each_mode(|mode| {
        let dir = TempDir::new("seccomp");
        let bin = build("robust_seccomp", &dir, &[]);
        let control = control(&bin, &[], 0);
        assert_eq!(control.stdout, "sandboxed\ndone\n");
        let out = profiled(&bin, &[], &mode.conf(&dir, ""));
        assert_eq!(
            out.code(),
            Some(0),
            "killed (SIGSYS = signal 31) inside the sandbox?\n{}",
            out.report()
        );
        assert_eq!(out.stdout, "sandboxed\ndone\n", "{}", out.report());
    });
}

// ---- 9. coroutine stacks ----------------------------------------------------------------------

/// `(all openat/open calls, those of /proc/self/maps)` of one profiled run of
/// `robust_coro rounds` under strace, and the run's outcome.
fn traced_opens(bin: &Path, rounds: &str, dir: &TempDir, conf: &str) -> (usize, usize, Outcome) {
    let trace = dir.path().join(format!("strace.{rounds}"));
    let out = Run::new("strace")
        .args(&[
            "-f",
            "-qq",
            "-e",
            "trace=open,openat",
            "-o",
            &trace.to_string_lossy(),
            "-E",
            &format!("LD_PRELOAD={}", preload().display()),
            "-E",
            &format!("JEPROF_CONF={conf}"),
            &bin.to_string_lossy(),
            rounds,
        ])
        .timeout(CASE_TIMEOUT)
        .run();
    out.expect_success();
    let text = std::fs::read_to_string(&trace).unwrap();
    let opens: Vec<&str> = text.lines().filter(|l| l.contains("open")).collect();
    let maps = opens
        .iter()
        .filter(|l| l.contains("/proc/self/maps"))
        .count();
    (opens.len(), maps, out)
}

/// Opens of /proc/self/maps allowed in one run of `robust_coro`.
const MAX_MAPS_OPENS: usize = 8;

/// Finding 9: samples on coroutine stacks (makecontext/swapcontext, 64 KiB malloc'ed stacks)
/// must not cost a read of /proc/self/maps each: the number of open/openat calls the process
/// makes is about the same for 400 and for 4000 allocations on coroutine stacks, and each run
/// opens /proc/self/maps at most `MAX_MAPS_OPENS` times (a small constant: start-up, the main
/// thread's stack, the final dump), in both modes. Counted with `strace -f`; no timing.
#[test]
fn coroutine_stacks_open_maps_a_constant_number_of_times() {
    const NAME: &str = "coroutine_stacks_open_maps_a_constant_number_of_times";
    if !have_program("strace") {
        return skip(NAME, "strace not installed");
    }
    each_mode(|mode| {
        let dir = TempDir::new("coro");
        let bin = build("robust_coro", &dir, &[]);
        control(&bin, &["500"], 0);
        let conf = mode.conf(&dir, "");
        let (short_opens, short_maps, _) = traced_opens(&bin, "50", &dir, &conf);
        let (long_opens, long_maps, out) = traced_opens(&bin, "500", &dir, &conf);
        assert_eq!(out.value("allocations_on_coroutines"), "4000");
        eprintln!(
            "{mode:?}: opens {short_opens} (maps {short_maps}) for 400 coroutine allocations, \
             {long_opens} (maps {long_maps}) for 4000"
        );
        assert!(
            short_maps <= MAX_MAPS_OPENS
                && long_maps <= MAX_MAPS_OPENS
                && long_opens.abs_diff(short_opens) <= 4,
            "open/openat calls follow the samples on coroutine stacks: {short_opens} \
             ({short_maps} of /proc/self/maps) for 400 allocations, {long_opens} ({long_maps}) \
             for 4000; expected at most {MAX_MAPS_OPENS} of /proc/self/maps each, and about the \
             same total"
        );
        if mode == Mode::Exact {
            // The program ran under strace, whose pid `out` has: the newest final heap dump
            // (the 4000-allocation run's) is the program's.
            let last = dumps_in(dir.path(), "jeprof")
                .into_iter()
                .filter(|d| d.tag == "f" && !d.mmap)
                .max_by_key(|d| std::fs::metadata(&d.path).and_then(|m| m.modified()).ok())
                .expect("a final dump of the traced program");
            expect_sites(&top(&last.path, &[]), &[("coro_leak", 8000, 8)]);
        }
    });
}

// ---- 10. phantom mapping ----------------------------------------------------------------------

/// Finding 10: `mremap` of an unmapped range fails with EFAULT; the mmap profile must not
/// record the 2 MiB it asked for at the caller. Real mappings in the same run are exact.
#[test]
fn failed_mremap_records_nothing() {
    each_mode(|mode| {
        let dir = TempDir::new("mremap");
        let bin = build("robust_mremap", &dir, &[]);
        control(&bin, &[], 0);
        let out = profiled(&bin, &[], &mode.conf(&dir, ""));
        out.expect_success();
        let t = top(&final_mmap_dump(&dir, out.pid), &[]);
        t.expect_flat("real_map", 3 * 65536, 3);
        t.expect_flat("real_remap", 131072, 1);
        t.expect_absent("phantom_remap");
    });
}

// ---- 11. RLIMIT_AS ----------------------------------------------------------------------------

/// Finding 11: under `ulimit -v` 200 MiB the preload cannot reserve its stack tables and says
/// profiling is disabled; the program must then keep nearly all of its address-space budget
/// (within 8 MiB of what it can map without the preload), not lose the tables that were
/// reserved before the one that failed.
#[test]
fn rlimit_as_failure_returns_the_address_space() {
    each_mode(|mode| {
        let dir = TempDir::new("rlimit");
        let bin = build("robust_rlimit", &dir, &[]);
        let control = control(&bin, &["200"], 0);
        let free: i64 = control.value("mappable_mib").parse().unwrap();
        let out = profiled(&bin, &["200"], &mode.conf(&dir, ""));
        out.expect_success();
        assert!(
            out.stderr.contains("profiling disabled"),
            "no 'profiling disabled' line under RLIMIT_AS 200 MiB\n{}",
            out.report()
        );
        let left: i64 = out.value("mappable_mib").parse().unwrap();
        assert!(
            free - left < 8,
            "with the preload the program can map {left} MiB, without it {free} MiB: the \
             preload keeps {} MiB after giving up",
            free - left
        );
    });
}

// ---- 12. signal 41 ----------------------------------------------------------------------------

/// Finding 12, the contract of `prof_signal:0`: the preload installs nothing for signal 41, so
/// the program sees SIG_DFL and `raise(41)` kills it, exactly as without the preload. And a
/// program that installs its own handler for 41 (with the default `prof_signal`) gets it called.
#[test]
fn prof_signal_0_leaves_signal_41_alone() {
    use std::os::unix::process::ExitStatusExt;
    each_mode(|mode| {
        let dir = TempDir::new("sig41");
        let bin = build("robust_sig41", &dir, &[]);
        let control = Run::new(&bin).arg("show").timeout(CASE_TIMEOUT).run();
        assert_eq!(control.status.signal(), Some(41), "{}", control.report());
        assert_eq!(control.stdout, "sig41=SIG_DFL\n");
        let out = profiled(&bin, &["show"], &mode.conf(&dir, "prof_signal:0"));
        assert_eq!(out.stdout, "sig41=SIG_DFL\n", "{}", out.report());
        assert_eq!(out.status.signal(), Some(41), "{}", out.report());

        // Not part of the contract (the default may change): what a program sees by default.
        let default = profiled(&bin, &["show"], &mode.conf(&dir, ""));
        eprintln!(
            "{mode:?}, default prof_signal: {} then {:?}",
            default.stdout.trim().replace('\n', ", "),
            default.status
        );

        let own = profiled(&bin, &["own"], &mode.conf(&dir, ""));
        own.expect_success();
        assert_eq!(own.stdout, "own_handler_ran=1\n", "{}", own.report());
    });
}
