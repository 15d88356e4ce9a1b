/* Small stacks. Modes:
 *   exit16k      a thread with a 16 KiB stack (PTHREAD_STACK_MIN) allocates 256 x 16 KiB (enough
 *                to be sampled; every one in exact mode), leaks small_leak 4 x 16384 B, then
 *                calls exit(0) itself: the final dump runs on that 16 KiB stack.
 *   interval16k  a 16 KiB thread allocates and frees 64 MiB in 64 KiB blocks (interval dumps, with
 *                a small lg_prof_interval, are written on it); leaks small_leak 4 x 16384 B;
 *                main joins it and returns.
 *   altmalloc    a SIGUSR1 handler on an 8 KiB sigaltstack (8192 bytes, SIGSTKSZ without
 *                _GNU_SOURCE) mallocs and frees 64 KiB, raised 2000 times; leaks small_leak.
 *   altmmap      the same handler only mmaps and munmaps 64 KiB, raised 2000 times.
 * Without a preload glibc runs all of them to the end. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "robust.h"

#ifndef SMALL_STACK /* overridable only to check the program itself */
#define SMALL_STACK 16384 /* PTHREAD_STACK_MIN */
#endif
#ifndef ALT_STACK
#define ALT_STACK 8192 /* SIGSTKSZ without _GNU_SOURCE */
#endif

NOINLINE void small_leak(void) {
    for (int i = 0; i < 4; i++) keep(malloc(16384));
}

static void *exit_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 256; i++) {
        char *p = malloc(16384);
        CHECK(p != NULL);
        p[0] = 1;
        free(p);
    }
    small_leak();
    printf("exit_from_small_thread\n");
    fflush(stdout);
    exit(0);
}

static void *interval_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 1024; i++) {
        char *p = malloc(65536);
        CHECK(p != NULL);
        p[0] = 1;
        free(p);
    }
    small_leak();
    return NULL;
}

static volatile long handled;
static int use_mmap;

static void on_usr1(int sig) {
    (void)sig;
    int saved = errno;
    if (use_mmap) {
        void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            ((volatile char *)m)[0] = 1;
            munmap(m, 65536);
            handled++;
        }
    } else {
        char *p = malloc(65536);
        if (p) {
            ((volatile char *)p)[0] = 1;
            handled++;
        }
        free(p);
    }
    errno = saved;
}

static void run_thread(void *(*fn)(void *)) {
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0);
    CHECK(pthread_attr_setstacksize(&attr, SMALL_STACK) == 0);
    pthread_t t;
    int err = pthread_create(&t, &attr, fn, NULL);
    if (err) {
        printf("FAIL pthread_create with a %d-byte stack: %s\n", SMALL_STACK, strerror(err));
        exit(1);
    }
    CHECK(pthread_join(t, NULL) == 0);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "exit16k")) {
        run_thread(exit_thread);
        printf("FAIL exit16k: the thread returned\n");
        return 1;
    }
    if (!strcmp(mode, "interval16k")) {
        run_thread(interval_thread);
        printf("interval16k done\n");
        return 0;
    }
    use_mmap = !strcmp(mode, "altmmap");
    CHECK(use_mmap || !strcmp(mode, "altmalloc"));
    stack_t ss = {.ss_sp = malloc(ALT_STACK), .ss_size = ALT_STACK};
    CHECK(ss.ss_sp != NULL);
    CHECK(sigaltstack(&ss, NULL) == 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    for (int i = 0; i < 2000; i++) raise(SIGUSR1);
    small_leak();
    printf("handled=%ld\n", handled);
    return 0;
}
