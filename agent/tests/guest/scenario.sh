#!/bin/sh
# The kernel matrix's scenario (agent/tests/it/kernels.rs), the same in a
# qemu guest (from ./init) and on the host: the agent over known work.
#
#   scenario.sh <bin dir> <work dir> <alloc iterations> [agent args...]
#
# <bin dir> holds `agent`, `workload` (agent/tests/workloads/workload.c,
# static) and `goalloc` (agent/tests/workloads/go/allocheavy.go, static).
# Everything the test compares is printed between `=== <name>` lines:
# the kernel, the agent's stderr and JSON windows, the workloads' own
# reports and Go's gctrace.
set -u
B=$1
W=$2
N=$3
shift 3
mkdir -p "$W"
echo "=== uname"
uname -r
uname -m
"$B/agent" top --batch --json --interval 0.5 "$@" > "$W/agent.jsonl" 2> "$W/agent.err" &
AGENT=$!
# Wait (up to 5 minutes: TCG is slow) for the probes, or the agent's end.
i=0
while ! grep -q "probes attached" "$W/agent.err" 2>/dev/null; do
    kill -0 $AGENT 2>/dev/null || break
    [ $i -ge 3000 ] && break
    sleep 0.1
    i=$((i + 1))
done
echo "=== attach_wait_ds"
echo $i
if kill -0 $AGENT 2>/dev/null; then
    # What the C runtime does at start-up, then known work.
    "$B/workload" alloc 0 16 > "$W/idle.json"
    "$B/workload" alloc "$N" 16 > "$W/busy.json"
    # Go: 2 s of nothing (the agent finds the process and attaches its GC
    # uprobe), then 3 s of allocation; gctrace prints one line a cycle.
    GOGC=50 GODEBUG=gctrace=1 "$B/goalloc" 3 2 > /dev/null 2> "$W/go.err" &
    GO=$!
    wait $GO
    echo "=== go.pid"
    echo $GO
    # Two more windows, so that the exits are reported.
    sleep 1.5
    kill -INT $AGENT
fi
wait $AGENT
echo "=== agent.exit"
echo $?
for f in agent.err idle.json busy.json go.err agent.jsonl; do
    echo "=== $f"
    cat "$W/$f" 2>/dev/null
done
echo "=== end"
