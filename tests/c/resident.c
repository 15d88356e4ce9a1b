// Mapped versus resident: touch_some maps 8 MiB and touches 3 MiB of it, reserve_only maps
// 4 MiB and touches nothing; three threads wait with 64 KiB of their stacks touched while the
// main thread exits (the final dump sees their stacks).
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MiB (1024 * 1024)

static pthread_barrier_t started;

__attribute__((noinline)) static char *touch_some(void) {
    char *p = mmap(NULL, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    madvise(p, 8 * MiB, MADV_NOHUGEPAGE); // page by page, whatever the THP setting
    memset(p, 1, 3 * MiB);
    return p;
}

__attribute__((noinline)) static char *reserve_only(void) {
    return mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void *waiter(void *arg) {
    volatile char buf[64 * 1024];
    memset((char *)buf, 1, sizeof buf);
    pthread_barrier_wait(&started);
    pause();
    return arg;
}

int main(void) {
    char *a = touch_some();
    char *b = reserve_only();
    pthread_barrier_init(&started, NULL, 4);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, waiter, NULL);
    pthread_barrier_wait(&started);
    printf("touched=%p reserved=%p\n", (void *)a, (void *)b);
    return 0;
}
