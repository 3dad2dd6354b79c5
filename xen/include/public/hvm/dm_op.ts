/**
 * Device-model operations (`dm_op`), following Xen's
 * `xen/include/public/hvm/dm_op.h`: a device model (tsxen's QEMU, in Dom0)
 * registers ioreq servers for an HVM domain, claims I/O ranges, and asks for
 * the domain's shutdown. `HYPERVISOR_dm_op(domid, nr_bufs, bufs)` takes an
 * array of xen_dm_op_buf (a guest handle and a size, 16 bytes on wasm32 as
 * on Arm); the first buffer holds the struct xen_dm_op.
 */
import { struct } from "../layout.js";

export const XEN_DMOP_create_ioreq_server = 1;
export const XEN_DMOP_get_ioreq_server_info = 2;
export const XEN_DMOP_map_io_range_to_ioreq_server = 3;
export const XEN_DMOP_unmap_io_range_from_ioreq_server = 4;
export const XEN_DMOP_set_ioreq_server_state = 5;
export const XEN_DMOP_destroy_ioreq_server = 6;
export const XEN_DMOP_track_dirty_vram = 7;
export const XEN_DMOP_set_pci_intx_level = 8;
export const XEN_DMOP_set_isa_irq_level = 9;
export const XEN_DMOP_set_pci_link_route = 10;
export const XEN_DMOP_modified_memory = 11;
export const XEN_DMOP_set_mem_type = 12;
export const XEN_DMOP_inject_event = 13;
export const XEN_DMOP_inject_msi = 14;
export const XEN_DMOP_map_mem_type_to_ioreq_server = 15;
export const XEN_DMOP_remote_shutdown = 16;
export const XEN_DMOP_relocate_memory = 17;
export const XEN_DMOP_pin_memory_cacheattr = 18;
export const XEN_DMOP_set_irq_level = 19;
export const XEN_DMOP_nr_vcpus = 20;

/** create_ioreq_server.handle_bufioreq */
export const HVM_IOREQSRV_BUFIOREQ_OFF = 0;
export const HVM_IOREQSRV_BUFIOREQ_LEGACY = 1;
export const HVM_IOREQSRV_BUFIOREQ_ATOMIC = 2;

/** get_ioreq_server_info.flags: do not map the pages into the guest's physmap. */
export const _XEN_DMOP_no_gfns = 0;
export const XEN_DMOP_no_gfns = 1 << _XEN_DMOP_no_gfns;

/** xen_dm_op_ioreq_server_range.type */
export const XEN_DMOP_IO_RANGE_PORT = 0;
export const XEN_DMOP_IO_RANGE_MEMORY = 1;
export const XEN_DMOP_IO_RANGE_PCI = 2;

/** struct xen_dm_op_buf */
export const xen_dm_op_buf = struct("xen_dm_op_buf", [
  ["h", 8],
  ["size", 8],
]);

/** struct xen_dm_op: op, pad, then the union (its largest member, inject_event, is 24 bytes). */
export const xen_dm_op = struct("xen_dm_op", [
  ["op", 4],
  ["pad", 4],
  ["u", 24, 8],
]);

/** The union members tsxen implements, at their offsets inside `u`. */
export const xen_dm_op_create_ioreq_server = struct("xen_dm_op_create_ioreq_server", [
  ["handle_bufioreq", 1],
  ["pad", 3, 1],
  ["id", 2],
]);
export const xen_dm_op_get_ioreq_server_info = struct("xen_dm_op_get_ioreq_server_info", [
  ["id", 2],
  ["flags", 2],
  ["bufioreq_port", 4],
  ["ioreq_gfn", 8],
  ["bufioreq_gfn", 8],
]);
export const xen_dm_op_ioreq_server_range = struct("xen_dm_op_ioreq_server_range", [
  ["id", 2],
  ["pad", 2],
  ["type", 4],
  ["start", 8],
  ["end", 8],
]);
export const xen_dm_op_set_ioreq_server_state = struct("xen_dm_op_set_ioreq_server_state", [
  ["id", 2],
  ["enabled", 1],
  ["pad", 1],
]);
export const xen_dm_op_destroy_ioreq_server = struct("xen_dm_op_destroy_ioreq_server", [
  ["id", 2],
  ["pad", 2],
]);
export const xen_dm_op_remote_shutdown = struct("xen_dm_op_remote_shutdown", [["reason", 4]]);
export const xen_dm_op_nr_vcpus = struct("xen_dm_op_nr_vcpus", [["vcpus", 4]]);
