/* `jeprof-rs detach` and a later `start` on a preloaded process, with a file handshake
 * between the steps (argv[1] is a directory; the test acts between them):
 *   a: keeps 20 x 1000 B (phase_a), holds 20 x 2000 B to free later (hold_site), maps 1 MiB
 *      (map_a) and 1 MiB to unmap later (map_gone)            -> test: detach --dump
 *   b: keeps 20 x 1000 B (phase_b: its first malloc serves the detach, exact mode sending
 *      every allocation to the slow path), then frees the held blocks and unmaps map_gone
 *      (recorded before the detach: their frees must go through safely), maps 1 MiB (map_b),
 *      churns 20000 malloc/realloc/free on 4 threads         -> test: dump (writes nothing)
 *   c: keeps 20 x 1000 B (phase_b2), churns again               -> test: start
 *   d: keeps 20 x 1000 B (phase_c), maps 1 MiB (map_c), exits.
 * Prints "kept <n> churned <m>". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
#define MIB (1 << 20)
void *volatile keep[100];
void *volatile held[20];
void *volatile maps[4];
static int n;

NOINLINE void phase_a(void) { for (int i = 0; i < 20; i++) keep[n++] = malloc(1000); }
NOINLINE void phase_b(void) { for (int i = 0; i < 20; i++) keep[n++] = malloc(1000); }
NOINLINE void phase_b2(void) { for (int i = 0; i < 20; i++) keep[n++] = malloc(1000); }
NOINLINE void phase_c(void) { for (int i = 0; i < 20; i++) keep[n++] = malloc(1000); }
NOINLINE void hold_site(void) { for (int i = 0; i < 20; i++) held[i] = malloc(2000); }

NOINLINE static void *map_site(void) {
    void *p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) abort();
    memset(p, 1, MIB);
    return p;
}
NOINLINE void *map_a(void) { return map_site(); }
NOINLINE void *map_gone(void) { return map_site(); }
NOINLINE void *map_b(void) { return map_site(); }
NOINLINE void *map_c(void) { return map_site(); }

NOINLINE static void *churn_site(void *arg) {
    unsigned x = (unsigned)(long)arg;
    for (int i = 0; i < 5000; i++) {
        x = x * 1103515245 + 12345;
        char *p = malloc(16 + (x >> 8) % 4000);
        p[0] = 1;
        p = realloc(p, 8000);
        free(p);
    }
    return NULL;
}

static int churned;
static void churn(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn_site, (void *)(i + 1));
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    churned += 4 * 5000;
}

static void handshake(const char *dir, const char *done, const char *go) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, done);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/%s", dir, go);
    for (int i = 0; i < 3000 && access(path, F_OK) != 0; i++) usleep(10000);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    phase_a();
    hold_site();
    maps[0] = map_a();
    void *gone = map_gone();
    handshake(argv[1], "a.done", "b.go");
    phase_b();
    for (int i = 0; i < 20; i++) free(held[i]);
    munmap(gone, MIB);
    maps[1] = map_b();
    churn();
    handshake(argv[1], "b.done", "c.go");
    phase_b2();
    churn();
    handshake(argv[1], "c.done", "d.go");
    phase_c();
    maps[2] = map_c();
    printf("kept %d churned %d\n", n, churned);
    return 0;
}
