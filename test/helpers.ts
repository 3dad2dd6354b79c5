/** Shared fixtures for integration tests: built guests and a host per test. */
import { connect } from "node:net";
import binaryen from "binaryen";
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import type { Domain } from "../xen/common/domain.js";
import { PFN_GRANT_TABLE } from "../xen/arch/wasm32/config.js";
import { GTF_permit_access, GTF_readonly } from "../xen/include/public/grant_table.js";
import { EVTCHNOP_send } from "../xen/include/public/event_channel.js";
import { HYPERVISOR as H } from "../xen/include/public/xen.js";
import { loadKernelFile, type Kernel } from "../xen/arch/wasm32/kernel.js";

export { guestPath };

/** Loads a built mini-os kernel by name. */
export function kernel(name: string): Promise<Kernel> {
  return loadKernelFile(guestPath(name));
}

/** Runs `fn` with a new host (newHost), shut down after whatever happens. */
export async function withHost(fn: (host: Host) => Promise<void>): Promise<void> {
  const host = newHost();
  try {
    await fn(host);
  } finally {
    await host.shutdown();
  }
}

/** A 2 GiB host with Dom0 at 256 MiB: small enough to see accounting move. */
export function newHost(memoryBytes = 2 * 1024 ** 3): Host {
  return new Host({ memoryBytes, dom0MemoryBytes: 256 * 1024 ** 2 });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves when `pred()` holds, polling every 5 ms; rejects after `ms`. */
export async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Sends `line` to the channel-echo agent listening on Unix socket `sock`
 * and resolves with its first line of answer; a refused or broken
 * connection is the answer, for the assertion to show.
 */
export async function channelTalk(sock: string, line: string): Promise<string> {
  const s = connect(sock);
  let got = "";
  s.on("data", (b: Buffer) => (got += b.toString()));
  s.on("error", (e) => (got += `error: ${e.message}\n`));
  s.write(`${line}\n`);
  await until(() => got.includes("\n"), 10_000, `the echo of '${line}'`);
  s.destroy();
  return got;
}

/**
 * Free frames plus every domain's pages (and the holes below its top) plus
 * Dom0's: must equal the machine's frames.
 */
export function accountedFrames(host: Host): number {
  let sum = host.hv.frames.freeFrames + host.hv.dom0Pages;
  for (const d of host.hv.domains.values()) sum += d.totPages + d.holes.length;
  return sum;
}

/**
 * Writes grant entry `ref` in `d`'s table the way a guest does (v1 table at
 * its fixed pfns): frame and domid first, then the flags that make it live.
 */
export function grantAccess(
  d: Domain,
  ref: number,
  to: number,
  pfn: number,
  readonly = false,
): void {
  const e = PFN_GRANT_TABLE * 4096 + ref * 8;
  d.mem.setU32(e + 4, pfn);
  d.mem.setU16(e + 2, to);
  d.mem.setU16(e, GTF_permit_access | (readonly ? GTF_readonly : 0));
}

/**
 * EVTCHNOP_send on `port` from guest `d`'s side, its argument written at
 * guest address `scratch`; the hypercall's result.
 */
export function notifyFromGuest(host: Host, d: Domain, port: number, scratch = 950 * 4096): number {
  d.mem.setU32(scratch, port);
  return host.hv.dispatch(
    d.vcpus[0]!,
    H.__HYPERVISOR_event_channel_op,
    EVTCHNOP_send,
    scratch,
    0,
    0,
    0,
  );
}

/** A module's exports, compiled from `bytes` with no imports. */
export async function wasmExports<T>(bytes: Uint8Array): Promise<T> {
  const module = await WebAssembly.compile(new Uint8Array(bytes));
  return (await WebAssembly.instantiate(module)).exports as unknown as T;
}

/** The binary of a module given as text, through Binaryen. */
export function watBinary(wat: string): Uint8Array {
  const m = binaryen.parseText(wat);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}
