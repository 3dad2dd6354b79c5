/**
 * A wasm32 vCPU: one instance of the domain's kernel module over the domain's
 * shared memory, and two execution contexts driven with Asyncify.
 *
 * - The main context runs `_start(start_info)` (vCPU 0: the guest address of
 *   start_info, as x86 PV kernels get it in %rsi) or `_start_vcpu(id)`.
 * - The upcall context runs `hypervisor_callback(id)`, Xen's event upcall.
 *
 * A context is suspended by unwinding its wasm stack into its save area
 * (config.ts) from inside the hypercall or preemption import, and resumed by
 * rewinding it: the import is then called again and returns the value saved
 * for it. Only the hypervisor starts unwinds, and it does so only from its two
 * imports, so no host frame is ever inside a saved stack.
 *
 * Upcalls are delivered at the top level, never nested inside a hypercall: on
 * return from a hypercall with an event pending and upcalls unmasked, the main
 * context is unwound, the callback runs (with evtchn_upcall_mask set, cleared
 * when it returns), and the main context is then rewound. Upcalls are also
 * delivered whenever a descheduled vCPU is resumed.
 */
import type { Domain } from "../../common/domain.js";
import {
  EXPORT_ENTRY,
  EXPORT_SECONDARY_ENTRY,
  COUNTDOWN_EXPORT,
  GLOBAL_COUNT_EXPORT,
  GLOBAL_EXPORT_PREFIX,
  IMPORT_GROW,
  IMPORT_HYPERCALL,
  IMPORT_MEMORY,
  IMPORT_MEMORY_MODULE,
  IMPORT_MODULE,
  IMPORT_PREEMPT,
  PREEMPT_CHECK_INTERVAL,
  SAVE_MAIN_BYTES,
  SAVE_UPCALL_BYTES,
  saveAreaMain,
  saveAreaUpcall,
} from "./config.js";
import { vcpu_info } from "../../include/public/arch-wasm32.js";
import { Timer } from "../../common/timer.js";

/** vcpu_info's size and flag offsets, as plain numbers for the hypercall path. */
const VCPU_INFO_SIZE = vcpu_info.size;
const UPCALL_PENDING = vcpu_info.fields.evtchn_upcall_pending.offset;
const UPCALL_MASK = vcpu_info.fields.evtchn_upcall_mask.offset;

/** What a vCPU holds beyond guest memory (Vcpu.snapshot). */
export interface VcpuSnapshot {
  mainSuspended: boolean;
  upcallSuspended: boolean;
  inUpcall: boolean;
  resumeValue: number;
  continuations: Array<{ op: number; args: number[] }>;
  /** The instance's mutable globals: [index, value]. */
  globals: Array<[number, number | bigint]>;
}

/** Why a context was unwound. */
export const enum Suspend {
  None = 0,
  Preempt,
  Yield,
  Block,
  Poll,
  Upcall,
  Down,
  Shutdown,
}

/** Scheduling state of a vCPU, after Xen's runstates. */
export const enum VcpuState {
  Offline = 0,
  Runnable,
  Running,
  Blocked,
}

interface KernelExports {
  _start?: (startInfo: number) => void;
  _start_vcpu?: (id: number) => void;
  hypervisor_callback?: (id: number) => void;
  asyncify_start_unwind: (addr: number) => void;
  asyncify_stop_unwind: () => void;
  asyncify_start_rewind: (addr: number) => void;
  asyncify_stop_rewind: () => void;
}

/** What the hypervisor provides each vCPU instance. */
export interface VcpuHost {
  hypercall(
    v: Vcpu,
    op: number,
    a1: number,
    a2: number,
    a3: number,
    a4: number,
    a5: number,
  ): number;
  /** True once the running slice is over. Must not allocate. */
  sliceExpired(): boolean;
  /** The guest's memory.grow (rewritten by confine.ts): old size in wasm pages, or -1. */
  growMemory(v: Vcpu, delta: number): number;
}

