//! What we must know about a process before we send it anything: does it exist, is it a
//! HotSpot JVM, may we act on it, what is its pid in its own namespace, where are its `/tmp`
//! and working directory as we see them, and did it refuse attach on its command line.
//!
//! Everything here reads `/proc/<pid>/…`; nothing is sent to the process. The parsers are
//! plain functions over text so they can be tested without a process.

use std::path::PathBuf;

use super::AttachError;
use super::sys;

/// Fields of `/proc/<pid>/status` that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub name: String,
    /// The process (thread group) this task belongs to.
    pub tgid: Option<i32>,
    /// First letter of `State:` (`R`, `S`, `Z`, …).
    pub state: char,
    pub euid: u32,
    pub egid: u32,
    pub groups: Vec<u32>,
    /// Last field of `NSpid:`: the pid as the process itself sees it (in a container).
    pub nspid: Option<i32>,
}

/// Parse `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Status> {
    let mut s = Status::default();
    let (mut have_uid, mut have_gid) = (false, false);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let mut fields = value.split_whitespace();
        match key {
            "Name" => s.name = value.trim().to_string(),
            "Tgid" => s.tgid = fields.next().and_then(|t| t.parse().ok()),
            "State" => s.state = value.trim().chars().next().unwrap_or('?'),
            // Real, effective, saved, filesystem: HotSpot compares with its effective ids.
            "Uid" => {
                s.euid = fields.nth(1)?.parse().ok()?;
                have_uid = true;
            }
            "Gid" => {
                s.egid = fields.nth(1)?.parse().ok()?;
                have_gid = true;
            }
            "Groups" => s.groups = fields.filter_map(|g| g.parse().ok()).collect(),
            "NSpid" => s.nspid = fields.last().and_then(|p| p.parse().ok()),
            _ => {}
        }
    }
    (have_uid && have_gid).then_some(s)
}

/// Which JVM, if any, `/proc/<pid>/maps` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vm {
    HotSpot,
    /// Eclipse OpenJ9 also maps a `libjvm.so` (a shim), but speaks another attach protocol.
    OpenJ9,
    None,
}

/// Look for `libjvm.so` (and OpenJ9's `libj9vm*.so`) among the mapped files.
pub fn vm_in_maps(maps: &str) -> Vm {
    let mut jvm = false;
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let file = path.rsplit('/').next().unwrap_or(path);
        if file.starts_with("libj9vm") && file.ends_with(".so") {
            return Vm::OpenJ9;
        }
        if file == "libjvm.so" {
            jvm = true;
        }
    }
    if jvm { Vm::HotSpot } else { Vm::None }
}

/// A JVM option that makes attach impossible or dangerous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The option as written (`-XX:+DisableAttachMechanism`, `-Xrs`, `-XX:+ReduceSignalUsage`).
    pub flag: String,
    /// Where we saw it: `command line`, `JAVA_TOOL_OPTIONS`, ….
    pub source: String,
}

/// The JVM's own view of two flags after every source of options was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-XX:+DisableAttachMechanism` in effect: the JVM never creates its socket.
    pub disable_attach: Option<Refusal>,
    /// `-Xrs` / `-XX:+ReduceSignalUsage` in effect: the JVM leaves SIGQUIT to its default
    /// action (core dump), and starts its attach listener at startup instead.
    pub reduce_signals: Option<Refusal>,
}

impl Flags {
    fn apply(&mut self, option: &str, source: &str) {
        let refusal = || {
            Some(Refusal {
                flag: option.to_string(),
                source: source.to_string(),
            })
        };
        match option {
            "-XX:+DisableAttachMechanism" => self.disable_attach = refusal(),
            "-XX:-DisableAttachMechanism" => self.disable_attach = None,
            "-Xrs" | "-XX:+ReduceSignalUsage" => self.reduce_signals = refusal(),
            "-XX:-ReduceSignalUsage" => self.reduce_signals = None,
            _ => {}
        }
    }
}

