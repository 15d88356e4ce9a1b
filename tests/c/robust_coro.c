/* Coroutine stacks: 8 ucontext coroutines (makecontext/swapcontext) on 64 KiB malloc'ed stacks;
 * each round every coroutine allocates and frees one 64 KiB block on its own stack and yields.
 * argv[1] = rounds (total allocations on coroutine stacks = 8 x rounds), so that a test can
 * compare the system calls of two lengths. Leak: coro_leak 8 x 1000 B, from the coroutines. */
#define _GNU_SOURCE
#include <ucontext.h>

#include "robust.h"

#define NCORO 8
#define CORO_STACK 65536

static ucontext_t main_ctx, coro_ctx[NCORO];
static int rounds;

NOINLINE void coro_leak(void) { keep(malloc(1000)); }

static void coro_body(int id) {
    for (int r = 0; r < rounds; r++) {
        char *p = malloc(65536);
        CHECK(p != NULL);
        p[0] = 1;
        free(p);
        if (r == 0) coro_leak();
        CHECK(swapcontext(&coro_ctx[id], &main_ctx) == 0);
    }
}

int main(int argc, char **argv) {
    rounds = argc > 1 ? atoi(argv[1]) : 250;
    CHECK(rounds > 0);
    for (int i = 0; i < NCORO; i++) {
        CHECK(getcontext(&coro_ctx[i]) == 0);
        coro_ctx[i].uc_stack.ss_sp = malloc(CORO_STACK);
        CHECK(coro_ctx[i].uc_stack.ss_sp != NULL);
        coro_ctx[i].uc_stack.ss_size = CORO_STACK;
        coro_ctx[i].uc_link = &main_ctx;
        makecontext(&coro_ctx[i], (void (*)(void))coro_body, 1, i);
    }
    for (int r = 0; r <= rounds; r++)
        for (int i = 0; i < NCORO; i++) CHECK(swapcontext(&main_ctx, &coro_ctx[i]) == 0);
    printf("allocations_on_coroutines=%d\n", NCORO * rounds);
    return 0;
}
