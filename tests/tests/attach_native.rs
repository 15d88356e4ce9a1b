//! The attach path without a JVM: a C program loads the profiler with `dlopen` and calls its
//! `Agent_OnAttach`, as HotSpot's `load` does, while 8 threads allocate and free. Repeated:
//! no crash, no hang, every dump whole, and no freed block left in the profile (the churn
//! site, which frees everything it allocates, holds nothing: import slots of frees are
//! patched before those of allocations).

use jeprof_tests::*;

#[test]
fn attach_during_an_allocation_storm() {
    let dir = TempDir::new("attach-storm");
    let bin = compile_c("attach_storm", dir.path(), &["-ldl"]);
    for round in 0..8 {
        let out_dir = dir.path().join(format!("round{round}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let options = format!("prof_prefix:{}/jeprof,lg_prof_sample:0", out_dir.display());
        let out = Run::new(&bin)
            .args(&[&preload().display().to_string(), &options])
            .run();
        out.expect_success();
        assert!(
            out.stdout.contains("attach=0 again=200"),
            "round {round}: {}",
            out.report()
        );
        let kept: i64 = out
            .stdout
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let finals: Vec<DumpFile> = dumps_in(&out_dir, "jeprof")
            .into_iter()
            .filter(|d| d.tag == "f" && !d.mmap)
            .collect();
        assert_eq!(finals.len(), 1, "round {round}: {finals:?}");
        read_heap(&finals[0].path); // whole and parsable
        let t = top(&finals[0].path, &[]);
        assert_eq!(
            t.flat("churn_site"),
            (0, 0),
            "round {round}: {}",
            t.render()
        );
        let (bytes, objs) = t.flat("keep_site");
        assert!(
            objs > 0 && objs <= kept && bytes == 100 * objs,
            "round {round}: keep_site {bytes} B in {objs} of {kept} kept\n{}",
            t.render()
        );
    }
}
