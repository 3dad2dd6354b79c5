/**
 * The slice clock: a host-owned word that says "the current time slice is
 * over". A worker thread sleeps for the slice length and then stores the
 * slice's generation number into the word; the preemption check injected into
 * guests compares it with the running slice's generation. The check reads one
 * Int32Array element and allocates nothing, and the guest cannot reach the
 * word: it is not in guest memory.
 *
 * Starting a slice is a few atomic stores: the worker is woken (a futex
 * syscall, about a microsecond) only when it sleeps with no slice to time, or
 * when the new slice ends before the one it is timing. Otherwise it finds the
 * new generation and deadline when its current wait ends, and times that.
 * Back-to-back short slices (vCPUs blocking on events) cost no syscall.
 */
import { Worker } from "node:worker_threads";

/** Int32 slots of the control block. */
const GEN = 0;
const EXPIRED = 2;
/** The worker's state: 0 idle (waiting for a slice), 1 timing a slice. */
const STATE = 3;
/** Float64 slots (after the Int32 ones): deadline of slice GEN, and of the slice being timed. */
const DEADLINE = 2;
const TIMING_UNTIL = 3;
/** Calls to expired() between two reads of the clock. */
const CLOCK_EVERY = 64;

export class SliceTimer {
  private readonly sab = new SharedArrayBuffer(32);
  private readonly ctl = new Int32Array(this.sab, 0, 4);
  private readonly f64 = new Float64Array(this.sab);
  private readonly worker: Worker;
  private gen = 0;
  /** Resolves once the worker runs: no slice may start before it can be ended. */
  readonly ready: Promise<void>;

  constructor() {
    this.worker = new Worker(new URL("./slice_timer_worker.js", import.meta.url), {
      workerData: this.sab,
    });
    // Referenced until it runs, so that a host waiting for it is not left
    // without a live handle; after that it must not keep the process alive.
    this.ready = new Promise((resolve, reject) => {
      this.worker.once("online", () => {
        this.worker.unref();
        resolve();
      });
      this.worker.once("error", reject);
    });
  }

  /** performance.now() at which the running slice ends. */
  private deadline = 0;
  private calls = 0;

  /** Starts a slice of `us` microseconds; `now` is performance.now() if the caller has it. */
  start(us: number, now = performance.now()): void {
    this.deadline = now + us / 1000;
    // Deadlines cross threads as absolute times: each thread has its own timeOrigin.
    const abs = performance.timeOrigin + this.deadline;
    this.f64[DEADLINE] = abs;
    this.gen = (Atomics.add(this.ctl, GEN, 1) + 1) | 0;
    if (Atomics.load(this.ctl, STATE) === 0 || abs < this.f64[TIMING_UNTIL]!) {
      Atomics.notify(this.ctl, GEN);
    }
  }

  /**
   * True once the slice started last has run its length. Mostly one read of
   * the worker's word; every CLOCK_EVERY calls it also reads the clock, in case
   * the OS woke the worker late (seen at 20 ms on a loaded 2-core machine).
   * That read allocates, but too rarely to cause GC pauses.
   */
  expired(): boolean {
    if (this.ctl[EXPIRED] === this.gen) return true;
    if (++this.calls % CLOCK_EVERY !== 0) return false;
    if (performance.now() < this.deadline) return false;
    this.ctl[EXPIRED] = this.gen;
    return true;
  }

  /** Ends the current slice at once (used when a domain must stop now). */
  expireNow(): void {
    this.ctl[EXPIRED] = this.gen;
  }

  /**
   * Stops the worker. Waits for it to be online first: terminating a worker
   * that is still starting can leave the returned promise unsettled.
   */
  async dispose(): Promise<number> {
    await this.ready.catch(() => undefined);
    return this.worker.terminate();
  }
}
