/* Allocation-heavy multi-threaded workload for scripts/bench.sh.
 *
 * Each thread keeps a ring of live blocks and replaces one per iteration: a malloc and a free
 * per step, sizes mostly small (16..1024 bytes) with an occasional 64 KiB block, like a
 * service churning request buffers. Prints a checksum so the work cannot be optimized away.
 * usage: alloc_heavy THREADS ITERATIONS_PER_THREAD
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 1024

static long iters;

static void *worker(void *arg) {
    uint64_t x = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    void *ring[RING] = {0};
    uint64_t sum = 0;
    for (long i = 0; i < iters; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t size = (x & 1023) < 1020 ? 16 + (x >> 20) % 1009 : 65536;
        int slot = (int)((x >> 40) % RING);
        free(ring[slot]);
        char *p = malloc(size);
        p[0] = (char)i;
        sum += (uintptr_t)p[0];
        ring[slot] = p;
    }
    for (int i = 0; i < RING; i++) free(ring[i]);
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    iters = argc > 2 ? atol(argv[2]) : 10000000;
    pthread_t t[64];
    uint64_t total = 0;
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads && i < 64; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (uintptr_t)r;
    }
    printf("checksum %llu\n", (unsigned long long)total);
    return 0;
}
