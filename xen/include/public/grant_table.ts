/**
 * Grant table operations and v1 entry flags, following
 * `xen/include/public/grant_table.h` and Xen's `misc/grant-tables.txt`.
 */
import { struct } from "./layout.js";

export const GNTTAB_NR_RESERVED_ENTRIES = 8;
export const GNTTAB_RESERVED_CONSOLE = 0;
export const GNTTAB_RESERVED_XENSTORE = 1;

export const GTF_invalid = 0;
export const GTF_permit_access = 1;
export const GTF_accept_transfer = 2;
export const GTF_transitive = 3;
export const GTF_type_mask = 3;
export const GTF_readonly = 1 << 2;
export const GTF_reading = 1 << 3;
export const GTF_writing = 1 << 4;
export const GTF_PWT = 1 << 5;
export const GTF_PCD = 1 << 6;
export const GTF_PAT = 1 << 7;
export const GTF_sub_page = 1 << 8;
export const GTF_transfer_committed = 1 << 2;
export const GTF_transfer_completed = 1 << 3;

export const GNTTABOP_map_grant_ref = 0;
export const GNTTABOP_unmap_grant_ref = 1;
export const GNTTABOP_setup_table = 2;
export const GNTTABOP_dump_table = 3;
export const GNTTABOP_transfer = 4;
export const GNTTABOP_copy = 5;
export const GNTTABOP_query_size = 6;
export const GNTTABOP_unmap_and_replace = 7;
export const GNTTABOP_set_version = 8;
export const GNTTABOP_get_status_frames = 9;
export const GNTTABOP_get_version = 10;
export const GNTTABOP_swap_grant_ref = 11;
export const GNTTABOP_cache_flush = 12;

export const GNTCOPY_source_gref = 1 << 0;
export const GNTCOPY_dest_gref = 1 << 1;

export const GNTMAP_device_map = 1 << 0;
export const GNTMAP_host_map = 1 << 1;
export const GNTMAP_readonly = 1 << 2;
export const GNTMAP_application_map = 1 << 3;
export const GNTMAP_contains_pte = 1 << 4;

export const GNTST_okay = 0;
export const GNTST_general_error = -1;
export const GNTST_bad_domain = -2;
export const GNTST_bad_gntref = -3;
export const GNTST_bad_handle = -4;
export const GNTST_bad_virt_addr = -5;
export const GNTST_bad_dev_addr = -6;
export const GNTST_no_device_space = -7;
export const GNTST_permission_denied = -8;
export const GNTST_bad_page = -9;
export const GNTST_bad_copy_arg = -10;
export const GNTST_address_too_big = -11;
export const GNTST_eagain = -12;
export const GNTST_no_space = -13;

/** struct grant_entry_v1: 8 bytes per entry. */
export const grant_entry_v1 = struct("grant_entry_v1", [
  ["flags", 2],
  ["domid", 2],
  ["frame", 4],
]);

/*
 * Argument structs of grant_table_op on wasm32. XEN_GUEST_HANDLE and xen_pfn_t
 * are 64-bit, as on Arm, so a guest handle is an 8-aligned 64-bit field.
 */

/** struct gnttab_map_grant_ref: host_addr, flags, ref, dom in; status, handle, dev_bus_addr out. */
export const gnttab_map_grant_ref = struct("gnttab_map_grant_ref", [
  ["host_addr", 8],
  ["flags", 4],
  ["ref", 4],
  ["dom", 2],
  ["status", 2],
  ["handle", 4],
  ["dev_bus_addr", 8],
]);

/** struct gnttab_unmap_grant_ref: host_addr, dev_bus_addr, handle in; status out. */
export const gnttab_unmap_grant_ref = struct("gnttab_unmap_grant_ref", [
  ["host_addr", 8],
  ["dev_bus_addr", 8],
  ["handle", 4],
  ["status", 2],
]);

/** struct gnttab_setup_table: dom, nr_frames, frame_list in; status out. */
export const gnttab_setup_table = struct("gnttab_setup_table", [
  ["dom", 2],
  ["nr_frames", 4],
  ["status", 2],
  ["frame_list", 8],
]);

/** struct gnttab_dump_table: dom in; status out. */
export const gnttab_dump_table = struct("gnttab_dump_table", [
  ["dom", 2],
  ["status", 2],
]);

/** struct gnttab_copy_ptr: a grant ref or a gmfn (union, 64-bit), domid, offset. */
export const gnttab_copy_ptr = struct("gnttab_copy_ptr", [
  ["u", 8],
  ["domid", 2],
  ["offset", 2],
]);

/** struct gnttab_copy: source, dest, len, flags in; status out. */
export const gnttab_copy = struct("gnttab_copy", [
  ["source", gnttab_copy_ptr.size, 8],
  ["dest", gnttab_copy_ptr.size, 8],
  ["len", 2],
  ["flags", 2],
  ["status", 2],
]);

/** struct gnttab_query_size: dom in; nr_frames, max_nr_frames, status out. */
export const gnttab_query_size = struct("gnttab_query_size", [
  ["dom", 2],
  ["nr_frames", 4],
  ["max_nr_frames", 4],
  ["status", 2],
]);

/** struct gnttab_set_version: version in and out. */
export const gnttab_set_version = struct("gnttab_set_version", [["version", 4]]);

/** struct gnttab_get_version: dom in; version out. */
export const gnttab_get_version = struct("gnttab_get_version", [
  ["dom", 2],
  ["pad", 2],
  ["version", 4],
]);

/** The GNTST_* name of grant status `st` (e.g. -3 → "GNTST_bad_gntref"). */
export function gntstName(st: number): string {
  const names = [
    "GNTST_okay",
    "GNTST_general_error",
    "GNTST_bad_domain",
    "GNTST_bad_gntref",
    "GNTST_bad_handle",
    "GNTST_bad_virt_addr",
    "GNTST_bad_dev_addr",
    "GNTST_no_device_space",
    "GNTST_permission_denied",
    "GNTST_bad_page",
    "GNTST_bad_copy_arg",
    "GNTST_address_too_big",
    "GNTST_eagain",
    "GNTST_no_space",
  ];
  return names[-st] ?? `GNTST ${st}`;
}
