//! The exported functions: thin shims over the real allocator, one per name we interpose.
//!
//! Each allocating hook forwards to the real function (found by `real.rs`) and subtracts the
//! size from the thread's countdown; only when it reaches zero does anything else happen
//! (`profiler::sample`). `free` jumps through the live table's jump table (one load, no TLS),
//! whose slot for the block's address (about its page) is the real free unless a live sample
//! lies in that slot. Before the real functions are known, allocations come from the bootstrap
//! arena, whose blocks are marked like samples so that `free` can recognize them. Symbols are
//! exported only outside `cfg(test)`, so unit tests do not replace their own malloc.

use core::ffi::{c_int, c_void};

use crate::profiler::{self, LIVE};
use crate::real::{
    self, AlignFn, CallocFn, FreeFn, MallocFn, MmapFn, MunmapFn, PosixMemalignFn, ReallocFn,
    UsableFn,
};
use crate::{thread, unwind};

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

/// Charges `size` bytes of a new block `p` to the countdown; samples when it runs out.
/// Returns `p`, so that hooks can end with it.
///
/// No reentrancy check is needed here: an allocation made while the profiler itself runs on
/// this thread reaches `profiler::sample`, which sees the thread busy (sampled mode parks the
/// countdown, so such allocations rarely get there at all).
#[inline(always)]
fn account(p: *mut c_void, size: usize) -> *mut c_void {
    // A size above i64::MAX takes the slow path, which undoes the charge of a failed request.
    if thread::charge_countdown(size) {
        // Captured here, in the hook's own frame, so the walk starts at our caller's caller.
        let r = unwind::Regs::capture();
        // Not a tail call: the walk reads this frame, which must stay alive until it is done.
        return core::hint::black_box(profiler::sample(p, size, r.pc, r.sp, r.bp));
    }
    p
}

/// Charges `size` bytes to the thread's countdown *before* the allocation is made; true when
/// this allocation is to be sampled (the portable form of what the x86-64 fast paths below
/// do in assembly).
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn charge(size: usize) -> bool {
    thread::charge_countdown(size)
}

/// Records the block an out-of-line `*_sampled` function just got. Inlined into that
/// function, whose frame is where the walk starts (the hook's frame is already gone: it
/// tail-called us), and not a tail call itself, so that the frame stays alive for the walk.
#[inline(always)]
fn sampled(p: *mut c_void, size: usize) -> *mut c_void {
    let r = unwind::Regs::capture();
    core::hint::black_box(profiler::sample(p, size, r.pc, r.sp, r.bp))
}

/// Before the real functions are known: start up, and if we are inside that start-up
/// (dlsym allocating), serve from the bootstrap arena.
#[cold]
fn early_alloc(size: usize, align: usize) -> Option<*mut c_void> {
    // The fast path charged this request, and the caller may charge it again through the
    // hook: start from zero, so that the next allocation comes back to a slow path (a
    // countdown below zero would never be reached again: the fast path compares unsigned).
    thread::current().bytes_until_sample.set(0);
    profiler::init();
    if real::resolved() && !real::MALLOC.get().is_null() {
        return None;
    }
    let p = real::bootstrap_alloc(size, align);
    if !p.is_null() {
        LIVE.filter_add(p as usize); // so that free() takes the slow path and ignores it
    }
    Some(p)
}

// ---- the fast paths: malloc, calloc, free ---------------------------------------------------
//
// The sample decision is made *before* the real call: the thread's countdown drops by the
// size, and only when the size reaches the countdown (compared unsigned, so that a size that
// cannot be allocated, e.g. malloc(SIZE_MAX - 100), is no negative charge that raises the
// countdown: it goes to the slow path, which undoes the charge of a failed request) does the
// call leave the fast path. A countdown already below zero (a signal handler that allocates
// between an interrupted fast path's charge and its slow path) goes there too (`js`). Deciding first lets the
// common case end in a jump to the real function: no stack frame, no saved registers,
// nothing to do afterwards. (If the real call then fails, the slow path sees a null block and
// records nothing.) `free` jumps through its slot of the live table's jump table: one load, no
// TLS.
//
// No reentrancy check is needed: an allocation made while the profiler itself runs on a thread
// reaches `profiler::sample`, which sees the thread busy.
//
// On x86-64 these three are written out as naked functions: rustc reaches a shared object's
// statics through the GOT (a load per static per call) and tests a function pointer before
// calling it; here the jump targets (`real::*_JUMP`, never null) and free's jump table are
// addressed relative to the instruction pointer. malloc is 5 instructions, calloc 7, free 4.
//
// The slow paths are reached by a jump from a frameless function, so the return address on
// their stack is the application's: the walk starts in their own frame, which stays alive
// until it is done (`sampled` is not a tail call).

