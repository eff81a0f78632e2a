/*
 * Known work for Tally's integration tests. Each mode does a measured amount
 * of work, then prints one JSON line with its own counts and what the kernel
 * says about it (/proc/self/stat) as its last act, so a test can compare the
 * agent's numbers with both.
 *
 *   workload alloc <iterations> <pages>   mmap/touch/madvise(DONTNEED)/munmap loop,
 *                                         plus brk growth, mremap growth, MADV_FREE
 *   workload majfault <file> <mib>        reads a file the page cache has dropped
 *   workload spin <seconds>               busy loop
 *   workload forkmany <n> <hold_ms>       n children alive at once, each mmaps
 *   workload hold <ms>                    mmaps once, sleeps (a live marker)
 *   workload tick <n> <ms>                n times: mmap, touch, munmap one page, sleep
 *                                         (a long-lived process active in every window)
 *   workload thrash <file> <mib> <secs>   writes a file, then reads it through again and
 *                                         again: under a memory limit below its size its
 *                                         page cache thrashes (memory pressure)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

struct counts {
    long mmap_calls, mmap_bytes, munmap_calls, munmap_bytes, brk_calls, brk_bytes;
    long mremap_calls, mremap_bytes, madvise_calls, dontneed_bytes, free_bytes;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Fields 10, 12, 14, 15 of /proc/self/stat: minflt, majflt, utime, stime. */
static void self_stat(long *minflt, long *majflt, long *ticks) {
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    char *p = strrchr(buf, ')') + 2; /* field 3 */
    long v[16] = {0};
    for (int field = 3; field <= 15; field++) {
        if (field >= 10)
            v[field - 10] = strtol(p, NULL, 10);
        p = strchr(p, ' ') + 1;
    }
    *minflt = v[0];
    *majflt = v[2];
    *ticks = v[4] + v[5];
}

/* Prints the report and exits at once. The /proc/self/stat read is the last
 * thing that can fault: the formatting runs once before it to fault in its
 * code and buffers, and _exit skips atexit handlers and destructors. */
static void report(const char *mode, const struct counts *c, double started) {
    static char out[1024];
    long minflt = 0, majflt = 0, ticks = 0;
    double lived = now() - started;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            self_stat(&minflt, &majflt, &ticks);
        int n = snprintf(out, sizeof out,
            "{\"mode\":\"%s\",\"pid\":%d,\"lived_seconds\":%.6f,"
            "\"mmap_calls\":%ld,\"mmap_bytes\":%ld,\"munmap_calls\":%ld,\"munmap_bytes\":%ld,"
            "\"brk_calls\":%ld,\"brk_bytes\":%ld,\"mremap_calls\":%ld,\"mremap_bytes\":%ld,"
            "\"madvise_calls\":%ld,\"madvise_dontneed_bytes\":%ld,\"madvise_free_bytes\":%ld,"
            "\"minor_faults\":%ld,\"major_faults\":%ld,\"cpu_ticks\":%ld,\"clk_tck\":%ld}\n",
            mode, getpid(), lived, c->mmap_calls, c->mmap_bytes, c->munmap_calls, c->munmap_bytes,
            c->brk_calls, c->brk_bytes, c->mremap_calls, c->mremap_bytes, c->madvise_calls,
            c->dontneed_bytes, c->free_bytes, minflt, majflt, ticks, sysconf(_SC_CLK_TCK));
        if (pass == 1)
            write(1, out, n);
    }
    _exit(0);
}

static void *do_mmap(struct counts *c, size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    c->mmap_calls++;
    c->mmap_bytes += len;
    return p;
}

static void do_munmap(struct counts *c, void *p, size_t len) {
    if (munmap(p, len)) { perror("munmap"); exit(1); }
    c->munmap_calls++;
    c->munmap_bytes += len;
}

static void do_madvise(struct counts *c, void *p, size_t len, int advice) {
    if (madvise(p, len, advice)) { perror("madvise"); exit(1); }
    c->madvise_calls++;
    if (advice == MADV_DONTNEED) c->dontneed_bytes += len;
    if (advice == MADV_FREE) c->free_bytes += len;
}

