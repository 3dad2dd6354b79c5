/** The slice clock's worker: see slice_timer.ts for the protocol. */
import { workerData } from "node:worker_threads";

const sab = workerData as SharedArrayBuffer;
const ctl = new Int32Array(sab, 0, 4);
const f64 = new Float64Array(sab);
const GEN = 0;
const EXPIRED = 2;
const STATE = 3;
const DEADLINE = 2;
const TIMING_UNTIL = 3;

// Start from generation 0, not the current one: slices may have started
// before this thread was up, and the running one must still be ended.
let handled = 0;
for (;;) {
  const gen = Atomics.load(ctl, GEN);
  if (gen === handled) {
    // Idle. A slice started after the load above makes this wait return at once.
    Atomics.store(ctl, STATE, 0);
    Atomics.wait(ctl, GEN, handled);
    continue;
  }
  Atomics.store(ctl, STATE, 1);
  const deadline = f64[DEADLINE]!;
  f64[TIMING_UNTIL] = deadline;
  const left = deadline - (performance.timeOrigin + performance.now());
  // Woken early means a slice that ends sooner started: time that one instead.
  if (left > 0 && Atomics.wait(ctl, GEN, gen, left) !== "timed-out") continue;
  if (Atomics.load(ctl, GEN) === gen) Atomics.store(ctl, EXPIRED, gen);
  else if (f64[DEADLINE]! > performance.timeOrigin + performance.now()) continue;
  else Atomics.store(ctl, EXPIRED, Atomics.load(ctl, GEN));
  handled = Atomics.load(ctl, EXPIRED);
}
