//! Commands that touch a live process (`jeprof-rs dump PID`) check it first and send nothing
//! to a process that would not handle the signal: one line naming the pid and what is
//! missing, a non-zero exit, and the process still runs afterwards. The successful case is
//! `triggers.rs::dump_on_demand_while_running`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jeprof_tests::*;

/// `jeprof-rs dump ARGS`: (exit code, stdout, stderr).
fn dump(args: &[&str]) -> Outcome {
    let mut all = vec!["dump"];
    all.extend_from_slice(args);
    Run::new(analyzer()).args(&all).run()
}

/// Asserts one stderr line, exit 1, nothing on stdout, and that the line contains `want`.
fn expect_refusal(o: &Outcome, want: &str) {
    assert_eq!(o.code(), Some(1), "{}", o.report());
    assert!(o.stdout.is_empty(), "{}", o.report());
    assert_eq!(o.stderr.lines().count(), 1, "one line\n{}", o.report());
    assert!(o.stderr.contains(want), "wanted {want:?}\n{}", o.report());
    assert!(o.stderr.ends_with("; nothing sent\n"), "{}", o.report());
}

/// `triggers demand` under the preload with `conf`, once it has printed "ready" (its
/// preload is initialized and it polls stdin, allocating now and then).
fn start_demand(dir: &TempDir, conf: &str) -> Child {
    let bin = compile_c("triggers", dir.path(), &[]);
    let mut child = Command::new(&bin)
        .arg("demand")
        .env_remove("JEPROF_CONF")
        .env("LD_PRELOAD", preload())
        .env("JEPROF_CONF", conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

/// The process is still running a moment after the refusal (a real-time signal's default
/// action, had one been sent, kills it), and exits normally when told to.
fn expect_unharmed(mut child: Child, dir: &TempDir) {
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(child.try_wait().unwrap(), None, "the process was killed");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let on_demand: Vec<_> = dumps_in(dir.path(), "jeprof")
        .into_iter()
        .filter(|d| d.tag.starts_with('m'))
        .collect();
    assert!(on_demand.is_empty(), "no dump was requested: {on_demand:?}");
}

#[test]
fn sleep_is_refused_and_keeps_running() {
    let mut sleep = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = sleep.id().to_string();
    let start = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "sleep\n" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sleep did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = dump(&[&pid]);
    expect_refusal(
        &o,
        &format!("pid {pid} (sleep) does not have libjeprof_preload.so loaded"),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sleep.try_wait().unwrap(), None, "sleep was killed");
    sleep.kill().unwrap();
    sleep.wait().unwrap();
}

#[test]
fn pid_1_is_refused() {
    // Whatever pid 1 is here (init, a container's first process), it has no preload, or we
    // may not look at it: either way nothing is sent.
    let o = dump(&["1"]);
    expect_refusal(&o, "pid 1 (");
}

#[test]
fn a_pid_that_does_not_exist_is_refused() {
    // Above the kernel's largest pid_max (2^22).
    let o = dump(&["99999999"]);
    expect_refusal(&o, "pid 99999999 does not exist");
    let o = dump(&["0"]);
    expect_refusal(&o, "pid 0 is not a process id");
}

#[test]
fn prof_signal_0_is_refused() {
    let dir = TempDir::new("signal0");
    let child = start_demand(&dir, &format!("prof_prefix:{},prof_signal:0", dir.prefix()));
    let pid = child.id();
    let o = dump(&[&pid.to_string()]);
    expect_refusal(
        &o,
        &format!("pid {pid} (triggers) has prof_signal:0 in its JEPROF_CONF"),
    );
    expect_unharmed(child, &dir);
}

#[test]
fn a_signal_the_preload_does_not_catch_is_refused() {
    let dir = TempDir::new("signal43");
    // The preload catches 41 (dumps) and 42 (trim) here; 43 has no handler (its default action
    // kills).
    let child = start_demand(&dir, &format!("prof_prefix:{}", dir.prefix()));
    let pid = child.id();
    let o = dump(&[&pid.to_string(), "--signal", "43"]);
    expect_refusal(
        &o,
        &format!(
            "pid {pid} (triggers) has libjeprof_preload.so loaded but does not catch signal 43"
        ),
    );
    let o = dump(&[&pid.to_string(), "--signal", "65"]);
    assert_eq!(o.code(), Some(1), "{}", o.report());
    assert_eq!(
        o.stderr,
        format!(
            "jeprof-rs: --signal 65: expected a signal number 1..64; nothing sent to pid {pid}\n"
        )
    );
    expect_unharmed(child, &dir);
}

#[test]
fn prof_false_is_refused() {
    let dir = TempDir::new("proffalse");
    let child = start_demand(&dir, &format!("prof_prefix:{},prof:false", dir.prefix()));
    let pid = child.id();
    let o = dump(&[&pid.to_string()]);
    expect_refusal(
        &o,
        "does not catch signal 41 (profiling is off there (prof:false",
    );
    expect_unharmed(child, &dir);
}
