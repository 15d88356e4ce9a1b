//! A client of HotSpot's dynamic attach mechanism, spoken by us (no JDK tools needed on the
//! host): `jeprof-rs jcmd PID COMMAND…` runs a diagnostic command, and [`load_agent`] loads a
//! JVMTI agent library into a running JVM.
//!
//! How a HotSpot JVM on Linux is reached:
//! 1. [`target::Target::inspect`] opens a pidfd, then checks `/proc/<pid>`: alive, not a
//!    zombie, `libjvm.so` mapped, our effective uid is its own (or we are root), and no
//!    `-XX:+DisableAttachMechanism` on its command line or in `JAVA_TOOL_OPTIONS`,
//!    `JDK_JAVA_OPTIONS`, `_JAVA_OPTIONS`. Nothing is sent to a process that fails them.
//! 2. Its socket is `/tmp/.java_pid<nspid>` in its own mount namespace, which we reach as
//!    `/proc/<pid>/root/tmp/…` (`<nspid>`: its pid in its own pid namespace, the last field of
//!    `NSpid:`). If the socket is there (a socket, owned by the JVM's uid) we connect.
//! 3. Otherwise we create `.attach_pid<nspid>` in its working directory (`/proc/<pid>/cwd`; in
//!    its `/tmp` when that fails), send one SIGQUIT through the pidfd, wait for the socket
//!    (`timeout`), and remove the file. HotSpot's SIGQUIT handler starts its attach listener
//!    when it finds that file owned by its own uid (or root); without the file it prints a
//!    thread dump. A JVM started with `-Xrs`/`-XX:+ReduceSignalUsage` does not handle SIGQUIT
//!    at all (the signal would kill it), but starts its listener at startup: with such a JVM we
//!    only ever connect to an existing socket.
//! 4. HotSpot accepts a connection only from its own effective uid and gid, or root
//!    (`SO_PEERCRED`). As root we do steps 3 and 4 as the JVM's user, on a thread of our own
//!    whose credentials alone are switched (see [`sys`]).
//! 5. One request per connection; see [`proto`] for the bytes.

pub mod proto;
mod sys;

pub use sys::effective_ids;
pub mod target;

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use proto::{LoadOutcome, Reply};
use target::Target;

/// Default for [`Options::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// For the JVM to open its socket after SIGQUIT, to accept our connection, and for each
    /// read of its answer (a hung JVM yields an error after this long, never a hang).
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Everything that can go wrong, each printed as one line naming the process.
#[derive(Debug)]
pub enum AttachError {
    NoSuchProcess {
        pid: i32,
    },
    Zombie {
        pid: i32,
        name: String,
    },
    NotHotSpot {
        pid: i32,
        name: String,
    },
    OpenJ9 {
        pid: i32,
        name: String,
    },
    /// A thread id was given.
    Thread {
        pid: i32,
        process: i32,
    },
    NotPermitted {
        pid: i32,
        name: String,
        target_uid: u32,
        our_uid: u32,
    },
    GroupMismatch {
        pid: i32,
        name: String,
        target_gid: u32,
        our_gid: u32,
    },
    /// `-XX:+DisableAttachMechanism` in effect.
    AttachDisabled {
        pid: i32,
        flag: String,
        source: String,
    },
    /// `-Xrs`/`-XX:+ReduceSignalUsage` and no socket: SIGQUIT would kill it.
    ReducedSignals {
        pid: i32,
        flag: String,
        source: String,
        socket: PathBuf,
    },
    /// SIGQUIT sent, no socket appeared.
    NoSocket {
        pid: i32,
        timeout: Duration,
    },
    /// The process ended while we waited for it.
    Exited {
        pid: i32,
    },
    /// The JVM did not answer (or accept) within the timeout.
    NoAnswer {
        pid: i32,
        timeout: Duration,
        what: &'static str,
    },
    /// The JVM closed or reset the connection without a status line.
    ConnectionClosed {
        pid: i32,
        reset: bool,
    },
    /// The first line of the answer is not a status.
    BadAnswer {
        pid: i32,
        line: String,
    },
    /// The JVM does not know the command.
    UnknownCommand {
        pid: i32,
        command: String,
    },
    /// The JVM ran the request and reports an error.
    Jvm {
        pid: i32,
        request: String,
        status: i32,
        text: String,
    },
    /// The request does not fit the protocol the JVM speaks.
    Request {
        pid: i32,
        message: String,
    },
    /// `load`: the library was not loaded or has no `Agent_OnAttach`.
    AgentNotLoaded {
        pid: i32,
        path: String,
        text: String,
    },
    /// `load` refused: `-XX:-EnableDynamicAgentLoading`.
    DynamicAgentLoadingDisabled {
        pid: i32,
    },
    /// A system call failed.
    Io {
        pid: i32,
        what: String,
        error: io::Error,
    },
}

