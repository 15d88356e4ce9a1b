//! Call stacks of the allocating thread, innermost first, without the profiler's own frames.
//!
//! On x86-64 with glibc ≥ 2.35 we walk the stack ourselves with DWARF CFI (`cfi.rs`):
//! - the object and its `.eh_frame_hdr` come from `_dl_find_object` (lock-free, no loader lock);
//! - the rule for each code address is cached in a global direct-mapped table of packed 64-bit
//!   entries (one atomic load per frame on a hit; racing writers can only lose an entry),
//!   cleared when the program calls `dlclose` (other code may then load at the same addresses);
//! - every stack read is checked against the thread's stack mapping, found once per thread from
//!   `/proc/self/maps` with raw system calls (no allocation), and frames must move up the stack;
//! - code in no object (JIT) is crossed with frame pointers, under the same checks; code whose
//!   rules we cannot evaluate (signal trampolines) ends the walk.
//!
//! Elsewhere (or when `_dl_find_object` is missing) libgcc's `_Unwind_Backtrace` is used.
//! Neither installs a signal handler or rewrites anything. Frames are return addresses (the
//! analyzer looks them up at `addr - 1`); our own frames are recognized by address range.

use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::cfi;

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

/// glibc's `struct dl_find_object` (2.35+, x86-64 layout).
#[repr(C)]
struct DlFindObject {
    flags: u64,
    map_start: *mut c_void,
    map_end: *mut c_void,
    link_map: *mut c_void,
    eh_frame: *mut c_void,
    reserved: [u64; 7],
}

type DlFindObjectFn = unsafe extern "C" fn(*mut c_void, *mut DlFindObject) -> c_int;
static DL_FIND_OBJECT: AtomicUsize = AtomicUsize::new(0);

/// Finds this library's code range and the lock-free object lookup. Called once at start-up.
/// With `libgcc_only`, every walk uses libgcc's unwinder.
pub fn init(libgcc_only: bool) {
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr only writes `info`; the address is one of our own functions.
    if unsafe { libc::dladdr(init as *const c_void, &mut info) } != 0 && !info.dli_fbase.is_null() {
        // SAFETY: dli_fbase is the load address of our mapped ELF object.
        let (lo, hi) = unsafe { exec_range(info.dli_fbase as usize) };
        SELF_LO.store(lo, Ordering::Relaxed);
        SELF_HI.store(hi, Ordering::Relaxed);
    }
    if !libgcc_only {
        init_object_lookup();
    }
}

fn init_object_lookup() {
    if cfg!(target_arch = "x86_64") {
        // SAFETY: looking up a symbol by name; a null result means "not available".
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_dl_find_object".as_ptr()) };
        DL_FIND_OBJECT.store(f as usize, Ordering::Relaxed);
    }
}

/// The executable address range of the ELF object loaded at `base`.
///
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

/// Registers captured where a walk should start (in a hook, right before its slow path),
/// so that the walk does not have to climb through the profiler's own frames.
#[derive(Clone, Copy)]
pub struct Regs {
    pub pc: usize,
    pub sp: usize,
    pub bp: usize,
}

impl Regs {
    /// The current pc, sp and bp. Inlined into the caller: the CFI row at `pc` describes the
    /// caller's frame with exactly these `sp` and `bp`.
    #[inline(always)]
    pub fn capture() -> Regs {
        #[cfg(target_arch = "x86_64")]
        {
            let (pc, sp, bp): (usize, usize, usize);
            // SAFETY: reads three registers; no memory, stack or flags are touched.
            unsafe {
                core::arch::asm!(
                    "lea {pc}, [rip]",
                    "mov {sp}, rsp",
                    "mov {bp}, rbp",
                    pc = out(reg) pc,
                    sp = out(reg) sp,
                    bp = out(reg) bp,
                    options(nomem, nostack, preserves_flags)
                );
            }
            Regs { pc, sp, bp }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Regs {
            pc: 0,
            sp: 0,
            bp: 0,
        }
    }
}

/// Stack words a walk may log before it stops logging (a deeper walk is not repeatable).
pub const MAX_READS: usize = 64;

/// The log of one walk: every stack word it read, in order (then one word of each compiled
/// Java method it crossed, `hotspot::Witness`), and whether it used the starting rbp. A walk is a function of its start registers, the words it reads and the code's unwind
/// rules (fixed while the code stays loaded), so a later walk from the same registers that
/// finds the same words at the same addresses yields the same frames (see `memo.rs`).
pub struct Reads<'a> {
    at: &'a mut [MaybeUninit<(usize, usize)>],
    n: usize,
    /// The log is complete: our walker ran on the thread's own stack and read at most as
    /// many words as the log holds.
    complete: bool,
    /// The starting rbp mattered (a CFA or frame-pointer step used it before it was reloaded).
    pub bp_used: bool,
}

