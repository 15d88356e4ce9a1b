/* Exact-mode program: every leak site is a named noinline function with a known amount.
 * The program checks libc semantics itself (NULL results, errno) and exits 1 with a FAIL line
 * if anything is off, so it also runs unprofiled as a control.
 * Expected amounts live in tests/tests/exact.rs. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

static void *keep[4096];
static int nkeep;
static int failures;

static void hold(void *p) {
    if (nkeep >= (int)(sizeof keep / sizeof keep[0])) abort();
    keep[nkeep++] = p;
}

#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            printf("FAIL line %d: %s\n", __LINE__, #cond);             \
            failures++;                                                \
        }                                                              \
    } while (0)

/* 3 x 1000 B kept. */
NOINLINE void leak_malloc(void) {
    for (int i = 0; i < 3; i++) {
        char *p = malloc(1000); /* LINE:leak_malloc */
        CHECK(p != NULL);
        memset(p, 1, 1000);
        hold(p);
    }
}

/* 2 x calloc(7, 300) = 4200 B, zeroed. */
NOINLINE void leak_calloc(void) {
    for (int i = 0; i < 2; i++) {
        unsigned char *p = calloc(7, 300);
        CHECK(p != NULL);
        for (int j = 0; j < 2100; j++) CHECK(p[j] == 0);
        hold(p);
    }
}

/* 10 MiB in one block (glibc serves it with mmap internally). */
NOINLINE void leak_large(void) {
    char *p = malloc(10 << 20);
    CHECK(p != NULL);
    p[0] = 1;
    p[(10 << 20) - 1] = 1;
    hold(p);
}

/* A realloc chain: 100 -> 1000 -> 5000 -> 20000; only the last site holds bytes. */
NOINLINE char *start_chain(void) { return malloc(100); }
NOINLINE char *grow_chain_1(char *p) { return realloc(p, 1000); }
NOINLINE char *grow_chain_2(char *p) { return realloc(p, 5000); }
NOINLINE char *grow_chain_3(char *p) { return realloc(p, 20000); }

/* A shrinking realloc: 8000 -> 100. */
NOINLINE char *shrink_start(void) { return malloc(8000); }
NOINLINE char *shrink_realloc(char *p) { return realloc(p, 100); }

static void realloc_chains(void) {
    char *p = start_chain();
    CHECK(p != NULL);
    memset(p, 7, 100);
    p = grow_chain_1(p);
    CHECK(p != NULL);
    p = grow_chain_2(p);
    CHECK(p != NULL);
    p = grow_chain_3(p);
    CHECK(p != NULL);
    for (int i = 0; i < 100; i++) CHECK(p[i] == 7);
    hold(p);

    char *q = shrink_start();
    CHECK(q != NULL);
    q = shrink_realloc(q);
    CHECK(q != NULL);
    hold(q);
}

/* Aligned allocations: the requested sizes are recorded, not rounded. */
NOINLINE void leak_posix_memalign(void) {
    void *p = NULL;
    CHECK(posix_memalign(&p, 64, 1000) == 0);
    CHECK(((uintptr_t)p & 63) == 0);
    hold(p);
}

NOINLINE void leak_aligned_alloc(void) {
    void *p = aligned_alloc(256, 1000);
    CHECK(p != NULL && ((uintptr_t)p & 255) == 0);
    hold(p);
}

NOINLINE void leak_memalign(void) {
    void *p = memalign(4096, 3000);
    CHECK(p != NULL && ((uintptr_t)p & 4095) == 0);
    hold(p);
}

NOINLINE void leak_valloc(void) {
    void *p = valloc(5000);
    CHECK(p != NULL && ((uintptr_t)p & 4095) == 0);
    hold(p);
}

/* posix_memalign with an invalid alignment fails with EINVAL and records nothing. */
NOINLINE void bad_posix_memalign(void) {
    void *p = (void *)1;
    CHECK(posix_memalign(&p, 3, 100) == EINVAL);
}

/* 10 x 500 B, the even ones freed: 5 x 500 B left. */
NOINLINE void *maybe_keep(void) { return malloc(500); }

static void freed_on_one_path(void) {
    for (int i = 0; i < 10; i++) {
        void *p = maybe_keep();
        CHECK(p != NULL);
        if (i % 2 == 0)
            free(p);
        else
            hold(p);
    }
}

/* 50 x 777 B, all freed: nothing in use, 38850 B allocated. */
NOINLINE void *all_freed(void) { return malloc(777); }

static void all_freed_path(void) {
    void *ps[50];
    for (int i = 0; i < 50; i++) ps[i] = all_freed();
    for (int i = 0; i < 50; i++) free(ps[i]);
}

/* Edge cases of the API. Sizes through volatiles so gcc does not warn about them. */
static volatile size_t half_max = SIZE_MAX / 2;
static volatile size_t near_max = SIZE_MAX - 4096;
NOINLINE void *realloc_null(void) { return realloc(NULL, 2222); }
NOINLINE void *realloc_zero_alloc(void) { return malloc(3333); }
NOINLINE void *realloc_zero(void *p) { return realloc(p, 0); }
NOINLINE void *calloc_overflow(void) { return calloc(half_max, 3); }
NOINLINE void *reallocarray_base(void) { return malloc(100); }
NOINLINE void *reallocarray_overflow(void *p) { return reallocarray(p, half_max, 3); }
NOINLINE void *reallocarray_ok(void *p) { return reallocarray(p, 30, 10); }
NOINLINE void *malloc_huge(void) { return malloc(near_max); }
NOINLINE void *realloc_fail_base(void) { return malloc(100); }
NOINLINE void *realloc_fail(void *p) { return realloc(p, near_max); }
NOINLINE void *usable(void) { return malloc(100); }

