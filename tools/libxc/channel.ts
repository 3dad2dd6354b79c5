/**
 * How libxc reaches the hypervisor: a hypercall with its argument buffers,
 * as libxencall does through Linux's `/dev/xen/privcmd`. libxc's hypercall
 * buffers live in Dom0's bounce area (`dom0/drivers/privcmd.ts`): buffer i
 * of a call sits at `bounceBase + bufferOffsets(sizes)[i]`, so a caller can
 * put those addresses into its structs and arguments before the call (as
 * libxc's guest handles do). The host copies the buffers in, runs the
 * hypercall as Dom0 and copies them back out.
 *
 * Two channels: in the host process (`LocalHypercalls`), and over the host
 * daemon's privcmd socket (`privcmd_socket.ts`).
 */
import { DOM0_BOUNCE_PAGES, DOM0_BOUNCE_PFN, type Privcmd } from "../../dom0/drivers/privcmd.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";

export interface HypercallChannel {
  /** Dom0 address of the first hypercall buffer. */
  readonly bounceBase: number;
  /**
   * Runs hypercall `nr` with `args`; `bufs` are copied to their bounce
   * addresses first and overwritten with what the hypervisor left there.
   * Resolves with the hypercall's result (negative Xen errno on failure).
   */
  call(nr: number, args: number[], bufs: Uint8Array[]): Promise<number>;
  close(): void;
}

/** The bounce area's size in bytes. */
export const BOUNCE_BYTES = DOM0_BOUNCE_PAGES * PAGE_SIZE;
/** Dom0 address of the bounce area. */
export const BOUNCE_BASE = DOM0_BOUNCE_PFN * PAGE_SIZE;

/** Each buffer's offset in the bounce area: one after another, 8-byte aligned. */
export function bufferOffsets(sizes: readonly number[]): number[] {
  const out: number[] = [];
  let off = 0;
  for (const s of sizes) {
    out.push(off);
    off = Math.ceil((off + s) / 8) * 8;
  }
  if (off > BOUNCE_BYTES) {
    throw new RangeError(
      `privcmd: ${off} bytes of hypercall buffers exceed the ${BOUNCE_BYTES}-byte bounce area`,
    );
  }
  return out;
}

/** Runs a call on `privcmd` synchronously (the host side of every channel). */
export function runHypercall(
  privcmd: Privcmd,
  nr: number,
  args: readonly number[],
  bufs: Uint8Array[],
): number {
  const offs = bufferOffsets(bufs.map((b) => b.length));
  const total = bufs.length === 0 ? 0 : offs[offs.length - 1]! + bufs[bufs.length - 1]!.length;
  const base = privcmd.bounce(total);
  const u8 = privcmd.mem.u8;
  bufs.forEach((b, i) => u8.set(b, base + offs[i]!));
  const a = (i: number): number => Number(args[i] ?? 0);
  const rc = privcmd.hypercall(nr, a(0), a(1), a(2), a(3), a(4));
  bufs.forEach((b, i) => b.set(u8.subarray(base + offs[i]!, base + offs[i]! + b.length)));
  return rc;
}

/** Hypercalls from inside the host process. */
export class LocalHypercalls implements HypercallChannel {
  readonly bounceBase = BOUNCE_BASE;
  constructor(private readonly privcmd: Privcmd) {}
  call(nr: number, args: number[], bufs: Uint8Array[]): Promise<number> {
    return Promise.resolve(runHypercall(this.privcmd, nr, args, bufs));
  }
  close(): void {}
}
