/**
 * event_channel_op: the guest-facing side of event_channel.ts. Sub-ops not
 * implemented yet (interdomain, IPI, FIFO: issue #3) return -ENOSYS.
 */
import {
  EVTCHNOP_bind_virq,
  EVTCHNOP_close,
  EVTCHNOP_status,
  EVTCHNOP_unmask,
} from "../include/public/event_channel.js";
import { XenErrno } from "../include/public/errno.js";
import { DOMID_SELF } from "../include/public/xen.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";

/** struct evtchn_status on wasm32: dom@0 port@4 status@8 vcpu@12 u@16, 24 bytes. */
const STATUS_SIZE = 24;

export function do_event_channel_op(hv: Hypervisor, v: Vcpu, cmd: number, arg: number): number {
  const d = v.domain;
  const mem = d.mem;
  arg >>>= 0;
  switch (cmd) {
    case EVTCHNOP_bind_virq: {
      mem.check(arg, 12);
      const port = d.evtchn.bindVirq(mem.u32(arg), mem.u32(arg + 4));
      if (port < 0) return port;
      mem.setU32(arg + 8, port);
      return 0;
    }
    case EVTCHNOP_close:
      return d.evtchn.close(mem.u32(arg));
    case EVTCHNOP_unmask:
      return d.evtchn.unmask(mem.u32(arg), hv.kick);
    case EVTCHNOP_status: {
      mem.check(arg, STATUS_SIZE);
      const dom = mem.u16(arg);
      if (dom !== DOMID_SELF && dom !== d.domid) return -XenErrno.EPERM;
      const st = d.evtchn.status(mem.u32(arg + 4));
      if (typeof st === "number") return st;
      mem.setU32(arg + 8, st.state);
      mem.setU32(arg + 12, st.vcpu);
      mem.setU32(arg + 16, st.virq);
      mem.setU32(arg + 20, 0);
      return 0;
    }
    default:
      return -XenErrno.ENOSYS;
  }
}
