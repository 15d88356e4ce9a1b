/* A 200-deep recursion that allocates 1000 B at deep_leaf. */
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

static void *keep;

NOINLINE void *deep_leaf(void) { return malloc(1000); }

NOINLINE int recurse(int n) {
    if (n == 0) {
        keep = deep_leaf();
        return 1;
    }
    return recurse(n - 1) + 1; /* not a tail call */
}

int main(void) {
    printf("depth=%d\n", recurse(200));
    return 0;
}
