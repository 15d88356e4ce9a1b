/* Cancellation: `robust_cancel WAVES DELAY_US`: WAVES waves (default 20) of 4 threads that
 * allocate 64 KiB blocks in a loop (with pthread_testcancel, deferred cancellation) are
 * pthread_cancel'ed DELAY_US microseconds (default 20000) after they start,
 * while interval dumps (a small lg_prof_interval, or prof_interval_secs) are being written on
 * them. Then the main thread leaks cancel_leak 7 x 7000 B and returns normally: the final dump
 * must be written and the process must exit. */
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

#include "robust.h"

static void *worker(void *arg) {
    (void)arg;
    for (;;) {
        char *p = malloc(65536);
        CHECK(p != NULL);
        p[0] = 1;
        free(p);
        pthread_testcancel();
    }
    return NULL;
}

NOINLINE void cancel_leak(void) {
    for (int i = 0; i < 7; i++) keep(malloc(7000));
}

int main(int argc, char **argv) {
    int waves = argc > 1 ? atoi(argv[1]) : 20;
    int delay = argc > 2 ? atoi(argv[2]) : 20000;
    CHECK(waves > 0 && delay > 0);
    for (int wave = 0; wave < waves; wave++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
        usleep(delay);
        for (int i = 0; i < 4; i++) CHECK(pthread_cancel(t[i]) == 0);
        for (int i = 0; i < 4; i++) {
            void *res;
            CHECK(pthread_join(t[i], &res) == 0);
            CHECK(res == PTHREAD_CANCELED);
        }
    }
    cancel_leak();
    printf("waves=%d\n", waves);
    return 0;
}
