/**
 * Log-dirty mode (Xen's `arch/x86/mm/paging.c`, XEN_DOMCTL_shadow_op's
 * OFF, ENABLE_LOGDIRTY, CLEAN and PEEK): which of a domain's pages changed
 * since the last CLEAN, for the save side of live migration.
 *
 * x86 finds dirty pages by write-protecting them and taking the faults.
 * A wasm32 guest's stores cannot fault, and the domain's memory is also
 * written by the hypervisor (event bits, shared_info) and by Dom0's
 * backends (grant copies and mappings), so tsxen compares instead: ENABLE
 * takes a copy of the memory, and CLEAN compares each page with its copy
 * and refreshes the copies of those that differ. Nothing a guest or a
 * backend writes is missed, the guest's code runs unchanged (no cost while
 * it runs), and a round costs a comparison of the whole memory (memcmp
 * speed) and, while log-dirty is on, a second copy of it on the host
 * (docs/arch-wasm32.md, "Log-dirty").
 */
import { XenErrno } from "../include/public/errno.js";
import { PAGE_SIZE } from "../include/xen/mm.js";
import type { Domain } from "./domain.js";

/** Pages compared at once before looking at each of them. */
const RUN = 16;

/** A domain's log-dirty state: the copy of its memory at the last CLEAN. */
export class LogDirty {
  private copy: Uint8Array;

  constructor(private readonly d: Domain) {
    this.copy = d.mem.u8.slice(0, d.topPfn * PAGE_SIZE);
  }

  /**
   * Page `pfn` as the last CLEAN (or the ENABLE) saw it: a view of the copy,
   * which changes only at the next CLEAN. Undefined past what the copy
   * holds. A live save sends these, so that what the receiver has is what
   * the copy holds, page for page (docs/migration.md).
   */
  snapshot(pfn: number): Uint8Array | undefined {
    const a = pfn * PAGE_SIZE;
    if (!Number.isSafeInteger(pfn) || pfn < 0 || a + PAGE_SIZE > this.copy.length) return undefined;
    return this.copy.subarray(a, a + PAGE_SIZE);
  }

  /**
   * The pfns below `d.nrPfns` that differ from the copy (or lie past it:
   * pages the domain gained since), as a bitmap of `bits` bits into `out`
   * (when given). With `clean`, the copies of those pages are refreshed.
   * Returns the number of dirty pages.
   */
  scan(out: Uint8Array | undefined, bits: number, clean: boolean): number {
    const d = this.d;
    const u8 = d.mem.u8;
    const top = d.topPfn;
    const held = this.copy.length / PAGE_SIZE;
    let dirty = 0;
    const limit = Math.min(top, bits);
    for (let p = 0; p < limit; p++) {
      const a = p * PAGE_SIZE;
      // Most memory is unchanged: a run of 16 equal pages is skipped in one comparison.
      if (p % RUN === 0 && p + RUN <= Math.min(limit, held)) {
        const end = a + RUN * PAGE_SIZE;
        if (Buffer.compare(u8.subarray(a, end), this.copy.subarray(a, end)) === 0) {
          p += RUN - 1;
          continue;
        }
      }
      // A page the copy does not hold yet (the domain grew since) is dirty.
      const changed =
        p >= held ||
        Buffer.compare(u8.subarray(a, a + PAGE_SIZE), this.copy.subarray(a, a + PAGE_SIZE)) !== 0;
      if (!changed) continue;
      dirty++;
      if (out) out[p >> 3]! |= 1 << (p & 7);
      if (clean && p < held) this.copy.set(u8.subarray(a, a + PAGE_SIZE), a);
    }
    if (clean && limit > held) {
      const grown = new Uint8Array(limit * PAGE_SIZE);
      grown.set(this.copy);
      grown.set(u8.subarray(this.copy.length, limit * PAGE_SIZE), this.copy.length);
      this.copy = grown;
    }
    return dirty;
  }
}

/** XEN_DOMCTL_shadow_op's log-dirty sub-ops on `d`; results as Xen's. */
export function logDirtyOp(d: Domain, op: "enable" | "off"): number {
  if (d.hvm) return -XenErrno.EOPNOTSUPP;
  if (op === "enable") {
    if (d.logDirty) return -XenErrno.EINVAL;
    d.logDirty = new LogDirty(d);
    return 0;
  }
  d.logDirty = undefined;
  return 0;
}
