/* Ways for `jeprof-rs run`'s command to end. Each mode first keeps 3 x 40000 B at
 * run_leak() and prints "out-line" on stdout and "err-line" on stderr.
 *   run_end exit N : exit(N)
 *   run_end kill   : raise(SIGKILL) (no final dump)
 *   run_end _exit  : _exit(0) (the preload interposes _exit: a final dump all the same) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

void *volatile keep[3];

NOINLINE void run_leak(void) { for (int i = 0; i < 3; i++) keep[i] = malloc(40000); }

int main(int argc, char **argv) {
    run_leak();
    printf("out-line\n");
    fprintf(stderr, "err-line\n");
    fflush(stdout);
    if (argc > 2 && !strcmp(argv[1], "exit")) exit(atoi(argv[2]));
    if (argc > 1 && !strcmp(argv[1], "kill")) raise(SIGKILL);
    if (argc > 1 && !strcmp(argv[1], "_exit")) _exit(0);
    return 0;
}
