/**
 * An HVM vCPU: a host thread that runs an unmodified WASI program's code at
 * full speed (no instrumentation, no Asyncify) and leaves it only for I/O,
 * as a hardware vCPU leaves guest mode only on a trapped instruction.
 *
 * Each WASI import is a trapped instruction. The four that never leave a
 * CPU (clocks, random, yield) are answered here. Every other one becomes an
 * ioreq in the page of the ioreq server that claimed its port
 * (public/hvm/wasm32_io.ts): the arguments go in the page's slots, the state
 * goes to READY, the doorbell rings, and this thread waits for IORESP_READY,
 * spinning briefly first (a device model that is awake answers within a
 * microsecond or two), then sleeping on the state word. Nothing here can
 * block another domain or the host's main thread: waiting is this thread's
 * own, and the hypervisor ends it with `Worker.terminate`.
 *
 * A program with PV drivers also imports `xen.hypercall`: the call goes to
 * the hypervisor's main thread through the control words' hypercall slot,
 * and this thread sleeps until the answer, which may be long in coming
 * (SCHEDOP_block waits for an event), as a vCPU in a hypercall waits on Xen.
 *
 * The hypervisor talks to this thread through the control words
 * (hvm_ctl.ts): a pause count, honoured before each ioreq, after each answer
 * and at the program's loop checks; and messages (new ioreq routes), drained
 * synchronously when CTL_MSG moves, since this thread never returns to its
 * event loop while the program runs.
 */
import { randomFillSync } from "node:crypto";
import { fstatSync, readSync, writeSync } from "node:fs";
import {
  receiveMessageOnPort,
  workerData,
  parentPort,
  type MessagePort,
} from "node:worker_threads";
import {
  WASI_CPU_LOCAL,
  WASI_FUNCTIONS,
  WASI_MODULE,
  WASI_PORT_BASE,
  WASM32_IOREQ_ARGS,
  WASM32_IOREQ_DOORBELL,
  WASI_NR_PORTS,
  FASTFD_APPEND,
  FASTFD_WRITE,
  WASM32_FASTFD_ENTRIES,
  WASM32_FASTFD_ENTRY,
  WASM32_IOREQ_FASTFD,
  WASM32_IOREQ_RETRY,
} from "../../include/public/hvm/wasm32_io.js";
import {
  IOREQ_TYPE_PIO,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
} from "../../include/public/hvm/ioreq.js";
import * as W from "../../include/public/hvm/wasi.js";
import { CHECK_BUDGET, CHECK_BUDGET_EXPORT, CHECK_TABLE_EXPORT } from "./hvm_checks.js";
import {
  CTL_BYTES,
  CTL_EXIT_CODE,
  CTL_EXITED,
  CTL_HC_ARGS,
  CTL_HC_OP,
  CTL_HC_RC,
  CTL_HC_STATE,
  HC_DONE,
  HC_IDLE,
  HC_REQUEST,
  HVM_HYPERCALL,
  CTL_IOREQS,
  CTL_MSG,
  CTL_PAUSE,
  CTL_PORT,
  CTL_RESUMED_AT,
  CTL_RUN_MS,
  CTL_STATE,
  HVM_DONE,
  HVM_IOREQ_WAIT,
  HVM_PAUSED,
  HVM_RUNNING,
  CTL_SAVE,
  SAVE_NONE,
  SAVE_REWIND,
  SAVE_UNWIND,
  HVM_UNWOUND,
  HVM_GLOBAL_COUNT,
  HVM_GLOBAL_PREFIX,
  HVM_STACK_AREA,
} from "./hvm_ctl.js";
import { TraceRing, type TraceCpu } from "../../common/trace.js";
import {
  TRC_HVM_IOPORT_WRITE,
  TRC_HVM_VMENTRY,
  TRC_HVM_VMEXIT,
  TRC_SCHED_RUNSTATE_CHANGE,
  TRC_SCHED_SWITCH,
} from "../../include/public/trace.js";
import { DOMID_IDLE } from "../../include/public/xen.js";

