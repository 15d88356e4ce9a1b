package demo;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.zip.Deflater;
import java.util.zip.DeflaterOutputStream;
import java.util.zip.Inflater;

/**
 * An allocation-heavy JVM workload for the safety tests: many threads started and finished,
 * DirectByteBuffers, JNI calls into fakecv (malloc and posix_memalign), Deflater/Inflater
 * streams, and enough garbage to make the GC and the JIT work. The printed result depends
 * only on the arguments, so a run under the profiler must print exactly the same.
 * usage: Stress THREADS ROUNDS
 */
public final class Stress {
    static long work(int seed, int rounds) throws Exception {
        long sum = 0;
        for (int r = 0; r < rounds; r++) {
            ByteBuffer direct = ByteBuffer.allocateDirect(4096 + (seed * 31 + r) % 8192);
            direct.putLong(0, r);
            sum += direct.getLong(0);

            Mat m = new Mat(16 + r % 32, 16, 4);
            sum += m.blur(1) & 0xff;
            m.release();

            byte[] data = new byte[2048];
            for (int i = 0; i < data.length; i++) data[i] = (byte) (i * seed + r);
            ByteArrayOutputStream bos = new ByteArrayOutputStream();
            try (DeflaterOutputStream dos = new DeflaterOutputStream(bos, new Deflater(1))) {
                dos.write(data);
            }
            byte[] packed = bos.toByteArray();
            Inflater inf = new Inflater();
            inf.setInput(packed);
            byte[] back = new byte[data.length];
            int n = inf.inflate(back);
            inf.end();
            sum += n + back[r % back.length];

            List<int[]> garbage = new ArrayList<>();
            for (int i = 0; i < 16; i++) garbage.add(new int[64 + i]);
            sum += garbage.size();
        }
        return sum;
    }

    public static void main(String[] args) throws Exception {
        int threads = args.length > 0 ? Integer.parseInt(args[0]) : 8;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 200;
        AtomicLong total = new AtomicLong();
        List<Thread> all = new ArrayList<>();
        for (int wave = 0; wave < 4; wave++) {
            for (int t = 0; t < threads; t++) {
                final int seed = wave * threads + t;
                Thread th = new Thread(() -> {
                    try {
                        total.addAndGet(work(seed, rounds));
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                });
                th.start();
                all.add(th);
            }
            for (Thread th : all) th.join();
            all.clear();
        }
        System.out.println("stress " + threads + "x" + rounds + " total " + total.get());
    }
}
