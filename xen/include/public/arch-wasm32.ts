/**
 * The wasm32 architecture's guest-visible structures: start_info, shared_info,
 * vcpu_info and vcpu_time_info.
 *
 * Field order and names follow `xen/include/public/xen.h`. Where x86 and Arm
 * differ, wasm32 takes Arm's choice: `xen_ulong_t`, `xen_pfn_t` and every
 * `unsigned long` in these structs are 64-bit, so one layout serves 32- and
 * 64-bit guests. One exception, taken from x86: shared_info holds
 * XEN_LEGACY_MAX_VCPUS = 32 vcpu_info slots (Arm has 1), so SMP guests need no
 * VCPUOP_register_vcpu_info. The layouts are documented in docs/arch-wasm32.md.
 */
import { struct } from "./layout.js";

/** Largest number of vCPUs whose vcpu_info lives in shared_info. */
export const XEN_LEGACY_MAX_VCPUS = 32;

/** struct vcpu_time_info: 32 bytes. */
export const vcpu_time_info = struct("vcpu_time_info", [
  ["version", 4],
  ["pad0", 4],
  ["tsc_timestamp", 8],
  ["system_time", 8],
  ["tsc_to_system_mul", 4],
  ["tsc_shift", 1],
  ["flags", 1],
  ["pad1", 2, 1],
]);

/** struct vcpu_info: 48 bytes on wasm32 (no arch part, as on Arm). */
export const vcpu_info = struct("vcpu_info", [
  ["evtchn_upcall_pending", 1],
  ["evtchn_upcall_mask", 1],
  ["evtchn_pending_sel", 8],
  ["time", vcpu_time_info.size, 8],
]);

/** struct shared_info: 2,576 bytes, one page. */
export const shared_info = struct("shared_info", [
  ["vcpu_info", vcpu_info.size * XEN_LEGACY_MAX_VCPUS, 8],
  ["evtchn_pending", 8 * 64, 8],
  ["evtchn_mask", 8 * 64, 8],
  ["wc_version", 4],
  ["wc_sec", 4],
  ["wc_nsec", 4],
  ["wc_sec_hi", 4],
]);

/** struct start_info: 1,168 bytes. */
export const start_info = struct("start_info", [
  ["magic", 32, 1],
  ["nr_pages", 8],
  ["shared_info", 8],
  ["flags", 4],
  ["store_mfn", 8],
  ["store_evtchn", 4],
  ["console_mfn", 8],
  ["console_evtchn", 4],
  ["pt_base", 8],
  ["nr_pt_frames", 8],
  ["mfn_list", 8],
  ["mod_start", 8],
  ["mod_len", 8],
  ["cmd_line", 1024, 1],
  ["first_p2m_pfn", 8],
  ["nr_p2m_frames", 8],
]);

/** struct multicall_entry on wasm32 (Arm's layout): op, result, args[6], 64 bytes. */
export const multicall_entry = struct("multicall_entry", [
  ["op", 8],
  ["result", 8],
  ["args", 48, 8],
]);

/** vcpu_guest_context.flags: the vCPU is up (Xen's VGCF_online, bit 5). */
export const VGCF_online = 1 << 5;
/** vcpu_guest_context.entry: the export a vCPU starts at. */
export const WASM32_ENTRY_START = 0;
export const WASM32_ENTRY_START_VCPU = 1;
/** vcpu_guest_context.suspended: which contexts are unwound into their save areas. */
export const WASM32_SUSPENDED_MAIN = 1;
export const WASM32_SUSPENDED_UPCALL = 2;
/** vcpu_guest_context.cont_op's two 32-bit halves when no hypercall is to be made again (all ones). */
export const WASM32_NO_CONTINUATION_HALF = 0xffffffff;

/**
 * struct vcpu_guest_context on wasm32 (XEN_DOMCTL_getvcpucontext, and the
 * .xen_prstatus section of a dump-core file). A wasm32 vCPU has no
 * registers: what it is made of is the export it started at and that
 * export's argument, whether its main and upcall contexts are unwound into
 * their save areas in guest memory (docs/arch-wasm32.md, "Preemption and
 * the save areas"), and the hypercall it will make again when it resumes
 * (a continuation). An HVM vCPU is a thread whose stack is the engine's:
 * its context says only that it is online.
 */
export const vcpu_guest_context = struct("vcpu_guest_context", [
  ["flags", 8],
  ["entry", 4],
  ["arg", 4],
  ["runstate", 4],
  ["suspended", 4],
  ["save_area", 8],
  ["cont_op", 8],
  ["cont_args", 40, 8],
]);

/**
 * struct arch_wasm32_boot (wasm32 only, at pfn 5): what a PV guest would
 * otherwise read from xenstore before it has a xenstore connection.
 */
export const arch_wasm32_boot = struct("arch_wasm32_boot", [
  ["domid", 4],
  ["max_vcpus", 4],
]);
