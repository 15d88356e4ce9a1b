// A JVM that does nothing until told to, for the attach tests: prints "ready" once its main
// method runs (its signal handlers are installed by then), then reads commands from standard
// input until EOF and exits 0. "leak N BYTES" keeps N direct buffers of BYTES each
// (Unsafe.allocateMemory, malloc through libjvm's os::malloc) and answers "leaked N"; "churn N"
// allocates and drops N small Java objects and answers "churned"; "load PATH" loads a JNI
// library (System.load) and answers "loaded"; "jni A|B N BYTES CHURN" calls leakA or leakB of
// tests/c/jni_leak.c (N blocks of BYTES kept among CHURN malloc/realloc/free rounds) and answers
// "jni done".
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

public class Idle {
    static final List<ByteBuffer> KEPT = new ArrayList<>();

    static native void leakA(int n, int bytes, int churn);

    static native void leakB(int n, int bytes, int churn);

    public static void main(String[] args) throws Exception {
        System.out.println("ready");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        long sink = 0;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split(" ");
            if (w[0].equals("leak")) {
                int n = Integer.parseInt(w[1]);
                int bytes = Integer.parseInt(w[2]);
                for (int i = 0; i < n; i++) {
                    KEPT.add(ByteBuffer.allocateDirect(bytes));
                }
                System.out.println("leaked " + n);
            } else if (w[0].equals("churn")) {
                int n = Integer.parseInt(w[1]);
                for (int i = 0; i < n; i++) {
                    sink += new StringBuilder().append(i).toString().length();
                }
                System.out.println("churned");
            } else if (w[0].equals("load")) {
                System.load(w[1]);
                System.out.println("loaded");
            } else if (w[0].equals("jni")) {
                int n = Integer.parseInt(w[2]);
                int bytes = Integer.parseInt(w[3]);
                int churn = Integer.parseInt(w[4]);
                if (w[1].equals("A")) {
                    leakA(n, bytes, churn);
                } else {
                    leakB(n, bytes, churn);
                }
                System.out.println("jni done");
            }
            System.out.flush();
        }
        if (sink < 0) System.out.println(sink);
    }
}
