//! Golden outputs of every report on fixed dumps. The dumps' code lives in anonymous memory
//! named by `tests/data/app.perf.map`, plus one missing library, so the outputs do not depend
//! on the machine. `JEPROF_BLESS=1 cargo test -p jeprof-rs --test golden` rewrites them.

mod common;
use common::*;

const PERF: &str = "--perf-map=tests/data/app.perf.map";

fn check(name: &str, args: &[&str]) {
    let o = jeprof(args);
    let text = format!(
        "$ jeprof-rs {}\n--- exit: {}\n--- stderr\n{}--- stdout\n{}",
        args.join(" "),
        o.status.code().unwrap_or(-1),
        stderr(&o),
        stdout(&o)
    );
    golden(name, &text);
}

#[test]
fn top_variants() {
    check("top.txt", &["top", "tests/data/app.heap", PERF]);
    check(
        "top-objects.txt",
        &["top", "tests/data/app.heap", PERF, "--inuse-objects"],
    );
    check(
        "top-alloc-space.txt",
        &[
            "top",
            "tests/data/app.heap",
            PERF,
            "--alloc-space",
            "-n",
            "3",
        ],
    );
    check(
        "top-alloc-objects.txt",
        &[
            "top",
            "tests/data/app.heap",
            PERF,
            "--alloc-objects",
            "--bytes",
        ],
    );
    check(
        "top-by-library.txt",
        &["top", "tests/data/app.heap", PERF, "--by", "library"],
    );
    check(
        "top-by-line.txt",
        &["top", "tests/data/app.heap", PERF, "--by", "line"],
    );
    check(
        "top-focus.txt",
        &[
            "top",
            "tests/data/app.heap",
            PERF,
            "--focus",
            "handle_request",
            "--ignore",
            "decode",
        ],
    );
    check(
        "top-base.txt",
        &[
            "top",
            "tests/data/app.heap",
            PERF,
            "--base",
            "tests/data/old.heap",
        ],
    );
    check(
        "top-json.txt",
        &["top", "tests/data/app.heap", PERF, "--json", "-n", "4"],
    );
    check(
        "top-exact.txt",
        &["top", "tests/data/exact.heap", PERF, "--bytes"],
    );
    check(
        "top-gperf.txt",
        &[
            "top",
            "tests/data/gperf.heap",
            PERF,
            "--alloc-space",
            "--bytes",
        ],
    );
}

#[test]
fn collapsed_diff_trend() {
    check("collapsed.txt", &["collapsed", "tests/data/app.heap", PERF]);
    check(
        "collapsed-alloc-objects.txt",
        &["collapsed", "tests/data/app.heap", PERF, "--alloc-objects"],
    );
    check(
        "diff.txt",
        &["diff", "tests/data/old.heap", "tests/data/app.heap", PERF],
    );
    check(
        "trend.txt",
        &[
            "trend",
            "tests/data/t3.heap",
            "tests/data/t1.heap",
            "tests/data/t4.heap",
            "tests/data/t2.heap",
            PERF,
        ],
    );
}

#[test]
fn bad_inputs_one_line_each() {
    let mut text = String::new();
    let mut names: Vec<String> = std::fs::read_dir(crate_dir().join("tests/corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bad-"))
        .collect();
    names.sort();
    names.push("does-not-exist.heap".to_string());
    for name in names {
        let path = format!("tests/corpus/{name}");
        let o = jeprof(&["top", &path]);
        let err = stderr(&o);
        assert_ne!(o.status.code(), Some(0), "{name} must fail");
        assert!(o.stdout.is_empty(), "{name}: no partial output");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        assert!(
            err.starts_with(&format!("jeprof-rs: {path}")),
            "{name}: names the file: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        text.push_str(&err);
    }
    golden("errors.txt", &text);
}

#[test]
fn bad_arguments() {
    let o = jeprof(&["top", "tests/data/app.heap", "--focus", "("]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1);
    assert!(
        stderr(&o).starts_with("jeprof-rs: --focus"),
        "{}",
        stderr(&o)
    );
}
