//! Process lifecycle under the preload: fork, exec, many threads with TLS destructors, dlopen /
//! dlclose, exit from a thread, return from main, setuid, and the configuration edge cases
//! (unwritable prefix, bad `JEPROF_CONF`, `prof_leak`, `prof_final`, `prof_max_depth`,
//! `lg_prof_interval`). Each program runs under a timeout; its exit code and stdout must be what
//! they are without the preload, and its dumps must exist and parse.

use std::path::Path;

use jeprof_tests::*;

/// Runs `binary` with `conf` and unprofiled; asserts same stdout and exit code; returns the
/// profiled outcome.
fn run_both(binary: &Path, args: &[&str], conf: &str, code: i32) -> Outcome {
    let run = Run::new(binary).args(args).profiled(conf);
    let control = run.unprofiled().run();
    control.expect_code(code);
    let out = run.run();
    out.expect_code(code);
    assert_eq!(
        out.stdout,
        control.stdout,
        "stdout differs\n{}",
        out.report()
    );
    out
}

#[test]
fn fork_child_and_parent_dump_their_own() {
    let dir = TempDir::new("fork");
    let bin = compile_c("fork", dir.path(), &[]);
    let out = Run::new(&bin).profiled(&exact_conf(&dir)).run();
    out.expect_success().expect_quiet();
    assert_eq!(out.value("child_status"), "0");
    let child: u32 = out.value("child_pid").parse().unwrap();

    let parent = top(&final_dump(&dir, out.pid), &[]);
    parent.expect_flat("parent_leak", 5000, 5);
    parent.expect_flat("parent_after", 3000, 3);
    parent.expect_absent("child_leak");

    let child = top(&final_dump(&dir, child), &[]);
    child.expect_flat("child_leak", 7000, 7);
    // The blocks the parent allocated before fork are live in the child too.
    child.expect_flat("parent_leak", 5000, 5);
    child.expect_absent("parent_after");
}

#[test]
fn fork_while_other_threads_allocate() {
    let dir = TempDir::new("fork-threads");
    let bin = compile_c("fork_threads", dir.path(), &[]);
    let out = Run::new(&bin).profiled(&exact_conf(&dir)).run();
    out.expect_success().expect_quiet();
    let children: Vec<u32> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("child="))
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 30, "{}", out.report());
    for pid in children {
        let t = top(&final_dump(&dir, pid), &[]);
        t.expect_flat("child_leak", 4096, 1);
    }
    read_heap(&final_dump(&dir, out.pid));
}

#[test]
fn fork_exec_leaks_no_descriptor() {
    let dir = TempDir::new("exec");
    let bin = compile_c("exec", dir.path(), &[]);
    // An interval dump every 1 MiB makes the profiler open files before the fork.
    let conf = format!("prof_prefix:{},lg_prof_interval:20", dir.prefix());
    let run = Run::new(&bin).profiled(&conf);
    let control = run.unprofiled().run();
    control.expect_success();
    let out = run.run();
    out.expect_success().expect_quiet();
    assert_eq!(
        out.value("inherited"),
        control.value("inherited"),
        "descriptors inherited across exec differ\n{}",
        out.report()
    );
    // The exec'd programs are profiled in their own right, under the pid the fork gave them.
    for key in ["true_pid", "fds_pid"] {
        let pid: u32 = out.value(key).parse().unwrap();
        read_heap(&final_dump(&dir, pid));
    }
    read_heap(&final_dump(&dir, out.pid));
}

