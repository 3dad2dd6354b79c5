/**
 * The main thread's watchdog (in the spirit of Xen's watchdog, which reports
 * a CPU stuck with interrupts off): everything in a host shares Node's main
 * thread, so when it does not come back to the event loop within
 * WATCHDOG_DEADLINE_MS, every domain, `xl` and xenstored wait. A worker
 * thread watches a heartbeat the main thread writes every HEARTBEAT_MS, and
 * when the heartbeat stops it notes what the main thread was doing: a guest
 * slice (domain, vCPU), the hypercall that guest was in, or work outside any
 * guest (Dom0's services, the toolstack, the garbage collector). When the
 * main thread is back, each subscribed hypervisor prints the stall on its
 * console (`xl dmesg`, the daemon's log). With `reportFd` set, the worker
 * also writes the line itself while the stall is still going on: nothing on
 * the main thread can.
 *
 * One watchdog per process (there is one main thread), shared by every
 * Hypervisor in it; it runs while at least one is subscribed.
 *
 * The activity block: Int32 slots the hypervisor writes (two stores per
 * slice, two per hypercall whose work depends on its arguments: see
 * trackedHypercall), read only by the worker.
 */
import { Worker } from "node:worker_threads";
import { ACT_FD, ACT_HYPERCALL, BLOCK_BYTES, F64_HEARTBEAT } from "./watchdog_block.js";

export { ACT_DOMID, ACT_HYPERCALL, ACT_VCPU, describeHold } from "./watchdog_block.js";

/** How long the main thread may be away from the event loop before it is reported. */
export const WATCHDOG_DEADLINE_MS = 100;
/** How often the main thread writes its heartbeat. */
export const HEARTBEAT_MS = 20;

/** A stall, as the worker reports it once the main thread is back. */
export interface Stall {
  readonly ms: number;
  /** The guest domain whose slice held the thread, or -1 for none. */
  readonly domid: number;
  readonly vcpu: number;
  /** The hypercall that guest was in, or -1. */
  readonly hypercall: number;
}

type Listener = (s: Stall) => void;

class Watchdog {
  readonly sab = new SharedArrayBuffer(BLOCK_BYTES);
  /** What the main thread is doing now: see the ACT_* slots. */
  readonly act = new Int32Array(this.sab, 0, 4);
  private readonly f64 = new Float64Array(this.sab);
  private worker: Worker | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<Listener>();

  constructor() {
    this.act.fill(-1);
  }

  private beat = (): void => {
    this.f64[F64_HEARTBEAT] = performance.timeOrigin + performance.now();
  };

  subscribe(l: Listener): void {
    this.listeners.add(l);
    if (this.worker) return;
    this.beat();
    this.timer = setInterval(this.beat, HEARTBEAT_MS);
    this.timer.unref();
    const w = new Worker(new URL("./watchdog_worker.js", import.meta.url), {
      workerData: { sab: this.sab, deadline: WATCHDOG_DEADLINE_MS },
    });
    w.unref();
    w.on("message", (s: Stall) => {
      for (const f of this.listeners) f(s);
    });
    w.on("error", () => {
      // A watchdog that cannot run only loses reports.
      this.worker = undefined;
    });
    this.worker = w;
  }

  unsubscribe(l: Listener): Promise<void> {
    this.listeners.delete(l);
    if (this.listeners.size > 0 || !this.worker) return Promise.resolve();
    clearInterval(this.timer);
    const w = this.worker;
    this.worker = undefined;
    return w.terminate().then(() => undefined);
  }

  /** Where the worker writes a stall while it lasts (-1: nowhere). */
  set reportFd(fd: number) {
    this.act[ACT_FD] = fd;
  }
}

/** The process's watchdog. */
export const watchdog = new Watchdog();
/** The activity block, for the hypervisor's hot paths. */
export const activity = watchdog.act;

/**
 * `fn`, a hypercall handler whose work depends on its arguments (a batch, a
 * multicall, a console write), marked as hypercall `op` while it runs, for
 * the watchdog's report. The short hypercalls are not marked: two stores to
 * the shared block cost 2–3 ns, a third of a whole round trip.
 */
export function trackedHypercall<A extends unknown[]>(
  op: number,
  fn: (...args: A) => number,
): (...args: A) => number {
  return (...args: A): number => {
    const prev = activity[ACT_HYPERCALL]!;
    activity[ACT_HYPERCALL] = op;
    try {
      return fn(...args);
    } finally {
      activity[ACT_HYPERCALL] = prev;
    }
  };
}