/// Room for a complete log (`Reads::new`).
pub type ReadLog = [MaybeUninit<(usize, usize)>; MAX_READS];

/// An empty log, to be filled by a walk.
pub const fn read_log() -> ReadLog {
    [MaybeUninit::uninit(); MAX_READS]
}

impl<'a> Reads<'a> {
    pub fn new(at: &'a mut [MaybeUninit<(usize, usize)>]) -> Self {
        Reads {
            at,
            n: 0,
            complete: false,
            bp_used: false,
        }
    }

    /// No log (a walk that will not be memorized: a small stack, a foreign one).
    pub fn none() -> Reads<'static> {
        Reads::new(&mut [])
    }

    #[inline(always)]
    fn log(&mut self, addr: usize, value: usize) {
        if self.n < self.at.len() {
            self.at[self.n].write((addr, value));
            self.n += 1;
        } else {
            self.complete = false;
        }
    }

    /// A complete log of `words` (tests of the memo).
    #[cfg(test)]
    pub fn logged(at: &'a mut ReadLog, words: &[(usize, usize)]) -> Self {
        let mut r = Reads::new(at);
        for &(addr, value) in words {
            r.log(addr, value);
        }
        r.complete = true;
        r
    }

    /// The logged words, when the log is complete.
    pub fn words(&self) -> Option<&[(usize, usize)]> {
        if !self.complete {
            return None;
        }
        // SAFETY: the first `n` entries were written by `log`.
        Some(unsafe {
            &*(&self.at[..self.n] as *const [MaybeUninit<(usize, usize)>]
                as *const [(usize, usize)])
        })
    }
}

/// Fills `out` with the caller's stack (innermost first, our frames skipped); returns the
/// number of frames. Always at least 1 when `out` is non-empty: an empty walk yields one
/// placeholder frame so that every dump record names something.
pub fn backtrace(out: &mut [usize]) -> usize {
    // SAFETY: initialized usizes are valid MaybeUninit<usize>s of the same layout, and only
    // initialized values are ever written through the cast slice.
    let out = unsafe { &mut *(out as *mut [usize] as *mut [MaybeUninit<usize>]) };
    backtrace_into(out).len()
}

/// `backtrace` into uninitialized memory (saves zeroing a large buffer per sample); returns
/// the frames written.
pub fn backtrace_into(out: &mut [MaybeUninit<usize>]) -> &[usize] {
    backtrace_from(None, out, &mut Reads::none())
}

