/* The JNI side of tests/java/frames/JavaFrames.java: `leak` keeps a block, `churn` frees it. */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uintptr_t sink;

__attribute__((noinline)) void *leak_block(size_t n) {
    void *p = malloc(n);
    if (p) memset(p, 1, 16);
    return p;
}

JNIEXPORT jlong JNICALL Java_JavaFrames_leak(JNIEnv *env, jclass cls, jint n) {
    (void)env;
    (void)cls;
    return (jlong)(intptr_t)leak_block((size_t)n);
}

JNIEXPORT void JNICALL Java_JavaFrames_churn(JNIEnv *env, jclass cls, jint n) {
    (void)env;
    (void)cls;
    void *p = malloc((size_t)n);
    sink += (uintptr_t)p;
    free(p);
}
