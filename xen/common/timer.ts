/**
 * Hypervisor timers (Xen's `timer.c`): a binary heap of deadlines in system
 * time, driven by one host timeout for the earliest. Ten thousand idle guests
 * with one-second tickers cost one host timer, not ten thousand.
 */
import { NOW } from "./time.js";

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class Timer {
  /** Deadline in system time (ns); meaningful while active. */
  expires = 0;
  /** Position in the heap, -1 when inactive. */
  index = -1;
  /** @param what what the timer is for, as debug key 'a' lists it */
  constructor(
    readonly fn: () => void,
    readonly what = "anonymous",
  ) {}
  get active(): boolean {
    return this.index >= 0;
  }
}

export class TimerQueue {
  private heap: Timer[] = [];

  /** `onError` receives what a timer's function throws (a hypervisor bug). */
  constructor(private readonly onError: (e: unknown) => void = (e) => console.error(e)) {}

  private handle: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private disposed = false;

  /** Arms (or re-arms) `t` to fire at system time `expires`. */
  set(t: Timer, expires: number): void {
    if (t.active) this.remove(t);
    t.expires = expires;
    t.index = this.heap.length;
    this.heap.push(t);
    this.up(t.index);
    this.arm();
  }

  /** Disarms `t`; harmless when it is not armed. */
  stop(t: Timer): void {
    if (t.active) {
      this.remove(t);
      this.arm();
    }
  }

  get size(): number {
    return this.heap.length;
  }

  /** Debug key 'a': the active timers, earliest first, as Xen's dump_timerq lists them. */
  dump(now: number): string[] {
    return [...this.heap]
      .sort((a, b) => a.expires - b.expires)
      .map(
        (t) =>
          `  ex=${Math.round((t.expires - now) / 1000)
            .toString()
            .padStart(12)}us timer=${t.what}`,
      );
  }

  /** Fires every timer whose deadline has passed. */
  run(): void {
    const now = NOW();
    while (this.heap.length > 0 && this.heap[0]!.expires <= now) {
      const t = this.heap[0]!;
      this.remove(t);
      // One failing timer must not stop the others, nor the host.
      try {
        t.fn();
      } catch (e) {
        this.onError(e);
      }
    }
    this.arm();
  }

  dispose(): void {
    this.disposed = true;
    if (this.handle) clearTimeout(this.handle);
    this.handle = undefined;
    for (const t of this.heap) t.index = -1;
    this.heap = [];
  }

  private arm(): void {
    if (this.disposed) return;
    const first = this.heap[0];
    const at = first ? first.expires : Infinity;
    if (at === this.armedFor) return;
    if (this.handle) clearTimeout(this.handle);
    this.handle = undefined;
    this.armedFor = at;
    if (first) {
      // setTimeout holds at most 2^31-1 ms; a later deadline re-arms on firing.
      const ms = Math.min(MAX_TIMEOUT_MS, Math.max(0, (at - NOW()) / 1e6));
      this.handle = setTimeout(() => {
        this.handle = undefined;
        this.armedFor = Infinity;
        this.run();
      }, ms);
      this.handle.unref();
    }
  }

  private remove(t: Timer): void {
    const i = t.index;
    const last = this.heap.pop()!;
    t.index = -1;
    if (last !== t) {
      this.heap[i] = last;
      last.index = i;
      this.down(i);
      this.up(last.index);
    }
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.expires <= h[i]!.expires) break;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]!.expires < h[m]!.expires) m = l;
      if (r < h.length && h[r]!.expires < h[m]!.expires) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(a: number, b: number): void {
    const h = this.heap;
    const ta = h[a]!;
    const tb = h[b]!;
    h[a] = tb;
    h[b] = ta;
    ta.index = b;
    tb.index = a;
  }
}
