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
    struct {                    /* the last walk, see src/memo.rs */
        uint64_t pc, sp, bp;
        uint32_t id, bp_used;
        uint32_t n, generation;
        uint64_t words[64][2];
    } memo;
    uint32_t deferred_len;      /* changes queued for a lock this thread re-entered */
    uint32_t internal;          /* the profiler allocates on its own behalf */
    struct {                    /* see src/defer.rs */
        uint64_t key;
        uint32_t kind, extra;
        uint64_t a, b;
    } deferred[16];
};

_Static_assert(sizeof(struct jeprof_thread_state) == 64 + 40 + 16 * 64 + 8 + 32 * 16,
               "must match ThreadState in src/thread.rs");

/* Global but hidden: the Rust side reads it with an inline initial-exec access on x86-64. */
__attribute__((visibility("hidden"))) __thread struct jeprof_thread_state jeprof_tls
    __attribute__((tls_model("initial-exec"), aligned(64)));

__attribute__((visibility("hidden")))
struct jeprof_thread_state *jeprof_thread_state(void) {
    return &jeprof_tls;
}
