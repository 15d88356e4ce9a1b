//! `jeprof-rs trend` on real interval dumps: two runs of `c/trend.c` (a steady leak on the
//! heap and in mappings, among churn and a site that goes up and down) write heap dumps and
//! their `.mmap.heap` siblings into one directory. Given all of them, `trend` reports one
//! series per process and kind, finds the leak of each and nothing else, and, the runs lasting
//! about a second, prints the growth over the span instead of a rate per hour.

use jeprof_tests::*;

#[test]
fn two_processes_heap_and_mmap_are_four_series() {
    let dir = TempDir::new("trend");
    let bin = compile_c("trend", dir.path(), &[]);
    let conf = format!(
        "prof_prefix:{},lg_prof_sample:0,lg_prof_interval:20",
        dir.prefix()
    );
    let runs: Vec<u32> = (0..2)
        .map(|_| {
            let out = Run::new(&bin).arg("40").profiled(&conf).run();
            out.expect_success();
            out.pid
        })
        .collect();
    let dumps = dumps_in(dir.path(), "jeprof");
    for &pid in &runs {
        for mmap in [false, true] {
            let n = dumps
                .iter()
                .filter(|d| d.pid == pid && d.mmap == mmap)
                .count();
            assert!(n >= 5, "pid {pid} wrote {n} dumps (mmap: {mmap})");
        }
    }
    let mut args = vec!["trend".to_string(), "--json".to_string()];
    args.extend(dumps.iter().map(|d| d.path.display().to_string()));
    let out = Run::new(analyzer()).args(&args).run();
    out.expect_success();
    let groups: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", out.report()));
    let groups = groups.as_array().unwrap();
    let mut seen = Vec::new();
    for g in groups {
        let pid = g["pid"].as_u64().unwrap() as u32;
        let kind = g["kind"].as_str().unwrap().to_string();
        let n = g["dumps"].as_array().unwrap().len();
        let want = dumps
            .iter()
            .filter(|d| d.pid == pid && d.mmap == (kind == "mmap"))
            .count();
        assert_eq!(n, want, "group {pid} {kind}: {}", out.report());
        let growing: Vec<&str> = g["growing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        let leak = if kind == "mmap" {
            "map_leak"
        } else {
            "leak_step"
        };
        assert_eq!(growing, [leak], "group {pid} {kind}: {}", out.report());
        let site = &g["growing"][0];
        // 40 steps of 64 KiB, less what the first dump already held.
        let growth = site["growth_bytes"].as_f64().unwrap();
        assert!(
            growth > 1.5 * 1048576.0 && growth <= 2.5 * 1048576.0,
            "{site}"
        );
        assert!(
            site["growth_bytes_per_hour"].is_null(),
            "a run of ~1 s has no rate: {site}"
        );
        assert!(g["span_seconds"].as_f64().unwrap() < 600.0);
        seen.push((pid, kind));
    }
    let mut want: Vec<(u32, String)> = Vec::new();
    for &pid in &runs {
        want.push((pid, "heap".into()));
        want.push((pid, "mmap".into()));
    }
    want.sort();
    assert_eq!(seen, want, "{}", out.report());

    // The text form: a heading per series, the span instead of a rate.
    let text = Run::new(analyzer())
        .args(&args[0..1])
        .args(&args[2..])
        .run();
    text.expect_success();
    assert_eq!(
        text.stdout.matches("\n== pid ").count() + 1,
        4,
        "{}",
        text.report()
    );
    assert!(text.stdout.contains(" over "), "{}", text.report());
    assert!(!text.stdout.contains("/hour"), "{}", text.report());
}
