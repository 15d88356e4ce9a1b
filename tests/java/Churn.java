// Allocation churn for the real-program tests: collections, strings, a direct buffer;
// prints a checksum that must not change under the profiler.
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

public class Churn {
    public static void main(String[] args) {
        Map<String, List<Integer>> map = new HashMap<>();
        long acc = 0;
        for (int i = 0; i < 200_000; i++) {
            String key = "k" + (i % 3000);
            List<Integer> list = map.computeIfAbsent(key, k -> new ArrayList<>());
            list.add(i);
            if (list.size() > 50) {
                list.clear();
            }
            acc = (acc * 31 + key.length() + list.size()) % 1_000_000_007L;
        }
        ByteBuffer direct = ByteBuffer.allocateDirect(1 << 20);
        for (int i = 0; i < direct.capacity(); i += 4096) {
            direct.put(i, (byte) i);
            acc = (acc + direct.get(i)) % 1_000_000_007L;
        }
        System.out.println("checksum=" + acc + " keys=" + map.size());
    }
}
