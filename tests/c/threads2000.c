/* 2000 threads in batches of 50. Each keeps a malloc'd value in a pthread key whose destructor
 * mallocs and frees scratch memory, frees the value and leaks 8 B at dtor_leak; the thread body
 * leaks 16 B at thread_leak. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))
#define THREADS 2000
#define BATCH 50

static pthread_key_t key;
static void *leaks[THREADS];
static void *dtor_leaks[THREADS];
static atomic_int ndtor;

NOINLINE void *tls_value_alloc(void) { return malloc(64); }
NOINLINE void *dtor_scratch(void) { return malloc(200); }
NOINLINE void *dtor_leak(void) { return malloc(8); }
NOINLINE void *thread_leak(void) { return malloc(16); }

static void destructor(void *value) {
    void *s = dtor_scratch();
    memset(s, 0, 200);
    free(s);
    free(value);
    dtor_leaks[atomic_fetch_add(&ndtor, 1)] = dtor_leak();
}

static void *body(void *arg) {
    int idx = (int)(size_t)arg;
    pthread_setspecific(key, tls_value_alloc());
    leaks[idx] = thread_leak();
    for (int i = 0; i < 20; i++) free(malloc(32 + i * 16));
    return NULL;
}

int main(void) {
    pthread_key_create(&key, destructor);
    for (int b = 0; b < THREADS; b += BATCH) {
        pthread_t t[BATCH];
        for (int i = 0; i < BATCH; i++)
            if (pthread_create(&t[i], NULL, body, (void *)(size_t)(b + i)) != 0) return 2;
        for (int i = 0; i < BATCH; i++) pthread_join(t[i], NULL);
    }
    printf("threads=%d destructors=%d\n", THREADS, atomic_load(&ndtor));
    return 0;
}