/// Like `backtrace_into`, starting from registers captured by a hook when given, logging the
/// walk's reads into `reads`.
#[inline(never)]
pub fn backtrace_from<'a>(
    start: Option<Regs>,
    out: &'a mut [MaybeUninit<usize>],
    reads: &mut Reads<'_>,
) -> &'a [usize] {
    reads.n = 0;
    reads.complete = false;
    reads.bp_used = false;
    if out.is_empty() {
        return &[];
    }
    let mut sink = Sink {
        out,
        len: 0,
        skipping: true,
    };
    #[cfg(target_arch = "x86_64")]
    let done = DL_FIND_OBJECT.load(Ordering::Relaxed) != 0
        && x86::walk(start.unwrap_or_else(Regs::capture), &mut sink, reads);
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = start;
        false
    };
    if !done {
        reads.complete = false;
        sink.len = 0;
        sink.skipping = true;
        // libgcc may allocate (its FDE tables): those blocks are the profiler's.
        let t = crate::thread::current();
        t.internal.set(t.internal.get() + 1);
        // SAFETY: `on_frame` matches the callback ABI and only touches `sink` through `arg`.
        unsafe { _Unwind_Backtrace(on_frame, (&mut sink as *mut Sink<'_>).cast()) };
        t.internal.set(t.internal.get() - 1);
    }
    let mut n = sink.len;
    if n == 0 {
        out[0].write(unknown_stack as *const () as usize + 1);
        n = 1;
    }
    // SAFETY: the first `n` slots were written (by `Sink::push` or just above).
    unsafe { &*(&out[..n] as *const [MaybeUninit<usize>] as *const [usize]) }
}

/// libgcc's walk, always (the reference the tests compare against).
pub fn backtrace_libgcc(out: &mut [usize]) -> usize {
    // SAFETY: as in `backtrace`.
    let out = unsafe { &mut *(out as *mut [usize] as *mut [MaybeUninit<usize>]) };
    let mut sink = Sink {
        out,
        len: 0,
        skipping: true,
    };
    // SAFETY: as in `backtrace`.
    unsafe { _Unwind_Backtrace(on_frame, (&mut sink as *mut Sink<'_>).cast()) };
    sink.len
}

struct Sink<'a> {
    out: &'a mut [MaybeUninit<usize>],
    len: usize,
    skipping: bool,
}

impl Sink<'_> {
    /// Takes one return address; false when full.
    fn push(&mut self, ip: usize) -> bool {
        if self.skipping {
            if is_self(ip) {
                return true;
            }
            self.skipping = false;
        }
        self.out[self.len].write(ip);
        self.len += 1;
        self.len < self.out.len()
    }
}

extern "C" fn on_frame(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Sink` passed to _Unwind_Backtrace, alive for the whole walk.
    let s = unsafe { &mut *(arg as *mut Sink<'_>) };
    // SAFETY: `ctx` is the context libgcc hands to this callback.
    let ip = unsafe { _Unwind_GetIP(ctx) };
    if ip == 0 || !s.push(ip) {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// Named frame for allocations whose stack could not be walked (never called).
#[inline(never)]
pub extern "C" fn unknown_stack() {}

// ---- the rule cache ------------------------------------------------------------------------

const CACHE_BITS: u32 = 14;
const PC_BITS: u32 = 47;
const PC_MASK: u64 = (1 << PC_BITS) - 1;
static CACHE: [AtomicU64; 1 << CACHE_BITS] = [const { AtomicU64::new(0) }; 1 << CACHE_BITS];
/// Forgets every cached rule: after a `dlclose`, other code with other rules may be loaded at
/// the same addresses. Plain stores; a walk racing with it can only miss and recompute.
pub fn forget_rules() {
    for e in &CACHE {
        e.store(0, Ordering::Relaxed);
    }
}

/// A cached answer for one code address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Cfi(cfi::Rule),
    /// No unwind info: cross with frame pointers.
    FramePointer,
    /// Cannot step: end the walk.
    Stop,
    /// HotSpot's code cache: stepped by `hotspot::step`, never cached (the code there is
    /// freed and replaced while the process runs).
    Java,
    /// Frame pointers this once, not cached (whether the code is HotSpot's is not known yet).
    FramePointerOnce,
}

/// Packs a step into the 17 bits above the address: bit 0 CFA base (rbp), bits 1–12 CFA
/// offset / 8 (frames up to 32 KiB), bits 13–16 rbp slot (0 = unchanged, k = saved at
/// CFA − 8k; compilers save rbp among the first pushes). Offset 0 never occurs in a real rule,
/// so it encodes the two non-CFI steps. `None`: not representable (then it is recomputed).
fn pack(step: Step) -> Option<u64> {
    let bits = match step {
        Step::FramePointer => 0,
        Step::Stop => 1,
        Step::Java | Step::FramePointerOnce => return None,
        Step::Cfi(r) => {
            if r.ra_at != -8
                || r.cfa_offset <= 0
                || r.cfa_offset % 8 != 0
                || r.cfa_offset / 8 > 4095
            {
                return None;
            }
            let rbp = match r.rbp_at {
                None => 0,
                Some(o) if o < 0 && o % 8 == 0 && -o / 8 <= 15 => (-o / 8) as u64,
                Some(_) => return None,
            };
            r.cfa_is_rbp as u64 | ((r.cfa_offset / 8) as u64) << 1 | rbp << 13
        }
    };
    Some(bits)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Cfi,
    FramePointer,
    Stop,
    Java,
}

/// A step in the form the walk uses: offsets relative to the CFA (`bp_off` 0 = rbp unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decoded {
    kind: Kind,
    cfa_rbp: bool,
    cfa_off: i64,
    ra_off: i64,
    bp_off: i64,
}

const STOP: Decoded = Decoded {
    kind: Kind::Stop,
    cfa_rbp: false,
    cfa_off: 0,
    ra_off: 0,
    bp_off: 0,
};

/// The packed form, decoded (the walk decodes inline; tests check the round trip).
#[cfg(test)]
fn decode(bits: u64) -> Decoded {
    let off = ((bits >> 1) & 4095) as i64 * 8;
    if off == 0 {
        return Decoded {
            kind: if bits & 1 == 0 {
                Kind::FramePointer
            } else {
                Kind::Stop
            },
            ..STOP
        };
    }
    Decoded {
        kind: Kind::Cfi,
        cfa_rbp: bits & 1 != 0,
        cfa_off: off,
        ra_off: -8,
        bp_off: -(((bits >> 13) & 15) as i64) * 8,
    }
}

#[inline]
fn slot(pc: usize) -> &'static AtomicU64 {
    &CACHE[((pc as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_BITS)) as usize]
}

/// Reads process memory that `_dl_find_object` says belongs to a loaded object.
struct ObjectBytes {
    lo: usize,
    hi: usize,
}

impl cfi::Bytes for ObjectBytes {
    fn get(&self, addr: usize, len: usize) -> Option<&[u8]> {
        if addr < self.lo || addr.checked_add(len)? > self.hi {
            return None;
        }
        // SAFETY: the range lies inside a loaded object's mapping; the unwind tables we
        // follow are in its read-only segment, which stays mapped while its code is on a stack.
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
    }
}

fn compute_step(pc: usize) -> Step {
    let f = DL_FIND_OBJECT.load(Ordering::Relaxed);
    let mut dlfo = DlFindObject {
        flags: 0,
        map_start: core::ptr::null_mut(),
        map_end: core::ptr::null_mut(),
        link_map: core::ptr::null_mut(),
        eh_frame: core::ptr::null_mut(),
        reserved: [0; 7],
    };
    // SAFETY: `f` is glibc's _dl_find_object (checked non-null by the caller of the walk);
    // it only writes `dlfo`.
    let found =
        unsafe { core::mem::transmute::<usize, DlFindObjectFn>(f)(pc as *mut c_void, &mut dlfo) }
            == 0;
    if !found {
        // Code in no object: JIT. HotSpot's is crossed with its own metadata.
        return match crate::hotspot::try_init() {
            crate::hotspot::Found::Ready if crate::hotspot::claims(pc) => Step::Java,
            crate::hotspot::Found::Ready | crate::hotspot::Found::Absent => Step::FramePointer,
            // Not cached: the code may turn out to be HotSpot's.
            crate::hotspot::Found::Unknown => Step::FramePointerOnce,
        };
    }
    if dlfo.eh_frame.is_null() {
        return Step::FramePointer;
    }
    let mem = ObjectBytes {
        lo: dlfo.map_start as usize,
        hi: dlfo.map_end as usize,
    };
    match cfi::rule_for(&mem, dlfo.eh_frame as usize, pc) {
        Ok(r) => Step::Cfi(r),
        Err(cfi::NoRule::NotCovered) => Step::FramePointer,
        Err(cfi::NoRule::Unsupported) => Step::Stop,
    }
}

// ---- the walk -----------------------------------------------------------------------------

/// The main thread's stack: the `[stack]` mapping's end, read once at start-up, and the
/// lowest address it may grow down to (its end minus the stack size limit).
static MAIN_LO: AtomicUsize = AtomicUsize::new(0);
static MAIN_HI: AtomicUsize = AtomicUsize::new(0);

/// Cached bounds meaning "this thread's stack could not be found".
const NO_STACK: usize = 1;

/// Learns the main thread's stack (`[stack]`) from `/proc/self/maps`, once, at start-up
/// (before a sandbox can forbid opening files): no walk ever reads that file for it.
pub fn init_stacks(read_buf: &mut [u8]) {
    // The `[stack]` mapping is the main thread's, whichever thread starts the profiler (an
    // attach runs on a JVM's attach listener thread); it grows down as far as RLIMIT_STACK.
    let mut found = None;
    crate::sys::for_each_maps_line(read_buf, &mut |line| match parse_range(line) {
        Some((_, hi)) if line.ends_with(b"[stack]") => {
            found = Some(hi);
            false
        }
        _ => true,
    });
    let Some(hi) = found else { return };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct.
    let limit = if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
    {
        (lim.rlim_cur as usize).clamp(1 << 17, 1 << 30)
    } else {
        1 << 30
    };
    MAIN_LO.store(hi.saturating_sub(limit), Ordering::Relaxed);
    MAIN_HI.store(hi, Ordering::Relaxed);
}

/// The calling thread's own stack, `[lo, hi)`: the main thread's from start-up; another
/// thread's, once per thread, from the `/proc/self/maps` line of the mapping that holds its
/// thread pointer (glibc places a thread's descriptor and TLS at the top of its stack block;
/// the guard pages below are mappings of their own). Under a seccomp filter no file is
/// opened (the filter may kill the process for it): the thread's stack stays unknown. Cached
/// in the thread's state; `None` when unknown (a walk then stays within the page of its stack
/// pointer). (`pthread_getattr_np` would give the same bounds without a file, but it takes the
/// new thread's lock, which its creator can hold while it waits for the new thread: a JVM
/// deadlocks.)
fn own_stack(sp: usize) -> Option<(usize, usize)> {
    let (mlo, mhi) = (
        MAIN_LO.load(Ordering::Relaxed),
        MAIN_HI.load(Ordering::Relaxed),
    );
    if mhi != 0 && mlo <= sp && sp < mhi {
        return Some((mlo, mhi));
    }
    let t = crate::thread::current();
    let (lo, hi) = (t.stack_lo.get(), t.stack_hi.get());
    if lo == NO_STACK {
        return None;
    }
    if lo != 0 {
        return Some((lo, hi));
    }
    let found = thread_stack_mapping();
    let (l, h) = found.unwrap_or((NO_STACK, NO_STACK));
    t.stack_lo.set(l);
    t.stack_hi.set(h);
    found
}

#[cold]
#[inline(never)]
fn thread_stack_mapping() -> Option<(usize, usize)> {
    let saved = crate::sys::errno();
    let filtered = crate::sys::seccomp_filtered();
    // SAFETY: pthread_self reads the thread pointer.
    let tp = unsafe { libc::pthread_self() } as usize;
    let mut found = None;
    if !filtered {
        // Small: a thread's first sample may run on a small stack. Longer lines (long file
        // paths) are skipped, and a stack's line is short.
        let mut buf = [0u8; 512];
        crate::sys::for_each_maps_line(&mut buf, &mut |line| match parse_range(line) {
            Some((lo, hi)) if lo <= tp && tp < hi => {
                found = Some((lo, hi));
                false
            }
            _ => true,
        });
    }
    crate::sys::set_errno(saved);
    found
}

/// Bounds for a walk from `sp`, and whether they are the thread's own stack: else (a signal
/// handler's alternate stack, a coroutine's stack) only the page holding `sp` is known to be
/// mapped, and the walk stays inside it.
pub fn bounds_for(sp: usize) -> (usize, usize, bool) {
    if let Some((lo, hi)) = own_stack(sp)
        && lo <= sp
        && sp < hi
    {
        return (lo, hi, true);
    }
    (sp, (sp | (crate::sys::PAGE - 1)) + 1, false)
}

/// Whether the calling thread runs a signal handler: a return address on its stack is the
/// kernel's return trampoline (glibc's `__restore_rt`: `mov rax, 15; syscall`, the same bytes
/// libgcc and gdb recognize). Walks the stack, so not for hot paths.
pub fn in_signal_handler() -> bool {
    let mut buf = [MaybeUninit::<usize>::uninit(); 64];
    backtrace_from(None, &mut buf, &mut Reads::none())
        .iter()
        .any(|&ra| is_sigreturn(ra))
}

fn is_sigreturn(ra: usize) -> bool {
    const SIGRETURN: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
    let f = DL_FIND_OBJECT.load(Ordering::Relaxed);
    if f == 0 || !cfg!(target_arch = "x86_64") {
        return false;
    }
    // SAFETY: all-zero is a valid DlFindObject (integers and null pointers).
    let mut found: DlFindObject = unsafe { core::mem::zeroed() };
    // SAFETY: `f` is glibc's _dl_find_object (lock-free), which only writes `found`.
    let hit =
        unsafe { core::mem::transmute::<usize, DlFindObjectFn>(f)(ra as *mut c_void, &mut found) }
            == 0;
    if !hit || ra.saturating_add(SIGRETURN.len()) > found.map_end as usize {
        return false;
    }
    // SAFETY: [ra, ra + 9) lies inside a loaded object's mapping, which stays mapped while
    // code of it is on our stack.
    let code = unsafe { core::slice::from_raw_parts(ra as *const u8, SIGRETURN.len()) };
    code == SIGRETURN
}

/// Bytes of stack left below `sp` on the thread's own stack; 0 on any other stack.
pub fn stack_room(sp: usize) -> usize {
    match bounds_for(sp) {
        (lo, _, true) => sp - lo,
        _ => 0,
    }
}

pub fn parse_range(line: &[u8]) -> Option<(usize, usize)> {
    let dash = line.iter().position(|&c| c == b'-')?;
    let space = line.iter().position(|&c| c == b' ')?;
    Some((
        parse_hex(&line[..dash])?,
        parse_hex(line.get(dash + 1..space)?)?,
    ))
}

fn parse_hex(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0usize, |acc, &c| {
        Some(acc << 4 | (c as char).to_digit(16)? as usize)
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;

    /// Walks from this function up. Returns false only if the walk could not start (no stack
    /// bounds), so that the caller falls back to libgcc.
    pub fn walk(start: Regs, sink: &mut Sink<'_>, reads: &mut Reads<'_>) -> bool {
        let Regs {
            mut pc,
            mut sp,
            mut bp,
        } = start;
        let (lo, hi, own) = bounds_for(sp);
        // Repeatable only on the thread's own stack, whose bounds never change.
        reads.complete = own;
        // The starting rbp is still the one in `bp` (no step has reloaded it yet).
        let mut bp_is_start = true;
        // Every read is 8-aligned and inside [lo, hi): mapped and readable (we run on it).
        let mut read = |addr: usize| -> Option<usize> {
            if addr < lo || addr > hi - 8 || !addr.is_multiple_of(8) {
                return None;
            }
            // SAFETY: checked just above.
            let v = unsafe { core::ptr::read_volatile(addr as *const usize) };
            reads.log(addr, v);
            Some(v)
        };
        let (self_lo, self_hi) = (
            SELF_LO.load(Ordering::Relaxed),
            SELF_HI.load(Ordering::Relaxed),
        );
        let cap = sink.out.len();
        let mut n = 0;
        let mut bp_used = false;
        // Java frames: the walk also depends on compiled code that the JVM frees and replaces.
        // Each compiled frame's step comes with a word of its blob (its compile id) that the
        // memo checks too; a step without one makes the walk unrepeatable.
        // Nonzero: rbp is the word saved there, not read yet (`hotspot::Bp`).
        let mut bp_at = 0usize;
        let mut witnesses = [(0usize, 0usize); 16];
        let mut nw = 0;
        let mut java_unrepeatable = false;
        // No frame-pointer guess so far (only unwind rules and HotSpot's own steps): the
        // frames walked are really on this stack.
        let mut trusted = true;
        // A return address points after the call; its rule is that of the call itself.
        let mut lookup = pc;
        loop {
            // Hot path: one cache load, decoded in place (see `pack`), all in registers.
            let e = slot(lookup).load(Ordering::Relaxed);
            let bits = if e & PC_MASK == lookup as u64 && lookup != 0 {
                e >> PC_BITS
            } else {
                match step_for_slow(lookup) {
                    Ok(bits) => bits,
                    // A Java frame: HotSpot's metadata steps it and names its methods.
                    Err(d) if d.kind == Kind::Java => {
                        bp_used |= bp_is_start;
                        bp_is_start = false;
                        // The frame's pc went out as its caller's return address: the
                        // frame's Java methods take its place.
                        // SAFETY: the first `n` slots are written.
                        if n > 0 && unsafe { sink.out[n - 1].assume_init() } == pc {
                            n -= 1;
                        }
                        let out = &mut *sink.out;
                        let mut emit = |f: usize| {
                            if n == cap {
                                return false;
                            }
                            out[n].write(f);
                            n += 1;
                            true
                        };
                        let mut witness = crate::hotspot::Witness::Missing;
                        let stepped = crate::hotspot::step(
                            pc,
                            sp,
                            crate::hotspot::Bp {
                                value: bp,
                                at: bp_at,
                            },
                            trusted,
                            &mut read,
                            &mut emit,
                            &mut witness,
                        );
                        match witness {
                            crate::hotspot::Witness::Fixed => {}
                            crate::hotspot::Witness::Word(a, v) if nw < witnesses.len() => {
                                witnesses[nw] = (a, v);
                                nw += 1;
                            }
                            _ => java_unrepeatable = true,
                        }
                        let Some((caller_sp, ra, new_bp)) = stepped else {
                            break;
                        };
                        if n == cap || caller_sp <= sp || ra == 0 {
                            break;
                        }
                        sink.out[n].write(ra);
                        n += 1;
                        if n == cap {
                            break;
                        }
                        (pc, sp, bp, bp_at) = (ra, caller_sp, new_bp.value, new_bp.at);
                        lookup = pc - 1;
                        continue;
                    }
                    // A rule the cache cannot hold (a huge frame, say): step it here.
                    Err(d) => {
                        if bp_at != 0 {
                            let Some(v) = read(bp_at) else {
                                break;
                            };
                            (bp, bp_at) = (v, 0);
                        }
                        // Noted before the step: where it reads, and so whether it stops,
                        // may depend on the starting rbp.
                        let uses_bp = d.kind == Kind::FramePointer || d.cfa_rbp;
                        trusted &= d.kind != Kind::FramePointer;
                        bp_used |= uses_bp && bp_is_start;
                        bp_is_start &= d.kind == Kind::Cfi && d.bp_off == 0;
                        let Some((cfa, ra, new_bp)) = step_with(&d, sp, bp, &mut read) else {
                            break;
                        };
                        if cfa <= sp || ra == 0 {
                            break;
                        }
                        if !(n == 0 && sink.skipping && ra >= self_lo && ra < self_hi) {
                            sink.out[n].write(ra);
                            n += 1;
                            if n == cap {
                                break;
                            }
                        }
                        (pc, sp, bp) = (ra, cfa, new_bp);
                        lookup = pc - 1;
                        continue;
                    }
                }
            };
            if bp_at != 0 {
                // The rbp a compiled Java frame saved, read only now that a step may use it
                // (compiled code keeps other values in rbp: reading it at every Java frame
                // would make the walk unrepeatable for the memo).
                let Some(v) = read(bp_at) else {
                    break;
                };
                (bp, bp_at) = (v, 0);
            }
            let off = ((bits >> 1) & 4095) as usize * 8;
            let (cfa, ra, new_bp) = if off != 0 {
                bp_used |= bits & 1 != 0 && bp_is_start;
                let cfa = (if bits & 1 != 0 { bp } else { sp }).wrapping_add(off);
                let Some(ra) = read(cfa.wrapping_sub(8)) else {
                    break;
                };
                let slot = ((bits >> 13) & 15) as usize;
                bp_is_start &= slot == 0;
                let new_bp = if slot == 0 {
                    bp
                } else {
                    match read(cfa.wrapping_sub(slot * 8)) {
                        Some(v) => v,
                        None => break,
                    }
                };
                (cfa, ra, new_bp)
            } else if bits & 1 == 0 {
                // No unwind info (JIT): frame pointers, under the same checks.
                trusted = false;
                bp_used |= bp_is_start;
                bp_is_start = false;
                if bp < sp {
                    break;
                }
                let (Some(saved_bp), Some(ra)) = (read(bp), read(bp.wrapping_add(8))) else {
                    break;
                };
                (bp + 16, ra, saved_bp)
            } else {
                break; // Step::Stop
            };
            if cfa <= sp || ra == 0 {
                break; // must move up the stack
            }
            if n == 0 && sink.skipping && ra >= self_lo && ra < self_hi {
                // Still inside the profiler (a hook called through another hook).
            } else {
                sink.out[n].write(ra);
                n += 1;
                if n == cap {
                    break;
                }
            }
            pc = ra;
            sp = cfa;
            bp = new_bp;
            lookup = pc - 1;
        }
        sink.len = n;
        sink.skipping = false;
        reads.bp_used = bp_used;
        for &(a, v) in &witnesses[..nw] {
            reads.log(a, v);
        }
        if java_unrepeatable {
            reads.complete = false;
        }
        true
    }

    /// A cache miss: compute the step and cache it. `Ok(bits)` when it fits the cache's
    /// packing (see `pack`), else the step itself for `step_with`.
    #[cold]
    #[inline(never)]
    fn step_for_slow(lookup: usize) -> Result<u64, Decoded> {
        if crate::hotspot::claims(lookup) {
            return Err(Decoded {
                kind: Kind::Java,
                ..STOP
            });
        }
        let step = compute_step(lookup);
        let key = lookup as u64;
        if let Some(bits) = pack(step) {
            if key <= PC_MASK && key != 0 {
                slot(lookup).store(key | bits << PC_BITS, Ordering::Relaxed);
            }
            return Ok(bits);
        }
        Err(match step {
            Step::Cfi(r) => Decoded {
                kind: Kind::Cfi,
                cfa_rbp: r.cfa_is_rbp,
                cfa_off: r.cfa_offset,
                ra_off: r.ra_at,
                bp_off: r.rbp_at.unwrap_or(0),
            },
            Step::FramePointer | Step::FramePointerOnce => Decoded {
                kind: Kind::FramePointer,
                ..STOP
            },
            Step::Stop => STOP,
            Step::Java => Decoded {
                kind: Kind::Java,
                ..STOP
            },
        })
    }

    /// One step by a rule the cache cannot hold: (CFA, return address, caller's rbp).
    #[cold]
    #[inline(never)]
    fn step_with(
        d: &Decoded,
        sp: usize,
        bp: usize,
        read: &mut dyn FnMut(usize) -> Option<usize>,
    ) -> Option<(usize, usize, usize)> {
        match d.kind {
            Kind::Cfi => {
                let cfa = (if d.cfa_rbp { bp } else { sp }).wrapping_add(d.cfa_off as usize);
                let ra = read(cfa.wrapping_add(d.ra_off as usize))?;
                let new_bp = if d.bp_off == 0 {
                    bp
                } else {
                    read(cfa.wrapping_add(d.bp_off as usize))?
                };
                Some((cfa, ra, new_bp))
            }
            Kind::FramePointer => {
                if bp < sp {
                    return None;
                }
                Some((bp + 16, read(bp.wrapping_add(8))?, read(bp)?))
            }
            Kind::Stop | Kind::Java => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn depth_probe(n: usize, out: &mut [usize], f: fn(&mut [usize]) -> usize) -> usize {
        if n == 0 {
            f(out)
        } else {
            std::hint::black_box(depth_probe(n - 1, out, f))
        }
    }

    #[test]
    fn walks_the_test_thread() {
        let mut buf = [0usize; 64];
        let n = depth_probe(5, &mut buf, backtrace_libgcc);
        assert!(n >= 6, "got {n} frames");
        let mut one = [0usize; 1];
        assert_eq!(backtrace(&mut one), 1);
    }

    /// Our CFI walk and libgcc's agree frame by frame on this thread's stack.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn cfi_walk_matches_libgcc() {
        // Not init(): in the test binary "self" would be the whole program.
        init_object_lookup();
        // As the profiler's start-up does (this test may run on the main thread).
        init_stacks(&mut [0u8; 4096]);
        if DL_FIND_OBJECT.load(Ordering::Relaxed) == 0 {
            eprintln!("skipped: no _dl_find_object");
            return;
        }
        for depth in [0, 3, 17] {
            let mut ours = [0usize; 128];
            let mut theirs = [0usize; 128];
            let n = depth_probe(depth, &mut ours, backtrace);
            let m = depth_probe(depth, &mut theirs, backtrace_libgcc);
            // Both start inside the test binary (not "self" here), at different inner frames:
            // align on the first return address into depth_probe's caller chain.
            let ours = &ours[..n];
            let theirs = &theirs[..m];
            // The recursion frames are shared; then each walk returns into a different call
            // site of this test function; above that, everything must be identical.
            let anchor = ours
                .iter()
                .find(|a| theirs.contains(a))
                .expect("a common frame");
            let i = ours.iter().position(|a| a == anchor).unwrap();
            let j = theirs.iter().position(|a| a == anchor).unwrap();
            assert_eq!(
                &ours[i..i + depth],
                &theirs[j..j + depth],
                "depth {depth}: recursion frames"
            );
            let (a, b) = (&ours[i + depth + 1..], &theirs[j + depth + 1..]);
            assert!(a.len() >= 2, "depth {depth}: ours ended early: {ours:x?}");
            assert_eq!(a, b, "depth {depth}: frames above the test");
        }
    }

    #[test]
    fn cache_entries_round_trip() {
        for step in [
            Step::FramePointer,
            Step::Stop,
            Step::Cfi(cfi::Rule {
                cfa_is_rbp: false,
                cfa_offset: 8,
                rbp_at: None,
                ra_at: -8,
            }),
            Step::Cfi(cfi::Rule {
                cfa_is_rbp: true,
                cfa_offset: 16,
                rbp_at: Some(-16),
                ra_at: -8,
            }),
            Step::Cfi(cfi::Rule {
                cfa_is_rbp: false,
                cfa_offset: 32760,
                rbp_at: Some(-120),
                ra_at: -8,
            }),
        ] {
            let d = decode(pack(step).unwrap());
            match step {
                Step::Cfi(r) => assert_eq!(
                    d,
                    Decoded {
                        kind: Kind::Cfi,
                        cfa_rbp: r.cfa_is_rbp,
                        cfa_off: r.cfa_offset,
                        ra_off: -8,
                        bp_off: r.rbp_at.unwrap_or(0)
                    }
                ),
                Step::FramePointer => assert_eq!(d.kind, Kind::FramePointer),
                Step::Stop => assert_eq!(d.kind, Kind::Stop),
                Step::Java | Step::FramePointerOnce => unreachable!("never cached"),
            }
        }
        assert_eq!(pack(Step::Java), None, "Java steps are never cached");
        assert_eq!(
            pack(Step::Cfi(cfi::Rule {
                cfa_is_rbp: false,
                cfa_offset: 12,
                rbp_at: None,
                ra_at: -8
            })),
            None
        );
        assert_eq!(
            pack(Step::Cfi(cfi::Rule {
                cfa_is_rbp: false,
                cfa_offset: 32768,
                rbp_at: None,
                ra_at: -8
            })),
            None
        );
    }

    #[test]
    fn finds_this_threads_stack() {
        let x = 0u8;
        let sp = &x as *const u8 as usize;
        // A test thread is a glibc thread: its bounds come from its descriptor, no file.
        let (lo, hi, own) = bounds_for(sp);
        assert!(own && lo <= sp && sp < hi, "{lo:#x} {sp:#x} {hi:#x}");
        assert!(stack_room(sp) > 0);
        // Another stack (here: a heap block): only the page of its stack pointer.
        let heap = Box::new([0u64; 1024]);
        let p = heap.as_ptr() as usize + 4000;
        assert_eq!(bounds_for(p), (p, (p | 4095) + 1, false));
        assert_eq!(stack_room(p), 0);
        assert_eq!(
            parse_range(b"7f00-7f10 rw-p 0 0:0 0"),
            Some((0x7f00, 0x7f10))
        );
        assert_eq!(parse_range(b"zz-7f10 "), None);
    }
}
