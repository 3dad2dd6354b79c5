/** Shared fixtures for integration tests: built guests and a host per test. */
import { guestPath } from "../extras/mini-os/build.js";
import { Host } from "../tools/host/host.js";
import { loadKernelFile, type Kernel } from "../xen/arch/wasm32/kernel.js";

export { guestPath };

/** Loads a built mini-os kernel by name. */
export function kernel(name: string): Promise<Kernel> {
  return loadKernelFile(guestPath(name));
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

/** Free frames plus every domain's pages plus Dom0's: must equal the machine's frames. */
export function accountedFrames(host: Host): number {
  let sum = host.hv.frames.freeFrames + host.hv.dom0Pages;
  for (const d of host.hv.domains.values()) sum += d.totPages;
  return sum;
}
