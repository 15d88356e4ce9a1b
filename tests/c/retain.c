// Allocator retention next to a real leak (issue: "is it a leak, or is it glibc?").
//
// keep_tenth: 200,000 small blocks of 1000 bytes, every tenth kept (20,000 blocks, 20 MB): the
// other nine tenths are freed, and glibc keeps them (RSS stays near the 200 MB the loop
// touched); malloc_trim(0) can return the whole pages inside the freed runs.
// leak_records: 1,000 blocks of 24,000 bytes never freed (24 MB), the real leak.
// Prints kept_bytes= and leak_bytes=, then, with an argument N, sleeps N seconds in short
// naps with a tiny allocation each (so that a trim request is served), printing "sleeping"
// first, or exits.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCKS 200000
#define SMALL 1000
#define LEAKS 1000
#define LEAK_SIZE 24000

static void *kept[BLOCKS / 10];
static void *all[BLOCKS];

__attribute__((noinline)) static void *small_block(void) {
    void *p = malloc(SMALL);
    memset(p, 1, SMALL);
    return p;
}

__attribute__((noinline)) static void keep_tenth(void) {
    for (int i = 0; i < BLOCKS; i++) all[i] = small_block();
    for (int i = 0; i < BLOCKS; i++) {
        if (i % 10 == 0)
            kept[i / 10] = all[i];
        else
            free(all[i]);
    }
}

__attribute__((noinline)) static void *leak_records(void) {
    void *last = NULL;
    for (int i = 0; i < LEAKS; i++) {
        last = malloc(LEAK_SIZE);
        memset(last, 2, LEAK_SIZE);
    }
    return last;
}

int main(int argc, char **argv) {
    keep_tenth();
    leak_records();
    printf("kept_bytes=%d\nleak_bytes=%d\n", BLOCKS / 10 * SMALL, LEAKS * LEAK_SIZE);
    if (argc > 1) {
        int secs = atoi(argv[1]);
        printf("sleeping\n");
        fflush(stdout);
        for (int i = 0; i < secs * 20; i++) {
            usleep(50000);
            free(malloc(64));
        }
    }
    return 0;
}