/// Launcher options that take the next argument as their value.
const LAUNCHER_VALUE_OPTIONS: &[&str] = &[
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--limit-modules",
    "--add-reads",
    "--add-exports",
    "--add-opens",
    "--patch-module",
    "--enable-native-access",
    "--describe-module",
    "-d",
];

/// The JVM options of a `java` command line: the arguments after the program name and before
/// the main class, `-jar FILE`, `-m MODULE` or `--source N FILE` (what follows is the
/// application's).
pub fn jvm_options(cmdline: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut args = cmdline.iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.as_str();
        if arg.starts_with('@') {
            continue; // an argument file of the launcher: its options are not visible here
        }
        if !arg.starts_with('-') || matches!(arg, "-jar" | "-m" | "--module") {
            break;
        }
        if LAUNCHER_VALUE_OPTIONS.contains(&arg) {
            args.next();
            continue;
        }
        out.push(arg);
    }
    out
}

/// The flags in effect, in the order HotSpot applies its sources: `JAVA_TOOL_OPTIONS`, then
/// the command line (the launcher prepends `JDK_JAVA_OPTIONS` to it), then `_JAVA_OPTIONS`;
/// the last occurrence of a flag wins.
pub fn flags_in_effect(cmdline: &[String], env: &[(String, String)]) -> Flags {
    let var = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut flags = Flags::default();
    let from_env = |name: &str, flags: &mut Flags| {
        if let Some(value) = var(name) {
            for option in value.split_whitespace() {
                flags.apply(option, name);
            }
        }
    };
    from_env("JAVA_TOOL_OPTIONS", &mut flags);
    let launcher_is_java = cmdline
        .first()
        .is_some_and(|p| p.rsplit('/').next() == Some("java"));
    if launcher_is_java {
        from_env("JDK_JAVA_OPTIONS", &mut flags);
    }
    for option in jvm_options(cmdline) {
        flags.apply(option, "command line");
    }
    from_env("_JAVA_OPTIONS", &mut flags);
    flags
}

/// NUL-separated fields (`/proc/<pid>/cmdline`, `/proc/<pid>/environ`).
pub fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// A live HotSpot JVM we may attach to, with everything needed to reach it.
#[derive(Debug)]
pub struct Target {
    pub pid: i32,
    pub name: String,
    /// The pid in the JVM's own pid namespace (names its socket and trigger file).
    pub nspid: i32,
    pub euid: u32,
    pub egid: u32,
    pub groups: Vec<u32>,
    /// Opened before any check: a signal through it can only reach this process.
    pub pidfd: Option<sys::PidFd>,
    /// Start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`), to re-check the
    /// pid before a `kill` when the kernel has no pidfds.
    pub start_time: Option<u64>,
    pub flags: Flags,
}

