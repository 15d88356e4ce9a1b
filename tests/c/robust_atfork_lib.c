/* DT_NEEDED library of robust_atfork.c. Its constructor runs before the preload's (a needed
 * library is initialized before LD_PRELOAD objects), so these fork handlers are registered
 * before the preload's: this prepare handler runs after the preload's prepare handler, while
 * that one holds its locks. When the program sets robust_atfork_lib_alloc, every handler
 * allocates and frees. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int robust_atfork_lib_alloc;

static void churn(size_t n) {
    if (!robust_atfork_lib_alloc) return;
    for (int i = 0; i < 8; i++) {
        char *p = malloc(n + i * 64);
        if (p) memset(p, 1, n + i * 64);
        free(p);
    }
}

static void lib_prepare(void) { churn(70000); }
static void lib_parent(void) { churn(80000); }
static void lib_child(void) { churn(90000); }

__attribute__((constructor)) static void lib_register(void) {
    pthread_atfork(lib_prepare, lib_parent, lib_child);
}
