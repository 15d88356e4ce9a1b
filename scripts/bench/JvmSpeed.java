// The JVM's own speed, for scripts/bench_java.sh: a small CPU-bound workload with many calls
// (what -XX:+PreserveFramePointer taxes: one register fewer, a push and a mov per compiled
// frame). Four kernels, each ~1/4 of the time: a recursion (not inlined past one level),
// virtual calls through a megamorphic interface over a tree of small objects, a sort of small
// objects with a comparator, and string building. Runs WARM rounds first (compiled by C2),
// then ROUNDS timed rounds; prints the steady phase's elapsed milliseconds (System.nanoTime),
// each kernel's, and a checksum.
//
// usage: java -cp DIR JvmSpeed [WARM ROUNDS]
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Random;

public class JvmSpeed {
    interface Node {
        long eval();
    }

    record Leaf(long v) implements Node {
        public long eval() {
            return v;
        }
    }

    record Add(Node a, Node b) implements Node {
        public long eval() {
            return a.eval() + b.eval();
        }
    }

    record Mul(Node a, Node b) implements Node {
        public long eval() {
            return (a.eval() * b.eval()) & 0xffff;
        }
    }

    record Neg(Node a) implements Node {
        public long eval() {
            return -a.eval();
        }
    }

    record Point(int x, int y, String tag) {}

    static int fib(int n) {
        return n < 2 ? n : fib(n - 1) + fib(n - 2);
    }

    static Node tree(Random r, int depth) {
        if (depth == 0) {
            return new Leaf(r.nextInt(100));
        }
        return switch (r.nextInt(3)) {
            case 0 -> new Add(tree(r, depth - 1), tree(r, depth - 1));
            case 1 -> new Mul(tree(r, depth - 1), tree(r, depth - 1));
            default -> new Neg(tree(r, depth - 1));
        };
    }

    static long recursion() {
        return fib(33);
    }

    static long virtualCalls(Node t) {
        long s = 0;
        for (int i = 0; i < 150; i++) {
            s += t.eval();
        }
        return s;
    }

    static long sort(Random r) {
        List<Point> l = new ArrayList<>();
        for (int i = 0; i < 30_000; i++) {
            l.add(new Point(r.nextInt(1000), r.nextInt(1000), "p" + (i & 63)));
        }
        l.sort(Comparator.comparingInt(Point::x).thenComparingInt(Point::y)
                .thenComparing(Point::tag));
        return l.get(0).x() + l.get(l.size() - 1).y();
    }

    static long strings() {
        long s = 0;
        for (int i = 0; i < 250_000; i++) {
            StringBuilder b = new StringBuilder();
            b.append("item-").append(i).append(':').append(i * 31L).append('/').append(i % 7);
            s += b.toString().hashCode();
        }
        return s;
    }

    public static void main(String[] args) {
        int warm = args.length > 0 ? Integer.parseInt(args[0]) : 10;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 20;
        Node t = tree(new Random(1), 16);
        long[] ns = new long[4];
        long check = 0;
        long start = 0;
        for (int k = 0; k < warm + rounds; k++) {
            if (k == warm) {
                start = System.nanoTime();
                ns = new long[4];
            }
            Random r = new Random(k);
            long t0 = System.nanoTime();
            check += recursion();
            long t1 = System.nanoTime();
            check += virtualCalls(t);
            long t2 = System.nanoTime();
            check += sort(r);
            long t3 = System.nanoTime();
            check += strings();
            long t4 = System.nanoTime();
            ns[0] += t1 - t0;
            ns[1] += t2 - t1;
            ns[2] += t3 - t2;
            ns[3] += t4 - t3;
        }
        long total = System.nanoTime() - start;
        System.out.printf("steady_ms %.1f recursion %.1f virtual %.1f sort %.1f strings %.1f check %d%n",
                total / 1e6, ns[0] / 1e6, ns[1] / 1e6, ns[2] / 1e6, ns[3] / 1e6, check);
    }
}
