// An allocation-heavy Go service in miniature: a live cache of about 40 MiB
// that keeps being refreshed, and requests that each allocate short-lived
// garbage. With GOGC=50 the collector runs many times a second and marking
// the live heap dominates its cost, as in real services. Run with
// GODEBUG=gctrace=1. Arguments: seconds of work, then optionally seconds
// to wait first, allocating nothing, so a tracer can attach before the
// first collection.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type entry struct {
	key   int
	value []byte
	next  *entry
}

func main() {
	seconds, _ := strconv.ParseFloat(os.Args[1], 64)
	if len(os.Args) > 2 {
		wait, _ := strconv.ParseFloat(os.Args[2], 64)
		time.Sleep(time.Duration(wait * float64(time.Second)))
	}
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	const entries = 150_000
	cache := make([]*entry, entries)
	for i := range cache {
		cache[i] = &entry{key: i, value: make([]byte, 200)}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var sink *entry
			for i := w; time.Now().Before(deadline); i++ {
				// A request: a short linked list of garbage.
				var head *entry
				for j := 0; j < 64; j++ {
					head = &entry{key: j, value: make([]byte, 48), next: head}
				}
				sink = head
				// Refresh one cache entry now and then.
				if i%16 == 0 {
					mu.Lock()
					cache[(i*7919)%entries] = &entry{key: i, value: make([]byte, 200), next: sink}
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	// A cycle that ends as the work stops prints its gctrace line after it
	// restarts the world; exiting at once can lose that line (seen under
	// qemu). Allocating nothing, no new cycle starts meanwhile.
	time.Sleep(500 * time.Millisecond)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	fmt.Printf("{\"pid\":%d,\"num_gc\":%d,\"gc_cpu_fraction\":%f,\"cpu_seconds\":%f,\"entries\":%d}\n",
		os.Getpid(), ms.NumGC, ms.GCCPUFraction, cpu, len(cache))
}
