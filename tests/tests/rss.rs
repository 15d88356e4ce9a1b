//! "Is it a leak, or is it glibc?": `c/retain.c` keeps every tenth of 200,000 blocks of 1000
//! bytes (20 MB in use, about 180 MB freed that glibc keeps) next to a real leak of 24 MB from
//! `leak_records`. Its final dump's `rss` rows add up to the RSS the dump recorded, the memory
//! glibc retains is told apart from what is in use (exactly, in exact mode), and the report says
//! how to give it back; `jeprof-rs trim` makes a running copy give it back, and refuses a process
//! without our handler (a signal 42 would kill it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jeprof_tests::*;

const KEPT: i64 = 20_000 * 1000;
const LEAK: i64 = 1000 * 24_000;
const MIB: i64 = 1 << 20;

#[test]
fn retention_is_told_apart_from_the_leak() {
    let dir = TempDir::new("rss");
    let bin = compile_c("retain", dir.path(), &[]);
    let out = Run::new(&bin).profiled(&exact_conf(&dir)).run();
    out.expect_success().expect_quiet();
    assert_eq!(out.value("kept_bytes"), KEPT.to_string());
    assert_eq!(out.value("leak_bytes"), LEAK.to_string());
    let dump = final_dump(&dir, out.pid);
    let r = rss(&dump);
    let recorded: i64 = dump_meta(&dump, "rss_bytes")
        .and_then(|v| v.parse().ok())
        .expect("rss_bytes in the dump");
    assert_eq!(r.rss_bytes, recorded, "{}", r.render());
    // The rows add up to the RSS; what no row explains is within 5% of it.
    r.expect_adds_up();
    // The program's own malloc'd bytes are the leak plus the kept tenth, to the byte.
    assert_eq!(
        r.row("malloc_in_use", "retain"),
        KEPT + LEAK,
        "{}",
        r.render()
    );
    // glibc keeps most of the 180 MB that was freed: far more than is in use, told apart.
    let retained = r.sum("malloc_free_retained");
    assert!(retained > 120 * MIB, "{}", r.render());
    assert!(retained > 2 * r.sum("malloc_in_use"), "{}", r.render());
    // Chunk headers and rounding: a 1000-byte request takes a 1008-byte chunk, a 24,000-byte
    // one 24,016 bytes; plus a few blocks glibc counts that the profile does not (allocated
    // before the profiler started).
    let overhead = r.sum("malloc_overhead");
    let headers = 20_000 * 8 + 1000 * 16;
    assert!(
        (headers..=headers + 64 * 1024).contains(&overhead),
        "{}",
        r.render()
    );
    assert!(
        r.sum("thread_stacks") > 0,
        "the main thread's [stack]\n{}",
        r.render()
    );
    assert!(r.sum("file_mapped") > 0, "{}", r.render());
    assert!(
        r.hints.iter().any(|h| h.contains("malloc_trim(0)")
            && h.contains("MALLOC_ARENA_MAX=2")
            && h.contains("64 MiB")),
        "{:?}",
        r.hints
    );

    // The text report prints the same rows and the hint.
    let text = Run::new(analyzer())
        .args(&["rss", &dump.to_string_lossy()])
        .run();
    text.expect_success();
    assert!(
        text.stdout.contains("malloc_free_retained"),
        "{}",
        text.report()
    );
    assert!(text.stdout.contains("malloc_trim(0)"), "{}", text.report());

    // top's first screen: one line per leading site, allocating function <- its caller, then
    // the RSS in a few lines.
    let top = Run::new(analyzer())
        .args(&["top", "--bytes", &dump.to_string_lossy()])
        .run();
    top.expect_success();
    let lines: Vec<String> = top
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "Leading sites (in use):", "{}", top.report());
    assert_eq!(
        lines[1],
        format!("{LEAK} 1000 obj 54.5% leak_records [retain] <- main"),
        "{}",
        top.report()
    );
    assert_eq!(
        lines[2],
        format!("{KEPT} 20000 obj 45.5% small_block [retain] <- keep_tenth"),
        "{}",
        top.report()
    );
    assert!(
        top.stdout
            .contains("kept by the allocator (free, overhead)"),
        "{}",
        top.report()
    );
}