export interface HvmVcpuData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctl: SharedArrayBuffer;
  port: MessagePort;
  /** process.hrtime.bigint() when the hypervisor's system time was 0. */
  systemTimeBase: bigint;
  /** Nanoseconds to add to the host's realtime clock (the domain's RTC offset). */
  wallclockOffsetNs: bigint;
  vpEport: number;
  /** A saved vCPU to rewind into (a restore), instead of starting at _start. */
  restore?: HvmVcpuSaved;
}

/** What the thread tells the hypervisor when it stops. */
export type HvmVcpuExit = { kind: "exit" } | { kind: "crash"; why: string };

/**
 * A saveable program's vCPU, unwound (docs/save-format.md, WASM32_HVM_CONTEXT):
 * its mutable globals by index, and its stack as Asyncify left it.
 */
export interface HvmVcpuSaved {
  globals: Array<[number, number | bigint]>;
  stack: Uint8Array;
}

/** What the thread posts: its end, or its unwound state for a save. */
export type HvmVcpuMessage = HvmVcpuExit | { kind: "unwound"; saved: HvmVcpuSaved };

interface Route {
  id: number;
  page: SharedArrayBuffer;
  ranges: Array<{ type: number; start: number; end: number }>;
}

const data = workerData as HvmVcpuData;
const ctl = new Int32Array(data.ctl, 0, CTL_BYTES / 4);
const ctlF = new Float64Array(data.ctl);
const memory = data.memory;

/**
 * How long to spin on an ioreq's answer before sleeping on it, ms. A futex
 * wake-up cost 30 µs or more on the machines measured, and a device model
 * that is awake answers in a few µs; a call that takes longer (a disk read,
 * a sleep) is slept through.
 */
const SPIN_MS = 0.2;

/** Per port: the Int32, Uint32 and Float64 views of the page of the server that claims it. */
let portI32: (Int32Array | undefined)[] = new Array(WASI_NR_PORTS);
let portU32: (Uint32Array | undefined)[] = new Array(WASI_NR_PORTS);
let portF64: (Float64Array | undefined)[] = new Array(WASI_NR_PORTS);
let seenMsg = 0;

function applyRoutes(routes: Route[]): void {
  const i32: (Int32Array | undefined)[] = new Array(WASI_NR_PORTS);
  const u32: (Uint32Array | undefined)[] = new Array(WASI_NR_PORTS);
  const f64: (Float64Array | undefined)[] = new Array(WASI_NR_PORTS);
  for (const r of routes) {
    const ip = new Int32Array(r.page);
    const up = new Uint32Array(r.page);
    const fp = new Float64Array(r.page);
    up[6] = data.vpEport; // vcpu 0's ioreq_t.vp_eport
    for (const range of r.ranges) {
      if (range.type !== 0) continue;
      for (let p = 0; p < WASI_NR_PORTS; p++) {
        const addr = WASI_PORT_BASE + p;
        if (addr >= range.start && addr <= range.end && !i32[p]) {
          i32[p] = ip;
          u32[p] = up;
          f64[p] = fp;
        }
      }
    }
  }
  portI32 = i32;
  portU32 = u32;
  portF64 = f64;
}

function drainMessages(): void {
  seenMsg = Atomics.load(ctl, CTL_MSG);
  for (;;) {
    const m = receiveMessageOnPort(data.port);
    if (!m) break;
    const msg = m.message as { routes?: Route[]; trace?: TraceCpu & { domid: number } };
    if (msg.routes) applyRoutes(msg.routes);
    if (msg.trace) startTrace(msg.trace);
  }
}

let resumedAt = performance.now();

/** Leaves guest mode: the time since the last entry counts as running. */
function exitGuest(): void {
  ctlF[CTL_RUN_MS] = ctlF[CTL_RUN_MS]! + (performance.now() - resumedAt);
}
function enterGuest(): void {
  resumedAt = performance.now();
  ctlF[CTL_RESUMED_AT] = performance.timeOrigin + resumedAt;
}

/** Waits while the hypervisor holds the vCPU paused. */
function honourPause(): void {
  if (Atomics.load(ctl, CTL_MSG) !== seenMsg) drainMessages();
  // The wait is a function of its own: this is on every call's path, and stays small.
  if (Atomics.load(ctl, CTL_PAUSE) !== 0) waitWhilePaused();
}

