// Boot information: start_info, the wasm32 boot page, and the abort handler.
import {
  START_INFO_ADDR,
  BOOT_INFO_ADDR,
  SHARED_INFO_PTR_OFF,
  START_INFO_CMDLINE_OFF,
  START_INFO_NR_PAGES_OFF,
  MAX_GUEST_CMDLINE,
  SCHEDOP_shutdown,
  SHUTDOWN_crash,
} from "./xen_abi";
import { HYPERVISOR_sched_op } from "./hypervisor";
import { printk, cons } from "./console";

/** This domain's id (from the wasm32 boot info page). */
export function domid(): u32 {
  return load<u32>(BOOT_INFO_ADDR);
}
/** vCPUs this domain may have. */
export function max_vcpus(): u32 {
  return load<u32>(BOOT_INFO_ADDR + 4);
}
/** Pages given to the domain at boot (start_info.nr_pages). */
export function nr_pages(): u64 {
  return load<u64>(START_INFO_ADDR + START_INFO_NR_PAGES_OFF);
}
/** Guest address of shared_info. */
export function shared_info(): usize {
  return <usize>load<u64>(START_INFO_ADDR + SHARED_INFO_PTR_OFF);
}
/** Address of the NUL-terminated command line in start_info. */
export function cmdline_ptr(): usize {
  return START_INFO_ADDR + START_INFO_CMDLINE_OFF;
}
/** Length of the command line in bytes. */
export function cmdline_len(): i32 {
  const p = cmdline_ptr();
  let n = 0;
  while (n < MAX_GUEST_CMDLINE && load<u8>(p + n) != 0) n++;
  return n;
}

/** Reports a guest shutdown with `reason` (SHUTDOWN_*); does not return. */
export function shutdown(reason: u32): void {
  const arg = memory.data(4);
  store<u32>(arg, reason);
  HYPERVISOR_sched_op(SCHEDOP_shutdown, arg);
}

/** AssemblyScript's abort hook (wired with --use abort=...): print and crash. */
export function xen_abort(message: usize, fileName: usize, line: u32, column: u32): void {
  cons.s("mini-os: abort at line ").u(line).s(":").u(column).nl();
  printk("mini-os: crashing\n");
  shutdown(SHUTDOWN_crash);
  unreachable();
}
