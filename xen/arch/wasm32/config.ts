/**
 * The wasm32 guest memory layout (the counterpart of an arch's `config.h`).
 *
 * A guest's pseudo-physical memory is its linear memory, 4 KiB frames numbered
 * from 0. The first 256 KiB belong to the architecture: the hypervisor places
 * the special pages there, and the kernel image's static data starts at
 * GUEST_IMAGE_BASE. docs/arch-wasm32.md is the guest-facing description.
 *
 *   pfn 0         never used (a null pointer points here)
 *   pfn 1         start_info
 *   pfn 2         shared_info (movable with XENMEM_add_to_physmap)
 *   pfn 3         console ring (xencons_interface)
 *   pfn 4         xenstore ring (xenstore_domain_interface)
 *   pfn 5         wasm32 boot info (arch_wasm32_boot: domid, max_vcpus), since
 *                 a guest has no xenstore yet when it first needs its domid
 *   pfn 6..15     grant table frames 0..9 (GNTTABOP_setup_table places them
 *                 here; frames 10 and up are placed by the guest with
 *                 XENMEM_add_to_physmap, XENMAPSPACE_grant_table)
 *   pfn 16..63    vCPU save areas, 12 KiB per vCPU: 8 KiB for the vCPU's main
 *                 context and 4 KiB for its upcall context (Asyncify stacks)
 *   pfn 64..      the kernel image's data, heap and stack
 */
import { PAGE_SIZE, _pfn, type Pfn } from "../../include/xen/mm.js";

export const PFN_START_INFO = _pfn(1);
export const PFN_SHARED_INFO = _pfn(2);
export const PFN_CONSOLE = _pfn(3);
export const PFN_XENSTORE = _pfn(4);
export const PFN_BOOT_INFO = _pfn(5);
export const PFN_GRANT_TABLE = _pfn(6);
/** Grant table frames that have a home in the architecture area. */
export const GRANT_FRAMES_IN_ARCH_AREA = 10;
export const PFN_SAVE_AREA = _pfn(16);
export const PFN_IMAGE_BASE = _pfn(64);

/** Byte address where a kernel's static data may begin (`--memoryBase`). */
export const GUEST_IMAGE_BASE = PFN_IMAGE_BASE * PAGE_SIZE;

/** Upper bound on vCPUs per wasm32 domain: the save areas fill pfn 16..63. */
export const MAX_VIRT_CPUS = 16;
export const SAVE_AREA_BYTES = 12 * 1024;
export const SAVE_MAIN_BYTES = 8 * 1024;
export const SAVE_UPCALL_BYTES = SAVE_AREA_BYTES - SAVE_MAIN_BYTES;

/** Guest address of vCPU `id`'s main-context save area. */
export const saveAreaMain = (id: number): number =>
  PFN_SAVE_AREA * PAGE_SIZE + id * SAVE_AREA_BYTES;
/** Guest address of vCPU `id`'s upcall-context save area. */
export const saveAreaUpcall = (id: number): number => saveAreaMain(id) + SAVE_MAIN_BYTES;

/** A wasm memory page holds 16 Xen frames; domain sizes are multiples of it. */
export const WASM_PAGE_SIZE = 65536;
export const FRAMES_PER_WASM_PAGE = WASM_PAGE_SIZE / PAGE_SIZE;

/**
 * Wasm pages a guest's linear memory may ever reach: wasm32's 4 GiB. A PV
 * domain's memory is declared this large whatever its maxmem (V8 reserves
 * the same address space for any wasm32 memory), so that `xl mem-max` can
 * raise maxmem later; the reservation checks keep it to max_pages.
 */
export const WASM32_MAX_WASM_PAGES = 65536;

/** Smallest domain: the architecture area plus one wasm page of image. */
export const MIN_DOMAIN_FRAMES: number = PFN_IMAGE_BASE + FRAMES_PER_WASM_PAGE;

/** True for frames the hypervisor manages inside every guest. */
export const isArchFrame = (p: Pfn): boolean => p < PFN_IMAGE_BASE;

/** Names of the guest's imports and exports (the guest contract). */
export const IMPORT_MODULE = "xen";
export const IMPORT_HYPERCALL = "hypercall";
export const IMPORT_PREEMPT = "preempt";
/** memory.grow, rewritten (confine.ts): grows linear memory from the reservation. */
export const IMPORT_GROW = "grow";
export const IMPORT_MEMORY_MODULE = "env";
export const IMPORT_MEMORY = "memory";
export const EXPORT_ENTRY = "_start";
export const EXPORT_SECONDARY_ENTRY = "_start_vcpu";
export const EXPORT_CALLBACK = "hypervisor_callback";
/** Exports instrument.ts adds for the hypervisor: each mutable global, and how many there are. */
export const GLOBAL_EXPORT_PREFIX = "tsxen$global$";
export const GLOBAL_COUNT_EXPORT = "tsxen$globals";
/** The preemption countdown, exported so that a restore can set it afresh. */
export const COUNTDOWN_EXPORT = "tsxen$countdown";

/** Back-edges and function entries between two looks at the slice clock. */
export const PREEMPT_CHECK_INTERVAL = 1000;
