//! The exported functions: thin shims over the real allocator, one per name we interpose.
//!
//! Each hook: forward to the real function (found by `real.rs`), and, unless this thread is
//! already inside the profiler, subtract the size from the thread's countdown; only when it
//! reaches zero does anything else happen (`profiler::sample`). Frees ask the live table with
//! a read-only probe. Before the real functions are known, allocations come from the
//! bootstrap arena. Symbols are exported only outside `cfg(test)`, so unit tests do not
//! replace their own malloc.

use core::ffi::{c_int, c_void};

use crate::profiler::{self, LIVE};
use crate::real::{
    self, AlignFn, CallocFn, FreeFn, MallocFn, MmapFn, MunmapFn, PosixMemalignFn, ReallocFn,
    UsableFn,
};
use crate::thread;

type MremapVarFn = unsafe extern "C" fn(*mut c_void, usize, usize, c_int, ...) -> *mut c_void;

/// Casts a resolved, non-null slot to its function type.
macro_rules! real_fn {
    ($slot:expr, $ty:ty) => {{
        let p = $slot.get();
        // SAFETY: the slot holds either null (checked by callers before use) or the address
        // dlsym returned for a function with exactly this C signature.
        #[allow(unused_unsafe)]
        let f = unsafe { core::mem::transmute::<*mut c_void, $ty>(p) };
        f
    }};
}

#[inline(always)]
fn clamp(size: usize) -> i64 {
    size.min(i64::MAX as usize) as i64
}

/// Charges `size` bytes of a new block `p` to the countdown; samples when it runs out.
#[inline(always)]
fn account(t: &thread::ThreadState, p: *mut c_void, size: usize) {
    let left = t.bytes_until_sample.get() - clamp(size);
    t.bytes_until_sample.set(left);
    if left <= 0 {
        profiler::sample(t, p, size);
    }
}

/// Runs `f` with the thread marked busy, so that whatever the real allocator calls (mmap
/// for a jemalloc or tcmalloc underneath) is not mistaken for the program's own calls.
macro_rules! busy {
    ($t:expr, $e:expr) => {{
        $t.busy.set($t.busy.get() + 1);
        let r = $e;
        $t.busy.set($t.busy.get() - 1);
        r
    }};
}

#[cold]
fn early_alloc(size: usize, align: usize) -> *mut c_void {
    profiler::init();
    if real::MALLOC.get().is_null() {
        // Inside dlsym during start-up (or no allocator at all): the bootstrap arena.
        return real::bootstrap_alloc(size, align);
    }
    core::ptr::null_mut()
}

/// # Safety
/// C `malloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let f = real::MALLOC.get();
    if f.is_null() {
        let p = early_alloc(size, 16);
        if real::MALLOC.get().is_null() {
            return p;
        }
        // SAFETY: same contract, now that the real functions are known.
        return unsafe { malloc(size) };
    }
    let f = real_fn!(real::MALLOC, MallocFn);
    let t = thread::current();
    if t.busy.get() != 0 {
        // SAFETY: forwarding the caller's arguments to the real malloc.
        return unsafe { f(size) };
    }
    // SAFETY: as above.
    let p = busy!(t, unsafe { f(size) });
    account(t, p, size);
    p
}

/// # Safety
/// C `free` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() || real::in_bootstrap(p) {
        return;
    }
    if real::FREE.get().is_null() {
        return; // cannot happen for a pointer we did not hand out; leak rather than crash
    }
    let f = real_fn!(real::FREE, FreeFn);
    let t = thread::current();
    if t.busy.get() == 0 && LIVE.may_contain(p as usize) {
        profiler::forget(p as usize);
    }
    // SAFETY: forwarding to the real free.
    busy!(t, unsafe { f(p) })
}

/// # Safety
/// C `calloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn calloc(n: usize, m: usize) -> *mut c_void {
    let Some(size) = n.checked_mul(m) else {
        crate::sys::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    if real::CALLOC.get().is_null() {
        let p = early_alloc(size, 16);
        if real::CALLOC.get().is_null() {
            return p; // bootstrap memory is zeroed
        }
        // SAFETY: same contract, now resolved.
        return unsafe { calloc(n, m) };
    }
    let f = real_fn!(real::CALLOC, CallocFn);
    let t = thread::current();
    if t.busy.get() != 0 {
        // SAFETY: forwarding.
        return unsafe { f(n, m) };
    }
    // SAFETY: forwarding.
    let p = busy!(t, unsafe { f(n, m) });
    account(t, p, size);
    p
}

