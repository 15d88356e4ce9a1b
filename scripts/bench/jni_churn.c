/* The native side of scripts/bench/JniChurn.java: one malloc and one free per call, except
 * that every 65536th block is kept (a few leaks, so that the dump shows the recorded stack). */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>

static unsigned long calls;

__attribute__((noinline)) void *churn_block(size_t n) {
    void *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

JNIEXPORT jlong JNICALL Java_JniChurn_churn(JNIEnv *env, jclass cls, jint n) {
    (void)env;
    (void)cls;
    void *p = churn_block((size_t)n);
    jlong r = (jlong)(intptr_t)p;
    if ((++calls & 0xffff) != 0) free(p);
    return r;
}
