/* Dumps while running: on demand, on a timer, at new high-water marks.
 *   triggers demand   : keeps 3 x 100000 B at phase1(), prints "ready", then, until a line
 *                       arrives on stdin (the test asks for a dump meanwhile), polls stdin
 *                       and allocates a little now and then (an on-demand dump is written at
 *                       the next allocation); keeps 5 x 70000 B at phase2() and exits.
 *   triggers timer MS : allocates and frees for MS milliseconds, then exits.
 *   triggers threads  : prints how many threads the process has (the profiler adds none
 *                       unless prof_interval_secs asks for a timer thread).
 *   triggers growth   : keeps 8 x 4 MiB at grow() one by one, frees them all, keeps 2 x 4 MiB
 *                       at regrow() (below the high-water mark), exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

void *volatile keep[64];

NOINLINE void phase1(void) { for (int i = 0; i < 3; i++) keep[i] = malloc(100000); }
NOINLINE void phase2(void) { for (int i = 0; i < 5; i++) keep[10 + i] = malloc(70000); }
NOINLINE void *grow(void) { return malloc(4 << 20); }
NOINLINE void *regrow(void) { return malloc(4 << 20); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "demand")) {
        phase1();
        printf("ready\n");
        fflush(stdout);
        for (;;) {
            struct pollfd in = {.fd = 0, .events = POLLIN};
            if (poll(&in, 1, 10) > 0) break;
            free(malloc(64));
        }
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 2;
        phase2();
        printf("done\n");
        return 0;
    }
    if (argc > 2 && !strcmp(argv[1], "timer")) {
        double end = now() + atoi(argv[2]) / 1000.0;
        long n = 0;
        while (now() < end) {
            free(malloc(1000));
            n++;
            usleep(1000);
        }
        printf("done %s\n", n > 0 ? "ok" : "none");
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "threads")) {
        int n = 0;
        char line[256];
        FILE *f = fopen("/proc/self/status", "r");
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "Threads: %d", &n) == 1) break;
        if (f) fclose(f);
        printf("threads %d\n", n);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "growth")) {
        for (int i = 0; i < 8; i++) keep[i] = grow();
        for (int i = 0; i < 8; i++) free(keep[i]);
        for (int i = 0; i < 2; i++) keep[i] = regrow();
        printf("done\n");
        return 0;
    }
    return 1;
}
