//! Native leaks in a real JVM (issue: "Hunting native leaks in a JVM, end to end").
//!
//! Builds the demo's JNI library (`demo/jni/fakecv.c`, an OpenCV-`Mat`-like pixel buffer API)
//! and Java programs (`demo/java/demo/*.java`) with the machine's javac and gcc, then runs them
//! under the preload:
//! - safety: an allocation-heavy program (threads, direct buffers, JNI, zip streams) gives the
//!   same output with and without the profiler, many times, in sampled and exact mode;
//! - attribution: the forgotten `n_Mat` path ranks first with exact bytes in exact mode and
//!   within the sampling bound in sampled mode; the churn path that frees everything holds
//!   nothing; a no-leak control has no such site; `Unsafe_AllocateMemory0` (libjvm's
//!   `.symtab`) is named; `FileChannel.map` shows in the mmap space with its exact size;
//! - Java frames: `jeprof-rs run` adds no JVM options, and the Java methods above the JNI call
//!   are named all the same (from HotSpot's metadata, `preload/src/hotspot.rs`).
//!
//! Skipped with a printed reason when java, javac or the JDK headers are missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jeprof_tests::*;

const THUMB: i64 = 256 * 256 * 4;
const MAT_HEADER: i64 = 24; // sizeof(fake_mat) on x86-64
const MAPPED: i64 = 4 << 20;

