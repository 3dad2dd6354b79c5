/**
 * Calling hypercalls on a (paused) domain's behalf from a test: fill a struct
 * in the domain's memory through its layout, dispatch, read the struct back.
 */
import type { Host } from "../tools/host/host.js";
import type { Domain } from "../xen/common/domain.js";
import type { Layout } from "../xen/include/public/layout.js";

/** Where tests put hypercall arguments: free memory above a mini-os image. */
export const SCRATCH = 0x60000;

/** Runs hypercall `op` for `d`'s vCPU 0 with raw arguments. */
export function call(host: Host, d: Domain, op: number, ...a: number[]): number {
  return host.hv.dispatch(d.vcpus[0]!, op, a[0] ?? 0, a[1] ?? 0, a[2] ?? 0, a[3] ?? 0, a[4] ?? 0);
}

/** Writes `fields` of `layout` at `addr` in `d` (zeroing the rest first). */
export function put<F extends string>(
  d: Domain,
  layout: Layout<F>,
  addr: number,
  fields: Partial<Record<F, number>>,
): void {
  d.mem.clear(addr, layout.size);
  for (const [k, v] of Object.entries(fields) as Array<[F, number]>) {
    const f = layout.fields[k];
    if (f.size === 1) d.mem.setU8(addr + f.offset, v);
    else if (f.size === 2) d.mem.setU16(addr + f.offset, v);
    else if (f.size === 4) d.mem.setU32(addr + f.offset, v);
    else d.mem.setU64(addr + f.offset, v);
  }
}

/** Reads field `k` of `layout` at `addr`; 2-byte fields are read signed (status fields). */
export function get<F extends string>(d: Domain, layout: Layout<F>, addr: number, k: F): number {
  const f = layout.fields[k];
  if (f.size === 1) return d.mem.u8[addr + f.offset]!;
  if (f.size === 2) return (d.mem.u16(addr + f.offset) << 16) >> 16;
  if (f.size === 4) return d.mem.u32(addr + f.offset);
  return d.mem.u64(addr + f.offset);
}

/** One struct-argument hypercall: writes `input`, calls `op(cmd, SCRATCH, count)`, returns rc and a reader. */
export function op<F extends string>(
  host: Host,
  d: Domain,
  hypercall: number,
  cmd: number,
  layout: Layout<F>,
  input: Partial<Record<F, number>>,
  count = 1,
): { rc: number; out: (k: F) => number } {
  put(d, layout, SCRATCH, input);
  const rc = call(host, d, hypercall, cmd, SCRATCH, count);
  return { rc, out: (k) => get(d, layout, SCRATCH, k) };
}
