/**
 * sched_op and set_timer_op (Xen's `common/sched/core.c`).
 *
 * Blocking calls do not block the thread: they set `v.suspend`, and the
 * hypercall layer unwinds the vCPU's wasm stack once the handler returns.
 */
import {
  SCHEDOP_block,
  SCHEDOP_poll,
  SCHEDOP_remote_shutdown,
  SCHEDOP_shutdown,
  SCHEDOP_shutdown_code,
  SCHEDOP_yield,
  SHUTDOWN_MAX,
  SHUTDOWN_suspend,
  sched_poll,
  sched_remote_shutdown,
} from "../include/public/sched.js";
import { XenErrno } from "../include/public/errno.js";
import { Suspend, type Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";
import { NOW } from "./time.js";

/** Most ports one SCHEDOP_poll may wait on, as in Xen. */
export const SCHED_POLL_MAX_PORTS = 128;

function block(v: Vcpu): number {
  // As Xen: blocking re-enables event delivery, and returns at once if an
  // event is already pending.
  v.setUpcallMask(false);
  if (v.upcallPending) return 0;
  // Inside an upcall there is no context to return to later: yield instead.
  v.suspend = v.inUpcall ? Suspend.Yield : Suspend.Block;
  return 0;
}

function poll(hv: Hypervisor, v: Vcpu, arg: number): number {
  const mem = v.domain.mem;
  const f = sched_poll.fields;
  mem.check(arg, sched_poll.size);
  const ports = mem.u64(arg + f.ports.offset);
  const nr = mem.u32(arg + f.nr_ports.offset);
  const timeout = mem.u64(arg + f.timeout.offset);
  if (nr > SCHED_POLL_MAX_PORTS) return -XenErrno.EINVAL;
  const list: number[] = [];
  for (let i = 0; i < nr; i++) {
    const port = mem.u32(ports + i * 4);
    if (port >= v.domain.evtchn.maxPorts) return -XenErrno.EINVAL;
    list.push(port);
  }
  if (list.some((p) => v.domain.evtchn.isPending(p))) return 0;
  if (v.inUpcall) {
    v.suspend = Suspend.Yield;
    return 0;
  }
  v.pollPorts = list;
  if (timeout !== 0) hv.timers.set(v.pollTimer, v.domain.hostTime(timeout));
  v.suspend = Suspend.Poll;
  return 0;
}

/** sched_op(cmd, arg) */
export function do_sched_op(hv: Hypervisor, v: Vcpu, cmd: number, arg: number): number {
  const d = v.domain;
  arg >>>= 0;
  switch (cmd) {
    case SCHEDOP_yield:
      v.suspend = Suspend.Yield;
      return 0;
    case SCHEDOP_block:
      return block(v);
    case SCHEDOP_shutdown: {
      // Reasons past SHUTDOWN_MAX are refused here, so that the toolstack
      // never sees a reason it has no name for.
      const reason = d.mem.u32(arg);
      if (reason > SHUTDOWN_MAX) return -XenErrno.EINVAL;
      if (reason === SHUTDOWN_suspend && !d.isShutdown) d.suspendedBy = v;
      hv.domainShutdown(d, reason);
      return 0;
    }
    case SCHEDOP_poll:
      return poll(hv, v, arg);
    case SCHEDOP_remote_shutdown: {
      if (!d.privileged) return -XenErrno.EPERM;
      const f = sched_remote_shutdown.fields;
      d.mem.check(arg, sched_remote_shutdown.size);
      const target = hv.domains.get(d.mem.u16(arg + f.domain_id.offset));
      if (!target) return -XenErrno.ESRCH;
      const reason = d.mem.u32(arg + f.reason.offset);
      if (reason > SHUTDOWN_MAX) return -XenErrno.EINVAL;
      hv.domainShutdown(target, reason);
      return 0;
    }
    case SCHEDOP_shutdown_code: {
      const reason = d.mem.u32(arg);
      if (reason > SHUTDOWN_MAX) return -XenErrno.EINVAL;
      d.shutdownCode = reason;
      return 0;
    }
    default:
      return -XenErrno.ENOSYS;
  }
}

/**
 * set_timer_op(timeout): arms the calling vCPU's single-shot timer at an
 * absolute system time in ns; 0 disarms it. wasm32 passes the 64-bit timeout
 * as two 32-bit halves (lo, hi), as 32-bit x86 does.
 */
export function do_set_timer_op(hv: Hypervisor, v: Vcpu, lo: number, hi: number): number {
  const timeout = (lo >>> 0) + (hi >>> 0) * 2 ** 32;
  // The deadline is in the domain's system time; the timer counts in the host's.
  if (timeout === 0) hv.timers.stop(v.singleshot);
  else hv.timers.set(v.singleshot, Math.max(v.domain.hostTime(timeout), NOW()));
  return 0;
}
