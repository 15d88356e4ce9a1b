/* A JNI library for tests/java/Idle.java's "jni" command, built twice: as libjnia.so (the
 * default, loaded before the attach) and with -DLIB_B as libjnib.so (loaded after it). Each
 * exports one native method of class Idle (Java_Idle_leakA / Java_Idle_leakB):
 * leak(n, bytes, churn) runs `churn` rounds of malloc/realloc/free of 16..8191 bytes (every
 * block freed: a_churn_site / b_churn_site) and, spread evenly among them, keeps n blocks of
 * `bytes` bytes for good (a_leak_site / b_leak_site). */
#include <jni.h>
#include <stdlib.h>
#include <string.h>

#ifdef LIB_B
#define LEAK_SITE b_leak_site
#define CHURN_SITE b_churn_site
#define ENTRY Java_Idle_leakB
#else
#define LEAK_SITE a_leak_site
#define CHURN_SITE a_churn_site
#define ENTRY Java_Idle_leakA
#endif

#define NOINLINE __attribute__((noinline))

static void **kept;
static long nkept, capacity;
static unsigned x = 12345;

NOINLINE void LEAK_SITE(size_t bytes) {
    if (nkept == capacity) return; /* room is made by the caller (not counted here) */
    void *p = malloc(bytes);
    memset(p, 0x5a, bytes);
    kept[nkept++] = p;
}

NOINLINE void CHURN_SITE(void) {
    x = x * 1103515245 + 12345;
    char *p = malloc(16 + (x >> 8) % 4096);
    p[0] = 1;
    p = realloc(p, 16 + (x >> 4) % 8176);
    p[1] = 2;
    free(p);
}

JNIEXPORT void JNICALL ENTRY(JNIEnv *env, jclass cls, jint n, jint bytes, jint churn) {
    (void)env;
    (void)cls;
    if (nkept + n > capacity) {
        long cap = (nkept + n) * 2;
        void **more = realloc(kept, cap * sizeof *kept);
        if (!more) abort();
        kept = more;
        capacity = cap;
    }
    long every = n > 0 ? churn / n : 0;
    long left = n;
    for (long i = 0; i < churn; i++) {
        CHURN_SITE();
        if (left > 0 && every > 0 && i % every == every - 1) {
            LEAK_SITE((size_t)bytes);
            left--;
        }
    }
    while (left-- > 0) LEAK_SITE((size_t)bytes);
}
