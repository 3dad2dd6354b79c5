/**
 * Host-wide control for the toolstack (`sysctl`), following Xen 4.17's
 * `xen/include/public/sysctl.h`: the console ring (`xl dmesg`), the host's
 * resources (`xl info`), the scheduler's id, and the domain list
 * (`xl list`). Only a privileged domain may call it.
 */
import { struct } from "./layout.js";

export const XEN_SYSCTL_INTERFACE_VERSION = 0x00000015;

export const XEN_SYSCTL_readconsole = 1;
export const XEN_SYSCTL_tbuf_op = 2;
export const XEN_SYSCTL_physinfo = 3;
export const XEN_SYSCTL_sched_id = 4;
export const XEN_SYSCTL_getdomaininfolist = 6;
export const XEN_SYSCTL_debug_keys = 7;

/** struct xen_sysctl: the header and a 128-byte union of sub-op arguments. */
export const xen_sysctl = struct("xen_sysctl", [
  ["cmd", 4],
  ["interface_version", 4],
  ["u", 128, 8],
]);

/** struct xen_sysctl_readconsole */
export const xen_sysctl_readconsole = struct("xen_sysctl_readconsole", [
  ["clear", 1],
  ["incremental", 1],
  ["pad0", 1],
  ["pad1", 1],
  ["index", 4],
  ["buffer", 8],
  ["count", 4],
]);

/** struct xen_sysctl_physinfo */
export const xen_sysctl_physinfo = struct("xen_sysctl_physinfo", [
  ["threads_per_core", 4],
  ["cores_per_socket", 4],
  ["nr_cpus", 4],
  ["max_cpu_id", 4],
  ["nr_nodes", 4],
  ["max_node_id", 4],
  ["cpu_khz", 4],
  ["capabilities", 4],
  ["arch_capabilities", 4],
  ["pad", 4],
  ["total_pages", 8],
  ["free_pages", 8],
  ["scrub_pages", 8],
  ["outstanding_pages", 8],
  ["max_mfn", 8],
  ["hw_cap", 32, 4],
]);

/** struct xen_sysctl_sched_id */
export const xen_sysctl_sched_id = struct("xen_sysctl_sched_id", [["sched_id", 4]]);

/** struct xen_sysctl_getdomaininfolist */
export const xen_sysctl_getdomaininfolist = struct("xen_sysctl_getdomaininfolist", [
  ["first_domain", 2],
  ["max_domains", 4],
  ["buffer", 8],
  ["num_domains", 4],
]);

/** struct xen_sysctl_debug_keys */
export const xen_sysctl_debug_keys = struct("xen_sysctl_debug_keys", [
  ["keys", 8],
  ["nr_keys", 4],
]);

/** XEN_SYSCTL_tbuf_op's commands. */
export const XEN_SYSCTL_TBUFOP_get_info = 0;
export const XEN_SYSCTL_TBUFOP_set_cpu_mask = 1;
export const XEN_SYSCTL_TBUFOP_set_evt_mask = 2;
export const XEN_SYSCTL_TBUFOP_set_size = 3;
export const XEN_SYSCTL_TBUFOP_enable = 4;
export const XEN_SYSCTL_TBUFOP_disable = 5;

/** struct xen_sysctl_tbuf_op: the trace buffers' controls and where t_info is. */
export const xen_sysctl_tbuf_op = struct("xen_sysctl_tbuf_op", [
  ["cmd", 4],
  ["cpu_mask", 16, 8],
  ["evt_mask", 4],
  ["buffer_mfn", 8],
  ["size", 4],
]);
