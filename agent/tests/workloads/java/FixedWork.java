// A fixed-work JVM service: every 10 ms it serves a fixed number of
// requests, each allocating short-lived garbage over a pointer-rich live
// cache of about 40 MiB, then idles until the next tick. Its CPU tracks
// the work, not a limit. Arguments: seconds to run, requests per tick.
// Prints its collectors' own counts at exit.
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;

public class FixedWork {
    static final class Entry {
        final int key;
        final byte[] value;
        final Entry next;
        Entry(int key, byte[] value, Entry next) { this.key = key; this.value = value; this.next = next; }
    }

    public static void main(String[] args) throws Exception {
        double seconds = Double.parseDouble(args[0]);
        int perTick = Integer.parseInt(args[1]);
        final int entries = 150_000;
        Entry[] cache = new Entry[entries];
        for (int i = 0; i < entries; i++) cache[i] = new Entry(i, new byte[200], null);
        long start = System.nanoTime();
        long deadline = start + (long) (seconds * 1e9);
        long late = 0, i = 0;
        Entry sink = null;
        for (long tick = start; tick < deadline; tick += 10_000_000L) {
            for (int r = 0; r < perTick; r++) {
                Entry head = null;
                for (int j = 0; j < 32; j++) head = new Entry(j, new byte[64], head);
                sink = head;
                if (i % 8 == 0) cache[(int) ((i * 7919) % entries)] = new Entry((int) i, new byte[200], sink);
                i++;
            }
            long wait = tick + 10_000_000L - System.nanoTime();
            if (wait > 0) Thread.sleep(wait / 1_000_000L, (int) (wait % 1_000_000L));
            else late++;
        }
        long collections = 0, gcMillis = 0;
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            collections += gc.getCollectionCount();
            gcMillis += gc.getCollectionTime();
        }
        System.out.println("{\"pid\":" + ProcessHandle.current().pid() + ",\"collections\":" + collections
            + ",\"gc_millis\":" + gcMillis + ",\"requests\":" + i + ",\"late_ticks\":" + late
            + ",\"entries\":" + cache.length + ",\"sink\":" + (sink != null) + "}");
    }
}
