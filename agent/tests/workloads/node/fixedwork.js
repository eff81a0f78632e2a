// A fixed-work Node service: every 10 ms it serves a fixed number of
// requests, each allocating short-lived garbage over a live cache of
// objects, then idles until the next tick. Its CPU tracks the work, not a
// limit. Arguments: seconds to run, requests per tick.
const seconds = Number(process.argv[2]);
const perTick = Number(process.argv[3]);
const entries = 150000;
const cache = new Array(entries);
for (let i = 0; i < entries; i++) cache[i] = { key: i, value: "v".repeat(8) + i, next: null };
const start = Date.now();
const deadline = start + seconds * 1000;
let i = 0;
let late = 0;
let sink = null;
let tick = start;
function serve() {
  for (let r = 0; r < perTick; r++) {
    let head = null;
    for (let j = 0; j < 32; j++) head = { key: j, value: [j, j + 1, j + 2, j + 3], next: head };
    sink = head;
    if (i % 8 === 0) cache[(i * 7919) % entries] = { key: i, value: "v" + i, next: sink };
    i++;
  }
  tick += 10;
  if (tick >= deadline) {
    console.log(JSON.stringify({ pid: process.pid, requests: i, late_ticks: late, entries: cache.length, sink: sink !== null }));
    return;
  }
  const wait = tick - Date.now();
  if (wait <= 0) late++;
  setTimeout(serve, Math.max(0, wait));
}
serve();
