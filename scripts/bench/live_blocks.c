/* Memory cost per live allocation: keeps N blocks of 32 bytes alive, then prints the process
 * RSS. scripts/bench.sh runs it plain and under the preload in exact mode; the difference
 * divided by N is what the profiler adds per live block. usage: live_blocks N */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void **keep = malloc(n * sizeof *keep);
    for (long i = 0; i < n; i++) keep[i] = malloc(32);
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2) return 1;
    fclose(f);
    printf("%ld\n", rss * 4096);
    return keep[n / 2] == NULL;
}
