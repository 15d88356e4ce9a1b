/* A steady leak among churn and noise, on the heap and in mappings, for `jeprof-rs trend`.
 *   trend STEPS : each step keeps 64 KiB at leak_step(), maps and keeps 64 KiB at map_leak(),
 *                 allocates and frees 256 KiB at churn(), and holds 4 or 5 blocks of 32 KiB
 *                 (alternately) at noisy(); sleeps 20 ms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

void *volatile keep[4096];
void *volatile pool[8];

NOINLINE void *leak_step(void) { return malloc(65536); }
NOINLINE void *churn(void) { return malloc(262144); }
NOINLINE void *noisy(void) { return malloc(32768); }
NOINLINE void *map_leak(void) {
    void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    if (steps > 2000) steps = 2000;
    for (int i = 0; i < 4; i++) pool[i] = noisy();
    for (int s = 0; s < steps; s++) {
        keep[2 * s] = leak_step();
        memset(keep[2 * s], 1, 64);
        keep[2 * s + 1] = map_leak();
        char *c = churn();
        memset(c, 2, 64);
        free(c);
        if (s % 2 == 0) {
            pool[4] = noisy();
        } else {
            free(pool[4]);
            pool[4] = NULL;
        }
        usleep(20000);
    }
    printf("done\n");
    return 0;
}
