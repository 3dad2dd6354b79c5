/**
 * Domain control for the toolstack (`domctl`), following Xen 4.17's
 * `xen/include/public/domctl.h`: the operations libxc's `xc_domain_*`
 * wrappers use to inspect and steer a domain. Only a privileged domain may
 * call it. tsxen implements the sub-ops listed in `xen/common/domctl.ts`;
 * the rest return -ENOSYS.
 */
import { struct } from "./layout.js";

export const XEN_DOMCTL_INTERFACE_VERSION = 0x00000015;

export const XEN_DOMCTL_createdomain = 1;
export const XEN_DOMCTL_destroydomain = 2;
export const XEN_DOMCTL_pausedomain = 3;
export const XEN_DOMCTL_unpausedomain = 4;
export const XEN_DOMCTL_getdomaininfo = 5;
export const XEN_DOMCTL_setvcpuaffinity = 9;
export const XEN_DOMCTL_shadow_op = 10;
export const XEN_DOMCTL_max_mem = 11;
export const XEN_DOMCTL_setvcpucontext = 12;
export const XEN_DOMCTL_getvcpucontext = 13;
export const XEN_DOMCTL_getvcpuinfo = 14;
export const XEN_DOMCTL_max_vcpus = 15;
export const XEN_DOMCTL_scheduler_op = 16;
export const XEN_DOMCTL_setdomainhandle = 17;
export const XEN_DOMCTL_getvcpuaffinity = 25;
export const XEN_DOMCTL_settimeoffset = 24;
export const XEN_DOMCTL_resumedomain = 27;
export const XEN_DOMCTL_gethvmcontext = 33;
export const XEN_DOMCTL_sethvmcontext = 34;

/** xen_domctl_shadow_op.op: log-dirty's sub-ops (the rest of shadow paging is x86's). */
export const XEN_DOMCTL_SHADOW_OP_OFF = 0;
export const XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY = 2;
export const XEN_DOMCTL_SHADOW_OP_CLEAN = 11;
export const XEN_DOMCTL_SHADOW_OP_PEEK = 12;
export const XEN_DOMCTL_SHADOW_OP_ENABLE = 32;
/** xen_domctl_shadow_op.mode for OP_ENABLE. */
export const XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY = 1 << 2;

/**
 * tsxen's wasm32 domctls (docs/arch-wasm32.md, "Building a domain"), numbered
 * clear of Xen's (1..86, and gdbsx's 1000..1003). A wasm32 domain's code is
 * a module, not bytes in its memory: the builder hands it over with
 * XEN_DOMCTL_wasm32_module. XEN_DOMCTL_wasm32_set_label names the domain in
 * the hypervisor's own messages (Xen's hypervisor knows ids only).
 */
export const XEN_DOMCTL_wasm32_module = 2000;
export const XEN_DOMCTL_wasm32_set_label = 2001;
/** A PV domain's context beyond its pages (domain_context.ts), as bytes: taken, and put into a new domain. */
export const XEN_DOMCTL_wasm32_getcontext = 2002;
export const XEN_DOMCTL_wasm32_setcontext = 2003;

/** xen_domctl_createdomain.flags (XEN_DOMCTL_CDF_*). */
export const XEN_DOMCTL_CDF_hvm = 1 << 0;
export const XEN_DOMCTL_CDF_hap = 1 << 1;
export const XEN_DOMCTL_CDF_s3_integrity = 1 << 2;
export const XEN_DOMCTL_CDF_oos_off = 1 << 3;
export const XEN_DOMCTL_CDF_xs_domain = 1 << 4;
export const XEN_DOMCTL_CDF_iommu = 1 << 5;
export const XEN_DOMCTL_CDF_nested_virt = 1 << 6;
export const XEN_DOMCTL_CDF_vpmu = 1 << 7;
/** The grant table version asked for: grant_opts' low 4 bits. */
export const XEN_DOMCTL_GRANT_version_mask = 0xf;

/** xen_domctl_wasm32_module.op */
export const XEN_DOMCTL_WASM32_MODULE_bind = 0;
export const XEN_DOMCTL_WASM32_MODULE_upload = 1;
/**
 * Makes the instances of the bound module for the domain's vCPUs now,
 * while it is paused with every vCPU offline: a migration's receiver asks
 * once the pages have come, so that WASM32_CONTEXT, inside the guest's
 * downtime, only puts state back. Optional (a vCPU brought up or restored
 * without one gets it then); -EINVAL without a bound module, -EBUSY when
 * a vCPU runs.
 */
export const XEN_DOMCTL_WASM32_MODULE_instantiate = 2;
/** xen_domctl_wasm32_module.flags (OUT, bind): what the module exports. */
export const XEN_DOMCTL_WASM32_MODULE_has_callback = 1 << 0;
export const XEN_DOMCTL_WASM32_MODULE_has_start_vcpu = 1 << 1;
/**
 * xen_domctl_wasm32_module.flags (IN, upload and bind): the module is a WASI
 * program for an HVM domain (docs/hvm.md), made saveable (nomigrate=0) with
 * `saveable`; (OUT, bind) it has PV drivers (it imports xen.hypercall).
 */
