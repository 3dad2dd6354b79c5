/**
 * The vCPU scheduler, after Xen's credit scheduler (`sched_credit.c`; xen-doc
 * `features/sched_credit`): per-domain weight and cap, credits handed out every
 * accounting period in proportion to weight, three priorities (BOOST for a vCPU
 * just woken from blocking, UNDER while it has credit, OVER once it has spent
 * it), within a priority the vCPU with the most credit first (credit2's rule:
 * with credit1's round robin a debt never changes who runs next, and weights
 * drift toward equal shares), and a fixed time slice.
 *
 * All vCPUs share the Node.js main thread (one pCPU). The scheduler runs slices
 * back to back for at most one slice's worth of wall time, then returns to the
 * event loop (setImmediate) so that Dom0's I/O and the timers always progress.
 * The slice defaults to 10 ms rather than Xen's 30 ms because Dom0 shares the
 * thread with the guests.
 */
import {
  TRC_SCHED_BLOCK,
  TRC_SCHED_RUNSTATE_CHANGE,
  TRC_SCHED_SWITCH,
  TRC_SCHED_WAKE,
  TRC_SCHED_YIELD,
} from "../include/public/trace.js";

/** The idle domain's id in trace records (Xen's DOMID_IDLE). */
const DOMID_IDLE = 0x7fff;
import type { TraceBuffers } from "./trace.js";
import { Suspend, VcpuState, type Vcpu } from "../arch/wasm32/vcpu.js";

const BOOST = 0;
const UNDER = 1;
const OVER = 2;
/** Credit's names for the priorities (CSCHED_PRI_*), for debug key 'r'. */
const PRIO_NAMES = ["BOOST", "UNDER", "OVER"];
/** How many periods of debt a vCPU may carry before it is forgiven. */
const CREDIT_DEBT_PERIODS = 10;

export interface SchedulerParams {
  /** Time slice, microseconds (xl sched-credit -t, in ms there). */
  tsliceUs: number;
  /** Accounting period, microseconds. */
  periodUs: number;
}

export const DEFAULT_SCHED_PARAMS: SchedulerParams = { tsliceUs: 10_000, periodUs: 30_000 };

/** What the scheduler needs from the hypervisor to run one slice. */
export interface SliceRunner {
  /** Runs `v` for at most one slice from `now` (performance.now()); returns why it stopped. */
  runSlice(v: Vcpu, sliceUs: number, now: number): Suspend;
  /**
   * Dom0's turn between two slices: runs its pending upcall, if any (its
   * backends answer a guest without a trip through the event loop).
   * Returns whether it ran.
   */
  betweenSlices?(): boolean;
}

/** Xen's runstate for each VcpuState (RUNSTATE_running 0, runnable 1, blocked 2, offline 3). */
const XEN_RUNSTATE = [3, 1, 0, 2];

export class Scheduler {
  private readonly queues: Vcpu[][] = [[], [], []];
  private scheduled = false;
  /** True while runTurn runs: it picks up newly queued vCPUs itself. */
  private inTurn = false;
  private disposed = false;
  private lastAccounting = performance.now();
  /** The vCPU on the (one) pCPU right now, if any. */
  current: Vcpu | undefined;
  /** Domains' credit use in the current period, µs, for caps. */
  private readonly used = new Map<number, number>();
  /** All vCPUs that are up (online), for accounting. */
  private readonly online = new Set<Vcpu>();

  /** False until the slice clock runs; vCPUs wait for it. */
  private open = false;

  /** Where runstate changes are recorded when tracing is on (the hypervisor's trace buffers). */
  trace: TraceBuffers | undefined;
  /** The vCPU that ran last, for TRC_SCHED_SWITCH (undefined: the idle vCPU). */
  private lastRan: Vcpu | undefined;

  /** Records `v`'s change to `to` (TRC_SCHED_RUNSTATE_CHANGE), with Xen's runstate numbers. */
  private traceRunstate(v: Vcpu, to: VcpuState): void {
    const event =
      TRC_SCHED_RUNSTATE_CHANGE | (XEN_RUNSTATE[v.state]! << 8) | (XEN_RUNSTATE[to]! << 4);
    this.trace!.record(event, [((v.domain.domid << 16) | v.id) >>> 0]);
  }

  constructor(
    private readonly runner: SliceRunner,
    readonly params: SchedulerParams = { ...DEFAULT_SCHED_PARAMS },
    gate: Promise<void> = Promise.resolve(),
    private readonly onError: (e: unknown) => void = (e) => console.error(e),
  ) {
    void gate.then(() => {
      this.open = true;
      if (this.queued > 0) this.kick();
    });
  }