export class Vcpu {
  state: VcpuState = VcpuState.Offline;
  /** Set by a hypercall handler to ask for this vCPU to be descheduled. */
  suspend: Suspend = Suspend.None;
  /** Value the suspended hypercall returns when its context is resumed. */
  resumeValue = 0;
  mainSuspended = false;
  upcallSuspended = false;
  inUpcall = false;
  /**
   * Something may need doing when this vCPU's next hypercall returns: an
   * event became pending for it, or its domain was paused, shut down or
   * destroyed. The hypervisor sets it; the return path clears it once no
   * upcall is pending. A guest that sets its own upcall-pending flag is
   * noticed at its next slice instead (Xen would at its next hypercall).
   */
  attention = false;
  private rewinding = false;
  /** True while run() is on the stack. */
  private active = false;
  /**
   * A hypercall to run again when each context (0 main, 1 upcall) resumes:
   * Xen's hypercall continuation, which re-executes the hypercall instruction
   * with arguments that say how far it got. op -1: none.
   */
  private readonly continuations = [
    { op: -1, args: [0, 0, 0, 0, 0] },
    { op: -1, args: [0, 0, 0, 0, 0] },
  ];
  private exports: KernelExports | undefined;
  /** Ports a SCHEDOP_poll waits on, while polling. */
  pollPorts: number[] | undefined;
  /** Timers, made by the hypervisor: VCPUOP_set_singleshot_timer, periodic, SCHEDOP_poll timeout. */
  readonly singleshot: Timer;
  readonly periodic: Timer;
  readonly pollTimer: Timer;
  periodNs = 0;
  /** Scheduler bookkeeping (schedule.ts). */
  credit = 0;
  boost = false;
  queued = false;
  /** Nanoseconds this vCPU has run, for xl vcpu-list and runstate info. */
  cpuTimeNs = 0;
  /** Hard and soft affinity: bit n allows pCPU n (XEN_DOMCTL_setvcpuaffinity). */
  hardAffinity = 0xffffffff;
  softAffinity = 0xffffffff;
  /** Longest single slice this vCPU has run, µs: how well preemption holds. */
  longestSliceUs = 0;

  constructor(
    readonly domain: Domain,
    readonly id: number,
    timers: { singleshot(v: Vcpu): void; periodic(v: Vcpu): void; pollTimeout(v: Vcpu): void },
  ) {
    const who = `d${domain.domid}v${id}`;
    this.singleshot = new Timer(() => timers.singleshot(this), `${who} singleshot (VIRQ_TIMER)`);
    this.periodic = new Timer(() => timers.periodic(this), `${who} periodic (VIRQ_TIMER)`);
    this.pollTimer = new Timer(() => timers.pollTimeout(this), `${who} SCHEDOP_poll timeout`);
  }

  /** Guest address of this vCPU's vcpu_info in shared_info. */
  get vcpuInfoAddr(): number {
    return this.domain.sharedInfoAddr + this.id * VCPU_INFO_SIZE;
  }

  get upcallPending(): boolean {
    return this.domain.mem.u8[this.vcpuInfoAddr + UPCALL_PENDING] !== 0;
  }

  get upcallMasked(): boolean {
    return this.domain.mem.u8[this.vcpuInfoAddr + UPCALL_MASK] !== 0;
  }

  setUpcallMask(masked: boolean): void {
    this.domain.mem.u8[this.vcpuInfoAddr + UPCALL_MASK] = masked ? 1 : 0;
  }

  /** True when an upcall may be entered now; the usual answer (nothing pending) comes first. */
  upcallDeliverable(): boolean {
    const u8 = this.domain.mem.u8;
    const a = this.vcpuInfoAddr;
    return (
      u8[a + UPCALL_PENDING] !== 0 &&
      u8[a + UPCALL_MASK] === 0 &&
      !this.inUpcall &&
      this.domain.kernel?.hasCallback === true
    );
  }

  /** Instantiates this vCPU's kernel instance (once, when first brought up). */
  instantiate(host: VcpuHost): void {
    if (this.exports) return;
    const imports = {
      [IMPORT_MODULE]: {
        [IMPORT_HYPERCALL]: (
          op: number,
          a1: number,
          a2: number,
          a3: number,
          a4: number,
          a5: number,
        ) => {
          if (this.rewinding) {
            const rc = this.finishRewind();
            const c = this.continuations[this.inUpcall ? 1 : 0]!;
            if (c.op < 0) return rc;
            const [b1, b2, b3, b4, b5] = c.args as [number, number, number, number, number];
            const again = c.op;
            c.op = -1;
            return host.hypercall(this, again, b1, b2, b3, b4, b5);
          }
          return host.hypercall(this, op, a1, a2, a3, a4, a5);
        },
        [IMPORT_PREEMPT]: () => {
          if (this.rewinding) {
            this.finishRewind();
            return;
          }
          // Outside run() (a start function during instantiation) there is no
          // slice to end and nothing to unwind to.
          if (this.active && host.sliceExpired()) this.startUnwind(Suspend.Preempt, 0);
        },
        [IMPORT_GROW]: (delta: number) => host.growMemory(this, delta),
      },
      [IMPORT_MEMORY_MODULE]: { [IMPORT_MEMORY]: this.domain.wasmMemory },
    };
    const kernel = this.domain.kernel;
    if (!kernel) throw new Error(`d${this.domain.domid} has no kernel to run`);
    const instance = new WebAssembly.Instance(kernel.module, imports);
    this.exports = instance.exports as unknown as KernelExports;
    this.instanceExports = instance.exports;
    this.globalList = undefined;
  }

