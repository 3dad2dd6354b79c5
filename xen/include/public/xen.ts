/**
 * Hypercall numbers and core constants of Xen's guest ABI.
 *
 * Follows Xen's public header `xen/include/public/xen.h` (Debian `libxen-dev`:
 * /usr/include/xen/xen.h). Numbers are Xen's; the notes are tsxen's own and say
 * what each call is for and whether tsxen's wasm32 architecture implements it.
 */

/** Hypercall numbers (`__HYPERVISOR_*`), with tsxen's status for each. */
export const HYPERCALLS = {
  __HYPERVISOR_set_trap_table: [0, "x86 trap handler table; no traps to route on wasm", false],
  __HYPERVISOR_mmu_update: [1, "x86 page-table writes; wasm has no page tables", false],
  __HYPERVISOR_set_gdt: [2, "x86 segment descriptor table; no segments on wasm", false],
  __HYPERVISOR_stack_switch: [3, "x86 kernel stack switch; wasm stacks are the engine's", false],
  __HYPERVISOR_set_callbacks: [4, "x86 event and failsafe callbacks; wasm uses an export", false],
  __HYPERVISOR_fpu_taskswitch: [5, "x86 lazy FPU switching; nothing to switch on wasm", false],
  __HYPERVISOR_sched_op_compat: [6, "old sched_op form; guests use sched_op (29)", false],
  __HYPERVISOR_platform_op: [7, "host platform control for Dom0 (dom0_op)", false],
  __HYPERVISOR_set_debugreg: [8, "x86 debug registers; none on wasm", false],
  __HYPERVISOR_get_debugreg: [9, "x86 debug registers; none on wasm", false],
  __HYPERVISOR_update_descriptor: [10, "x86 segment descriptor update; no segments", false],
  __HYPERVISOR_memory_op: [12, "reservations, physmap and memory queries", true],
  __HYPERVISOR_multicall: [13, "a batch of hypercalls in one entry", true],
  __HYPERVISOR_update_va_mapping: [14, "x86 single PTE update; no page tables", false],
  __HYPERVISOR_set_timer_op: [15, "arm the vCPU's one-shot timer (absolute ns)", true],
  __HYPERVISOR_event_channel_op_compat: [16, "old event_channel_op form", false],
  __HYPERVISOR_xen_version: [17, "version, build and feature queries", true],
  __HYPERVISOR_console_io: [18, "the hypervisor console (read by xl dmesg)", true],
  __HYPERVISOR_physdev_op_compat: [19, "old physdev_op form", false],
  __HYPERVISOR_grant_table_op: [20, "grant tables (v1): share pages between domains", true],
  __HYPERVISOR_vm_assist: [21, "x86 paging assists; none apply to wasm", false],
  __HYPERVISOR_update_va_mapping_otherdomain: [22, "x86 foreign PTE update", false],
  __HYPERVISOR_iret: [23, "x86 return from guest exception", false],
  __HYPERVISOR_vcpu_op: [24, "vCPU bring-up, timers and runstate", true],
  __HYPERVISOR_set_segment_base: [25, "x86-64 FS/GS bases; no segments", false],
  __HYPERVISOR_mmuext_op: [26, "x86 TLB, pinning and LDT operations", false],
  __HYPERVISOR_xsm_op: [27, "Xen security module (FLASK) policy", false],
  __HYPERVISOR_nmi_op: [28, "x86 NMI callback registration", false],
  __HYPERVISOR_sched_op: [29, "yield, block, poll, shutdown", true],
  __HYPERVISOR_callback_op: [30, "x86 callback registration", false],
  __HYPERVISOR_xenoprof_op: [31, "profiling buffers", false],
  __HYPERVISOR_event_channel_op: [32, "event channels, 2-level and FIFO (no pirq)", true],
  __HYPERVISOR_physdev_op: [33, "physical device and IRQ control; no devices", false],
  __HYPERVISOR_hvm_op: [34, "HVM guest parameters (set_param, get_param)", true],
  __HYPERVISOR_sysctl: [35, "host-wide control for the toolstack", true],
  __HYPERVISOR_domctl: [36, "per-domain control for the toolstack", true],
  __HYPERVISOR_kexec_op: [37, "load and run a crash kernel", false],
  __HYPERVISOR_tmem_op: [38, "transcendent memory (removed from Xen)", false],
  __HYPERVISOR_argo_op: [39, "Argo inter-domain messaging", false],
  __HYPERVISOR_xenpmu_op: [40, "performance monitoring unit", false],
  __HYPERVISOR_dm_op: [41, "device-model operations on HVM guests (ioreq servers)", true],
  __HYPERVISOR_hypfs_op: [42, "hypervisor filesystem", false],
  __HYPERVISOR_arch_0: [48, "wasm32: refresh the vCPU's time info (the clock read)", true],
  __HYPERVISOR_arch_1: [49, "architecture-specific, unused on wasm32", false],
  __HYPERVISOR_arch_2: [50, "architecture-specific, unused on wasm32", false],
  __HYPERVISOR_arch_3: [51, "architecture-specific, unused on wasm32", false],
  __HYPERVISOR_arch_4: [52, "architecture-specific, unused on wasm32", false],
  __HYPERVISOR_arch_5: [53, "architecture-specific, unused on wasm32", false],
  __HYPERVISOR_arch_6: [54, "architecture-specific, unused on wasm32", false],
  __HYPERVISOR_arch_7: [55, "architecture-specific, unused on wasm32", false],
} as const satisfies Record<string, readonly [number, string, boolean]>;

