/* alloc_heavy.c's workload, for the attached-versus-preloaded case of scripts/bench.sh: run
 * plain, under LD_PRELOAD, or with the profiler attached the way `jeprof-rs attach` attaches it
 * to a JVM (dlopen of the library and its Agent_OnAttach, which patches the import slots of
 * every loaded object), before the worker threads start. With a fourth argument "detach" the
 * process then asks itself to detach (the control request `jeprof-rs detach` queues) and waits
 * until the profiler has served it: the cost of a profiler that stays loaded and only forwards.
 * usage: alloc_attach THREADS ITERATIONS [LIBRARY OPTIONS [detach]]
 */
#define main alloc_heavy_main
#include "alloc_heavy.c"
#undef main

#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 4) {
        void *h = dlopen(argv[3], RTLD_NOW | RTLD_LOCAL);
        int (*agent)(void *, const char *, void *) =
            h ? (int (*)(void *, const char *, void *))dlsym(h, "Agent_OnAttach") : NULL;
        if (!agent || agent(NULL, argv[4], NULL) != 0) {
            fprintf(stderr, "alloc_attach: cannot attach %s\n", argv[3]);
            return 1;
        }
        if (argc > 5 && strcmp(argv[5], "detach") == 0) {
            union sigval v = {.sival_ptr = (void *)0x6a700003L};
            sigqueue(getpid(), 41, v);
            /* Served at this thread's next allocation (the handler poked its countdown). */
            free(malloc(1));
        }
    }
    char *args[] = {argv[0], argv[1], argv[2], NULL};
    return alloc_heavy_main(3, args);
}
