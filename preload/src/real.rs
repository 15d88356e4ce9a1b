//! The next definitions of the functions we interpose, found with `dlsym(RTLD_NEXT, …)`,
//! and the bootstrap arena that serves allocations made before they are known.
//!
//! `dlsym` itself may call `calloc`/`malloc` (for its error buffer) before we know where the
//! real ones are. Those calls are served from a small static arena; `free` recognizes its
//! blocks and ignores them, `realloc` copies them out. Works on top of glibc, jemalloc or
//! tcmalloc alike, because we never assume which allocator is next.

use core::ffi::{CStr, c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

pub type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
pub type FreeFn = unsafe extern "C" fn(*mut c_void);
pub type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
pub type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
pub type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
pub type AlignFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
pub type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;
pub type MmapFn = unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, i64) -> *mut c_void;
pub type MunmapFn = unsafe extern "C" fn(*mut c_void, usize) -> c_int;
pub type DlcloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type MremapFn =
    unsafe extern "C" fn(*mut c_void, usize, usize, c_int, *mut c_void) -> *mut c_void;

/// One resolved function pointer. Null until `resolve_all` ran.
pub struct Slot(AtomicPtr<c_void>);

impl Slot {
    const fn new() -> Self {
        Slot(AtomicPtr::new(core::ptr::null_mut()))
    }
    #[inline(always)]
    pub fn get(&self) -> *mut c_void {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where the exported `malloc`/`calloc` go on their fast path: a start-up function
/// until `resolve_all` stores the real one. Never null, so the fast path is a single indirect
/// jump with no test. Each on its own cache line, which nothing writes after start-up: a
/// static written at run time next to it would make every call a cache miss on other cores.
#[repr(C, align(64))]
pub struct Jump(AtomicPtr<c_void>);

impl Jump {
    const fn to(f: *mut c_void) -> Self {
        Jump(AtomicPtr::new(f))
    }
    #[inline(always)]
    pub fn get(&self) -> *mut c_void {
        self.0.load(Ordering::Relaxed)
    }
    fn set_if_found(&self, f: *mut c_void) {
        if !f.is_null() {
            self.0.store(f, Ordering::Release);
        }
    }
}

// `free`'s targets are a table of them, one per slot of address space: `route.rs`.
pub static MALLOC_JUMP: Jump = Jump::to(crate::hooks::malloc_unresolved as *mut c_void);
pub static CALLOC_JUMP: Jump = Jump::to(crate::hooks::calloc_unresolved as *mut c_void);

pub static MALLOC: Slot = Slot::new();
pub static FREE: Slot = Slot::new();
pub static CALLOC: Slot = Slot::new();
pub static REALLOC: Slot = Slot::new();
pub static POSIX_MEMALIGN: Slot = Slot::new();
pub static ALIGNED_ALLOC: Slot = Slot::new();
pub static MEMALIGN: Slot = Slot::new();
pub static VALLOC: Slot = Slot::new();
pub static PVALLOC: Slot = Slot::new();
pub static USABLE_SIZE: Slot = Slot::new();
pub static MMAP: Slot = Slot::new();
pub static MMAP64: Slot = Slot::new();
pub static MUNMAP: Slot = Slot::new();
pub static MREMAP: Slot = Slot::new();
pub static DLCLOSE: Slot = Slot::new();
pub static EXIT: Slot = Slot::new();
pub static DLOPEN: Slot = Slot::new();

const UNRESOLVED: u8 = 0;
const RESOLVING: u8 = 1;
const RESOLVED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);

/// Where the real functions are looked up: after us (`RTLD_NEXT`) when preloaded; in the
/// global scope (`RTLD_DEFAULT`, which a library loaded with `dlopen` is not part of) when
/// attached to a running process, whose own objects call through the slots we patch.
static ATTACHED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Resolve in the global scope from now on (before `resolve_all`, when attaching).
pub fn set_attached() {
    ATTACHED.store(true, Ordering::Relaxed);
}

fn lookup(names: &[&CStr]) -> *mut c_void {
    let handle = if ATTACHED.load(Ordering::Relaxed) {
        libc::RTLD_DEFAULT
    } else {
        libc::RTLD_NEXT
    };
    for name in names {
        // SAFETY: a pseudo-handle with a NUL-terminated name; dlsym has no other preconditions.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if !p.is_null() {
            return p;
        }
    }
    core::ptr::null_mut()
}

