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
  __HYPERVISOR_grant_table_op,
  XENMEM_add_to_physmap,
  XENMEM_maximum_gpfn,
  EVTCHNOP_init_control,
  EVTCHNOP_expand_array,
  EVTCHNOP_status,
  GNTTABOP_setup_table,
  GNTTABOP_query_size,
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

// In-bounds pointers aim anywhere but the kernel's own image (its strings and
// console buffer, and 64 KiB above its heap's start), so that the fuzzer
// reaches its final report: the architecture area below the image, the free
// memory above it, the very end.
const IMAGE_END: u32 = ((<u32>__heap_base + 0xffff) & ~0xffff) + 65536;
function arg(memBytes: u32): i32 {
  switch (rand() % 5) {
    case 0:
      return <i32>(rand() % 16);
    case 1:
      return <i32>(rand() % <u32>GUEST_IMAGE_BASE);
    case 2:
      return <i32>(IMAGE_END + (rand() % (memBytes - IMAGE_END)));
    case 3:
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

// The operations, as a switch rather than an array in memory the fuzzer itself scribbles on.
function pickOp(): i32 {
  switch (rand() % 14) {
    case 0:
      return __HYPERVISOR_console_io;
    case 1:
      return __HYPERVISOR_xen_version;
    case 2:
      return __HYPERVISOR_memory_op;
    case 3:
      return __HYPERVISOR_sched_op;
    case 4:
      return __HYPERVISOR_set_timer_op;
    case 5:
      return __HYPERVISOR_vcpu_op;
    case 6:
      return __HYPERVISOR_multicall;
    case 7:
      return __HYPERVISOR_event_channel_op;
    case 8:
      return __HYPERVISOR_arch_0;
    case 9:
      return 1; // mmu_update: not on wasm32
    case 10:
      return __HYPERVISOR_grant_table_op;
    case 11:
      return 36; // domctl: not for guests
    case 12:
      return 60; // unassigned
    default:
      return <i32>rand(); // anything
  }
}

export function _start(): void {
  state ^= cmdNumber(0, 1) * 0x2545f4914f6cdd1d;
  const iters = cmdNumber(1, 20000);
  const memBytes = <u32>(nr_pages() * 4096);
  let errors: u32 = 0;
  for (let i: u64 = 0; i < iters; i++) {
    const op = pickOp();
    let a1 = arg(memBytes);
    const a2 = arg(memBytes);
    let a3 = arg(memBytes);
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
    // Calls that legitimately lay hypervisor structures over pages the guest
    // chooses (a grant frame, FIFO event words) would let it wreck its own
    // image: tested on their own, not fuzzed.
    if (op == __HYPERVISOR_memory_op && a1 == XENMEM_add_to_physmap) a1 = XENMEM_maximum_gpfn;
    if (
      op == __HYPERVISOR_event_channel_op &&
      (a1 == EVTCHNOP_init_control || a1 == EVTCHNOP_expand_array)
    )
      a1 = EVTCHNOP_status;
    // setup_table writes frame numbers through a pointer read from memory,
    // which may well point into the fuzzer's own image.
    if (op == __HYPERVISOR_grant_table_op && a1 == GNTTABOP_setup_table) a1 = GNTTABOP_query_size;
    // A batch of thousands of grant ops writes a status into every element,
    // over the fuzzer's own image: keep batches short.
    if (op == __HYPERVISOR_grant_table_op) a3 = a3 & 7;
    // Keep the console output of console_io fuzzing small.
    if (op == __HYPERVISOR_console_io && a1 == 0) continue;
    // A multicall list could hold a shutdown or block entry: point it at the
    // zeroed memory far above the image, where entries are op 0 (-ENOSYS).
    const b1 = op == __HYPERVISOR_multicall ? <i32>(memBytes - 8192 + (rand() % 4096)) : a1;
    const rc = hypercall(op, b1, a2, a3, arg(memBytes), arg(memBytes));
    if (rc < 0) errors++;
  }
  cons.s("fuzz: survived ").u(iters).s(" hypercalls, ").u(errors).s(" errors").nl();
  shutdown(SHUTDOWN_poweroff);
}
