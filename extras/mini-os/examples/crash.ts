// crash: says so, then executes `unreachable` (a wasm trap). With
// "delay=MS" on its command line it first sleeps that long, so that an
// on_crash="restart" loop goes at a pace a test (or a person) can follow.
import {
  printk,
  cmdline_arg,
  msleep,
  local_irq_enable,
  do_hypervisor_callback,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

export function _start(): void {
  local_irq_enable(0);
  const delay = cmdline_arg("delay", 0);
  if (delay > 0) msleep(delay);
  printk("crash: about to trap\n");
  unreachable();
}