struct Demo {
    _dir: TempDir,
    java: PathBuf,
    classes: PathBuf,
    libdir: PathBuf,
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Compiles the demo once per test; `None` (with a printed reason) when the JDK is missing.
fn build(test: &str) -> Option<Demo> {
    let (Some(java), Some(javac)) = (which("java"), which("javac")) else {
        skip(test, "java or javac not installed");
        return None;
    };
    let jdk = std::fs::canonicalize(&javac)
        .ok()?
        .parent()?
        .parent()?
        .to_path_buf();
    let include = jdk.join("include");
    if !include.join("jni.h").is_file() {
        skip(test, "JDK headers (jni.h) not found");
        return None;
    }
    let dir = TempDir::new(test);
    let classes = dir.path().join("classes");
    let root = workspace_root();
    let sources: Vec<String> = std::fs::read_dir(root.join("demo/java/demo"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".java"))
        .collect();
    Run::new(&javac)
        .args(&["-d", &classes.display().to_string()])
        .args(&sources)
        .timeout(Duration::from_secs(180))
        .run()
        .expect_success();
    let lib = dir.path().join("libfakecv.so");
    Run::new("gcc")
        .args(&["-O2", "-g", "-shared", "-fPIC"])
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I{}", include.join("linux").display()))
        .args(&["-o", &lib.display().to_string()])
        .arg(root.join("demo/jni/fakecv.c").display().to_string())
        .run()
        .expect_success();
    Some(Demo {
        libdir: dir.path().to_path_buf(),
        _dir: dir,
        java,
        classes,
    })
}

impl Demo {
    fn java(&self, main: &str, args: &[&str]) -> Run {
        Run::new(&self.java)
            .arg("-Xmx256m")
            .arg(format!("-Djava.library.path={}", self.libdir.display()))
            .args(&["-cp", &self.classes.display().to_string(), main])
            .args(args)
            .timeout(Duration::from_secs(240))
    }
}

impl Demo {
    /// Runs `main ARGS` under the preload with `JEPROF_CONF=prof_prefix:<dir>/jeprof<extra>`;
    /// it must succeed. Returns the dump directory and the run.
    fn profiled(
        &self,
        test: &str,
        main: &str,
        args: &[&str],
        extra_conf: &str,
    ) -> (TempDir, Outcome) {
        let dir = TempDir::new(test);
        let out = self
            .java(main, args)
            .profiled(&format!("prof_prefix:{}{extra_conf}", dir.prefix()))
            .run();
        out.expect_success();
        (dir, out)
    }
}

fn lib_is(row: &Row, name: &str) -> bool {
    row.library
        .as_deref()
        .is_some_and(|l| Path::new(l).file_name().is_some_and(|f| f == name))
}

#[test]
fn jvm_stress_is_safe_sampled_and_exact() {
    let Some(demo) = build("jvm_stress") else {
        return;
    };
    let plain = demo.java("demo.Stress", &["8", "60"]).run();
    plain.expect_success();
    assert!(
        plain.stdout.starts_with("stress 8x60 total "),
        "{}",
        plain.report()
    );
    // Repeated runs: crashes and hangs in a JVM tend to be timing-dependent.
    for (i, sample) in ["19", "19", "19", "12", "0", "0"].iter().enumerate() {
        let dir = TempDir::new(&format!("jvm_stress{i}"));
        let out = demo
            .java("demo.Stress", &["8", "60"])
            .profiled(&format!(
                "prof_prefix:{},lg_prof_sample:{sample}",
                dir.prefix()
            ))
            .run();
        out.expect_success();
        assert_eq!(
            out.stdout,
            plain.stdout,
            "run {i} (lg_prof_sample:{sample})\n{}",
            out.report()
        );
        let dump = final_dump(&dir, out.pid);
        let t = top(&dump, &[]);
        assert!(t.total_bytes > 0, "{}", t.command);
    }
}

#[test]
fn forgotten_mats_rank_first_exactly() {
    let Some(demo) = build("jvm_exact") else {
        return;
    };
    // Enough rounds for the leak (16 MiB) to outgrow HotSpot's own allocations (~9 MiB).
    let rounds = 64i64;
    let (dir, out) = demo.profiled(
        "jvm_exact",
        "demo.NativeLeakDemo",
        &[&rounds.to_string()],
        ",lg_prof_sample:0",
    );
    let dump = final_dump(&dir, out.pid);

    // Every thumbnail is still allocated at exit (56 evicted and forgotten, 8 in the cache).
    let t = top(&dump, &[]);
    let first = &t.rows[0];
    assert_eq!(
        first.name,
        "pixel_alloc",
        "{}: {:?}",
        t.command,
        &t.rows[..3]
    );
    assert!(lib_is(first, "libfakecv.so"), "{first:?}");
    assert_eq!(first.flat_bytes, rounds * THUMB, "{first:?}");
    assert_eq!(first.flat_objects, rounds, "{first:?}");
    let n_mat = t
        .row("Java_demo_Mat_n_1Mat")
        .expect("the JNI function is named");
    assert_eq!(n_mat.cum_bytes, rounds * (THUMB + MAT_HEADER), "{n_mat:?}");
    // The churn path (n_blur and the released full frames) holds nothing...
    assert!(
        t.row("Java_demo_Mat_n_1blur")
            .is_none_or(|r| r.cum_bytes == 0),
        "{}",
        t.command
    );
    // ...although it allocated far more.
    let alloc = top(&dump, &["--alloc-space"]);
    let blur = alloc
        .row("Java_demo_Mat_n_1blur")
        .expect("churn path in --alloc-space");
    assert!(blur.cum_bytes >= rounds * 1080 * 1920 * 4, "{blur:?}");
    assert!(blur.cum_bytes > 10 * first.flat_bytes, "{blur:?}");

    // Which library? The one that leaks, to the byte.
    let libs = top(&dump, &["--by", "library"]);
    let fakecv = libs
        .rows
        .iter()
        .find(|r| lib_is(r, "libfakecv.so"))
        .expect("libfakecv row");
    assert_eq!(
        fakecv.flat_bytes,
        rounds * (THUMB + MAT_HEADER),
        "{fakecv:?}"
    );

    // DirectByteBuffer memory comes from Unsafe_AllocateMemory0, named from libjvm's .symtab.
    let unsafe_row = alloc
        .row("Unsafe_AllocateMemory0")
        .expect("Unsafe_AllocateMemory0 named");
    assert!(unsafe_row.cum_bytes >= rounds * 64 * 1024, "{unsafe_row:?}");
    // Inflaters never end()ed keep zlib state allocated under Inflater.init.
    let zlib = top(&dump, &["--focus", "Inflater_init"]);
    assert!(zlib.total_bytes > 0, "{}", zlib.command);

    // FileChannel.map: a file-backed mapping of exactly 4 MiB in the mmap space, made by
    // libnio's map0 through mmap64, told apart from the JVM's own reservations.
    let mapped = top(&final_mmap_dump(&dir, out.pid), &[]);
    let map0 = mapped
        .row("Java_sun_nio_ch_FileChannelImpl_map0")
        .expect("map0 in the mmap dump");
    assert_eq!(map0.flat_bytes, MAPPED, "{map0:?}");
    assert!(lib_is(map0, "libnio.so"), "{map0:?}");
}

#[test]
fn forgotten_mats_within_sampling_bound() {
    let Some(demo) = build("jvm_sampled") else {
        return;
    };
    let rounds = 300i64;
    let (dir, out) = demo.profiled(
        "jvm_sampled",
        "demo.NativeLeakDemo",
        &[&rounds.to_string()],
        "",
    );
    let t = top(&final_dump(&dir, out.pid), &[]);
    let first = &t.rows[0];
    assert_eq!(
        first.name,
        "pixel_alloc",
        "{}: {:?}",
        t.command,
        &t.rows[..3]
    );
    // Each 256 KiB block is sampled with p = 1 - exp(-s/R) and then counts s/p, so the
    // estimator's variance is n·s²·(1-p)/p; allow 4 standard deviations.
    let (s, r) = (THUMB as f64, 524288.0f64);
    let p = 1.0 - (-s / r).exp();
    let sd = (rounds as f64 * s * s * (1.0 - p) / p).sqrt();
    let truth = (rounds * THUMB) as f64;
    let est = first.flat_bytes as f64;
    assert!(
        (est - truth).abs() <= 4.0 * sd,
        "estimate {est} vs {truth} (sd {sd})"
    );
}

#[test]
fn no_leak_control_reports_no_mat() {
    let Some(demo) = build("jvm_control") else {
        return;
    };
    let (dir, out) = demo.profiled(
        "jvm_control",
        "demo.NativeLeakDemo",
        &["24", "noleak"],
        ",lg_prof_sample:0",
    );
    let t = top(&final_dump(&dir, out.pid), &[]);
    for name in [
        "pixel_alloc",
        "Java_demo_Mat_n_1Mat",
        "Java_demo_Mat_n_1blur",
    ] {
        assert!(
            t.row(name).is_none_or(|r| r.cum_bytes == 0),
            "{name} in {}",
            t.command
        );
    }
    let alloc = top(&final_dump(&dir, out.pid), &["--alloc-space"]);
    assert!(
        alloc.row("pixel_alloc").is_some_and(|r| r.flat_bytes > 0),
        "the control did allocate"
    );
}

#[test]
fn run_names_java_frames_without_jvm_options() {
    let Some(demo) = build("jvm_frames") else {
        return;
    };
    let out_dir = TempDir::new("jvm_frames");
    let dumps = out_dir.path().join("dumps");
    // No JVM options at all: no frame pointers in compiled code, no perf map.
    let run = Run::new(analyzer())
        .args(&["run", "--out", &dumps.display().to_string(), "--"])
        .arg(demo.java.display().to_string())
        .arg("-Xmx256m")
        .arg(format!("-Djava.library.path={}", demo.libdir.display()))
        .args(&[
            "-cp",
            &demo.classes.display().to_string(),
            "demo.NativeLeakDemo",
            "200",
        ])
        .timeout(Duration::from_secs(240))
        .run();
    run.expect_success();
    assert!(
        run.stdout.contains("pixel_alloc"),
        "run's report (stdout) names the leak\n{}",
        run.report()
    );
    // The first screen: the leading site in one line, with its JNI entry and the Java method
    // of the application that called it.
    let first = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Leading sites"))
        .nth(1)
        .unwrap_or("");
    assert!(
        first.ends_with(
            "pixel_alloc [libfakecv] <- Java_demo_Mat_n_1Mat <- NativeLeakDemo.cacheThumbnail"
        ),
        "{}",
        run.report()
    );
    assert!(
        !run.stderr.contains("Picked up JAVA_TOOL_OPTIONS"),
        "run added JVM options\n{}",
        run.report()
    );
    let dump = dumps_in(&dumps, "jeprof")
        .into_iter()
        .find(|d| d.tag == "f" && !d.mmap && d.pid == run.pid)
        .map(|d| d.path)
        .or_else(|| {
            // The launcher may have re-executed itself: take the final dump of any pid.
            dumps_in(&dumps, "jeprof")
                .into_iter()
                .find(|d| d.tag == "f" && !d.mmap)
                .map(|d| d.path)
        })
        .expect("a final dump");
    let collapsed = Run::new(analyzer())
        .args(&["collapsed", &dump.display().to_string()])
        .run();
    collapsed.expect_success();
    let leak_stacks: Vec<&str> = collapsed
        .stdout
        .lines()
        .filter(|l| l.contains("pixel_alloc"))
        .collect();
    assert!(!leak_stacks.is_empty(), "{}", collapsed.report());
    // Every leaked Mat is under its Java caller: one tower, however the methods ran.
    let java = ";demo.NativeLeakDemo.cacheThumbnail;demo.Mat.<init>;demo.Mat.n_Mat;Java_demo_Mat_n_1Mat;pixel_alloc ";
    assert!(
        leak_stacks.iter().filter(|l| l.contains(java)).count() == 1,
        "Java frames above the JNI call are named:\n{}",
        leak_stacks.join("\n")
    );
}

#[test]
fn rss_of_a_jvm_is_explained() {
    let Some(demo) = build("jvm_rss") else {
        return;
    };
    let (dir, out) = demo.profiled("jvm_rss", "demo.NativeLeakDemo", &["200"], "");
    let dump = final_dump(&dir, out.pid);
    let r = rss(&dump);
    // Rows add up to the RSS the dump recorded; what no row explains is within 5% of it.
    r.expect_adds_up();
    // HotSpot's mappings are named by what mapped them: the Java heap (G1's regions), and
    // the threads' stacks below their guard pages (the JVM runs a dozen threads or more).
    assert!(r.sum("java_heap") > 0, "{}", r.render());
    assert!(r.sum("metaspace") > 0, "{}", r.render());
    assert!(r.sum("code_cache") > 0, "{}", r.render());
    let stacks = r
        .rows
        .iter()
        .find(|row| {
            row.category == "thread_stacks"
                && row.detail.ends_with("thread stacks (below a guard page)")
        })
        .unwrap_or_else(|| panic!("no thread stacks row\n{}", r.render()));
    let n: usize = stacks
        .detail
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= 8, "{}", r.render());
    // The leak, under its library, next to HotSpot's own malloc'd memory.
    assert!(r.row("malloc_in_use", "libfakecv") > 0, "{}", r.render());
    assert!(r.row("malloc_in_use", "libjvm") > 0, "{}", r.render());

    // top's first line names the leak with its JNI entry.
    let top = Run::new(analyzer())
        .args(&["top", &dump.to_string_lossy()])
        .run();
    top.expect_success();
    let first = top.stdout.lines().nth(1).unwrap_or("");
    assert!(
        first.contains(" pixel_alloc [libfakecv] <- Java_demo_Mat_n_1Mat"),
        "{}",
        top.report()
    );
}
