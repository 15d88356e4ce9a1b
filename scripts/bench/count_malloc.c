/* A preload that counts malloc/calloc/realloc calls (all threads) and prints the total at exit
 * to the file named by $COUNT_MALLOC_OUT: the denominator of scripts/bench_java.sh's "ns per
 * recorded malloc" (the JVM's own allocations are recorded too). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long count;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static char bootstrap[1 << 16];
static size_t used;

static void *early(size_t n) { /* calloc from dlsym, before real_calloc is known */
    void *p = bootstrap + used;
    used += (n + 15) & ~(size_t)15;
    return used <= sizeof bootstrap ? p : NULL;
}

void *malloc(size_t n) {
    if (!real_malloc) real_malloc = dlsym(RTLD_NEXT, "malloc");
    __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b) {
    if (!real_calloc) {
        static int busy;
        if (busy) return early(a * b);
        busy = 1;
        real_calloc = dlsym(RTLD_NEXT, "calloc");
    }
    __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    if (!real_realloc) real_realloc = dlsym(RTLD_NEXT, "realloc");
    __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
    return real_realloc(p, n);
}

void free(void *p) {
    static void (*real_free)(void *);
    if ((char *)p >= bootstrap && (char *)p < bootstrap + sizeof bootstrap) return;
    if (!real_free) real_free = dlsym(RTLD_NEXT, "free");
    real_free(p);
}

__attribute__((destructor)) static void report(void) {
    const char *out = getenv("COUNT_MALLOC_OUT");
    if (!out) return;
    FILE *f = fopen(out, "w");
    if (f) {
        fprintf(f, "%lu\n", __atomic_load_n(&count, __ATOMIC_RELAXED));
        fclose(f);
    }
}
