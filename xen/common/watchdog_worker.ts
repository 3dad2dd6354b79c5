/** The watchdog's thread: see watchdog.ts for the protocol. */
import { writeSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import {
  ACT_DOMID,
  ACT_FD,
  ACT_HYPERCALL,
  ACT_VCPU,
  F64_HEARTBEAT,
  describeHold,
} from "./watchdog_block.js";

const { sab, deadline } = workerData as { sab: SharedArrayBuffer; deadline: number };
const act = new Int32Array(sab, 0, 4);
const f64 = new Float64Array(sab);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

let stalled: { since: number; domid: number; vcpu: number; hypercall: number } | undefined;
for (;;) {
  Atomics.wait(sleeper, 0, 0, deadline / 4);
  const now = performance.timeOrigin + performance.now();
  const beat = f64[F64_HEARTBEAT]!;
  if (now - beat > deadline) {
    if (!stalled) {
      stalled = {
        since: beat,
        domid: Atomics.load(act, ACT_DOMID),
        vcpu: Atomics.load(act, ACT_VCPU),
        hypercall: Atomics.load(act, ACT_HYPERCALL),
      };
      const fd = Atomics.load(act, ACT_FD);
      if (fd >= 0) {
        try {
          writeSync(
            fd,
            `(XEN) watchdog: the main thread has missed its ${deadline} ms deadline, held ${describeHold(stalled.domid, stalled.vcpu, stalled.hypercall)}\n`,
          );
        } catch {
          // Nowhere to write: the report after the stall still comes.
        }
      }
    }
  } else if (stalled) {
    parentPort!.postMessage({
      ms: Math.round(beat - stalled.since),
      domid: stalled.domid,
      vcpu: stalled.vcpu,
      hypercall: stalled.hypercall,
    });
    stalled = undefined;
  }
}
