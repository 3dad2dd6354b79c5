/**
 * Where the guest kernels are: the source tree and the built kernels. Kept
 * apart from build.ts, which loads the AssemblyScript compiler, so that a
 * host, a test or a benchmark that only runs kernels does not load it (it
 * also replaces Array.prototype.sort for the whole process).
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The source tree (this file runs from dist/extras/mini-os). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/** Where built guest kernels go. */
export const GUEST_DIR = join(ROOT, "build", "mini-os");

/** Path of a built guest kernel by name (hello, ticker, ...). */
export function guestPath(name: string): string {
  return join(GUEST_DIR, `${name}.wasm`);
}

/** The example guests' sources and their xl.cfg files. */
export const EXAMPLES_DIR = join(ROOT, "extras", "mini-os", "examples");
