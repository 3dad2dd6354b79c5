/**
 * libxendevicemodel and libxenforeignmemory for Dom0's device models (Xen's
 * `tools/libs/devicemodel` and `tools/libs/foreignmemory`), over privcmd:
 * dm_op with its buffers in Dom0's bounce area, XENMEM_acquire_resource for
 * an ioreq server's page, and the foreign mapping of an HVM guest's memory.
 * Names follow xendevicemodel.h; errors carry the hypercall's errno.
 */
import { XenErrno } from "../../xen/include/public/errno.js";
import * as DM from "../../xen/include/public/hvm/dm_op.js";
import {
  XENMEM_acquire_resource,
  XENMEM_resource_ioreq_server,
  XENMEM_resource_ioreq_server_frame_ioreq,
  xen_mem_acquire_resource,
} from "../../xen/include/public/memory.js";
import { HYPERVISOR } from "../../xen/include/public/xen.js";
import {
  HVMOP_get_param,
  HVMOP_set_param,
  xen_hvm_param,
} from "../../xen/include/public/hvm/hvm_op.js";
import type { Privcmd } from "./privcmd.js";

export class DmOpError extends Error {
  constructor(
    readonly errno: number,
    what: string,
  ) {
    const name = Object.entries(XenErrno).find(([, v]) => v === errno)?.[0] ?? String(errno);
    super(`${what} failed: ${name}`);
  }
}

export class XenDevicemodel {
  constructor(private readonly privcmd: Privcmd) {}

  /** Runs one dm_op: `fill` writes the op's union, `read` reads it back. */
  private op(
    domid: number,
    op: number,
    what: string,
    fill: (dv: DataView, u: number) => void,
  ): DataView {
    const mem = this.privcmd.mem;
    const base = this.privcmd.bounce(128);
    const opAddr = base + 64;
    mem.setU64(base + DM.xen_dm_op_buf.fields.h.offset, opAddr);
    mem.setU64(base + DM.xen_dm_op_buf.fields.size.offset, DM.xen_dm_op.size);
    mem.setU32(opAddr + DM.xen_dm_op.fields.op.offset, op);
    const u = opAddr + DM.xen_dm_op.fields.u.offset;
    fill(mem.dv, u);
    const rc = this.privcmd.hypercall(HYPERVISOR.__HYPERVISOR_dm_op, domid, 1, base);
    if (rc < 0) throw new DmOpError(-rc, what);
    return new DataView(mem.u8.slice(u, u + 24).buffer);
  }

  /** xendevicemodel_create_ioreq_server (no buffered ioreqs); the server's id. */
  createIoreqServer(domid: number): number {
    const F = DM.xen_dm_op_create_ioreq_server.fields;
    const out = this.op(domid, DM.XEN_DMOP_create_ioreq_server, "create_ioreq_server", (dv, u) =>
      dv.setUint8(u + F.handle_bufioreq.offset, DM.HVM_IOREQSRV_BUFIOREQ_OFF),
    );
    return out.getUint16(F.id.offset, true);
  }

  /** xendevicemodel_map_io_range_to_ioreq_server for ports [start, end]. */
  mapIoRangeToIoreqServer(
    domid: number,
    id: number,
    start: number,
    end: number,
    unmap = false,
  ): void {
    const F = DM.xen_dm_op_ioreq_server_range.fields;
    const op = unmap
      ? DM.XEN_DMOP_unmap_io_range_from_ioreq_server
      : DM.XEN_DMOP_map_io_range_to_ioreq_server;
    this.op(
      domid,
      op,
      unmap ? "unmap_io_range_from_ioreq_server" : "map_io_range_to_ioreq_server",
      (dv, u) => {
        dv.setUint16(u + F.id.offset, id, true);
        dv.setUint32(u + F.type.offset, DM.XEN_DMOP_IO_RANGE_PORT, true);
        dv.setBigUint64(u + F.start.offset, BigInt(start), true);
        dv.setBigUint64(u + F.end.offset, BigInt(end), true);
      },
    );
  }

