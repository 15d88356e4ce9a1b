//! All contact with the OS that needs `unsafe`: memory-mapping object files, pidfds and signals,
//! ignoring terminal signals while a child runs. Every other module of the crate is safe code
//! (`unsafe_code` is denied crate-wide and allowed only here).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use memmap2::Mmap;

/// Map a file read-only.
pub fn map_file(path: &Path) -> io::Result<Mmap> {
    let file = File::open(path)?;
    // SAFETY: the mapping is private and read-only. Its contents can still change if another
    // process writes the file while we read it; object files of a profiled process are not
    // rewritten in place (package managers replace them by rename), and a torn read yields
    // wrong symbols or a parse error, not undefined behaviour in our own code, because every
    // reader of the bytes (object, gimli) bounds-checks what it reads.
    unsafe { Mmap::map(&file) }
}

/// A pidfd: a file descriptor that refers to one process for as long as it is open, whatever
/// pid that process had. Signals sent through it can only reach that process, and asking it
/// whether the process still lives tells whether `/proc/<pid>` (read meanwhile) was its.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// `pidfd_open(pid, 0)`. Errors: `ESRCH` (no such process), `ENOSYS` (kernel < 5.3).
    pub fn open(pid: i32) -> io::Result<PidFd> {
        if pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        // SAFETY: pidfd_open takes two integers and touches no memory of ours; on success it
        // returns a new file descriptor that nothing else owns.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        // SAFETY: `fd` was just returned by pidfd_open, is open, and is owned by no one else.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `pidfd_send_signal(fd, signal)`: a process-directed signal to exactly this process.
    /// `signal` 0 sends nothing and checks that the process is alive (not a zombie yet: the
    /// kernel refuses with `ESRCH` once it has exited) and that we may signal it (`EPERM`).
    pub fn send(&self, signal: i32) -> io::Result<()> {
        // SAFETY: the fd is open (we own it); a null siginfo asks the kernel to fill in one as
        // kill(2) would; flags 0. No memory of ours is written.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// `tgkill(pid, tid, signal)`: signal one thread of process `pid`.
pub fn tgkill(pid: i32, tid: i32, signal: i32) -> io::Result<()> {
    if pid <= 0 || tid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: tgkill takes three integers and touches no memory of ours; it targets one thread
    // of `pid` and fails (ESRCH) if that thread is not in that thread group.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `rt_tgsigqueueinfo`: queue `signal` with `value` (the 64 bits of the `union sigval` that
/// `sigqueue` carries, `si_code` `SI_QUEUE`) to one thread of process `pid`.
pub fn tgsigqueue(pid: i32, tid: i32, signal: i32, value: u64) -> io::Result<()> {
    if pid <= 0 || tid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    /// The kernel's `siginfo_t` for a queued signal (x86-64 and aarch64 layout: 128 bytes).
    #[repr(C)]
    struct QueuedInfo {
        signo: i32,
        errno: i32,
        code: i32,
        _pad: i32,
        pid: i32,
        uid: u32,
        value: u64,
        _rest: [u64; 12],
    }
    const _: () = assert!(core::mem::size_of::<QueuedInfo>() == 128);
    let info = QueuedInfo {
        signo: signal,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid: std::process::id() as i32,
        // SAFETY: getuid has no preconditions.
        uid: unsafe { libc::getuid() },
        value,
        _rest: [0; 12],
    };
    // SAFETY: the kernel reads 128 bytes of `info`, a valid siginfo for SI_QUEUE; it targets
    // one thread of `pid` and fails (ESRCH) if that thread is not in that thread group.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            signal,
            &info as *const QueuedInfo,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Ignore SIGINT and SIGQUIT in this process (as `system(3)` does while its child runs), so a
/// Ctrl-C reaches the profiled command and we still print the report after it exits.
pub fn ignore_terminal_signals() {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: SIG_IGN is a valid disposition for these signals; no handler code runs.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

/// Restore the default disposition of SIGINT and SIGQUIT.
pub fn default_terminal_signals() {
    for signal in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: SIG_DFL is a valid disposition; no handler code runs.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

/// Another process's root directory (`/proc/<pid>/root`: a container's), where paths are
/// resolved as that process resolves them: `openat2(RESOLVE_IN_ROOT)` keeps every symbolic
/// link, absolute or `..`, inside it, so that a file planted in the container cannot redirect
/// our writes to the host.
pub struct InRoot(OwnedFd);

impl InRoot {
    pub fn open(pid: i32) -> io::Result<InRoot> {
        let root = std::ffi::CString::new(format!("/proc/{pid}/root")).expect("no NUL");
        // SAFETY: a NUL-terminated path; the returned descriptor is owned below.
        let fd = unsafe {
            libc::open(
                root.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        Ok(InRoot(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `openat2(root, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
    fn open_in(&self, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
        use std::os::unix::ffi::OsStrExt;
        let rel = path.strip_prefix("/").unwrap_or(path);
        let rel = if rel.as_os_str().is_empty() {
            std::ffi::CString::new(".").expect("no NUL")
        } else {
            std::ffi::CString::new(rel.as_os_str().as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?
        };
        // The kernel's `struct open_how` (flags, mode, resolve: three u64s).
        #[repr(C)]
        struct OpenHow {
            flags: u64,
            mode: u64,
            resolve: u64,
        }
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: if flags & libc::O_CREAT != 0 {
                mode as u64
            } else {
                0
            },
            resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: openat2 reads `how` (its size passed) and the NUL-terminated path; the
        // returned descriptor is owned below.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.0.as_raw_fd(),
                rel.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just returned to us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Creates the absolute directory `dir` inside the root (and its missing parents, mode
    /// 0755, the last one `mode`); the last one is given to `owner` when set (made now or
    /// not). Returns a descriptor on it.
    pub fn create_dir_all(
        &self,
        dir: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<OwnedFd> {
        use std::os::unix::ffi::OsStrExt;
        let mut at = PathBuf::from("/");
        let parts: Vec<_> = dir.components().collect();
        for (i, c) in parts.iter().enumerate() {
            let std::path::Component::Normal(name) = c else {
                if matches!(c, std::path::Component::RootDir) {
                    continue;
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a plain absolute path",
                ));
            };
            let parent = self.open_in(&at, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            let cname = std::ffi::CString::new(name.as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let last = i + 1 == parts.len();
            // SAFETY: mkdirat on a directory descriptor we own and a one-component name (no
            // link is followed for the new entry).
            let rc = unsafe {
                libc::mkdirat(
                    parent.as_raw_fd(),
                    cname.as_ptr(),
                    if last { mode } else { 0o755 },
                )
            };
            let made = rc == 0;
            if !made && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(io::Error::last_os_error());
            }
            at.push(name);
            if last && let Some((uid, gid)) = owner {
                let fd = self.open_in(
                    &at,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
                fchown(&fd, uid, gid)?;
            }
        }
        self.open_in(
            dir,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
    }

    /// Puts `bytes` at the absolute `path` inside the root, mode 0644, unless a regular file
    /// with exactly these bytes is there already (another attach put it; it may be mapped by a
    /// running process, so it is never rewritten). Fails if something else is there.
    pub fn put_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        use std::io::{Read, Write};
        match self.open_in(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o644,
        ) {
            Ok(fd) => {
                let mut f = File::from(fd);
                f.write_all(bytes)?;
                fchmod(&f, 0o644)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let fd = self.open_in(path, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                let mut f = File::from(fd);
                let mut there = Vec::new();
                f.read_to_end(&mut there)?;
                if there == bytes {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "another file is there",
                    ))
                }
            }
            Err(e) => Err(e),
        }
    }
}

fn fchown(fd: &impl AsRawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn fchmod(fd: &impl AsRawFd, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod on a descriptor we own.
    if unsafe { libc::fchmod(fd.as_raw_fd(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
