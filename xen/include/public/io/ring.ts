/**
 * Shared request/response rings, following `xen/include/public/io/ring.h`.
 *
 * A shared ring page starts with a 64-byte header (producer and event indices
 * for requests and responses, then padding) followed by a power-of-two array
 * of entries, each the size of the larger of the request and response unions.
 * Indices are free-running uint32 values; only their difference matters.
 */
import { struct } from "../layout.js";

/** The header of every shared ring page (`struct *_sring` before `ring[]`). */
export const sring_header = struct("sring", [
  ["req_prod", 4],
  ["req_event", 4],
  ["rsp_prod", 4],
  ["rsp_event", 4],
  ["pvt", 4, 1],
  ["__pad", 44, 1],
]);

/** Rounds down to a power of two, as `__RD32` does. */
export function roundDownPow2(n: number): number {
  if (n < 1) return 0;
  return 2 ** Math.floor(Math.log2(n));
}

/**
 * Number of entries in a ring of `pageBytes` whose entries are `entryBytes`
 * (`__CONST_RING_SIZE`).
 */
export function ringSize(pageBytes: number, entryBytes: number): number {
  return roundDownPow2(Math.floor((pageBytes - sring_header.size) / entryBytes));
}

/** uint32 difference of two free-running ring indices (prod - cons). */
export const ringDistance = (prod: number, cons: number): number => (prod - cons) >>> 0;