/// # Safety
/// C `realloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: realloc(NULL, n) is malloc(n).
        return unsafe { malloc(size) };
    }
    if real::in_bootstrap(p) {
        // SAFETY: moving a bootstrap block into the real heap; the old block stays valid.
        let q = unsafe { malloc(size) };
        if !q.is_null() {
            let n = real::bootstrap_size(p).min(size);
            // SAFETY: both blocks are at least `n` bytes and distinct.
            unsafe { core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), n) };
        }
        return q;
    }
    if real::REALLOC.get().is_null() {
        return core::ptr::null_mut();
    }
    let f = real_fn!(real::REALLOC, ReallocFn);
    let t = thread::current();
    if t.busy.get() != 0 {
        // SAFETY: forwarding.
        return unsafe { f(p, size) };
    }
    // The old block leaves the live table before the real realloc can free it (so that no
    // other thread can be handed the same address while it is still recorded).
    let old = if LIVE.may_contain(p as usize) {
        profiler::forget(p as usize)
    } else {
        None
    };
    // SAFETY: forwarding.
    let q = busy!(t, unsafe { f(p, size) });
    if q.is_null() {
        if size != 0
            && let Some(b) = old
        {
            profiler::restore(p as usize, b); // failed: the old block is still there
        }
        return q;
    }
    account(t, q, size);
    q
}

/// # Safety
/// glibc `reallocarray` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, m: usize) -> *mut c_void {
    match n.checked_mul(m) {
        // SAFETY: same contract as realloc with the product.
        Some(size) => unsafe { realloc(p, size) },
        None => {
            crate::sys::set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// # Safety
/// POSIX `posix_memalign` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if real::POSIX_MEMALIGN.get().is_null() {
        if !align.is_power_of_two() || align < core::mem::size_of::<usize>() {
            return libc::EINVAL;
        }
        let p = early_alloc(size, align);
        if real::POSIX_MEMALIGN.get().is_null() {
            if p.is_null() {
                return libc::ENOMEM;
            }
            // SAFETY: `out` is writable per the contract.
            unsafe { *out = p };
            return 0;
        }
        // SAFETY: same contract, now resolved.
        return unsafe { posix_memalign(out, align, size) };
    }
    let f = real_fn!(real::POSIX_MEMALIGN, PosixMemalignFn);
    let t = thread::current();
    if t.busy.get() != 0 {
        // SAFETY: forwarding.
        return unsafe { f(out, align, size) };
    }
    // SAFETY: forwarding.
    let r = busy!(t, unsafe { f(out, align, size) });
    if r == 0 {
        // SAFETY: on success the real function stored the block in `*out`.
        account(t, unsafe { *out }, size);
    }
    r
}

/// Shared body of aligned_alloc, memalign, valloc and pvalloc.
#[inline(always)]
fn aligned(
    slot: &real::Slot,
    align: usize,
    size: usize,
    call: impl FnOnce(AlignFn) -> *mut c_void,
) -> *mut c_void {
    if slot.get().is_null() {
        let p = early_alloc(size, align);
        if slot.get().is_null() {
            return p;
        }
    }
    let f = real_fn!(slot, AlignFn);
    let t = thread::current();
    if t.busy.get() != 0 {
        return call(f);
    }
    let p = busy!(t, call(f));
    account(t, p, size);
    p
}

/// # Safety
/// C11 `aligned_alloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    aligned(&real::ALIGNED_ALLOC, align, size, |f| unsafe {
        f(align, size)
    })
}

/// # Safety
/// `memalign` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarding the caller's arguments.
    aligned(&real::MEMALIGN, align, size, |f| unsafe { f(align, size) })
}

/// # Safety
/// `valloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(&real::VALLOC, crate::sys::PAGE, size, |f| {
        // SAFETY: valloc takes one argument; the slot holds valloc, called with its own type.
        let f: MallocFn = unsafe { core::mem::transmute::<AlignFn, MallocFn>(f) };
        // SAFETY: forwarding.
        unsafe { f(size) }
    })
}

