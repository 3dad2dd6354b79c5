// hcbench: times N xen_version hypercalls with the guest's own clock, and
// exports calls(n) so a benchmark can run the same loop bare.
import {
  hypercall,
  cons,
  NOW,
  shutdown,
  SHUTDOWN_poweroff,
  cmdline_ptr,
  cmdline_len,
  __HYPERVISOR_xen_version,
  XENVER_version,
} from "../lib/index";

/** n hypercalls in a loop; returns the sum of their results. */
export function calls(n: i32): i32 {
  let sum = 0;
  for (let i = 0; i < n; i++)
    sum += hypercall(__HYPERVISOR_xen_version, XENVER_version, 0, 0, 0, 0);
  return sum;
}

export function _start(): void {
  let n = 0;
  const p = cmdline_ptr();
  for (let i = 0; i < cmdline_len(); i++) n = n * 10 + (load<u8>(p + i) - 48);
  const t0 = NOW();
  calls(n);
  const t1 = NOW();
  cons
    .s("hcbench: ")
    .u(<u64>n)
    .s(" calls in ")
    .u(t1 - t0)
    .s(" ns")
    .nl();
  shutdown(SHUTDOWN_poweroff);
}
