// A compute-only JVM program: arithmetic in a loop, no allocation after start.
public class Compute {
    public static void main(String[] args) throws Exception {
        double seconds = Double.parseDouble(args[0]);
        long deadline = System.nanoTime() + (long) (seconds * 1e9);
        long x = 1;
        while (System.nanoTime() < deadline) {
            for (int i = 0; i < 1_000_000; i++) x = x * 6364136223846793005L + 1442695040888963407L;
        }
        System.out.println("{\"pid\":" + ProcessHandle.current().pid() + ",\"x\":" + x + "}");
    }
}
