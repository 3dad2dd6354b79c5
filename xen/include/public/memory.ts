/** Memory operations (`memory_op`), following `xen/include/public/memory.h`. */
import { struct } from "./layout.js";

export const XENMEM_increase_reservation = 0;
export const XENMEM_decrease_reservation = 1;
export const XENMEM_maximum_ram_page = 2;
export const XENMEM_current_reservation = 3;
export const XENMEM_maximum_reservation = 4;
export const XENMEM_populate_physmap = 6;
export const XENMEM_add_to_physmap = 7;
export const XENMEM_exchange = 11;
export const XENMEM_maximum_gpfn = 14;
export const XENMEM_remove_from_physmap = 15;

export const XENMAPSPACE_shared_info = 0;
export const XENMAPSPACE_grant_table = 1;
export const XENMAPSPACE_gmfn = 2;
export const XENMAPSPACE_gmfn_range = 3;
export const XENMAPSPACE_gmfn_foreign = 4;
export const XENMAPSPACE_dev_mmio = 5;

/** The low byte of mem_flags: address-width limit for the frames. */
export const XENMEMF_get_address_bits = (x: number): number => x & 0xff;

/** struct xen_memory_reservation (extent_start is a guest handle to xen_pfn_t[]). */
export const xen_memory_reservation = struct("xen_memory_reservation", [
  ["extent_start", 8],
  ["nr_extents", 8],
  ["extent_order", 4],
  ["mem_flags", 4],
  ["domid", 2],
]);
/** struct xen_add_to_physmap */
export const xen_add_to_physmap = struct("xen_add_to_physmap", [
  ["domid", 2],
  ["size", 2],
  ["space", 4],
  ["idx", 8],
  ["gpfn", 8],
]);

export const XENMEM_acquire_resource = 28;
export const XENMEM_resource_ioreq_server = 0;
export const XENMEM_resource_grant_table = 1;
export const XENMEM_resource_ioreq_server_frame_bufioreq = 0;
/** Frame id of an ioreq server's synchronous ioreq page n (XENMEM_resource_ioreq_server_frame_ioreq(n)). */
export const XENMEM_resource_ioreq_server_frame_ioreq = (n: number): number => 1 + n;

/** struct xen_mem_acquire_resource (frame_list is a guest handle to xen_pfn_t[]). */
export const xen_mem_acquire_resource = struct("xen_mem_acquire_resource", [
  ["domid", 2],
  ["type", 2],
  ["id", 4],
  ["nr_frames", 4],
  ["pad", 4],
  ["frame", 8],
  ["frame_list", 8],
]);
