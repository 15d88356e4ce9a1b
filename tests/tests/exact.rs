//! Exact mode (`lg_prof_sample:0`): every allocation is recorded, so bytes and objects per site
//! are known exactly. One run of `c/exact.c` is shared by the tests below; each test checks one
//! family of sites (see the comments in the C file for what each site does).

use std::sync::OnceLock;

use jeprof_tests::*;

struct Fixture {
    /// Holds the program and its dumps for the whole test binary.
    _dir: TempDir,
    binary: std::path::PathBuf,
    outcome: Outcome,
    dump: std::path::PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = TempDir::new("exact");
        let binary = compile_c("exact", dir.path(), &[]);
        let run = Run::new(&binary).profiled(&exact_conf(&dir));
        let control = run.unprofiled().run();
        control.expect_success();
        let outcome = run.run();
        outcome.expect_success().expect_quiet();
        assert_eq!(outcome.stdout, control.stdout, "{}", outcome.report());
        let dump = final_dump(&dir, outcome.pid);
        Fixture {
            _dir: dir,
            binary,
            outcome,
            dump,
        }
    })
}

fn inuse() -> &'static Top {
    static TOP: OnceLock<Top> = OnceLock::new();
    TOP.get_or_init(|| top(&fixture().dump, &[]))
}

fn alloc_space() -> &'static Top {
    static TOP: OnceLock<Top> = OnceLock::new();
    TOP.get_or_init(|| top(&fixture().dump, &["--alloc-space"]))
}

/// (site, in-use bytes, in-use objects) of every site that keeps memory.
const KEPT: &[(&str, i64, i64)] = &[
    ("leak_malloc", 3000, 3),
    ("leak_calloc", 4200, 2),
    ("leak_large", 10 << 20, 1),
    ("grow_chain_3", 20000, 1),
    ("shrink_realloc", 100, 1),
    ("leak_posix_memalign", 1000, 1),
    ("leak_aligned_alloc", 1000, 1),
    ("leak_memalign", 3000, 1),
    ("leak_valloc", 5000, 1),
    ("maybe_keep", 2500, 5),
    ("realloc_null", 2222, 1),
    ("reallocarray_base", 100, 1),
    ("reallocarray_ok", 300, 1),
    ("realloc_fail_base", 100, 1),
    ("per_thread_leak_0", 1000, 1),
    ("per_thread_leak_1", 2000, 2),
    ("per_thread_leak_2", 3000, 3),
    ("per_thread_leak_3", 4000, 4),
    ("per_thread_leak_4", 5000, 5),
    ("per_thread_leak_5", 6000, 6),
    ("per_thread_leak_6", 7000, 7),
    ("per_thread_leak_7", 8000, 8),
    ("shared_thread_leak", 8 * 10 * 333, 80),
    ("same_leaf", 4000, 20),
];

#[test]
fn dump_is_exact_heap_v2() {
    let f = fixture();
    let heap = read_heap(&f.dump);
    assert_eq!(heap.period, 1, "{}: header", f.dump.display());
    assert_eq!(
        heap.total,
        heap.stack_sum(),
        "{}: totals line vs sum of stacks",
        f.dump.display()
    );
    assert!(
        heap.maps.contains(&*f.binary.to_string_lossy()),
        "{}: MAPPED_LIBRARIES does not list the program",
        f.dump.display()
    );
    let t = inuse();
    assert_eq!(t.total_bytes as u64, heap.total.bytes, "{}", t.command);
    assert_eq!(t.total_objects as u64, heap.total.objs, "{}", t.command);
    let flat_sum: i64 = t.rows.iter().map(|r| r.flat_bytes).sum();
    assert_eq!(
        flat_sum,
        t.total_bytes,
        "{}: sum of flat\n{}",
        t.command,
        t.render()
    );
    assert!(f.outcome.stdout.contains("failures=0"));
}

/// Four paths to one site whose walks start from identical registers: each path gets exactly
/// its own bytes (a repeated-stack shortcut that looked only at the start would merge them).
#[test]
fn alternating_callers_are_told_apart() {
    let t = inuse();
    t.expect_flat("same_leaf", 4000, 20);
    for (name, bytes, objects) in [
        ("via_left", 1000, 10),
        ("via_right", 3000, 10),
        ("from_a", 2000, 10),
        ("from_b", 2000, 10),
    ] {
        assert_eq!(
            t.cum(name),
            (bytes, objects),
            "{}: cum of {name}\n{}",
            t.command,
            t.render()
        );
    }
}

#[test]
fn malloc_calloc_large() {
    let t = inuse();
    t.expect_flat("leak_malloc", 3000, 3);
    t.expect_flat("leak_calloc", 4200, 2);
    t.expect_flat("leak_large", 10 << 20, 1);
}

#[test]
fn realloc_chain_moves_bytes_to_last_site() {
    let t = inuse();
    t.expect_absent("start_chain");
    t.expect_absent("grow_chain_1");
    t.expect_absent("grow_chain_2");
    t.expect_flat("grow_chain_3", 20000, 1);
    t.expect_absent("shrink_start");
    t.expect_flat("shrink_realloc", 100, 1);
}

#[test]
fn aligned_allocations_record_requested_size() {
    let t = inuse();
    t.expect_flat("leak_posix_memalign", 1000, 1);
    t.expect_flat("leak_aligned_alloc", 1000, 1);
    t.expect_flat("leak_memalign", 3000, 1);
    t.expect_flat("leak_valloc", 5000, 1);
    t.expect_absent("bad_posix_memalign");
}

#[test]
fn freed_blocks_are_absent() {
    let t = inuse();
    t.expect_flat("maybe_keep", 2500, 5);
    t.expect_absent("all_freed");
    t.expect_absent("xthread_alloc");
    t.expect_absent("thread_churn");
    t.expect_absent("usable");
}

