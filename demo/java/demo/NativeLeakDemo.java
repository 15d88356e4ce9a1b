package demo;

import java.io.File;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.Inflater;

/**
 * The seed article's situation in one program: the Java heap stays small while native memory
 * grows. Each round processes "frames":
 *  - thumbnails (Mat via n_Mat) are kept for a cache that forgets to release() them: the leak;
 *  - full-size frames are blurred (n_blur allocates and frees scratch) and released: churn
 *    that allocates far more bytes than the leak but holds nothing;
 *  - DirectByteBuffers come and go (freed by their Cleaner after GC);
 *  - an Inflater is created per round and never end()ed (zlib state held until finalization);
 *  - one file is mapped with FileChannel.map and kept.
 * Prints a checksum so runs can be compared with and without the profiler.
 * usage: NativeLeakDemo [ROUNDS] [leak|noleak]  ("noleak" releases every Mat: the control)
 */
public final class NativeLeakDemo {
    /** Leaked on purpose: the thumbnails' Java objects are dropped without release(). */
    static boolean releaseEvicted = false;

    static void cacheThumbnail(List<Mat> lru, int i) {
        Mat thumb = new Mat(256, 256, 4);             // 256 KiB of native pixels
        lru.add(thumb);
        if (lru.size() > 8) {
            Mat evicted = lru.remove(0);               // evicted but never released: leaks
            if (releaseEvicted) evicted.release();
        }
    }

    static long processFrame(int i) {
        Mat frame = new Mat(1080, 1920, 4);            // 8 MiB, released below
        long s = frame.blur(3);
        frame.release();
        return s;
    }

    static long directBuffers(int i) {
        ByteBuffer b = ByteBuffer.allocateDirect(64 * 1024);
        b.putInt(0, i);
        return b.getInt(0);
    }

    static final List<Inflater> inflaters = new ArrayList<>();

    static void inflaterNeverEnded() {
        Inflater inf = new Inflater();
        inf.setInput(new byte[] {0x78, (byte) 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01});
        inflaters.add(inf);                            // kept and never end()ed
    }

    public static void main(String[] args) throws Exception {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 300;
        releaseEvicted = args.length > 1 && args[1].equals("noleak");
        List<Mat> lru = new ArrayList<>();
        long checksum = 0;
        File f = File.createTempFile("jeprof-demo", ".bin");
        f.deleteOnExit();
        MappedByteBuffer mapped;
        try (RandomAccessFile raf = new RandomAccessFile(f, "rw")) {
            raf.setLength(4 << 20);
            mapped = raf.getChannel().map(FileChannel.MapMode.READ_WRITE, 0, 4 << 20);
        }
        for (int i = 0; i < rounds; i++) {
            cacheThumbnail(lru, i);
            checksum += processFrame(i);
            checksum += directBuffers(i);
            if (i % 20 == 0) inflaterNeverEnded();
            mapped.put(i % (4 << 20), (byte) i);
        }
        if (releaseEvicted) {
            for (Mat m : lru) m.release();
            lru.clear();
        }
        System.out.println("rounds " + rounds + " checksum " + checksum + " mapped " + mapped.get(7));
    }
}
