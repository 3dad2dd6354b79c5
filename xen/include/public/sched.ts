/**
 * Scheduler operations (`sched_op`), following `xen/include/public/sched.h`.
 * Guest handles are 8 bytes on wasm32, as on Arm (the pointer in the low half).
 */
import { struct } from "./layout.js";

export const SCHEDOP_yield = 0;
export const SCHEDOP_block = 1;
export const SCHEDOP_shutdown = 2;
export const SCHEDOP_poll = 3;
export const SCHEDOP_remote_shutdown = 4;
export const SCHEDOP_shutdown_code = 5;
export const SCHEDOP_watchdog = 6;
export const SCHEDOP_pin_override = 7;

export const SHUTDOWN_poweroff = 0;
export const SHUTDOWN_reboot = 1;
export const SHUTDOWN_suspend = 2;
export const SHUTDOWN_crash = 3;
export const SHUTDOWN_watchdog = 4;
export const SHUTDOWN_soft_reset = 5;
export const SHUTDOWN_MAX = 5;

/** Names of the shutdown reasons, as `xl` and the console print them. */
export const SHUTDOWN_NAMES = ["poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset"];

/** struct sched_shutdown */
export const sched_shutdown = struct("sched_shutdown", [["reason", 4]]);
/** struct sched_poll: ports is a guest handle to an array of evtchn_port_t. */
export const sched_poll = struct("sched_poll", [
  ["ports", 8],
  ["nr_ports", 4],
  ["timeout", 8],
]);
/** struct sched_remote_shutdown */
export const sched_remote_shutdown = struct("sched_remote_shutdown", [
  ["domain_id", 2],
  ["reason", 4],
]);
