/* Keeps 64 blocks of 8 MiB at big(): an allocator under the profiler (jemalloc) has to map new
 * chunks for them while the program runs, and the program itself maps nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *volatile keep[64];

__attribute__((noinline)) void *big(size_t n) { return malloc(n); }

int main(void) {
    for (int i = 0; i < 64; i++) {
        keep[i] = big(8 << 20);
        memset(keep[i], 1, 4096);
    }
    printf("ok\n");
    return 0;
}