export type HypercallName = keyof typeof HYPERCALLS;

/** Size of the hypercall table: numbers at or above it are never valid. */
export const NR_HYPERCALLS = 64;

/** The number of each hypercall, by its Xen name. */
export const HYPERVISOR = Object.fromEntries(
  Object.entries(HYPERCALLS).map(([k, v]) => [k, v[0]]),
) as { readonly [K in HypercallName]: (typeof HYPERCALLS)[K][0] };

/** The Xen name of hypercall number `nr` without its prefix, or `N (unassigned)`. */
export function hypercallName(nr: number): string {
  for (const [name, [n]] of Object.entries(HYPERCALLS)) if (n === nr) return name.slice(13);
  return `${nr} (unassigned)`;
}

/** Virtual IRQs (`VIRQ_*`): per-vCPU (V) or global, Dom0-bound (G) events. */
export const VIRQ_TIMER = 0;
export const VIRQ_DEBUG = 1;
export const VIRQ_CONSOLE = 2;
export const VIRQ_DOM_EXC = 3;
export const VIRQ_TBUF = 4;
export const VIRQ_DEBUGGER = 6;
export const VIRQ_XENOPROF = 7;
export const VIRQ_CON_RING = 8;
export const VIRQ_PCPU_STATE = 9;
export const VIRQ_MEM_EVENT = 10;
export const VIRQ_ARGO = 11;
export const VIRQ_ENOMEM = 12;
export const VIRQ_XENPMU = 13;
export const NR_VIRQS = 24;

/** console_io sub-ops. */
export const CONSOLEIO_write = 0;
export const CONSOLEIO_read = 1;

/** Domain ids: ordinary ids are below DOMID_FIRST_RESERVED. */
export const DOMID_FIRST_RESERVED = 0x7ff0;
export const DOMID_SELF = 0x7ff0;
export const DOMID_IO = 0x7ff1;
export const DOMID_XEN = 0x7ff2;
export const DOMID_COW = 0x7ff3;
export const DOMID_INVALID = 0x7ff4;
export const DOMID_IDLE = 0x7fff;

/** start_info flags. */
export const SIF_PRIVILEGED = 1 << 0;
export const SIF_INITDOMAIN = 1 << 1;
export const SIF_MULTIBOOT_MOD = 1 << 2;
export const SIF_MOD_START_PFN = 1 << 3;

/** Length of the guest command line in start_info, including its NUL. */
export const MAX_GUEST_CMDLINE = 1024;
