/**
 * tsxen's QEMU for one HVM domain, on its own thread (as Xen runs one QEMU
 * process per HVM guest in Dom0): it takes ioreqs off the ioreq server's
 * page, runs the WASI device emulation (wasi.ts) against the guest's memory
 * through the foreign mapping it was given, and answers.
 *
 * Waiting: the doorbell word of the ioreq page is bumped by the vCPU for
 * each request and by the device model's main-thread half for each message
 * (console input, the power button). After an answer this thread spins on it
 * for a short while (a program doing I/O usually asks again at once), then
 * sleeps on it. A call that cannot be answered yet (a read of the serial
 * port with nothing typed, a poll_oneoff sleep, a write to a backed-up
 * console) is held, and tried again when the doorbell rings (input came, the
 * console drained) or its deadline passes; the vCPU meanwhile waits on its
 * ioreq like a CPU on a slow port.
 */
import { closeSync, constants as C, openSync } from "node:fs";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import {
  IOREQ_FLAG_DIR_READ,
  STATE_IOREQ_INPROCESS,
  STATE_IOREQ_READY,
  STATE_IORESP_READY,
  IOREQ_TYPE_PIO,
} from "../../xen/include/public/hvm/ioreq.js";
import {
  WASI_PORT_BASE,
  WASI_PORT_NAMES,
  WASM32_IOREQ_ARGS,
  WASM32_IOREQ_DOORBELL,
} from "../../xen/include/public/hvm/wasm32_io.js";
import { WASI_ENOSYS } from "../../xen/include/public/hvm/wasi.js";
import { WASM32_IOREQ_RETRY } from "../../xen/include/public/hvm/wasm32_io.js";
import { RawFileStorage, type BlockStorage } from "../backends/storage.js";
import { Qcow2Storage } from "../backends/qcow2.js";
import { WasiDevices, type Held } from "./wasi.js";
import {
  CTL_DM_MSG,
  CTL_DM_SERIAL,
  SERIAL_HIGH,
  type DmCommand,
  type DmMessage,
  type DmWorkerData,
} from "./dm_protocol.js";

/** How long to spin on the doorbell after an answer before sleeping, ms (see the vCPU's). */
const SPIN_MS = 0.2;

const data = workerData as DmWorkerData;
const port = parentPort!;
const i32 = new Int32Array(data.page);
const u32 = new Uint32Array(data.page);
const ctl = new Int32Array(data.ctl);
const DOORBELL = WASM32_IOREQ_DOORBELL >> 2;
const STATEWORD = 7;
const ARGS = WASM32_IOREQ_ARGS >> 2;

function post(m: DmMessage): void {
  port.postMessage(m);
}

