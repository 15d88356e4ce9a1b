//! A live process that a command is about to touch (`dump`, `start`, `stop`, `detach`,
//! `trim`): checked before anything is sent to it, so that a signal meant for the
//! preload never reaches a process that would die of it.
//!
//! [`Target::check`] opens a pidfd first, then reads `/proc/<pid>`: the process exists and is
//! not a zombie; we may signal it and read its maps; `libjeprof_preload.so` is mapped.
//! [`Target::dump_signal`] then picks the dump signal (`--signal N`, else `prof_signal:N` from
//! the `JEPROF_CONF` of its `/proc/<pid>/environ`, else 41) and requires it to be caught (its
//! bit set in `SigCgt` of `/proc/<pid>/status`). Before anything is sent, [`Target::confirm`]
//! asks the pidfd whether the process is still alive: if it is, everything read under
//! `/proc/<pid>` was that process's (it held the pid the whole time), so a pid reused between
//! the check and the signal is impossible. Signals go through the pidfd
//! (process-directed) and, to every other thread, by `tgkill`, each after the pidfd says the
//! process still lives. On kernels without pidfds (< 5.3) the process's start time (field 22
//! of `/proc/<pid>/stat`) read before and after stands in for the pidfd.
//!
//! Every refusal is one line naming the pid, its name and what is missing, and ends in
//! "nothing sent". This module is safe code: the system calls are in [`crate::sys`].

use std::io;

use crate::error::Error;
use crate::sys::{self, PidFd};

/// The preload's file name, as it appears in `/proc/<pid>/maps`.
pub const PRELOAD_NAME: &str = "libjeprof_preload.so";

/// Values a control request carries in a queued `prof_signal` (the preload's
/// `config::CONTROL_*`): sampling on, sampling off, detach (hooks only forward from then on),
/// detach after a final dump.
pub const CONTROL_START: i32 = 0x6a70_0001;
pub const CONTROL_STOP: i32 = 0x6a70_0002;
pub const CONTROL_DETACH: i32 = 0x6a70_0003;
pub const CONTROL_DETACH_DUMP: i32 = 0x6a70_0004;

/// The preload's default `prof_signal` (SIGRTMIN+7).
pub const DEFAULT_SIGNAL: i32 = 41;

/// How we know the process is the one we checked.
#[derive(Debug)]
enum Identity {
    PidFd(PidFd),
    /// No pidfd_open (kernel < 5.3): the start time in clock ticks since boot.
    StartTime(u64),
}

/// A live process that runs the preload ([`Target::check`]). Commands that signal it ask
/// [`Target::dump_signal`] which signal, then [`Target::signal_all_threads`].
#[derive(Debug)]
pub struct Target {
    pub pid: i32,
    /// Its `Name:` (the kernel's comm, at most 15 bytes).
    pub name: String,
    /// Its `/proc/<pid>/status` when checked.
    pub status: Status,
    /// Its `JEPROF_CONF`, when its environment was readable and had one.
    pub conf: Option<Conf>,
    /// It has HotSpot's `libjvm.so` mapped (a JVM).
    pub jvm: bool,
    identity: Identity,
}

/// What `/proc/<pid>/status` says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Status {
    pub name: String,
    /// The one-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Bit `n - 1` set: signal `n` has a handler.
    pub sig_caught: u64,
    /// Real uid.
    pub uid: Option<u32>,
    /// The process (thread group) this task belongs to.
    pub tgid: Option<i32>,
}

impl Status {
    pub fn parse(text: &str) -> Status {
        let mut s = Status::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Name" => s.name = value.to_string(),
                "State" => s.state = value.chars().next().unwrap_or('?'),
                "SigCgt" => s.sig_caught = u64::from_str_radix(value, 16).unwrap_or(0),
                "Uid" => s.uid = value.split_whitespace().next().and_then(|u| u.parse().ok()),
                "Tgid" => s.tgid = value.parse().ok(),
                _ => {}
            }
        }
        s
    }

    /// Whether signal `signal` (1..=64) has a handler.
    pub fn catches(&self, signal: i32) -> bool {
        (1..=64).contains(&signal) && self.sig_caught & (1u64 << (signal - 1)) != 0
    }
}

/// What the process's `JEPROF_CONF` says about the dump signal, read the way the preload reads
/// it: entries in order, the last valid `prof_signal` wins, invalid values are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conf {
    /// `prof_signal` (41 when not set).
    pub signal: i32,
    /// `prof:false` makes the preload inert (no handler).
    pub enabled: bool,
}

