//! Every contact with the operating system, in one place.
//!
//! Runs inside malloc hooks: nothing here allocates from the process allocator, and the
//! calls made on sampling paths (`map_anon`, `unmap`) leave `errno` as they found it, so those
//! paths need not save it on every sample. Memory
//! comes from raw `mmap` system calls (not the `mmap` symbol, which this library
//! interposes), files are written with `write(2)`, and text is formatted into
//! caller-provided buffers.

use core::ffi::{CStr, c_char, c_int, c_void};

/// Page size assumed for rounding our own mappings; the kernel's real one is never smaller on
/// the platforms we support, and larger pages only make our rounding conservative.
pub const PAGE: usize = 4096;

/// Maps `len` bytes of zeroed, private, anonymous memory, reserving no swap: pages cost RSS
/// only once touched. Returns `None` if the kernel refuses.
pub fn map_anon(len: usize) -> Option<*mut u8> {
    let saved = errno(); // a failed call sets errno; the host must not see it
    // SAFETY: an anonymous private mapping at a kernel-chosen address cannot alias any
    // existing Rust object; failure is reported through the return value.
    let p = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            core::ptr::null_mut::<c_void>(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1 as c_int,
            0usize,
        )
    };
    if p < 0 || p as usize == usize::MAX {
        set_errno(saved);
        return None;
    }
    // Named `[anon:jeprof]` in /proc/self/maps (kernels with CONFIG_ANON_VMA_NAME; elsewhere
    // the call fails and changes nothing), so that `jeprof-rs rss` tells our memory apart.
    // SAFETY: prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) reads the NUL-terminated name (the
    // kernel copies it) and changes only the name of the mapping just made.
    unsafe {
        libc::syscall(
            libc::SYS_prctl,
            0x5356_4d41 as libc::c_long, // PR_SET_VMA
            0 as libc::c_long,           // PR_SET_VMA_ANON_NAME
            p,
            len,
            c"jeprof".as_ptr(),
        )
    };
    set_errno(saved);
    Some(p as usize as *mut u8)
}

/// Returns memory obtained from [`map_anon`].
///
/// # Safety
/// `ptr..ptr+len` must be a mapping made by `map_anon` that nothing references any more.
pub unsafe fn unmap(ptr: *mut u8, len: usize) {
    let saved = errno();
    // SAFETY: guaranteed by the caller.
    unsafe {
        libc::syscall(libc::SYS_munmap, ptr, len);
    }
    set_errno(saved);
}

/// The thread's `errno`.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(v: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = v }
}

