/** vCPU operations (`vcpu_op`), following `xen/include/public/vcpu.h`. */
import { struct } from "./layout.js";

export const VCPUOP_initialise = 0;
export const VCPUOP_up = 1;
export const VCPUOP_down = 2;
export const VCPUOP_is_up = 3;
export const VCPUOP_get_runstate_info = 4;
export const VCPUOP_register_runstate_memory_area = 5;
export const VCPUOP_set_periodic_timer = 6;
export const VCPUOP_stop_periodic_timer = 7;
export const VCPUOP_set_singleshot_timer = 8;
export const VCPUOP_stop_singleshot_timer = 9;
export const VCPUOP_register_vcpu_info = 10;
export const VCPUOP_send_nmi = 11;
export const VCPUOP_get_physid = 12;
export const VCPUOP_register_vcpu_time_memory_area = 13;

export const RUNSTATE_running = 0;
export const RUNSTATE_runnable = 1;
export const RUNSTATE_blocked = 2;
export const RUNSTATE_offline = 3;

/** Fail a single-shot timer whose deadline has already passed. */
export const VCPU_SSHOTTMR_future = 1 << 0;

/** struct vcpu_runstate_info */
export const vcpu_runstate_info = struct("vcpu_runstate_info", [
  ["state", 4],
  ["state_entry_time", 8],
  ["time", 32, 8],
]);
/** struct vcpu_set_periodic_timer */
export const vcpu_set_periodic_timer = struct("vcpu_set_periodic_timer", [["period_ns", 8]]);
/** struct vcpu_set_singleshot_timer */
export const vcpu_set_singleshot_timer = struct("vcpu_set_singleshot_timer", [
  ["timeout_abs_ns", 8],
  ["flags", 4],
]);
