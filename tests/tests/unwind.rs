//! Our DWARF CFI unwinder against the reference, libgcc's `_Unwind_Backtrace`
//! (`prof_unwinder:libgcc`): the same program, recorded in exact mode with each, must give the
//! same stacks with the same counts, frame by frame after symbolization (addresses differ
//! between runs because of ASLR, names do not).
//!
//! The programs: `unwind_mix.c` at -O2 without frame pointers and at -O0 (leaf allocations,
//! a libc callback, strdup inside libc, alloca and VLAs, a 48 KiB frame, recursion, threads),
//! and python3 (a large real interpreter with deep, varied C stacks). And one the reference
//! cannot be wrong about: code unloaded by `dlclose` and replaced at the same address by code
//! with other unwind rules, which a cache of rules by address must not walk with the old ones.

use std::path::Path;

use jeprof_tests::*;

fn folded(dump: &Path) -> Vec<String> {
    let out = Run::new(analyzer())
        .args(&["collapsed", "--alloc-objects", &dump.display().to_string()])
        .run();
    out.expect_success();
    let mut lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Runs `make()` under each unwinder and compares the folded stacks.
fn compare(test: &str, make: impl Fn() -> Run) -> usize {
    let mut results = Vec::new();
    for unwinder in ["auto", "libgcc"] {
        let dir = TempDir::new(&format!("{test}_{unwinder}"));
        let out = make()
            .profiled(&format!(
                "prof_prefix:{},lg_prof_sample:0,prof_unwinder:{unwinder}",
                dir.prefix()
            ))
            .run();
        out.expect_success();
        results.push(folded(&final_dump(&dir, out.pid)));
    }
    let (ours, reference) = (&results[0], &results[1]);
    let only_ours: Vec<&String> = ours.iter().filter(|l| !reference.contains(l)).collect();
    let only_ref: Vec<&String> = reference.iter().filter(|l| !ours.contains(l)).collect();
    assert!(
        only_ours.is_empty() && only_ref.is_empty(),
        "{test}: stacks differ\nonly ours:\n{}\nonly libgcc:\n{}",
        only_ours
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        only_ref
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    ours.len()
}

#[test]
fn same_stacks_as_libgcc_optimized_without_frame_pointers() {
    let dir = TempDir::new("unwind_o2");
    let bin = compile_c("unwind_mix", dir.path(), &["-O2", "-fomit-frame-pointer"]);
    let n = compare("unwind_o2", || Run::new(&bin));
    assert!(n >= 10, "only {n} stacks");
}

#[test]
fn same_stacks_as_libgcc_unoptimized() {
    let dir = TempDir::new("unwind_o0");
    let bin = compile_c("unwind_mix", dir.path(), &["-O0"]);
    let n = compare("unwind_o0", || Run::new(&bin));
    assert!(n >= 10, "only {n} stacks");
    // The 48 KiB frame (too large for the packed rule cache) is crossed, not a dead end.
    let dir2 = TempDir::new("unwind_o0_big");
    let out = Run::new(&bin)
        .profiled(&format!("prof_prefix:{},lg_prof_sample:0", dir2.prefix()))
        .run();
    out.expect_success();
    let stacks = folded(&final_dump(&dir2, out.pid));
    assert!(
        stacks.iter().any(|l| l.contains(";work;big_frame;leaf ")),
        "big_frame's caller chain is complete:\n{}",
        stacks.join("\n")
    );
}

#[test]
fn same_stacks_as_libgcc_in_python() {
    if !have_program("python3") {
        return skip("same_stacks_as_libgcc_in_python", "python3 not installed");
    }
    let n = compare("unwind_python", || {
        Run::new("python3").env("PYTHONHASHSEED", "0").args(&[
            "-c",
            "import json; d=[{str(i): [i]*3} for i in range(20000)]; print(len(json.dumps(d)))",
        ])
    });
    assert!(n >= 100, "only {n} stacks");
}

#[test]
fn code_reloaded_at_the_same_address_is_walked_with_its_own_rules() {
    let dir = TempDir::new("samepc");
    let bin = compile_c("samepc", dir.path(), &[]);
    let a = compile_shared("samepc_a", dir.path());
    let b = compile_shared("samepc_b", dir.path());
    let out = Run::new(&bin)
        .args(&[a.display().to_string(), b.display().to_string()])
        .profiled(&exact_conf(&dir))
        .run();
    out.expect_success().expect_quiet();
    // The loader put the second library where the first was: the same return address in
    // lib_alloc, behind a 0x208-byte frame instead of a 0x18-byte one. (Walked with the first
    // library's rule, the second allocation's stack skipped call_second.)
    assert_eq!(out.value("same_address"), "1", "{}", out.report());
    let t = top(&final_dump(&dir, out.pid), &[]);
    for (caller, bytes) in [("call_first", 1111), ("call_second", 2222)] {
        assert_eq!(
            t.cum(caller),
            (bytes, 1),
            "{}: cum of {caller}\n{}",
            t.command,
            t.render()
        );
    }
}
