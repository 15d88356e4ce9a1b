//! Java frames with no JVM flags (issue: "Java frames with no JVM flags"): the preload crosses
//! compiled Java code without frame pointers and names interpreted, compiled and inlined frames
//! from HotSpot's own metadata (`preload/src/hotspot.rs`), written into the dump as
//! `# java_method` lines, so the analyzer needs neither the JVM nor a perf map.
//!
//! `tests/java/frames/JavaFrames.java` leaks through JNI (`tests/c/jframes.c`) from a hot
//! method (compiled by C1 and C2, and inlined into `main`'s on-stack-replaced loop, between
//! interpreted calls at start-up and after `main` is deoptimized at the loop's end) and from a
//! cold one (three interpreted calls). In exact mode, on JDK 17 and 25, with the JVM started
//! with no options at all, and again attached to a running JVM:
//! - every leaked byte lies under the right Java method, to the byte: 1024 × 4099 under
//!   `JavaFrames.hotLeak`, 3 × 100003 under `JavaFrames.coldLeak`;
//! - each leak is one stack from `main` down (compiled, inlined and interpreted frames of one
//!   method are one frame), so the flame graph draws each as one tower;
//! - no perf map exists, and none is needed;
//! - the same with the interpreter only, C2 only, C1 only, one code heap, frame pointers kept.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use jeprof_tests::*;

const HOT: i64 = 4099;
const HOT_LEAKS: i64 = 1024;
const CALLS: &str = "262144"; // hotLeak calls; every 256th leaks
const COLD: i64 = 100003;
const COLD_LEAKS: i64 = 3;

/// JavaFrames.class and libjframes.so, built once.
fn assets(test: &str) -> Option<&'static Path> {
    static BUILT: OnceLock<Option<TempDir>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let javac = PathBuf::from(JDK17_HOME).join("bin/javac");
        let include = PathBuf::from(JDK17_HOME).join("include");
        if !javac.is_file() || !include.join("jni.h").is_file() {
            return None;
        }
        let dir = TempDir::new("java-frames-assets");
        Run::new(&javac)
            .args(&["--release", "17", "-d", &dir.path().display().to_string()])
            .arg(
                java_dir()
                    .join("frames/JavaFrames.java")
                    .display()
                    .to_string(),
            )
            .timeout(Duration::from_secs(120))
            .run()
            .expect_success();
        Run::new("gcc")
            .args(&["-O2", "-g", "-shared", "-fPIC", "-Wall"])
            .arg(format!("-I{}", include.display()))
            .arg(format!("-I{}", include.join("linux").display()))
            .arg("-o")
            .arg(dir.path().join("libjframes.so").display().to_string())
            .arg(c_dir().join("jframes.c").display().to_string())
            .run()
            .expect_success();
        Some(dir)
    });
    if built.is_none() {
        skip(test, "JDK 17 with javac and jni.h not installed");
    }
    built.as_ref().map(|d| d.path())
}

/// `jeprof-rs collapsed DUMP [EXTRA]`: (stack, bytes) of the stacks that reach `leak_block`.
fn leak_stacks(dump: &Path, extra: &[&str]) -> Vec<(String, i64)> {
    let out = Run::new(analyzer())
        .arg("collapsed")
        .args(extra)
        .arg(dump.display().to_string())
        .run();
    out.expect_success();
    out.stdout
        .lines()
        .filter_map(|l| {
            let (stack, n) = l.rsplit_once(' ')?;
            stack
                .ends_with(";leak_block")
                .then(|| (stack.to_string(), n.parse().unwrap()))
        })
        .collect()
}

/// The checks of the module comment on a final dump (`extra`: more analyzer options).
fn check_dump(dump: &Path, label: &str, extra: &[&str]) {
    let stacks = leak_stacks(dump, extra);
    let shown = || {
        stacks
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let under = |method: &str| -> Vec<&(String, i64)> {
        stacks
            .iter()
            .filter(|(s, _)| s.contains(&format!(";{method};JavaFrames.leak;")))
            .collect()
    };
    let (hot, cold) = (under("JavaFrames.hotLeak"), under("JavaFrames.coldLeak"));
    let sum = |v: &[&(String, i64)]| v.iter().map(|(_, n)| n).sum::<i64>();
    assert_eq!(sum(&hot), HOT_LEAKS * HOT, "{label}: hot leak\n{}", shown());
    assert_eq!(
        sum(&cold),
        COLD_LEAKS * COLD,
        "{label}: cold leak\n{}",
        shown()
    );
    // All leaked bytes carry their method: nothing reaches leak_block another way.
    let all: i64 = stacks.iter().map(|(_, n)| n).sum();
    assert_eq!(
        all,
        HOT_LEAKS * HOT + COLD_LEAKS * COLD,
        "{label}\n{}",
        shown()
    );
    // One tower each: compiled, inlined and interpreted frames of a method are one frame.
    assert_eq!(hot.len(), 1, "{label}: hot leak split\n{}", shown());
    assert_eq!(cold.len(), 1, "{label}: cold leak split\n{}", shown());
    assert!(
        hot[0].0.contains(";JavaFrames.main;JavaFrames.hotLeak;"),
        "{label}: {}",
        hot[0].0
    );
    // The names come from the dump itself.
    let text = std::fs::read_to_string(dump).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("# java_method 0x") && l.ends_with(" JavaFrames.hotLeak")),
        "{label}: no java_method line"
    );
    // The flame graph: one frame box for each leaking method.
    let svg = dump.with_extension("svg");
    Run::new(analyzer())
        .args(&["flame", "-o", &svg.display().to_string()])
        .args(extra)
        .arg(dump.display().to_string())
        .run()
        .expect_success();
    let svg = std::fs::read_to_string(&svg).unwrap();
    for method in ["JavaFrames.hotLeak", "JavaFrames.coldLeak"] {
        assert_eq!(
            svg.matches(&format!("<title>{method} (")).count(),
            1,
            "{label}: {method} boxes in the flame graph"
        );
    }
}