function openAll(): { roots: number[]; disks: Array<{ name: string; storage: BlockStorage }> } {
  const roots: number[] = [];
  const disks: Array<{ name: string; storage: BlockStorage }> = [];
  try {
    for (const s of data.shares) {
      try {
        roots.push(openSync(s.path, C.O_RDONLY | C.O_DIRECTORY));
      } catch (e) {
        throw new Error(
          `p9 share '${s.guestPath}': cannot open ${s.path}: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    for (const d of data.disks) {
      try {
        const storage =
          d.format === "qcow2"
            ? new Qcow2Storage(d.path, d.readonly)
            : new RawFileStorage(d.path, d.readonly);
        disks.push({ name: d.name, storage });
      } catch (e) {
        const why = (e as Error).message;
        throw new Error(`disk ${d.name}: ${why.includes(d.path) ? why : `${d.path}: ${why}`}`, {
          cause: e,
        });
      }
    }
  } catch (e) {
    for (const fd of roots) closeSync(fd);
    for (const d of disks) d.storage.close();
    throw e;
  }
  return { roots, disks };
}

let opened: ReturnType<typeof openAll>;
try {
  opened = openAll();
} catch (e) {
  post({ kind: "error", message: (e as Error).message });
  process.exit(0);
}

let stopped = false;
/** The domain is being saved: no call waits (dm_protocol.ts, "quiesce"). */
let quiesced = false;
const devices = new WasiDevices(
  data.memory,
  { args: data.args, env: data.env, shares: data.shares, disks: opened.disks },
  {
    serialOut(bytes: Uint8Array): boolean {
      if (Atomics.load(ctl, CTL_DM_SERIAL) > SERIAL_HIGH) return false;
      if (bytes.length > 0) {
        Atomics.add(ctl, CTL_DM_SERIAL, bytes.length);
        post({ kind: "serial", bytes });
      }
      return true;
    },
    exit(code: number): void {
      post({ kind: "exit", code });
    },
  },
  opened.roots,
  { i32, f64: new Float64Array(data.page) },
);
if (data.restore) {
  try {
    devices.restoreState(data.restore);
  } catch (e) {
    devices.close();
    for (const d of opened.disks) d.storage.close();
    post({ kind: "error", message: (e as Error).message });
    process.exit(0);
  }
}
devices.monotonicDeadline = (ns: number): number =>
  performance.now() + (ns - Number(process.hrtime.bigint() - data.systemTimeBase)) / 1e6;

function drain(): void {
  for (;;) {
    const m = receiveMessageOnPort(data.port);
    if (!m) return;
    const cmd = m.message as DmCommand;
    if (cmd.kind === "input") devices.input(cmd.bytes);
    else if (cmd.kind === "stop") stopped = true;
    else if (cmd.kind === "quiesce") quiesced = true;
    else if (cmd.kind === "resume") quiesced = false;
    else if (cmd.kind === "save") {
      try {
        post({ kind: "state", state: devices.saveState() });
      } catch (e) {
        post({ kind: "state", error: (e as Error).message });
      }
    }
  }
}

function answer(rc: number): void {
  u32[2] = rc >>> 0;
  u32[3] = 0;
  const flags = STATE_IORESP_READY | IOREQ_FLAG_DIR_READ;
  Atomics.store(i32, STATEWORD, (flags << 16) | (IOREQ_TYPE_PIO << 24));
  Atomics.notify(i32, STATEWORD);
}

/** The argument slots of the ioreq being served, copied off the page (the program may not change them mid-call). */
const lo = new Uint32Array(16);
const hi = new Uint32Array(16);
const slots = { lo, hi };

/** Takes the posted ioreq and runs it; a held call is returned. */
function serve(): Held | undefined {
  const portNo = u32[0]! - WASI_PORT_BASE;
  const name = WASI_PORT_NAMES[portNo];
  const count = Math.min(u32[4]!, 16);
  Atomics.store(i32, STATEWORD, (STATE_IOREQ_INPROCESS << 16) | (IOREQ_TYPE_PIO << 24));
  if (name === undefined) {
    answer(WASI_ENOSYS);
    return undefined;
  }
  for (let i = 0; i < 16; i++) {
    lo[i] = i < count ? u32[ARGS + 2 * i]! : 0;
    hi[i] = i < count ? u32[ARGS + 2 * i + 1]! : 0;
  }
  const r = devices.call(name, slots);
  if (typeof r === "number") {
    answer(r);
    return undefined;
  }
  return r;
}

post({ kind: "ready" });
let held: Held | undefined;
let spins = 0;
let spinUntil = 0;
let seenMsg = -1;
let lastBell = -1;
for (;;) {
  const bell = Atomics.load(i32, DOORBELL);
  if (Atomics.load(ctl, CTL_DM_MSG) !== seenMsg) {
    seenMsg = Atomics.load(ctl, CTL_DM_MSG);
    drain();
  }
  if (stopped) break;
  let progress = false;
  if (held && quiesced) {
    held = undefined;
    answer(WASM32_IOREQ_RETRY);
    progress = true;
  } else if (held) {
    // Tried again when something rang or its deadline passed.
    if (bell !== lastBell || performance.now() >= held.deadline) {
      const r = held.retry();
      if (r !== undefined) {
        held = undefined;
        answer(r);
        progress = true;
      }
    }
  } else if (((Atomics.load(i32, STATEWORD) >> 16) & 0xf) === STATE_IOREQ_READY) {
    held = serve();
    progress = true;
  }
  lastBell = bell;
  if (progress) {
    spins = 0;
    spinUntil = 0;
    continue;
  }
  if ((++spins & 255) !== 0) continue;
  const now = performance.now();
  if (spinUntil === 0) spinUntil = now + SPIN_MS;
  if (now < spinUntil) continue;
  const timeout = held ? Math.max(0, held.deadline - performance.now()) : Infinity;
  Atomics.wait(i32, DOORBELL, bell, timeout);
}
devices.close();
for (const d of opened.disks) d.storage.close();