function waitWhilePaused(): void {
  let p = Atomics.load(ctl, CTL_PAUSE);
  if (p === 0) return;
  Atomics.store(ctl, CTL_STATE, HVM_PAUSED);
  // A save's request ends the wait too: the program goes on to its next
  // safe point and unwinds there (the request is stored before the
  // hypervisor wakes this word; the timeout covers a wake that came
  // between the check and the wait).
  while (p !== 0 && !saveRequested()) {
    Atomics.wait(ctl, CTL_PAUSE, p, saving ? 50 : undefined);
    p = Atomics.load(ctl, CTL_PAUSE);
  }
  if (Atomics.load(ctl, CTL_MSG) !== seenMsg) drainMessages();
  Atomics.store(ctl, CTL_STATE, HVM_RUNNING);
}

/**
 * The trace CPU lent to this thread (trace.ts), where it records each ioreq
 * as a pCPU records a VM exit for I/O (docs/tracing.md): TRC_HVM_VMEXIT
 * when the call leaves guest mode, TRC_HVM_IOPORT_WRITE with the port and
 * the device model's answer once it came, TRC_HVM_VMENTRY on the way back.
 */
let tr: TraceRing | undefined;
let trDomid = 0;
let trGen = 0;
/** System time on this thread (the hypervisor's NOW()). */
const systemNs = (): number => Number(process.hrtime.bigint() - data.systemTimeBase);

function startTrace(t: TraceCpu & { domid: number }): void {
  trDomid = t.domid;
  trGen = 0;
  tr = new TraceRing(t, systemNs, () => ({ domid: trDomid, vcpu: 0 }));
}

/**
 * The exit reason of an ioreq's VMEXIT record: VMX's I/O instruction (30),
 * so that xenalyze files the exits where a port access's go. wasm32 has no
 * instruction pointer to give: the record's eip is 0.
 */
const EXIT_REASON_IO_INSTRUCTION = 30;

/** Before an ioreq leaves guest mode. */
function traceExit(t: TraceRing): void {
  if (trGen !== t.generation) {
    // Since tracing (re)started, this CPU has not said which vCPU it runs.
    trGen = t.generation;
    t.record(TRC_SCHED_SWITCH, [DOMID_IDLE, 0, trDomid, 0]);
    t.record(TRC_SCHED_RUNSTATE_CHANGE | (1 << 8) | (0 << 4), [(trDomid << 16) >>> 0]);
  }
  t.record(TRC_HVM_VMEXIT, [EXIT_REASON_IO_INSTRUCTION, 0]);
}

const ARGS = WASM32_IOREQ_ARGS >> 2;
const EXIT_PORT = WASI_FUNCTIONS.get("proc_exit")!.port;
const DOORBELL = WASM32_IOREQ_DOORBELL >> 2;
/** Int32 index of ioreq_t's last word (_pad0, flags, type) for vCPU 0. */
const STATEWORD = 7;

/**
 * Sends the ioreq for `port` (its arguments already in the page) and returns
 * the device model's answer.
 */
function ioreq(port: number, count: number, i32: Int32Array, u32: Uint32Array): number {
  u32[0] = WASI_PORT_BASE + port;
  u32[1] = 0;
  u32[2] = 0;
  u32[3] = 0;
  u32[4] = count;
  u32[5] = 8;
  const t = tr !== undefined && tr.on ? tr : undefined;
  if (t) traceExit(t);
  Atomics.store(ctl, CTL_PORT, port);
  Atomics.store(ctl, CTL_STATE, HVM_IOREQ_WAIT);
  ctl[CTL_IOREQS]!++;
  Atomics.store(i32, STATEWORD, (STATE_IOREQ_READY << 16) | (IOREQ_TYPE_PIO << 24));
  Atomics.add(i32, DOORBELL, 1);
  Atomics.notify(i32, DOORBELL, 1);
  let spins = 0;
  let until = 0;
  let w = Atomics.load(i32, STATEWORD);
  while (((w >> 16) & 0xf) !== STATE_IORESP_READY) {
    // The clock is read every 256 spins: reading it costs more than a spin.
    if ((++spins & 255) === 0) {
      const now = performance.now();
      if (until === 0) until = now + SPIN_MS;
      else if (now > until) Atomics.wait(i32, STATEWORD, w);
    }
    w = Atomics.load(i32, STATEWORD);
  }
  const rc = u32[2]!;
  Atomics.store(i32, STATEWORD, 0);
  Atomics.store(ctl, CTL_PORT, -1);
  Atomics.store(ctl, CTL_STATE, HVM_RUNNING);
  if (t) {
    // As Xen's record of an I/O assist: no time stamp of its own.
    t.record(TRC_HVM_IOPORT_WRITE, [WASI_PORT_BASE + port, rc], false);
    t.record(TRC_HVM_VMENTRY);
  }
  return rc;
}

