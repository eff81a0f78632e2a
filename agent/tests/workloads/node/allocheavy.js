// An allocation-heavy Node program: builds short-lived objects and keeps a
// rotating window of them, so V8's scavenger and mark-compact run
// constantly. Run with --trace-gc; runs for the seconds given.
const seconds = Number(process.argv[2]);
const deadline = Date.now() + seconds * 1000;
const keep = new Array(20000);
let i = 0;
while (Date.now() < deadline) {
  for (let j = 0; j < 10000; j++) {
    keep[i++ % keep.length] = { a: i, b: [i, i + 1, i + 2], c: "x" + i };
  }
}
console.log(JSON.stringify({ pid: process.pid }));
