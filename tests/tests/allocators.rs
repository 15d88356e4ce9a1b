//! The preload on top of another allocator: jemalloc (Debian's libjemalloc2) loaded after us,
//! so that our hooks forward to its malloc. Exact mode must give the same bytes per site as on
//! glibc, and jemalloc's own mappings (its chunks) must not appear in the mmap space.

use std::path::Path;

use jeprof_tests::*;

const JEMALLOC: &str = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

fn leak_rows(dump: &Path) -> Vec<(String, i64, i64)> {
    let t = top(dump, &[]);
    let mut rows: Vec<(String, i64, i64)> = t
        .rows
        .iter()
        .filter(|r| r.name.starts_with("leak_") || r.name.starts_with("per_thread_leak_"))
        .map(|r| (r.name.clone(), r.flat_bytes, r.flat_objects))
        .collect();
    rows.sort();
    rows
}

#[test]
fn exact_on_top_of_jemalloc() {
    if !Path::new(JEMALLOC).exists() {
        return skip("exact_on_top_of_jemalloc", "libjemalloc2 not installed");
    }
    let dir = TempDir::new("on_glibc");
    let bin = compile_c("exact", dir.path(), &[]);
    let glibc = Run::new(&bin)
        .profiled(&format!("prof_prefix:{},lg_prof_sample:0", dir.prefix()))
        .run();
    glibc.expect_success();
    let on_glibc = leak_rows(&final_dump(&dir, glibc.pid));

    let dir2 = TempDir::new("on_jemalloc");
    // Ours first, so that our malloc is the one the program calls and RTLD_NEXT finds jemalloc's.
    let out = Run::new(&bin)
        .profiled(&format!("prof_prefix:{},lg_prof_sample:0", dir2.prefix()))
        .env("LD_PRELOAD", &format!("{}:{JEMALLOC}", preload().display()))
        .run();
    // jemalloc does not set errno when a realloc near SIZE_MAX fails (without us too), which
    // the program reports as its one failure; everything else must pass.
    assert!(
        out.stdout.contains("exact done failures=0")
            || out.stdout.contains("exact done failures=1"),
        "{}",
        out.report()
    );
    assert!(
        !out.stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && !l.contains("errno == ENOMEM")),
        "{}",
        out.report()
    );
    let on_jemalloc = leak_rows(&final_dump(&dir2, out.pid));
    assert!(on_glibc.len() >= 10, "{on_glibc:?}");
    assert_eq!(
        on_jemalloc, on_glibc,
        "the same exact bytes per site on jemalloc as on glibc"
    );
}

#[test]
fn allocator_mappings_are_not_the_programs() {
    if !Path::new(JEMALLOC).exists() {
        return skip(
            "allocator_mappings_are_not_the_programs",
            "libjemalloc2 not installed",
        );
    }
    // jemalloc maps its chunks with mmap through its PLT, so our hook sees those calls: they
    // are the heap's backing store (counted in the heap space at the program's malloc sites),
    // not the program's mappings.
    let dir = TempDir::new("jemalloc_chunks");
    let bin = compile_c("bigheap", dir.path(), &[]);
    let out = Run::new(&bin)
        .profiled(&format!("prof_prefix:{},lg_prof_sample:0", dir.prefix()))
        .env("LD_PRELOAD", &format!("{}:{JEMALLOC}", preload().display()))
        .run();
    out.expect_success();
    top(&final_dump(&dir, out.pid), &[]).expect_flat("big", 64 * (8 << 20), 64);
    let mapped = top(&final_mmap_dump(&dir, out.pid), &[]);
    assert_eq!(
        mapped.total_bytes, 0,
        "jemalloc's chunks counted as the program's mappings: {:?}",
        mapped.rows
    );
}
