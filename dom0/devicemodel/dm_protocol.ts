/**
 * What the device model's two halves (qemu.ts on the main thread,
 * dm_worker.ts on its own thread) pass each other.
 */
import type { MessagePort } from "node:worker_threads";
import type { ShareSpec, WasiState } from "./wasi.js";

export interface DmDiskSpec {
  name: string;
  path: string;
  format: "raw" | "qcow2";
  readonly: boolean;
}

export interface DmWorkerData {
  page: SharedArrayBuffer;
  memory: WebAssembly.Memory;
  /** Int32 words shared with the main-thread half: CTL_DM_SERIAL, CTL_DM_MSG. */
  ctl: SharedArrayBuffer;
  port: MessagePort;
  args: string[];
  env: string[];
  shares: ShareSpec[];
  disks: DmDiskSpec[];
  systemTimeBase: bigint;
  /** A restored domain's devices: its descriptors are opened again before it runs. */
  restore?: WasiState;
}

/** Messages this thread posts to its main-thread half. */
export type DmMessage =
  | { kind: "ready" }
  | { kind: "error"; message: string }
  | { kind: "serial"; bytes: Uint8Array }
  | { kind: "exit"; code: number }
  | { kind: "state"; state?: WasiState; error?: string };

/** Messages it takes from the main-thread half. */
export type DmCommand =
  | { kind: "input"; bytes: Uint8Array }
  | { kind: "stop" }
  /**
   * The domain is being saved: a call waiting is withdrawn (answered
   * WASM32_IOREQ_RETRY), as is every call that would wait, until "resume".
   */
  | { kind: "quiesce" }
  | { kind: "resume" }
  /** Post the devices' state (the vCPU is stopped, no call in flight). */
  | { kind: "save" };

/** ctl words: serial bytes posted and not yet taken by the main thread; messages posted to this thread. */
export const CTL_DM_SERIAL = 0;
export const CTL_DM_MSG = 1;

/** Serial bytes in flight above which the program's writes wait. */
export const SERIAL_HIGH = 256 * 1024;
