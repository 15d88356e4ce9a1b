//! A binary rebuilt after its dump was written: the dump records each object's GNU build id
//! (`# build_id <path>: <hex>`), and the analyzer warns instead of naming frames from the new
//! file (whose addresses mean other functions now).

use jeprof_tests::*;

#[test]
fn rebuilt_binary_is_not_symbolized_with_wrong_names() {
    let dir = TempDir::new("rebuilt");
    let bin = compile_c("exact", dir.path(), &[]);
    let out = Run::new(&bin)
        .profiled(&format!("prof_prefix:{},lg_prof_sample:0", dir.prefix()))
        .run();
    out.expect_success();
    let dump = final_dump(&dir, out.pid);
    let text = std::fs::read_to_string(&dump).unwrap();
    let line = format!("# build_id {}: ", bin.display());
    assert!(
        text.contains(&line),
        "the dump records the program's build id:\n{}",
        &text[..text.len().min(2000)]
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("# build_id /") && l.contains("libc.so")),
        "and libc's"
    );
    let before = top(&dump, &[]);
    assert!(
        before.rows.iter().any(|r| r.name.starts_with("leak_")),
        "{}",
        before.command
    );

    // Same path, different code: a new build id.
    compile_c_as("exact", &bin, &["-DJEPROF_TEST_REBUILT=1", "-O1"]);
    let run = Run::new(analyzer())
        .args(&["top", &dump.display().to_string(), "--json", "-n", "1000"])
        .run();
    run.expect_success();
    assert!(
        run.stderr.contains("build id differs"),
        "a warning names the mismatch\n{}",
        run.report()
    );
    assert!(
        !run.stdout.contains("\"leak_"),
        "no names from the rebuilt file\n{}",
        run.stdout
    );
}
