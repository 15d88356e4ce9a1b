//! A C program with known leaks, compiled here with gcc and run under jemalloc's own profiler
//! (every allocation sampled): `top --json` must give exactly those bytes at those functions,
//! with jemalloc's and malloc's frames dropped. Also `run` end to end, using jemalloc as the
//! "preload" (it writes `<prefix>.<pid>.<seq>.f.heap` just like ours). Skips, saying why, when
//! gcc or libjemalloc is missing.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAM: &str = r#"
#include <stdlib.h>
#include <string.h>

void *keep[64];
int nkeep;

__attribute__((noinline)) void leak_a(void) {
    for (int i = 0; i < 3; i++) { keep[nkeep] = malloc(1024); memset(keep[nkeep++], 1, 1024); }
}

__attribute__((noinline)) void leak_b(void) {
    for (int i = 0; i < 5; i++) { keep[nkeep] = malloc(4096); memset(keep[nkeep++], 2, 4096); }
}

static inline __attribute__((always_inline)) void *leak_inline(size_t n) {
    return calloc(1, n);
}

__attribute__((noinline)) void leak_c(void) {
    keep[nkeep++] = leak_inline(2048);
}

__attribute__((noinline)) void transient(void) {
    for (int i = 0; i < 4; i++) { void *p = malloc(8192); memset(p, 3, 8192); free(p); }
}

int main(int argc, char **argv) {
    leak_a();
    leak_b();
    leak_c();
    transient();
    return argc > 1 ? atoi(argv[1]) : 0;
}
"#;

/// Compile the program; `None` (after printing why) when the tools are missing.
fn build(dir: &Path) -> Option<PathBuf> {
    if !have(JEMALLOC) {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: a missing install step in .ci/run"
        );
        eprintln!("skipping: {JEMALLOC} not installed (apt-get install libjemalloc2)");
        return None;
    }
    if !have_command("gcc") {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: a missing install step in .ci/run"
        );
        eprintln!("skipping: gcc not installed");
        return None;
    }
    let src = dir.join("leaks.c");
    let exe = dir.join("leaks");
    std::fs::write(&src, PROGRAM).unwrap();
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-fno-omit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

fn profile_with_jemalloc(exe: &Path, dir: &Path) -> PathBuf {
    let prefix = dir.join("jeprof");
    let status = Command::new(exe)
        .env("LD_PRELOAD", JEMALLOC)
        .env(
            "MALLOC_CONF",
            format!(
                "prof:true,prof_final:true,prof_accum:true,lg_prof_sample:0,prof_prefix:{}",
                prefix.display()
            ),
        )
        .status()
        .unwrap();
    assert!(status.success());
    let dumps: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "heap"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    dumps[0].clone()
}

fn row<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {json:#}"))
}

