// A JVM that does nothing until told to stop, for the attach tests: prints "ready" once its
// main method runs (its signal handlers are installed by then), then reads standard input
// until EOF and exits 0.
public class Idle {
    public static void main(String[] args) throws Exception {
        System.out.println("ready");
        System.out.flush();
        while (System.in.read() != -1) {
            // keep reading
        }
    }
}
