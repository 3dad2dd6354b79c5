/**
 * sysctl (Xen's `common/sysctl.c`): the toolstack's host-wide control, for
 * privileged domains only. Implemented: readconsole (`xl dmesg`), physinfo
 * (`xl info`), sched_id, getdomaininfolist (`xl list`), debug_keys
 * (`xl debug-keys`).
 *
 * Layouts: `xen/include/public/sysctl.ts`.
 */
import { hostCpu } from "../arch/wasm32/host_cpu.js";
import * as SC from "../include/public/sysctl.js";
import { XEN_SCHEDULER_CREDIT, xen_domctl_getdomaininfo } from "../include/public/domctl.js";
import { XenErrno } from "../include/public/errno.js";
import { PAGE_SIZE } from "../include/xen/mm.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";
import { NR_CPUS, getdomaininfo } from "./domctl.js";
import { TRACE_CPUS } from "./trace.js";

const encoder = new TextEncoder();

/** sysctl(u_sysctl) */
export function do_sysctl(hv: Hypervisor, v: Vcpu, arg: number): number {
  const caller = v.domain;
  if (!caller.privileged) return -XenErrno.EPERM;
  const mem = caller.mem;
  arg >>>= 0;
  const h = SC.xen_sysctl.fields;
  mem.check(arg, SC.xen_sysctl.size);
  if (mem.u32(arg + h.interface_version.offset) !== SC.XEN_SYSCTL_INTERFACE_VERSION) {
    return -XenErrno.EACCES;
  }
  const u = arg + h.u.offset;
  switch (mem.u32(arg + h.cmd.offset)) {
    case SC.XEN_SYSCTL_tbuf_op: {
      const f = SC.xen_sysctl_tbuf_op.fields;
      const t = hv.trace;
      switch (mem.u32(u + f.cmd.offset)) {
        case SC.XEN_SYSCTL_TBUFOP_get_info: {
          const info = t.info();
          mem.setU32(u + f.evt_mask.offset, t.evtMask);
          mem.setU64(u + f.buffer_mfn.offset, info.mfn);
          mem.setU32(u + f.size.offset, info.size);
          return 0;
        }
        case SC.XEN_SYSCTL_TBUFOP_set_cpu_mask: {
          // A xenctl_bitmap (a handle and a bit count): its first TRACE_CPUS bits.
          const bits = mem.u64(u + f.cpu_mask.offset);
          const n = Math.min(mem.u32(u + f.cpu_mask.offset + 8), TRACE_CPUS);
          let m = 0;
          if (bits !== 0 && n > 0) {
            mem.check(bits, Math.ceil(n / 8));
            for (let i = 0; i < n; i++) if ((mem.u8[bits + (i >> 3)]! >> (i & 7)) & 1) m |= 1 << i;
          }
          t.cpuMask = m;
          return 0;
        }
        case SC.XEN_SYSCTL_TBUFOP_set_evt_mask:
          t.evtMask = mem.u32(u + f.evt_mask.offset);
          return 0;
        case SC.XEN_SYSCTL_TBUFOP_set_size:
          return t.setSize(mem.u32(u + f.size.offset));
        case SC.XEN_SYSCTL_TBUFOP_enable:
          return t.enable();
        case SC.XEN_SYSCTL_TBUFOP_disable:
          t.disable();
          return 0;
        default:
          return -XenErrno.EINVAL;
      }
    }
    case SC.XEN_SYSCTL_readconsole: {
      const f = SC.xen_sysctl_readconsole.fields;
      const incremental = mem.u8[u + f.incremental.offset] !== 0;
      const clear = mem.u8[u + f.clear.offset] !== 0;
      const buf = mem.u64(u + f.buffer.offset);
      const count = mem.u32(u + f.count.offset);
      const ring = encoder.encode(hv.console.read(false));
      const start = incremental ? Math.min(mem.u32(u + f.index.offset), ring.length) : 0;
      const n = Math.min(count, ring.length - start);
      mem.check(buf, n);
      mem.write(buf, ring.subarray(start, start + n));
      mem.setU32(u + f.index.offset, start + n);
      mem.setU32(u + f.count.offset, n);
      if (clear) hv.console.read(true);
      return 0;
    }
    case SC.XEN_SYSCTL_physinfo: {
      const f = SC.xen_sysctl_physinfo.fields;
      mem.clear(u, SC.xen_sysctl_physinfo.size);
      mem.setU32(u + f.threads_per_core.offset, 1);
      mem.setU32(u + f.cores_per_socket.offset, NR_CPUS);
      mem.setU32(u + f.nr_cpus.offset, NR_CPUS);
      mem.setU32(u + f.max_cpu_id.offset, NR_CPUS - 1);
      mem.setU32(u + f.nr_nodes.offset, 1);
      mem.setU32(u + f.max_node_id.offset, 0);
      const cpu = hostCpu();
      mem.setU32(u + f.cpu_khz.offset, cpu.khz);
      cpu.hwCaps.forEach((w, i) => mem.setU32(u + f.hw_cap.offset + 4 * i, w));
      const total = hv.config.memoryBytes / PAGE_SIZE;
      mem.setU64(u + f.total_pages.offset, total);
      mem.setU64(u + f.free_pages.offset, hv.frames.freeFrames);
      mem.setU64(u + f.max_mfn.offset, total - 1);
      return 0;
    }
    case SC.XEN_SYSCTL_sched_id:
      mem.setU32(u + SC.xen_sysctl_sched_id.fields.sched_id.offset, XEN_SCHEDULER_CREDIT);
      return 0;
    case SC.XEN_SYSCTL_getdomaininfolist: {
      const f = SC.xen_sysctl_getdomaininfolist.fields;
      const first = mem.u16(u + f.first_domain.offset);
      const max = mem.u32(u + f.max_domains.offset);
      const buf = mem.u64(u + f.buffer.offset);
      const all = [hv.dom0, ...hv.domains.values()]
        .filter((d) => d.domid >= first)
        .sort((a, b) => a.domid - b.domid);
      const n = Math.min(max, all.length);
      mem.check(buf, n * xen_domctl_getdomaininfo.size);
      for (let i = 0; i < n; i++) {
        getdomaininfo(hv, all[i]!, mem, buf + i * xen_domctl_getdomaininfo.size);
      }
      mem.setU32(u + f.num_domains.offset, n);
      return 0;
    }
    case SC.XEN_SYSCTL_debug_keys: {
      const f = SC.xen_sysctl_debug_keys.fields;
      const n = mem.u32(u + f.nr_keys.offset);
      if (n > 256) return -XenErrno.EINVAL;
      const keys = mem.read(mem.u64(u + f.keys.offset), n);
      hv.debugKeys(String.fromCharCode(...keys));
      return 0;
    }
    default:
      return -XenErrno.ENOSYS;
  }
}
