//! The calling thread's profiler state, in initial-exec TLS defined by `thread_state.c`.
//!
//! Reading it is two instructions (inline on x86-64, else a call to a C accessor): no
//! `__tls_get_addr`, no allocation,
//! valid from the first instruction of a thread to the last (TLS destructors included), so
//! there is no "destroyed" state to handle: a thread in teardown is profiled normally.
//! Fields are `Cell`s: hooks can re-enter (the real allocator may call a hooked function), so
//! the state is only ever reached through shared references.

use core::cell::Cell;

/// A change queued for the owner of a lock this thread re-entered (`defer.rs`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Deferred {
    /// The lock (`SpinLock::key`).
    pub key: usize,
    /// `defer::LIVE_INSERT`, … (`defer::NONE`: done or cancelled).
    pub kind: u32,
    pub extra: u32,
    pub a: usize,
    pub b: u64,
}

#[repr(C)]
pub struct ThreadState {
    /// Bytes left until the next sample; the fast path subtracts and tests the sign.
    pub bytes_until_sample: Cell<i64>,
    /// xorshift64* state; 0 means the thread has not drawn its first countdown yet.
    pub rng: Cell<u64>,
    /// Non-zero while this thread runs profiler code or the real allocator: hooks entered
    /// in that state only forward.
    pub busy: Cell<u32>,
    /// Which copy of the per-stack counters this thread writes (`stacks::STRIPES`).
    pub stripe: Cell<u32>,
    /// The countdown value last drawn (to count allocated bytes between samples).
    pub last_wait: Cell<u64>,
    /// The mapping holding this thread's stack (found once; 0 = not yet): every stack read of
    /// the unwinder is checked against it.
    pub stack_lo: Cell<usize>,
    pub stack_hi: Cell<usize>,
    /// The last stack this thread interned (innermost frame, depth, id; id 0 = none): a loop
    /// allocating from one site skips hashing and the index probe.
    pub last_frame0: Cell<usize>,
    pub last_depth: Cell<u32>,
    pub last_stack: Cell<u32>,
    /// Non-zero while the profiler calls code that allocates on its own behalf (libc's timer
    /// thread set-up, libgcc's unwinder): allocations then are the profiler's.
    pub internal: Cell<u32>,
    pub _pad: u32,
    /// The thread's slot of the cold state (memo, deferred changes), claimed on first use
    /// (`cold.rs`); null until then.
    pub cold: Cell<*mut crate::cold::Cold>,
}

/// `thread_state.c` checks the same size on its side: small, so that the library can also be
/// loaded with `dlopen` (glibc's static TLS surplus for such libraries is small).
const _: () = assert!(core::mem::size_of::<ThreadState>() == 80);

#[cfg(not(target_arch = "x86_64"))]
unsafe extern "C" {
    fn jeprof_thread_state() -> *const ThreadState;
}

/// The calling thread's state.
#[inline(always)]
pub fn current() -> &'static ThreadState {
    #[cfg(target_arch = "x86_64")]
    {
        let p: *const ThreadState;
        // SAFETY: the initial-exec TLS access sequence for `jeprof_tls` (thread_state.c): its
        // offset from the thread pointer comes from the GOT, the thread pointer from %fs:0.
        // Reads only memory that is constant for the calling thread.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + jeprof_tls@GOTTPOFF]",
                "add {p}, qword ptr fs:[0]",
                p = out(reg) p,
                options(pure, readonly, nostack, preserves_flags)
            );
        }
        // SAFETY: this thread's own TLS block (layout-compatible with the C struct), valid for
        // the thread's whole lifetime and never touched by another thread; all fields are
        // Cells, so shared references suffice.
        unsafe { &*p }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, through the C accessor.
    unsafe {
        &*jeprof_thread_state()
    }
}

impl ThreadState {
    #[inline(always)]
    pub fn stripe(&self) -> usize {
        self.stripe.get() as usize
    }
}

/// Subtracts `bytes` from this thread's countdown; true when this allocation reaches it (the
/// comparison is unsigned: a size that cannot be allocated reaches any countdown, and the slow
/// path undoes the charge of a failed request). (The x86-64 `malloc` and `calloc` do this in
/// their own assembly; this serves the other allocating hooks, and every hook elsewhere.)
#[inline(always)]
pub fn charge_countdown(bytes: usize) -> bool {
    let t = current();
    let left = t.bytes_until_sample.get();
    t.bytes_until_sample.set(left.wrapping_sub(bytes as i64));
    bytes as u64 >= left as u64 || left < 0
}

/// Marks the thread busy for the lifetime of the guard, so that allocations made by code
/// we call (the unwinder, libc) are forwarded untouched.
pub struct Busy {
    prev: u32,
}

impl Busy {
    #[inline]
    pub fn enter() -> Self {
        let t = current();
        let prev = t.busy.get();
        t.busy.set(prev + 1);
        Busy { prev }
    }
}

impl Drop for Busy {
    #[inline]
    fn drop(&mut self) {
        current().busy.set(self.prev);
    }
}