class ProcExit extends Error {}

let u8 = new Uint8Array(memory.buffer);
let dv = new DataView(memory.buffer);

/** Whether [ptr, ptr+len) is inside the program's memory now. */
function inMemory(ptr: number, len: number): boolean {
  if (ptr + len > u8.length) {
    u8 = new Uint8Array(memory.buffer);
    dv = new DataView(memory.buffer);
  }
  return ptr >= 0 && len >= 0 && ptr + len <= u8.length;
}

const hrNow = (): bigint => process.hrtime.bigint();
const realOffset = BigInt(Date.now()) * 1_000_000n - hrNow() + data.wallclockOffsetNs;

function clockNs(id: number): bigint | undefined {
  switch (id) {
    case W.WASI_CLOCK_REALTIME:
      return hrNow() + realOffset;
    case W.WASI_CLOCK_MONOTONIC:
      return hrNow() - data.systemTimeBase;
    case W.WASI_CLOCK_PROCESS_CPUTIME_ID:
    case W.WASI_CLOCK_THREAD_CPUTIME_ID:
      return BigInt(Math.round((ctlF[CTL_RUN_MS]! + (performance.now() - resumedAt)) * 1e6));
    default:
      return undefined;
  }
}

/** The four calls a CPU answers itself. */
const local: Record<string, (...a: never[]) => number> = {
  clock_time_get(id: number, _precision: bigint, ptr: number): number {
    const t = clockNs(id);
    if (t === undefined) return W.WASI_EINVAL;
    if (!inMemory(ptr >>> 0, 8)) return W.WASI_EFAULT;
    dv.setBigUint64(ptr >>> 0, t, true);
    return 0;
  },
  clock_res_get(id: number, ptr: number): number {
    if (clockNs(id) === undefined) return W.WASI_EINVAL;
    if (!inMemory(ptr >>> 0, 8)) return W.WASI_EFAULT;
    dv.setBigUint64(ptr >>> 0, 1000n, true);
    return 0;
  },
  random_get(buf: number, len: number): number {
    buf >>>= 0;
    len >>>= 0;
    if (!inMemory(buf, len)) return W.WASI_EFAULT;
    for (let off = 0; off < len; off += 65536) {
      randomFillSync(u8, buf + off, Math.min(65536, len - off));
    }
    return 0;
  },
  sched_yield(): number {
    honourPause();
    return 0;
  },
};

/** Host error codes a fast descriptor's I/O can meet, as WASI errnos (EIO otherwise). */
const FAST_ERRNO: Record<string, number> = {
  EBADF: W.WASI_EBADF,
  EFBIG: W.WASI_EFBIG,
  EINTR: W.WASI_EINTR,
  EINVAL: W.WASI_EINVAL,
  EISDIR: W.WASI_EISDIR,
  ENOSPC: W.WASI_ENOSPC,
  EDQUOT: W.WASI_ENOSPC,
  EAGAIN: W.WASI_EAGAIN,
  ERR_OUT_OF_RANGE: W.WASI_EINVAL,
};
/** Most iovecs and bytes one call moves, as the device model's own limits. */
const FAST_MAX_IOVS = 1024;
const FAST_MAX_BYTES = 16 * 1024 * 1024;

/**
 * fd_read / fd_write / fd_pread / fd_pwrite on a descriptor the device model
 * published as fast (public/hvm/wasm32_io.ts): done here with its host
 * descriptor, as vhost does a device's data path. Every pointer and length
 * is checked as the device model checks them. Undefined when `fd` is not fast.
 */
