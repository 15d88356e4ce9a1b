// The JVM workload of scripts/bench_java.sh: N calls of a JNI method that mallocs and frees 64
// bytes (scripts/bench/jni_churn.c), each DEPTH Java frames below main (a recursion, which
// C2 inlines only one level deep, so most of the frames stay compiled frames of their own, as
// in a real application's deep stacks). Prints the number of JNI mallocs made.
//
// usage: java -Djava.library.path=DIR -cp DIR JniChurn N DEPTH
public class JniChurn {
    static long sink;

    static native long churn(int bytes);

    static void down(int depth, int i) {
        if (depth > 0) {
            down(depth - 1, i);
        } else {
            sink += churn(64 + (i & 7));
        }
    }

    public static void main(String[] args) {
        System.loadLibrary("jni_churn");
        int n = Integer.parseInt(args[0]);
        int depth = Integer.parseInt(args[1]);
        for (int i = 0; i < n; i++) {
            down(depth, i);
        }
        System.out.println("mallocs " + n + " " + (sink != 0));
    }
}
