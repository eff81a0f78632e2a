/*
 * A C program churning malloc/free for Tally's verdict tests: blocks above
 * glibc's mmap threshold, so every malloc is an mmap and every free a
 * munmap, touched so each costs page faults. No GC anywhere: the verdict
 * must be alloc-churn, never gc-heavy.
 *
 *   churn <seconds>
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    double end = now() + seconds;
    /* A fixed threshold: glibc would otherwise raise it after the first
     * free of an mmapped block and serve the rest from the heap. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    long n = 0;
    while (now() < end) {
        for (int i = 0; i < 100; i++) {
            size_t len = 256 * 1024 + (i % 7) * 4096;
            char *p = malloc(len);
            for (size_t off = 0; off < len; off += 4096) p[off] = (char)i;
            free(p);
            n++;
        }
    }
    printf("{\"pid\":%d,\"blocks\":%ld}\n", getpid(), n);
    return 0;
}
