//! The system calls of the attach client that need `unsafe`: a pidfd (so a signal can never
//! reach a process that reused the pid), signalling through it, and switching the calling
//! *thread's* credentials. Every other part of `attach` is safe code.
//!
//! Why per-thread credentials: Linux keeps uid/gid/groups per thread; glibc's `setresuid` and
//! friends broadcast the change to every thread of the process (they must, for POSIX). The raw
//! system calls change only the caller. [`super::connect`] runs the steps that must be done as
//! the JVM's user (create `.attach_pid<N>`, signal, `connect()` so that the socket's
//! `SO_PEERCRED` names that user) on a short-lived thread of its own that switches, works and
//! switches back; the rest of the process keeps its credentials throughout, even if another
//! thread is running. A forked child would do too, but after `fork` in a process that may have
//! other threads only async-signal-safe calls are allowed, and we would have to pass the
//! connected socket back over another socket; a thread is simpler and as contained.
#![allow(unsafe_code)]

pub use crate::sys::PidFd;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `pidfd_open(pid, 0)` ([`crate::sys::PidFd`]): a handle on the process that has `pid` now.
/// `Ok(None)` on a kernel without pidfds (before 5.3).
pub fn pidfd_open(pid: i32) -> io::Result<Option<PidFd>> {
    match PidFd::open(pid) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `kill(pid, signal)`, for kernels without pidfds (the caller re-checks the process's start
/// time just before).
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes two integers; pid > 0 targets one process, never a group.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Effective uid and gid of this process (of the calling thread, which is the same unless
/// [`ThreadCreds`] switched it).
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

fn check(rc: libc::c_long, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

fn thread_setgroups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the raw setgroups system call reads `len` gids from the pointer, which is valid
    // for that many elements for the duration of the call; it changes only this thread.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    check(rc, "setgroups")
}

fn thread_setresgid(egid: u32) -> io::Result<()> {
    let keep = libc::gid_t::MAX; // (gid_t)-1: leave real and saved ids as they are
    // SAFETY: integers only; the raw system call changes only the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, keep, egid, keep) };
    check(rc, "setresgid")
}

fn thread_setresuid(euid: u32) -> io::Result<()> {
    let keep = libc::uid_t::MAX;
    // SAFETY: integers only; the raw system call changes only the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, keep, euid, keep) };
    check(rc, "setresuid")
}

fn current_groups() -> io::Result<Vec<libc::gid_t>> {
    // SAFETY: with size 0 getgroups only returns the count and writes nothing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    // SAFETY: the buffer holds `n` gids, and we pass `n` as its size.
    let m = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    groups.truncate(m as usize);
    Ok(groups)
}

/// The calling thread's effective uid, gid and supplementary groups switched to another
/// user's (real and saved ids stay root's, so the switch can be undone); restored by
/// [`ThreadCreds::restore`] or on drop. Only for a thread that runs as root; only that thread
/// is affected.
pub struct ThreadCreds {
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    restored: bool,
}

impl ThreadCreds {
    /// Become `uid`/`gid` with supplementary `groups` on this thread.
    pub fn switch(uid: u32, gid: u32, groups: &[u32]) -> io::Result<ThreadCreds> {
        let (our_uid, our_gid) = effective_ids();
        let saved = ThreadCreds {
            uid: our_uid,
            gid: our_gid,
            groups: current_groups()?,
            restored: false,
        };
        // Groups and gid first: once the euid is not root we may no longer change them.
        thread_setgroups(groups)?;
        thread_setresgid(gid)?;
        thread_setresuid(uid)?;
        Ok(saved)
    }

    /// Switch back (euid first, which gives back the right to change the gid and groups).
    pub fn restore(mut self) -> io::Result<()> {
        self.restored = true;
        self.undo()
    }

    fn undo(&self) -> io::Result<()> {
        thread_setresuid(self.uid)?;
        thread_setresgid(self.gid)?;
        thread_setgroups(&self.groups)
    }
}

impl Drop for ThreadCreds {
    fn drop(&mut self) {
        if !self.restored {
            let _ = self.undo();
        }
    }
}

fn c_name(name: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `openat(dir, name, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode)`: a new file in the
/// directory `dir` holds open, whatever that directory's path becomes.
pub fn create_in(dir: &std::fs::File, name: &str, mode: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let name = c_name(name)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open descriptor borrowed for the call, `name` a NUL-terminated string
    // that outlives it; the mode is passed as the variadic argument O_CREAT requires.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `unlinkat(dir, name, 0)`: works after the process whose `/proc/<pid>/cwd` we opened `dir`
/// through has exited (the path through /proc is gone then, the directory is not).
pub fn unlink_in(dir: &std::fs::File, name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let name = c_name(name)?;
    // SAFETY: as in `create_in`: a borrowed open descriptor and a NUL-terminated string.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`'s owner uid and whether it is a regular file.
pub fn owner_in(dir: &std::fs::File, name: &str) -> io::Result<(u32, bool)> {
    use std::os::fd::AsRawFd;
    let name = c_name(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of one `struct stat`, the kernel fills it on success
    // (and we read it only then); the descriptor and the name are valid for the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so the struct is initialized.
    let st = unsafe { st.assume_init() };
    Ok((st.st_uid, st.st_mode & libc::S_IFMT == libc::S_IFREG))
}