/// # Safety
/// C `malloc` contract.
#[cfg(target_arch = "x86_64")]
#[cfg_attr(not(test), unsafe(no_mangle))]
// SAFETY: the body only touches this thread's countdown (the first field of `jeprof_tls`,
// initial-exec TLS) and leaves through a jump with the caller's registers and stack intact.
#[unsafe(naked)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    core::arch::naked_asm!(
        ".cfi_startproc",
        "mov rax, qword ptr [rip + jeprof_tls@GOTTPOFF]",
        "sub qword ptr fs:[rax], rdi",
        "jbe {slow}",
        "js {slow}",
        "jmp qword ptr [rip + {next}]",
        ".cfi_endproc",
        slow = sym malloc_slow,
        next = sym real::MALLOC_JUMP,
    )
}

/// # Safety
/// C `malloc` contract.
#[cfg(not(target_arch = "x86_64"))]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if charge(size) {
        // SAFETY: same contract.
        return unsafe { malloc_slow(size) };
    }
    // SAFETY: the jump slot holds the real malloc or the start-up function, both with this
    // signature; forwarding the caller's argument.
    unsafe { core::mem::transmute::<*mut c_void, MallocFn>(real::MALLOC_JUMP.get())(size) }
}

/// `malloc` whose countdown ran out: allocate, then sample.
#[inline(never)]
unsafe extern "C" fn malloc_slow(size: usize) -> *mut c_void {
    let f = real::MALLOC.get();
    if f.is_null() {
        return malloc_unresolved(size);
    }
    // SAFETY: the real malloc (non-null, resolved by dlsym with this signature).
    let p = unsafe { core::mem::transmute::<*mut c_void, MallocFn>(f)(size) };
    sampled(p, size)
}

/// `malloc` before the real functions are known: start up, or serve from the bootstrap
/// arena while inside that start-up (dlsym allocating).
#[cold]
#[inline(never)]
pub extern "C" fn malloc_unresolved(size: usize) -> *mut c_void {
    if let Some(p) = early_alloc(size, 16) {
        return p;
    }
    // SAFETY: resolved now; same contract.
    unsafe { malloc(size) }
}

/// # Safety
/// C `calloc` contract.
#[cfg(target_arch = "x86_64")]
#[cfg_attr(not(test), unsafe(no_mangle))]
// SAFETY: as for malloc; `rax` and `rcx` are scratch registers, and the arguments are passed
// on untouched. (The charge is the wrapped product; the real calloc rejects an overflow, and
// the slow path then sees a null block.)
#[unsafe(naked)]
pub unsafe extern "C" fn calloc(n: usize, m: usize) -> *mut c_void {
    core::arch::naked_asm!(
        ".cfi_startproc",
        "mov rax, rdi",
        "imul rax, rsi",
        "mov rcx, qword ptr [rip + jeprof_tls@GOTTPOFF]",
        "sub qword ptr fs:[rcx], rax",
        "jbe {slow}",
        "js {slow}",
        "jmp qword ptr [rip + {next}]",
        ".cfi_endproc",
        slow = sym calloc_slow,
        next = sym real::CALLOC_JUMP,
    )
}

/// # Safety
/// C `calloc` contract.
#[cfg(not(target_arch = "x86_64"))]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn calloc(n: usize, m: usize) -> *mut c_void {
    if charge(n.wrapping_mul(m)) {
        // SAFETY: same contract.
        return unsafe { calloc_slow(n, m) };
    }
    // SAFETY: as for malloc's jump slot.
    unsafe { core::mem::transmute::<*mut c_void, CallocFn>(real::CALLOC_JUMP.get())(n, m) }
}

