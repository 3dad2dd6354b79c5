/**
 * event_channel_op(cmd, arg): the guest-facing side of event_channel.ts (Xen's
 * `do_event_channel_op`). Arguments are read from and results written to the
 * caller's memory through the layouts of `public/event_channel.ts`.
 *
 * Permissions follow Xen's default (dummy XSM) policy: a domain acts on its
 * own ports; a privileged domain (Dom0) may also allocate unbound ports in,
 * query and reset another domain. bind_pirq has no meaning on wasm32 and is
 * -ENOSYS.
 */
import { TRC_PV_EVTCHN_SEND } from "../include/public/trace.js";
import * as EV from "../include/public/event_channel.js";
import { XenErrno } from "../include/public/errno.js";
import { DOMID_SELF } from "../include/public/xen.js";
import { PAGE_SIZE, _pfn, pfn_to_paddr } from "../include/xen/mm.js";
import { isArchFrame } from "../arch/wasm32/config.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Domain } from "./domain.js";
import type { Hypervisor } from "./hypervisor.js";

/** Resolves `dom` for `caller`: itself, or any domain if privileged; -ESRCH / -EPERM. */
function target(hv: Hypervisor, caller: Domain, dom: number): Domain | number {
  if (dom === DOMID_SELF || dom === caller.domid) return caller;
  const d = hv.domainById(dom);
  if (!d) return -XenErrno.ESRCH;
  return caller.privileged ? d : -XenErrno.EPERM;
}

/** Guest address of gfn `gfn` of `d` if it may hold FIFO state; -EINVAL otherwise. */
function fifoPage(d: Domain, gfn: number): number {
  const p = _pfn(gfn);
  if (!Number.isSafeInteger(gfn) || !d.isPopulated(p) || isArchFrame(p)) return -XenErrno.EINVAL;
  return pfn_to_paddr(p);
}

export function do_event_channel_op(hv: Hypervisor, v: Vcpu, cmd: number, arg: number): number {
  const d = v.domain;
  const mem = d.mem;
  const ev = d.evtchn;
  arg >>>= 0;
  switch (cmd) {
    case EV.EVTCHNOP_alloc_unbound: {
      const f = EV.evtchn_alloc_unbound.fields;
      mem.check(arg, EV.evtchn_alloc_unbound.size);
      const t = target(hv, d, mem.u16(arg + f.dom.offset));
      if (typeof t === "number") return t;
      let remote = mem.u16(arg + f.remote_dom.offset);
      if (remote === DOMID_SELF) remote = d.domid;
      const port = t.evtchn.allocUnbound(remote);
      if (port < 0) return port;
      mem.setU32(arg + f.port.offset, port);
      return 0;
    }
    case EV.EVTCHNOP_bind_interdomain: {
      const f = EV.evtchn_bind_interdomain.fields;
      mem.check(arg, EV.evtchn_bind_interdomain.size);
      const rdom = mem.u16(arg + f.remote_dom.offset);
      const rd = rdom === DOMID_SELF ? d : hv.domainById(rdom);
      if (!rd || rd.isDying) return -XenErrno.ESRCH;
      const port = ev.bindInterdomain(rd.evtchn, mem.u32(arg + f.remote_port.offset));
      if (port < 0) return port;
      mem.setU32(arg + f.local_port.offset, port);
      return 0;
    }
    case EV.EVTCHNOP_bind_virq: {
      const f = EV.evtchn_bind_virq.fields;
      mem.check(arg, EV.evtchn_bind_virq.size);
      const port = ev.bindVirq(mem.u32(arg + f.virq.offset), mem.u32(arg + f.vcpu.offset));
      if (port < 0) return port;
      mem.setU32(arg + f.port.offset, port);
      return 0;
    }
    case EV.EVTCHNOP_bind_ipi: {
      const f = EV.evtchn_bind_ipi.fields;
      mem.check(arg, EV.evtchn_bind_ipi.size);
      const port = ev.bindIpi(mem.u32(arg + f.vcpu.offset));
      if (port < 0) return port;
      mem.setU32(arg + f.port.offset, port);
      return 0;
    }
    case EV.EVTCHNOP_bind_vcpu: {
      const f = EV.evtchn_bind_vcpu.fields;
      mem.check(arg, EV.evtchn_bind_vcpu.size);
      return ev.bindVcpu(mem.u32(arg + f.port.offset), mem.u32(arg + f.vcpu.offset));
    }
    case EV.EVTCHNOP_send: {
      const port = mem.u32(arg);
      if (hv.trace.on)
        hv.trace.record(TRC_PV_EVTCHN_SEND, [((d.domid << 16) | (port & 0xffff)) >>> 0]);
      return ev.send(port);
    }
    case EV.EVTCHNOP_close:
      return ev.close(mem.u32(arg));
    case EV.EVTCHNOP_unmask:
      return ev.unmask(mem.u32(arg));
    case EV.EVTCHNOP_status: {
      const f = EV.evtchn_status.fields;
      mem.check(arg, EV.evtchn_status.size);
      const t = target(hv, d, mem.u16(arg + f.dom.offset));
      if (typeof t === "number") return t;
      const st = t.evtchn.status(mem.u32(arg + f.port.offset));
      if (typeof st === "number") return st;
      mem.setU32(arg + f.status.offset, st.state);
      mem.setU32(arg + f.vcpu.offset, st.vcpu);
      mem.setU32(arg + f.u.offset, st.u);
      mem.setU32(arg + f.u_port.offset, st.uPort);
      return 0;
    }
    case EV.EVTCHNOP_reset:
    case EV.EVTCHNOP_reset_cont: {
      const t = target(hv, d, mem.u16(arg));
      if (typeof t === "number") return t;
      t.evtchn.reset();
      return 0;
    }
    case EV.EVTCHNOP_init_control: {
      const f = EV.evtchn_init_control.fields;
      mem.check(arg, EV.evtchn_init_control.size);
      mem.setU8(arg + f.link_bits.offset, EV.EVTCHN_FIFO_LINK_BITS);
      const vcpu = mem.u32(arg + f.vcpu.offset);
      const offset = mem.u32(arg + f.offset.offset);
      if (!d.vcpus[vcpu]) return -XenErrno.ENOENT;
      if (offset > PAGE_SIZE - EV.evtchn_fifo_control_block.size || offset % 8 !== 0) {
        return -XenErrno.EINVAL;
      }
      const page = fifoPage(d, mem.u64(arg + f.control_gfn.offset));
      if (page < 0) return page;
      return ev.initControl(vcpu, page + offset);
    }
    case EV.EVTCHNOP_expand_array: {
      mem.check(arg, EV.evtchn_expand_array.size);
      if (!ev.fifo) return -XenErrno.EOPNOTSUPP;
      const page = fifoPage(d, mem.u64(arg));
      if (page < 0) return page;
      return ev.expandArray(page);
    }
    case EV.EVTCHNOP_set_priority: {
      const f = EV.evtchn_set_priority.fields;
      mem.check(arg, EV.evtchn_set_priority.size);
      return ev.setPriority(mem.u32(arg + f.port.offset), mem.u32(arg + f.priority.offset));
    }
    default:
      return -XenErrno.ENOSYS;
  }
}
