//! `jeprof-rs start` / `stop`: a process that runs the preload dormant (`prof_active:false`)
//! is switched on and off without a restart, and exact mode then records exactly what was
//! allocated while sampling was on. `jeprof-rs detach` (then `start` again) on a preloaded
//! program. Refusals are `dump`'s (tools_safety.rs).

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

/// `jeprof-rs detach --dump` on a preloaded program (exact mode), then `start`: the detach
/// dump holds exactly what was live at the detach; frees and unmaps of blocks recorded before
/// it go through after it (no crash, nothing left behind); a `dump` while detached writes
/// nothing; nothing allocated or mapped while detached is ever recorded; `start` profiles
/// again from an empty table, and the final dump holds exactly what came after it.
#[test]
fn detach_then_start_a_preloaded_process() {
    let dir = TempDir::new("detach");
    let bin = compile_c("detach", dir.path(), &[]);
    let sync = dir.path().join("sync");
    std::fs::create_dir_all(&sync).unwrap();
    let child = Command::new(&bin)
        .arg(&sync)
        .env("LD_PRELOAD", preload())
        .env("JEPROF_CONF", exact_conf(&dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let heaps = || -> Vec<DumpFile> { dumps_in(dir.path(), "jeprof") };

    wait_for(&sync.join("a.done"));
    let det = jeprof(&["detach", "--dump", &pid]);
    det.expect_success();
    assert!(
        det.stdout
            .contains("detaching at its next allocation, after a final dump")
            && det.stdout.contains(&format!("`jeprof-rs start {pid}`")),
        "{}",
        det.report()
    );
    std::fs::write(sync.join("b.go"), "").unwrap();
    wait_for(&sync.join("b.done"));
    let at_detach = heaps();
    assert_eq!(
        at_detach.len(),
        2,
        "the detach dump and its mmap sibling: {at_detach:?}"
    );
    assert!(at_detach.iter().all(|d| d.tag == "f"), "{at_detach:?}");
    let t = top(&at_detach[0].path, &[]);
    assert_eq!(t.flat("phase_a"), (20000, 20), "{}", t.render());
    assert_eq!(t.flat("hold_site"), (40000, 20), "{}", t.render());
    for absent in ["phase_b", "phase_b2", "phase_c", "churn_site"] {
        assert_eq!(t.flat(absent), (0, 0), "{absent}\n{}", t.render());
    }
    let m = top(&at_detach[1].path, &[]);
    assert_eq!(m.cum("map_a").0, 1 << 20, "{}", m.render());
    assert_eq!(m.cum("map_gone").0, 1 << 20, "{}", m.render());

    // Detached: a dump request is served (the signal is caught) but writes nothing.
    jeprof(&["dump", &pid]).expect_success();
    std::fs::write(sync.join("c.go"), "").unwrap();
    wait_for(&sync.join("c.done"));
    assert_eq!(heaps(), at_detach, "a detached process wrote a dump");

    let on = jeprof(&["start", &pid]);
    on.expect_success();
    std::fs::write(sync.join("d.go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    assert_eq!(stdout, "kept 80 churned 40000\n");
    assert!(
        stderr.contains("<jeprof>: detached: recording stopped, ")
            && stderr.contains("the hooks only forward now"),
        "{stderr}"
    );
    let finals: Vec<DumpFile> = heaps()
        .into_iter()
        .filter(|d| !at_detach.contains(d))
        .collect();
    assert_eq!(
        finals.len(),
        2,
        "the final dump after the restart: {finals:?}"
    );
    assert_eq!(finals[0].tag, "f");
    let t = top(&finals[0].path, &[]);
    assert_eq!(t.flat("phase_c"), (20000, 20), "{}", t.render());
    for absent in ["phase_a", "hold_site", "phase_b", "phase_b2", "churn_site"] {
        assert_eq!(t.flat(absent), (0, 0), "{absent}\n{}", t.render());
    }
    let m = top(&finals[1].path, &[]);
    assert_eq!(m.cum("map_c").0, 1 << 20, "{}", m.render());
    for absent in ["map_a", "map_gone", "map_b"] {
        assert_eq!(m.cum(absent).0, 0, "{absent}\n{}", m.render());
    }
}

#[test]
fn detach_refuses_a_process_without_the_preload() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    std::thread::sleep(Duration::from_millis(50)); // exec'd
    let out = jeprof(&["detach", "--dump", &pid]);
    assert_eq!(out.code(), Some(1), "{}", out.report());
    assert_eq!(
        out.stderr_lines(),
        [format!(
            "jeprof-rs: pid {pid} (sleep) does not have libjeprof_preload.so loaded (start it \
             with `jeprof-rs run` or LD_PRELOAD); nothing sent"
        )],
        "{}",
        out.report()
    );
    assert!(out.stdout.is_empty(), "{}", out.report());
    std::thread::sleep(Duration::from_millis(100));
    assert!(sleeper.try_wait().unwrap().is_none(), "sleep died");
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}
