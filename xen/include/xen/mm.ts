/**
 * Xen's memory terminology as types, after `xen/include/xen/mm.h`:
 *
 * - mfn: machine frame number, a frame of the host's machine memory. In tsxen
 *   machine memory is an accounting space owned by the frame allocator.
 * - gfn: guest frame number, the frame number a guest uses in hypercalls
 *   (grant references, physmap). On wasm32 guests are auto-translated, so a
 *   guest's gfn equals its pfn, but they are kept apart as Xen keeps them.
 * - pfn: guest pseudo-physical frame number, an index into the guest's linear
 *   memory in 4 KiB pages.
 *
 * The brands make each a distinct type: passing an mfn where a pfn is wanted is
 * a compile error. Convert only through the functions below.
 */
declare const brand: unique symbol;
type Frame<K extends string> = number & { readonly [brand]: K };

export type Mfn = Frame<"mfn">;
export type Gfn = Frame<"gfn">;
export type Pfn = Frame<"pfn">;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

export const INVALID_MFN = 0xffffffff as Mfn;

export const _mfn = (n: number): Mfn => n as Mfn;
export const _gfn = (n: number): Gfn => n as Gfn;
export const _pfn = (n: number): Pfn => n as Pfn;

/** The raw numbers, for arithmetic and for writing into guest structs. */
export const mfn_x = (m: Mfn): number => m;
export const gfn_x = (g: Gfn): number => g;
export const pfn_x = (p: Pfn): number => p;

/** Auto-translated guests: a gfn names the same frame as the pfn of equal value. */
export const gfn_to_pfn = (g: Gfn): Pfn => g as number as Pfn;
export const pfn_to_gfn = (p: Pfn): Gfn => p as number as Gfn;

/** Byte address in guest memory of the start of pseudo-physical frame `p`. */
export const pfn_to_paddr = (p: Pfn): number => p * PAGE_SIZE;
/** The pseudo-physical frame containing guest byte address `a`. */
export const paddr_to_pfn = (a: number): Pfn => Math.floor(a / PAGE_SIZE) as Pfn;
