package demo;

/** A native image, like org.opencv.core.Mat: the pixels live in native memory. */
public final class Mat {
    static {
        System.loadLibrary("fakecv");
    }

    private long nativeObj;

    public Mat(int rows, int cols, int channels) {
        nativeObj = n_Mat(rows, cols, channels);
        if (nativeObj == 0) throw new OutOfMemoryError("n_Mat");
    }

    public long blur(int radius) {
        return n_blur(nativeObj, radius);
    }

    /** Frees the native pixels. Forgetting to call it leaks them: GC never sees native memory. */
    public void release() {
        n_release(nativeObj);
        nativeObj = 0;
    }

    private static native long n_Mat(int rows, int cols, int channels);
    private static native void n_release(long nativeObj);
    private static native long n_blur(long nativeObj, int radius);
}
