/* Per-thread state of the profiler, in initial-exec TLS.
 *
 * The library is loaded with LD_PRELOAD, so its TLS block is part of the static TLS
 * area: reading it is one %fs-relative load, never a call into the dynamic loader,
 * never an allocation. The block lives as long as the thread's stack/TCB, i.e. it is
 * still valid while TLS destructors of other libraries run during thread exit, so
 * allocations made during teardown are profiled like any other.
 *
 * Layout must match `ThreadState` in src/thread.rs.
 */
#include <stdint.h>

struct jeprof_thread_state {
    int64_t bytes_until_sample; /* countdown; <= 0 sends the next allocation to the slow path */
    uint64_t rng;               /* xorshift state; 0 = not yet seeded */
    uint32_t busy;              /* reentrancy depth: non-zero while inside the profiler */
    uint32_t stripe;            /* which copy of the per-stack counters this thread writes */
    uint64_t last_wait;         /* countdown value last drawn */
    uint64_t stack_lo;          /* this thread's stack mapping, found once (0 = not yet) */
    uint64_t stack_hi;
    uint64_t last_frame0;       /* the last stack this thread interned: innermost frame, */
    uint32_t last_depth;        /* depth */
    uint32_t last_stack;        /* and id (0 = none) */
    uint32_t internal;          /* the profiler allocates on its own behalf */
    uint32_t pad;
    void *cold;                 /* memo and deferred changes, see src/cold.rs */
};

_Static_assert(sizeof(struct jeprof_thread_state) == 80, "must match ThreadState in src/thread.rs");

/* Global but hidden: the Rust side reads it with an inline initial-exec access on x86-64. */
__attribute__((visibility("hidden"))) __thread struct jeprof_thread_state jeprof_tls
    __attribute__((tls_model("initial-exec"), aligned(64)));

__attribute__((visibility("hidden")))
struct jeprof_thread_state *jeprof_thread_state(void) {
    return &jeprof_tls;
}
