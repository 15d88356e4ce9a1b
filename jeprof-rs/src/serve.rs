//! `serve DIR`: an HTTP endpoint for continuous-profiling scrapers (Parca, Grafana Alloy /
//! Pyroscope, `go tool pprof URL`). It serves the newest complete dump in DIR as the gzipped
//! profile.proto that `jeprof-rs pprof` writes (the same encoder: inuse and alloc sample types,
//! function names, mappings with build ids, so a scraper needs no symbols), at the paths Go's
//! `net/http/pprof` uses:
//!
//! - `/debug/pprof/heap`: the newest heap dump (`*.heap`, not `*.mmap.heap`);
//! - `/debug/pprof/mmap`: the newest mapping-space dump (`*.mmap.heap`);
//! - `/` (and `/debug/pprof/`): an HTML index of the dumps (name, kind, time, process, size);
//! - anything else: 404 with a text body. A query (`?seconds=30`, which scrapers send) is
//!   ignored: a heap profile is a snapshot, not a measurement over time.
//!
//! Dumps are found by listing DIR at each request. Files whose name starts with a dot are the
//! preload's dumps in the making (`.NAME.tmp`, renamed into place when whole) or someone
//! else's, and are never read. The newest dump (modification time, then sequence number) that
//! parses is served; one that does not (truncated, corrupt, not a profile) is skipped with one
//! line on stderr, remembered by (path, mtime, size) so the line is not repeated at every
//! scrape, and the next-newest is tried. With no good dump of the kind: 503 and a text body
//! saying so. The encoded profile is cached under the same (path, mtime, size) key, so a
//! scraper polling every 10 s costs a directory listing, not a symbolization.
//!
//! The HTTP server is `tiny_http`: synchronous, small (a few hundred lines over std's
//! `TcpListener`, one thread per connection, no TLS unless asked for), and kept by a
//! maintainers' organization. An async runtime would be most of the binary for an endpoint
//! that answers a scrape every few seconds on loopback. Requests are handled one at a time on
//! this thread (so a dump is symbolized once, however many scrapers ask at once); each
//! response is written by a thread of its own, so a client that does not read cannot stall
//! the others.
//!
//! SIGINT and SIGTERM keep their default action: the server holds no state worth saving and
//! writes no file, so ending the process is a clean shutdown.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::cli::{self, SelectArgs, ServeArgs};
use crate::error::Error;
use crate::filter::Filter;
use crate::humanize;
use crate::profile::DumpName;
use crate::report::pprof;

/// The two spaces a dump directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Heap,
    Mmap,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Heap => "heap",
            Kind::Mmap => "mmap",
        }
    }

    fn url(self) -> &'static str {
        match self {
            Kind::Heap => "/debug/pprof/heap",
            Kind::Mmap => "/debug/pprof/mmap",
        }
    }
}

/// What identifies one version of a dump file.
pub type Key = (PathBuf, SystemTime, u64);

/// A dump file of DIR.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: PathBuf,
    pub name: String,
    pub kind: Kind,
    pub modified: SystemTime,
    pub size: u64,
    pub seq: Option<u64>,
}

impl Entry {
    pub fn key(&self) -> Key {
        (self.path.clone(), self.modified, self.size)
    }
}

/// The dumps of `dir`, newest first: regular files (or links to them) named `*.heap`, not
/// starting with a dot.
pub fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".heap") {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // gone since the listing, or a dangling link
        };
        if !meta.is_file() {
            continue;
        }
        let kind = if name.ends_with(".mmap.heap") {
            Kind::Mmap
        } else {
            Kind::Heap
        };
        out.push(Entry {
            seq: DumpName::parse(&name).map(|d| d.seq),
            path,
            name,
            kind,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            size: meta.len(),
        });
    }
    out.sort_by(|a, b| {
        b.modified
            .cmp(&a.modified)
            .then(b.seq.cmp(&a.seq))
            .then_with(|| b.name.cmp(&a.name))
    });
    Ok(out)
}

/// `# pid:`, `# exe:` and `# time:` of a dump, read from its first few KiB (the preload writes
/// them right after the header).
#[derive(Clone, Debug, Default)]
pub struct DumpHeader {
    pub pid: Option<u32>,
    pub exe: Option<String>,
    pub time: Option<f64>,
}

