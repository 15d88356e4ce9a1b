/* Allocates and frees 64 MiB in 64 KiB blocks, for interval dumps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

NOINLINE void *interval_churn(void) { return malloc(65536); }

int main(void) {
    for (int i = 0; i < 1024; i++) {
        char *p = interval_churn();
        memset(p, 1, 100);
        free(p);
    }
    printf("done\n");
    return 0;
}