static int alloc(long iterations, long pages) {
    double started = now();
    struct counts c = {0};
    size_t page = sysconf(_SC_PAGESIZE), len = pages * page;
    for (long i = 0; i < iterations; i++) {
        char *p = do_mmap(&c, len);
        for (size_t off = 0; off < len; off += page) p[off] = 1;
        do_madvise(&c, p, len, MADV_DONTNEED);
        do_munmap(&c, p, len);
    }
    if (iterations > 0) {
        /* brk: grow the break 8 times by 64 KiB, through the raw syscall so
         * the count is ours, not malloc's. */
        char *cur = (char *)syscall(SYS_brk, 0); /* the current break */
        c.brk_calls++;
        for (int i = 0; i < 8; i++) {
            char *want = cur + 65536;
            char *got = (char *)syscall(SYS_brk, want);
            if (got != want) { fprintf(stderr, "brk failed\n"); exit(1); }
            c.brk_calls++;
            c.brk_bytes += 65536;
            cur = got;
        }
        /* mremap: grow one mapping 4 times by 16 pages. */
        size_t mlen = 16 * page;
        char *m = do_mmap(&c, mlen);
        for (int i = 0; i < 4; i++) {
            char *n = mremap(m, mlen, mlen + 16 * page, MREMAP_MAYMOVE);
            if (n == MAP_FAILED) { perror("mremap"); exit(1); }
            c.mremap_calls++;
            c.mremap_bytes += 16 * page;
            m = n;
            mlen += 16 * page;
        }
        memset(m, 1, mlen);
        do_madvise(&c, m, mlen, MADV_FREE);
        do_munmap(&c, m, mlen);
    }
    report("alloc", &c, started);
    return 0;
}

/* Creates `path` with `mib` MiB of data through `buf` (1 MiB), synced to
 * disk; its descriptor, or -1. */
static int write_file(const char *path, long mib, char *buf) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("open"); return -1; }
    memset(buf, 7, 1 << 20);
    for (long i = 0; i < mib; i++) write(fd, buf, 1 << 20);
    fsync(fd);
    return fd;
}

static int majfault(const char *path, long mib) {
    double started = now();
    struct counts c = {0};
    size_t len = mib << 20;
    char *buf = calloc(1, 1 << 20);
    int fd = write_file(path, mib, buf);
    if (fd < 0) return 1;
    /* Drop the file from the page cache, so reading it must go to disk. */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    char *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    c.mmap_calls++;
    c.mmap_bytes += len;
    /* No readahead: one major fault per page actually read from disk. */
    madvise(p, len, MADV_RANDOM);
    c.madvise_calls++;
    volatile long sum = 0;
    size_t page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += page) sum += p[off];
    close(fd);
    unlink(path);
    report("majfault", &c, started);
    return 0;
}

static int thrash(const char *path, long mib, double seconds) {
    double started = now();
    struct counts c = {0};
    char *buf = calloc(1, 1 << 20);
    int fd = write_file(path, mib, buf);
    if (fd < 0) return 1;
    volatile long sum = 0;
    while (now() - started < seconds) {
        for (long i = 0; i < mib; i++) {
            if (pread(fd, buf, 1 << 20, i << 20) <= 0) { perror("pread"); return 1; }
            sum += buf[0];
        }
    }
    close(fd);
    unlink(path);
    report("thrash", &c, started);
    return 0;
}

static int spin(double seconds) {
    double started = now();
    struct counts c = {0};
    volatile unsigned long x = 0;
    while (now() - started < seconds)
        for (int i = 0; i < 100000; i++) x += i;
    report("spin", &c, started);
    return 0;
}

static int forkmany(int n, int hold_ms) {
    double started = now();
    struct counts c = {0};
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            (void)p;
            usleep(hold_ms * 1000);
            _exit(0);
        }
        if (pid < 0) { perror("fork"); return 1; }
    }
    while (wait(NULL) > 0) {}
    report("forkmany", &c, started);
    return 0;
}

static int hold(int ms) {
    double started = now();
    struct counts c = {0};
    char *p = do_mmap(&c, 4096);
    p[0] = 1;
    usleep(ms * 1000);
    report("hold", &c, started);
    return 0;
}

static int tick(int n, int ms) {
    double started = now();
    struct counts c = {0};
    for (int i = 0; i < n; i++) {
        char *p = do_mmap(&c, 4096);
        p[0] = 1;
        do_munmap(&c, p, 4096);
        usleep(ms * 1000);
    }
    report("tick", &c, started);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "alloc")) return alloc(atol(argv[2]), atol(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "majfault")) return majfault(argv[2], atol(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "spin")) return spin(atof(argv[2]));
    if (argc >= 5 && !strcmp(argv[1], "thrash")) return thrash(argv[2], atol(argv[3]), atof(argv[4]));
    if (argc >= 4 && !strcmp(argv[1], "forkmany")) return forkmany(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "hold")) return hold(atoi(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "tick")) return tick(atoi(argv[2]), atoi(argv[3]));
    fprintf(stderr, "usage: see the comment at the top of workload.c\n");
    return 2;
}