fn read_header(entry: &Entry) -> DumpHeader {
    let mut head = Vec::with_capacity(4096);
    if let Ok(f) = std::fs::File::open(&entry.path) {
        let _ = f.take(4096).read_to_end(&mut head);
    }
    let text = String::from_utf8_lossy(&head);
    let mut h = DumpHeader::default();
    for line in text.lines().skip(1) {
        if line.starts_with('@') || line == "MAPPED_LIBRARIES:" {
            break;
        }
        let Some((key, value)) = line.strip_prefix("# ").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let value = value.trim();
        match key {
            "pid" => h.pid = value.parse().ok(),
            "exe" if !value.is_empty() => h.exe = Some(value.to_string()),
            "time" => h.time = value.parse().ok().filter(|t: &f64| t.is_finite()),
            _ => {}
        }
    }
    if h.pid.is_none() {
        h.pid = DumpName::parse(&entry.name).map(|d| d.pid);
    }
    h
}

/// `2026-12-02 17:29:33 UTC` for unix seconds.
pub fn utc(secs: f64) -> String {
    if !(0.0..=253_402_300_799.0).contains(&secs) {
        return format!("{secs}");
    }
    let s = secs as i64;
    let (days, rem) = (s / 86_400, s % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An encoded profile, ready to send.
struct Encoded {
    key: Key,
    name: String,
    gz: Arc<Vec<u8>>,
}

/// What the server remembers between requests.
pub struct State {
    dir: PathBuf,
    select: SelectArgs,
    filter: Filter,
    /// The last profile encoded, per kind.
    served: HashMap<Kind, Encoded>,
    /// Dumps that did not parse (said once on stderr).
    bad: HashSet<Key>,
}

/// An answer: status, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Arc<Vec<u8>>,
    pub attachment: Option<&'static str>,
}

impl Answer {
    fn text(status: u16, text: String) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Arc::new(text.into_bytes()),
            attachment: None,
        }
    }
}

impl State {
    pub fn new(dir: PathBuf, select: SelectArgs) -> Result<State, Error> {
        let filter = Filter::new(select.focus.as_deref(), select.ignore.as_deref())?;
        Ok(State {
            dir,
            select,
            filter,
            served: HashMap::new(),
            bad: HashSet::new(),
        })
    }

