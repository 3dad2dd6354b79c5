/**
 * The block the main thread shares with the watchdog's thread (watchdog.ts):
 * the slots of what the main thread is doing, and the words a stall report
 * uses for it. Imported by both threads, so it holds no state.
 */
import { hypercallName, NR_HYPERCALLS } from "../include/public/xen.js";

/** Int32 slots of the shared block. */
export const ACT_DOMID = 0;
export const ACT_VCPU = 1;
export const ACT_HYPERCALL = 2;
/** Set by the main thread, read by the worker: the fd it writes stalls to, or -1. */
export const ACT_FD = 3;
/** Float64 slot (after the 4 Int32 ones): the last heartbeat, as an absolute time in ms. */
export const F64_HEARTBEAT = 2;
/** The block's size in bytes. */
export const BLOCK_BYTES = 32;

/**
 * What held the main thread, in words: "by d5 (name) vcpu#0 in hypercall
 * console_io (18)", "... running guest code", or "outside any guest".
 */
export function describeHold(
  domid: number,
  vcpu: number,
  hypercall: number,
  name?: string,
): string {
  if (domid < 0)
    return "outside any guest (Dom0's services, the toolstack or the garbage collector)";
  const call =
    hypercall >= 0 && hypercall < NR_HYPERCALLS
      ? ` in hypercall ${hypercallName(hypercall)} (${hypercall})`
      : " running guest code";
  return `by d${domid}${name === undefined ? "" : ` (${name})`} vcpu#${vcpu}${call}`;
}