  /** The instance's exports, for its globals (snapshot / restoreSnapshot). */
  private instanceExports: WebAssembly.Exports | undefined;

  /** globals(), found once per instance. */
  private globalList: Array<[number, WebAssembly.Global]> | undefined;

  /** The instance's mutable globals by index (instrument.ts exports them); throws if one cannot be read. */
  globals(): Array<[number, WebAssembly.Global]> {
    if (this.globalList) return this.globalList;
    const ex = this.instanceExports;
    if (!ex) throw new Error(`d${this.domain.domid}v${this.id} has no instance`);
    const out: Array<[number, WebAssembly.Global]> = [];
    for (const [k, g] of Object.entries(ex)) {
      if (k.startsWith(GLOBAL_EXPORT_PREFIX))
        out.push([Number(k.slice(GLOBAL_EXPORT_PREFIX.length)), g as WebAssembly.Global]);
    }
    const all = (ex[GLOBAL_COUNT_EXPORT] as WebAssembly.Global | undefined)?.value as
      number | undefined;
    const countdown = ex[COUNTDOWN_EXPORT] ? 1 : 0;
    if (all === undefined || all !== out.length + countdown)
      throw new Error(
        "the kernel has a mutable global the hypervisor cannot read (a v128), so its vCPUs cannot be saved",
      );
    this.globalList = out.sort((a, b) => a[0] - b[0]);
    return this.globalList;
  }

  /**
   * This vCPU's state as the hypervisor holds it, taken while it is not
   * running (its contexts unwound into their save areas in guest memory):
   * which contexts are unwound, what the suspended hypercall returns, the
   * hypercalls to make again, and the instance's mutable globals.
   */
  snapshot(): VcpuSnapshot {
    if (this.active) throw new Error(`d${this.domain.domid}v${this.id} is running`);
    return {
      mainSuspended: this.mainSuspended,
      upcallSuspended: this.upcallSuspended,
      inUpcall: this.inUpcall,
      resumeValue: this.resumeValue,
      continuations: this.continuations.map((c) => ({ op: c.op, args: [...c.args] })),
      globals: this.instanceExports
        ? this.globals().map(([i, g]) => [i, g.value as number | bigint])
        : [],
    };
  }

  /** Puts back a snapshot into this vCPU's new instance (instantiate first). */
  restoreSnapshot(s: VcpuSnapshot): void {
    // Both lists are sorted by index (snapshot() writes them so; a context
    // from elsewhere that is not fails the comparison).
    const mine = this.globals();
    if (s.globals.length !== mine.length || s.globals.some(([i], k) => i !== mine[k]![0]))
      throw new Error("the saved vCPU's globals are not this kernel's");
    s.globals.forEach(([, v], k) => (mine[k]![1].value = v));
    const countdown = this.instanceExports![COUNTDOWN_EXPORT] as WebAssembly.Global | undefined;
    if (countdown) countdown.value = PREEMPT_CHECK_INTERVAL;
    this.mainSuspended = s.mainSuspended;
    this.upcallSuspended = s.upcallSuspended;
    this.inUpcall = s.inUpcall;
    this.resumeValue = s.resumeValue;
    s.continuations.forEach((c, i) => {
      this.continuations[i]!.op = c.op;
      c.args.forEach((a, j) => (this.continuations[i]!.args[j] = a));
    });
  }

  /** True while this vCPU runs guest code (inside run()). */
  get running(): boolean {
    return this.active;
  }

  /**
   * Makes the running context's current hypercall run again, as `op` with
   * `args`, when the context resumes (see `continuations`).
   */
  setContinuation(op: number, args: readonly number[]): void {
    const c = this.continuations[this.inUpcall ? 1 : 0]!;
    c.op = op;
    for (let i = 0; i < 5; i++) c.args[i] = args[i] ?? 0;
  }

  /** A context's pending continuation (0 main, 1 upcall), left in place; undefined when none. */
  continuationOf(context: 0 | 1): { op: number; args: readonly number[] } | undefined {
    const c = this.continuations[context]!;
    return c.op < 0 ? undefined : { op: c.op, args: c.args };
  }