impl Conf {
    pub fn parse(conf: &str) -> Conf {
        let mut c = Conf {
            signal: DEFAULT_SIGNAL,
            enabled: true,
        };
        for (key, value) in conf.split(',').filter_map(|e| e.split_once(':')) {
            match key {
                "prof_signal" => {
                    // The preload's own rule (config.rs): 0, or a catchable signal other than
                    // SIGKILL, SIGSTOP, SIGSEGV, SIGBUS.
                    if let Ok(n) = value.parse::<i32>()
                        && (0..=64).contains(&n)
                        && !matches!(n, 7 | 9 | 11 | 19)
                    {
                        c.signal = n;
                    }
                }
                "prof" => match value {
                    "true" | "1" => c.enabled = true,
                    "false" | "0" => c.enabled = false,
                    _ => {}
                },
                _ => {}
            }
        }
        c
    }

    /// `JEPROF_CONF` from the NUL-separated bytes of `/proc/<pid>/environ`.
    pub fn from_environ(environ: &[u8]) -> Option<Conf> {
        environ
            .split(|&b| b == 0)
            .filter_map(|v| v.strip_prefix(b"JEPROF_CONF="))
            .next_back()
            .map(|v| Conf::parse(&String::from_utf8_lossy(v)))
    }
}

/// Whether a `/proc/<pid>/maps` text maps the preload.
pub fn maps_preload(maps: &str) -> bool {
    maps.lines().any(|line| {
        // The path is the sixth field and may contain spaces; a replaced file ends in
        // " (deleted)".
        let path = line.splitn(6, ' ').nth(5).unwrap_or("").trim();
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        path.rsplit('/').next() == Some(PRELOAD_NAME)
    })
}

/// Field 22 of `/proc/<pid>/stat` (start time), after the `(comm)` that may hold spaces.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; the start time is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

fn refuse(pid: i32, name: &str, what: impl std::fmt::Display) -> Error {
    let who = if name.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({name})")
    };
    Error::Target(format!("{who} {what}; nothing sent"))
}

fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

