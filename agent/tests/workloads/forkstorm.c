/*
 * A fork and exit storm for Tally's churn tests: <rate> short processes a
 * second for <seconds>, each making one mmap and munmap (so the kernel side
 * creates, then must free, a map entry for it) and exiting at once. Paced
 * against the clock, so a slow machine shows as a lower achieved rate, not
 * a longer run. Prints one JSON line: how many it forked, and the rate.
 *
 *   forkstorm <rate> <seconds>
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: forkstorm <rate> <seconds>\n");
        return 2;
    }
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    double start = now();
    long forked = 0, failed = 0;
    for (;;) {
        double elapsed = now() - start;
        if (elapsed >= seconds)
            break;
        /* Fork whatever the schedule owes by now, then sleep a millisecond. */
        long due = (long)(elapsed * rate) + 1;
        while (forked < due) {
            pid_t pid = fork();
            if (pid == 0) {
                void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p != MAP_FAILED)
                    munmap(p, 4096);
                _exit(0);
            }
            if (pid < 0) {
                failed++;
                break;
            }
            forked++;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        usleep(1000);
    }
    while (wait(NULL) > 0) {}
    double lived = now() - start;
    printf("{\"forked\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"rate\":%.1f}\n", forked, failed, lived,
           forked / lived);
    return 0;
}
