// Workload for `cargo xtask bench overhead`: a loop made of exactly the events
// the agent traces (mmap, page faults, madvise, munmap), so the per-event cost
// of tracing dominates and shows up as added CPU per iteration.
//
// Usage: overhead <iterations>
// Prints one JSON line to stdout, e.g.
//   {"iterations":60000,"cpu_ns_per_iter":23400.1,"cpu_ns":...,"user_ns":...,
//    "sys_ns":...,"minflt":960000,"majflt":0,"loop_mmaps":61201}
// cpu_* and *flt cover the timed loop only (getrusage(RUSAGE_SELF) around it);
// loop_mmaps counts the mmap calls of warm-up and timed loop together, so a
// tracer's per-pid count can be checked against it.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define PAGES 16

static size_t page_size;

// One iteration. Each page faults in on its first write; MADV_DONTNEED then
// zaps them, so both the faults and the madvise do real work every time.
static int iteration(void) {
    size_t len = page_size * PAGES;
    volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return -1;
    }
    for (size_t i = 0; i < PAGES; i++) {
        p[i * page_size] = (char)i;
    }
    if (madvise((void *)p, len, MADV_DONTNEED) != 0) {
        perror("madvise");
        return -1;
    }
    if (munmap((void *)p, len) != 0) {
        perror("munmap");
        return -1;
    }
    return 0;
}

static long long tv_ns(struct timeval tv) {
    return (long long)tv.tv_sec * 1000000000LL + (long long)tv.tv_usec * 1000LL;
}

static int loop(long long n) {
    for (long long i = 0; i < n; i++) {
        if (iteration() != 0) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <iterations>\n", argv[0]);
        return 2;
    }
    char *end;
    long long iterations = strtoll(argv[1], &end, 10);
    if (*end != '\0' || iterations <= 0) {
        fprintf(stderr, "iterations must be a positive integer, got '%s'\n", argv[1]);
        return 2;
    }
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) {
        perror("sysconf(_SC_PAGESIZE)");
        return 1;
    }
    page_size = (size_t)ps;

    // Warm-up, untimed: the page tables, the allocator's caches and the
    // tracer's per-pid map entries exist before timing starts, so one-time
    // inserts are not charged to the loop.
    long long warmup = iterations / 50 + 1;
    if (loop(warmup) != 0) return 1;

    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    if (loop(iterations) != 0) return 1;
    getrusage(RUSAGE_SELF, &after);

    long long user = tv_ns(after.ru_utime) - tv_ns(before.ru_utime);
    long long sys = tv_ns(after.ru_stime) - tv_ns(before.ru_stime);
    printf("{\"iterations\":%lld,\"cpu_ns_per_iter\":%.1f,\"cpu_ns\":%lld,\"user_ns\":%lld,"
           "\"sys_ns\":%lld,\"minflt\":%ld,\"majflt\":%ld,\"loop_mmaps\":%lld}\n",
           iterations, (double)(user + sys) / (double)iterations, user + sys, user, sys,
           after.ru_minflt - before.ru_minflt, after.ru_majflt - before.ru_majflt, warmup + iterations);
    return 0;
}
