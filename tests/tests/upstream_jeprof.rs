//! jemalloc's own `jeprof` must read our dumps (DESIGN.md: "jemalloc's own jeprof must read our
//! files"): on an exact-mode dump, `jeprof --text --show_bytes` names the leak function with its
//! exact bytes. Skipped with a printed reason if jeprof is not installed.

use jeprof_tests::*;

/// Flat bytes jeprof reports for `name` in `--text --show_bytes` output
/// (columns: flat flat% sum% cum cum% name).
fn jeprof_flat(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() >= 6 && cols[5] == name)
            .then(|| cols[0].parse().ok())
            .flatten()
    })
}

#[test]
fn jeprof_reads_our_dump() {
    if !have_program("jeprof") {
        return skip(
            "jeprof_reads_our_dump",
            "jeprof (libjemalloc-dev) not installed",
        );
    }
    let dir = TempDir::new("jeprof");
    let bin = compile_c("exact", dir.path(), &[]);
    let out = Run::new(&bin).profiled(&exact_conf(&dir)).run();
    out.expect_success();
    let dump = final_dump(&dir, out.pid);
    let jeprof = run_jeprof(&bin, &dump);
    for (name, bytes) in [
        ("leak_malloc", 3000),
        ("leak_calloc", 4200),
        ("leak_large", 10 << 20),
        ("grow_chain_3", 20000),
        ("maybe_keep", 2500),
        ("shared_thread_leak", 26640),
    ] {
        assert_eq!(
            jeprof_flat(&jeprof.stdout, name),
            Some(bytes),
            "jeprof's flat bytes of {name}\n{}",
            jeprof.report()
        );
    }
}

/// `jeprof --text --show_bytes BIN DUMP`, which must succeed.
fn run_jeprof(bin: &std::path::Path, dump: &std::path::Path) -> Outcome {
    let jeprof = Run::new("jeprof")
        .args(&[
            "--text",
            "--show_bytes",
            &bin.to_string_lossy(),
            &dump.to_string_lossy(),
        ])
        .timeout(std::time::Duration::from_secs(120))
        .run();
    jeprof.expect_success();
    jeprof
}

#[test]
fn jeprof_reads_our_mmap_sidecar() {
    if !have_program("jeprof") {
        return skip(
            "jeprof_reads_our_mmap_sidecar",
            "jeprof (libjemalloc-dev) not installed",
        );
    }
    let dir = TempDir::new("jeprof-mmap");
    let bin = compile_c("mmap", dir.path(), &[]);
    let out = Run::new(&bin)
        .arg(dir.path().to_string_lossy())
        .profiled(&exact_conf(&dir))
        .run();
    out.expect_success();
    let dump = final_mmap_dump(&dir, out.pid);
    let jeprof = run_jeprof(&bin, &dump);
    for (name, bytes) in [
        ("keep_maps", 3 << 20),
        ("grow_map", 3 << 20),
        ("commit", 1 << 20),
    ] {
        assert_eq!(
            jeprof_flat(&jeprof.stdout, name),
            Some(bytes),
            "jeprof's flat bytes of {name}\n{}",
            jeprof.report()
        );
    }
}