  /**
   * Debug key 'r': the run queue of the one pCPU, as Xen's credit scheduler
   * dumps it (priority, credit), and what runs now.
   */
  dump(): string[] {
    const name = (v: Vcpu): string => `d${v.domain.domid}v${v.id}`;
    const out = [
      "Scheduler: SMP Credit Scheduler (credit)",
      `info: tslice=${this.params.tsliceUs / 1000}ms period=${this.params.periodUs / 1000}ms online vCPUs=${this.online.size}`,
      `CPU[00] current=${this.current ? name(this.current) : "idle"}`,
    ];
    let n = 0;
    for (let prio = BOOST; prio <= OVER; prio++) {
      for (const v of this.queues[prio]!) {
        out.push(
          `  RUNQ ${++n}: ${name(v)} pri=${PRIO_NAMES[prio]} credit=${Math.round(v.credit)} weight=${v.domain.weight}${v.domain.cap ? ` cap=${v.domain.cap}` : ""}${this.capped(v) ? " (capped)" : ""}`,
        );
      }
    }
    if (n === 0) out.push("  RUNQ empty");
    return out;
  }

  /** A vCPU came online (VCPUOP_up or domain creation). */
  add(v: Vcpu): void {
    this.online.add(v);
  }

  /** A vCPU went offline or its domain is going away. */
  remove(v: Vcpu): void {
    this.online.delete(v);
    if (this.lastRan === v) this.lastRan = undefined;
    if (v.queued) {
      for (const q of this.queues) {
        const i = q.indexOf(v);
        if (i >= 0) q.splice(i, 1);
      }
      v.queued = false;
    }
  }

  /** Makes a blocked or new vCPU runnable, boosted as Xen boosts a waking vCPU. */
  wake(v: Vcpu): void {
    if (v.state === VcpuState.Running || v.state === VcpuState.Offline) return;
    if (this.trace?.on && v.state !== VcpuState.Runnable) {
      this.trace.record(TRC_SCHED_WAKE, [v.domain.domid, v.id]);
      this.traceRunstate(v, VcpuState.Runnable);
    }
    v.state = VcpuState.Runnable;
    v.boost = v.credit >= 0;
    this.enqueue(v);
  }

  /** Puts a runnable vCPU on its run queue if its domain may run. */
  enqueue(v: Vcpu): void {
    if (v.queued || v.state !== VcpuState.Runnable || !v.domain.runnable) return;
    const prio = v.boost ? BOOST : v.credit >= 0 ? UNDER : OVER;
    this.queues[prio]!.push(v);
    v.queued = true;
    this.kick();
  }

  /** Number of vCPUs waiting to run. */
  get queued(): number {
    return this.queues[0]!.length + this.queues[1]!.length + this.queues[2]!.length;
  }

