/* Plants symlinks where the profiler will write its final dumps, pointing at victim files:
 * the profiler opens with O_EXCL|O_NOFOLLOW and must not write through them.
 * argv[1] is the prof_prefix, argv[2] the victim. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *keep;

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    char path[4096];
    for (int seq = 0; seq < 4; seq++) {
        snprintf(path, sizeof path, "%s.%d.%d.f.heap", argv[1], (int)getpid(), seq);
        if (symlink(argv[2], path) != 0) return 3;
        snprintf(path, sizeof path, "%s.%d.%d.f.mmap.heap", argv[1], (int)getpid(), seq);
        if (symlink(argv[2], path) != 0) return 3;
    }
    keep = malloc(1000);
    printf("planted\n");
    return 0;
}
