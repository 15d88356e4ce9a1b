//! All contact with the OS that needs `unsafe`: memory-mapping object files, sending a signal,
//! ignoring terminal signals while a child runs. Every other module of the crate is safe code
//! (`unsafe_code` is denied crate-wide and allowed only here).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::path::Path;

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

/// Send signal `signal` to every thread of process `pid` (so that whichever thread allocates
/// next serves the request: the preload's handler only flags the thread it runs on). Falls
/// back to `kill(pid)` when the thread list cannot be read. Returns how many threads.
pub fn signal_all_threads(pid: i32, signal: i32) -> io::Result<usize> {
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    send_signal(pid, signal)?; // the process exists and we may signal it
    let mut n = 1;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for tid in tasks
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if tid == pid {
                continue; // signalled above
            }
            // SAFETY: tgkill takes three integers and touches no memory of ours; it targets one
            // thread of `pid` and fails harmlessly if that thread has exited.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
            if rc == 0 {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Send signal `signal` to process `pid`.
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; pid > 0 so it targets
    // exactly one process, never a process group.
    let rc = unsafe { libc::kill(pid, signal) };
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
