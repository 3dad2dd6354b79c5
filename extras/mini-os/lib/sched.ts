// Scheduling and time (mini-os sched.c, time.c): block, yield, NOW, sleep.
import {
  SCHEDOP_block,
  SCHEDOP_yield,
  VIRQ_TIMER,
  VCPU_INFO_TIME_OFF,
  VCPU_TIME_SYSTEM_TIME_OFF,
} from "./xen_abi";
import { HYPERVISOR_sched_op, HYPERVISOR_set_timer_op, HYPERVISOR_arch_time } from "./hypervisor";
import {
  bind_virq,
  events_delivered,
  fire_count,
  local_irq_disable,
  local_irq_enable,
  unmask_evtchn,
  vcpu_info,
} from "./events";

let delivered_at_wake: u32 = 0;

/**
 * Blocks the vCPU until an event arrives (SCHEDOP_block re-enables
 * upcalls, as Xen's does). Upcalls run at any hypercall's return, so one
 * may have handled the event a caller is about to wait for after the caller
 * last looked (its ring was empty) and before this call: that wakeup would
 * be lost, and a wait with no deadline would never end. So block() returns
 * at once when any event was delivered since the last block() returned,
 * looking with upcalls masked (mini-os's local_irq_disable before
 * block_domain), and callers, which loop, look again.
 */
export function block(): void {
  local_irq_disable(0);
  if (events_delivered() != delivered_at_wake) {
    delivered_at_wake = events_delivered();
    local_irq_enable(0);
    return;
  }
  HYPERVISOR_sched_op(SCHEDOP_block, 0);
  delivered_at_wake = events_delivered();
}

/**
 * A wait nested in a caller's loop (a xenstore request waiting for its
 * reply, a driver for a free slot, a sleep) takes every wakeup that comes
 * while it waits, those meant for the caller too: a watch event that came
 * with the reply is in the ring, and the caller, which looked before its
 * request, would block without looking again. So such a wait gives back
 * what it took: `const mark = wake_mark()` before, `wake_give_back(mark)`
 * after, and the caller's next block() returns at once if any event was
 * delivered since the caller last woke.
 */
export function wake_mark(): u32 {
  return delivered_at_wake;
}

/** Ends a nested wait begun at `mark` (wake_mark). */
export function wake_give_back(mark: u32): void {
  delivered_at_wake = mark;
}

/**
 * Blocks until an event comes (`port`'s, or any other, for the caller's
 * loop to look at) or `timeout_ns` of system time pass (so that a peer that
 * died is noticed): what vchan_wait and channel_wait do.
 */
export function block_on_port(port: u32, timeout_ns: u64): void {
  const seen = fire_count(port);
  init_time();
  HYPERVISOR_set_timer_op(NOW() + timeout_ns);
  if (fire_count(port) == seen) block();
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
  const mark = wake_mark();
  init_time();
  HYPERVISOR_set_timer_op(deadline);
  while (NOW() < deadline) block();
  wake_give_back(mark);
}

/** Sleeps for `ms` milliseconds. */
export function msleep(ms: u64): void {
  sleep_until(NOW() + ms * 1000000);
}