fn preloaded(java: &Path, test: &str, vm_args: &[&str]) {
    let Some(assets) = assets(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let out = Run::new(java)
        .args(vm_args)
        .arg(format!("-Djava.library.path={}", assets.display()))
        .args(&["-cp", &assets.display().to_string(), "JavaFrames", CALLS])
        .profiled(&format!("prof_prefix:{},lg_prof_sample:0", dir.prefix()))
        .timeout(Duration::from_secs(120))
        .run();
    out.expect_success();
    assert_eq!(out.stdout, "hot 1024 cold 3 true\n", "{}", out.report());
    assert!(
        !Path::new(&format!("/tmp/perf-{}.map", out.pid)).exists(),
        "a perf map was written"
    );
    check_dump(
        &final_dump(&dir, out.pid),
        &format!("{test} {vm_args:?}"),
        &[],
    );
}

#[test]
fn java_frames_named_without_flags_jdk17() {
    if let Some(java) = jdk17("java_frames_named_without_flags_jdk17") {
        preloaded(&java, "java_frames_named_without_flags_jdk17", &[]);
    }
}

/// Other code cache and compiler settings give the same stacks: the interpreter only, C2 only,
/// C1 only, one code heap instead of three, frame pointers kept.
#[test]
fn java_frames_under_other_jit_settings() {
    let Some(java) = jdk17("java_frames_under_other_jit_settings") else {
        return;
    };
    for vm_args in [
        &["-Xint"][..],
        &["-XX:-TieredCompilation"],
        &["-XX:TieredStopAtLevel=1"],
        &["-XX:-SegmentedCodeCache", "-XX:+UseSerialGC"],
        &["-XX:+PreserveFramePointer"],
    ] {
        preloaded(&java, "java_frames_under_other_jit_settings", vm_args);
    }
}

#[test]
fn java_frames_named_without_flags_jdk21() {
    if let Some(java) = jdk21("java_frames_named_without_flags_jdk21") {
        preloaded(&java, "java_frames_named_without_flags_jdk21", &[]);
    }
}

#[test]
fn java_frames_named_without_flags_jdk25() {
    if let Some(java) = jdk25("java_frames_named_without_flags_jdk25") {
        preloaded(&java, "java_frames_named_without_flags_jdk25", &[]);
    }
}

/// The same leaks in a JVM started with no options and no preload, attached to before they
/// happen (`jeprof-rs attach --exact`).
fn attached(java: &Path, test: &str) {
    let Some(assets) = assets(test) else {
        return;
    };
    let dir = TempDir::new(test);
    let out_dir = dir.path().join("dumps");
    let mut child = Command::new(java)
        .arg(format!("-Djava.library.path={}", assets.display()))
        .args([
            "-cp",
            &assets.display().to_string(),
            "JavaFrames",
            CALLS,
            "wait",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id().to_string();
    let at = Run::new(analyzer())
        .args(&[
            "attach",
            "--exact",
            "--preload",
            &preload().display().to_string(),
            "--out",
            &out_dir.display().to_string(),
            &pid,
        ])
        .timeout(Duration::from_secs(60))
        .run();
    if at.code() != Some(0) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("attach failed\n{}", at.report());
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(rest, "hot 1024 cold 3 true\n");
    let dump = dumps_in(&out_dir, "jeprof")
        .into_iter()
        .find(|d| d.tag == "f" && !d.mmap)
        .expect("a final dump")
        .path;
    check_dump(&dump, test, &[]);
}

#[test]
fn java_frames_named_attached_jdk17() {
    if let Some(java) = jdk17("java_frames_named_attached_jdk17") {
        attached(&java, "java_frames_named_attached_jdk17");
    }
}

#[test]
fn java_frames_named_attached_jdk21() {
    if let Some(java) = jdk21("java_frames_named_attached_jdk21") {
        attached(&java, "java_frames_named_attached_jdk21");
    }
}

#[test]
fn java_frames_named_attached_jdk25() {
    if let Some(java) = jdk25("java_frames_named_attached_jdk25") {
        attached(&java, "java_frames_named_attached_jdk25");
    }
}

/// Builds a container for `cmd` (as root): new mount and pid namespaces, a tmpfs root with
/// the host's /usr, /etc and /dev bound in, a fresh /proc and /tmp, and the directory `M`
/// bound at /mnt; the preload and the test's directories are not in it.
const CONTAINER: &str = r#"set -e
R=$1; M=$2; shift 2
mount -t tmpfs tmpfs "$R"
mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/tmp" "$R/mnt" "$R/dev"
chmod 1777 "$R/tmp"
ln -s usr/bin "$R/bin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"
mount --rbind /usr "$R/usr"; mount --rbind /etc "$R/etc"; mount --rbind /dev "$R/dev"
mount --bind "$M" "$R/mnt"
mount -t proc proc "$R/proc"
exec chroot "$R" "$@"
"#;

/// `jeprof-rs attach` to a JVM in a container (another root directory, mount and pid
/// namespaces): the library is copied into the container's /tmp, the dumps go to a directory
/// inside it, and the Java frames come out as on the host. A dump directory that the container
/// made a symbolic link out of it is refused, and nothing is made where the link points. The
/// analyzer reads the container's JNI library under `--root`.
#[test]
fn attach_in_a_container() {
    let test = "attach_in_a_container";
    let (Some(java), Some(assets)) = (jdk17(test), assets(test)) else {
        return;
    };
    if jeprof_rs::attach::effective_ids().0 != 0 || !have_program("unshare") {
        skip(test, "needs root and unshare (util-linux)");
        return;
    }
    let dir = TempDir::new(test);
    let mnt = dir.path().join("mnt");
    let root = dir.path().join("root");
    std::fs::create_dir_all(mnt.join("dumps")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    for f in ["JavaFrames.class", "libjframes.so"] {
        std::fs::copy(assets.join(f), mnt.join(f)).unwrap();
    }
    let script = dir.path().join("container.sh");
    std::fs::write(&script, CONTAINER).unwrap();
    let java_in = java.canonicalize().unwrap();
    let start = || {
        Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--propagation",
                "private",
                "sh",
            ])
            .arg(&script)
            .arg(&root)
            .arg(&mnt)
            .arg(&java_in)
            .args([
                "-Djava.library.path=/mnt",
                "-cp",
                "/mnt",
                "JavaFrames",
                CALLS,
                "wait",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = start();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // The JVM: the process in the container that runs JavaFrames.
    let pid = jvm_below(child.id()).expect("the JVM's pid");
    let nspid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("NSpid:")
                .map(|v| v.split_whitespace().last().unwrap().to_string())
        })
        .unwrap();
    assert_ne!(nspid, pid.to_string(), "not in a pid namespace");

    // A dump directory the container made into a link to elsewhere: refused.
    let escape = dir.path().join("escape");
    std::os::unix::fs::symlink(
        &escape,
        format!("/proc/{pid}/root/tmp/jeprof-attach.{nspid}"),
    )
    .unwrap();
    let refused = Run::new(analyzer())
        .args(&[
            "attach",
            "--exact",
            "--preload",
            &preload().display().to_string(),
            &pid.to_string(),
        ])
        .timeout(Duration::from_secs(60))
        .run();
    assert_eq!(refused.code(), Some(1), "{}", refused.report());
    assert!(
        refused.stderr.contains("cannot create the dump directory"),
        "{}",
        refused.report()
    );
    assert!(!escape.exists(), "a directory was made through the link");

    let at = Run::new(analyzer())
        .args(&[
            "attach",
            "--exact",
            "--preload",
            &preload().display().to_string(),
            "--out",
            "/mnt/dumps",
            &pid.to_string(),
        ])
        .timeout(Duration::from_secs(60))
        .run();
    if at.code() != Some(0) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("attach failed\n{}", at.report());
    }
    assert!(
        at.stdout.contains(&format!("/proc/{pid}/root/mnt/dumps/")),
        "{}",
        at.report()
    );
    let copied: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root/tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".jeprof-"))
        .collect();
    assert_eq!(copied.len(), 1, "the library is copied into the container");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest, "hot 1024 cold 3 true\n");
    let dump = dumps_in(&mnt.join("dumps"), "jeprof")
        .into_iter()
        .find(|d| d.tag == "f" && !d.mmap)
        .expect("a final dump");
    // Named with the JVM's pid in its namespace.
    assert_eq!(dump.pid.to_string(), nspid);
    // The dump names the container's /mnt/libjframes.so: the analyzer reads it under --root
    // (an unpacked image, here a directory whose mnt is the one bound into the container).
    let image = dir.path().join("image");
    std::fs::create_dir(&image).unwrap();
    std::os::unix::fs::symlink(&mnt, image.join("mnt")).unwrap();
    check_dump(&dump.path, test, &["--root", &image.display().to_string()]);
}

/// The process below `pid` (unshare, then its forked child, then the JVM) running JavaFrames,
/// once it is there.
fn jvm_below(pid: u32) -> Option<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            if p != pid && cmdline.windows(10).any(|w| w == b"JavaFrames") && descends(p, pid) {
                return Some(p);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn descends(mut p: u32, from: u32) -> bool {
    for _ in 0..8 {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
        else {
            return false;
        };
        if ppid == from {
            return true;
        }
        p = ppid;
    }
    false
}