/// Resolves every real function once. Called from the library constructor, or from the
/// first hook that runs before it. Returns false if the allocator could not be found, in
/// which case the caller disables profiling (and keeps forwarding through what exists).
pub fn resolve_all() -> bool {
    if STATE.load(Ordering::Acquire) == RESOLVED {
        return true;
    }
    if STATE
        .compare_exchange(UNRESOLVED, RESOLVING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread is resolving (or we are re-entered from dlsym, in which case the
        // caller is already being served by the bootstrap arena and does not get here).
        while STATE.load(Ordering::Acquire) != RESOLVED {
            crate::sys::sched_yield();
        }
        return !MALLOC.get().is_null();
    }
    let _busy = crate::thread::Busy::enter();
    let set = |slot: &Slot, names: &[&CStr]| slot.0.store(lookup(names), Ordering::Relaxed);
    set(&MALLOC, &[c"malloc", c"__libc_malloc"]);
    set(&FREE, &[c"free", c"__libc_free"]);
    set(&CALLOC, &[c"calloc", c"__libc_calloc"]);
    set(&REALLOC, &[c"realloc", c"__libc_realloc"]);
    set(&POSIX_MEMALIGN, &[c"posix_memalign"]);
    set(&ALIGNED_ALLOC, &[c"aligned_alloc"]);
    set(&MEMALIGN, &[c"memalign", c"__libc_memalign"]);
    set(&VALLOC, &[c"valloc", c"__libc_valloc"]);
    set(&PVALLOC, &[c"pvalloc", c"__libc_pvalloc"]);
    set(&USABLE_SIZE, &[c"malloc_usable_size"]);
    set(&MMAP, &[c"mmap"]);
    set(&MMAP64, &[c"mmap64", c"mmap"]);
    set(&MUNMAP, &[c"munmap"]);
    set(&MREMAP, &[c"mremap"]);
    set(&DLCLOSE, &[c"dlclose"]);
    set(&EXIT, &[c"_exit"]);
    set(&DLOPEN, &[c"dlopen"]);
    MALLOC_JUMP.set_if_found(MALLOC.get());
    CALLOC_JUMP.set_if_found(CALLOC.get());
    STATE.store(RESOLVED, Ordering::Release);
    !MALLOC.get().is_null() && !FREE.get().is_null()
}

/// Ends the process through the real `_exit` (or the system call, before start-up).
pub fn exit_now(status: core::ffi::c_int) -> ! {
    let f = EXIT.get();
    if !f.is_null() {
        // SAFETY: dlsym's `_exit`, with its C signature; it does not return.
        unsafe {
            core::mem::transmute::<*mut c_void, unsafe extern "C" fn(core::ffi::c_int) -> !>(f)(
                status,
            )
        }
    }
    loop {
        // SAFETY: exit_group ends the process; it does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, status) };
    }
}

/// True once `resolve_all` has finished.
pub fn resolved() -> bool {
    STATE.load(Ordering::Acquire) == RESOLVED
}

// ---- bootstrap arena -------------------------------------------------------------------

const ARENA_SIZE: usize = 256 * 1024;
const HEADER: usize = 16;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_SIZE]);

static mut ARENA: Arena = Arena([0; ARENA_SIZE]);
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);

fn arena_base() -> usize {
    core::ptr::addr_of_mut!(ARENA) as usize
}

/// Whether `p` was handed out by the bootstrap arena.
#[inline(always)]
pub fn in_bootstrap(p: *mut c_void) -> bool {
    let base = arena_base();
    (p as usize).wrapping_sub(base) < ARENA_SIZE
}

/// Serves an allocation before the real allocator is known. Blocks are zeroed (static
/// memory, never reused) and aligned to `align` (a power of two, at most a page).
pub fn bootstrap_alloc(size: usize, align: usize) -> *mut c_void {
    let align = align.clamp(HEADER, crate::sys::PAGE);
    let Some(need) = size.checked_add(HEADER + align) else {
        return core::ptr::null_mut();
    };
    let start = ARENA_USED.fetch_add(need, Ordering::Relaxed);
    if start + need > ARENA_SIZE {
        crate::sys::set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    }
    let base = arena_base();
    let user = (base + start + HEADER + align - 1) & !(align - 1);
    // SAFETY: `user - HEADER .. user + size` lies inside the region reserved above, which
    // no other caller can receive; the header slot is 8-byte aligned.
    unsafe { ((user - HEADER) as *mut usize).write(size) };
    user as *mut c_void
}

/// The requested size of a bootstrap block.
pub fn bootstrap_size(p: *mut c_void) -> usize {
    // SAFETY: `p` came from `bootstrap_alloc`, which stored the size just before it.
    unsafe { ((p as usize - HEADER) as *const usize).read() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_blocks_are_aligned_and_recognized() {
        let a = bootstrap_alloc(10, 16);
        let b = bootstrap_alloc(100, 64);
        assert!(in_bootstrap(a) && in_bootstrap(b));
        assert_eq!(b as usize % 64, 0);
        assert_eq!(bootstrap_size(a), 10);
        assert_eq!(bootstrap_size(b), 100);
        let x = Box::new(1u8);
        assert!(!in_bootstrap(&*x as *const u8 as *mut c_void));
        assert!(bootstrap_alloc(usize::MAX - 8, 16).is_null());
    }
}
