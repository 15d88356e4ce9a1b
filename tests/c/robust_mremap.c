/* Phantom mapping: mremap of a range that is not mapped fails with EFAULT, and the mmap profile
 * must not record those bytes. phantom_remap does 10 such calls (1 MiB -> 2 MiB, MREMAP_MAYMOVE,
 * on an address just unmapped); real_map keeps 3 x 64 KiB mapped, real_remap grows one 64 KiB
 * mapping to 128 KiB (kept): positive controls for the same profile. */
#define _GNU_SOURCE
#include <sys/mman.h>

#include "robust.h"

NOINLINE void real_map(void) {
    for (int i = 0; i < 3; i++) {
        void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(m != MAP_FAILED);
        keep(m);
    }
}

NOINLINE void *map_for_remap(void) {
    void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    return m;
}

NOINLINE void real_remap(void *m) {
    void *n = mremap(m, 65536, 131072, MREMAP_MAYMOVE);
    CHECK(n != MAP_FAILED);
    keep(n);
}

NOINLINE void phantom_remap(void) {
    for (int i = 0; i < 10; i++) {
        char *hole = mmap(NULL, 4 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(hole != MAP_FAILED);
        CHECK(munmap(hole, 4 << 20) == 0);
        errno = 0;
        void *r = mremap(hole, 1 << 20, 2 << 20, MREMAP_MAYMOVE);
        CHECK(r == MAP_FAILED && errno == EFAULT);
    }
}

int main(void) {
    real_map();
    real_remap(map_for_remap());
    phantom_remap();
    printf("phantom_failed=10\n");
    return 0;
}
