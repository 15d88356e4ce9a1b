// A JVM that does nothing until told to, for the attach tests: prints "ready" once its main
// method runs (its signal handlers are installed by then), then reads commands from standard
// input until EOF and exits 0. "leak N BYTES" keeps N direct buffers of BYTES each
// (Unsafe.allocateMemory, malloc through libjvm's os::malloc) and answers "leaked N"; "churn N"
// allocates and drops N small Java objects and answers "churned".
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

public class Idle {
    static final List<ByteBuffer> KEPT = new ArrayList<>();

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
            }
            System.out.flush();
        }
        if (sink < 0) System.out.println(sink);
    }
}
