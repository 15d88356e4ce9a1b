#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#define NOINLINE __attribute__((noinline))
static void *keep[1000];
static int nkeep;
NOINLINE void *leaf_alloc(size_t n) { void *p = malloc(n); memset(p, 1, n); return p; }
NOINLINE void leak_small(void) { for (int i = 0; i < 40; i++) keep[nkeep++] = leaf_alloc(24 + i); }
NOINLINE void leak_big(void) { keep[nkeep++] = leaf_alloc(1 << 20); keep[nkeep++] = calloc(3, 100000); }
NOINLINE void churn(void) { for (int i = 0; i < 1000; i++) free(leaf_alloc(i * 8 + 1)); }
NOINLINE void grow(void) { char *p = NULL; for (int i = 1; i < 20; i++) p = realloc(p, i * 1000); keep[nkeep++] = p; }
NOINLINE void maps(void) { void *m = mmap(0, 3 << 20, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0); ((char*)m)[0] = 1; }
static void *worker(void *arg) { (void)arg; leak_small(); churn(); return 0; }
int main(void) {
    pthread_t t; pthread_create(&t, 0, worker, 0); pthread_join(t, 0);
    leak_small(); leak_big(); churn(); grow(); maps();
    void *al; posix_memalign(&al, 64, 4096); keep[nkeep++] = al;
    return 0;
}
