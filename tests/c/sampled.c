/* Sampled-mode program: known totals at two sites, plus a large churn that is all freed.
 * The sizes must match tests/tests/sampled.rs: leak_big block i (i < 100000) has
 * 160 + 8 * (i % 128) bytes; leak_medium keeps 256 x 64 KiB; churn allocates and frees
 * 32768 x 16 KiB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

#define BIG_BLOCKS 100000
#define MEDIUM_BLOCKS 256
#define CHURN_BLOCKS 32768

static void *big[BIG_BLOCKS];
static void *medium[MEDIUM_BLOCKS];

NOINLINE void *leak_big(size_t n) { return malloc(n); }
NOINLINE void *leak_medium(void) { return malloc(65536); }
NOINLINE void *churn(void) { return malloc(16384); }

int main(void) {
    unsigned long long big_bytes = 0, medium_bytes = 0, churn_bytes = 0;
    void *ring[64] = {0};
    for (int i = 0; i < CHURN_BLOCKS; i++) {
        /* Interleave the kept sites with the churn so all three share the sampler. */
        if (i % 128 == 0 && i / 128 < MEDIUM_BLOCKS) {
            medium[i / 128] = leak_medium();
            medium_bytes += 65536;
        }
        free(ring[i % 64]);
        ring[i % 64] = churn();
        memset(ring[i % 64], 1, 64);
        churn_bytes += 16384;
    }
    for (int i = 0; i < 64; i++) free(ring[i]);
    for (int i = 0; i < BIG_BLOCKS; i++) {
        size_t n = 160 + 8 * (i % 128);
        big[i] = leak_big(n);
        if (!big[i]) return 2;
        memset(big[i], 0, 16);
        big_bytes += n;
    }
    printf("big=%llu\nmedium=%llu\nchurn=%llu\n", big_bytes, medium_bytes, churn_bytes);
    return 0;
}