pub fn getpid() -> i32 {
    // SAFETY: a system call without arguments; the raw call avoids any libc caching, so the
    // child of a fork sees its own pid.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

pub fn gettid() -> i32 {
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Wall-clock time as (seconds, nanoseconds) since the epoch.
pub fn now_realtime() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

/// Monotonic nanoseconds, for seeding and time-based intervals.
pub fn now_monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// True for setuid/setgid (and similar) processes: the profiler must stay passive there.
pub fn is_secure() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// An environment variable, read in place (getenv does not allocate).
pub fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv returns NULL or a pointer into the environment block, which lives for
    // the whole process unless the program itself edits that variable.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null result of getenv is a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// Writes all of `buf` to `fd`, retrying on EINTR and short writes. Returns false on error.
pub fn write_all(fd: c_int, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        if n == 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Creates a new file for a dump: `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode 0600, and makes
/// sure the descriptor is above 2 so that a process that closed stdio cannot have its output
/// mixed with ours. Returns the descriptor or the errno.
pub fn create_exclusive(path: &CStr) -> Result<c_int, c_int> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(errno());
    }
    if fd > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicating a descriptor we own.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    let err = errno();
    close(fd);
    if high < 0 { Err(err) } else { Ok(high) }
}

pub fn open_read(path: &CStr) -> Option<c_int> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    (fd >= 0).then_some(fd)
}

/// Reads into `buf`, retrying on EINTR. Returns 0 at end of file or on error.
pub fn read(fd: c_int, buf: &mut [u8]) -> usize {
    loop {
        // SAFETY: `buf` is a valid writable slice.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return if n < 0 { 0 } else { n as usize };
    }
}

/// Reads a whole small file (e.g. `/proc/self/statm`) into `buf`; returns the bytes read.
pub fn read_small_file(path: &CStr, buf: &mut [u8]) -> usize {
    let Some(fd) = open_read(path) else { return 0 };
    let mut len = 0;
    while len < buf.len() {
        let n = read(fd, &mut buf[len..]);
        if n == 0 {
            break;
        }
        len += n;
    }
    close(fd);
    len
}

pub fn close(fd: c_int) {
    // SAFETY: closing a descriptor this module opened.
    unsafe { libc::close(fd) };
}

pub fn rename(from: &CStr, to: &CStr) -> bool {
    // SAFETY: both paths are NUL-terminated.
    unsafe { libc::rename(from.as_ptr(), to.as_ptr()) == 0 }
}

/// Moves `from` to `to` unless `to` exists (`EEXIST` then: a dump never replaces a file):
/// `renameat2(RENAME_NOREPLACE)`, or `link` + `unlink` where the file system lacks it.
pub fn rename_noreplace(from: &CStr, to: &CStr) -> Result<(), c_int> {
    let saved = errno();
    // SAFETY: two NUL-terminated paths relative to the working directory; flags only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    let result = if r == 0 {
        Ok(())
    } else {
        match errno() {
            libc::EINVAL | libc::ENOSYS => {
                // SAFETY: as above; link fails with EEXIST if `to` exists.
                if unsafe { libc::link(from.as_ptr(), to.as_ptr()) } == 0 {
                    unlink(from);
                    Ok(())
                } else {
                    Err(errno())
                }
            }
            e => Err(e),
        }
    };
    set_errno(saved);
    result
}

pub fn unlink(path: &CStr) {
    // SAFETY: `path` is NUL-terminated.
    unsafe { libc::unlink(path.as_ptr()) };
}

/// `readlink(2)` into `buf`; returns the length written (0 on failure).
pub fn readlink(path: &CStr, buf: &mut [u8]) -> usize {
    // SAFETY: `buf` is writable for its length, `path` NUL-terminated.
    let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr() as *mut c_char, buf.len()) };
    if n < 0 { 0 } else { n as usize }
}

pub fn sched_yield() {
    // SAFETY: no arguments, no memory effects.
    unsafe { libc::sched_yield() };
}

unsafe extern "C" {
    fn pthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int;
}
const PTHREAD_CANCEL_DISABLE: c_int = 1;

/// Thread cancellation held off for the guard's lifetime (glibc flips a bit in the thread
/// descriptor: no system call, no allocation). A cancellation requested meanwhile is acted on
/// at the thread's next cancellation point after the guard is gone.
pub struct NoCancel(c_int);

impl NoCancel {
    pub fn enter() -> NoCancel {
        let mut old = 0;
        // SAFETY: writes `old`; valid on any thread.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
        NoCancel(old)
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        let mut old = 0;
        // SAFETY: as above; restores the state found by `enter`.
        unsafe { pthread_setcancelstate(self.0, &mut old) };
    }
}

/// Creates the directory that holds `path` (mode 0700) when its own parent exists: the
/// README's `prof_prefix:/tmp/prof/app` works without a `mkdir` first, but a mistyped prefix
/// never grows a tree of directories. True if it was created.
pub fn make_parent_dir(path: &CStr) -> bool {
    let bytes = path.to_bytes();
    let Some(last) = bytes.iter().rposition(|&c| c == b'/') else {
        return false;
    };
    if last == 0 {
        return false;
    }
    let mut dir = crate::fmt::StackBuf::<600>::new();
    dir.push(&bytes[..last]);
    let saved = errno();
    let made = match dir.as_cstr() {
        // SAFETY: NUL-terminated path.
        Some(d) => (unsafe { libc::mkdir(d.as_ptr(), 0o700) }) == 0,
        None => false,
    };
    set_errno(saved);
    made
}

/// Whether a seccomp filter applies to the calling thread (`prctl(PR_GET_SECCOMP)`: one system
/// call, no file).
pub fn seccomp_filtered() -> bool {
    let saved = errno();
    // SAFETY: prctl(PR_GET_SECCOMP) takes no pointers; 0 means no filter.
    let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } != 0;
    set_errno(saved);
    r
}

/// Writes one line to stderr, prefixed `<jeprof>: `. Never allocates.
pub fn say(parts: &[&[u8]]) {
    let mut line = crate::fmt::StackBuf::<512>::new();
    line.push(b"<jeprof>: ");
    for p in parts {
        line.push(p);
    }
    line.push(b"\n");
    let saved = errno();
    write_all(2, line.as_bytes());
    set_errno(saved);
}

/// glibc's `struct sigevent` with the SIGEV_THREAD members the libc crate does not expose.
#[repr(C)]
struct SigEventThread {
    value: usize,
    signo: c_int,
    notify: c_int,
    function: Option<extern "C" fn(usize)>,
    attribute: *mut c_void,
    pad: [u64; 4],
}

const SIGEV_THREAD: c_int = 2;

/// A POSIX timer whose expirations call `f` on a thread created by libc (SIGEV_THREAD).
pub struct Timer(libc::timer_t);

// SAFETY: a timer id is a plain handle usable from any thread.
unsafe impl Send for Timer {}
// SAFETY: as above; timer_settime may be called concurrently.
unsafe impl Sync for Timer {}

impl Timer {
    pub fn new(f: extern "C" fn(usize)) -> Option<Timer> {
        let mut ev = SigEventThread {
            value: 0,
            signo: 0,
            notify: SIGEV_THREAD,
            function: Some(f),
            attribute: core::ptr::null_mut(),
            pad: [0; 4],
        };
        let mut id: libc::timer_t = core::ptr::null_mut();
        // SAFETY: `ev` has glibc's sigevent layout (64 bytes) for SIGEV_THREAD; `id` is writable.
        let r = unsafe {
            libc::timer_create(
                libc::CLOCK_MONOTONIC,
                (&mut ev as *mut SigEventThread).cast(),
                &mut id,
            )
        };
        (r == 0).then_some(Timer(id))
    }

    /// Arms the timer: first expiry after `first_ns`, then every `period_ns` (0 = once).
    /// Async-signal-safe.
    pub fn arm(&self, first_ns: u64, period_ns: u64) -> bool {
        let ts = |ns: u64| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        };
        let its = libc::itimerspec {
            it_interval: ts(period_ns),
            it_value: ts(first_ns),
        };
        // SAFETY: a valid timer id and a valid itimerspec.
        unsafe { libc::timer_settime(self.0, 0, &its, core::ptr::null_mut()) == 0 }
    }
}

/// Pages of `addr..addr+len` present in this process's page tables, read from
/// `/proc/self/pagemap` (`fd`; bit 63 of each page's 8-byte entry) in chunks of `buf.len() / 8`
/// pages: what RSS counts, for anonymous and file mappings alike. `None` when the file cannot
/// be read (then [`resident_pages`] is the fallback).
pub fn present_pages(fd: c_int, addr: usize, len: usize, buf: &mut [u8]) -> Option<usize> {
    let per = buf.len() / 8;
    if per == 0 {
        return None;
    }
    let saved = errno();
    let mut pages = 0;
    let mut page = addr / PAGE;
    let end = addr.saturating_add(len).div_ceil(PAGE);
    while page < end {
        let n = (end - page).min(per);
        let want = n * 8;
        // SAFETY: pread writes at most `want` <= buf.len() bytes into `buf`.
        let got = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), want, (page * 8) as i64) };
        if got < 0 {
            set_errno(saved);
            return None;
        }
        let got = got as usize / 8;
        pages += buf[..got * 8]
            .chunks_exact(8)
            .filter(|e| e[7] & 0x80 != 0)
            .count();
        if got < n {
            break;
        }
        page += n;
    }
    set_errno(saved);
    Some(pages)
}

/// Pages of `addr..addr+len` resident in memory, by `mincore(2)` in chunks of `vec.len()`
/// pages (one byte each). A chunk the kernel refuses (unmapped meanwhile) counts nothing.
/// For anonymous memory this is what the process has touched and not given back; for a file
/// mapping it is the file's pages in the page cache, which may exceed what this process maps.
pub fn resident_pages(addr: usize, len: usize, vec: &mut [u8]) -> usize {
    let saved = errno();
    let mut pages = 0;
    let mut at = addr & !(PAGE - 1);
    let end = addr.saturating_add(len);
    while at < end && !vec.is_empty() {
        let n = (end - at).div_ceil(PAGE).min(vec.len());
        // SAFETY: mincore only writes `n` bytes to `vec` (which holds at least that many) and
        // reads no memory of the range itself; a range that is not mapped fails with ENOMEM.
        let r = unsafe { libc::syscall(libc::SYS_mincore, at, n * PAGE, vec.as_mut_ptr()) };
        if r == 0 {
            pages += vec[..n].iter().filter(|&&b| b & 1 != 0).count();
        }
        at = at.saturating_add(n * PAGE);
    }
    set_errno(saved);
    pages
}

/// Installs `handler` for `signo` unless the program already handles that signal. Returns
/// false if it did not install it.
pub fn install_handler(
    signo: c_int,
    handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void),
) -> bool {
    // SAFETY: sigaction structs are plain data; we read the old action before replacing it.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        if libc::sigaction(signo, core::ptr::null(), &mut old) != 0
            || old.sa_sigaction != libc::SIG_DFL
        {
            return false;
        }
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(signo, &sa, core::ptr::null_mut()) == 0
    }
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Default)]
pub struct MallInfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// Calls `f` with each line of `/proc/self/maps` (without the newline) until it returns false.
/// Reads with raw system calls into the caller's buffer; a line longer than it is skipped.
pub fn for_each_maps_line(buf: &mut [u8], f: &mut dyn FnMut(&[u8]) -> bool) {
    for_each_line(c"/proc/self/maps", buf, f);
}

/// Calls `f` with each line of the file at `path`, as [`for_each_maps_line`] does.
pub fn for_each_line(path: &CStr, buf: &mut [u8], f: &mut dyn FnMut(&[u8]) -> bool) {
    let Some(fd) = open_read(path) else {
        return;
    };
    let mut carry = 0usize;
    'read: loop {
        let n = read(fd, &mut buf[carry..]);
        if n == 0 {
            break;
        }
        let filled = carry + n;
        let mut start = 0;
        while let Some(nl) = buf[start..filled].iter().position(|&c| c == b'\n') {
            if !f(&buf[start..start + nl]) {
                break 'read;
            }
            start += nl + 1;
        }
        buf.copy_within(start..filled, 0);
        carry = filled - start;
        if carry == buf.len() {
            carry = 0; // an absurdly long line: drop it
        }
    }
    close(fd);
}

/// A loaded object's executable address range and GNU build id.
#[derive(Clone, Copy)]
pub struct ObjectId {
    pub lo: usize,
    pub hi: usize,
    pub id: [u8; 32],
    pub id_len: usize,
}

impl ObjectId {
    pub const EMPTY: ObjectId = ObjectId {
        lo: 0,
        hi: 0,
        id: [0; 32],
        id_len: 0,
    };
}

struct Collect<'a> {
    out: &'a mut [ObjectId],
    n: usize,
}

extern "C" fn on_object(info: *mut libc::dl_phdr_info, _size: usize, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Collect passed to dl_iterate_phdr below; `info` is valid for this
    // call, and the loader lock it holds keeps the object's segments mapped while we read them.
    let (c, info) = unsafe { (&mut *(arg as *mut Collect<'_>), &*info) };
    if c.n == c.out.len() || info.dlpi_phdr.is_null() {
        return 1;
    }
    // SAFETY: dlpi_phdr points at dlpi_phnum program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let base = info.dlpi_addr as usize;
    let mut obj = ObjectId {
        lo: usize::MAX,
        hi: 0,
        id: [0; 32],
        id_len: 0,
    };
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            obj.lo = obj.lo.min(base + ph.p_vaddr as usize);
            obj.hi = obj.hi.max(base + (ph.p_vaddr + ph.p_memsz) as usize);
        }
        if ph.p_type == libc::PT_NOTE && obj.id_len == 0 {
            // SAFETY: a PT_NOTE segment of a loaded object is mapped and readable.
            let notes = unsafe {
                core::slice::from_raw_parts(
                    (base + ph.p_vaddr as usize) as *const u8,
                    ph.p_memsz as usize,
                )
            };
            if let Some(id) = gnu_build_id(notes) {
                let n = id.len().min(32);
                obj.id[..n].copy_from_slice(&id[..n]);
                obj.id_len = n;
            }
        }
    }
    if obj.lo < obj.hi && obj.id_len > 0 {
        c.out[c.n] = obj;
        c.n += 1;
    }
    0
}

/// The NT_GNU_BUILD_ID descriptor in a block of ELF notes.
pub fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |b: &[u8], i: usize| -> Option<usize> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let align = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name = notes.get(12..12 + namesz)?;
        let desc_at = 12 + align(namesz);
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == 3 && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_at + align(descsz)..)?;
    }
    None
}

/// Build ids of the loaded objects (at most `out.len()`); returns how many were found. Takes
/// the loader's lock through `dl_iterate_phdr`: for dumps only, never on an allocation path.
pub fn loaded_object_ids(out: &mut [ObjectId]) -> usize {
    let mut c = Collect { out, n: 0 };
    // SAFETY: `on_object` matches the callback type and only touches `c` through `arg`.
    unsafe { libc::dl_iterate_phdr(Some(on_object), (&mut c as *mut Collect<'_>).cast()) };
    c.n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_build_ids_of_loaded_objects() {
        let mut objs = [ObjectId {
            lo: 0,
            hi: 0,
            id: [0; 32],
            id_len: 0,
        }; 64];
        let n = loaded_object_ids(&mut objs);
        assert!(n >= 2, "found {n} objects with build ids");
        assert!(objs[..n].iter().all(|o| o.lo < o.hi && o.id_len >= 16));
        let mut lines = 0;
        for_each_maps_line(&mut [0; 4096], &mut |_| {
            lines += 1;
            true
        });
        assert!(lines > 5);
    }

    #[test]
    fn parses_gnu_notes() {
        let mut notes = Vec::new();
        for (name, kind, desc) in [
            (&b"XYZ\0"[..], 1u32, &[1u8, 2, 3][..]),
            (b"GNU\0", 3, &[0xab; 20]),
        ] {
            notes.extend((name.len() as u32).to_ne_bytes());
            notes.extend((desc.len() as u32).to_ne_bytes());
            notes.extend(kind.to_ne_bytes());
            notes.extend(name);
            notes.extend(desc);
            while notes.len() % 4 != 0 {
                notes.push(0);
            }
        }
        assert_eq!(gnu_build_id(&notes), Some(&[0xab; 20][..]));
        assert_eq!(gnu_build_id(&notes[..30]), None);
    }
}
