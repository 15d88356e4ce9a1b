//! Commands whose output is a file or a side effect: `flame` (plain and differential SVG),
//! `dump` (refusals), `--help`.

mod common;
use common::*;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

#[test]
fn flame_svgs() {
    let dir = temp_dir("flame");
    let svg = dir.join("app.svg");
    let o = jeprof(&[
        "flame",
        "tests/data/app.heap",
        "--perf-map=tests/data/app.perf.map",
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<?xml"),
        "{}",
        &text[..100.min(text.len())]
    );
    for want in [
        "cache_insert",
        "load_image",
        "worker_loop",
        "app.heap (inuse_space)",
        "bytes",
    ] {
        assert!(text.contains(want), "missing {want}");
    }
    assert!(!text.contains(">malloc<"), "allocator frames are dropped");

    let diff = dir.join("diff.svg");
    let o = jeprof(&[
        "flame",
        "tests/data/app.heap",
        "--base",
        "tests/data/old.heap",
        "--alloc-objects",
        "--perf-map=tests/data/app.perf.map",
        "-o",
        diff.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&diff).unwrap();
    assert!(text.contains("app.heap vs old.heap (alloc_objects)") && text.contains("cache_insert"));

    let o = jeprof(&[
        "flame",
        "tests/corpus/bad-cut-line.heap",
        "-o",
        diff.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "jeprof-rs: tests/corpus/bad-cut-line.heap:4: file truncated in the middle of this line (no final newline)\n"
    );
}

#[test]
fn dump_refuses_a_process_without_the_preload() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id().to_string();
    // Wait until the child runs `sleep` (not our forked copy still in exec).
    for _ in 0..200 {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SIGUSR1's default action would terminate `sleep`: it must not be sent.
    let o = jeprof(&["dump", &pid, "--signal", "10"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "jeprof-rs: pid {pid} (sleep) does not have libjeprof_preload.so loaded (start it \
             with `jeprof-rs run` or LD_PRELOAD); nothing sent\n"
        )
    );
    assert!(stdout(&o).is_empty());
    assert_eq!(child.try_wait().unwrap(), None, "sleep is still running");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    let o = jeprof(&["dump", "999999999"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "jeprof-rs: pid 999999999 does not exist; nothing sent\n"
    );
}

#[test]
fn rss_and_trim_errors_are_one_line() {
    for (args, want) in [
        (
            &["rss", "tests/data/app.heap"][..],
            "jeprof-rs: tests/data/app.heap: cannot explain its RSS: no `# rss_bytes` metadata (not written by libjeprof_preload.so)\n",
        ),
        (
            &["rss", "tests/corpus/bad-cut-line.heap"],
            "jeprof-rs: tests/corpus/bad-cut-line.heap:4: file truncated in the middle of this line (no final newline)\n",
        ),
        (
            &["trim", "999999999"],
            "jeprof-rs: pid 999999999 does not exist; nothing sent\n",
        ),
        (
            &["trim", "1", "--signal", "99"],
            "jeprof-rs: trim: bad signal 99 (1..64)\n",
        ),
    ] {
        let o = jeprof(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&o), want, "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    // A process without the preload is refused, and lives on.
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id().to_string();
    let o = jeprof(&["trim", &pid]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "jeprof-rs: pid {pid} (sleep) does not have libjeprof_preload.so loaded (start it with `jeprof-rs run` or LD_PRELOAD); nothing sent\n"
        )
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "sleep must live on");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn help_documents_every_command() {
    let o = jeprof(&["--help"]);
    let text = stdout(&o);
    for cmd in [
        "top",
        "collapsed",
        "flame",
        "diff",
        "pprof",
        "trend",
        "run",
        "dump",
        "rss",
        "trim",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
    let o = jeprof(&["top", "--help"]);
    for flag in [
        "--inuse-space",
        "--inuse-objects",
        "--alloc-space",
        "--alloc-objects",
        "--base",
        "--focus",
        "--ignore",
        "--by",
        "--json",
        "--perf-map",
    ] {
        assert!(stdout(&o).contains(flag), "{flag} missing from top --help");
    }
}
