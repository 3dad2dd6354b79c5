/** vcpu_op (Xen's `common/domain.c`, do_vcpu_op): bring-up and per-vCPU timers. */
import {
  RUNSTATE_blocked,
  RUNSTATE_offline,
  RUNSTATE_runnable,
  RUNSTATE_running,
  VCPUOP_down,
  VCPUOP_get_runstate_info,
  VCPUOP_is_up,
  VCPUOP_set_periodic_timer,
  VCPUOP_set_singleshot_timer,
  VCPUOP_stop_periodic_timer,
  VCPUOP_stop_singleshot_timer,
  VCPUOP_up,
  VCPU_SSHOTTMR_future,
  vcpu_runstate_info,
  vcpu_set_periodic_timer,
  vcpu_set_singleshot_timer,
} from "../include/public/vcpu.js";
import { XenErrno } from "../include/public/errno.js";
import { Suspend, VcpuState, type Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";
import { MILLISECS, NOW } from "./time.js";

const RUNSTATE_OF: Record<VcpuState, number> = {
  [VcpuState.Offline]: RUNSTATE_offline,
  [VcpuState.Runnable]: RUNSTATE_runnable,
  [VcpuState.Running]: RUNSTATE_running,
  [VcpuState.Blocked]: RUNSTATE_blocked,
};

/** vcpu_op(cmd, vcpuid, arg) */
export function do_vcpu_op(
  hv: Hypervisor,
  v: Vcpu,
  cmd: number,
  vcpuid: number,
  arg: number,
): number {
  const d = v.domain;
  const target = d.vcpus[vcpuid >>> 0];
  if (!target) return -XenErrno.ENOENT;
  const mem = d.mem;
  arg >>>= 0;
  switch (cmd) {
    case VCPUOP_up:
      // A wasm32 vCPU's "initial context" is the kernel's _start_vcpu export.
      if (!target.startable) return -XenErrno.EINVAL;
      hv.vcpuUp(target);
      return 0;
    case VCPUOP_down:
      if (target === v) v.suspend = Suspend.Down;
      else hv.vcpuDown(target);
      return 0;
    case VCPUOP_is_up:
      return target.state === VcpuState.Offline ? 0 : 1;
    case VCPUOP_get_runstate_info: {
      const f = vcpu_runstate_info.fields;
      mem.check(arg, vcpu_runstate_info.size);
      mem.setU32(arg + f.state.offset, RUNSTATE_OF[target.state]);
      mem.setU64(arg + f.state_entry_time.offset, target.domain.stime());
      mem.setU64(arg + f.time.offset, target.cpuTimeNs);
      for (let i = 1; i < 4; i++) mem.setU64(arg + f.time.offset + i * 8, 0);
      return 0;
    }
    case VCPUOP_set_periodic_timer: {
      const period = mem.u64(arg + vcpu_set_periodic_timer.fields.period_ns.offset);
      if (period < MILLISECS(1)) return -XenErrno.EINVAL;
      target.periodNs = period;
      hv.timers.set(target.periodic, NOW() + period);
      return 0;
    }
    case VCPUOP_stop_periodic_timer:
      target.periodNs = 0;
      hv.timers.stop(target.periodic);
      return 0;
    case VCPUOP_set_singleshot_timer: {
      if (target !== v) return -XenErrno.EINVAL;
      const f = vcpu_set_singleshot_timer.fields;
      mem.check(arg, vcpu_set_singleshot_timer.size);
      const timeout = mem.u64(arg + f.timeout_abs_ns.offset);
      const flags = mem.u32(arg + f.flags.offset);
      const now = v.domain.stime();
      if (flags & VCPU_SSHOTTMR_future && timeout < now) return -XenErrno.ETIME;
      hv.timers.set(v.singleshot, v.domain.hostTime(Math.max(timeout, now)));
      return 0;
    }
    case VCPUOP_stop_singleshot_timer:
      if (target !== v) return -XenErrno.EINVAL;
      hv.timers.stop(v.singleshot);
      return 0;
    default:
      return -XenErrno.ENOSYS;
  }
}
