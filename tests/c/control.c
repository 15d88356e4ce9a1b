/* Three phases of 20 x 1000 B kept, each from its own function, with a file handshake
 * between them (argv[1] is a directory): the test switches sampling on or off between
 * phases with `jeprof-rs start/stop PID`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
void *volatile keep[60];
static int n;

NOINLINE void phase_a(void) { for (int i = 0; i < 20; i++) keep[n++] = malloc(1000); }
NOINLINE void phase_b(void) { for (int i = 0; i < 20; i++) keep[n++] = malloc(1000); }
NOINLINE void phase_c(void) { for (int i = 0; i < 20; i++) keep[n++] = malloc(1000); }

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
    handshake(argv[1], "a.done", "b.go");
    phase_b();
    handshake(argv[1], "b.done", "c.go");
    phase_c();
    printf("kept %d\n", n);
    return 0;
}