fn proc_path(pid: i32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`; the name field may hold spaces and
/// parentheses, so count from the last `)`.
pub fn start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Field 3 (`state`) of `/proc/<pid>/stat`.
pub fn state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn read_start_time(pid: i32) -> Option<u64> {
    std::fs::read_to_string(proc_path(pid, "stat"))
        .ok()
        .as_deref()
        .and_then(start_time)
}

impl Target {
    /// Check `pid` and gather what attach needs. Sends nothing to the process.
    pub fn inspect(pid: i32) -> Result<Target, AttachError> {
        if pid <= 0 {
            return Err(AttachError::NoSuchProcess { pid });
        }
        // The pidfd first: whatever we check below, a later signal goes to this process or
        // fails, never to another one that got the same pid.
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(AttachError::NoSuchProcess { pid });
            }
            Err(e) => {
                // EINVAL: a thread id, not a process id.
                let tgid = std::fs::read_to_string(proc_path(pid, "status"))
                    .ok()
                    .and_then(|t| parse_status(&t))
                    .and_then(|s| s.tgid)
                    .filter(|&t| t != pid);
                return Err(match tgid {
                    Some(process) => AttachError::Thread { pid, process },
                    None => AttachError::io(pid, "cannot open a pidfd", e),
                });
            }
        };
        let start_time = read_start_time(pid);
        let status_text = std::fs::read_to_string(proc_path(pid, "status"))
            .map_err(|_| AttachError::NoSuchProcess { pid })?;
        let status = parse_status(&status_text).ok_or_else(|| {
            AttachError::io(
                pid,
                "cannot parse /proc/PID/status",
                std::io::Error::from(std::io::ErrorKind::InvalidData),
            )
        })?;
        let name = status.name.clone();
        if matches!(status.state, 'Z' | 'X') {
            return Err(AttachError::Zombie { pid, name });
        }
        let (our_uid, our_gid) = sys::effective_ids();
        if our_uid != 0 && our_uid != status.euid {
            return Err(AttachError::NotPermitted {
                pid,
                name,
                target_uid: status.euid,
                our_uid,
            });
        }
        if our_uid != 0 && our_gid != status.egid {
            // HotSpot checks the peer's gid as well: it would close the connection unanswered.
            return Err(AttachError::GroupMismatch {
                pid,
                name,
                target_gid: status.egid,
                our_gid,
            });
        }
        let maps = std::fs::read_to_string(proc_path(pid, "maps"))
            .map_err(|e| AttachError::io(pid, "cannot read /proc/PID/maps", e))?;
        match vm_in_maps(&maps) {
            Vm::HotSpot => {}
            Vm::OpenJ9 => return Err(AttachError::OpenJ9 { pid, name }),
            Vm::None => return Err(AttachError::NotHotSpot { pid, name }),
        }
        let cmdline = std::fs::read(proc_path(pid, "cmdline"))
            .map(|b| split_nul(&b))
            .unwrap_or_default();
        let env: Vec<(String, String)> = std::fs::read(proc_path(pid, "environ"))
            .map(|b| split_nul(&b))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        Ok(Target {
            pid,
            name,
            nspid: status.nspid.unwrap_or(pid),
            euid: status.euid,
            egid: status.egid,
            groups: status.groups,
            pidfd,
            start_time,
            flags: flags_in_effect(&cmdline, &env),
        })
    }

    /// The JVM's `/tmp` as we see it (through its mount namespace).
    pub fn tmp_dir(&self) -> PathBuf {
        proc_path(self.pid, "root/tmp")
    }

    /// `<tmp>/.java_pid<nspid>`: the attach socket.
    pub fn socket_path(&self) -> PathBuf {
        self.tmp_dir().join(format!(".java_pid{}", self.nspid))
    }

    /// The two places HotSpot looks for `.attach_pid<nspid>`: its working directory, then /tmp.
    pub fn trigger_paths(&self) -> [PathBuf; 2] {
        let name = format!(".attach_pid{}", self.nspid);
        [
            proc_path(self.pid, "cwd").join(&name),
            self.tmp_dir().join(&name),
        ]
    }

    /// Whether the process still lives (and is the one we inspected). Signal 0 through the
    /// pidfd still succeeds on a zombie, so its state is read too (while the pidfd check
    /// passes, the pid cannot have been reused).
    pub fn alive(&self) -> bool {
        let same = match &self.pidfd {
            Some(fd) => fd.send(0).is_ok(),
            None => read_start_time(self.pid) == self.start_time && self.start_time.is_some(),
        };
        same && std::fs::read_to_string(proc_path(self.pid, "stat"))
            .ok()
            .as_deref()
            .and_then(state)
            .is_some_and(|c| !matches!(c, 'Z' | 'X'))
    }

    /// Send SIGQUIT, through the pidfd when there is one.
    pub fn send_sigquit(&self) -> std::io::Result<()> {
        match &self.pidfd {
            Some(fd) => fd.send(libc::SIGQUIT),
            None => {
                if self.start_time.is_none() || read_start_time(self.pid) != self.start_time {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                sys::kill(self.pid, libc::SIGQUIT)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tjava\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nNgid:\t0\n\
                    Pid:\t42\nPPid:\t1\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t101\t100\t100\n\
                    Groups:\t4 24 27 \nNStgid:\t42\t7\nNSpid:\t42\t7\n";
        let s = parse_status(text).unwrap();
        assert_eq!(s.name, "java");
        assert_eq!(s.tgid, Some(42));
        assert_eq!(s.state, 'S');
        assert_eq!((s.euid, s.egid), (1001, 101));
        assert_eq!(s.groups, vec![4, 24, 27]);
        assert_eq!(s.nspid, Some(7));
        let zombie = "Name:\tx\nState:\tZ (zombie)\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        let s = parse_status(zombie).unwrap();
        assert_eq!(s.state, 'Z');
        assert_eq!(s.nspid, None);
        assert!(parse_status("Name:\tx\n").is_none());
    }

    #[test]
    fn finds_libjvm() {
        let hotspot =
            "7f00-7f01 r-xp 00000000 08:01 12 /usr/lib/jvm/java-17/lib/server/libjvm.so\n";
        assert_eq!(vm_in_maps(hotspot), Vm::HotSpot);
        let j9 = "7f00-7f01 r-xp 0 08:01 12 /opt/j9/lib/default/libjvm.so\n\
                  7f02-7f03 r-xp 0 08:01 13 /opt/j9/lib/default/libj9vm29.so\n";
        assert_eq!(vm_in_maps(j9), Vm::OpenJ9);
        let other = "7f00-7f01 r-xp 0 08:01 12 /usr/lib/libjvm.so.bak\n7f02-7f03 rw-p 0 0:0 0 \n";
        assert_eq!(vm_in_maps(other), Vm::None);
    }

    #[test]
    fn options_stop_at_the_main_class() {
        let cmd = strings(&[
            "java",
            "-cp",
            "-Xrs",
            "-Xmx1g",
            "Main",
            "-XX:+DisableAttachMechanism",
        ]);
        assert_eq!(jvm_options(&cmd), vec!["-Xmx1g"]);
        let cmd = strings(&["java", "-Xrs", "-jar", "app.jar", "-XX:+ReduceSignalUsage"]);
        assert_eq!(jvm_options(&cmd), vec!["-Xrs"]);
    }

    #[test]
    fn flags_from_every_source_last_wins() {
        let cmd = strings(&["/usr/bin/java", "-XX:+DisableAttachMechanism", "Main"]);
        let f = flags_in_effect(&cmd, &[]);
        assert_eq!(f.disable_attach.unwrap().source, "command line");
        assert!(f.reduce_signals.is_none());

        let env = vec![(
            "JAVA_TOOL_OPTIONS".to_string(),
            "-Xmx1g -XX:+DisableAttachMechanism".to_string(),
        )];
        let cmd = strings(&["java", "-XX:-DisableAttachMechanism", "Main"]);
        assert!(flags_in_effect(&cmd, &env).disable_attach.is_none());
        let cmd = strings(&["java", "Main"]);
        assert_eq!(
            flags_in_effect(&cmd, &env).disable_attach.unwrap().source,
            "JAVA_TOOL_OPTIONS"
        );

        let env = vec![("_JAVA_OPTIONS".to_string(), "-Xrs".to_string())];
        let f = flags_in_effect(&strings(&["java", "-XX:-ReduceSignalUsage", "M"]), &env);
        assert_eq!(f.reduce_signals.unwrap().flag, "-Xrs");

        // JDK_JAVA_OPTIONS is read by the `java` launcher only.
        let env = vec![(
            "JDK_JAVA_OPTIONS".to_string(),
            "-XX:+ReduceSignalUsage".to_string(),
        )];
        assert!(
            flags_in_effect(&strings(&["java", "M"]), &env)
                .reduce_signals
                .is_some()
        );
        assert!(
            flags_in_effect(&strings(&["/opt/app/bin/server", "M"]), &env)
                .reduce_signals
                .is_none()
        );
    }

    #[test]
    fn stat_start_time() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 123456 1000 \
                    200 18446744073709551615";
        assert_eq!(start_time(stat), Some(123456));
        assert_eq!(state(stat), Some('S'));
        assert_eq!(start_time("garbage"), None);
    }
}