impl AttachError {
    pub fn io(pid: i32, what: impl Into<String>, error: io::Error) -> Self {
        AttachError::Io {
            pid,
            what: what.into(),
            error,
        }
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use AttachError::*;
        match self {
            NoSuchProcess { pid } => write!(f, "pid {pid}: no such process"),
            Zombie { pid, name } => write!(f, "pid {pid} ({name}) has exited (zombie)"),
            NotHotSpot { pid, name } => write!(
                f,
                "pid {pid} ({name}) is not a HotSpot JVM (no libjvm.so mapped); for a native \
                 process start it with `jeprof-rs run` or LD_PRELOAD"
            ),
            OpenJ9 { pid, name } => write!(
                f,
                "pid {pid} ({name}) is an OpenJ9 JVM (libj9vm mapped): only HotSpot's attach \
                 protocol is supported"
            ),
            Thread { pid, process } => write!(
                f,
                "{pid} is a thread of process {process}, not a process id: use {process}"
            ),
            GroupMismatch {
                pid,
                name,
                target_gid,
                our_gid,
            } => write!(
                f,
                "pid {pid} ({name}) runs with gid {target_gid}, we run with gid {our_gid}: \
                 HotSpot accepts only its own user and group; run with gid {target_gid} \
                 (`sg`) or as root"
            ),
            NotPermitted {
                pid,
                name,
                target_uid,
                our_uid,
            } => write!(
                f,
                "pid {pid} ({name}) runs as uid {target_uid}, we run as uid {our_uid}: HotSpot \
                 accepts only its own user; run as uid {target_uid} or as root"
            ),
            AttachDisabled { pid, flag, source } => write!(
                f,
                "pid {pid} was started with {flag} ({source}): it has no attach mechanism; \
                 nothing was sent"
            ),
            ReducedSignals {
                pid,
                flag,
                source,
                socket,
            } => write!(
                f,
                "pid {pid} was started with {flag} ({source}) and has no attach socket {}: \
                 SIGQUIT would kill it, so nothing was sent",
                socket.display()
            ),
            NoSocket { pid, timeout } => write!(
                f,
                "pid {pid} did not open its attach socket within {}: started with \
                 -XX:+DisableAttachMechanism, or not responding",
                secs(*timeout)
            ),
            Exited { pid } => write!(f, "pid {pid} exited while we waited for its attach socket"),
            NoAnswer { pid, timeout, what } => write!(
                f,
                "pid {pid} did not {what} within {} (JVM hung or busy; --timeout to wait longer)",
                secs(*timeout)
            ),
            ConnectionClosed { pid, reset } => write!(
                f,
                "pid {pid} {} the attach connection without answering (request rejected: \
                 wrong user or group, or a request it cannot parse)",
                if *reset { "reset" } else { "closed" }
            ),
            BadAnswer { pid, line } => {
                write!(f, "pid {pid}: not an attach answer (first line {line:?})")
            }
            UnknownCommand { pid, command } => write!(
                f,
                "pid {pid}: unknown diagnostic command `{command}` (`jeprof-rs jcmd {pid} help` \
                 lists them)"
            ),
            Jvm {
                pid,
                request,
                status,
                text,
            } => write!(f, "pid {pid}: {request} failed (status {status}): {text}"),
            Request { pid, message } => write!(f, "pid {pid}: {message}"),
            AgentNotLoaded { pid, path, text } => {
                write!(f, "pid {pid}: agent {path} not loaded: {text}")
            }
            DynamicAgentLoadingDisabled { pid } => write!(
                f,
                "pid {pid} was started with -XX:-EnableDynamicAgentLoading: restart it with \
                 -XX:+EnableDynamicAgentLoading to load agents into it"
            ),
            Io { pid, what, error } => write!(f, "pid {pid}: {what}: {error}"),
        }
    }
}

impl std::error::Error for AttachError {}

/// Inspect `pid` and refuse what must not be touched.
/// The checks every request makes (a live HotSpot JVM, attach not disabled), alone: for
/// callers that must prepare something in the JVM's world before the request.
pub fn check(pid: i32) -> Result<Target, AttachError> {
    checked_target(pid)
}