static void edge_cases(void) {
    void *p = realloc_null();
    CHECK(p != NULL);
    hold(p);

    void *z = realloc_zero_alloc();
    CHECK(z != NULL);
    void *r = realloc_zero(z);
    free(r); /* glibc frees and returns NULL; free whatever came back either way */

    errno = 0;
    CHECK(calloc_overflow() == NULL);
    CHECK(errno == ENOMEM);

    void *b = reallocarray_base();
    CHECK(b != NULL);
    memset(b, 9, 100);
    errno = 0;
    CHECK(reallocarray_overflow(b) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(((unsigned char *)b)[99] == 9); /* still valid, still ours */
    hold(b);

    void *a = reallocarray_base();
    CHECK(a != NULL);
    a = reallocarray_ok(a); /* 300 B at reallocarray_ok */
    CHECK(a != NULL);
    hold(a);

    /* A failed realloc leaves the block where it was, recorded at its old site. */
    void *f = realloc_fail_base();
    CHECK(f != NULL);
    memset(f, 3, 100);
    errno = 0;
    CHECK(realloc_fail(f) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(((unsigned char *)f)[99] == 3);
    hold(f);

    errno = 0;
    CHECK(malloc_huge() == NULL);
    CHECK(errno == ENOMEM);

    free(NULL);

    void *u = usable();
    CHECK(u != NULL && malloc_usable_size(u) >= 100);
    free(u);

    /* errno survives successful calls. */
    errno = 1234;
    void *e = malloc(64);
    CHECK(errno == 1234);
    free(e);
    CHECK(errno == 1234);
    e = calloc(4, 16);
    CHECK(errno == 1234);
    e = realloc(e, 4096);
    CHECK(errno == 1234);
    free(e);
    CHECK(errno == 1234);
    CHECK(posix_memalign(&e, 64, 64) == 0);
    CHECK(errno == 1234);
    free(e);
    errno = 0;
}

/* Cross-thread frees: 16 x 4096 B allocated in one thread, freed in another. */
NOINLINE void *xthread_alloc(void) { return malloc(4096); }

static void *xthread_blocks[16];

static void *alloc_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 16; i++) xthread_blocks[i] = xthread_alloc();
    return NULL;
}

static void *free_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 16; i++) free(xthread_blocks[i]);
    return NULL;
}

static void cross_thread(void) {
    pthread_t t;
    pthread_create(&t, NULL, alloc_thread, NULL);
    pthread_join(t, NULL);
    pthread_create(&t, NULL, free_thread, NULL);
    pthread_join(t, NULL);
}

/* 8 threads, started together; thread i leaks (i+1) x 1000 B at per_thread_leak_<i> and
 * 10 x 333 B at shared_thread_leak, and churns in between. */
#define NTHREADS 8
static pthread_barrier_t barrier;
static void *thread_keep[NTHREADS][32];

NOINLINE void *shared_thread_leak(void) { return malloc(333); }

#define PER_THREAD(i) \
    NOINLINE void *per_thread_leak_##i(void) { return malloc(1000); }
PER_THREAD(0)
PER_THREAD(1)
PER_THREAD(2)
PER_THREAD(3)
PER_THREAD(4)
PER_THREAD(5)
PER_THREAD(6)
PER_THREAD(7)

static void *(*per_thread_fns[NTHREADS])(void) = {
    per_thread_leak_0, per_thread_leak_1, per_thread_leak_2, per_thread_leak_3,
    per_thread_leak_4, per_thread_leak_5, per_thread_leak_6, per_thread_leak_7,
};

NOINLINE void *thread_churn(size_t n) { return malloc(n); }

static void *worker(void *arg) {
    int idx = (int)(intptr_t)arg;
    int k = 0;
    pthread_barrier_wait(&barrier);
    for (int round = 0; round < 2000; round++) {
        void *c = thread_churn(16 + (round % 200));
        free(c);
        if (round % 100 == 0 && k < idx + 1) thread_keep[idx][k++] = per_thread_fns[idx]();
    }
    while (k < idx + 1) thread_keep[idx][k++] = per_thread_fns[idx]();
    for (int j = 0; j < 10; j++) thread_keep[idx][k++] = shared_thread_leak();
    return NULL;
}

static void threads(void) {
    pthread_t t[NTHREADS];
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
}

/* One allocation site reached alternately through two callers, each from two grandparents,
 * all with alike frames: every walk starts from the same pc, sp and rbp, and only words
 * further up the stack tell the four paths apart (the unwinder's memo must see them).
 * same_leaf keeps 20 blocks, 4000 B; via_left 5 + 5 of 100 B, via_right 5 + 5 of 300 B;
 * from_a and from_b 2000 B each. */
NOINLINE void *same_leaf(size_t n) {
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}
NOINLINE void via_left(void) { hold(same_leaf(100)); }
NOINLINE void via_right(void) { hold(same_leaf(300)); }
NOINLINE void from_a(int right) {
    if (right) via_right(); else via_left();
}
NOINLINE void from_b(int right) {
    if (right) via_right(); else via_left();
}
NOINLINE void alternate_paths(void) {
    for (int i = 0; i < 20; i++) {
        if (i & 2) from_b(i & 1); else from_a(i & 1);
    }
}

int main(void) {
    leak_malloc();
    alternate_paths();
    leak_calloc();
    leak_large();
    realloc_chains();
    leak_posix_memalign();
    leak_aligned_alloc();
    leak_memalign();
    leak_valloc();
    bad_posix_memalign();
    freed_on_one_path();
    all_freed_path();
    edge_cases();
    cross_thread();
    threads();
    printf("exact done failures=%d\n", failures);
    return failures ? 1 : 0;
}