function fastIo(
  page: Int32Array,
  f64: Float64Array,
  write: boolean,
  fd: number,
  iovs: number,
  n: number,
  offset: bigint | undefined,
  out: number,
): number | undefined {
  if (fd >>> 0 >= WASM32_FASTFD_ENTRIES) return undefined;
  const at = (WASM32_IOREQ_FASTFD + fd * WASM32_FASTFD_ENTRY) >> 2;
  const host = Atomics.load(page, at) - 1;
  if (host < 0) return undefined;
  const flags = page[at + 1]!;
  if (write && !(flags & FASTFD_WRITE)) return W.WASI_EBADF;
  iovs >>>= 0;
  n >>>= 0;
  out >>>= 0;
  if (n > FAST_MAX_IOVS) return W.WASI_EINVAL;
  if (!inMemory(iovs, n * 8) || !inMemory(out, 4)) return W.WASI_EFAULT;
  // Every buffer is checked before any byte moves.
  const bufs: Array<[number, number]> = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const p = dv.getUint32(iovs + i * 8, true);
    const len = Math.min(dv.getUint32(iovs + i * 8 + 4, true), FAST_MAX_BYTES - total);
    if (!inMemory(p, len)) return W.WASI_EFAULT;
    bufs.push([p, len]);
    total += len;
  }
  const posIndex = (WASM32_IOREQ_FASTFD + fd * WASM32_FASTFD_ENTRY + 8) >> 3;
  let pos = f64[posIndex]!;
  if (offset !== undefined) {
    if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return W.WASI_EFBIG;
    pos = Number(offset);
  }
  let moved = 0;
  try {
    // Appending writes at the file's end, wherever the position was.
    if (offset === undefined && write && flags & FASTFD_APPEND) pos = fstatSync(host).size;
    for (const [p, len] of bufs) {
      let off = 0;
      while (off < len) {
        const k = write
          ? writeSync(host, u8, p + off, len - off, pos)
          : readSync(host, u8, p + off, len - off, pos);
        if (k === 0) break;
        off += k;
        pos += k;
        moved += k;
      }
      if (off < len) break;
    }
  } catch (e) {
    if (moved === 0) return FAST_ERRNO[(e as NodeJS.ErrnoException).code ?? ""] ?? W.WASI_EIO;
  }
  if (offset === undefined) f64[posIndex] = pos;
  dv.setUint32(out, moved, true);
  return 0;
}

// --- saving: the program's stack as data (hvm_saveable.ts) ----------------------

