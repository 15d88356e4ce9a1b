//! Call stacks of the allocating thread, innermost first, without the profiler's own frames.
//!
//! Uses libgcc's `_Unwind_Backtrace` (DWARF CFI from `.eh_frame`). On glibc ≥ 2.35 libgcc finds
//! unwind tables with `_dl_find_object`, which takes no loader lock; code without unwind
//! tables (JIT) ends the walk instead of being guessed at. It installs no signal handler and
//! rewrites nothing. Frames are return addresses (the analyzer looks them up at `addr - 1`).
//!
//! Our own frames (the hook, the slow path, this module) are recognized by address: the
//! executable segment(s) of this library, found once at start-up from its ELF program headers.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type TraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int;

#[link(name = "gcc_s")]
unsafe extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIP(ctx: *mut UnwindContext) -> usize;
}

const URC_NO_REASON: c_int = 0;
const URC_END_OF_STACK: c_int = 5;

static SELF_LO: AtomicUsize = AtomicUsize::new(0);
static SELF_HI: AtomicUsize = AtomicUsize::new(0);

/// Finds this library's executable address range. Called once from the constructor.
pub fn init() {
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr only writes `info`; the address is one of our own functions.
    if unsafe { libc::dladdr(init as *const c_void, &mut info) } == 0 || info.dli_fbase.is_null() {
        return;
    }
    let base = info.dli_fbase as usize;
    // SAFETY: dli_fbase is the load address of a mapped ELF object, whose ELF header and
    // program headers are mapped (they are in the first PT_LOAD segment).
    let (lo, hi) = unsafe { exec_range(base) };
    SELF_LO.store(lo, Ordering::Relaxed);
    SELF_HI.store(hi, Ordering::Relaxed);
}

/// # Safety
/// `base` must be the load address of a mapped ELF64 object.
pub unsafe fn exec_range(base: usize) -> (usize, usize) {
    // SAFETY: per the contract, the ELF header is readable at `base`.
    let eh = unsafe { &*(base as *const libc::Elf64_Ehdr) };
    let (mut lo, mut hi) = (usize::MAX, 0);
    for i in 0..eh.e_phnum as usize {
        // SAFETY: program header i lies within the mapped header area.
        let ph = unsafe {
            &*((base + eh.e_phoff as usize + i * eh.e_phentsize as usize)
                as *const libc::Elf64_Phdr)
        };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            lo = lo.min(base + ph.p_vaddr as usize);
            hi = hi.max(base + (ph.p_vaddr + ph.p_memsz) as usize);
        }
    }
    if lo > hi { (0, 0) } else { (lo, hi) }
}

#[inline]
fn is_self(ip: usize) -> bool {
    ip >= SELF_LO.load(Ordering::Relaxed) && ip < SELF_HI.load(Ordering::Relaxed)
}

struct Collect<'a> {
    out: &'a mut [usize],
    len: usize,
    skipping: bool,
}

extern "C" fn on_frame(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Collect` passed by `backtrace` below, alive for the whole walk.
    let c = unsafe { &mut *(arg as *mut Collect<'_>) };
    // SAFETY: `ctx` is the context libgcc hands to this callback.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 {
        return URC_END_OF_STACK;
    }
    if c.skipping {
        if is_self(ip) {
            return URC_NO_REASON;
        }
        c.skipping = false;
    }
    c.out[c.len] = ip;
    c.len += 1;
    if c.len == c.out.len() {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// Fills `out` with the caller's stack (innermost first, our frames skipped); returns the
/// number of frames. Always at least 1 when `out` is non-empty: an empty walk yields one
/// placeholder frame so that every dump record names something.
pub fn backtrace(out: &mut [usize]) -> usize {
    if out.is_empty() {
        return 0;
    }
    let mut c = Collect {
        out,
        len: 0,
        skipping: true,
    };
    // SAFETY: `on_frame` matches the callback ABI and only touches `c` through `arg`.
    unsafe { _Unwind_Backtrace(on_frame, (&mut c as *mut Collect<'_>).cast()) };
    let n = c.len;
    if n == 0 {
        out[0] = unknown_stack as *const () as usize + 1;
        return 1;
    }
    n
}

/// Named frame for allocations whose stack could not be walked (never called).
#[inline(never)]
pub extern "C" fn unknown_stack() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn depth_probe(n: usize, out: &mut [usize]) -> usize {
        if n == 0 {
            backtrace(out)
        } else {
            std::hint::black_box(depth_probe(n - 1, out))
        }
    }

    #[test]
    fn walks_the_test_thread() {
        // In the test binary the whole program counts as "self" only after init(); without it
        // nothing is skipped and we see this function's callers.
        let mut buf = [0usize; 64];
        let n = depth_probe(5, &mut buf);
        assert!(n >= 6, "got {n} frames");
        assert!(buf[..n].iter().all(|&f| f != 0));
        let mut one = [0usize; 1];
        assert_eq!(backtrace(&mut one), 1);
    }
}
