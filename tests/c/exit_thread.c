/* exit() from a non-main thread while four other threads allocate. Exits with status 3. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void *keep;

NOINLINE void *exit_leak(void) { return malloc(4321); }

static void *churn(void *arg) {
    size_t base = (size_t)arg;
    for (;;) {
        void *p[16];
        for (int i = 0; i < 16; i++) p[i] = malloc(base + i * 40);
        for (int i = 0; i < 16; i++) free(p[i]);
    }
    return NULL;
}

static void *exiter(void *arg) {
    (void)arg;
    usleep(100000);
    keep = exit_leak();
    printf("exiting\n");
    fflush(stdout);
    exit(3);
}

int main(void) {
    pthread_t t[5];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, (void *)(size_t)(8 + i * 300));
    pthread_create(&t[4], NULL, exiter, NULL);
    pthread_join(t[4], NULL);
    return 0; /* not reached */
}