/** Asyncify's exports, when the program was made saveable. */
interface AsyncifyExports {
  asyncify_start_unwind(at: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(at: number): void;
  asyncify_stop_rewind(): void;
  asyncify_get_state(): number;
}
let saving: AsyncifyExports | undefined;
/** Whether the program was made saveable: Asyncify's exports are there. */
const saveable = WebAssembly.Module.exports(data.module).some(
  (e) => e.name === "asyncify_start_unwind",
);
let programExports: WebAssembly.Exports | undefined;
/** Where the stack is unwound to or rewound from, and the program's own bytes there. */
let area: { at: number; bytes: Uint8Array } | undefined;
/** Asyncify's states (asyncify_get_state). */
const ASYNCIFY_UNWINDING = 1;

/** Whether export `name` is one of the program's mutable globals (hvm_saveable.ts). */
const isGlobalExport = (name: string): boolean =>
  name.startsWith(HVM_GLOBAL_PREFIX) && /^\d+$/.test(name.slice(HVM_GLOBAL_PREFIX.length));

function saveRequested(): boolean {
  return saving !== undefined && Atomics.load(ctl, CTL_SAVE) === SAVE_UNWIND;
}

/**
 * The area the stack goes through: the top HVM_STACK_AREA bytes of the
 * program's memory, whose own bytes are kept aside and put back once the
 * stack has left (unwound) or arrived (rewound). The memory the save
 * carries is then the program's, byte for byte.
 */
function takeArea(): number {
  inMemory(0, 0);
  const size = memory.buffer.byteLength;
  const len = Math.min(HVM_STACK_AREA, size);
  const at = size - len;
  u8 = new Uint8Array(memory.buffer);
  dv = new DataView(memory.buffer);
  area = { at, bytes: u8.slice(at, at + len) };
  return at;
}
function giveAreaBack(): void {
  if (!area) return;
  u8.set(area.bytes, area.at);
  area = undefined;
}

/** Starts unwinding the program from inside the import it called. */
function startUnwind(): void {
  const at = takeArea();
  dv.setUint32(at, at + 8, true);
  dv.setUint32(at + 4, at + area!.bytes.length, true);
  saving!.asyncify_start_unwind(at);
}

/** The unwound program's state, its memory as it was. */
function finishUnwind(): HvmVcpuSaved {
  saving!.asyncify_stop_unwind();
  const at = area!.at;
  const stack = u8.slice(at + 8, dv.getUint32(at, true));
  giveAreaBack();
  const globals: Array<[number, number | bigint]> = [];
  for (const [name, v] of Object.entries(programExports!)) {
    if (!isGlobalExport(name)) continue;
    globals.push([Number(name.slice(HVM_GLOBAL_PREFIX.length)), (v as WebAssembly.Global).value]);
  }
  return { globals, stack };
}

/** Puts a saved stack in place; the program's next entry rewinds into it. */
function startRewind(stack: Uint8Array): void {
  const at = takeArea();
  if (stack.length > area!.bytes.length - 8) {
    giveAreaBack();
    throw new Error(`the saved stack (${stack.length} bytes) does not fit the program's memory`);
  }
  u8.set(stack, at + 8);
  dv.setUint32(at, at + 8 + stack.length, true);
  dv.setUint32(at + 4, at + area!.bytes.length, true);
  saving!.asyncify_start_rewind(at);
}

/** The rewind reached the call it had stopped at: the program is whole again. */
function finishRewind(): void {
  saving!.asyncify_stop_rewind();
  giveAreaBack();
}

/**
 * Every WASI import of a saveable program is a point where it may stop for
 * a save: at its entry, before anything of the call is done, so that the
 * call is made afresh when the program is rewound (here or elsewhere).
 */
function savePoint<F extends (...a: never[]) => number | undefined>(fn: F): F {
  return ((...a: never[]): number | undefined => {
    if (area) finishRewind();
    if (saveRequested()) {
      exitGuest();
      startUnwind();
      return 0;
    }
    return fn(...a);
  }) as F;
}

/** The import for WASI function `name`: local, or an ioreq on its port. */
function wasiImport(name: string): (...a: Array<number | bigint>) => number | undefined {
  const imp = wasiCall(name);
  return saveable ? savePoint(imp) : imp;
}

function wasiCall(name: string): (...a: Array<number | bigint>) => number | undefined {
  const f = WASI_FUNCTIONS.get(name)!;
  if (WASI_CPU_LOCAL.has(name)) return local[name] as never;
  const port = f.port;
  const n = f.params.length;
  const wide = f.params.map((t) => t === "i64");
  const fast =
    name === "fd_read" || name === "fd_write" || name === "fd_pread" || name === "fd_pwrite";
  const fastWrite = name === "fd_write" || name === "fd_pwrite";
  const positioned = name === "fd_pread" || name === "fd_pwrite";
  return (...args: Array<number | bigint>): number | undefined => {
    exitGuest();
    honourPause();
    if (saveable && saveRequested()) {
      startUnwind();
      return 0;
    }
    if (port === EXIT_PORT) {
      // The status is the hypervisor's to report, whoever shuts the domain down first.
      Atomics.store(ctl, CTL_EXIT_CODE, args[0] as number);
      Atomics.store(ctl, CTL_EXITED, 1);
    }
    const i32 = portI32[port];
    const u32 = portU32[port];
    let rc: number | undefined;
    if (fast && i32) {
      rc = positioned
        ? fastIo(
            i32,
            portF64[port]!,
            fastWrite,
            args[0] as number,
            args[1] as number,
            args[2] as number,
            BigInt.asUintN(64, args[3] as bigint),
            args[4] as number,
          )
        : fastIo(
            i32,
            portF64[port]!,
            fastWrite,
            args[0] as number,
            args[1] as number,
            args[2] as number,
            undefined,
            args[3] as number,
          );
      if (rc !== undefined) {
        honourPause();
        enterGuest();
        return rc;
      }
    }
    if (!i32 || !u32) {
      rc = W.WASI_ENOSYS;
    } else {
      putArgs(u32, args, n, wide);
      rc = ioreq(port, n, i32, u32);
      if (rc === WASM32_IOREQ_RETRY) {
        const again = retryCall(port, n, i32, u32, args, wide);
        if (again === undefined) return 0;
        rc = again;
      }
    }
    if (port === EXIT_PORT) throw new ProcExit();
    honourPause();
    enterGuest();
    return rc;
  };
}

/** Writes a call's arguments into the page's slots (i64s as two words). */
function putArgs(u32: Uint32Array, args: Array<number | bigint>, n: number, wide: boolean[]): void {
  for (let i = 0; i < n; i++) {
    const a = args[i]!;
    if (wide[i]) {
      const b = BigInt.asUintN(64, a as bigint);
      u32[ARGS + 2 * i] = Number(b & 0xffffffffn);
      u32[ARGS + 2 * i + 1] = Number(b >> 32n);
    } else {
      u32[ARGS + 2 * i] = (a as number) >>> 0;
      u32[ARGS + 2 * i + 1] = 0;
    }
  }
}

/**
 * The device model withdrew the call, undone, for a save: the program stops
 * here (undefined: it is unwinding) and makes the call again when it goes
 * on; if the save went away meanwhile, the call is made again at once.
 */
function retryCall(
  port: number,
  n: number,
  i32: Int32Array,
  u32: Uint32Array,
  args: Array<number | bigint>,
  wide: boolean[],
): number | undefined {
  for (;;) {
    honourPause();
    if (saveRequested()) {
      startUnwind();
      return undefined;
    }
    putArgs(u32, args, n, wide);
    const rc = ioreq(port, n, i32, u32);
    if (rc !== WASM32_IOREQ_RETRY) return rc;
  }
}

/** xen.hypercall: the call goes to the hypervisor, and this thread waits for its answer. */
function hypercall(op: number, a1: number, a2: number, a3: number, a4: number, a5: number): number {
  exitGuest();
  honourPause();
  ctl[CTL_HC_OP] = op;
  ctl[CTL_HC_ARGS] = a1;
  ctl[CTL_HC_ARGS + 1] = a2;
  ctl[CTL_HC_ARGS + 2] = a3;
  ctl[CTL_HC_ARGS + 3] = a4;
  ctl[CTL_HC_ARGS + 4] = a5;
  Atomics.store(ctl, CTL_STATE, HVM_HYPERCALL);
  Atomics.store(ctl, CTL_HC_STATE, HC_REQUEST);
  Atomics.notify(ctl, CTL_HC_STATE);
  while (Atomics.load(ctl, CTL_HC_STATE) !== HC_DONE) Atomics.wait(ctl, CTL_HC_STATE, HC_REQUEST);
  const rc = ctl[CTL_HC_RC]!;
  Atomics.store(ctl, CTL_HC_STATE, HC_IDLE);
  Atomics.store(ctl, CTL_STATE, HVM_RUNNING);
  honourPause();
  enterGuest();
  return rc;
}

/**
 * (module (type (func)) (import "x" "f" (func)) (export "f" (func 0))): a
 * wasm function around a JavaScript one, which a table can hold.
 */
const THUNK = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x02, 0x07,
  0x01, 0x01, 0x78, 0x01, 0x66, 0x00, 0x00, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00,
]);

