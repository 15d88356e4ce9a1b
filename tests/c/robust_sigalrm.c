/* Signal-handler re-entry: SIGALRM every 100 us (setitimer ITIMER_REAL) whose handler does
 * free(malloc(200)), while the main thread (and in mode "thread" a second thread) mallocs and
 * frees for about a second. Mode "altstack" runs the handler on a sigaltstack.
 * Leaks (exact mode checks them): loop_leak 100 B every 4096th iteration (count printed as
 * loop_leaks=N), main_leak 10 x 1000 B, thread_leak 5 x 3000 B (mode "thread").
 * The timer stays armed through exit, so it also fires while the final dump is written.
 * The handler's size (200 B) is served from a tcache bin that each thread fills before the
 * handler can run on it, and the loop's sizes (1000-4000 B) never use that bin, so glibc's own
 * malloc is never re-entered on a locked path: the program runs to the end without a preload. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include "robust.h"

static volatile long handled;

/* What the handler does; also called before the handler can run on a thread, to fill that
 * thread's tcache bin (the volatile store keeps gcc from removing the pair). */
static void alloc_200(void) {
    void *p = malloc(200);
    if (p) ((volatile char *)p)[0] = 1;
    free(p);
}

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    alloc_200();
    handled++;
    errno = saved;
}

NOINLINE void loop_leak(void) { keep(malloc(100)); }
NOINLINE void main_leak(void) {
    for (int i = 0; i < 10; i++) keep(malloc(1000));
}
NOINLINE void thread_leak(void) {
    for (int i = 0; i < 5; i++) keep(malloc(3000));
}

static volatile int stop;

static long churn(double seconds) {
    long leaks = 0;
    double end = now_s() + seconds;
    unsigned x = 12345;
    for (long i = 1;; i++) {
        x = x * 1103515245 + 12345;
        size_t n = 1000 + (x >> 8) % 3000;
        char *p = malloc(n);
        CHECK(p != NULL);
        p[0] = 1;
        p[n - 1] = 2;
        free(p);
        if (i % 4096 == 0) {
            loop_leak();
            leaks++;
            if (now_s() > end || stop) break;
        }
    }
    return leaks;
}

static volatile long thread_leaks;

static void *second(void *arg) {
    (void)arg;
    /* Created with SIGALRM blocked: fill this thread's tcache bin for the handler's size (glibc
     * sets the tcache up under an arena lock) before the handler may run here. */
    alloc_200();
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &alrm, NULL) == 0);
    thread_leaks = churn(1.0);
    thread_leak();
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "plain";
    int altstack = !strcmp(mode, "altstack");
    int thread = !strcmp(mode, "thread");
    CHECK(altstack || thread || !strcmp(mode, "plain"));
    alloc_200(); /* the handler's tcache bin is never empty on this thread */
    if (altstack) {
        stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536};
        CHECK(ss.ss_sp != NULL);
        CHECK(sigaltstack(&ss, NULL) == 0);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART | (altstack ? SA_ONSTACK : 0);
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    pthread_t t;
    if (thread) {
        sigset_t alrm, old;
        sigemptyset(&alrm);
        sigaddset(&alrm, SIGALRM);
        CHECK(pthread_sigmask(SIG_BLOCK, &alrm, &old) == 0);
        CHECK(pthread_create(&t, NULL, second, NULL) == 0);
        CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
    }
    struct itimerval it = {{0, 100}, {0, 100}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    long leaks = churn(1.0);
    if (thread) {
        CHECK(pthread_join(t, NULL) == 0);
        leaks += thread_leaks;
    }
    main_leak();
    printf("loop_leaks=%ld\nhandled_some=%d\n", leaks, handled > 100);
    fflush(stdout);
    return 0;
}