#[test]
fn two_thousand_threads_with_tls_destructors() {
    let dir = TempDir::new("threads2000");
    let bin = compile_c("threads2000", dir.path(), &[]);
    let out = run_both(&bin, &[], &exact_conf(&dir), 0);
    out.expect_quiet();
    let dump = final_dump(&dir, out.pid);
    let t = top(&dump, &[]);
    t.expect_flat("thread_leak", 2000 * 16, 2000);
    // Freed in the destructor, during thread teardown: must be gone.
    t.expect_absent("tls_value_alloc");
    t.expect_absent("dtor_scratch");
    // Allocations during teardown may be forwarded unrecorded, but never over-counted.
    let (b, o) = t.flat("dtor_leak");
    eprintln!("dtor_leak recorded: {b} B in {o} objects (2000 x 8 B allocated)");
    assert!(
        b <= 16000 && b == 8 * o,
        "dtor_leak {b} B {o} objects\n{}",
        t.render()
    );
    let a = top(&dump, &["--alloc-space"]);
    a.expect_flat("tls_value_alloc", 2000 * 64, 2000);
    a.expect_flat("thread_leak", 2000 * 16, 2000);
}

#[test]
fn dlopen_dlclose_loop_with_threads() {
    let dir = TempDir::new("dlopen");
    let bin = compile_c("dlopen", dir.path(), &[]);
    let lib = compile_shared("dlib", dir.path());
    let lib = lib.to_string_lossy();
    let out = run_both(&bin, &[&lib], &exact_conf(&dir), 0);
    out.expect_quiet();
    let t = top(&final_dump(&dir, out.pid), &[]);
    // 200 x 100 B allocated in the library (unloaded by now), all called from call_lib.
    assert_eq!(
        t.cum("call_lib"),
        (20000, 200),
        "{}: cum of call_lib\n{}",
        t.command,
        t.render()
    );
    t.expect_absent("call_lib"); // it does not allocate itself
}

#[test]
fn exit_from_a_thread_while_others_allocate() {
    let dir = TempDir::new("exit-thread");
    let bin = compile_c("exit_thread", dir.path(), &[]);
    let out = run_both(&bin, &[], &exact_conf(&dir), 3);
    out.expect_quiet();
    assert_eq!(out.stdout, "exiting\n");
    let t = top(&final_dump(&dir, out.pid), &[]);
    t.expect_flat("exit_leak", 4321, 1);
}

#[test]
fn return_from_main() {
    let dir = TempDir::new("return-main");
    let bin = compile_c("return_main", dir.path(), &[]);
    let out = run_both(&bin, &[], &exact_conf(&dir), 7);
    out.expect_quiet();
    let t = top(&final_dump(&dir, out.pid), &[]);
    t.expect_flat("main_leak", 1234, 1);
    assert_eq!(
        dumps_in(dir.path(), "jeprof")
            .iter()
            .filter(|d| !d.mmap)
            .count(),
        1
    );
}

#[test]
fn prof_leak_prints_one_summary_line() {
    let dir = TempDir::new("prof-leak");
    let bin = compile_c("return_main", dir.path(), &[]);
    let conf = format!("{},prof_leak:true", exact_conf(&dir));
    let out = run_both(&bin, &[], &conf, 7);
    let lines: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("<jeprof>:"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.report());
    assert_eq!(out.stderr_lines().len(), 1, "{}", out.report());
    final_dump(&dir, out.pid);
}

#[test]
fn prof_final_false_writes_no_final_dump() {
    let dir = TempDir::new("prof-final");
    let bin = compile_c("return_main", dir.path(), &[]);
    let conf = format!("{},prof_final:false", exact_conf(&dir));
    let out = run_both(&bin, &[], &conf, 7);
    out.expect_quiet();
    let finals: Vec<DumpFile> = dumps_in(dir.path(), "jeprof")
        .into_iter()
        .filter(|d| d.tag == "f")
        .collect();
    assert!(finals.is_empty(), "{finals:?}");
}

#[test]
fn unwritable_prefix_is_one_stderr_line() {
    let dir = TempDir::new("unwritable");
    let bin = compile_c("return_main", dir.path(), &[]);
    let out = run_both(
        &bin,
        &[],
        "prof_prefix:/nonexistent/dir/x,lg_prof_sample:0",
        7,
    );
    assert_eq!(out.stderr_lines().len(), 1, "{}", out.report());
    assert!(!Path::new("/nonexistent/dir").exists());
}