    /// The newest good dump of `kind`, encoded (from the cache when it has not changed).
    pub fn profile(&mut self, kind: Kind) -> Answer {
        let entries = match list(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                let line = format!("{}: cannot list directory: {e}", self.dir.display());
                eprintln!("jeprof-rs: serve: {line}");
                return Answer::text(503, format!("{line}\n"));
            }
        };
        let mut skipped = 0;
        for entry in entries.iter().filter(|e| e.kind == kind) {
            let key = entry.key();
            if let Some(enc) = self.served.get(&kind).filter(|enc| enc.key == key) {
                return profile_answer(kind, enc.gz.clone());
            }
            if self.bad.contains(&key) {
                skipped += 1;
                continue;
            }
            match self.encode(&entry.path) {
                Ok((gz, samples)) => {
                    eprintln!(
                        "jeprof-rs: serve: {} at {} ({samples} samples, {})",
                        entry.name,
                        kind.url(),
                        humanize::bytes(gz.len() as f64)
                    );
                    let gz = Arc::new(gz);
                    self.served.insert(
                        kind,
                        Encoded {
                            key,
                            name: entry.name.clone(),
                            gz: gz.clone(),
                        },
                    );
                    return profile_answer(kind, gz);
                }
                // Renamed or removed since the listing: not a bad dump.
                Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!("jeprof-rs: serve: skipping {e}");
                    if self.bad.len() >= 10_000 {
                        self.bad.clear();
                    }
                    self.bad.insert(key);
                    skipped += 1;
                }
            }
        }
        let also = if skipped > 0 {
            format!(" ({skipped} unreadable, skipped: see the server's stderr)")
        } else {
            String::new()
        };
        Answer::text(
            503,
            format!(
                "no complete {} dump in {} yet{also}\n",
                if kind == Kind::Heap {
                    "heap (*.heap)"
                } else {
                    "mmap (*.mmap.heap)"
                },
                self.dir.display()
            ),
        )
    }

    /// Read, symbolize and encode one dump: `pprof`'s code path.
    fn encode(&self, path: &Path) -> Result<(Vec<u8>, usize), Error> {
        let loaded = cli::load(&[path], &self.select)?;
        let stacks = self
            .filter
            .apply(&loaded.analysis.tables, loaded.analysis.stacks[0].clone());
        let bytes = pprof::encode(
            &loaded.analysis.tables,
            &stacks,
            &loaded.analysis.maps[0],
            &loaded.analysis.build_ids,
            &loaded.profiles[0],
        );
        let gz = pprof::gzip(&bytes).map_err(|e| Error::io(path, "cannot compress", e))?;
        Ok((gz, stacks.len()))
    }

    /// The HTML index of the dumps.
    pub fn index(&self) -> Answer {
        const SHOWN: usize = 200;
        let entries = match list(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                return Answer::text(
                    503,
                    format!("{}: cannot list directory: {e}\n", self.dir.display()),
                );
            }
        };
        let mut rows = String::new();
        for entry in entries.iter().take(SHOWN) {
            let h = read_header(entry);
            let time = h.time.unwrap_or_else(|| {
                entry
                    .modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            });
            let process = match (h.pid, &h.exe) {
                (Some(p), Some(e)) => format!("pid {p} ({e})"),
                (Some(p), None) => format!("pid {p}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "unknown".to_string(),
            };
            let key = entry.key();
            let status = if self.bad.contains(&key) {
                "skipped: unreadable".to_string()
            } else if self.served.get(&entry.kind).is_some_and(|e| e.key == key) {
                format!("served at {}", entry.kind.url())
            } else {
                String::new()
            };
            rows.push_str(&format!(
                "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>\n",
                escape(&entry.name),
                entry.kind.name(),
                escape(&utc(time)),
                escape(&process),
                escape(&humanize::bytes(entry.size as f64)),
                escape(&status)
            ));
        }
        let more = if entries.len() > SHOWN {
            format!("<p>and {} older dumps</p>\n", entries.len() - SHOWN)
        } else {
            String::new()
        };
        let served = |kind: Kind| {
            self.served
                .get(&kind)
                .map(|e| format!(" (last served: {})", escape(&e.name)))
                .unwrap_or_default()
        };
        let html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>jeprof-rs serve: {dir}</title>\n\
             <style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
             td,th{{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}}\
             .num{{text-align:right}}.name{{font-family:monospace}}</style></head><body>\n\
             <h1>Heap dumps in {dir}</h1>\n\
             <p>The newest complete dump of each kind, as gzipped profile.proto: \
             <a href=\"/debug/pprof/heap\">/debug/pprof/heap</a>{heap} and \
             <a href=\"/debug/pprof/mmap\">/debug/pprof/mmap</a>{mmap} (mappings).</p>\n\
             <p>{n} dumps, newest first.</p>\n\
             <table><tr><th>name</th><th>kind</th><th>time</th><th>process</th>\
             <th class=\"num\">size</th><th></th></tr>\n{rows}</table>\n{more}</body></html>\n",
            dir = escape(&self.dir.display().to_string()),
            heap = served(Kind::Heap),
            mmap = served(Kind::Mmap),
            n = entries.len(),
        );
        Answer {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: Arc::new(html.into_bytes()),
            attachment: None,
        }
    }

    /// The answer to a request line.
    pub fn answer(&mut self, method: &Method, url: &str) -> Answer {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        if !matches!(method, Method::Get | Method::Head) {
            return Answer::text(405, format!("{method} not allowed: use GET\n"));
        }
        match path {
            "/" | "/index.html" | "/debug/pprof" | "/debug/pprof/" => self.index(),
            "/debug/pprof/heap" => self.profile(Kind::Heap),
            "/debug/pprof/mmap" => self.profile(Kind::Mmap),
            _ => Answer::text(
                404,
                format!(
                    "not found: {path}\nthis server has /debug/pprof/heap, /debug/pprof/mmap and \
                     / (the list of dumps)\n"
                ),
            ),
        }
    }
}