/// `calloc` whose countdown ran out: allocate, then sample.
#[inline(never)]
unsafe extern "C" fn calloc_slow(n: usize, m: usize) -> *mut c_void {
    let f = real::CALLOC.get();
    if f.is_null() {
        return calloc_unresolved(n, m);
    }
    // SAFETY: the real calloc, forwarding the caller's arguments (it checks the product).
    let p = unsafe { core::mem::transmute::<*mut c_void, CallocFn>(f)(n, m) };
    sampled(p, n.wrapping_mul(m))
}

/// `calloc` before the real functions are known.
#[cold]
#[inline(never)]
pub extern "C" fn calloc_unresolved(n: usize, m: usize) -> *mut c_void {
    let Some(size) = n.checked_mul(m) else {
        crate::sys::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    if let Some(p) = early_alloc(size, 16) {
        return p; // bootstrap memory is zeroed
    }
    // SAFETY: resolved now; same contract.
    unsafe { calloc(n, m) }
}

/// # Safety
/// C `free` contract.
#[cfg(target_arch = "x86_64")]
#[cfg_attr(not(test), unsafe(no_mangle))]
// SAFETY: reads one slot of the jump table (the index is 13 bits by construction; `LiveTable`
// and `Routes` are `repr(C)` with the slots first), whose every slot holds a function with
// free's signature, and jumps there with the caller's registers and stack intact. NULL needs
// no test: the filtered path checks it, the real free ignores it.
#[unsafe(naked)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    core::arch::naked_asm!(
        ".cfi_startproc",
        "imul eax, edi, {mul}",
        "shr eax, {shift}",
        "lea rcx, [rip + {live}]",
        "jmp qword ptr [rcx + 8 * rax]",
        ".cfi_endproc",
        mul = const crate::route::ROUTE_MUL as i32,
        shift = const 32 - crate::route::ROUTE_BITS,
        live = sym profiler::LIVE,
    )
}

/// # Safety
/// C `free` contract.
#[cfg(not(target_arch = "x86_64"))]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: every slot holds the real free, the start-up function or `free_filtered`, all
    // with this signature.
    unsafe { core::mem::transmute::<*mut c_void, FreeFn>(LIVE.free_target(p as usize))(p) }
}

/// `free` of a block whose jump-table slot is marked (sampled mode): it may be a live sample
/// or a bootstrap block, but most blocks sent here merely lie near one. The byte filter,
/// indexed by 16-byte granule, answers for those without the table's lock.
///
/// On x86-64 a naked function like `free`: the filter and the default target (the real free)
/// are addressed relative to the instruction pointer, where compiled code went through the
/// GOT for `LIVE` and through `real::FREE`'s slot, two more cold lines per call. Exact mode
/// does not come here (every slot goes to `free_marked`), so there is no mode to test either.
///
/// # Safety
/// C `free` contract.
#[cfg(target_arch = "x86_64")]
// SAFETY: reads one byte of the filter (the index is masked to its size; `LiveTable` is
// `repr(C)`, offsets from `offset_of!`) and the default target, a function with free's
// signature, and jumps with the caller's registers and stack intact.
#[unsafe(naked)]
pub unsafe extern "C" fn free_filtered(p: *mut c_void) {
    core::arch::naked_asm!(
        ".cfi_startproc",
        "mov eax, edi",
        "shr eax, {shift}",
        "and eax, {mask}",
        "lea rcx, [rip + {live}]",
        "cmp byte ptr [rcx + rax + {filter}], 0",
        "jne {marked}",
        "jmp qword ptr [rcx + {default}]",
        ".cfi_endproc",
        shift = const crate::live::FILTER_SHIFT,
        mask = const crate::live::FILTER_MASK,
        live = sym profiler::LIVE,
        filter = const crate::live::FILTER_OFFSET,
        default = const crate::live::DEFAULT_FREE_OFFSET,
        marked = sym free_marked,
    )
}

/// # Safety
/// C `free` contract.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe extern "C" fn free_filtered(p: *mut c_void) {
    if !LIVE.filter_hit(p as usize) {
        // SAFETY: not a bootstrap block (those are in the filter): the real allocator's.
        return unsafe { free_unresolved(p) };
    }
    // SAFETY: same contract.
    unsafe { free_marked(p) }
}

/// `free` of a block that may be a live sample or a bootstrap block: the filter said yes, or
/// exact mode, where every slot comes here.
///
/// # Safety
/// C `free` contract.
#[inline(never)]
pub unsafe extern "C" fn free_marked(p: *mut c_void) {
    if p.is_null() || profiler::free_slow(p as usize) {
        return; // NULL, or a bootstrap block: not the real allocator's
    }
    // SAFETY: the caller's block, for the real free.
    unsafe { free_unresolved(p) };
}

