/**
 * The hypervisor's side of an HVM vCPU: the thread that runs it
 * (hvm_vcpu_worker.ts), its control words, pause and unpause, the ioreq
 * routes it follows, and how it ended. docs/arch-wasm32.md ("HVM guests")
 * says why an HVM vCPU is a thread while a PV vCPU is a slice of the main
 * thread.
 */
import { MessageChannel, Worker } from "node:worker_threads";
import type { HvmImage } from "./hvm_image.js";
import type { HvmVcpuData, HvmVcpuExit, HvmVcpuMessage, HvmVcpuSaved } from "./hvm_vcpu_worker.js";
import {
  CTL_BYTES,
  CTL_EXIT_CODE,
  CTL_EXITED,
  CTL_HC_ARGS,
  CTL_HC_OP,
  CTL_HC_RC,
  CTL_HC_STATE,
  HC_DONE,
  HC_REQUEST,
  CTL_IOREQS,
  CTL_MSG,
  CTL_PAUSE,
  CTL_PORT,
  CTL_RESUMED_AT,
  CTL_RUN_MS,
  CTL_STATE,
  HVM_DONE,
  HVM_RUNNING,
  HVM_STARTING,
  CTL_SAVE,
  SAVE_NONE,
  SAVE_REWIND,
  SAVE_UNWIND,
} from "./hvm_ctl.js";
import type { IoRange } from "../../common/ioreq.js";
import type { TraceCpu } from "../../common/trace.js";

export interface HvmVcpuEvents {
  /** The program ended: exit (it called proc_exit or returned) or a crash with its cause. */
  ended(how: HvmVcpuExit): void;
  /**
   * The program made hypercall `op` (a program with PV drivers). Runs on the
   * main thread; the answer goes back with `answerHypercall`, now or later.
   */
  hypercall?(op: number, a1: number, a2: number, a3: number, a4: number, a5: number): void;
}

/** Atomics.waitAsync (ES2024, in Node since 16), typed here: the project's lib is ES2022. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      i: number,
      v: number,
      timeout?: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;

/** Worker heap for the vCPU's own JavaScript (the guest's memory is not on it). */
const VCPU_HEAP_MB = 64;

export class HvmVcpu {
  private readonly ctl = new SharedArrayBuffer(CTL_BYTES);
  private readonly i32 = new Int32Array(this.ctl, 0, CTL_BYTES / 4);
  private readonly f64 = new Float64Array(this.ctl);
  private readonly channel = new MessageChannel();
  private worker: Worker | undefined;
  private over = false;
  /** A hypercall was taken and not yet answered. */
  private inHypercall = false;

  constructor(
    readonly image: HvmImage,
    readonly memory: WebAssembly.Memory,
    private readonly events: HvmVcpuEvents,
    private readonly timing: { systemTimeBase: bigint; wallclockOffsetNs: bigint; vpEport: number },
  ) {
    this.i32[CTL_PORT] = -1;
  }

  /**
   * Starts the thread (paused if the pause count is above zero); with
   * `restore`, the program is rewound into a saved vCPU instead of
   * starting at _start.
   */
  start(pauseCount: number, restore?: HvmVcpuSaved): void {
    this.i32[CTL_PAUSE] = pauseCount;
    const data: HvmVcpuData = {
      module: this.image.module,
      memory: this.memory,
      ctl: this.ctl,
      port: this.channel.port2,
      systemTimeBase: this.timing.systemTimeBase,
      wallclockOffsetNs: this.timing.wallclockOffsetNs,
      vpEport: this.timing.vpEport,
      restore,
    };
    const w = new Worker(new URL("./hvm_vcpu_worker.js", import.meta.url), {
      workerData: data,
      transferList: [this.channel.port2],
      resourceLimits: { maxOldGenerationSizeMb: VCPU_HEAP_MB },
      stdout: false,
      stderr: false,
    });
    this.worker = w;
    w.on("message", (m: HvmVcpuMessage) => {
      if (m.kind !== "unwound") return this.end(m);
      const p = this.unwinding;
      this.unwinding = undefined;
      // A save that gave up meanwhile: the program goes on.
      if (p) p.resolve(m.saved);
      else this.rewind();
    });
    w.on("error", (e) => this.end({ kind: "crash", why: `the vCPU thread failed: ${e.message}` }));
    w.on("exit", () => this.end({ kind: "crash", why: "the vCPU thread stopped" }));
    // An idle host with HVM guests may still exit: the guests hold no event loop open.
    w.unref();
    if (this.events.hypercall) this.watchHypercalls();
  }

