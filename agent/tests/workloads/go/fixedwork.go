// A fixed-work Go service: every 10 ms it serves a fixed number of
// requests, each allocating short-lived garbage (a few small objects and a
// 2 KiB buffer) over a pointer-rich live cache of a million small objects
// (about 50 MiB), then idles until the next tick. Its CPU tracks
// the work, not a limit, so what a GC setting saves is CPU. Arguments:
// seconds to run, requests per tick. Prints its own GC numbers at exit.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// The last request's garbage, so the compiler keeps it.
var sink *entry

type entry struct {
	key   int
	value []byte
	next  *entry
}

func main() {
	seconds, _ := strconv.ParseFloat(os.Args[1], 64)
	perTick, _ := strconv.Atoi(os.Args[2])
	const entries = 1_000_000
	cache := make([]*entry, entries)
	for i := range cache {
		cache[i] = &entry{key: i, value: make([]byte, 16)}
	}
	start := time.Now()
	deadline := start.Add(time.Duration(seconds * float64(time.Second)))
	late := 0
	i := 0
	for tick := start; tick.Before(deadline); tick = tick.Add(10 * time.Millisecond) {
		for r := 0; r < perTick; r++ {
			var head *entry
			for j := 0; j < 8; j++ {
				head = &entry{key: j, value: make([]byte, 32), next: head}
			}
			head.value = make([]byte, 2048)
			sink = head
			if i%8 == 0 {
				cache[(i*7919)%entries] = &entry{key: i, value: make([]byte, 16)}
			}
			i++
		}
		if d := time.Until(tick.Add(10 * time.Millisecond)); d > 0 {
			time.Sleep(d)
		} else {
			late++
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	fmt.Printf("{\"pid\":%d,\"num_gc\":%d,\"gc_cpu_fraction\":%f,\"cpu_seconds\":%f,\"requests\":%d,\"late_ticks\":%d,\"entries\":%d}\n",
		os.Getpid(), ms.NumGC, ms.GCCPUFraction, cpu, i, late, len(cache))
}