#[test]
fn edge_cases_of_the_api() {
    let t = inuse();
    t.expect_flat("realloc_null", 2222, 1);
    t.expect_absent("realloc_zero_alloc");
    assert_eq!(t.flat("realloc_zero").0, 0, "{}", t.render());
    t.expect_absent("calloc_overflow");
    t.expect_absent("malloc_huge");
    // The block whose reallocarray overflowed stays where it was allocated; the other one moved
    // to the successful reallocarray (30 x 10 B).
    t.expect_flat("reallocarray_base", 100, 1);
    t.expect_absent("reallocarray_overflow");
    t.expect_flat("reallocarray_ok", 300, 1);
    // A failed realloc leaves its block recorded where it was allocated.
    t.expect_flat("realloc_fail_base", 100, 1);
    t.expect_absent("realloc_fail");
}

#[test]
fn threads_each_exact() {
    let t = inuse();
    for i in 0..8i64 {
        t.expect_flat(&format!("per_thread_leak_{i}"), (i + 1) * 1000, i + 1);
    }
    t.expect_flat("shared_thread_leak", 26640, 80);
}

#[test]
fn alloc_space_counts_freed_blocks() {
    let t = alloc_space();
    t.expect_flat("all_freed", 50 * 777, 50);
    t.expect_flat("xthread_alloc", 16 * 4096, 16);
    // 8 threads x sum over round<2000 of (16 + round % 200) bytes.
    t.expect_flat("thread_churn", 8 * (2000 * 16 + 10 * 19900), 8 * 2000);
    t.expect_flat("start_chain", 100, 1);
    t.expect_flat("grow_chain_1", 1000, 1);
    t.expect_flat("grow_chain_2", 5000, 1);
    t.expect_flat("grow_chain_3", 20000, 1);
    t.expect_flat("maybe_keep", 5000, 10);
    t.expect_flat("realloc_zero_alloc", 3333, 1);
    t.expect_flat("reallocarray_base", 200, 2);
    t.expect_flat("leak_malloc", 3000, 3);
    t.expect_absent("calloc_overflow");
    t.expect_absent("malloc_huge");
    let heap = read_heap(&fixture().dump);
    assert_eq!(
        t.total_bytes as u64, heap.total.alloc_bytes,
        "{}",
        t.command
    );
    assert_eq!(
        t.total_objects as u64, heap.total.alloc_objs,
        "{}",
        t.command
    );
    assert!(t.total_bytes > inuse().total_bytes);
}

#[test]
fn objects_views_sort_by_objects() {
    let bytes = inuse();
    for (args, base) in [
        (&["--inuse-objects"][..], inuse()),
        (&["--alloc-objects"][..], alloc_space()),
    ] {
        let t = top(&fixture().dump, args);
        assert_ne!(t.unit, bytes.unit, "{}: unit", t.command);
        assert_eq!(t.total_objects, base.total_objects, "{}", t.command);
        for w in t.rows.windows(2) {
            assert!(
                w[0].flat_objects >= w[1].flat_objects,
                "{}: rows not sorted by flat objects\n{}",
                t.command,
                t.render()
            );
        }
        for (name, _, _) in KEPT {
            assert_eq!(t.flat(name), base.flat(name), "{}: {name}", t.command);
        }
    }
    for w in bytes.rows.windows(2) {
        assert!(
            w[0].flat_bytes >= w[1].flat_bytes,
            "{}: rows not sorted by flat bytes\n{}",
            bytes.command,
            bytes.render()
        );
    }
}

#[test]
fn every_kept_site_and_nothing_else_from_the_program() {
    let t = inuse();
    for &(name, bytes, objects) in KEPT {
        t.expect_flat(name, bytes, objects);
    }
    // By library: the program's own code holds exactly the kept sites.
    let by_lib = top(&fixture().dump, &["--by", "library"]);
    let exe = fixture().binary.to_string_lossy().into_owned();
    let row = by_lib
        .rows
        .iter()
        .find(|r| {
            r.name == exe || r.library.as_deref() == Some(&*exe) || r.name.ends_with("/exact")
        })
        .unwrap_or_else(|| panic!("{}: no row for {exe}\n{}", by_lib.command, by_lib.render()));
    let want: i64 = KEPT.iter().map(|k| k.1).sum();
    assert_eq!(
        row.flat_bytes,
        want,
        "{}\n{}",
        by_lib.command,
        by_lib.render()
    );
}

#[test]
fn by_line_names_the_call_line() {
    let src = std::fs::read_to_string(c_dir().join("exact.c")).unwrap();
    let line = src
        .lines()
        .position(|l| l.contains("LINE:leak_malloc"))
        .unwrap() as u64
        + 1;
    let t = top(&fixture().dump, &["--by", "line"]);
    let row = t
        .rows
        .iter()
        .find(|r| r.file.as_deref().is_some_and(|f| f.ends_with("exact.c")) && r.line == Some(line))
        .unwrap_or_else(|| panic!("{}: no row for exact.c:{line}\n{t:#?}", t.command));
    assert_eq!(
        (row.flat_bytes, row.flat_objects),
        (3000, 3),
        "{}",
        t.command
    );
}

#[test]
fn top_n_limits_rows() {
    let all = inuse();
    let t = top_raw(&[
        "top".into(),
        fixture().dump.display().to_string(),
        "--json".into(),
        "-n".into(),
        "3".into(),
    ]);
    assert_eq!(t.rows.len(), 3, "{}", t.command);
    assert_eq!(t.rows[..], all.rows[..3], "{}", t.command);
    assert_eq!(t.total_bytes, all.total_bytes);
}
