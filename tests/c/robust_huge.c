/* Failed huge requests: each of calloc(SIZE_MAX/2, 4), malloc(SIZE_MAX-100),
 * aligned_alloc(64, SIZE_MAX-100), pvalloc(SIZE_MAX-100), posix_memalign(64, SIZE_MAX-100),
 * memalign(64, SIZE_MAX-100), valloc(SIZE_MAX-100) and realloc(p, SIZE_MAX-100) must fail
 * (NULL or ENOMEM, p intact), and right after each one a named function leaks one small block
 * (smaller than the 101 bytes by which SIZE_MAX-100 wraps below zero):
 *   after_calloc 40 B, after_malloc 48 B, after_aligned_alloc 56 B, after_pvalloc 64 B,
 *   after_posix_memalign 72 B, after_memalign 80 B, after_valloc 88 B, after_realloc 96 B,
 *   realloc_base 100 B (the block whose realloc failed), and at the end after_all
 *   1024 x 65536 B (64 MiB, for sampled mode). */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>

#include "robust.h"

#define HUGE (SIZE_MAX - 100)

NOINLINE void after_calloc(void) { keep(malloc(40)); }
NOINLINE void after_malloc(void) { keep(malloc(48)); }
NOINLINE void after_aligned_alloc(void) { keep(malloc(56)); }
NOINLINE void after_pvalloc(void) { keep(malloc(64)); }
NOINLINE void after_posix_memalign(void) { keep(malloc(72)); }
NOINLINE void after_memalign(void) { keep(malloc(80)); }
NOINLINE void after_valloc(void) { keep(malloc(88)); }
NOINLINE void after_realloc(void) { keep(malloc(96)); }
NOINLINE void *realloc_base(void) {
    void *p = malloc(100);
    keep(p);
    return p;
}
NOINLINE void after_all(void) {
    for (int i = 0; i < 1024; i++) keep(malloc(65536));
}

/* The huge sizes go through a volatile so that gcc cannot fold the calls away. */
static volatile size_t huge = HUGE;
static volatile size_t half = SIZE_MAX / 2;

int main(void) {
    CHECK(calloc(half, 4) == NULL);
    after_calloc();
    CHECK(malloc(huge) == NULL);
    after_malloc();
    CHECK(aligned_alloc(64, huge) == NULL);
    after_aligned_alloc();
    CHECK(pvalloc(huge) == NULL);
    after_pvalloc();
    void *q = NULL;
    CHECK(posix_memalign(&q, 64, huge) == ENOMEM);
    after_posix_memalign();
    CHECK(memalign(64, huge) == NULL);
    after_memalign();
    CHECK(valloc(huge) == NULL);
    after_valloc();
    char *p = realloc_base();
    memset(p, 5, 100);
    CHECK(realloc(p, huge) == NULL);
    CHECK(p[99] == 5);
    after_realloc();
    after_all();
    printf("all_failed_cleanly=1\n");
    return 0;
}
