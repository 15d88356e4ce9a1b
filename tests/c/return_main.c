/* Leaks 1234 B at main_leak, prints, and returns 7 from main. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))

static void *keep;

NOINLINE void *main_leak(void) { return malloc(1234); }

int main(void) {
    keep = main_leak();
    memset(keep, 0, 1234);
    for (int i = 0; i < 1000; i++) free(malloc(100 + i));
    printf("hello from return_main\n");
    return 7;
}