#[test]
fn bad_conf_names_the_problem_and_the_rest_applies() {
    let dir = TempDir::new("bad-conf");
    let bin = compile_c("return_main", dir.path(), &[]);
    let conf = format!("lg_prof_sample:banana,foo:1,prof_prefix:{}", dir.prefix());
    let out = run_both(&bin, &[], &conf, 7);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 2, "one line per problem\n{}", out.report());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("lg_prof_sample") || l.contains("banana")),
        "{}",
        out.report()
    );
    assert!(lines.iter().any(|l| l.contains("foo")), "{}", out.report());
    // prof_prefix still applies, and lg_prof_sample keeps its default.
    let heap = read_heap(&final_dump(&dir, out.pid));
    assert_eq!(heap.period, 1 << 19);
}

#[test]
fn max_depth_bounds_stacks() {
    let dir = TempDir::new("deep");
    let bin = compile_c("deep", dir.path(), &[]);
    let out = run_both(&bin, &[], &exact_conf(&dir), 0);
    out.expect_quiet();
    let heap = read_heap(&final_dump(&dir, out.pid));
    let longest = heap.stacks.iter().map(|s| s.0.len()).max().unwrap_or(0);
    // The recursion is 200 deep: the deepest stack is cut at the default prof_max_depth, 128.
    assert!(
        (100..=128).contains(&longest),
        "default prof_max_depth 128: longest stack has {longest} frames"
    );
    let t = top(&final_dump(&dir, out.pid), &[]);
    t.expect_flat("deep_leaf", 1000, 1);

    let dir = TempDir::new("shallow");
    let bin = compile_c("deep", dir.path(), &[]);
    let conf = format!("{},prof_max_depth:4", exact_conf(&dir));
    let out = run_both(&bin, &[], &conf, 0);
    out.expect_quiet();
    let dump = final_dump(&dir, out.pid);
    let heap = read_heap(&dump);
    let longest = heap.stacks.iter().map(|s| s.0.len()).max().unwrap_or(0);
    assert!(
        longest <= 4,
        "prof_max_depth:4: a stack has {longest} frames"
    );
    top(&dump, &[]).expect_flat("deep_leaf", 1000, 1);
}

/// Interval dumps of one run of `c/interval.c` (64 MiB allocated and freed in 64 KiB blocks)
/// with `lg_prof_interval:20`: checks names, order and parsing, returns the count.
fn interval_run(extra: &str) -> usize {
    let dir = TempDir::new("interval");
    let bin = compile_c("interval", dir.path(), &[]);
    let conf = format!("prof_prefix:{},lg_prof_interval:20{extra}", dir.prefix());
    let out = run_both(&bin, &[], &conf, 0);
    out.expect_quiet();
    let dumps: Vec<DumpFile> = dumps_in(dir.path(), "jeprof")
        .into_iter()
        .filter(|d| !d.mmap && d.pid == out.pid)
        .collect();
    let intervals: Vec<&DumpFile> = dumps.iter().filter(|d| d.tag.starts_with('i')).collect();
    let mut seqs: Vec<u64> = dumps.iter().map(|d| d.seq).collect();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        dumps.len(),
        "sequence numbers repeat: {dumps:?}"
    );
    let iseqs: Vec<u64> = intervals
        .iter()
        .map(|d| d.tag[1..].parse().unwrap())
        .collect();
    assert!(
        iseqs.windows(2).all(|w| w[0] < w[1]),
        "i<n> not increasing: {iseqs:?}"
    );
    for d in &dumps {
        read_heap(&d.path);
    }
    let last = dumps.last().unwrap();
    assert_eq!(last.tag, "f", "the final dump comes last: {dumps:?}");
    intervals.len()
}

