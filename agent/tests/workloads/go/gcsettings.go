// Prints the GC settings the Go runtime itself runs with, as one JSON line
// (GOGC's percent from debug.SetGCPercent, the memory limit from
// debug.SetMemoryLimit, GOMAXPROCS), then allocates garbage for the given
// seconds, so that it is a busy Go process the agent sees.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"
)

var sink [][]byte

func main() {
	seconds, _ := strconv.ParseFloat(os.Args[1], 64)
	// Each setter returns the value in force; set it back at once.
	gogc := debug.SetGCPercent(100)
	debug.SetGCPercent(gogc)
	limit := debug.SetMemoryLimit(-1) // a negative input only reads it
	fmt.Printf("{\"gogc\":%d,\"memory_limit\":%d,\"gomaxprocs\":%d}\n", gogc, limit, runtime.GOMAXPROCS(0))
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	for i := 0; time.Now().Before(deadline); i++ {
		sink = append(sink, make([]byte, 4096))
		if len(sink) > 2048 {
			sink = sink[:0]
		}
	}
}
