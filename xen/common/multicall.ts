/**
 * multicall (Xen's `common/multicall.c`): runs a batch of hypercalls and writes
 * each one's result into its entry. A nested multicall fails with -EINVAL. If
 * an entry asks to deschedule the vCPU (yield, block, poll), the rest of the
 * batch still runs and the vCPU is descheduled when the batch is done.
 */
import { multicall_entry } from "../include/public/arch-wasm32.js";
import { XenErrno } from "../include/public/errno.js";
import { HYPERVISOR } from "../include/public/xen.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";

export function do_multicall(hv: Hypervisor, v: Vcpu, list: number, nr: number): number {
  const mem = v.domain.mem;
  const f = multicall_entry.fields;
  list >>>= 0;
  nr >>>= 0;
  mem.check(list, nr * multicall_entry.size);
  for (let i = 0; i < nr; i++) {
    const e = list + i * multicall_entry.size;
    const op = mem.u64(e + f.op.offset);
    const a = (k: number): number => mem.u32(e + f.args.offset + k * 8) | 0;
    const rc =
      op === HYPERVISOR.__HYPERVISOR_multicall
        ? -XenErrno.EINVAL
        : hv.dispatch(v, op, a(0), a(1), a(2), a(3), a(4));
    mem.setI64(e + f.result.offset, rc);
  }
  return 0;
}