  /** The running context's pending continuation, taken (multicall folds it into its entry). */
  takeContinuation(): { op: number; args: number[] } | undefined {
    const c = this.continuations[this.inUpcall ? 1 : 0]!;
    if (c.op < 0) return undefined;
    const out = { op: c.op, args: [...c.args] };
    c.op = -1;
    return out;
  }

  private finishRewind(): number {
    this.rewinding = false;
    this.exports!.asyncify_stop_rewind();
    return this.resumeValue;
  }

  /**
   * Unwinds the running context from inside an import; the import then returns
   * `value`, which Asyncify ignores while unwinding.
   */
  startUnwind(reason: Suspend, resume: number): void {
    this.suspend = reason;
    this.resumeValue = resume;
    const addr = this.inUpcall ? saveAreaUpcall(this.id) : saveAreaMain(this.id);
    const size = this.inUpcall ? SAVE_UPCALL_BYTES : SAVE_MAIN_BYTES;
    // Asyncify's data header: [current, end] as two i32s, then the stack.
    const dv = this.domain.mem.dv;
    dv.setUint32(addr, addr + 8, true);
    dv.setUint32(addr + 4, addr + size, true);
    this.exports!.asyncify_start_unwind(addr);
  }

  /**
   * Runs this vCPU until it suspends. Returns the reason; throws what the guest
   * threw (a wasm trap, or a stack overflow) for the caller to crash the domain.
   */
  run(host: VcpuHost): Suspend {
    this.active = true;
    try {
      return this.runContexts(host);
    } finally {
      this.active = false;
    }
  }

  private runContexts(host: VcpuHost): Suspend {
    const ex = this.exports!;
    for (;;) {
      this.suspend = Suspend.None;
      if (this.upcallSuspended || (!this.inUpcall && this.upcallDeliverable())) {
        const resuming = this.upcallSuspended;
        if (!resuming) {
          this.inUpcall = true;
          this.setUpcallMask(true);
        }
        this.enter(resuming, saveAreaUpcall(this.id), () => ex.hypervisor_callback!(this.id));
        if (this.suspend !== Suspend.None) {
          this.upcallSuspended = true;
          return this.suspend === Suspend.Upcall ? Suspend.Yield : this.suspend;
        }
        this.upcallSuspended = false;
        this.inUpcall = false;
        this.setUpcallMask(false);
        if (host.sliceExpired()) return Suspend.Preempt;
        continue;
      }
      const entry =
        this.id === 0
          ? () => ex[EXPORT_ENTRY]!(this.domain.startInfoAddr())
          : () =>
              (ex as unknown as Record<string, (id: number) => void>)[EXPORT_SECONDARY_ENTRY]!(
                this.id,
              );
      this.enter(this.mainSuspended, saveAreaMain(this.id), entry);
      if (this.suspend === Suspend.None) {
        throw new GuestExit(`vCPU ${this.id} returned from its entry point`);
      }
      this.mainSuspended = true;
      if (this.suspend === Suspend.Upcall) continue;
      return this.suspend;
    }
  }

  private enter(resume: boolean, saveArea: number, fn: () => void): void {
    const ex = this.exports!;
    this.domain.guestEntries++;
    if (resume) {
      this.rewinding = true;
      ex.asyncify_start_rewind(saveArea);
    }
    try {
      fn();
    } finally {
      this.rewinding = false;
    }
    if (this.suspend !== Suspend.None) ex.asyncify_stop_unwind();
  }

  /** Drops an instance made ahead of time (the domain's module changed before it ran). */
  dropInstance(): void {
    if (this.state !== VcpuState.Offline) throw new Error(`d${this.domain.domid}v${this.id} is up`);
    this.exports = undefined;
    this.instanceExports = undefined;
    this.globalList = undefined;
  }

  /** Drops the instance and timers; the vCPU can never run again. */
  dispose(stopTimer: (t: Timer) => void): void {
    stopTimer(this.singleshot);
    stopTimer(this.periodic);
    stopTimer(this.pollTimer);
    this.exports = undefined;
    this.state = VcpuState.Offline;
  }

  /** Whether the kernel can start this vCPU: vCPU 0 always, others need _start_vcpu. */
  get startable(): boolean {
    return this.id === 0 || this.domain.kernel?.hasSecondaryEntry === true;
  }
}

/** A guest left its entry point: treated as a crash, with this message. */
export class GuestExit extends Error {}
