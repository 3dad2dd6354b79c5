// Scheduling and time (mini-os sched.c, time.c): block, yield, NOW, sleep.
import {
  SCHEDOP_block,
  SCHEDOP_yield,
  VIRQ_TIMER,
  VCPU_INFO_TIME_OFF,
  VCPU_TIME_SYSTEM_TIME_OFF,
} from "./xen_abi";
import { HYPERVISOR_sched_op, HYPERVISOR_set_timer_op, HYPERVISOR_arch_time } from "./hypervisor";
import { bind_virq, fire_count, unmask_evtchn, vcpu_info } from "./events";

/** Blocks the vCPU until an event arrives (re-enables upcalls, as Xen does). */
export function block(): void {
  HYPERVISOR_sched_op(SCHEDOP_block, 0);
}

/**
 * Blocks until `port` fires or `timeout_ns` of system time pass (so that a
 * peer that died is noticed): what vchan_wait and channel_wait do.
 */
export function block_on_port(port: u32, timeout_ns: u64): void {
  const seen = fire_count(port);
  init_time();
  const deadline = NOW() + timeout_ns;
  HYPERVISOR_set_timer_op(deadline);
  while (fire_count(port) == seen && NOW() < deadline) block();
}

/** Gives the rest of the time slice to other vCPUs. */
export function yield_(): void {
  HYPERVISOR_sched_op(SCHEDOP_yield, 0);
}

/** System time in ns since the hypervisor booted (reads vcpu_time_info). */
export function NOW(): u64 {
  HYPERVISOR_arch_time();
  const t = vcpu_info(0) + VCPU_INFO_TIME_OFF;
  let v: u32;
  let now: u64;
  do {
    v = atomic.load<u32>(t);
    now = load<u64>(t + VCPU_TIME_SYSTEM_TIME_OFF);
  } while ((v & 1) != 0 || v != atomic.load<u32>(t));
  return now;
}

let timer_port: i32 = -1;

/** After a resume in a new domain: VIRQ_TIMER is bound again when next needed. */
export function time_resume(): void {
  timer_port = -1;
}

/** Binds VIRQ_TIMER on vCPU 0 (once); returns its port. */
export function init_time(): i32 {
  if (timer_port < 0) {
    timer_port = bind_virq(VIRQ_TIMER, 0);
    if (timer_port > 0) unmask_evtchn(<u32>timer_port);
  }
  return timer_port;
}

/** Sleeps until system time `deadline` (ns), blocking between timer events. */
export function sleep_until(deadline: u64): void {
  init_time();
  HYPERVISOR_set_timer_op(deadline);
  while (NOW() < deadline) block();
}

/** Sleeps for `ms` milliseconds. */
export function msleep(ms: u64): void {
  sleep_until(NOW() + ms * 1000000);
}
