/**
 * The slice clock: a host-owned word that says "the current time slice is
 * over". A worker thread sleeps for the slice length and then stores the
 * slice's generation number into the word; the preemption check injected into
 * guests compares it with the running slice's generation. The check reads one
 * Int32Array element and allocates nothing, and the guest cannot reach the
 * word: it is not in guest memory.
 */
import { Worker } from "node:worker_threads";

const GEN = 0;
const SLICE_US = 1;
const EXPIRED = 2;
/** Calls to expired() between two reads of the clock. */
const CLOCK_EVERY = 64;

export class SliceTimer {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(16));
  private readonly worker: Worker;
  private gen = 0;
  /** Resolves once the worker runs: no slice may start before it can be ended. */
  readonly ready: Promise<void>;

  constructor() {
    this.worker = new Worker(new URL("./slice_timer_worker.js", import.meta.url), {
      workerData: this.ctl,
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

  /** Starts a slice of `us` microseconds. */
  start(us: number): void {
    this.deadline = performance.now() + us / 1000;
    this.ctl[SLICE_US] = us;
    this.gen = (Atomics.add(this.ctl, GEN, 1) + 1) | 0;
    Atomics.notify(this.ctl, GEN);
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
