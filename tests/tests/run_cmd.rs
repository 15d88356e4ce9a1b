//! `jeprof-rs run -- CMD`: the report goes to stdout while the command's own stdout and stderr
//! pass through untouched; the exit status is the command's; a command that left no dump gets
//! the reason (killed by a signal, statically linked, or a neutral line); a command that cannot
//! run is refused like a shell refuses it, before anything is created.

use std::path::{Path, PathBuf};

use jeprof_tests::*;

/// `jeprof-rs run --out <dir>/out ARGS -- CMD...`, run in `dir`.
fn run(dir: &TempDir, args: &[&str], cmd: &[&str]) -> Outcome {
    let out_dir = dir.path().join("out");
    let mut all = vec![
        "run".to_string(),
        "--preload".to_string(),
        preload().display().to_string(),
        "--out".to_string(),
        out_dir.display().to_string(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    all.push("--".to_string());
    all.extend(cmd.iter().map(|s| s.to_string()));
    Run::new(analyzer()).args(&all).cwd(dir.path()).run()
}

fn program(dir: &TempDir, extra: &[&str]) -> String {
    compile_c("run_end", dir.path(), extra)
        .display()
        .to_string()
}

#[test]
fn report_on_stdout_program_output_untouched_exit_code_kept() {
    let dir = TempDir::new("run-exit");
    let bin = program(&dir, &[]);
    let out = run(&dir, &["--exact"], &[&bin, "exit", "3"]);
    out.expect_code(3);
    // The program's stderr is its own; our report is on stdout, after the program's line.
    assert!(out.stderr.starts_with("err-line\n"), "{}", out.report());
    assert!(!out.stderr.contains("in use at exit"), "{}", out.report());
    assert!(out.stdout.starts_with("out-line\n"), "{}", out.report());
    assert!(
        out.stdout.contains("exited with status 3"),
        "{}",
        out.report()
    );
    assert!(
        out.stdout.contains("heap in use at exit"),
        "{}",
        out.report()
    );
    // Exact mode prints human units like sampled mode: 3 x 40000 B = 117.2 KiB.
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains("run_leak"))
        .unwrap_or_else(|| panic!("no run_leak row\n{}", out.report()));
    assert!(row.trim_start().starts_with("117.2 KiB"), "{row}");
    assert!(
        out.stdout.contains("Total inuse_space: 1"),
        "{}",
        out.report()
    );
    assert!(
        !out.stdout.contains("120000"),
        "no raw bytes: {}",
        out.report()
    );
}

#[test]
fn killed_by_a_signal_says_so() {
    let dir = TempDir::new("run-kill");
    let bin = program(&dir, &[]);
    let out = run(&dir, &[], &[&bin, "kill"]);
    out.expect_code(128 + 9);
    assert!(
        out.stdout.contains(&format!(
            "jeprof-rs: {bin} was killed by SIGKILL before it could write its final dump; use \
             --interval SECS for long-running programs\n"
        )),
        "{}",
        out.report()
    );
    assert!(!out.stdout.contains("statically"), "{}", out.report());
}

#[test]
fn a_static_executable_is_named_as_such() {
    if !Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists() {
        return skip(
            "a_static_executable_is_named_as_such",
            "no libc.a (libc6-dev)",
        );
    }
    let dir = TempDir::new("run-static");
    let bin = program(&dir, &["-static"]);
    let out = run(&dir, &[], &[&bin, "exit", "4"]);
    out.expect_code(4);
    assert!(
        out.stdout.contains(&format!(
            "jeprof-rs: {bin} is statically linked: LD_PRELOAD cannot load into it"
        )),
        "{}",
        out.report()
    );
}

/// `_exit` skips the library destructors, but the preload interposes it: the final dump is
/// written, in exact mode with exactly the 3 x 40000 B the program kept.
#[test]
fn underscore_exit_writes_the_final_dump() {
    let dir = TempDir::new("run-_exit");
    let bin = program(&dir, &[]);
    let out = run(&dir, &["--exact"], &[&bin, "_exit"]);
    out.expect_code(0);
    assert!(
        !out.stdout.contains("jeprof-rs: no dump from pid"),
        "{}",
        out.report()
    );
    let finals: Vec<DumpFile> = dumps_in(&dir.path().join("out"), "jeprof")
        .into_iter()
        .filter(|d| d.tag == "f" && !d.mmap)
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}\n{}", out.report());
    let t = top(&finals[0].path, &[]);
    assert_eq!(t.flat("run_leak"), (120000, 3), "{}", t.render());
}

/// No final dump for another reason (here `prof_final:false`): a neutral line, not a guess
/// about signals or static binaries.
#[test]
fn no_final_dump_otherwise_is_a_neutral_line() {
    let dir = TempDir::new("run-nofinal");
    let bin = program(&dir, &[]);
    let out = run(&dir, &["--conf", "prof_final:false"], &[&bin]);
    out.expect_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("jeprof-rs: no dump from pid"))
        .unwrap_or_else(|| panic!("{}", out.report()));
    assert!(
        !line.contains("statically") && !line.contains("killed"),
        "{line}"
    );
}

#[test]
fn a_command_that_cannot_run_leaves_nothing_behind() {
    let dir = TempDir::new("run-missing");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a program\n").unwrap();
    let cases: [(&str, i32, String); 3] = [
        (
            "/nonexistent",
            127,
            "jeprof-rs: /nonexistent: no such file\n".into(),
        ),
        (
            "no-such-command-jeprof",
            127,
            "jeprof-rs: no-such-command-jeprof: command not found\n".into(),
        ),
        (
            text.to_str().unwrap(),
            126,
            format!(
                "jeprof-rs: {}: permission denied (not executable)\n",
                text.display()
            ),
        ),
    ];
    for (cmd, code, want) in cases {
        // Without --out: the default directory would be created in the current one.
        let out = Run::new(analyzer())
            .args(&[
                "run",
                "--preload",
                &preload().display().to_string(),
                "--",
                cmd,
            ])
            .cwd(dir.path())
            .run();
        out.expect_code(code);
        assert_eq!(out.stderr, want, "{}", out.report());
        assert!(out.stdout.is_empty(), "{}", out.report());
        let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p != &text)
            .collect();
        assert!(left.is_empty(), "{cmd}: left {left:?}");
    }
}

#[test]
fn killed_after_interval_dumps_reports_the_last_one_as_such() {
    let dir = TempDir::new("run-kill-interval");
    let out = run(
        &dir,
        &["--interval", "1"],
        &["sh", "-c", "sleep 2.5; kill -9 $$"],
    );
    out.expect_code(128 + 9);
    assert!(
        out.stdout.contains(
            "jeprof-rs: sh was killed by SIGKILL: its last dump below is not a final one\n"
        ),
        "{}",
        out.report()
    );
    assert!(
        out.stdout.contains("\nheap in use at its last dump ("),
        "{}",
        out.report()
    );
    assert!(!out.stdout.contains("in use at exit"), "{}", out.report());
}
