// ticker: prints once a second, blocking on its timer between ticks.
import {
  cons,
  domid,
  NOW,
  sleep_until,
  do_hypervisor_callback,
  local_irq_enable,
} from "../lib/index";

export function hypervisor_callback(vcpu: u32): void {
  do_hypervisor_callback(vcpu);
}

export function _start(): void {
  local_irq_enable(0);
  const start = NOW();
  let next = start;
  for (let n: u64 = 1; ; n++) {
    next += 1000000000;
    sleep_until(next);
    const ms = (NOW() - start) / 1000000;
    cons.s("ticker d").u(domid()).s(": tick ").u(n).s(" at ").u(ms).s(" ms").nl();
  }
}
