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
  SHUTDOWN_suspend,
} from "./xen_abi";
import { HYPERVISOR_sched_op } from "./hypervisor";
import { printk, cons, console_resume } from "./console";
import { events_resume } from "./events";
import { time_resume } from "./sched";
import { xenbus_port, xenbus_resume } from "./xenbus";

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

/** Drivers to connect again after a resume in a new domain (blkfront's, netfront's). */
const MAX_RESUME_HOOKS: i32 = 8;
const resume_hooks = memory.data(MAX_RESUME_HOOKS * 4);
let resume_hook_count: i32 = 0;

/** Has `fn` run (once per resume in a new domain, after xenstore is back); 0 or -errno. */
export function on_resume(fn: () => i32): void {
  if (resume_hook_count < MAX_RESUME_HOOKS)
    store<u32>(resume_hooks + resume_hook_count++ * 4, changetype<u32>(fn));
}

/**
 * Suspends the domain (Xen's PV protocol: SCHEDOP_shutdown with
 * SHUTDOWN_suspend, after the toolstack wrote "suspend" to
 * control/shutdown). Returns when the domain runs again: 1 when the
 * toolstack resumed it in the same domain (a checkpoint, or a cancelled
 * suspend), so every ring and channel is still connected; 0 when it runs
 * in a new domain after a restore, as mini-os's and Linux's resume do: no
 * port of the old domain exists, so the console and xenstore are bound
 * again on the ports start_info now gives, VIRQ_TIMER when next needed,
 * and every xenstore watch is set again (each fires once); then each
 * driver that asked (on_resume: blkfront, netfront) connects its device
 * again.
 */
export function suspend(): i32 {
  const arg = memory.data(4);
  store<u32>(arg, SHUTDOWN_suspend);
  const rc = HYPERVISOR_sched_op(SCHEDOP_shutdown, arg);
  if (rc == 0) {
    if (!events_resume()) {
      printk("mini-os: resumed in a new domain; FIFO event channels could not be set up again\n");
      shutdown(SHUTDOWN_crash);
    }
    time_resume();
    console_resume();
    const watches = xenbus_port() != 0 ? xenbus_resume() : 0;
    cons
      .s("mini-os: resumed in a new domain: console and xenstore reconnected, ")
      .i(watches)
      .s(" watches set again")
      .nl();
    for (let i = 0; i < resume_hook_count; i++) {
      const rc = changetype<() => i32>(load<u32>(resume_hooks + i * 4))();
      if (rc < 0) {
        cons.s("mini-os: a device could not reconnect after the resume: ").i(rc).nl();
        shutdown(SHUTDOWN_crash);
      }
    }
  }
  return rc;
}

/** AssemblyScript's abort hook (wired with --use abort=...): print and crash. */
export function xen_abort(message: usize, fileName: usize, line: u32, column: u32): void {
  cons.s("mini-os: abort at line ").u(line).s(":").u(column).nl();
  printk("mini-os: crashing\n");
  shutdown(SHUTDOWN_crash);
  unreachable();
}

/**
 * Where the value after `key=` starts on the command line (space-separated
 * words), as an offset from cmdline_ptr(); -1 when the key is absent.
 */
export function cmdline_value(key: string): i32 {
  const p = cmdline_ptr();
  const n = cmdline_len();
  const k = key.length;
  let i = 0;
  while (i < n) {
    // At the start of a word: does it read key=?
    let match = i + k < n && load<u8>(p + i + k) == 61;
    for (let j = 0; match && j < k; j++)
      if (load<u8>(p + i + j) != <u8>key.charCodeAt(j)) match = false;
    if (match) return i + k + 1;
    while (i < n && load<u8>(p + i) != 32) i++;
    while (i < n && load<u8>(p + i) == 32) i++;
  }
  return -1;
}

/**
 * The number after `key=` on the command line, or `dflt` when the key is
 * absent: cmdline_arg("port", 0) on "port=5 n=9" is 5.
 */
export function cmdline_arg(key: string, dflt: u64): u64 {
  let q = cmdline_value(key);
  if (q < 0) return dflt;
  const p = cmdline_ptr();
  const n = cmdline_len();
  let v: u64 = 0;
  while (q < n && load<u8>(p + q) >= 48 && load<u8>(p + q) <= 57) {
    v = v * 10 + <u64>(load<u8>(p + q) - 48);
    q++;
  }
  return v;
}

/** True if `word` appears on the command line as a word of its own. */
export function cmdline_has(word: string): bool {
  const p = cmdline_ptr();
  const n = cmdline_len();
  const k = word.length;
  let i = 0;
  while (i < n) {
    let end = i;
    while (end < n && load<u8>(p + end) != 32) end++;
    if (end - i == k) {
      let same = true;
      for (let j = 0; same && j < k; j++)
        if (load<u8>(p + i + j) != <u8>word.charCodeAt(j)) same = false;
      if (same) return true;
    }
    i = end;
    while (i < n && load<u8>(p + i) == 32) i++;
  }
  return false;
}
