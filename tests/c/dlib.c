/* A tiny shared library loaded and unloaded by dlopen.c. */
#include <stdlib.h>

__attribute__((noinline)) void *lib_leak(void) { return malloc(100); }

void lib_churn(void) {
    for (int i = 0; i < 100; i++) free(malloc(48 + i));
}
