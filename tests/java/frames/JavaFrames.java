// Java frames without JVM flags (tests/tests/java_frames.rs): one leak through a hot method
// (called often enough to be compiled, and inlined into its caller's compiled loop) and one
// through a cold method (called three times, interpreted), both below JNI (libjframes.so,
// tests/c/jframes.c). Every 256th call of hotLeak keeps HOT bytes; the other calls allocate
// and free 64 bytes. coldLeak keeps COLD bytes each time. With a second argument `wait`, it
// prints "ready" and waits for a line on stdin first (for an attach).
public class JavaFrames {
    static final int HOT = 4099;
    static final int COLD = 100003;
    static long kept;

    static native long leak(int bytes);

    static native void churn(int bytes);

    static void hotLeak(int i) {
        if ((i & 255) == 0) {
            kept += leak(HOT);
        } else {
            churn(64);
        }
    }

    static void coldLeak() {
        kept += leak(COLD);
    }

    public static void main(String[] args) throws java.io.IOException {
        System.loadLibrary("jframes");
        int n = Integer.parseInt(args[0]);
        if (args.length > 1 && args[1].equals("wait")) {
            System.out.println("ready");
            System.out.flush();
            while (System.in.read() > 0 && System.in.available() > 0) {
            }
        }
        for (int i = 0; i < n; i++) {
            hotLeak(i);
        }
        for (int i = 0; i < 3; i++) {
            coldLeak();
        }
        System.out.println("hot " + (n + 255) / 256 + " cold 3 " + (kept != 0));
    }
}
