// Hypercall entry and typed wrappers (mini-os's hypercall-*.h).
// The one privileged instruction of wasm32: op and five i32 arguments, an i32
// result (negative Xen errno on failure). See docs/arch-wasm32.md.
import {
  __HYPERVISOR_console_io, __HYPERVISOR_sched_op, __HYPERVISOR_set_timer_op,
  __HYPERVISOR_vcpu_op, __HYPERVISOR_xen_version, __HYPERVISOR_memory_op,
  __HYPERVISOR_event_channel_op, __HYPERVISOR_multicall, __HYPERVISOR_arch_0,
  __HYPERVISOR_grant_table_op,
} from "./xen_abi";

@external("xen", "hypercall")
export declare function hypercall(op: i32, a1: i32, a2: i32, a3: i32, a4: i32, a5: i32): i32;

export function HYPERVISOR_console_io(cmd: i32, count: i32, buf: usize): i32 {
  return hypercall(__HYPERVISOR_console_io, cmd, count, <i32>buf, 0, 0);
}
export function HYPERVISOR_sched_op(cmd: i32, arg: usize): i32 {
  return hypercall(__HYPERVISOR_sched_op, cmd, <i32>arg, 0, 0, 0);
}
export function HYPERVISOR_set_timer_op(timeout: u64): i32 {
  return hypercall(__HYPERVISOR_set_timer_op, <i32>(timeout & 0xffffffff), <i32>(timeout >> 32), 0, 0, 0);
}
export function HYPERVISOR_vcpu_op(cmd: i32, vcpu: i32, arg: usize): i32 {
  return hypercall(__HYPERVISOR_vcpu_op, cmd, vcpu, <i32>arg, 0, 0);
}
export function HYPERVISOR_xen_version(cmd: i32, arg: usize): i32 {
  return hypercall(__HYPERVISOR_xen_version, cmd, <i32>arg, 0, 0, 0);
}
export function HYPERVISOR_memory_op(cmd: i32, arg: usize): i32 {
  return hypercall(__HYPERVISOR_memory_op, cmd, <i32>arg, 0, 0, 0);
}
export function HYPERVISOR_event_channel_op(cmd: i32, arg: usize): i32 {
  return hypercall(__HYPERVISOR_event_channel_op, cmd, <i32>arg, 0, 0, 0);
}
export function HYPERVISOR_grant_table_op(cmd: i32, uop: usize, count: i32): i32 {
  return hypercall(__HYPERVISOR_grant_table_op, cmd, <i32>uop, count, 0, 0);
}
export function HYPERVISOR_multicall(list: usize, nr: i32): i32 {
  return hypercall(__HYPERVISOR_multicall, <i32>list, nr, 0, 0, 0);
}
/** wasm32 arch_0: asks the hypervisor to refresh this vCPU's time info. */
export function HYPERVISOR_arch_time(): i32 {
  return hypercall(__HYPERVISOR_arch_0, 0, 0, 0, 0, 0);
}
