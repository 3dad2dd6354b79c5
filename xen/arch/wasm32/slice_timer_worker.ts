/** The slice clock's worker: see slice_timer.ts. */
import { workerData } from "node:worker_threads";

const ctl = workerData as Int32Array;
// Start from generation 0, not the current one: slices may have started
// before this thread was up, and the running one must still be ended.
let gen = 0;
for (;;) {
  const cur = Atomics.load(ctl, 0);
  if (cur === gen) {
    Atomics.wait(ctl, 0, gen);
    continue;
  }
  gen = cur;
  if (Atomics.wait(ctl, 0, gen, ctl[1]! / 1000) === "timed-out") Atomics.store(ctl, 2, gen);
}
