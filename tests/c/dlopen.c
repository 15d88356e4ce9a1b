/* dlopen/dlclose of a library 200 times while 4 threads malloc and free. Each round leaks
 * 100 B inside the library, called from call_lib. argv[1] is the library's path. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))
#define ROUNDS 200

static atomic_int stop;
static void *keep[ROUNDS];

NOINLINE void *call_lib(void *(*fn)(void)) { return fn(); }

static void *churn(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        void *p[8];
        for (int i = 0; i < 8; i++) p[i] = malloc(32 + i * 64);
        for (int i = 0; i < 8; i++) free(p[i]);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
    for (int r = 0; r < ROUNDS; r++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            printf("dlopen: %s\n", dlerror());
            return 3;
        }
        void *(*leak)(void) = (void *(*)(void))dlsym(h, "lib_leak");
        void (*churn_fn)(void) = (void (*)(void))dlsym(h, "lib_churn");
        if (!leak || !churn_fn) return 4;
        keep[r] = call_lib(leak);
        churn_fn();
        dlclose(h);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("rounds=%d\n", ROUNDS);
    return 0;
}
