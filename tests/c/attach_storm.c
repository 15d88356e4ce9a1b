/* Attach during an allocation storm: 8 threads churn malloc/free (churn_site, everything
 * freed) and keep a block now and then (keep_site); the main thread loads the profiler with
 * dlopen and calls its Agent_OnAttach (exact mode) in the middle, as HotSpot's `load` would,
 * then lets the storm run on. A second call must answer 200 (profiled already). Prints
 * "attach=<rc> again=<rc> kept=<n>".
 * With a third argument "cycles", the storm then goes through 10 rounds of detach (every
 * other one with a dump) and start, queued to every thread as `jeprof-rs detach/start` do,
 * and the second call of Agent_OnAttach, made while detached, must answer 202. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define THREADS 8
#define KEEP_MAX 100000

static atomic_int stop;
static atomic_int nkept;
static void *kept[KEEP_MAX];
void *volatile sink;

NOINLINE static void churn_site(unsigned *x) {
    *x = *x * 1103515245 + 12345;
    void *p = malloc(16 + (*x >> 8) % 4000);
    sink = p;
    free(p);
}

NOINLINE static void keep_site(void) {
    int i = atomic_fetch_add(&nkept, 1);
    if (i < KEEP_MAX) kept[i] = malloc(100);
}

static void *storm(void *arg) {
    unsigned x = (unsigned)(long)arg;
    for (long i = 1; !atomic_load(&stop); i++) {
        churn_site(&x);
        if (i % 512 == 0) keep_site();
    }
    return NULL;
}

/* A control request to every thread, like `jeprof-rs detach/start` (prof_signal 41), with
 * a nonce of its own in the upper 32 bits. */
static void control(pthread_t *t, int value) {
    static unsigned long nonce;
    union sigval v = {.sival_ptr = (void *)(++nonce << 32 | (unsigned)value)};
    for (int i = 0; i < THREADS; i++) pthread_sigqueue(t[i], 41, v);
    pthread_sigqueue(pthread_self(), 41, v);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int cycles = argc > 3 && strcmp(argv[3], "cycles") == 0;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, storm, (void *)(i + 1));
    usleep(50000);
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int (*agent)(void *, const char *, void *) = (int (*)(void *, const char *, void *))dlsym(h, "Agent_OnAttach");
    if (!agent) return 1;
    int rc = agent(NULL, argv[2], NULL);
    usleep(200000);
    int again = -1;
    if (cycles) {
        for (int c = 0; c < 10; c++) {
            control(t, c % 2 ? 0x6a700003 : 0x6a700004); /* detach, detach with a dump */
            usleep(20000);
            if (c == 5) again = agent(NULL, argv[2], NULL);
            control(t, 0x6a700001); /* start */
            usleep(20000);
        }
    } else {
        again = agent(NULL, argv[2], NULL);
    }
    usleep(100000);
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("attach=%d again=%d kept=%d\n", rc, again, atomic_load(&nkept));
    return 0;
}
