/* Loads the profiler with dlopen (LD_PRELOAD is ignored for setuid programs) and starts it the
 * way an attach does (Agent_OnAttach with JEPROF_CONF's text as its options); reports whether
 * it runs with AT_SECURE and what the agent answered (0 started, 201 could not start).
 * argv[1] is the profiler's path. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    int rc = -1;
    if (h) {
        int (*agent)(void *, const char *, void *) =
            (int (*)(void *, const char *, void *))dlsym(h, "Agent_OnAttach");
        const char *conf = getenv("JEPROF_CONF");
        if (agent) rc = agent(NULL, conf ? conf : "", NULL);
    }
    printf("loaded=%d secure=%lu agent=%d\n", h != NULL, getauxval(AT_SECURE), rc);
    if (!h) printf("dlopen: %s\n", dlerror());
    for (int i = 0; i < 1000; i++) free(malloc(100 + i));
    return 0;
}
