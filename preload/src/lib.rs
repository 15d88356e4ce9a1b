//! `libjeprof_preload.so`: a heap profiler loaded with `LD_PRELOAD` into any Linux process.
//!
//! It interposes the malloc family, mmap/munmap/mremap and dlclose, samples allocations by bytes
//! (a Poisson process with jemalloc's semantics, or every allocation when asked), records
//! their call stacks, tracks which sampled blocks are still live, and writes jemalloc
//! `heap_v2` profiles at exit and on triggers. Configuration: `JEPROF_CONF`.
//!
//! Hard rules for everything reachable from a hook (see DESIGN.md): no allocation from the
//! process allocator, a per-thread reentrancy guard, errno preserved, no global lock on the
//! fast path, no signal handlers for faults, failures degrade to one stderr line.
//!
//! Modules, from the outside in:
//! - `hooks`: the exported symbols, thin shims; `real`: the next definitions and the
//!   bootstrap arena; `thread`: initial-exec per-thread state (C shim).
//! - `profiler`: sampling slow paths, mapping events, dumps, fork handling.
//! - `sampler` (math), `stacks` (lock-free stack table), `live` (live sampled blocks) with
//!   `route` (`free`'s jump table), `mmaps` (mapped ranges), `unwind` (call stacks) with
//!   `cfi` (DWARF rules) and `memo` (repeated stacks recognized without a walk), `dump`
//!   (heap_v2 writer), `config` (`JEPROF_CONF`).
//! - `sys`, `fmt`, `sync`, `defer`: OS calls, allocation-free formatting, a spin lock that
//!   knows its owner, and the changes a re-entrant call queues for that owner.

pub mod attach;
pub mod cfi;
pub mod cold;
pub mod config;
pub mod defer;
pub mod dump;
pub mod fmt;
pub mod hooks;
pub mod hotspot;
pub mod live;
pub mod memo;
pub mod mmaps;
pub mod profiler;
pub mod real;
pub mod route;
pub mod sampler;
pub mod stacks;
pub mod sync;
pub mod sys;
pub mod thread;
pub mod unwind;

#[cfg_attr(test, allow(dead_code))]
/// Library constructor: resolve the real functions and start profiling before `main`.
extern "C" fn on_load() {
    // Preloaded: start now. Loaded later with dlopen (attached to a running process): wait for
    // `Agent_OnAttach` and its options; nothing is interposed by name then.
    if preloaded() {
        profiler::init();
    }
}

/// Whether this library was loaded through `LD_PRELOAD` (its file name is in the variable).
fn preloaded() -> bool {
    const NAME: &[u8] = b"libjeprof_preload";
    sys::getenv(c"LD_PRELOAD").is_some_and(|v| v.windows(NAME.len()).any(|w| w == NAME))
}

/// The JVMTI entry point HotSpot calls after loading this library into a running JVM (dynamic
/// attach, `load`): starts profiling with `options` (`JEPROF_CONF` syntax) and patches every
/// loaded object's import slots (`attach.rs`). Returns 0, or `attach::ALREADY_PROFILED` /
/// `attach::DETACHED` / `attach::CANNOT_START`. Calls nothing of JVMTI or JNI.
///
/// # Safety
/// Called by the JVM with a NUL-terminated `options` string or null.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[allow(non_snake_case)]
pub unsafe extern "C" fn Agent_OnAttach(
    _vm: *mut core::ffi::c_void,
    options: *const core::ffi::c_char,
    _reserved: *mut core::ffi::c_void,
) -> core::ffi::c_int {
    // SAFETY: the JVM's options string, per this function's contract.
    unsafe { attach::on_attach(options) }
}

#[cfg_attr(test, allow(dead_code))]
/// Library destructor: the final dump. Runs from `_dl_fini` after the program's atexit
/// handlers, whichever way the process exits normally (return from main, `exit()` from any
/// thread).
extern "C" fn on_unload() {
    profiler::at_exit();
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = on_load;

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = on_unload;
