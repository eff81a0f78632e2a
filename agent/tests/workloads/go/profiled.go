// A Go program with a known CPU profile, for the profile tests: most of its
// CPU in main.burn (arithmetic, no allocation), a good part in main.churn,
// which allocates short-lived garbage against a live set so that the
// collector marks and sweeps (runtime.gcBgMarkWorker, runtime.scanobject…).
// Argument: seconds of work.
//
// Both hot functions keep a frame pointer (each makes a call), so that
// frame-pointer unwinding shows their caller: Go gives a leaf function with
// no stack frame no frame pointer, and a sample in such a leaf unwinds from
// its caller's frame, so the caller (main.main here) would be missing from
// the stack, exactly as with `perf record --call-graph fp`.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

type node struct {
	next  *node
	value [48]byte
}

var live []*node

//go:noinline
func burn(n int) uint64 {
	x := uint64(1)
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 17
	}
	return finish(x)
}

// finish makes burn a function with a frame (see the top of the file).
//
//go:noinline
func finish(x uint64) uint64 {
	return x | 1
}

//go:noinline
func churn(n int) int {
	var head *node
	for i := 0; i < n; i++ {
		head = &node{next: head}
		if i%64 == 0 {
			live[i%len(live)] = head
		}
	}
	return len(live)
}

func main() {
	seconds, _ := strconv.ParseFloat(os.Args[1], 64)
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	live = make([]*node, 200_000)
	var sink uint64
	for time.Now().Before(deadline) {
		sink += burn(3_000_000)
		sink += uint64(churn(20_000))
	}
	fmt.Println(sink)
}