fn top_json(args: &[&str]) -> serde_json::Value {
    let o = jeprof(args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn exact_bytes_at_named_functions() {
    let dir = temp_dir("jemalloc_c");
    let Some(exe) = build(&dir) else { return };
    let dump = profile_with_jemalloc(&exe, &dir);
    let dump = dump.to_str().unwrap();

    let json = top_json(&["top", dump, "--json", "-n", "100"]);
    assert_eq!(json["unit"], "bytes");
    let a = row(&json, "leak_a");
    assert_eq!(
        (a["flat_bytes"].as_i64(), a["flat_objects"].as_i64()),
        (Some(3 * 1024), Some(3))
    );
    assert_eq!(a["library"].as_str(), exe.to_str());
    assert!(
        a["file"].as_str().is_some_and(|f| f.ends_with("leaks.c")),
        "{a}"
    );
    let b = row(&json, "leak_b");
    assert_eq!(
        (b["flat_bytes"].as_i64(), b["flat_objects"].as_i64()),
        (Some(5 * 4096), Some(5))
    );
    // calloc inside an always_inline function: the inlined frame is the site, its caller cum.
    let inl = row(&json, "leak_inline");
    assert_eq!(
        (inl["flat_bytes"].as_i64(), inl["flat_objects"].as_i64()),
        (Some(2048), Some(1))
    );
    let c = row(&json, "leak_c");
    assert_eq!(
        (c["flat_bytes"].as_i64(), c["cum_bytes"].as_i64()),
        (Some(0), Some(2048))
    );
    let main = row(&json, "main");
    assert_eq!(main["cum_bytes"].as_i64(), Some(3 * 1024 + 5 * 4096 + 2048));
    // No allocator frame is ever a site.
    for r in json["rows"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let lib = r["library"].as_str().unwrap_or("");
        assert!(
            !["malloc", "calloc", "free"].contains(&name) && !lib.contains("libjemalloc"),
            "{r}"
        );
    }
    assert!(
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "transient")
    );

    // Allocated space sees the freed allocations too.
    let alloc = top_json(&["top", dump, "--json", "--alloc-space", "-n", "100"]);
    let t = row(&alloc, "transient");
    assert_eq!(
        (t["flat_bytes"].as_i64(), t["flat_objects"].as_i64()),
        (Some(4 * 8192), Some(4))
    );

    // By line: leak_a's malloc line.
    let by_line = top_json(&["top", dump, "--json", "--by", "line", "-n", "100"]);
    let a = row(&by_line, "leak_a");
    assert_eq!(a["line"].as_i64(), Some(9), "{a}");

    // Text report names them as well.
    let o = jeprof(&["top", dump]);
    let text = stdout(&o);
    assert!(
        text.contains("leak_b") && text.contains("20.0 KiB"),
        "{text}"
    );
}

#[test]
fn run_reports_and_passes_exit_status() {
    let dir = temp_dir("jemalloc_run");
    let Some(exe) = build(&dir) else { return };
    let out_dir = dir.join("out");
    let out = Command::new(bin())
        .args(["run", "--preload", JEMALLOC, "--exact", "--out"])
        .arg(&out_dir)
        .arg("--")
        .arg(&exe)
        .arg("7")
        // jemalloc reads MALLOC_CONF, not JEPROF_CONF; point it at the same prefix.
        .env(
            "MALLOC_CONF",
            format!(
                "prof:true,prof_final:true,lg_prof_sample:0,prof_prefix:{}/jeprof",
                out_dir.display()
            ),
        )
        .output()
        .unwrap();
    // The report is on stdout.
    let report = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        report.contains("leak_b") && report.contains("leak_a"),
        "{report}\n{err}"
    );
    assert!(
        report.contains(&format!("{}/jeprof.", out_dir.display())),
        "{report}"
    );
    // jemalloc's dumps have no RSS records: the report says so in one line.
    assert!(report.contains("(no RSS breakdown: "), "{report}");

    // Killed by a signal: 128 + signal.
    let out = Command::new(bin())
        .args(["run", "--preload", JEMALLOC, "--out"])
        .arg(&out_dir)
        .args(["--", "sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + 9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_errors() {
    let dir = temp_dir("run_errors");
    let out = Command::new(bin())
        .args(["run", "--preload", JEMALLOC, "--out"])
        .arg(&dir)
        .args(["--", "/nonexistent/command"])
        .output()
        .unwrap();
    if have(JEMALLOC) {
        assert_eq!(out.status.code(), Some(127));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("jeprof-rs: /nonexistent/command: no such file"),
            "{err}"
        );
    }
    let out = Command::new(bin())
        .args(["run", "--preload", "/nonexistent/lib.so", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/lib.so: preload library not found")
    );
}

#[test]
fn separate_debug_file_by_debuglink() {
    let dir = temp_dir("debuglink");
    let Some(exe) = build(&dir) else { return };
    if !have_command("objcopy") {
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run under CI: a missing install step in .ci/run"
        );
        eprintln!("skipping: objcopy not installed");
        return;
    }
    // Move DWARF into leaks.debug next to the binary, leave a .gnu_debuglink behind.
    let debug = dir.join("leaks.debug");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new("objcopy").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "objcopy: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "--only-keep-debug".as_ref(),
        exe.as_os_str(),
        debug.as_os_str(),
    ]);
    let link = format!("--add-gnu-debuglink={}", debug.display());
    run(&["--strip-debug".as_ref(), link.as_ref(), exe.as_os_str()]);
    let dump = profile_with_jemalloc(&exe, &dir);
    let json = top_json(&[
        "top",
        dump.to_str().unwrap(),
        "--json",
        "--by",
        "line",
        "-n",
        "100",
    ]);
    let a = row(&json, "leak_a");
    assert!(
        a["file"].as_str().is_some_and(|f| f.ends_with("leaks.c")),
        "DWARF from leaks.debug: {a}"
    );
    assert_eq!(a["line"].as_i64(), Some(9));
    assert_eq!(a["flat_bytes"].as_i64(), Some(3072));
}