/** Puts the loop check (hvm_checks.ts) in the program's check table, if it has one. */
function connectLoopChecks(instance: WebAssembly.Instance): void {
  const table = instance.exports[CHECK_TABLE_EXPORT] as WebAssembly.Table | undefined;
  const budget = instance.exports[CHECK_BUDGET_EXPORT] as WebAssembly.Global | undefined;
  if (!table || !budget) return;
  const check = (): void => {
    if (area) {
      finishRewind();
      return;
    }
    budget.value = CHECK_BUDGET;
    if (
      Atomics.load(ctl, CTL_PAUSE) !== 0 ||
      Atomics.load(ctl, CTL_MSG) !== seenMsg ||
      saveRequested()
    ) {
      exitGuest();
      honourPause();
      if (saveRequested()) {
        startUnwind();
        return;
      }
      enterGuest();
    }
  };
  const thunk = new WebAssembly.Instance(new WebAssembly.Module(THUNK), { x: { f: check } });
  table.set(0, thunk.exports.f as () => void);
}

function describe(e: unknown): string {
  if (e instanceof WebAssembly.RuntimeError) return `wasm trap: ${e.message}`;
  if (e instanceof RangeError && /call stack/.test(e.message)) return "wasm trap: stack overflow";
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

function run(): HvmVcpuExit {
  drainMessages();
  const wasi: WebAssembly.ModuleImports = {};
  for (const imp of WebAssembly.Module.imports(data.module)) {
    if (imp.module === WASI_MODULE && imp.kind === "function")
      wasi[imp.name] = wasiImport(imp.name);
  }
  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(data.module, {
      [WASI_MODULE]: wasi,
      env: { memory },
      xen: { hypercall },
    });
    connectLoopChecks(instance);
    programExports = instance.exports;
    if (saveable) saving = instance.exports as unknown as AsyncifyExports;
  } catch (e) {
    return { kind: "crash", why: `the program could not be instantiated: ${describe(e)}` };
  }
  let rewind: Uint8Array | undefined;
  if (data.restore) {
    try {
      setGlobals(instance, data.restore.globals);
    } catch (e) {
      return { kind: "crash", why: `the saved vCPU does not fit the program: ${describe(e)}` };
    }
    rewind = data.restore.stack;
  }
  honourPause();
  Atomics.store(ctl, CTL_STATE, HVM_RUNNING);
  try {
    for (;;) {
      if (rewind) startRewind(rewind);
      rewind = undefined;
      enterGuest();
      (instance.exports._start as () => void)();
      // An unwind began in a call, which left guest mode already.
      if (saving && saving.asyncify_get_state() === ASYNCIFY_UNWINDING) {
        const saved = finishUnwind();
        Atomics.store(ctl, CTL_STATE, HVM_UNWOUND);
        parentPort!.postMessage({ kind: "unwound", saved } satisfies HvmVcpuMessage);
        // Until the hypervisor says go on (xl save -c); otherwise this thread is ended.
        for (
          let r = Atomics.load(ctl, CTL_SAVE);
          r !== SAVE_REWIND;
          r = Atomics.load(ctl, CTL_SAVE)
        )
          Atomics.wait(ctl, CTL_SAVE, r);
        Atomics.store(ctl, CTL_SAVE, SAVE_NONE);
        Atomics.store(ctl, CTL_STATE, HVM_RUNNING);
        rewind = saved.stack;
        continue;
      }
      exitGuest();
      // Returning from _start is exit(0): the device model hears it as proc_exit.
      wasiImport("proc_exit")(0);
      return { kind: "exit" };
    }
  } catch (e) {
    if (e instanceof ProcExit) return { kind: "exit" };
    exitGuest();
    return { kind: "crash", why: describe(e) };
  }
}

/** Sets a restored program's mutable globals: exactly those it has, each of its type. */
function setGlobals(
  instance: WebAssembly.Instance,
  globals: Array<[number, number | bigint]>,
): void {
  const count = instance.exports[HVM_GLOBAL_COUNT] as WebAssembly.Global | undefined;
  if (!saving || !count) throw new Error("the program is not saveable");
  const have = Object.keys(instance.exports).filter(isGlobalExport);
  if (have.length !== (count.value as number))
    throw new Error("the program has a mutable global that cannot be saved");
  if (have.length !== globals.length || new Set(globals.map(([i]) => i)).size !== globals.length)
    throw new Error(`${globals.length} globals saved, the program has ${have.length}`);
  for (const [i, v] of globals) {
    const g = instance.exports[`${HVM_GLOBAL_PREFIX}${i}`] as WebAssembly.Global | undefined;
    if (!g) throw new Error(`the program has no mutable global ${i}`);
    if (typeof g.value !== typeof v) throw new Error(`global ${i} is of another type`);
    g.value = v;
  }
}

const result = run();
Atomics.store(ctl, CTL_STATE, HVM_DONE);
parentPort!.postMessage(result);