  /** Arranges for the scheduler to run on the next turn of the event loop. */
  kick(): void {
    if (this.scheduled || this.inTurn || this.disposed || !this.open) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      try {
        this.runTurn();
      } catch (e) {
        // A scheduler bug must not take the host down: report it and go on.
        this.current = undefined;
        this.onError(e);
        if (this.queued > 0) this.kick();
      }
    });
  }

  dispose(): void {
    this.disposed = true;
    for (const q of this.queues) q.length = 0;
  }

  /**
   * The next vCPU: BOOST first, in wake order; then, within UNDER and then
   * OVER, the one with the most credit (as credit2 does), so that a debt orders
   * the queue and shares converge to the weights. Capped-out domains wait.
   */
  private pick(): Vcpu | undefined {
    for (let prio = BOOST; prio <= OVER; prio++) {
      const q = this.queues[prio]!;
      let best = -1;
      for (let i = 0; i < q.length; i++) {
        const v = q[i]!;
        if (this.capped(v)) continue;
        if (best < 0 || (prio !== BOOST && v.credit > q[best]!.credit)) best = i;
        if (prio === BOOST) break;
      }
      if (best >= 0) {
        const v = q.splice(best, 1)[0]!;
        v.queued = false;
        return v;
      }
    }
    return undefined;
  }

  /** CPU time (µs) a capped domain may still use this period; Infinity when uncapped. */
  private capLeft(v: Vcpu): number {
    const cap = v.domain.cap;
    if (cap === 0) return Infinity;
    return (this.params.periodUs * cap) / 100 - (this.used.get(v.domain.domid) ?? 0);
  }

  private capped(v: Vcpu): boolean {
    return this.capLeft(v) <= 0;
  }

  /** Runs slices until the queues are empty or a slice's worth of time has passed. */
  runTurn(): void {
    this.inTurn = true;
    try {
      this.runSlices();
    } finally {
      this.inTurn = false;
    }
  }

  /** The body of a turn. One clock read per slice: the end of one is the start of the next. */
  private runSlices(): void {
    let t0 = performance.now();
    const turnStart = t0;
    const budgetMs = this.params.tsliceUs / 1000;
    for (;;) {
      this.account(t0);
      let v = this.pick();
      if (!v && this.runner.betweenSlices?.()) {
        // Dom0's work may have woken a guest.
        t0 = performance.now();
        v = this.pick();
      }
      if (!v) {
        if (this.queued > 0) setTimeout(() => this.kick(), this.params.periodUs / 1000).unref();
        return;
      }
      this.current = v;
      if (this.trace?.on) {
        // The pCPU goes from whoever ran last (the idle vCPU after a pause) to v.
        const prev = this.lastRan;
        this.trace.record(TRC_SCHED_SWITCH, [
          prev ? prev.domain.domid : DOMID_IDLE,
          prev ? prev.id : 0,
          v.domain.domid,
          v.id,
        ]);
        this.traceRunstate(v, VcpuState.Running);
      }
      this.lastRan = v;
      v.state = VcpuState.Running;
      // A capped domain's slice ends where its cap for this period does.
      const reason = this.runner.runSlice(v, Math.min(this.params.tsliceUs, this.capLeft(v)), t0);
      this.current = undefined;
      const t1 = performance.now();
      const us = (t1 - t0) * 1000;
      t0 = t1;
      v.credit -= us;
      v.cpuTimeNs += us * 1000;
      if (us > v.longestSliceUs) v.longestSliceUs = us;
      this.used.set(v.domain.domid, (this.used.get(v.domain.domid) ?? 0) + us);
      this.afterSlice(v, reason);
      if (this.runner.betweenSlices?.()) t0 = performance.now();
      if (t0 - turnStart >= budgetMs) {
        if (this.queued > 0) {
          this.inTurn = false;
          this.kick();
        }
        return;
      }
    }
  }

  private afterSlice(v: Vcpu, reason: Suspend): void {
    if (v.state !== VcpuState.Running) return; // the slice changed its state (destroy, down)
    if (this.trace?.on) {
      if (reason === Suspend.Block || reason === Suspend.Poll)
        this.trace.record(TRC_SCHED_BLOCK, [v.domain.domid, v.id]);
      else if (reason === Suspend.Yield) this.trace.record(TRC_SCHED_YIELD, [v.domain.domid, v.id]);
      const to =
        reason === Suspend.Block || reason === Suspend.Poll
          ? VcpuState.Blocked
          : reason === Suspend.Down
            ? VcpuState.Offline
            : VcpuState.Runnable;
      this.traceRunstate(v, to);
    }
    switch (reason) {
      case Suspend.Block:
      case Suspend.Poll:
        v.state = VcpuState.Blocked;
        return;
      case Suspend.Down:
        v.state = VcpuState.Offline;
        this.remove(v);
        return;
      case Suspend.Shutdown:
        v.state = VcpuState.Runnable;
        return;
      default:
        v.state = VcpuState.Runnable;
        v.boost = false;
        this.enqueue(v);
    }
  }

  /** Hands out credit for the periods that have passed since the last accounting. */
  private account(now: number): void {
    const elapsedUs = (now - this.lastAccounting) * 1000;
    if (elapsedUs < this.params.periodUs) return;
    this.lastAccounting = now;
    this.used.clear();
    const weights = new Map<number, { weight: number; vcpus: Vcpu[] }>();
    for (const v of this.online) {
      if (v.state === VcpuState.Offline || !v.domain.runnable) continue;
      const e = weights.get(v.domain.domid) ?? { weight: v.domain.weight, vcpus: [] };
      e.vcpus.push(v);
      weights.set(v.domain.domid, e);
    }
    let total = 0;
    for (const e of weights.values()) total += e.weight;
    if (total === 0) return;
    const grant = Math.min(elapsedUs, 4 * this.params.periodUs);
    for (const e of weights.values()) {
      const share = (grant * e.weight) / total / e.vcpus.length;
      for (const v of e.vcpus) {
        // An idle vCPU banks at most one period of credit; a busy one may owe
        // several, so that its debts are repaid and weights hold over time.
        v.credit = Math.max(
          -CREDIT_DEBT_PERIODS * this.params.periodUs,
          Math.min(this.params.periodUs, v.credit + share),
        );
      }
    }
    // Requeue by the new priorities.
    for (let prio = UNDER; prio <= OVER; prio++) {
      const q = this.queues[prio]!;
      this.queues[prio] = [];
      for (const v of q) {
        v.queued = false;
        this.enqueue(v);
      }
    }
  }
}
