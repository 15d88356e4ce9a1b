//! mmap tracking: `c/mmap.c` maps, unmaps, remaps and commits known ranges at named functions;
//! the final `.f.mmap.heap` sidecar must hold exactly the bytes still mapped, by the stack that
//! mapped them (mremap moves the bytes to the mremap call; PROT_NONE reservations count nothing).

use jeprof_tests::*;

const MIB: i64 = 1 << 20;

/// (site, bytes still mapped at exit).
const MAPPED: &[(&str, i64)] = &[
    ("keep_maps", 3 * MIB),
    ("keep_map64", 2 * MIB),
    ("churn_maps", 0),
    ("half_unmap", 2 * MIB),
    ("punch_hole", 2 * MIB),
    ("grow_map_origin", 0),
    ("grow_map", 3 * MIB),
    ("reserve", 0),
    ("commit", MIB),
    ("map_file", 256 * 1024),
    ("failed_map", 0),
];

fn run_mmap(dir: &TempDir, conf: &str) -> Outcome {
    let binary = compile_c("mmap", dir.path(), &[]);
    let run = Run::new(&binary)
        .arg(dir.path().to_string_lossy())
        .profiled(conf);
    let out = run.run();
    out.expect_success().expect_quiet();
    assert!(out.stdout.contains("failures=0"), "{}", out.report());
    out
}

#[test]
fn mapped_bytes_by_site() {
    let dir = TempDir::new("mmap");
    let out = run_mmap(&dir, &exact_conf(&dir));
    let heap_path = final_dump(&dir, out.pid);
    let mmap_path = final_mmap_dump(&dir, out.pid);
    // The sidecar carries the same pid and sequence number as the heap dump.
    let heap_name = heap_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mmap_name = mmap_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        mmap_name,
        heap_name.replace(".f.heap", ".f.mmap.heap"),
        "sidecar name"
    );
    read_heap(&mmap_path);

    let t = top(&mmap_path, &[]);
    for &(name, bytes) in MAPPED {
        assert_eq!(
            t.flat(name).0,
            bytes,
            "{}: mapped bytes of {name}\n{}",
            t.command,
            t.render()
        );
    }
    let ours: i64 = MAPPED.iter().map(|m| m.1).sum();
    assert!(t.total_bytes >= ours, "{}\n{}", t.command, t.render());

    // Mappings are not malloc'd memory: the heap profile has none of these sites.
    let h = top(&heap_path, &[]);
    for &(name, _) in MAPPED {
        h.expect_absent(name);
    }
}

#[test]
fn mmap_tracking_can_be_turned_off() {
    let dir = TempDir::new("mmap-off");
    let conf = format!("{},prof_mmap:false", exact_conf(&dir));
    let out = run_mmap(&dir, &conf);
    final_dump(&dir, out.pid);
    let sidecars: Vec<DumpFile> = dumps_in(dir.path(), "jeprof")
        .into_iter()
        .filter(|d| d.mmap)
        .collect();
    for d in sidecars {
        let t = top(&d.path, &[]);
        for &(name, _) in MAPPED {
            t.expect_absent(name);
        }
    }
}
