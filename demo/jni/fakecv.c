/* A JNI library that behaves like OpenCV's Mat for the demo (see ../../README.md "Demo").
 *
 * n_Mat allocates a native pixel buffer (malloc) plus a header, the way cv::Mat's
 * constructor does; n_release frees both. n_blur is the sibling path: it allocates scratch
 * buffers (posix_memalign, like OpenCV's fastMalloc) and frees all of them before returning.
 * The Java side releases some Mats and forgets others: only the forgotten ones leak.
 */
#include <jni.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int rows, cols, channels;
    unsigned char *data;
} fake_mat;

/* Shared by both paths, like cv::fastMalloc: the analyzer must tell the paths apart by the
 * JNI function above it. */
__attribute__((noinline)) static void *pixel_alloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n) != 0) return NULL;
    memset(p, 0x5a, n);
    return p;
}

JNIEXPORT jlong JNICALL Java_demo_Mat_n_1Mat(JNIEnv *env, jclass cls, jint rows, jint cols, jint ch) {
    fake_mat *m = malloc(sizeof *m);
    if (!m) return 0;
    m->rows = rows;
    m->cols = cols;
    m->channels = ch;
    m->data = pixel_alloc((size_t)rows * cols * ch);
    return (jlong)(intptr_t)m;
}

JNIEXPORT void JNICALL Java_demo_Mat_n_1release(JNIEnv *env, jclass cls, jlong addr) {
    fake_mat *m = (fake_mat *)(intptr_t)addr;
    if (!m) return;
    free(m->data);
    free(m);
}

JNIEXPORT jlong JNICALL Java_demo_Mat_n_1blur(JNIEnv *env, jclass cls, jlong addr, jint radius) {
    fake_mat *m = (fake_mat *)(intptr_t)addr;
    size_t n = (size_t)m->rows * m->cols * m->channels;
    unsigned char *tmp = pixel_alloc(n);
    unsigned char *row = malloc((size_t)m->cols * m->channels + 2 * radius);
    long sum = 0;
    for (size_t i = 0; i < n; i += 4096) sum += tmp[i] + m->data[i];
    free(row);
    free(tmp);
    return sum;
}
