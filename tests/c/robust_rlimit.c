/* RLIMIT_AS: `robust_rlimit LIMIT_MIB` sets RLIMIT_AS to LIMIT_MIB MiB and re-executes itself
 * (`robust_rlimit - measure`), so that the limit is in force when the dynamic loader starts the
 * new image and the preload initializes. The measuring run maps 1 MiB anonymous regions until
 * mmap fails and prints mappable_mib=N: the address space left to the program. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/resource.h>

#include "robust.h"

int main(int argc, char **argv) {
    if (argc == 2) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)atol(argv[1]) << 20;
        CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
        char *args[] = {argv[0], "-", "measure", NULL};
        execv("/proc/self/exe", args);
        CHECK(!"execv");
    }
    CHECK(argc == 3 && !strcmp(argv[2], "measure"));
    long mib = 0;
    while (mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1, 0) != MAP_FAILED)
        mib++;
    printf("mappable_mib=%ld\n", mib);
    return 0;
}
