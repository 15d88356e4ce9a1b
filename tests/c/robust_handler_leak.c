/* A SIGALRM handler that leaks while the main loop churns: in exact mode every block the
 * handler keeps must be in the final dump, also those it allocated while the interrupted
 * code was inside the profiler (or between a fast path's charge and its slow path). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#define MAX_LEAKS 100000
static volatile int n_leaks;
void *volatile leaks[MAX_LEAKS];
void *volatile sink;

__attribute__((noinline)) static void handler_leak(void) {
    if (n_leaks < MAX_LEAKS) leaks[n_leaks++] = malloc(64);
}

static void on_alarm(int sig) {
    (void)sig;
    handler_leak();
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, 0);
    struct itimerval it = {{0, 100}, {0, 100}};
    setitimer(ITIMER_REAL, &it, 0);
    for (long i = 0; i < 2000000; i++) {
        void *p = malloc(100 + (i & 63));
        sink = p;
        free(p);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, 0);
    printf("handler_leaks=%d\n", n_leaks);
    return 0;
}