fn checked_target(pid: i32) -> Result<Target, AttachError> {
    let target = Target::inspect(pid)?;
    if let Some(r) = &target.flags.disable_attach {
        return Err(AttachError::AttachDisabled {
            pid,
            flag: r.flag.clone(),
            source: r.source.clone(),
        });
    }
    Ok(target)
}

/// Send one request and read the whole answer.
fn request(target: &Arc<Target>, bytes: &[u8], opts: &Options) -> Result<Reply, AttachError> {
    let pid = target.pid;
    let mut stream = connect(target, opts)?;
    let io_err = |e: io::Error, what: &'static str| -> AttachError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => AttachError::NoAnswer {
                pid,
                timeout: opts.timeout,
                what,
            },
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                AttachError::ConnectionClosed { pid, reset: true }
            }
            _ => AttachError::io(pid, what, e),
        }
    };
    stream
        .set_write_timeout(Some(opts.timeout))
        .and_then(|()| stream.set_read_timeout(Some(opts.timeout)))
        .map_err(|e| AttachError::io(pid, "cannot set socket timeouts", e))?;
    stream
        .write_all(bytes)
        .map_err(|e| io_err(e, "take our request"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e, "answer")),
        }
    }
    proto::parse_reply(&answer).map_err(|e| match e {
        proto::ReplyError::Empty => AttachError::ConnectionClosed { pid, reset: false },
        proto::ReplyError::BadStatus(line) => AttachError::BadAnswer { pid, line },
    })
}

/// A connected socket to the JVM's attach listener, triggering the listener if needed.
///
/// The work runs on a thread of its own: as root it switches that thread's credentials to the
/// JVM's user, and we wait for it at most the timeout plus a margin, so that even a
/// `connect()` that blocks (a full listen backlog) cannot hang us.
fn connect(target: &Arc<Target>, opts: &Options) -> Result<UnixStream, AttachError> {
    let pid = target.pid;
    let (tx, rx) = mpsc::channel();
    let t = Arc::clone(target);
    let timeout = opts.timeout;
    std::thread::Builder::new()
        .name("jeprof-attach".into())
        .spawn(move || {
            let _ = tx.send(connect_as_target(&t, timeout));
        })
        .map_err(|e| AttachError::io(pid, "cannot start a thread", e))?;
    match rx.recv_timeout(timeout + Duration::from_secs(2)) {
        Ok(result) => result,
        Err(_) => Err(AttachError::NoAnswer {
            pid,
            timeout,
            what: "accept our connection",
        }),
    }
}

/// [`reach`] with this thread's credentials switched to the JVM's user when we are root and
/// someone else.
fn connect_as_target(target: &Target, timeout: Duration) -> Result<UnixStream, AttachError> {
    let (uid, gid) = sys::effective_ids();
    if uid != 0 || (uid, gid) == (target.euid, target.egid) {
        return reach(target, timeout);
    }
    let creds =
        sys::ThreadCreds::switch(target.euid, target.egid, &target.groups).map_err(|e| {
            AttachError::io(
                target.pid,
                format!(
                    "cannot switch to uid {} gid {} for the attach socket",
                    target.euid, target.egid
                ),
                e,
            )
        })?;
    let result = reach(target, timeout);
    // The thread ends right after this; restoring is for good measure.
    let _ = creds.restore();
    result
}

/// Whether `path` is the JVM's socket: a socket owned by its uid.
fn socket_ready(path: &Path, uid: u32) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket() && m.uid() == uid)
}

/// `.attach_pid<N>`, removed when dropped if we created it. The directory is held open, so
/// the file is removed even if the JVM exits (and `/proc/<pid>/cwd` with it) or changes its
/// working directory meanwhile.
struct Trigger {
    dir: std::fs::File,
    name: String,
    ours: bool,
}

impl Drop for Trigger {
    fn drop(&mut self) {
        if self.ours {
            let _ = sys::unlink_in(&self.dir, &self.name);
        }
    }
}

