/* Stacks of every shape an unwinder meets, for comparing ours with libgcc's: built with -O2
 * -fomit-frame-pointer (frame pointers cannot help), allocating from leaf functions, from a
 * libc callback (qsort), inside libc (strdup), under alloca and variable-length arrays (CFA
 * moved to rbp), below a 48 KiB stack frame (beyond our rule cache's packing), deep
 * recursion, and on several threads. Every allocation is kept, so every stack is in the dump. */
#include <alloca.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))
#define N 64

void *volatile keep[4096]; /* volatile: the compiler must not drop the mallocs */
static int nkeep;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void hold(void *p) {
    pthread_mutex_lock(&lock);
    if (nkeep < 4096) keep[nkeep++] = p;
    pthread_mutex_unlock(&lock);
}

NOINLINE void leaf(size_t n) { hold(malloc(n)); }

NOINLINE int by_qsort(const void *a, const void *b) {
    hold(malloc(24));
    return *(const int *)a - *(const int *)b;
}

NOINLINE void with_alloca(int n) {
    char *buf = alloca(n);
    memset(buf, 1, n);
    leaf(40 + buf[n - 1]);
}

NOINLINE void with_vla(int n) {
    char vla[n];
    memset(vla, 2, n);
    leaf(48 + vla[0]);
}

NOINLINE void big_frame(void) {
    volatile char big[48 * 1024];
    big[0] = 1;
    big[sizeof big - 1] = 2;
    leaf(56 + big[0]);
}

NOINLINE int recurse(int depth) {
    if (depth == 0) {
        leaf(64);
        return 0;
    }
    return recurse(depth - 1) + 1;
}

NOINLINE void dup(void) { hold(strdup("a string from strdup")); }

static void work(void) {
    int v[N];
    for (int i = 0; i < N; i++) v[i] = (i * 37) % N;
    qsort(v, 8, sizeof v[0], by_qsort);
    for (int i = 0; i < 3; i++) {
        with_alloca(100 + i);
        with_vla(200 + i);
        big_frame();
        recurse(20 + i);
        dup();
    }
}

static void *thread_main(void *arg) {
    (void)arg;
    work();
    return NULL;
}

int main(void) {
    work();
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, thread_main, NULL);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    printf("kept %d\n", nkeep);
    return 0;
}