  /**
   * Takes the thread's next hypercall when it comes: Atomics.waitAsync on
   * the slot's state, so the main thread never blocks and a program that
   * makes none costs nothing.
   */
  private watchHypercalls(): void {
    if (this.over || this.inHypercall) return;
    const s = Atomics.load(this.i32, CTL_HC_STATE);
    if (s === HC_REQUEST) {
      this.inHypercall = true;
      const a = CTL_HC_ARGS;
      const i = this.i32;
      this.events.hypercall!(i[CTL_HC_OP]!, i[a]!, i[a + 1]!, i[a + 2]!, i[a + 3]!, i[a + 4]!);
      return;
    }
    const w = waitAsync(this.i32, CTL_HC_STATE, s);
    if (w.async) void w.value.then(() => this.watchHypercalls());
    else this.watchHypercalls();
  }

  /** Returns `rc` to the program's hypercall in flight. */
  answerHypercall(rc: number): void {
    if (!this.inHypercall) return;
    this.inHypercall = false;
    this.i32[CTL_HC_RC] = rc;
    Atomics.store(this.i32, CTL_HC_STATE, HC_DONE);
    Atomics.notify(this.i32, CTL_HC_STATE);
    this.watchHypercalls();
  }

  private unwinding:
    { resolve(s: HvmVcpuSaved): void; reject(e: Error): void; timer: NodeJS.Timeout } | undefined;

  /**
   * Resolves once the thread has instantiated the program (and, for a
   * restore, set its globals) and waits for its first unpause, or has
   * ended: a restore writes the saved memory only then, over what the
   * program's data segments wrote.
   */
  async instantiated(): Promise<void> {
    for (;;) {
      const st = Atomics.load(this.i32, CTL_STATE);
      if (st !== HVM_STARTING || this.over) return;
      // The thread does not wake this word when it moves on: look every few ms.
      const w = waitAsync(this.i32, CTL_STATE, st, 5);
      if (w.async) await w.value;
    }
  }

