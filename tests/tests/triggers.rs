//! Dumps while the process runs: on demand (`jeprof-rs dump PID` sends `prof_signal`), every
//! N seconds (`prof_interval_secs`), and at new high-water marks (`prof_gdump`). Exact mode, so
//! each dump's contents are known to the byte.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jeprof_tests::*;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dump_on_demand_while_running() {
    let dir = TempDir::new("demand");
    let bin = compile_c("triggers", dir.path(), &[]);
    let mut child = Command::new(&bin)
        .arg("demand")
        .env("LD_PRELOAD", preload())
        .env(
            "JEPROF_CONF",
            format!("prof_prefix:{},lg_prof_sample:0", dir.prefix()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");

    let ask = Run::new(analyzer()).args(&["dump", &pid.to_string()]).run();
    ask.expect_success();
    let on_demand = || {
        dumps_in(dir.path(), "jeprof")
            .into_iter()
            .find(|d| d.tag == "m0" && !d.mmap)
    };
    wait_for("the m0 dump", Duration::from_secs(20), || {
        on_demand().is_some()
    });
    let m0 = on_demand().unwrap().path;
    // The dump is written by a timer thread; wait until it is complete before reading it.
    wait_for("a complete m0 dump", Duration::from_secs(20), || {
        std::fs::read_to_string(&m0)
            .is_ok_and(|t| t.contains("MAPPED_LIBRARIES:") && t.ends_with('\n'))
    });

    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());

    let during = top(&m0, &[]);
    during.expect_flat("phase1", 300000, 3);
    assert!(
        during.row("phase2").is_none(),
        "phase2 had not run yet: {}",
        during.command
    );
    let after = top(&final_dump(&dir, pid), &[]);
    after.expect_flat("phase1", 300000, 3);
    after.expect_flat("phase2", 350000, 5);
}

#[test]
fn dumps_every_second() {
    let dir = TempDir::new("timer");
    let bin = compile_c("triggers", dir.path(), &[]);
    let out = Run::new(&bin)
        .args(&["timer", "3000"])
        .profiled(&format!(
            "prof_prefix:{},prof_interval_secs:1",
            dir.prefix()
        ))
        .run();
    out.expect_success();
    let intervals: Vec<_> = dumps_in(dir.path(), "jeprof")
        .into_iter()
        .filter(|d| d.tag.starts_with('i') && !d.mmap)
        .collect();
    assert!(
        (2..=3).contains(&intervals.len()),
        "{} interval dumps in 3 s",
        intervals.len()
    );
    for d in &intervals {
        top(&d.path, &[]); // each parses
    }
}

#[test]
fn dumps_at_new_high_water_marks_only() {
    let dir = TempDir::new("gdump");
    let bin = compile_c("triggers", dir.path(), &[]);
    let out = Run::new(&bin)
        .arg("growth")
        .profiled(&format!(
            "prof_prefix:{},lg_prof_sample:0,prof_gdump:true",
            dir.prefix()
        ))
        .run();
    out.expect_success();
    let highs: Vec<_> = dumps_in(dir.path(), "jeprof")
        .into_iter()
        .filter(|d| d.tag.starts_with('u') && !d.mmap)
        .collect();
    // Each 4 MiB step is a new high-water mark (steps of at least 1 MiB count).
    assert!(highs.len() >= 8, "{} high-water dumps", highs.len());
    // The last one is at the peak: all eight blocks, and nothing from regrow (which stays below).
    let last = top(&highs.last().unwrap().path, &[]);
    last.expect_flat("grow", 8 * (4 << 20), 8);
    for d in &highs {
        assert!(
            top(&d.path, &[]).row("regrow").is_none(),
            "regrow is below the high-water mark"
        );
    }
}

#[test]
fn no_thread_is_added_unless_a_timer_is_asked_for() {
    let dir = TempDir::new("threads");
    let bin = compile_c("triggers", dir.path(), &[]);
    // Programs that must stay single-threaded (unshare, some sandboxes) keep working.
    let out = Run::new(&bin)
        .arg("threads")
        .profiled(&format!("prof_prefix:{}", dir.prefix()))
        .run();
    out.expect_success();
    assert_eq!(out.stdout, "threads 1\n", "{}", out.report());
    let out = Run::new(&bin)
        .arg("threads")
        .profiled(&format!(
            "prof_prefix:{},prof_interval_secs:60",
            dir.prefix()
        ))
        .run();
    out.expect_success();
    assert_eq!(
        out.stdout,
        "threads 2\n",
        "the timer's helper thread, on request: {}",
        out.report()
    );
}
