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
 *
 * A round after which the domain's own code has not run (the round that
 * follows a migration's pause, or any round of a domain that stayed
 * blocked) compares only the pages others can write without it: the pages
 * the hypervisor writes for events and grants, every page a grant entry
 * offers, and those Dom0 mapped. That makes the last round of a live
 * migration, the one inside the downtime, cost microseconds rather than a
 * comparison of the whole memory. Like x86's log-dirty (which marks a page
 * written through a grant or foreign mapping when the mapping goes), it
 * relies on Dom0 writing a guest's pages only through grants or mappings
 * made through the hypervisor.
 *
 * An HVM domain's pfns are its program's memory, which its vCPU's thread
 * and its device model write without the hypervisor: every round of one
 * compares the whole memory.
 */
import { XenErrno } from "../include/public/errno.js";
import { PAGE_SIZE } from "../include/xen/mm.js";
import { PFN_IMAGE_BASE } from "../arch/wasm32/config.js";
import type { Domain } from "./domain.js";

/** Pages compared at once before looking at each of them. */
const RUN = 16;

/** A domain's log-dirty state: the copy of its memory at the last CLEAN. */
export class LogDirty {
  private copy: Uint8Array;
  /** The domain's `guestEntries` at the last CLEAN (or the ENABLE). */
  private entriesAtClean: number;
  /**
   * Pfns others wrote, or could have, since the last CLEAN without being
   * among the candidates now: a page the hypervisor released or moved a
   * frame off, a page Dom0 mapped or unmapped.
   */
  private readonly marked = new Set<number>();

  constructor(private readonly d: Domain) {
    this.copy = physmap(d).slice(0, d.topPfn * PAGE_SIZE);
    this.entriesAtClean = d.guestEntries;
  }

  /** Page `pfn` was written, or may have been, by someone other than the domain. */
  mark(pfn: number): void {
    this.marked.add(pfn);
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
   * Whether the last CLEAN can be trusted for every page but a few: the
   * domain's own code has not run since (no vCPU entered it), so only what
   * others write can have changed, and the pages others can write are
   * known (candidates()).
   */
  get quiet(): boolean {
    // An HVM program runs on its own thread, which guestEntries does not count.
    if (this.d.hvm) return false;
    return !this.d.wholeMemoryMapped && this.d.guestEntries === this.entriesAtClean;
  }

  /**
   * The pfns anyone but the domain itself can have written while it did not
   * run, sorted: the architecture's frames (start_info, shared_info's
   * default place, the console and xenstore rings, the boot page, grant
   * frames 0–9, the vCPU save areas), wherever shared_info, grant frames
   * and FIFO event pages now are, every page a valid grant entry grants,
   * the pages Dom0 holds privcmd mappings of, and what was marked since the
   * last round (pages released, frames moved, mappings dropped). A
   * domain that has not run cannot have moved any of these since the last
   * round: only its own hypercalls move them.
   */
  candidates(): number[] {
    const d = this.d;
    const out = new Set<number>();
    for (let p = 0; p < PFN_IMAGE_BASE; p++) out.add(p);
    out.add(Math.floor(d.sharedInfoAddr / PAGE_SIZE));
    for (const a of d.evtchn.fifo?.guestAddresses() ?? []) out.add(Math.floor(a / PAGE_SIZE));
    d.gnttab.writablePfns(out);
    for (const p of this.marked) out.add(p);
    for (const p of d.foreignMappedPfns()) out.add(p);
    return [...out].sort((a, b) => a - b);
  }

  /**
   * The pfns below `d.nrPfns` that differ from the copy (or lie past it:
   * pages the domain gained since), as a bitmap of `bits` bits into `out`
   * (when given). With `clean`, the copies of those pages are refreshed.
   * Returns the number of dirty pages.
   *
   * A domain that has run since the last CLEAN has its whole memory
   * compared; one that has not (paused, or blocked the whole time) only the
   * candidates(), so the round that follows a pause costs next to nothing.
   */
  scan(out: Uint8Array | undefined, bits: number, clean: boolean): number {
    const d = this.d;
    const u8 = physmap(d);
    const top = d.topPfn;
    const held = this.copy.length / PAGE_SIZE;
    let dirty = 0;
    const limit = Math.min(top, bits);
    const changedAt = (p: number): boolean => {
      const a = p * PAGE_SIZE;
      // A page the copy does not hold yet (the domain grew since) is dirty.
      const changed =
        p >= held ||
        Buffer.compare(u8.subarray(a, a + PAGE_SIZE), this.copy.subarray(a, a + PAGE_SIZE)) !== 0;
      if (!changed) return false;
      dirty++;
      if (out) out[p >> 3]! |= 1 << (p & 7);
      if (clean && p < held) this.copy.set(u8.subarray(a, a + PAGE_SIZE), a);
      return true;
    };
    // Many candidates (a domain Dom0 maps much of) are compared faster in runs.
    const few = this.quiet ? this.candidates() : undefined;
    if (few && few.length * 4 <= limit) {
      for (const p of few) if (p < Math.min(limit, held)) changedAt(p);
      for (let p = held; p < limit; p++) changedAt(p);
    } else {
      for (let p = 0; p < limit; p++) {
        // Most memory is unchanged: a run of 16 equal pages is skipped in one comparison.
        if (p % RUN === 0 && p + RUN <= Math.min(limit, held)) {
          const a = p * PAGE_SIZE;
          const end = a + RUN * PAGE_SIZE;
          if (Buffer.compare(u8.subarray(a, end), this.copy.subarray(a, end)) === 0) {
            p += RUN - 1;
            continue;
          }
        }
        changedAt(p);
      }
    }
    if (clean && limit > held) {
      const grown = new Uint8Array(limit * PAGE_SIZE);
      grown.set(this.copy);
      grown.set(u8.subarray(this.copy.length, limit * PAGE_SIZE), this.copy.length);
      this.copy = grown;
    }
    if (clean) {
      // Pages at or past `bits` were not looked at: until a CLEAN of all
      // of them, the next round compares everything.
      this.entriesAtClean = limit >= top ? d.guestEntries : NaN;
      for (const p of this.marked) if (p < limit) this.marked.delete(p);
    }
    return dirty;
  }
}

/**
 * The memory a domain's pfns are: a PV domain's linear memory, an HVM
 * domain's program's (which its vCPU's thread and device model write
 * directly; compared like any other, never quiet).
 */
function physmap(d: Domain): Uint8Array {
  return d.hvm ? new Uint8Array(d.hvm.memory.buffer) : d.mem.u8;
}

/** XEN_DOMCTL_shadow_op's log-dirty sub-ops on `d`; results as Xen's. */
export function logDirtyOp(d: Domain, op: "enable" | "off"): number {
  if (op === "enable") {
    if (d.logDirty) return -XenErrno.EINVAL;
    d.logDirty = new LogDirty(d);
    return 0;
  }
  d.logDirty = undefined;
  return 0;
}