impl Target {
    /// Check that `pid` is a live process we may signal and inspect, with the preload mapped
    /// (the module doc says how).
    pub fn check(pid: i32) -> Result<Target, Error> {
        if pid <= 0 {
            return Err(refuse(pid, "", "is not a process id (expected a pid > 0)"));
        }
        let identity = match PidFd::open(pid) {
            Ok(fd) => Identity::PidFd(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => match start_time(pid) {
                Some(t) => Identity::StartTime(t),
                None => return Err(refuse(pid, "", "does not exist")),
            },
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(refuse(pid, "", "does not exist"));
            }
            // pidfd_open refuses a thread that does not lead its thread group (EINVAL; ENOENT
            // since Linux 6.9).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
                let tgid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|t| Status::parse(&t).tgid)
                    .filter(|&t| t != pid);
                return Err(match tgid {
                    Some(t) => refuse(
                        pid,
                        "",
                        format_args!("is a thread of process {t}, not a process; pass {t}"),
                    ),
                    None => refuse(pid, "", format_args!("cannot be opened: {e}")),
                });
            }
            Err(e) => return Err(refuse(pid, "", format_args!("cannot be opened: {e}"))),
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|t| Status::parse(&t))
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => refuse(pid, "", "does not exist"),
                _ => refuse(pid, "", format_args!("cannot read /proc/{pid}/status: {e}")),
            })?;
        let name = status.name.as_str();
        if status.state == 'Z' {
            return Err(refuse(
                pid,
                name,
                "is a zombie (it has exited and waits for its parent to reap it)",
            ));
        }
        // May we signal it at all? (Signal 0 sends nothing.)
        let alive = match &identity {
            Identity::PidFd(fd) => fd.send(0),
            Identity::StartTime(_) => sys::tgkill(pid, pid, 0),
        };
        match alive {
            Ok(()) => {}
            Err(e) if denied(&e) => {
                let owner = status
                    .uid
                    .map_or_else(String::new, |u| format!(" (owned by uid {u})"));
                return Err(refuse(
                    pid,
                    name,
                    format_args!(
                        "may not be signalled by this user{owner}: permission denied; \
                         run as its owner or root"
                    ),
                ));
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(refuse(pid, name, "has exited"));
            }
            Err(e) => return Err(refuse(pid, name, format_args!("cannot be signalled: {e}"))),
        }
        let maps_path = format!("/proc/{pid}/maps");
        let maps = std::fs::read_to_string(&maps_path).map_err(|e| {
            if denied(&e) {
                refuse(
                    pid,
                    name,
                    format_args!(
                        "cannot be inspected: reading {maps_path}: permission denied; \
                         run as its owner or root"
                    ),
                )
            } else {
                refuse(
                    pid,
                    name,
                    format_args!("cannot be inspected: {maps_path}: {e}"),
                )
            }
        })?;
        if !maps_preload(&maps) {
            return Err(refuse(
                pid,
                name,
                format_args!(
                    "does not have {PRELOAD_NAME} loaded (start it with `jeprof-rs run` or \
                     LD_PRELOAD)"
                ),
            ));
        }
        let conf = std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| Conf::from_environ(&env));
        let target = Target {
            pid,
            name: status.name.clone(),
            status,
            conf,
            jvm: maps.lines().any(|l| l.ends_with("/libjvm.so")),
            identity,
        };
        target.confirm()?;
        Ok(target)
    }

    /// The signal that asks this process for a dump: `explicit` (`--signal N`), else the
    /// `prof_signal` of its `JEPROF_CONF`, else 41; refused unless it has a handler there.
    pub fn dump_signal(&self, explicit: Option<i32>) -> Result<i32, Error> {
        let (pid, name, conf) = (self.pid, self.name.as_str(), self.conf);
        if let Some(n) = explicit
            && !(1..=64).contains(&n)
        {
            return Err(Error::Usage(format!(
                "--signal {n}: expected a signal number 1..64; nothing sent to pid {pid}"
            )));
        }
        let signal = match (explicit, conf) {
            (Some(n), _) => n,
            (None, Some(c)) if c.signal == 0 => {
                return Err(refuse(
                    pid,
                    name,
                    "has prof_signal:0 in its JEPROF_CONF: it takes no dump signal",
                ));
            }
            (None, Some(c)) => c.signal,
            (None, None) => DEFAULT_SIGNAL,
        };
        if !self.status.catches(signal) {
            let why = match conf {
                Some(c) if !c.enabled => "profiling is off there (prof:false in its JEPROF_CONF)",
                _ => {
                    "profiling is off there, prof_signal is another signal or 0, or the program \
                     has its own handler"
                }
            };
            return Err(refuse(
                pid,
                name,
                format_args!(
                    "has {PRELOAD_NAME} loaded but does not catch signal {signal} ({why})"
                ),
            ));
        }
        Ok(signal)
    }

    /// Refuses unless the process catches `signal`, the preload's `key` (e.g.
    /// `prof_trim_signal`): a signal without our handler would end it.
    pub fn require_caught(&self, signal: i32, key: &str) -> Result<(), Error> {
        if !(1..=64).contains(&signal) {
            return Err(Error::Usage(format!(
                "--signal {signal}: expected a signal number 1..64; nothing sent to pid {}",
                self.pid
            )));
        }
        if self.status.catches(signal) {
            return Ok(());
        }
        Err(refuse(
            self.pid,
            &self.name,
            format_args!(
                "has {PRELOAD_NAME} loaded but does not catch signal {signal} ({key} is another \
                 signal or 0 there, or the program has its own handler)"
            ),
        ))
    }

    /// Everything read from `/proc/<pid>` since the pidfd was opened was this process's if it
    /// still lives now: an error if it does not.
    pub fn confirm(&self) -> Result<(), Error> {
        if self.same_process() {
            Ok(())
        } else {
            Err(refuse(
                self.pid,
                &self.name,
                "exited while it was being checked",
            ))
        }
    }

    /// Whether the process we checked is still alive under its pid.
    fn same_process(&self) -> bool {
        match &self.identity {
            Identity::PidFd(fd) => fd.send(0).is_ok(),
            Identity::StartTime(t) => start_time(self.pid) == Some(*t),
        }
    }

    /// Queue `signal` carrying `value` (a control request, see [`CONTROL_START`]) to every
    /// thread of the process, after [`Target::confirm`]: each thread's handler pokes itself,
    /// and the first to run applies the request. The upper 32 bits of the queued value are a
    /// nonce, the same for every thread, so that a thread that runs its handler late (after a
    /// later request, on a busy machine) does not apply this one again. Returns how many
    /// threads got it.
    pub fn queue_all_threads(&self, signal: i32, value: i32) -> Result<usize, Error> {
        self.confirm()?;
        let value = u64::from(request_nonce()) << 32 | u64::from(value as u32);
        let mut n = 0;
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid)).map_err(|e| {
            Error::Target(format!(
                "pid {} ({}): cannot list its threads: {e}",
                self.pid, self.name
            ))
        })?;
        for tid in tasks
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if !self.same_process() {
                break;
            }
            if sys::tgsigqueue(self.pid, tid, signal, value).is_ok() {
                n += 1;
            }
        }
        if n == 0 {
            return Err(Error::Target(format!(
                "pid {} ({}): cannot queue signal {signal} to any of its threads",
                self.pid, self.name
            )));
        }
        Ok(n)
    }

    /// Send `signal` to the process and to each of its threads (the preload's handler flags
    /// the thread it runs on, and whichever thread allocates next writes the dump), after
    /// [`Target::confirm`]. Returns how many threads were signalled.
    pub fn signal_all_threads(&self, signal: i32) -> Result<usize, Error> {
        self.confirm()?;
        let sent = match &self.identity {
            Identity::PidFd(fd) => fd.send(signal),
            Identity::StartTime(_) if self.same_process() => {
                sys::tgkill(self.pid, self.pid, signal)
            }
            Identity::StartTime(_) => Err(io::Error::from_raw_os_error(libc::ESRCH)),
        };
        sent.map_err(|e| {
            Error::Target(format!(
                "pid {} ({}): cannot send signal {signal}: {e}",
                self.pid, self.name
            ))
        })?;
        let mut n = 1;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) {
            for tid in tasks
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            {
                if tid == self.pid {
                    continue; // the process-directed signal above
                }
                if !self.same_process() {
                    break;
                }
                if sys::tgkill(self.pid, tid, signal).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// A non-zero number that differs from one request to the next (clock and pid mixed).
fn request_nonce() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let x =
        (nanos ^ u64::from(std::process::id()).rotate_left(40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((x >> 32) as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = Status::parse(
            "Name:\tmy prog\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\n\
             SigBlk:\t0000000000000000\nSigCgt:\t0000010000004a02\n",
        );
        assert_eq!(s.name, "my prog");
        assert_eq!(s.state, 'S');
        assert_eq!(s.uid, Some(1000));
        assert!(s.catches(41)); // bit 40
        assert!(s.catches(2)); // SIGINT, bit 1
        assert!(!s.catches(42));
        assert!(!s.catches(0));
        assert!(!s.catches(65));
        assert_eq!(Status::parse("State:\tZ (zombie)\n").state, 'Z');
    }

    #[test]
    fn conf_like_the_preload() {
        assert_eq!(Conf::parse("").signal, 41);
        assert_eq!(Conf::parse("prof_prefix:/x:y,prof_signal:40").signal, 40);
        assert_eq!(Conf::parse("prof_signal:0").signal, 0);
        // Invalid values are ignored, the last valid one wins.
        assert_eq!(Conf::parse("prof_signal:40,prof_signal:9").signal, 40);
        assert_eq!(Conf::parse("prof_signal:40,prof_signal:x").signal, 40);
        assert_eq!(Conf::parse("prof_signal:40,prof_signal:42").signal, 42);
        assert!(!Conf::parse("prof:false").enabled);
        let env = b"A=1\0JEPROF_CONF=prof_signal:0,prof:true\0B=2\0";
        assert_eq!(
            Conf::from_environ(env),
            Some(Conf {
                signal: 0,
                enabled: true
            })
        );
        assert_eq!(Conf::from_environ(b"A=1\0"), None);
    }

    #[test]
    fn finds_the_preload_in_maps() {
        let line = "7f00-7f10 r-xp 00000000 08:01 123    /opt/x y/libjeprof_preload.so";
        assert!(maps_preload(line));
        assert!(maps_preload(&format!("{line} (deleted)")));
        assert!(!maps_preload(
            "7f00-7f10 r-xp 00000000 08:01 123    /opt/libjeprof_preload.so.bak\n\
             7f00-7f10 r-xp 00000000 00:00 0 "
        ));
    }

    #[test]
    fn refuses_bad_pids_and_signals() {
        assert!(matches!(Target::check(0), Err(Error::Target(_))));
        assert!(matches!(Target::check(-3), Err(Error::Target(_))));
        // Our own test process has no preload.
        let me = std::process::id() as i32;
        let e = Target::check(me).unwrap_err().to_string();
        assert!(
            e.contains("does not have libjeprof_preload.so loaded"),
            "{e}"
        );
        // A thread of it is not a process.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || rx.recv());
        let tid = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<i32>().ok())
            .find(|&t| t != me)
            .unwrap();
        let e = Target::check(tid).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "pid {tid} is a thread of process {me}, not a process; pass {me}; nothing sent"
            )
        );
        tx.send(()).unwrap();
        helper.join().unwrap().unwrap();
    }
}
