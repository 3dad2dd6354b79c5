// fuzz: a hostile guest. Calls every hypercall tsxen implements, and some it
// does not, with random arguments: small numbers, pointers into its own
// memory, and wild 32-bit values. The seed is the first number on the command
// line, the iteration count the second. Calls that would end or stop the
// domain (shutdown, block, poll, vcpu down) are skipped so that it finishes.
import {
  hypercall,
  cons,
  cmdline_ptr,
  cmdline_len,
  nr_pages,
  shutdown,
  SHUTDOWN_poweroff,
  __HYPERVISOR_console_io,
  __HYPERVISOR_xen_version,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_sched_op,
  __HYPERVISOR_set_timer_op,
  __HYPERVISOR_vcpu_op,
  __HYPERVISOR_multicall,
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_arch_0,
  SCHEDOP_block,
  SCHEDOP_shutdown,
  SCHEDOP_poll,
  SCHEDOP_remote_shutdown,
  VCPUOP_down,
  GUEST_IMAGE_BASE,
} from "../lib/index";

let state: u64 = 0x9e3779b97f4a7c15;
function rand(): u32 {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return <u32>(state >> 16);
}

function arg(memBytes: u32): i32 {
  switch (rand() % 4) {
    case 0:
      return <i32>(rand() % 16);
    case 1:
      return <i32>(rand() % memBytes);
    case 2:
      return <i32>(memBytes - (rand() % 64));
    default:
      return <i32>rand();
  }
}

function cmdNumber(index: i32, dflt: u64): u64 {
  const p = cmdline_ptr();
  const n = cmdline_len();
  let i = 0;
  for (let k = 0; k < index; k++) {
    while (i < n && load<u8>(p + i) != 32) i++;
    while (i < n && load<u8>(p + i) == 32) i++;
  }
  let v: u64 = 0;
  let any = false;
  while (i < n && load<u8>(p + i) >= 48 && load<u8>(p + i) <= 57) {
    v = v * 10 + <u64>(load<u8>(p + i) - 48);
    i++;
    any = true;
  }
  return any ? v : dflt;
}

const OPS: StaticArray<i32> = [
  __HYPERVISOR_console_io,
  __HYPERVISOR_xen_version,
  __HYPERVISOR_memory_op,
  __HYPERVISOR_sched_op,
  __HYPERVISOR_set_timer_op,
  __HYPERVISOR_vcpu_op,
  __HYPERVISOR_multicall,
  __HYPERVISOR_event_channel_op,
  __HYPERVISOR_arch_0,
  1,
  20,
  36,
  60,
  -1,
];

export function _start(): void {
  state ^= cmdNumber(0, 1) * 0x2545f4914f6cdd1d;
  const iters = cmdNumber(1, 20000);
  const memBytes = <u32>(nr_pages() * 4096);
  let errors: u32 = 0;
  for (let i: u64 = 0; i < iters; i++) {
    const op = OPS[<i32>(rand() % <u32>OPS.length)];
    let a1 = arg(memBytes);
    const a2 = arg(memBytes);
    const a3 = arg(memBytes);
    if (op == __HYPERVISOR_sched_op) {
      if (
        a1 == SCHEDOP_block ||
        a1 == SCHEDOP_shutdown ||
        a1 == SCHEDOP_poll ||
        a1 == SCHEDOP_remote_shutdown
      )
        a1 = 0;
    }
    if (op == __HYPERVISOR_vcpu_op && a1 == VCPUOP_down) a1 = 3;
    // Keep the console output of console_io fuzzing small.
    if (op == __HYPERVISOR_console_io && a1 == 0) continue;
    // A multicall list could hold a shutdown or block entry: point it at the
    // guest's own image, whose contents are not such entries.
    const b1 = op == __HYPERVISOR_multicall ? <i32>(GUEST_IMAGE_BASE + (rand() % 4096)) : a1;
    const rc = hypercall(op, b1, a2, a3, arg(memBytes), arg(memBytes));
    if (rc < 0) errors++;
  }
  cons.s("fuzz: survived ").u(iters).s(" hypercalls, ").u(errors).s(" errors").nl();
  shutdown(SHUTDOWN_poweroff);
}