  /** xendevicemodel_set_ioreq_server_state */
  setIoreqServerState(domid: number, id: number, enabled: boolean): void {
    const F = DM.xen_dm_op_set_ioreq_server_state.fields;
    this.op(domid, DM.XEN_DMOP_set_ioreq_server_state, "set_ioreq_server_state", (dv, u) => {
      dv.setUint16(u + F.id.offset, id, true);
      dv.setUint8(u + F.enabled.offset, enabled ? 1 : 0);
    });
  }

  /** xendevicemodel_destroy_ioreq_server */
  destroyIoreqServer(domid: number, id: number): void {
    const F = DM.xen_dm_op_destroy_ioreq_server.fields;
    this.op(domid, DM.XEN_DMOP_destroy_ioreq_server, "destroy_ioreq_server", (dv, u) =>
      dv.setUint16(u + F.id.offset, id, true),
    );
  }

  /** xendevicemodel_shutdown: the guest asked to power off, reboot... (SHUTDOWN_*). */
  shutdown(domid: number, reason: number): void {
    this.op(domid, DM.XEN_DMOP_remote_shutdown, "remote_shutdown", (dv, u) =>
      dv.setUint32(u + DM.xen_dm_op_remote_shutdown.fields.reason.offset, reason, true),
    );
  }

  /**
   * xenforeignmemory_map_resource of an ioreq server's synchronous page:
   * the hypercall names the machine frame, and Dom0's kernel maps it.
   */
  mapIoreqPage(domid: number, id: number): SharedArrayBuffer {
    const mem = this.privcmd.mem;
    const R = xen_mem_acquire_resource.fields;
    const base = this.privcmd.bounce(128);
    const list = base + 64;
    mem.setU16(base + R.domid.offset, domid);
    mem.setU16(base + R.type.offset, XENMEM_resource_ioreq_server);
    mem.setU32(base + R.id.offset, id);
    mem.setU32(base + R.nr_frames.offset, 1);
    mem.setU64(base + R.frame.offset, XENMEM_resource_ioreq_server_frame_ioreq(0));
    mem.setU64(base + R.frame_list.offset, list);
    const rc = this.privcmd.hypercall(
      HYPERVISOR.__HYPERVISOR_memory_op,
      XENMEM_acquire_resource,
      base,
    );
    if (rc < 0) throw new DmOpError(-rc, "acquire_resource");
    const page = this.privcmd.hv.xenPages.get(mem.u64(list));
    if (!page) throw new DmOpError(XenErrno.EFAULT, "mapping the ioreq page");
    return page.buffer as SharedArrayBuffer;
  }

  /** xc_hvm_param_set (libxc's, over the same privcmd): sets HVM_PARAM `index` of `domid`. */
  setParam(domid: number, index: number, value: number): void {
    const mem = this.privcmd.mem;
    const F = xen_hvm_param.fields;
    const base = this.privcmd.bounce(xen_hvm_param.size);
    mem.setU16(base + F.domid.offset, domid);
    mem.setU32(base + F.index.offset, index);
    mem.setU64(base + F.value.offset, value);
    const rc = this.privcmd.hypercall(HYPERVISOR.__HYPERVISOR_hvm_op, HVMOP_set_param, base);
    if (rc < 0) throw new DmOpError(-rc, `hvm_param_set(${index})`);
  }

  /** xc_hvm_param_get */
  getParam(domid: number, index: number): number {
    const mem = this.privcmd.mem;
    const F = xen_hvm_param.fields;
    const base = this.privcmd.bounce(xen_hvm_param.size);
    mem.setU16(base + F.domid.offset, domid);
    mem.setU32(base + F.index.offset, index);
    const rc = this.privcmd.hypercall(HYPERVISOR.__HYPERVISOR_hvm_op, HVMOP_get_param, base);
    if (rc < 0) throw new DmOpError(-rc, `hvm_param_get(${index})`);
    return mem.u64(base + F.value.offset);
  }

  /** xenforeignmemory_map of the whole of an HVM guest's memory (QEMU's mapcache, whole). */
  mapForeignMemory(domid: number): WebAssembly.Memory {
    return this.privcmd.hv.mapForeignMemory(this.privcmd.dom0, domid);
  }
}