/// # Safety
/// `pvalloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    aligned(&real::PVALLOC, crate::sys::PAGE, size, |f| {
        // SAFETY: as for valloc.
        let f: MallocFn = unsafe { core::mem::transmute::<AlignFn, MallocFn>(f) };
        // SAFETY: forwarding.
        unsafe { f(size) }
    })
}

/// # Safety
/// `malloc_usable_size` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    if real::in_bootstrap(p) {
        return real::bootstrap_size(p);
    }
    if real::USABLE_SIZE.get().is_null() {
        return 0;
    }
    // SAFETY: forwarding.
    unsafe { real_fn!(real::USABLE_SIZE, UsableFn)(p) }
}

// ---- mappings ---------------------------------------------------------------------------

fn raw_mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: the caller's own mmap request, passed to the kernel unchanged.
    let r = unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) };
    if r < 0 && r > -4096 {
        libc::MAP_FAILED
    } else {
        r as usize as *mut c_void
    }
}

#[inline(always)]
fn mmap_common(
    slot: &real::Slot,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    let t = thread::current();
    let call = || {
        if slot.get().is_null() {
            raw_mmap(addr, len, prot, flags, fd, off)
        } else {
            // SAFETY: forwarding to the real mmap.
            unsafe { real_fn!(slot, MmapFn)(addr, len, prot, flags, fd, off) }
        }
    };
    if t.busy.get() != 0 || !profiler::TRACK_MMAP.load(core::sync::atomic::Ordering::Relaxed) {
        return call();
    }
    let p = busy!(t, call());
    if p != libc::MAP_FAILED {
        profiler::on_map(p as usize, len, prot);
    }
    p
}

/// # Safety
/// POSIX `mmap` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    mmap_common(&real::MMAP, addr, len, prot, flags, fd, off)
}

/// # Safety
/// glibc `mmap64` contract (what JDKs import).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    mmap_common(&real::MMAP64, addr, len, prot, flags, fd, off)
}

/// # Safety
/// POSIX `munmap` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    let t = thread::current();
    if t.busy.get() == 0 && profiler::TRACK_MMAP.load(core::sync::atomic::Ordering::Relaxed) {
        // Forget the range first: once the kernel has unmapped it, another thread may be given
        // the same addresses, and its new mapping must not be erased by our late bookkeeping.
        profiler::on_unmap(addr as usize, len);
    }
    if real::MUNMAP.get().is_null() {
        // SAFETY: the caller's own munmap request.
        return unsafe { libc::syscall(libc::SYS_munmap, addr, len) as c_int };
    }
    // SAFETY: forwarding.
    busy!(t, unsafe { real_fn!(real::MUNMAP, MunmapFn)(addr, len) })
}

/// # Safety
/// Linux `mremap` contract; `new_addr` is read only with MREMAP_FIXED, like the kernel does.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let t = thread::current();
    let track =
        t.busy.get() == 0 && profiler::TRACK_MMAP.load(core::sync::atomic::Ordering::Relaxed);
    let call = || {
        if real::MREMAP.get().is_null() {
            // SAFETY: the caller's own request, passed to the kernel.
            let r =
                unsafe { libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr) };
            if r < 0 && r > -4096 {
                libc::MAP_FAILED
            } else {
                r as usize as *mut c_void
            }
        } else {
            // SAFETY: forwarding to the real (variadic) mremap with the same arguments.
            unsafe { real_fn!(real::MREMAP, MremapVarFn)(old, old_len, new_len, flags, new_addr) }
        }
    };
    if !track {
        return call();
    }
    profiler::on_unmap(old as usize, old_len);
    let q = busy!(t, call());
    if q != libc::MAP_FAILED {
        profiler::on_map(q as usize, new_len, libc::PROT_READ);
    } else {
        // The old range is still mapped; it is now attributed to this mremap call.
        let saved = crate::sys::errno();
        profiler::on_map(old as usize, old_len, libc::PROT_READ);
        crate::sys::set_errno(saved);
    }
    q
}
