/* Loads the profiler with dlopen (LD_PRELOAD is ignored for setuid programs) and reports
 * whether it runs with AT_SECURE. argv[1] is the profiler's path. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    printf("loaded=%d secure=%lu\n", h != NULL, getauxval(AT_SECURE));
    if (!h) printf("dlopen: %s\n", dlerror());
    for (int i = 0; i < 1000; i++) free(malloc(100 + i));
    return 0;
}
