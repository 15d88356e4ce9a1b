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

/// Detach and start again, ten times 20 ms apart, while 8 threads allocate, free and keep: no
/// crash, no hang, every dump whole (the detach dumps and the final one), no freed block in
/// any of them, and only kept blocks, each once. `Agent_OnAttach` answers 202 while detached.
/// (A detach still being served when the next `start` comes is followed by that start at
/// once, and a detach asked for and not served yet is cancelled by it: on two busy cores
/// some of the ten detaches, and their dumps, are merged that way.)
#[test]
fn detach_and_start_during_an_allocation_storm() {
    let dir = TempDir::new("detach-storm");
    let bin = compile_c("attach_storm", dir.path(), &["-ldl"]);
    for round in 0..4 {
        let out_dir = dir.path().join(format!("round{round}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let options = format!("prof_prefix:{}/jeprof,lg_prof_sample:0", out_dir.display());
        let out = Run::new(&bin)
            .args(&[&preload().display().to_string(), &options, "cycles"])
            .run();
        out.expect_success();
        assert!(
            out.stdout.contains("attach=0 again=202"),
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
        // Up to five detaches with a dump, and the exit's.
        assert!(
            (2..=6).contains(&finals.len()),
            "round {round}: {finals:?}\n{}",
            out.report()
        );
        for (i, f) in finals.iter().enumerate() {
            read_heap(&f.path); // whole and parsable
            let t = top(&f.path, &[]);
            // A detach dump is written while the threads run: each may hold one churn block
            // between its malloc and its free. At exit they have all been joined.
            let in_flight = if i + 1 == finals.len() { 0 } else { 8 };
            assert!(
                t.flat("churn_site").1 <= in_flight,
                "round {round}, dump {i}: {}",
                t.render()
            );
            let (bytes, objs) = t.flat("keep_site");
            assert!(
                objs <= kept && bytes == 100 * objs,
                "round {round}: keep_site {bytes} B in {objs} of {kept} kept\n{}",
                t.render()
            );
        }
        let detached = out.stderr.matches("detached: recording stopped").count();
        assert!(
            (1..=10).contains(&detached),
            "round {round}: {}",
            out.report()
        );
    }
}
