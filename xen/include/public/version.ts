/** Version queries (`xen_version`), following `xen/include/public/version.h`. */
import { struct } from "./layout.js";

export const XENVER_version = 0;
export const XENVER_extraversion = 1;
export const XENVER_compile_info = 2;
export const XENVER_capabilities = 3;
export const XENVER_changeset = 4;
export const XENVER_platform_parameters = 5;
export const XENVER_get_features = 6;
export const XENVER_pagesize = 7;
export const XENVER_guest_handle = 8;
export const XENVER_commandline = 9;
export const XENVER_build_id = 10;

/** Sizes of the fixed string buffers the queries fill. */
export const XEN_EXTRAVERSION_LEN = 16;
export const XEN_CAPABILITIES_INFO_LEN = 1024;
export const XEN_CHANGESET_INFO_LEN = 64;
export const XEN_COMMANDLINE_LEN = 1024;

/** struct xen_compile_info */
export const xen_compile_info = struct("xen_compile_info", [
  ["compiler", 64, 1],
  ["compile_by", 16, 1],
  ["compile_domain", 32, 1],
  ["compile_date", 32, 1],
]);
/** struct xen_platform_parameters */
export const xen_platform_parameters = struct("xen_platform_parameters", [["virt_start", 8]]);
/** struct xen_feature_info */
export const xen_feature_info = struct("xen_feature_info", [
  ["submap_idx", 4],
  ["submap", 4],
]);

/** Feature flags (`features.h`) that a wasm32 guest sees. */
export const XENFEAT_writable_page_tables = 0;
export const XENFEAT_writable_descriptor_tables = 1;
export const XENFEAT_auto_translated_physmap = 2;
export const XENFEAT_supervisor_mode_kernel = 3;
export const XENFEAT_dom0 = 11;
export const XENFEAT_NR_SUBMAPS = 1;
