/**
 * hvm_op (Xen's `arch/x86/hvm/hvm.c`): set_param and get_param of an HVM
 * domain's parameters (public/hvm/params.h). The toolstack and device model
 * (Dom0) may read and set any; a guest reads the ones that tell it where its
 * PV interfaces are (xenstore and console pages and ports) and sets only its
 * event callback, as Xen's hvm_allow_get_param / hvm_allow_set_param allow.
 * Other HVMOP_* sub-ops (altp2m, pagetable dying, memory types) have no
 * wasm32 meaning: -ENOSYS.
 */
import { XenErrno } from "../include/public/errno.js";
import {
  HVMOP_get_param,
  HVMOP_set_param,
  HVM_NR_PARAMS,
  HVM_PARAM_CALLBACK_IRQ,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_PAE_ENABLED,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_STORE_PFN,
  HVM_PARAM_TIMER_MODE,
  xen_hvm_param,
} from "../include/public/hvm/hvm_op.js";
import { DOMID_SELF } from "../include/public/xen.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";

const GUEST_MAY_GET = new Set([
  HVM_PARAM_CALLBACK_IRQ,
  HVM_PARAM_STORE_PFN,
  HVM_PARAM_STORE_EVTCHN,
  HVM_PARAM_CONSOLE_PFN,
  HVM_PARAM_CONSOLE_EVTCHN,
  HVM_PARAM_PAE_ENABLED,
  HVM_PARAM_TIMER_MODE,
]);
const GUEST_MAY_SET = new Set([HVM_PARAM_CALLBACK_IRQ]);

export function do_hvm_op(hv: Hypervisor, v: Vcpu, op: number, arg: number): number {
  if (op !== HVMOP_set_param && op !== HVMOP_get_param) return -XenErrno.ENOSYS;
  const mem = v.domain.mem;
  const F = xen_hvm_param.fields;
  arg >>>= 0;
  mem.check(arg, xen_hvm_param.size);
  const domid = mem.u16(arg + F.domid.offset);
  const index = mem.u32(arg + F.index.offset);
  const self = domid === DOMID_SELF || domid === v.domain.domid;
  if (!self && !v.domain.privileged) return -XenErrno.EPERM;
  const d = self ? v.domain : hv.domainById(domid);
  if (!d) return -XenErrno.ESRCH;
  if (!d.hvm) return -XenErrno.EINVAL;
  if (index >= HVM_NR_PARAMS) return -XenErrno.EINVAL;
  const privileged = v.domain.privileged && !self;
  if (op === HVMOP_get_param) {
    if (!privileged && !GUEST_MAY_GET.has(index)) return -XenErrno.EPERM;
    mem.setU64(arg + F.value.offset, d.hvm.params[index]!);
    return 0;
  }
  if (!privileged && !GUEST_MAY_SET.has(index)) return -XenErrno.EPERM;
  d.hvm.params[index] = mem.u64(arg + F.value.offset);
  return 0;
}
