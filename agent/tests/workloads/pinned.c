/*
 * A process whose CPU profile is known in advance, whoever samples it: two
 * threads, each pinned to its own CPU and never sleeping.
 *
 *   lane0 (CPU 0): spin_a all the time                       -> 1/2 of the samples
 *   lane1 (CPU 1): spin_b 3 units of work, spin_c 1 unit ... -> 3/8 and 1/8
 *
 * lane1 splits its work, not the clock: a thread preempted (a busy machine,
 * a profiler starting) loses CPU time, not its 3:1 split, and a CPU-time
 * sampler sees only CPU time. So two profilers sampling the same seconds
 * see the same shares to within a few samples, and other seconds the same
 * shares within lane1. Built with frame pointers, so that each leaf's
 * caller (lane0, lane1) shows in the unwound stacks.
 *
 *   pinned <seconds>
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double deadline;
static volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Blocks of multiply-adds in one dependency chain: the same cost whatever
 * the constants. */
#define BLOCK 4096
/* About 10 ms of blocks, the unit of lane1's work. */
#define UNIT 2000

/* Spins until `until`; the clock is read every block. */
__attribute__((noinline)) static void spin_a(double until) {
    unsigned long x = 1;
    while (now() < until)
        for (int i = 0; i < BLOCK; i++) x = x * 6364136223846793005UL + 1;
    sink += x;
}

/* spin_b and spin_c run `blocks` blocks. Each block reads the clock, as
 * spin_a's do: GCC gives a function that calls nothing no frame of its
 * own, and its caller (lane1) would be missing from frame-pointer stacks. */
__attribute__((noinline, noclone)) static void spin_b(long blocks) {
    unsigned long x = 3;
    for (long b = 0; b < blocks; b++) {
        (void)now();
        for (int i = 0; i < BLOCK; i++) x = x * 2862933555777941757UL + 7;
    }
    sink += x;
}

__attribute__((noinline, noclone)) static void spin_c(long blocks) {
    unsigned long x = 5;
    for (long b = 0; b < blocks; b++) {
        (void)now();
        for (int i = 0; i < BLOCK; i++) x = x * 3202034522624059733UL + 11;
    }
    sink += x;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        perror("pthread_setaffinity_np");
        exit(1);
    }
}

__attribute__((noinline)) static void *lane0(void *arg) {
    (void)arg;
    pin(0);
    spin_a(deadline);
    return NULL;
}

__attribute__((noinline)) static void *lane1(void *arg) {
    (void)arg;
    pin(1);
    while (now() < deadline) {
        spin_b(3 * UNIT);
        spin_c(UNIT);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: pinned <seconds>\n");
        return 2;
    }
    deadline = now() + atof(argv[1]);
    pthread_t t0, t1;
    pthread_create(&t0, NULL, lane0, NULL);
    pthread_create(&t1, NULL, lane1, NULL);
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
    printf("%lu\n", sink);
    return 0;
}
