/**
 * privcmd: how Dom0's kernel (the host process) enters the hypervisor, the
 * counterpart of Linux's `/dev/xen/privcmd` and libxencall. A hypercall runs
 * on Dom0's vCPU 0 with its arguments in Dom0's own memory, exactly as a
 * guest's would, so Dom0 gets the same checks, errors and permissions (plus
 * its privilege) as any domain.
 *
 * Dom0's memory window (DOM0_WINDOW_FRAMES pages) is laid out as a guest's:
 * the wasm32 architecture area at pfn 0..63 (shared_info at pfn 2, grant
 * table frames at pfn 6..15), hypercall bounce buffers at pfn 64..127, and
 * pages the Dom0 kernel hands out (gntalloc) from pfn 128.
 */
import type { Hypervisor } from "../../xen/common/hypervisor.js";
import type { Domain } from "../../xen/common/domain.js";
import type { GuestMemory } from "../../xen/common/guest_access.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";

/** First pfn and size of Dom0's hypercall bounce buffer. */
export const DOM0_BOUNCE_PFN = 64;
export const DOM0_BOUNCE_PAGES = 64;
/** First pfn of the pages Dom0's kernel allocates for sharing. */
export const DOM0_POOL_PFN = DOM0_BOUNCE_PFN + DOM0_BOUNCE_PAGES;

export class Privcmd {
  readonly dom0: Domain;
  readonly mem: GuestMemory;
  private readonly freePages: number[] = [];

  constructor(readonly hv: Hypervisor) {
    this.dom0 = hv.dom0;
    this.mem = hv.dom0.mem;
    for (let p = this.mem.size / PAGE_SIZE - 1; p >= DOM0_POOL_PFN; p--) this.freePages.push(p);
  }

  /** Address of the bounce buffer; `bytes` must fit in it. Valid until the next hypercall. */
  bounce(bytes: number): number {
    if (bytes > DOM0_BOUNCE_PAGES * PAGE_SIZE) {
      throw new RangeError(
        `privcmd: ${bytes} bytes of hypercall arguments exceed the ${DOM0_BOUNCE_PAGES * PAGE_SIZE}-byte bounce buffer`,
      );
    }
    const a = DOM0_BOUNCE_PFN * PAGE_SIZE;
    this.mem.u8.fill(0, a, a + bytes);
    return a;
  }

  /** Runs hypercall `op` as Dom0 and returns its result (negative Xen errno on failure). */
  hypercall(op: number, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
    return this.hv.dispatch(this.dom0.vcpus[0]!, op, a1, a2, a3, a4, a5);
  }

  /**
   * IOCTL_PRIVCMD_MMAPBATCH_V2: maps pages `gfns` of domain `domid` into
   * Dom0; each page's view, or its error (a negative Xen errno) in `err`.
   */
  mmapBatchV2(
    domid: number,
    gfns: readonly number[],
  ): { pages: (Uint8Array | undefined)[]; err: number[]; region?: Uint8Array } {
    return this.hv.foreignMapBatch(this.dom0, domid, gfns);
  }

  /**
   * munmap of pages mapped with mmapBatchV2 (libxenforeignmemory's unmap):
   * their views must not be written after this. Until then each is a page
   * Dom0 may write, which the domain's log-dirty rounds compare.
   */
  munmap(domid: number, gfns: readonly number[]): void {
    this.hv.foreignUnmapBatch(this.dom0, domid, gfns);
  }

  /**
   * tsxen: `domid`'s pages as its log-dirty copy holds them (what a live
   * save sends; Hypervisor.logDirtySnapshotBatch), by pfn, read-only.
   */
  logDirtySnapshot(
    domid: number,
    gfns: readonly number[],
  ): { pages: (Uint8Array | undefined)[]; err: number[] } {
    return this.hv.logDirtySnapshotBatch(this.dom0, domid, gfns);
  }

  /** A free page of Dom0's window (its pfn), or undefined when the pool is empty. */
  allocPage(): number | undefined {
    const p = this.freePages.pop();
    if (p !== undefined) this.mem.clear(p * PAGE_SIZE, PAGE_SIZE);
    return p;
  }

  /** Returns page `pfn` to the pool. */
  freePage(pfn: number): void {
    this.freePages.push(pfn);
  }

  /** Pages left in the pool. */
  get freePageCount(): number {
    return this.freePages.length;
  }
}
