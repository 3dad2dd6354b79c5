/**
 * The machine frame allocator (Xen's heap allocator in `page_alloc.c`, in
 * spirit): a fixed number of 4 KiB machine frames, handed to domains one at a
 * time and taken back when they are released. The books are exact: free +
 * allocated = total at every moment, which `xl info` and tests rely on.
 *
 * Frames never handed out are tracked by a high-water mark, freed ones on a
 * stack, so boot costs nothing however large the host.
 */
import { _mfn, mfn_x, type Mfn } from "../include/xen/mm.js";

export class FrameAllocator {
  private highWater = 0;
  private readonly freed: number[] = [];
  private readonly owner: Int32Array;

  /** `totalFrames` machine frames, none allocated. */
  constructor(readonly totalFrames: number) {
    this.owner = new Int32Array(totalFrames).fill(-1);
  }

  /** Frames not allocated to any domain. */
  get freeFrames(): number {
    return this.totalFrames - this.highWater + this.freed.length;
  }

  /** Allocates one frame to domain `domid`; undefined when the host is out of memory. */
  alloc(domid: number): Mfn | undefined {
    let m: number;
    if (this.freed.length > 0) m = this.freed.pop()!;
    else if (this.highWater < this.totalFrames) m = this.highWater++;
    else return undefined;
    this.owner[m] = domid;
    return _mfn(m);
  }

  /** Returns a frame to the heap. Freeing a frame twice is a hypervisor bug and throws. */
  free(mfn: Mfn): void {
    const m = mfn_x(mfn);
    if (this.owner[m] === undefined || this.owner[m] === -1)
      throw new Error(`mfn ${m} freed twice`);
    this.owner[m] = -1;
    this.freed.push(m);
  }

  /** The domain that owns `mfn`, or -1. */
  ownerOf(mfn: Mfn): number {
    return this.owner[mfn_x(mfn)] ?? -1;
  }
}
