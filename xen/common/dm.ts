/**
 * dm_op (Xen's `arch/x86/hvm/dm.c` and `common/ioreq.c`): what a device
 * model in Dom0 asks of the hypervisor for an HVM domain it serves. tsxen
 * implements the ioreq-server operations, remote_shutdown and nr_vcpus; the
 * interrupt, dirty-VRAM and memory-type operations have no wasm32 meaning
 * (a WASI program has no interrupt controller, framebuffer or caches) and
 * return -EOPNOTSUPP.
 *
 * `HYPERVISOR_dm_op(domid, nr_bufs, bufs)`: `bufs` is an array of
 * xen_dm_op_buf (at most two); the first holds struct xen_dm_op. A short
 * first buffer reads as zeros past its end and takes back only what fits,
 * as Xen's copy_buf_from/to_guest do. Layouts: public/hvm/dm_op.ts.
 */
import { XenErrno } from "../include/public/errno.js";
import * as DM from "../include/public/hvm/dm_op.js";
import { SHUTDOWN_MAX } from "../include/public/sched.js";
import {
  XENMEM_resource_ioreq_server,
  XENMEM_resource_ioreq_server_frame_ioreq,
  xen_mem_acquire_resource,
} from "../include/public/memory.js";
import { mfn_x } from "../include/xen/mm.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";
import type { Domain } from "./domain.js";
import { IoreqServer } from "./ioreq.js";

/** Xen's dmop_args holds two buffers. */
const MAX_BUFS = 2;

/** The HVM domain `domid` names for caller `v`, or an errno. */
function dmTarget(hv: Hypervisor, v: Vcpu, domid: number): Domain | number {
  if (!v.domain.privileged) return -XenErrno.EPERM;
  const d = hv.domainById(domid & 0xffff);
  if (!d || d === v.domain) return -XenErrno.ESRCH;
  if (!d.hvm) return -XenErrno.EINVAL;
  if (d.isDying) return -XenErrno.ESRCH;
  return d;
}

export function do_dm_op(
  hv: Hypervisor,
  v: Vcpu,
  domid: number,
  nrBufs: number,
  bufs: number,
): number {
  const target = dmTarget(hv, v, domid);
  if (typeof target === "number") return target;
  nrBufs >>>= 0;
  bufs >>>= 0;
  if (nrBufs === 0) return -XenErrno.EINVAL;
  if (nrBufs > MAX_BUFS) return -XenErrno.E2BIG;
  const mem = v.domain.mem;
  const B = DM.xen_dm_op_buf;
  mem.check(bufs, B.size * nrBufs);
  const h = mem.u64(bufs + B.fields.h.offset);
  const size = mem.u64(bufs + B.fields.size.offset);
  // The op, zero past what the caller's buffer holds.
  const op = new Uint8Array(DM.xen_dm_op.size);
  const n = Math.min(size, op.length);
  mem.check(h, n);
  op.set(mem.u8.subarray(h, h + n));
  const dv = new DataView(op.buffer);
  const rc = dmOp(hv, v.domain.domid, target, dv);
  // Results go back into what fits of the caller's buffer.
  if (rc === 0) mem.u8.set(op.subarray(0, n), h);
  return rc;
}

