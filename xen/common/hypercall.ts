/**
 * Hypercall dispatch (Xen's `hypercall_table`), by Xen's numbers. A number
 * with no handler is unimplemented: it returns -ENOSYS and is reported on the
 * hypervisor console once per domain, by name.
 */
import { HYPERVISOR } from "../include/public/xen.js";
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
import { do_hvm_op } from "./hvm.js";
import { do_dm_op } from "./dm.js";

/** wasm32's arch_0: refresh the calling vCPU's vcpu_time_info (the clock read). */
function do_arch_time(hv: Hypervisor, v: Vcpu): number {
  hv.updateVcpuTime(v);
  return 0;
}

// The numbers as module constants: each `case H.x` would be a property load
// in the bytecode, and the switch below must stay small enough for V8 to
// inline into the hypercall path (at most 460 bytes of bytecode; it is 412).
const H = HYPERVISOR;
const CONSOLE_IO = H.__HYPERVISOR_console_io;
const XEN_VERSION = H.__HYPERVISOR_xen_version;
const MEMORY_OP = H.__HYPERVISOR_memory_op;
const SCHED_OP = H.__HYPERVISOR_sched_op;
const SET_TIMER_OP = H.__HYPERVISOR_set_timer_op;
const VCPU_OP = H.__HYPERVISOR_vcpu_op;
const MULTICALL = H.__HYPERVISOR_multicall;
const EVENT_CHANNEL_OP = H.__HYPERVISOR_event_channel_op;
const GRANT_TABLE_OP = H.__HYPERVISOR_grant_table_op;
const SYSCTL = H.__HYPERVISOR_sysctl;
const DOMCTL = H.__HYPERVISOR_domctl;
const ARCH_0 = H.__HYPERVISOR_arch_0;

/**
 * Runs hypercall `op` for `v` with the arguments its handler takes, or
 * `hv.unimplemented` when tsxen has no handler for that number;
 * any number at all may come in: negative, huge or fractional. One direct
 * call per number rather than a call through a table: a call site that has
 * seen several handlers is megamorphic and V8 inlines none of them, while
 * each of these sees one. The xen_version round trip measured 14 ns through
 * a table that had seen a few handlers, 12.5 ns this way, and 9.8 ns once
 * this function was small enough to be inlined itself.
 */
export function invokeHypercall(
  hv: Hypervisor,
  v: Vcpu,
  op: number,
  a1: number,
  a2: number,
  a3: number,
  // No handler takes a fourth or fifth argument yet.
  _a4: number,
  _a5: number,
): number {
  switch (op) {
    case CONSOLE_IO:
      return do_console_io(hv, v, a1, a2, a3);
    case XEN_VERSION:
      return do_xen_version(hv, v, a1, a2);
    case MEMORY_OP:
      return do_memory_op(hv, v, a1, a2);
    case SCHED_OP:
      return do_sched_op(hv, v, a1, a2);
    case SET_TIMER_OP:
      return do_set_timer_op(hv, v, a1, a2);
    case VCPU_OP:
      return do_vcpu_op(hv, v, a1, a2, a3);
    case MULTICALL:
      return do_multicall(hv, v, a1, a2);
    case EVENT_CHANNEL_OP:
      return do_event_channel_op(hv, v, a1, a2);
    case GRANT_TABLE_OP:
      return do_grant_table_op(hv, v, a1, a2, a3);
    case SYSCTL:
      return do_sysctl(hv, v, a1);
    case DOMCTL:
      return do_domctl(hv, v, a1);
    case ARCH_0:
      return do_arch_time(hv, v);
    default:
      return invokeOther(hv, v, op, a1, a2, a3);
  }
}

/** The hypercalls kept out of the switch above (HVM ones are never on a hot path). */
function invokeOther(
  hv: Hypervisor,
  v: Vcpu,
  op: number,
  a1: number,
  a2: number,
  a3: number,
): number {
  if (op === H.__HYPERVISOR_hvm_op) return do_hvm_op(hv, v, a1, a2);
  if (op === H.__HYPERVISOR_dm_op) return do_dm_op(hv, v, a1, a2, a3);
  return hv.unimplemented(v, op);
}
