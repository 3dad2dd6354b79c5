/**
 * The hypercall table (Xen's `hypercall_table`), indexed by Xen's numbers. A
 * number with no entry is unimplemented: it returns -ENOSYS and is reported on
 * the hypervisor console once per domain, by name.
 */
import { HYPERVISOR, NR_HYPERCALLS } from "../include/public/xen.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";
import { do_console_io } from "./console.js";
import { do_xen_version } from "./version.js";
import { do_memory_op } from "./memory.js";
import { do_sched_op, do_set_timer_op } from "./sched_op.js";
import { do_vcpu_op } from "./vcpu_op.js";
import { do_multicall } from "./multicall.js";
import { do_event_channel_op } from "./event_channel_op.js";
import { do_grant_table_op } from "./grant_table_op.js";
import { do_domctl } from "./domctl.js";
import { do_sysctl } from "./sysctl.js";

export type HypercallHandler = (
  hv: Hypervisor,
  v: Vcpu,
  a1: number,
  a2: number,
  a3: number,
  a4: number,
  a5: number,
) => number;

/** wasm32's arch_0: refresh the calling vCPU's vcpu_time_info (the clock read). */
const do_arch_time: HypercallHandler = (hv, v) => {
  hv.updateVcpuTime(v);
  return 0;
};

const H = HYPERVISOR;
const entries: Array<[number, HypercallHandler]> = [
  [H.__HYPERVISOR_console_io, do_console_io],
  [H.__HYPERVISOR_xen_version, do_xen_version],
  [H.__HYPERVISOR_memory_op, do_memory_op],
  [H.__HYPERVISOR_sched_op, do_sched_op],
  [H.__HYPERVISOR_set_timer_op, do_set_timer_op],
  [H.__HYPERVISOR_vcpu_op, do_vcpu_op],
  [H.__HYPERVISOR_multicall, do_multicall],
  [H.__HYPERVISOR_event_channel_op, do_event_channel_op],
  [H.__HYPERVISOR_grant_table_op, do_grant_table_op],
  [H.__HYPERVISOR_sysctl, do_sysctl],
  [H.__HYPERVISOR_domctl, do_domctl],
  [H.__HYPERVISOR_arch_0, do_arch_time],
];

/**
 * Dense by number (a plain array indexes faster than a Map on this hot path).
 * Indexing with any other number (negative, huge, fractional) gives undefined.
 */
export const hypercallTable: ReadonlyArray<HypercallHandler | undefined> = (() => {
  const t = new Array<HypercallHandler | undefined>(NR_HYPERCALLS).fill(undefined);
  for (const [nr, h] of entries) t[nr] = h;
  return t;
})();