  /**
   * Asks a saveable program's thread to unwind its stack at its next safe
   * point (a WASI call's entry, a loop check; a call it waits in is
   * withdrawn by the device model first) and resolves with it. Rejects
   * after `timeoutMs` if the program reached none, and then it goes on.
   */
  unwind(timeoutMs: number): Promise<HvmVcpuSaved> {
    if (this.over) return Promise.reject(new Error("the vCPU has stopped"));
    if (this.unwinding) return Promise.reject(new Error("a save of the vCPU is under way"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.unwinding = undefined;
        // Withdrawn; an unwind that began meanwhile is rewound when it arrives.
        Atomics.compareExchange(this.i32, CTL_SAVE, SAVE_UNWIND, SAVE_NONE);
        reject(new Error(`its vCPU reached no point where it can be saved in ${timeoutMs} ms`));
      }, timeoutMs);
      this.unwinding = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        timer,
      };
      Atomics.store(this.i32, CTL_SAVE, SAVE_UNWIND);
      // A thread waiting for an unpause looks again.
      Atomics.notify(this.i32, CTL_PAUSE);
    });
  }

  /** After unwind: the program goes on in this domain (xl save -c), rewound where it stopped. */
  rewind(): void {
    Atomics.store(this.i32, CTL_SAVE, SAVE_REWIND);
    Atomics.notify(this.i32, CTL_SAVE);
  }

  private end(how: HvmVcpuExit): void {
    if (this.over) return;
    this.unwinding?.reject(
      new Error(`the program ended (${how.kind === "exit" ? "exit" : how.why})`),
    );
    this.unwinding = undefined;
    this.over = true;
    this.i32[CTL_STATE] = HVM_DONE;
    Atomics.notify(this.i32, CTL_HC_STATE);
    this.events.ended(how);
  }

  /** Sets the pause count the thread honours at its next safe point. */
  setPause(count: number): void {
    Atomics.store(this.i32, CTL_PAUSE, count);
    Atomics.notify(this.i32, CTL_PAUSE);
  }

  /** Points the vCPU at the enabled ioreq servers' pages. */
  setRoutes(routes: Array<{ id: number; page: SharedArrayBuffer; ranges: IoRange[] }>): void {
    this.channel.port1.postMessage({ routes });
    Atomics.add(this.i32, CTL_MSG, 1);
  }

  /** The trace CPU lent to this vCPU's thread, and how to give it back. */
  traceCpu: number | undefined;
  private returnTraceCpu: (() => void) | undefined;

  /**
   * Lends the thread trace CPU `t`, where it records its ioreqs while
   * tracing is on; `returned` runs once the thread has ended.
   */
  setTrace(t: TraceCpu, domid: number, returned: () => void): void {
    this.traceCpu = t.cpu;
    this.returnTraceCpu = returned;
    this.channel.port1.postMessage({ trace: { ...t, domid } });
    Atomics.add(this.i32, CTL_MSG, 1);
    // A thread that has stopped records nothing more.
    if (this.stopping) void this.stopped.then(() => this.giveTraceCpuBack());
  }

  private stopping = false;

  private giveTraceCpuBack(): void {
    const r = this.returnTraceCpu;
    this.returnTraceCpu = undefined;
    this.traceCpu = undefined;
    r?.();
  }

  /** Resolves once the thread has stopped (after stop()). */
  stopped: Promise<void> = Promise.resolve();

  /**
   * Stops the thread for good (destroy, shutdown). The device model waits
   * for `stopped` before it closes the files the vCPU may still be using
   * (its fast descriptors).
   */
  stop(): Promise<void> {
    if (this.stopping) return this.stopped;
    this.stopping = true;
    this.unwinding?.reject(new Error("the vCPU was stopped"));
    this.unwinding = undefined;
    this.over = true;
    this.i32[CTL_STATE] = HVM_DONE;
    // Lets a pending waitAsync settle, so nothing of this vCPU stays behind.
    Atomics.notify(this.i32, CTL_HC_STATE);
    const w = this.worker;
    this.worker = undefined;
    this.channel.port1.close();
    if (w) this.stopped = w.terminate().then(() => this.giveTraceCpuBack());
    else this.giveTraceCpuBack();
    return this.stopped;
  }

  get state(): number {
    return Atomics.load(this.i32, CTL_STATE);
  }
  /** The WASI port of the ioreq in flight, or -1. */
  get portInFlight(): number {
    return Atomics.load(this.i32, CTL_PORT);
  }
  /** The status the program gave proc_exit, once it called it. */
  get exitCode(): number | undefined {
    return Atomics.load(this.i32, CTL_EXITED) ? Atomics.load(this.i32, CTL_EXIT_CODE) : undefined;
  }
  get ioreqs(): number {
    return Atomics.load(this.i32, CTL_IOREQS);
  }
  /** Nanoseconds spent running guest code, up to now. */
  get cpuTimeNs(): number {
    let ms = this.f64[CTL_RUN_MS]!;
    if (this.state === HVM_RUNNING)
      ms += performance.timeOrigin + performance.now() - this.f64[CTL_RESUMED_AT]!;
    return ms * 1e6;
  }
}
