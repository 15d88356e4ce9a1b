/* Exit from a signal handler: the SIGTERM handler calls exit(3) while N threads (argv[1]: 1 or
 * 2; the main thread is one of them) allocate in a tight loop. Another thread, with SIGTERM
 * blocked, sends it with kill(getpid(), SIGTERM) after 30 ms, so the handler runs on an
 * allocating thread, possibly in the middle of malloc or free. exit() runs the atexit handlers
 * (and the preload's final dump) from there. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "robust.h"

static void on_term(int sig) {
    (void)sig;
    exit(3);
}

static void *churn(void *arg) {
    unsigned x = (unsigned)(size_t)arg + 7;
    void *ring[32] = {0};
    for (unsigned long i = 0;; i++) {
        x = x * 1103515245 + 12345;
        size_t n = 16 + (x >> 8) % 100000;
        free(ring[i % 32]);
        ring[i % 32] = malloc(n);
        if (ring[i % 32]) ((char *)ring[i % 32])[0] = 1;
    }
    return NULL;
}

static void *killer(void *arg) {
    (void)arg;
    usleep(30000);
    kill(getpid(), SIGTERM);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1;
    CHECK(n == 1 || n == 2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGTERM, &sa, NULL) == 0);
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_t t;
    CHECK(pthread_sigmask(SIG_BLOCK, &term, &old) == 0);
    CHECK(pthread_create(&t, NULL, killer, NULL) == 0); /* inherits the blocked mask */
    if (n == 2) {
        CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
        CHECK(pthread_create(&t, NULL, churn, (void *)1) == 0);
    }
    CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
    churn(NULL);
    return 0;
}
