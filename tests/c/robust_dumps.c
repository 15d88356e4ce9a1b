/* Concurrent dumps: 8 threads allocate at once (each 64 MiB in blocks of 4-64 KiB, keeping a
 * ring of 64 live blocks that grows the in-use bytes now and then), so that with
 * lg_prof_interval:24 and/or prof_gdump:true several threads cross a dump threshold at the same
 * time. Every dump written must be whole. Leak: dumps_leak 8 x 10000 B. */
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

#include "robust.h"

NOINLINE void dumps_leak(void) { keep(malloc(10000)); }

static void *worker(void *arg) {
    unsigned x = (unsigned)(size_t)arg * 2654435761u + 1;
    enum { RING = 64 };
    char *ring[RING] = {0};
    size_t total = 0;
    for (long i = 0; total < (64u << 20); i++) {
        x = x * 1103515245 + 12345;
        size_t n = 4096 + (x >> 8) % 61440;
        /* Every 256th block stays (a new high-water mark); the others cycle through the ring. */
        char *p = malloc(n);
        CHECK(p != NULL);
        p[0] = 1;
        total += n;
        if (i % 256 == 255) {
            keep(p);
            continue;
        }
        free(ring[i % RING]);
        ring[i % RING] = p;
    }
    for (int i = 0; i < RING; i++) free(ring[i]);
    dumps_leak();
    return NULL;
}

int main(void) {
    pthread_t t[8];
    for (long i = 0; i < 8; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < 8; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("threads=8\n");
    return 0;
}