#[test]
fn interval_dumps_exact() {
    // Every allocation is seen: one dump per MiB of the 64 MiB (plus start-up allocations).
    let n = interval_run(",lg_prof_sample:0");
    assert!(
        (62..=66).contains(&n),
        "{n} interval dumps for 64 MiB at lg_prof_interval:20 in exact mode"
    );
}

#[test]
fn interval_dumps_sampled() {
    // With sampling the interval is checked at sample events (as jemalloc does), so a gap between
    // two samples that crosses several MiB boundaries gives one dump: at R = 512 KiB a 1 MiB
    // window holds a sample with p = 1 - e^-2 = 0.86, so ~55 of 64 are expected.
    let n = interval_run("");
    assert!(
        (32..=72).contains(&n),
        "{n} interval dumps for 64 MiB at lg_prof_interval:20"
    );
}

/// AT_SECURE: LD_PRELOAD is ignored by the loader for a setuid program, so the program loads the
/// profiler with dlopen and starts it as an attach does (`Agent_OnAttach`). Run as `nobody`:
/// without the setuid bit the profiler starts and writes its final dump (the control); with it
/// (AT_SECURE=1) the agent refuses to start (201) and nothing is written.
#[test]
fn setuid_program_stays_passive() {
    const NAME: &str = "setuid_program_stays_passive";
    if !have_program("setpriv") {
        return skip(NAME, "setpriv not installed");
    }
    let uid = Run::new("id").arg("-u").run();
    if uid.stdout.trim() != "0" {
        return skip(NAME, "needs root to make a setuid binary");
    }
    let dir = TempDir::new("secure");
    let bin = compile_c("secure", dir.path(), &[]);
    let lib = dir.path().join("libjeprof_preload.so");
    std::fs::copy(preload(), &lib).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let perm = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    perm(dir.path(), 0o755);
    perm(&out_dir, 0o1777);
    perm(&lib, 0o755);
    let conf = format!("prof_prefix:{}/jeprof", out_dir.display());
    let as_nobody = |binary: &Path| {
        Run::new("setpriv")
            .args(&[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                &binary.to_string_lossy(),
                &lib.to_string_lossy(),
            ])
            .env("JEPROF_CONF", &conf)
            .run()
    };
    let plain = dir.path().join("secure_plain");
    std::fs::copy(&bin, &plain).unwrap();
    perm(&plain, 0o755);
    let control = as_nobody(&plain);
    control.expect_success();
    if !control.stdout.contains("loaded=1 secure=0 agent=0") {
        return skip(NAME, &format!("control run: {}", control.report()));
    }
    assert!(
        !dumps_in(&out_dir, "jeprof").is_empty(),
        "the control wrote no dump\n{}",
        control.report()
    );
    for d in dumps_in(&out_dir, "jeprof") {
        std::fs::remove_file(d.path).unwrap();
    }
    let setuid = dir.path().join("secure_setuid");
    std::fs::copy(&bin, &setuid).unwrap();
    perm(&setuid, 0o4755);
    let out = as_nobody(&setuid);
    out.expect_success();
    if out.stdout.contains("secure=0") {
        return skip(NAME, "the temp dir is mounted nosuid: no AT_SECURE");
    }
    assert!(
        out.stdout.contains("loaded=1 secure=1 agent=201"),
        "{}",
        out.report()
    );
    let written = dumps_in(&out_dir, "jeprof");
    assert!(
        written.is_empty(),
        "AT_SECURE process wrote {written:?}\n{}",
        out.report()
    );
}

#[test]
fn dump_does_not_follow_planted_symlinks() {
    let dir = TempDir::new("symlink");
    let bin = compile_c("symlink", dir.path(), &[]);
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let prefix = dir.prefix();
    let out = Run::new(&bin)
        .args(&[prefix.as_str(), &victim.to_string_lossy()])
        .profiled(&exact_conf(&dir))
        .run();
    out.expect_success();
    assert_eq!(out.stdout, "planted\n");
    assert!(out.stderr_lines().len() <= 1, "{}", out.report());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}
