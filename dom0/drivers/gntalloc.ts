/**
 * Dom0's grant allocator: the counterpart of Linux's `/dev/xen/gntalloc` and
 * libxengntshr (`xengntshr_share_pages`, `xengntshr_unshare`). It takes pages
 * from Dom0's pool, grants them to a domain through Dom0's own grant table (v1
 * entries written the way a guest kernel writes them: frame and domid first,
 * then the flags), and hands back the refs and a view of each page.
 *
 * Ending access is a compare-and-swap on the entry: it fails while the
 * grantee has the page mapped or is copying (GTF_reading / GTF_writing), so a
 * page is never reused under a domain that still uses it.
 */
import {
  GNTTAB_NR_RESERVED_ENTRIES,
  GTF_permit_access,
  GTF_readonly,
  GTF_reading,
  GTF_writing,
  grant_entry_v1,
} from "../../xen/include/public/grant_table.js";
import { GRANT_FRAMES_IN_ARCH_AREA, PFN_GRANT_TABLE } from "../../xen/arch/wasm32/config.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { GRANT_ENTRIES_PER_FRAME } from "../../xen/common/grant_table.js";
import type { Privcmd } from "./privcmd.js";

/** One page Dom0 shares. */
export interface SharedPage {
  readonly ref: number;
  readonly domid: number;
  readonly pfn: number;
  /** The page in Dom0's memory. */
  readonly page: Uint8Array;
}

/** Dom0's grant refs, shared by every XenGntshr handle (one grant table per domain). */
export class GrantRefAllocator {
  private readonly free: number[] = [];

  constructor(readonly pc: Privcmd) {
    const last = GRANT_FRAMES_IN_ARCH_AREA * GRANT_ENTRIES_PER_FRAME - 1;
    for (let r = last; r >= GNTTAB_NR_RESERVED_ENTRIES; r--) this.free.push(r);
  }

  alloc(): number | undefined {
    return this.free.pop();
  }

  release(ref: number): void {
    this.free.push(ref);
  }

  /** i32 index of entry `ref`'s flags+domid word in Dom0's memory. */
  entryIndex(ref: number): number {
    return (PFN_GRANT_TABLE * PAGE_SIZE + ref * grant_entry_v1.size) >> 2;
  }
}

/** One client's shared pages (a xengntshr_handle). */
export class XenGntshr {
  private readonly shared = new Map<number, SharedPage>();

  constructor(private readonly refs: GrantRefAllocator) {}

  /**
   * xengntshr_share_pages: shares `count` fresh zeroed pages with `domid`.
   * Throws, sharing nothing, if Dom0 runs out of pages or grant refs.
   */
  share(domid: number, count: number, writable = true): SharedPage[] {
    const pc = this.refs.pc;
    const out: SharedPage[] = [];
    for (let i = 0; i < count; i++) {
      const pfn = pc.allocPage();
      const ref = pfn === undefined ? undefined : this.refs.alloc();
      if (pfn === undefined || ref === undefined) {
        if (pfn !== undefined) pc.freePage(pfn);
        for (const p of out) this.unshare(p);
        throw new Error(
          `gntalloc: cannot share ${count} pages with d${domid}: Dom0 is out of ${pfn === undefined ? "pages" : "grant references"}`,
        );
      }
      const i32 = pc.mem.i32;
      const e = this.refs.entryIndex(ref);
      Atomics.store(i32, e + 1, pfn);
      // The flags go in last: the entry is live from this store on.
      Atomics.store(i32, e, (domid << 16) | GTF_permit_access | (writable ? 0 : GTF_readonly));
      const a = pfn * PAGE_SIZE;
      const p: SharedPage = { ref, domid, pfn, page: pc.mem.u8.subarray(a, a + PAGE_SIZE) };
      this.shared.set(ref, p);
      out.push(p);
    }
    return out;
  }

  /**
   * xengntshr_unshare: ends the grant and frees the page. Returns false, and
   * changes nothing, while the grantee still maps or copies the page.
   */
  unshare(p: SharedPage): boolean {
    if (this.shared.get(p.ref) !== p) return false;
    const i32 = this.refs.pc.mem.i32;
    const e = this.refs.entryIndex(p.ref);
    const w = Atomics.load(i32, e);
    if (w & (GTF_reading | GTF_writing)) return false;
    if (Atomics.compareExchange(i32, e, w, 0) !== w) return false;
    this.shared.delete(p.ref);
    this.refs.release(p.ref);
    this.refs.pc.freePage(p.pfn);
    return true;
  }

  /** Pages this handle shares. */
  get count(): number {
    return this.shared.size;
  }

  /** xengntshr_close: ends every grant that is no longer in use. Returns how many stay shared. */
  dispose(): number {
    for (const p of [...this.shared.values()]) this.unshare(p);
    return this.shared.size;
  }
}
