// upcall: an event that arrives while upcalls are masked (as they are at
// boot) is delivered by the first hypercall after unmasking, on its way
// back, as Linux's xen_force_evtchn_callback relies on. Prints how many
// times the port fired while masked and after that one hypercall.
import {
  bind_ipi,
  unmask_evtchn,
  notify_remote_via_evtchn,
  fire_count,
  local_irq_enable,
  do_hypervisor_callback,
  hypercall,
  __HYPERVISOR_xen_version,
  XENVER_version,
  cons,
  shutdown,
  SHUTDOWN_poweroff,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

export function _start(): void {
  const port = <u32>bind_ipi(0);
  unmask_evtchn(port);
  notify_remote_via_evtchn(port);
  const masked = fire_count(port);
  local_irq_enable(0);
  hypercall(__HYPERVISOR_xen_version, XENVER_version, 0, 0, 0, 0);
  const after = fire_count(port);
  cons.s("upcall: ").u(masked).s(" while masked, ").u(after).s(" after one hypercall").nl();
  shutdown(SHUTDOWN_poweroff);
}
