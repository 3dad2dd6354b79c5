/**
 * The PV console ring page, following `xen/include/public/io/console.h` and
 * Xen's `misc/console.txt`: an input ring (to the guest) and an output ring
 * (from the guest), each with free-running 32-bit indices.
 */
import { struct } from "../layout.js";

export const XENCONS_IN_SIZE = 1024;
export const XENCONS_OUT_SIZE = 2048;

/** struct xencons_interface */
export const xencons_interface = struct("xencons_interface", [
  ["in", XENCONS_IN_SIZE, 1],
  ["out", XENCONS_OUT_SIZE, 1],
  ["in_cons", 4],
  ["in_prod", 4],
  ["out_cons", 4],
  ["out_prod", 4],
]);

/** Index of a free-running counter within a ring of `size` bytes (a power of two). */
export const MASK_XENCONS_IDX = (idx: number, size: number): number => idx & (size - 1);
