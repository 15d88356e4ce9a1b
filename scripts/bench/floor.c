/* The floor under any LD_PRELOAD malloc profiler, for scripts/bench.sh: a preload that only
 * forwards malloc, calloc, realloc and free to glibc (one jump each), and, built with
 * -DCOUNTDOWN, one that also charges each allocation to a thread-local byte countdown, as
 * sampling by bytes must, and never samples. Its cost against the plain run is what being
 * interposed costs before the profiler does anything.
 */
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

#ifdef COUNTDOWN
static __thread __attribute__((tls_model("initial-exec"))) int64_t countdown = INT64_MAX;

/* Never reached in a run shorter than 2^63 bytes; here so that the branch is real. */
__attribute__((noinline, cold)) static void *expired(size_t n) {
    countdown = INT64_MAX;
    return __libc_malloc(n);
}

void *malloc(size_t n) {
    if ((countdown -= (int64_t)n) <= 0) return expired(n);
    return __libc_malloc(n);
}
#else
void *malloc(size_t n) { return __libc_malloc(n); }
#endif

void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
