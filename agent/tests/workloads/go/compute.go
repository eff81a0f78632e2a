// A compute-only Go program: arithmetic on the stack, no allocation.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

func main() {
	seconds, _ := strconv.ParseFloat(os.Args[1], 64)
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	sums := make([]uint64, runtime.GOMAXPROCS(0))
	for w := range sums {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			x := uint64(w)
			for time.Now().Before(deadline) {
				for i := 0; i < 1000000; i++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			sums[w] = x
		}(w)
	}
	wg.Wait()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("{\"pid\":%d,\"num_gc\":%d,\"sum\":%d}\n", os.Getpid(), ms.NumGC, sums[0])
}
