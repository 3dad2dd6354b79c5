// ticker: prints once a second, blocking on its timer between ticks.
// With `fifo` on its command line its events (the timer's) come through the
// FIFO event channel ABI.
import {
  cmdline_has,
  cons,
  domid,
  init_events_fifo,
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
  if (cmdline_has("fifo") && init_events_fifo() < 0) cons.s("ticker: no FIFO events").nl();
  const start = NOW();
  let next = start;
  for (let n: u64 = 1; ; n++) {
    next += 1000000000;
    sleep_until(next);
    const ms = (NOW() - start) / 1000000;
    cons.s("ticker d").u(domid()).s(": tick ").u(n).s(" at ").u(ms).s(" ms").nl();
  }
}
