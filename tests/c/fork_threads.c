/* fork while other threads allocate: no profiler lock may be held across fork. 30 children,
 * each leaks 4096 B at child_leak and exits with exit(). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define CHILDREN 30

static atomic_int stop;
static void *keep;

NOINLINE void *child_leak(void) { return malloc(4096); }

static void *churn(void *arg) {
    size_t base = (size_t)arg;
    while (!atomic_load(&stop)) {
        void *p[16];
        for (int i = 0; i < 16; i++) p[i] = malloc(base + i * 24);
        for (int i = 0; i < 16; i++) free(p[i]);
    }
    return NULL;
}

int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, (void *)(size_t)(16 + i * 100));
    usleep(20000);
    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            for (int i = 0; i < 1000; i++) free(malloc(64 + i));
            keep = child_leak();
            memset(keep, 1, 4096);
            exit(0);
        }
        pids[c] = pid;
    }
    int bad = 0;
    for (int c = 0; c < CHILDREN; c++) {
        int status = 0;
        if (waitpid(pids[c], &status, 0) != pids[c] || status != 0) bad++;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int c = 0; c < CHILDREN; c++) printf("child=%d\n", (int)pids[c]);
    printf("bad=%d\n", bad);
    return bad ? 1 : 0;
}
