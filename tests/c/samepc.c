/* dlopen samepc_a, allocate through its lib_alloc, dlclose it; then dlopen samepc_b, which the
 * loader maps where samepc_a was, and allocate through its lib_alloc: the same return address
 * with a different frame. Both blocks stay live. argv[1], argv[2]: the two libraries. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

typedef void *(*alloc_fn)(size_t);

static void *keep[2];

static alloc_fn load(const char *path, void **handle) {
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        printf("dlopen: %s\n", dlerror());
        exit(3);
    }
    alloc_fn f = (alloc_fn)dlsym(*handle, "lib_alloc");
    if (!f) exit(4);
    return f;
}

NOINLINE void *call_first(alloc_fn f) { return f(1111); }
NOINLINE void *call_second(alloc_fn f) { return f(2222); }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    void *h;
    alloc_fn a = load(argv[1], &h);
    keep[0] = call_first(a);
    dlclose(h);
    alloc_fn b = load(argv[2], &h);
    keep[1] = call_second(b);
    printf("same_address=%d\n", a == b);
    dlclose(h);
    return 0;
}
