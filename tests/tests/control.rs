//! `jeprof-rs start` / `stop`: a process that runs the preload dormant (`prof_active:false`)
//! is switched on and off without a restart, and exact mode then records exactly what was
//! allocated while sampling was on. Refusals are `dump`'s (tools_safety.rs).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jeprof_tests::*;

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn jeprof(args: &[&str]) -> Outcome {
    Run::new(analyzer()).args(args).run()
}

#[test]
fn start_and_stop_a_dormant_process() {
    let dir = TempDir::new("control");
    let bin = compile_c("control", dir.path(), &[]);
    let sync = dir.path().join("sync");
    std::fs::create_dir_all(&sync).unwrap();
    let conf = format!("{},prof_active:false", exact_conf(&dir));
    let mut child = Command::new(&bin)
        .arg(&sync)
        .env("LD_PRELOAD", preload())
        .env("JEPROF_CONF", &conf)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // Phase a ran dormant; switch on for phase b, off again for phase c.
    wait_for(&sync.join("a.done"));
    let on = jeprof(&["start", &pid]);
    on.expect_success();
    assert!(on.stdout.contains("sampling is on"), "{}", on.report());
    std::fs::write(sync.join("b.go"), "").unwrap();
    wait_for(&sync.join("b.done"));
    let off = jeprof(&["stop", &pid]);
    off.expect_success();
    assert!(off.stdout.contains("sampling is off"), "{}", off.report());
    std::fs::write(sync.join("c.go"), "").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let finals: Vec<DumpFile> = dumps_in(dir.path(), "jeprof")
        .into_iter()
        .filter(|d| d.tag == "f" && !d.mmap)
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    let t = top(&finals[0].path, &[]);
    assert_eq!(t.flat("phase_a"), (0, 0), "{}", t.render());
    assert_eq!(t.flat("phase_b"), (20000, 20), "{}", t.render());
    assert_eq!(t.flat("phase_c"), (0, 0), "{}", t.render());
    let text = std::fs::read_to_string(&finals[0].path).unwrap();
    assert!(
        text.contains("\n# sampling_since: "),
        "no sampling_since line"
    );
    assert!(
        text.contains("\n# sampling: off\n"),
        "no 'sampling: off' line"
    );
    // `top` says what the dump covers.
    let shown = Run::new(analyzer())
        .arg("top")
        .arg(finals[0].path.display().to_string())
        .run();
    shown.expect_success();
    assert!(
        shown
            .stdout
            .contains("Covers allocations since sampling started")
            && shown.stdout.contains("Sampling was off at this dump"),
        "{}",
        shown.report()
    );
}

#[test]
fn start_refuses_a_process_without_the_preload() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let out = jeprof(&["start", &pid]);
    assert_ne!(out.status.code(), Some(0), "{}", out.report());
    assert!(
        out.stderr
            .contains("does not have libjeprof_preload.so loaded"),
        "{}",
        out.report()
    );
    // Still running: nothing was sent.
    assert!(sleeper.try_wait().unwrap().is_none());
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}