export const XEN_DOMCTL_WASM32_MODULE_hvm = 1 << 2;
export const XEN_DOMCTL_WASM32_MODULE_saveable = 1 << 3;
export const XEN_DOMCTL_WASM32_MODULE_pv_drivers = 1 << 4;

/** getdomaininfo's flags: bit numbers and masks. */
export const _XEN_DOMINF_dying = 0;
export const XEN_DOMINF_dying = 1 << 0;
export const _XEN_DOMINF_hvm_guest = 1;
export const XEN_DOMINF_hvm_guest = 1 << 1;
export const _XEN_DOMINF_shutdown = 2;
export const XEN_DOMINF_shutdown = 1 << 2;
export const _XEN_DOMINF_paused = 3;
export const XEN_DOMINF_paused = 1 << 3;
export const _XEN_DOMINF_blocked = 4;
export const XEN_DOMINF_blocked = 1 << 4;
export const _XEN_DOMINF_running = 5;
export const XEN_DOMINF_running = 1 << 5;
export const _XEN_DOMINF_debugged = 6;
export const XEN_DOMINF_debugged = 1 << 6;
export const _XEN_DOMINF_xs_domain = 7;
export const XEN_DOMINF_xs_domain = 1 << 7;
export const _XEN_DOMINF_hap = 8;
export const XEN_DOMINF_hap = 1 << 8;
/** The shutdown reason sits in flags bits 16..23. */
export const XEN_DOMINF_shutdownmask = 255;
export const XEN_DOMINF_shutdownshift = 16;

export const _XEN_VCPUAFFINITY_HARD = 0;
export const XEN_VCPUAFFINITY_HARD = 1 << 0;
export const _XEN_VCPUAFFINITY_SOFT = 1;
export const XEN_VCPUAFFINITY_SOFT = 1 << 1;
export const _XEN_VCPUAFFINITY_FORCE = 2;
export const XEN_VCPUAFFINITY_FORCE = 1 << 2;

export const XEN_SCHEDULER_CREDIT = 5;
export const XEN_SCHEDULER_CREDIT2 = 6;
export const XEN_SCHEDULER_ARINC653 = 7;
export const XEN_SCHEDULER_RTDS = 8;
export const XEN_SCHEDULER_NULL = 9;

export const XEN_DOMCTL_SCHEDOP_putinfo = 0;
export const XEN_DOMCTL_SCHEDOP_getinfo = 1;

/** struct xen_domctl: the header and a 128-byte union of sub-op arguments. */
export const xen_domctl = struct("xen_domctl", [
  ["cmd", 4],
  ["interface_version", 4],
  ["domain", 2],
  ["_pad", 6, 2],
  ["u", 128, 8],
]);

/**
 * struct xen_arch_domainconfig for wasm32: one reserved word (x86 has
 * emulation_flags and misc_flags here), kept at x86's size.
 */
export const xen_arch_domainconfig = struct("xen_arch_domainconfig", [
  ["flags", 4],
  ["_reserved", 4],
]);

/**
 * struct xen_domctl_createdomain (IN; the new domid comes back in the
 * xen_domctl header's `domain`: 0 there asks the hypervisor to choose).
 */
export const xen_domctl_createdomain = struct("xen_domctl_createdomain", [
  ["ssidref", 4],
  ["handle", 16, 1],
  ["flags", 4],
  ["iommu_opts", 4],
  ["max_vcpus", 4],
  ["max_evtchn_port", 4],
  ["max_grant_frames", 4],
  ["max_maptrack_frames", 4],
  ["grant_opts", 4],
  ["vmtrace_size", 4],
  ["cpupool_id", 4],
  ["arch", xen_arch_domainconfig.size, 4],
]);

/** struct xen_domctl_getdomaininfo */
export const xen_domctl_getdomaininfo = struct("xen_domctl_getdomaininfo", [
  ["domain", 2],
  ["pad1", 2],
  ["flags", 4],
  ["tot_pages", 8],
  ["max_pages", 8],
  ["outstanding_pages", 8],
  ["shr_pages", 8],
  ["paged_pages", 8],
  ["shared_info_frame", 8],
  ["cpu_time", 8],
  ["nr_online_vcpus", 4],
  ["max_vcpu_id", 4],
  ["ssidref", 4],
  ["handle", 16, 1],
  ["cpupool", 4],
  ["gpaddr_bits", 1],
  ["pad2", 7, 1],
  ["arch_config", xen_arch_domainconfig.size, 4],
]);

