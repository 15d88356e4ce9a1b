/* mmap tracking: each site is a named noinline function with a known number of bytes still
 * mapped at exit (see tests/tests/mmap.rs). argv[1] is a directory for a temporary file. */
#define _GNU_SOURCE
#define _LARGEFILE64_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define MiB (1024 * 1024)

static int failures;
#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            printf("FAIL line %d: %s\n", __LINE__, #cond);             \
            failures++;                                                \
        }                                                              \
    } while (0)

static void *anon(size_t n) {
    return mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/* 3 x 1 MiB kept. */
NOINLINE void keep_maps(void) {
    for (int i = 0; i < 3; i++) {
        char *p = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED);
        p[0] = 1;
    }
}

/* 2 MiB kept, through mmap64. */
NOINLINE void keep_map64(void) {
    char *p = mmap64(NULL, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    p[0] = 1;
}

/* 100 x (map 64 KiB, unmap): nothing left. */
NOINLINE void churn_maps(void) {
    for (int i = 0; i < 100; i++) {
        char *p = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED);
        p[0] = 1;
        CHECK(munmap(p, 64 * 1024) == 0);
    }
}

/* 4 MiB mapped, upper half unmapped: 2 MiB left. */
NOINLINE void half_unmap(void) {
    char *p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    CHECK(munmap(p + 2 * MiB, 2 * MiB) == 0);
}

/* 3 MiB mapped, middle 1 MiB unmapped: 2 MiB left in two pieces. */
NOINLINE void punch_hole(void) {
    char *p = mmap(NULL, 3 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    CHECK(munmap(p + MiB, MiB) == 0);
}

/* 1 MiB mapped at grow_map_origin, grown to 3 MiB by mremap at grow_map. */
NOINLINE char *grow_map_origin(void) { return anon(MiB); }

NOINLINE char *grow_map(char *p) {
    return mremap(p, MiB, 3 * MiB, MREMAP_MAYMOVE);
}

/* 64 MiB PROT_NONE reservation: not counted. */
NOINLINE char *reserve(void) {
    return mmap(NULL, 64 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
}

/* A read-write MAP_FIXED commit of 1 MiB inside the reservation: counted here. */
NOINLINE char *commit(char *base) {
    return mmap(base + 8 * MiB, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                -1, 0);
}

/* A 256 KiB file mapped read-only and kept. */
NOINLINE char *map_file(int fd) {
    return mmap(NULL, 256 * 1024, PROT_READ, MAP_SHARED, fd, 0);
}

/* A failed mmap records nothing. */
NOINLINE void *failed_map(void) {
    return mmap(NULL, MiB, PROT_READ, MAP_PRIVATE, -1, 0); /* no MAP_ANONYMOUS, bad fd */
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    keep_maps();
    keep_map64();
    churn_maps();
    half_unmap();
    punch_hole();

    char *g = grow_map_origin();
    CHECK(g != MAP_FAILED);
    g[0] = 5;
    g = grow_map(g);
    CHECK(g != MAP_FAILED);
    CHECK(g[0] == 5);
    g[3 * MiB - 1] = 1;

    char *res = reserve();
    CHECK(res != MAP_FAILED);
    char *c = commit(res);
    CHECK(c == res + 8 * MiB);
    c[0] = 1;

    char path[4096];
    snprintf(path, sizeof path, "%s/mapped-file-XXXXXX", argv[1]);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 256 * 1024) == 0);
    char *f = map_file(fd);
    CHECK(f != MAP_FAILED);
    CHECK(f[1000] == 0);
    close(fd);

    CHECK(failed_map() == MAP_FAILED);

    printf("mmap done failures=%d\n", failures);
    return failures ? 1 : 0;
}