/// `free` through the resolved slot; before start-up there is no allocator to return a block
/// to, and leaking beats crashing.
///
/// # Safety
/// C `free` contract.
pub unsafe extern "C" fn free_unresolved(p: *mut c_void) {
    let f = real::FREE.get();
    if !f.is_null() {
        // SAFETY: the real free, for a block it handed out.
        unsafe { core::mem::transmute::<*mut c_void, FreeFn>(f)(p) }
    }
}

/// # Safety
/// C `realloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: realloc(NULL, n) is malloc(n).
        return unsafe { malloc(size) };
    }
    let mut old = None;
    if LIVE.may_hold(p as usize) {
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
        // The old block leaves the live table before the real realloc can free it, so that
        // no other thread can be handed the same address while it is still recorded.
        old = Some(profiler::forget(p as usize));
    }
    if real::REALLOC.get().is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: forwarding.
    let q = unsafe { real_fn!(real::REALLOC, ReallocFn)(p, size) };
    if q.is_null() {
        if size != 0
            && let Some(r) = old
        {
            profiler::restore(p as usize, r); // failed: the old block is still there
        }
        return q;
    }
    account(q, size)
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
        if let Some(p) = early_alloc(size, align) {
            if p.is_null() {
                return libc::ENOMEM;
            }
            // SAFETY: `out` is writable per the contract.
            unsafe { *out = p };
            return 0;
        }
    }
    // SAFETY: forwarding.
    let r = unsafe { real_fn!(real::POSIX_MEMALIGN, PosixMemalignFn)(out, align, size) };
    if r == 0 {
        // SAFETY: on success the real function stored the block in `*out`.
        account(unsafe { *out }, size);
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
    if slot.get().is_null()
        && let Some(p) = early_alloc(size, align)
    {
        return p;
    }
    let p = call(real_fn!(slot, AlignFn));
    account(p, size)
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
    let p = call();
    if p != libc::MAP_FAILED {
        profiler::on_map(p as usize, len, prot, unwind::Regs::capture());
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
    unsafe { real_fn!(real::MUNMAP, MunmapFn)(addr, len) }
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
    let recorded = profiler::on_unmap(old as usize, old_len);
    let q = call();
    if q != libc::MAP_FAILED {
        profiler::on_map(
            q as usize,
            new_len,
            libc::PROT_READ,
            unwind::Regs::capture(),
        );
    } else if recorded != 0 {
        // The old range is still mapped (if it was: EFAULT says it was not, and nothing was
        // recorded for it then); it is now attributed to this mremap call.
        let saved = crate::sys::errno();
        profiler::on_map(
            old as usize,
            old_len,
            libc::PROT_READ,
            unwind::Regs::capture(),
        );
        crate::sys::set_errno(saved);
    }
    q
}

/// `dlclose`, forwarded; when an object was unloaded, the unwinder forgets the rules it cached
/// by code address (and every thread's memorized walk), since other code may be loaded at the
/// same addresses. (`dlopen` is not interposed: it resolves its caller's `DT_RPATH` from its
/// return address, which would then be ours.)
///
/// # Safety
/// C `dlclose` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dlclose(handle: *mut c_void) -> c_int {
    if real::DLCLOSE.get().is_null() {
        real::resolve_all(); // called before start-up; not from inside an allocation
        if real::DLCLOSE.get().is_null() {
            return -1;
        }
    }
    // SAFETY: forwarding to the real dlclose with the caller's handle.
    let r = unsafe { real_fn!(real::DLCLOSE, real::DlcloseFn)(handle) };
    if r == 0 {
        profiler::code_unloaded();
    }
    r
}

/// `_exit`, after the final dump that the library destructors (which `_exit` skips) would have
/// written; never in a `vfork` child (`profiler::at_quick_exit`).
///
/// # Safety
/// C `_exit` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    profiler::at_quick_exit();
    real::exit_now(status)
}

/// `_Exit`: the same as `_exit`.
///
/// # Safety
/// C `_Exit` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[allow(non_snake_case)]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    profiler::at_quick_exit();
    real::exit_now(status)
}
