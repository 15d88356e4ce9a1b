//! `jeprof-rs serve DIR` scraped by Go's own pprof client: two runs of `c/trend.c` in exact
//! mode leave their final dumps in DIR; the server, on an ephemeral loopback port, hands the
//! newest to `go tool pprof`, which finds the leaking function with its exact bytes without
//! any symbols of its own (heap and mmap space). A corrupt dump newer than it is skipped with
//! one stderr line, and dot-files (the preload's `.NAME.tmp`) are never read, even when they
//! hold a valid newer dump; the server keeps answering (index page, 404, `?seconds=`). A bad
//! `--listen`, a port in use and a missing DIR are one line and a non-zero exit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jeprof_tests::*;

/// 65536 bytes per step at `leak_step` (heap) and at `map_leak` (mappings).
const STEP: u64 = 65536;

/// A `jeprof-rs serve` child, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    stderr: std::path::PathBuf,
}

impl Server {
    fn start(dir: &Path, log: &Path) -> Server {
        let stderr = std::fs::File::create(log).unwrap();
        let mut child = Command::new(analyzer())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start jeprof-rs serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "no address on stdout: {line:?}; stderr: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        Server {
            child,
            addr,
            stderr: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `GET path` over HTTP/1.0: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect to the server");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the answer");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `go tool pprof -raw URL`: (inuse objects, inuse bytes) of the samples whose leaf is
/// `function`, and the whole output.
fn pprof_raw(dir: &TempDir, url: &str, function: &str) -> (u64, u64, String) {
    let home = dir.path().join("gohome");
    std::fs::create_dir_all(&home).unwrap();
    let o = Command::new("go")
        .args(["tool", "pprof", "-raw", "-sample_index=inuse_space", url])
        .env("HOME", &home)
        .env("GOCACHE", home.join("cache"))
        .env("GOPATH", home.join("gopath"))
        .env("PPROF_TMPDIR", &home)
        .stdin(Stdio::null())
        .output()
        .expect("run go tool pprof");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "go tool pprof {url} failed: {}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Locations: `    6: 0x55fb67db91a7 M=1 leak_step /…/trend.c:16 s=0`.
    let mut in_locations = false;
    let mut leaf_ids = Vec::new();
    for line in text.lines() {
        if line.starts_with("Locations") {
            in_locations = true;
            continue;
        }
        if line.starts_with("Mappings") {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if in_locations && words.len() >= 4 && words[0].ends_with(':') && words[3] == function {
            leaf_ids.push(words[0].trim_end_matches(':').to_string());
        }
    }
    assert!(!leaf_ids.is_empty(), "no location of {function}:\n{text}");
    // Samples: `alloc_objects alloc_space inuse_objects inuse_space: loc loc …`.
    let (mut objects, mut bytes) = (0, 0);
    let mut in_samples = false;
    for line in text.lines() {
        if line.starts_with("Samples:") {
            in_samples = true;
            continue;
        }
        if line.starts_with("Locations") {
            break;
        }
        let Some((values, locs)) = line.split_once(':') else {
            continue;
        };
        let values: Vec<u64> = values
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if !in_samples || values.len() != 4 {
            continue;
        }
        if locs
            .split_whitespace()
            .next()
            .is_some_and(|l| leaf_ids.iter().any(|id| id == l))
        {
            objects += values[2];
            bytes += values[3];
        }
    }
    (objects, bytes, text)
}

#[test]
fn go_pprof_scrapes_the_newest_good_dump() {
    let started = Instant::now();
    if !have_program("go") {
        skip(
            "go_pprof_scrapes_the_newest_good_dump",
            "`go` not installed (apt-get install golang-go)",
        );
        return;
    }
    let dir = TempDir::new("serve");
    let bin = compile_c("trend", dir.path(), &[]);
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let conf = format!("prof_prefix:{}/jeprof,lg_prof_sample:0", dumps.display());
    // An older run (3 steps), then the one to be served (7 steps).
    let old = Run::new(&bin).arg("3").profiled(&conf).run();
    old.expect_success();
    std::thread::sleep(Duration::from_millis(50));
    let new = Run::new(&bin).arg("7").profiled(&conf).run();
    new.expect_success();
    let old_dump = dumps.join(format!("jeprof.{}.0.f.heap", old.pid));
    let new_dump = dumps.join(format!("jeprof.{}.0.f.heap", new.pid));
    assert!(old_dump.is_file() && new_dump.is_file());
    std::thread::sleep(Duration::from_millis(50));
    // Newer than both: a valid dump under the preload's temporary name and as a dot-file
    // (never read), and a corrupt dump (skipped, said once).
    let old_text = std::fs::read(&old_dump).unwrap();
    std::fs::write(dumps.join(".jeprof.1.0.f.heap.tmp"), &old_text).unwrap();
    std::fs::write(dumps.join(".jeprof.1.1.f.heap"), &old_text).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let corrupt = "jeprof.2.0.f.heap";
    std::fs::write(dumps.join(corrupt), "heap_v2/1\n@ 0x1 0x2\n").unwrap();

    let server = Server::start(&dumps, &dir.path().join("serve.log"));
    let url = format!("http://{}/debug/pprof/heap", server.addr);
    for _ in 0..2 {
        let (objects, bytes, text) = pprof_raw(&dir, &url, "leak_step");
        assert_eq!(
            (objects, bytes),
            (7, 7 * STEP),
            "the newest good dump is the 7-step run's\n{text}\n{}",
            server.log()
        );
        assert!(text.contains("[FN]"), "mapping has functions: {text}");
    }
    let (objects, bytes, text) = pprof_raw(
        &dir,
        &format!("http://{}/debug/pprof/mmap", server.addr),
        "map_leak",
    );
    assert_eq!((objects, bytes), (7, 7 * STEP), "{text}");

    let log = server.log();
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("skipping")).collect();
    assert_eq!(skipped.len(), 1, "one line for the corrupt dump:\n{log}");
    assert!(skipped[0].contains(corrupt), "{log}");
    assert!(
        !log.contains(".jeprof.1."),
        "dot-files are not read:\n{log}"
    );

    // Still answering: ?seconds= (scrapers send it) ignored, the index, 404.
    let (status, _) = server.get("/debug/pprof/heap?seconds=30");
    assert_eq!(status, 200);
    let (status, body) = server.get("/nope");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not found"), "{body}");
    let (status, index) = server.get("/");
    assert_eq!(status, 200);
    for name in [
        format!("jeprof.{}.0.f.heap", old.pid),
        format!("jeprof.{}.0.f.heap", new.pid),
        format!("jeprof.{}.0.f.mmap.heap", new.pid),
        corrupt.to_string(),
    ] {
        assert!(index.contains(&name), "{name} listed:\n{index}");
    }
    assert!(index.contains(&format!("pid {}", new.pid)), "{index}");
    assert!(index.contains("skipped: unreadable"), "{index}");
    assert!(!index.contains(".jeprof.1."), "{index}");
    drop(server);

    // No good dump: 503 with a body that says so.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let server = Server::start(&empty, &dir.path().join("empty.log"));
    let (status, body) = server.get("/debug/pprof/heap");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no complete heap"), "{body}");
    drop(server);
    eprintln!("serve test took {:?}", started.elapsed());
}

#[test]
fn bad_listen_port_in_use_and_missing_dir_are_one_line() {
    let dir = TempDir::new("serve-errors");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let d = dir.path().display().to_string();
    let missing = dir.path().join("missing").display().to_string();
    let busy_addr = format!("127.0.0.1:{port}");
    for (args, says) in [
        (vec!["--listen", "nonsense", &d], "--listen"),
        (vec!["--listen", "127.0.0.1:99999", &d], "--listen"),
        (vec!["--listen", &busy_addr, &d], "cannot listen"),
        (vec![&missing[..]], "missing"),
    ] {
        let out = Run::new(analyzer())
            .arg("serve")
            .args(&args)
            .timeout(Duration::from_secs(10))
            .run();
        assert_eq!(out.code(), Some(1), "{}", out.report());
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{}", out.report());
        assert!(
            lines[0].starts_with("jeprof-rs: ") && lines[0].contains(says),
            "{}",
            out.report()
        );
        assert!(out.stdout.is_empty(), "{}", out.report());
    }
    drop(busy);
}