#[test]
fn mappings_show_resident_next_to_mapped() {
    let dir = TempDir::new("resident");
    let bin = compile_c("resident", dir.path(), &[]);
    let out = Run::new(&bin)
        .profiled(&format!("prof_prefix:{}", dir.prefix()))
        .run();
    out.expect_success().expect_quiet();
    let mmap = final_mmap_dump(&dir, out.pid);
    // The mapping table: mapped bytes, then resident bytes (flat, cum), exactly.
    let top = Run::new(analyzer())
        .args(&["top", "--bytes", &mmap.to_string_lossy()])
        .run();
    top.expect_success();
    let row = |name: &str| -> Vec<String> {
        top.stdout
            .lines()
            .find(|l| l.contains(&format!("  {name}  [resident]")))
            .unwrap_or_else(|| panic!("no {name} row\n{}", top.report()))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let header: Vec<&str> = top
        .stdout
        .lines()
        .find(|l| l.contains("flat%"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "flat", "flat%", "sum%", "cum", "cum%", "resident", "cum", "res", "function"
        ],
        "{}",
        top.report()
    );
    let touched = row("touch_some");
    assert_eq!(
        (touched[0].as_str(), touched[5].as_str()),
        ("8388608", "3145728"),
        "{}",
        top.report()
    );
    let reserved = row("reserve_only");
    assert_eq!(
        (reserved[0].as_str(), reserved[5].as_str()),
        ("4194304", "0"),
        "{}",
        top.report()
    );

    // The RSS rows: the touched part under the function that mapped it, nothing for the
    // untouched mapping, and the three waiting threads' stacks.
    let r = rss(&final_dump(&dir, out.pid));
    assert_eq!(
        r.row("anon_mapped", "touch_some [resident]"),
        3 * MIB,
        "{}",
        r.render()
    );
    assert_eq!(
        r.row("anon_mapped", "reserve_only [resident]"),
        0,
        "{}",
        r.render()
    );
    let stacks = r.row("thread_stacks", "3 thread stacks (below a guard page)");
    assert!(
        (3 * 64 * 1024..=3 * 256 * 1024).contains(&stacks),
        "{}",
        r.render()
    );
    assert!(r.hints.is_empty(), "nothing worth trimming: {:?}", r.hints);
}

/// Starts `retain 30` (it naps with a tiny allocation every 50 ms) and waits for its
/// "sleeping" line.
fn start_sleeping(dir: &TempDir, conf: Option<&str>) -> Child {
    let bin = compile_c("retain", dir.path(), &[]);
    let mut cmd = Command::new(&bin);
    cmd.arg("30")
        .env_remove("LD_PRELOAD")
        .env_remove("JEPROF_CONF")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(conf) = conf {
        cmd.env("LD_PRELOAD", preload()).env("JEPROF_CONF", conf);
    }
    let mut child = cmd.spawn().expect("start retain");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while stdout.read_line(&mut line).expect("read") > 0 && !line.contains("sleeping") {}
    assert!(line.contains("sleeping"), "retain did not start: {line:?}");
    child
}

fn vm_rss(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .expect("VmRSS")
        * 1024
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn trim_gives_retained_memory_back() {
    let dir = TempDir::new("trim");
    let child = start_sleeping(&dir, Some(&format!("prof_prefix:{}", dir.prefix())));
    let pid = child.id();
    let before = vm_rss(pid);
    let out = Run::new(analyzer())
        .args(&["trim", &pid.to_string()])
        .timeout(Duration::from_secs(30))
        .run();
    let after = vm_rss(pid);
    stop(child);
    out.expect_success();
    assert!(before > 150 * MIB, "before {before}");
    // malloc_trim(0) returns the whole pages inside the freed runs: most of the 180 MB.
    assert!(
        after < before - 50 * MIB,
        "RSS {before} -> {after}\n{}",
        out.report()
    );
    assert!(out.stdout.contains("RSS before "), "{}", out.report());
}

#[test]
fn trim_refuses_without_our_handler() {
    let dir = TempDir::new("trim-refuse");
    // Not profiled: signal 42 would end it.
    let mut plain = start_sleeping(&dir, None);
    let out = Run::new(analyzer())
        .args(&["trim", &plain.id().to_string()])
        .run();
    out.expect_code(1);
    assert!(out.stdout.is_empty(), "{}", out.report());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.report());
    assert!(
        out.stderr
            .contains("does not have libjeprof_preload.so loaded"),
        "{}",
        out.report()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        plain.try_wait().unwrap().is_none(),
        "the process must live on"
    );
    stop(plain);

    // Profiled, but with the trim signal turned off: no handler, so nothing is sent either.
    let mut off = start_sleeping(
        &dir,
        Some(&format!("prof_prefix:{},prof_trim_signal:0", dir.prefix())),
    );
    let out = Run::new(analyzer())
        .args(&["trim", &off.id().to_string()])
        .run();
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("does not catch signal 42 (prof_trim_signal"),
        "{}",
        out.report()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        off.try_wait().unwrap().is_none(),
        "the process must live on"
    );
    stop(off);
}