/** struct xen_domctl_shadow_op (with xen_domctl_shadow_op_stats at `stats`). */
export const xen_domctl_shadow_op = struct("xen_domctl_shadow_op", [
  ["op", 4],
  ["mode", 4],
  ["mb", 4],
  ["dirty_bitmap", 8],
  ["pages", 8],
  ["fault_count", 4],
  ["dirty_count", 4],
]);

/** struct xen_domctl_max_mem */
export const xen_domctl_max_mem = struct("xen_domctl_max_mem", [["max_memkb", 8]]);

/** struct xen_domctl_settimeoffset: seconds added to the domain's wallclock (an HVM guest's RTC). */
export const xen_domctl_settimeoffset = struct("xen_domctl_settimeoffset", [
  ["time_offset_seconds", 8],
]);

/**
 * struct xen_domctl_hvmcontext: `size` bytes at `buffer`. On wasm32 the
 * context is a WASM32_HVM_CONTEXT (xen/common/hvm_context.ts,
 * docs/save-format.md): the program's clock, memory size, globals and
 * unwound stack.
 */
export const xen_domctl_hvmcontext = struct("xen_domctl_hvmcontext", [
  ["size", 4],
  ["_pad", 4],
  ["buffer", 8],
]);

/** struct xen_domctl_getvcpuinfo */
export const xen_domctl_getvcpuinfo = struct("xen_domctl_getvcpuinfo", [
  ["vcpu", 4],
  ["online", 1],
  ["blocked", 1],
  ["running", 1],
  ["cpu_time", 8],
  ["cpu", 4],
]);

/** struct xen_domctl_vcpucontext: the vCPU, and a handle to its vcpu_guest_context. */
export const xen_domctl_vcpucontext = struct("xen_domctl_vcpucontext", [
  ["vcpu", 4],
  ["ctxt", 8],
]);

/** struct xenctl_bitmap (xen.h): a guest handle to the bits and their count. */
export const xenctl_bitmap = struct("xenctl_bitmap", [
  ["bitmap", 8],
  ["nr_bits", 4],
]);

/** struct xen_domctl_vcpuaffinity */
export const xen_domctl_vcpuaffinity = struct("xen_domctl_vcpuaffinity", [
  ["vcpu", 4],
  ["flags", 4],
  ["cpumap_hard", xenctl_bitmap.size, 8],
  ["cpumap_soft", xenctl_bitmap.size, 8],
]);

/** struct xen_domctl_max_vcpus */
export const xen_domctl_max_vcpus = struct("xen_domctl_max_vcpus", [["max", 4]]);

/** struct xen_domctl_sched_credit */
export const xen_domctl_sched_credit = struct("xen_domctl_sched_credit", [
  ["weight", 2],
  ["cap", 2],
]);

/** struct xen_domctl_scheduler_op (the union's largest member is 16 bytes). */
export const xen_domctl_scheduler_op = struct("xen_domctl_scheduler_op", [
  ["sched_id", 4],
  ["cmd", 4],
  ["u", 16, 8],
]);

/** struct xen_domctl_setdomainhandle */
export const xen_domctl_setdomainhandle = struct("xen_domctl_setdomainhandle", [["handle", 16, 1]]);

/**
 * struct xen_domctl_wasm32_module (tsxen, wasm32). The hypervisor keeps
 * every module it has checked and compiled, by the sha256 of its bytes as
 * built. `bind` gives the domain the module named by `sha256`: 0, with
 * `flags` and `min_pages` (its memory import's minimum, in 64 KiB pages)
 * filled in; -ENOENT when the hypervisor does not have it; -EAGAIN while it
 * is still checking it (the caller retries, as libxc retries
 * XEN_DOMCTL_destroydomain); -EINVAL when it refused it, the reason written
 * to `buffer` (at most `len` bytes, NUL-terminated). `upload` gives the
 * hypervisor bytes `offset`..`offset + len` of the module of `size` bytes
 * from `buffer`; the last of them starts its check. `instantiate` (no
 * other field) makes the bound module's vCPU instances ahead of time.
 */
export const xen_domctl_wasm32_module = struct("xen_domctl_wasm32_module", [
  ["op", 4],
  ["flags", 4],
  ["sha256", 32, 1],
  ["size", 8],
  ["offset", 8],
  ["buffer", 8],
  ["len", 4],
  ["min_pages", 4],
]);

/** struct xen_domctl_wasm32_set_label (tsxen, wasm32): the name, `len` bytes of UTF-8 at `label`. */
export const xen_domctl_wasm32_set_label = struct("xen_domctl_wasm32_set_label", [
  ["label", 8],
  ["len", 4],
]);

/**
 * struct xen_domctl_wasm32_context (tsxen, wasm32): a buffer of `size`
 * bytes. getcontext with no buffer answers the size needed in `size`, and
 * with one too small -ENOBUFS and the size; setcontext reads `size` bytes.
 */
export const xen_domctl_wasm32_context = struct("xen_domctl_wasm32_context", [
  ["buffer", 8],
  ["size", 4],
  ["_pad", 4],
]);
