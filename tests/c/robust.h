/* Shared by the robust_*.c programs (tests/tests/robust.rs): named leak sites that -O2 keeps as
 * frames of their own (noinline, and the result stored after the call, so no tail call), and a
 * loud failure for anything libc itself reports, so that every program also runs unprofiled as a
 * control and any difference under the preload is the preload's. */
#ifndef ROBUST_H
#define ROBUST_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void *volatile kept[65536] __attribute__((unused));
static volatile int nkept __attribute__((unused));

/* Keeps p reachable (and the allocating call from being a tail call). */
__attribute__((unused)) static void keep(void *p) {
    int i = __atomic_fetch_add(&nkept, 1, __ATOMIC_RELAXED);
    if (i >= (int)(sizeof kept / sizeof kept[0])) abort();
    kept[i] = p;
}

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            printf("FAIL %s:%d: %s (errno %d)\n", __FILE__, __LINE__, #cond, errno); \
            fflush(stdout);                                                           \
            _exit(1);                                                                 \
        }                                                                             \
    } while (0)

__attribute__((unused)) static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
#endif
