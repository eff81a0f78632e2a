// An allocation-heavy JVM program for a small heap: threads allocate
// short-lived arrays and keep a rotating window of them, so the young and
// old generations fill constantly. Run with -Xmx64m -Xlog:gc. Arguments:
// seconds of work, then optionally seconds to wait first (so a tracer can
// attach before the first collection) and seconds to wait after (so a
// reader of its counters sees the last collection before the JVM exits).
// The work ends with a System.gc(): the JVM's shutdown allocates, and into
// a nearly full eden that takes one more collection as the JVM exits, one
// that -Xlog:gc may no longer print and no reader of its memory can see
// (both were measured: the log one GC(N) short of the uprobe's count, and
// a GC(N) at exit that a reader of the JVM's counters missed).
public class AllocHeavy {
    public static void main(String[] args) throws Exception {
        double seconds = Double.parseDouble(args[0]);
        if (args.length > 1) Thread.sleep((long) (Double.parseDouble(args[1]) * 1000));
        long deadline = System.nanoTime() + (long) (seconds * 1e9);
        int threads = Runtime.getRuntime().availableProcessors();
        Thread[] workers = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            workers[t] = new Thread(() -> {
                Object[] keep = new Object[4096];
                long i = 0;
                while (System.nanoTime() < deadline) {
                    keep[(int) (i++ % keep.length)] = new long[64 + (int) (i % 512)];
                }
            }, "alloc-" + t);
            workers[t].start();
        }
        for (Thread w : workers) w.join();
        System.gc();
        if (args.length > 2) Thread.sleep((long) (Double.parseDouble(args[2]) * 1000));
        System.out.println("{\"pid\":" + ProcessHandle.current().pid() + "}");
    }
}