/// Create `.attach_pid<nspid>` where HotSpot looks: its working directory, else its /tmp.
/// A file whose owner is neither the JVM's uid nor root would be ignored by the JVM (some
/// file systems give new files another owner), so such a file is removed and the next place
/// tried.
fn create_trigger(target: &Target) -> Result<Trigger, AttachError> {
    let mut last_error = None;
    for path in target.trigger_paths() {
        let (Some(dir_path), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        let dir = match std::fs::File::open(dir_path) {
            Ok(dir) => dir,
            Err(e) => {
                last_error = Some((path, e));
                continue;
            }
        };
        let ours = match sys::create_in(&dir, &name, 0o660) {
            Ok(_) => true,
            // Another client's trigger (or a stale one): use it, leave it to its owner.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                last_error = Some((path, e));
                continue;
            }
        };
        let trigger = Trigger { dir, name, ours };
        match sys::owner_in(&trigger.dir, &trigger.name) {
            Ok((uid, true)) if uid == target.euid || uid == 0 => return Ok(trigger),
            Ok((uid, _)) => {
                let e = io::Error::other(format!("owned by uid {uid}, not the JVM's"));
                last_error = Some((path, e));
                drop(trigger); // removes it if we made it
            }
            Err(e) => last_error = Some((path, e)),
        }
    }
    let (path, e) = last_error.unwrap_or_else(|| (PathBuf::new(), io::Error::other("no place")));
    Err(AttachError::io(
        target.pid,
        format!("cannot create {}", path.display()),
        e,
    ))
}

/// Connect to the socket, starting the listener first if it is not there.
fn reach(target: &Target, timeout: Duration) -> Result<UnixStream, AttachError> {
    let pid = target.pid;
    let socket = target.socket_path();
    if !socket_ready(&socket, target.euid) {
        if let Some(r) = &target.flags.reduce_signals {
            return Err(AttachError::ReducedSignals {
                pid,
                flag: r.flag.clone(),
                source: r.source.clone(),
                socket: PathBuf::from(format!("/tmp/.java_pid{}", target.nspid)),
            });
        }
        let trigger = create_trigger(target)?;
        target.send_sigquit().map_err(|e| {
            if e.raw_os_error() == Some(libc::ESRCH) {
                AttachError::Exited { pid }
            } else {
                AttachError::io(pid, "cannot send SIGQUIT", e)
            }
        })?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
            if socket_ready(&socket, target.euid) {
                break;
            }
            if !target.alive() {
                return Err(AttachError::Exited { pid });
            }
            if start.elapsed() >= timeout {
                return Err(AttachError::NoSocket { pid, timeout });
            }
        }
        drop(trigger);
    }
    UnixStream::connect(&socket).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => AttachError::io(
            pid,
            format!(
                "attach socket /tmp/.java_pid{} refuses connections (stale socket?)",
                target.nspid
            ),
            e,
        ),
        _ => AttachError::io(pid, format!("cannot connect to {}", socket.display()), e),
    })
}

/// The protocol version the JVM speaks beyond 1 (`getversion`, JDK 24+); 1 when it does not
/// know the command.
fn protocol_version(target: &Arc<Target>, opts: &Options) -> Result<u32, AttachError> {
    let bytes = proto::encode_v1("getversion", &["options"]).map_err(|e| AttachError::Request {
        pid: target.pid,
        message: format!("cannot encode getversion: {e:?}"),
    })?;
    let reply = request(target, &bytes, opts)?;
    if reply.status != 0 {
        return Ok(1);
    }
    Ok(reply
        .text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1))
}

/// Encode a request in protocol 1, or in protocol 2 when it does not fit 1 and the JVM
/// speaks 2.
fn encode(
    target: &Arc<Target>,
    command: &str,
    args: &[&str],
    opts: &Options,
) -> Result<Vec<u8>, AttachError> {
    let pid = target.pid;
    let fail = |e: proto::EncodeError| {
        let message = match e {
            proto::EncodeError::Nul => "a command or argument holds a NUL byte".to_string(),
            proto::EncodeError::TooLongV1 { what, max } => format!(
                "{what} longer than {max} bytes, which this JVM's attach protocol (version 1) \
                 does not take"
            ),
            proto::EncodeError::TooManyArgsV1 => "more than three arguments".to_string(),
            proto::EncodeError::TooLongV2 => format!(
                "request longer than {} bytes, the attach protocol's limit",
                proto::V2_SIZE_MAX
            ),
        };
        AttachError::Request { pid, message }
    };
    if proto::fits_v1(command, args) {
        return proto::encode_v1(command, args).map_err(fail);
    }
    if protocol_version(target, opts)? >= 2 {
        proto::encode_v2(command, args).map_err(fail)
    } else {
        proto::encode_v1(command, args).map_err(fail)
    }
}