function dmOp(hv: Hypervisor, caller: number, d: Domain, op: DataView): number {
  const hvm = d.hvm!;
  const u = DM.xen_dm_op.fields.u.offset;
  const server = (id: number): IoreqServer | number => {
    const s = hvm.servers.get(id);
    if (!s) return -XenErrno.ENOENT;
    if (s.emulator !== caller) return -XenErrno.EPERM;
    return s;
  };
  switch (op.getUint32(DM.xen_dm_op.fields.op.offset, true)) {
    case DM.XEN_DMOP_create_ioreq_server: {
      const F = DM.xen_dm_op_create_ioreq_server.fields;
      // Buffered ioreqs carry posted writes to VGA memory; no wasm32 device has any.
      if (op.getUint8(u + F.handle_bufioreq.offset) !== DM.HVM_IOREQSRV_BUFIOREQ_OFF)
        return -XenErrno.EOPNOTSUPP;
      const id = hvm.freeServerId();
      if (id < 0) return id;
      const mfn = hv.frames.alloc(d.domid);
      if (mfn === undefined) return -XenErrno.ENOMEM;
      const s = new IoreqServer(id, caller, mfn);
      hvm.servers.set(id, s);
      hv.xenPages.set(mfn, new Uint8Array(s.page));
      op.setUint16(u + F.id.offset, id, true);
      hv.console.printk(`d${d.domid}: ioreq server ${id} created by d${caller}`);
      return 0;
    }
    case DM.XEN_DMOP_get_ioreq_server_info: {
      const F = DM.xen_dm_op_get_ioreq_server_info.fields;
      const s = server(op.getUint16(u + F.id.offset, true));
      if (typeof s === "number") return s;
      // The page is reached with XENMEM_acquire_resource only: a WASI
      // program's memory has no room for pages of Xen's.
      if (!(op.getUint16(u + F.flags.offset, true) & DM.XEN_DMOP_no_gfns))
        return -XenErrno.EOPNOTSUPP;
      op.setUint32(u + F.bufioreq_port.offset, 0, true);
      op.setBigUint64(u + F.ioreq_gfn.offset, 0n, true);
      op.setBigUint64(u + F.bufioreq_gfn.offset, 0n, true);
      return 0;
    }
    case DM.XEN_DMOP_map_io_range_to_ioreq_server:
    case DM.XEN_DMOP_unmap_io_range_from_ioreq_server: {
      const F = DM.xen_dm_op_ioreq_server_range.fields;
      const s = server(op.getUint16(u + F.id.offset, true));
      if (typeof s === "number") return s;
      const type = op.getUint32(u + F.type.offset, true);
      const start = Number(op.getBigUint64(u + F.start.offset, true));
      const end = Number(op.getBigUint64(u + F.end.offset, true));
      // wasm32 has one I/O space, the ports; no MMIO and no PCI.
      if (type !== DM.XEN_DMOP_IO_RANGE_PORT) return -XenErrno.EINVAL;
      if (start > end) return -XenErrno.EINVAL;
      const at = s.ranges.findIndex((r) => r.start === start && r.end === end);
      if (
        op.getUint32(DM.xen_dm_op.fields.op.offset, true) ===
        DM.XEN_DMOP_unmap_io_range_from_ioreq_server
      ) {
        if (at < 0) return -XenErrno.ENOENT;
        s.ranges.splice(at, 1);
      } else {
        if (s.ranges.some((r) => r.start <= end && start <= r.end)) return -XenErrno.EEXIST;
        s.ranges.push({ type, start, end });
      }
      hv.hvmRoutesChanged(d);
      return 0;
    }
    case DM.XEN_DMOP_set_ioreq_server_state: {
      const F = DM.xen_dm_op_set_ioreq_server_state.fields;
      const s = server(op.getUint16(u + F.id.offset, true));
      if (typeof s === "number") return s;
      s.enabled = op.getUint8(u + F.enabled.offset) !== 0;
      hv.hvmRoutesChanged(d);
      return 0;
    }
    case DM.XEN_DMOP_destroy_ioreq_server: {
      const F = DM.xen_dm_op_destroy_ioreq_server.fields;
      const s = server(op.getUint16(u + F.id.offset, true));
      if (typeof s === "number") return s;
      hv.destroyIoreqServer(d, s);
      return 0;
    }
    case DM.XEN_DMOP_remote_shutdown: {
      const reason = op.getUint32(u + DM.xen_dm_op_remote_shutdown.fields.reason.offset, true);
      if (reason > SHUTDOWN_MAX) return -XenErrno.EINVAL;
      hv.domainShutdown(d, reason);
      return 0;
    }
    case DM.XEN_DMOP_nr_vcpus:
      op.setUint32(u + DM.xen_dm_op_nr_vcpus.fields.vcpus.offset, d.vcpus.length, true);
      return 0;
    case DM.XEN_DMOP_track_dirty_vram:
    case DM.XEN_DMOP_set_pci_intx_level:
    case DM.XEN_DMOP_set_isa_irq_level:
    case DM.XEN_DMOP_set_pci_link_route:
    case DM.XEN_DMOP_modified_memory:
    case DM.XEN_DMOP_set_mem_type:
    case DM.XEN_DMOP_inject_event:
    case DM.XEN_DMOP_inject_msi:
    case DM.XEN_DMOP_map_mem_type_to_ioreq_server:
    case DM.XEN_DMOP_relocate_memory:
    case DM.XEN_DMOP_pin_memory_cacheattr:
    case DM.XEN_DMOP_set_irq_level:
      return -XenErrno.EOPNOTSUPP;
    default:
      return -XenErrno.EOPNOTSUPP;
  }
}

/**
 * XENMEM_acquire_resource for an ioreq server's pages: writes the machine
 * frames into frame_list (what a PV caller gets; Dom0's kernel then maps
 * them, `dom0/drivers/privcmd.ts`). Frame 0 is the buffered ioreq page,
 * which tsxen's servers do not have; frame 1 is the synchronous page.
 * Grant-table and vmtrace resources are not offered on wasm32.
 */
export function acquireResource(hv: Hypervisor, v: Vcpu, arg: number): number {
  const mem = v.domain.mem;
  const R = xen_mem_acquire_resource;
  const F = R.fields;
  mem.check(arg, R.size);
  const type = mem.u16(arg + F.type.offset);
  const nr = mem.u32(arg + F.nr_frames.offset);
  const frame = mem.u64(arg + F.frame.offset);
  const list = mem.u64(arg + F.frame_list.offset);
  if (type !== XENMEM_resource_ioreq_server) return -XenErrno.EOPNOTSUPP;
  const target = dmTarget(hv, v, mem.u16(arg + F.domid.offset));
  if (typeof target === "number") return target;
  // nr_frames 0 asks how many frames the resource has.
  if (nr === 0) {
    mem.setU32(arg + F.nr_frames.offset, 2);
    return 0;
  }
  const s = target.hvm!.servers.get(mem.u32(arg + F.id.offset));
  if (!s) return -XenErrno.ENOENT;
  if (s.emulator !== v.domain.domid) return -XenErrno.EPERM;
  if (frame !== XENMEM_resource_ioreq_server_frame_ioreq(0) || nr !== 1) return -XenErrno.EINVAL;
  mem.check(list, 8);
  mem.setU64(list, mfn_x(s.mfn));
  return 0;
}
