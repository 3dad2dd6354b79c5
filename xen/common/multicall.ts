/**
 * multicall (Xen's `common/multicall.c`): runs a batch of hypercalls and writes
 * each one's result into its entry. A nested multicall fails with -EINVAL. If
 * an entry asks to deschedule the vCPU (yield, block, poll), the rest of the
 * batch still runs and the vCPU is descheduled when the batch is done.
 *
 * A batch still going when the vCPU's slice ends continues in its next slice
 * (a continuation of the multicall from the next entry), and an entry that
 * itself continues is written back into its slot, with the arguments that
 * say how far it got, and the multicall continues from it: as Xen's
 * multicall does, so that no batch holds the host longer than a slice.
 */
import { trackedHypercall } from "./watchdog.js";
import { multicall_entry } from "../include/public/arch-wasm32.js";
import { XenErrno } from "../include/public/errno.js";
import { HYPERVISOR } from "../include/public/xen.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";

/** multicall(list, nr), marked for the watchdog while it runs (trackedHypercall). */
export const do_multicall = trackedHypercall(HYPERVISOR.__HYPERVISOR_multicall, do_multicall_body);

function do_multicall_body(hv: Hypervisor, v: Vcpu, list: number, nr: number): number {
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
    const inner = v.takeContinuation();
    if (inner) {
      mem.setU64(e + f.op.offset, inner.op);
      for (let k = 0; k < 5; k++) mem.setU64(e + f.args.offset + k * 8, inner.args[k]! >>> 0);
      return again(i);
    }
    mem.setI64(e + f.result.offset, rc);
    if (i + 1 < nr && hv.preemptCheck(v)) return again(i + 1);
  }
  return 0;

  function again(from: number): number {
    return hv.createContinuation(
      v,
      HYPERVISOR.__HYPERVISOR_multicall,
      list + from * multicall_entry.size,
      nr - from,
    );
  }
}