fn profile_answer(kind: Kind, gz: Arc<Vec<u8>>) -> Answer {
    Answer {
        status: 200,
        content_type: "application/octet-stream",
        body: gz,
        attachment: Some(match kind {
            Kind::Heap => "attachment; filename=\"heap\"",
            Kind::Mmap => "attachment; filename=\"mmap\"",
        }),
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(request: Request, answer: Answer) {
    let len = answer.body.len();
    let mut headers: Vec<Header> = Vec::new();
    headers.extend(header("Content-Type", answer.content_type));
    headers.extend(header("X-Content-Type-Options", "nosniff"));
    headers.extend(header("Cache-Control", "no-store"));
    if let Some(a) = answer.attachment {
        headers.extend(header("Content-Disposition", a));
    }
    let response = Response::new(
        answer.status.into(),
        headers,
        std::io::Cursor::new(ArcBytes(answer.body)),
        Some(len),
        None,
    );
    // A client that went away is its own business.
    let _ = request.respond(response);
}

/// Shared bytes as a `Cursor` source, so a cached profile is not copied per response.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Parse `--listen`: `HOST:PORT` (`127.0.0.1:6060`, `[::1]:6060`, `localhost:6060`).
pub fn listen_addrs(listen: &str) -> Result<Vec<SocketAddr>, Error> {
    let bad = |why: String| {
        Error::Usage(format!(
            "--listen {listen:?}: {why} (expected HOST:PORT, e.g. 127.0.0.1:6060)"
        ))
    };
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(bad("resolves to no address".into()));
    }
    Ok(addrs)
}

/// `jeprof-rs serve`.
pub fn run(a: &ServeArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let meta = std::fs::metadata(&a.dir).map_err(|e| Error::io(&a.dir, "cannot serve", e))?;
    if !meta.is_dir() {
        return Err(Error::File {
            file: a.dir.clone(),
            message: "cannot serve: not a directory".into(),
        });
    }
    std::fs::read_dir(&a.dir).map_err(|e| Error::io(&a.dir, "cannot list directory", e))?;
    let mut state = State::new(a.dir.clone(), a.select.clone())?;
    let addrs = listen_addrs(&a.listen)?;
    let listener = TcpListener::bind(addrs.as_slice())
        .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", a.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", a.listen)))?;
    if !local.ip().is_loopback() {
        eprintln!(
            "jeprof-rs: warning: serving on {local}, not a loopback address: whoever reaches it \
             reads the profiles (function names, library paths)"
        );
    }
    let server = Server::from_listener(listener, None)
        .map_err(|e| Error::Usage(format!("cannot serve on {local}: {e}")))?;
    let line = format!(
        "jeprof-rs: serving {} on http://{local}/ (heap profile: http://{local}/debug/pprof/heap)\n",
        a.dir.display()
    );
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io(Path::new("<stdout>"), "cannot write", e))?;
    loop {
        let request = server.recv().map_err(|e| {
            Error::Usage(format!("http://{local}/: cannot accept connections: {e}"))
        })?;
        let answer = state.answer(request.method(), request.url());
        // Written apart, so that a client that does not read holds only its own thread.
        std::thread::spawn(move || respond(request, answer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_escapes() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_232_573.3), "2026-12-02 17:29:33 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            escape("a<b>&\"c'"),
            "a&lt;b&gt;&amp;&quot;c&#39;".to_string()
        );
    }

    #[test]
    fn listen_values() {
        assert!(listen_addrs("127.0.0.1:0").is_ok());
        assert!(listen_addrs("[::1]:6060").is_ok());
        for bad in ["6060", "127.0.0.1", "127.0.0.1:99999", "", "not an address"] {
            let e = listen_addrs(bad).unwrap_err().to_string();
            assert!(e.contains("--listen") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn skips_hidden_bad_and_unknown_paths() {
        let dir = std::env::temp_dir().join(format!("jeprof-serve-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let good = "heap_v2/1\n  t*: 1: 100 [1: 100]\n# pid: 7\n# time: 1000\n@ 0x1000\n  t*: 1: 100 [1: 100]\n\nMAPPED_LIBRARIES:\n";
        std::fs::write(dir.join("jeprof.7.0.f.heap"), good).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("jeprof.7.1.m0.heap"), "heap_v2/1\n@ 0x1\n").unwrap();
        std::fs::write(dir.join(".jeprof.7.2.m1.heap.tmp"), "junk").unwrap();
        std::fs::write(dir.join(".hidden.heap"), "junk").unwrap();
        let mut state = State::new(dir.clone(), SelectArgs::default()).unwrap();
        let listed: Vec<String> = list(&dir).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(listed, ["jeprof.7.1.m0.heap", "jeprof.7.0.f.heap"]);
        for _ in 0..2 {
            let a = state.answer(&Method::Get, "/debug/pprof/heap?seconds=30");
            assert_eq!(a.status, 200);
            assert_eq!(&a.body[..2], &[0x1f, 0x8b], "gzip");
        }
        assert_eq!(state.bad.len(), 1);
        let a = state.answer(&Method::Get, "/debug/pprof/mmap");
        assert_eq!(a.status, 503);
        assert!(String::from_utf8_lossy(&a.body).contains("no complete mmap"));
        assert_eq!(state.answer(&Method::Get, "/nope").status, 404);
        assert_eq!(state.answer(&Method::Post, "/").status, 405);
        let index = state.answer(&Method::Get, "/");
        let html = String::from_utf8_lossy(&index.body).into_owned();
        assert!(
            html.contains("jeprof.7.0.f.heap") && html.contains("pid 7"),
            "{html}"
        );
        assert!(html.contains("skipped: unreadable"), "{html}");
        assert!(!html.contains(".tmp"), "{html}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
