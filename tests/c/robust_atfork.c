/* Fork handlers that allocate. The program's constructor registers pthread_atfork handlers
 * (registered after the preload's), and so does the constructor of its DT_NEEDED library
 * robust_atfork_lib.c (registered before the preload's, so its prepare handler runs while the
 * preload's prepare handler holds its locks). argv[1] says whose handlers malloc and free
 * blocks of 64-90 KiB (so that sampled mode samples some of them too): "program", "library"
 * or "both". The program forks 6 times; children exit alternately with _exit and exit; the
 * parent waits for each. Leak: fork_leak 3 x 5000 B in the parent (exact mode checks it). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "robust.h"

extern int robust_atfork_lib_alloc;
static int prog_alloc;

static void churn(size_t n) {
    for (int i = 0; i < 8; i++) {
        char *p = malloc(n + i * 64);
        CHECK(p != NULL);
        memset(p, 1, n + i * 64);
        free(p);
    }
}

static void prog_prepare(void) {
    if (prog_alloc) churn(65536);
}
static void prog_parent(void) {
    if (prog_alloc) churn(75000);
}
static void prog_child(void) {
    if (prog_alloc) churn(85000);
}

__attribute__((constructor)) static void prog_register(void) {
    CHECK(pthread_atfork(prog_prepare, prog_parent, prog_child) == 0);
}

NOINLINE void fork_leak(void) {
    for (int i = 0; i < 3; i++) keep(malloc(5000));
}

int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "both";
    prog_alloc = !strcmp(who, "program") || !strcmp(who, "both");
    robust_atfork_lib_alloc = !strcmp(who, "library") || !strcmp(who, "both");
    CHECK(prog_alloc || robust_atfork_lib_alloc);
    for (int i = 0; i < 6; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            churn(100000);
            if (i % 2) exit(0);
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    fork_leak();
    printf("forks=6\n");
    return 0;
}
