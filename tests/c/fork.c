/* fork: parent and child leak different known amounts; each writes its own dump under its own
 * pid. The child ends with exit(). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void *keep[64];
static int nkeep;

NOINLINE void *parent_leak(void) { return malloc(1000); }
NOINLINE void *child_leak(void) { return malloc(1000); }
NOINLINE void *parent_after(void) { return malloc(1000); }

int main(void) {
    for (int i = 0; i < 5; i++) keep[nkeep++] = parent_leak();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        for (int i = 0; i < 7; i++) keep[nkeep++] = child_leak();
        exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 3;
    for (int i = 0; i < 3; i++) keep[nkeep++] = parent_after();
    printf("child_pid=%d\nchild_status=%d\n", (int)pid, status);
    return 0;
}
