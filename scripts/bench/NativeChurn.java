// A small Java workload for the attached-versus-preloaded case of scripts/bench.sh: native
// memory churned through JNI, the way java.util.zip does it (each Deflater and Inflater mallocs
// its zlib state, and end() frees it). Prints "ready", waits for a line on stdin (the benchmark
// attaches the profiler before it sends one, or not), runs N rounds, prints a checksum.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.zip.DataFormatException;
import java.util.zip.Deflater;
import java.util.zip.Inflater;

public class NativeChurn {
    public static void main(String[] args) throws Exception {
        int rounds = Integer.parseInt(args[0]);
        System.out.println("ready");
        System.out.flush();
        new BufferedReader(new InputStreamReader(System.in)).readLine();
        byte[] input = new byte[2048];
        for (int i = 0; i < input.length; i++) {
            input[i] = (byte) (i * 31 % 17);
        }
        byte[] packed = new byte[4096];
        byte[] unpacked = new byte[4096];
        long sum = 0;
        for (int r = 0; r < rounds; r++) {
            Deflater d = new Deflater(1);
            d.setInput(input);
            d.finish();
            int n = d.deflate(packed);
            d.end();
            Inflater f = new Inflater();
            f.setInput(packed, 0, n);
            try {
                sum += f.inflate(unpacked);
            } catch (DataFormatException e) {
                throw new RuntimeException(e);
            }
            f.end();
        }
        System.out.println("checksum " + sum);
    }
}
