/* Sandbox: the program installs a seccomp filter (PR_SET_NO_NEW_PRIVS + PR_SET_SECCOMP with a
 * small BPF program, no libseccomp) that kills the process (SECCOMP_RET_KILL_PROCESS) on open or
 * openat, then starts 4 threads that each allocate and free 256 x 64 KiB (so that new threads'
 * stacks are walked for the first time, in sampled mode too) and exits with _exit(0): it cannot
 * write files anyway. Prints "sandboxed" before the threads start and "done" at the end. */
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "robust.h"

static void sandbox(void) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* another ABI: leave it alone */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_open, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
}

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 256; i++) {
        char *p = malloc(65536);
        CHECK(p != NULL);
        p[0] = 1;
        free(p);
    }
    return NULL;
}

int main(void) {
    sandbox();
    printf("sandboxed\n");
    fflush(stdout);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("done\n");
    fflush(stdout);
    _exit(0);
}
