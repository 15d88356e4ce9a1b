/* Failed huge requests: each of calloc(SIZE_MAX/2, 4), malloc(SIZE_MAX-100),
 * aligned_alloc(64, SIZE_MAX-100), pvalloc(SIZE_MAX-100), posix_memalign(64, SIZE_MAX-100),
 * memalign(64, SIZE_MAX-100), valloc(SIZE_MAX-100) and realloc(p, SIZE_MAX-100) must fail
 * (NULL or ENOMEM, p intact), and after each one a named function leaks a known block:
 *   after_calloc 1 x 1111, after_malloc 1 x 2222, after_aligned_alloc 1 x 3333,
 *   after_pvalloc 1 x 4444, after_posix_memalign 1 x 5555, after_memalign 1 x 6666,
 *   after_valloc 1 x 7777, after_realloc 1 x 8888, realloc_base 1 x 100 (the block whose
 *   realloc failed), and at the end after_all 1024 x 65536 (64 MiB, for sampled mode). */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>

#include "robust.h"

#define HUGE (SIZE_MAX - 100)

NOINLINE void after_calloc(void) { keep(malloc(1111)); }
NOINLINE void after_malloc(void) { keep(malloc(2222)); }
NOINLINE void after_aligned_alloc(void) { keep(malloc(3333)); }
NOINLINE void after_pvalloc(void) { keep(malloc(4444)); }
NOINLINE void after_posix_memalign(void) { keep(malloc(5555)); }
NOINLINE void after_memalign(void) { keep(malloc(6666)); }
NOINLINE void after_valloc(void) { keep(malloc(7777)); }
NOINLINE void after_realloc(void) { keep(malloc(8888)); }
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