/// Run a diagnostic command (`jcmd` request) and return its output. Like the JDK's `jcmd`,
/// the command and its arguments travel as one string.
pub fn jcmd(pid: i32, command: &[String], opts: &Options) -> Result<String, AttachError> {
    let line = command.join(" ");
    let target = Arc::new(checked_target(pid)?);
    let bytes = encode(&target, "jcmd", &[&line], opts)?;
    let reply = request(&target, &bytes, opts)?;
    if reply.status == 0 {
        return Ok(reply.text);
    }
    if proto::is_unknown_command(&reply) {
        return Err(AttachError::UnknownCommand {
            pid,
            command: command.first().cloned().unwrap_or_default(),
        });
    }
    Err(AttachError::Jvm {
        pid,
        request: format!("jcmd {line}"),
        status: reply.status,
        text: proto::one_line(&reply.text),
    })
}

/// Load a JVMTI agent library into a running JVM (`load <abs path> true <options>`) and
/// return what its `Agent_OnAttach` returned (0 = success). `path` is made absolute; the JVM
/// opens it in its own mount namespace.
pub fn load_agent(
    pid: i32,
    path: &Path,
    options: Option<&str>,
    opts: &Options,
) -> Result<i32, AttachError> {
    let path = std::path::absolute(path)
        .map_err(|e| AttachError::io(pid, format!("cannot resolve {}", path.display()), e))?;
    let path_str = path.to_str().ok_or_else(|| AttachError::Request {
        pid,
        message: format!("agent path {} is not UTF-8", path.display()),
    })?;
    let target = Arc::new(checked_target(pid)?);
    let bytes = encode(
        &target,
        "load",
        &[path_str, "true", options.unwrap_or("")],
        opts,
    )?;
    let reply = request(&target, &bytes, opts)?;
    match proto::parse_load(&reply) {
        LoadOutcome::Returned(rc) => Ok(rc),
        LoadOutcome::DynamicLoadingDisabled => {
            Err(AttachError::DynamicAgentLoadingDisabled { pid })
        }
        LoadOutcome::Failed(text) if proto::is_unknown_command(&reply) => Err(AttachError::Jvm {
            pid,
            request: "load".into(),
            status: reply.status,
            text,
        }),
        LoadOutcome::Failed(text) => Err(AttachError::AgentNotLoaded {
            pid,
            path: path_str.to_string(),
            text,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_one_line_naming_the_pid() {
        let t = Duration::from_secs(10);
        let n = || "java".to_string();
        let errors = vec![
            AttachError::NoSuchProcess { pid: 7 },
            AttachError::Zombie { pid: 7, name: n() },
            AttachError::NotHotSpot { pid: 7, name: n() },
            AttachError::OpenJ9 { pid: 7, name: n() },
            AttachError::Thread { pid: 7, process: 6 },
            AttachError::NotPermitted {
                pid: 7,
                name: n(),
                target_uid: 1,
                our_uid: 2,
            },
            AttachError::GroupMismatch {
                pid: 7,
                name: n(),
                target_gid: 1,
                our_gid: 2,
            },
            AttachError::AttachDisabled {
                pid: 7,
                flag: "-XX:+DisableAttachMechanism".into(),
                source: "command line".into(),
            },
            AttachError::ReducedSignals {
                pid: 7,
                flag: "-Xrs".into(),
                source: "command line".into(),
                socket: "/tmp/.java_pid7".into(),
            },
            AttachError::NoSocket { pid: 7, timeout: t },
            AttachError::Exited { pid: 7 },
            AttachError::NoAnswer {
                pid: 7,
                timeout: Duration::from_millis(1500),
                what: "answer",
            },
            AttachError::ConnectionClosed {
                pid: 7,
                reset: true,
            },
            AttachError::BadAnswer {
                pid: 7,
                line: "x\ny".into(),
            },
            AttachError::UnknownCommand {
                pid: 7,
                command: "X.y".into(),
            },
            AttachError::Jvm {
                pid: 7,
                request: "jcmd X".into(),
                status: -1,
                text: proto::one_line("a\n\nb\n"),
            },
            AttachError::Request {
                pid: 7,
                message: "too long".into(),
            },
            AttachError::AgentNotLoaded {
                pid: 7,
                path: "/a.so".into(),
                text: "no".into(),
            },
            AttachError::DynamicAgentLoadingDisabled { pid: 7 },
            AttachError::io(7, "cannot connect", io::Error::other("refused")),
        ];
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains('7'), "{line}");
        }
        let e = AttachError::NoSocket { pid: 7, timeout: t };
        assert_eq!(
            e.to_string(),
            "pid 7 did not open its attach socket within 10 s: started with \
             -XX:+DisableAttachMechanism, or not responding"
        );
        let e = AttachError::NoAnswer {
            pid: 7,
            timeout: Duration::from_millis(1500),
            what: "answer",
        };
        assert!(e.to_string().contains("within 1.5 s"), "{e}");
    }
}
