/**
 * Grant tables, version 1 (Xen's `common/grant_table.c`; `grant_table.h`;
 * xen-doc `misc/grant-tables.txt`).
 *
 * A domain grants access to one of its pages by writing a grant_entry_v1
 * (flags, grantee domid, frame) into its grant table, which on wasm32 is a set
 * of pages in its own memory: frames 0..9 live at pfn 6..15, and frames 10 and
 * up wherever the guest places them with XENMEM_add_to_physmap
 * (XENMAPSPACE_grant_table). The grantee then maps the page (Dom0 gets a
 * direct view of the granter's memory: zero copy) or copies to and from it.
 *
 * The hypervisor keeps, per granted entry in use, an active entry (who pinned
 * it and how often, for reading and for writing) and, per mapping domain, a
 * maptrack table of its mappings, whose index is the grant handle. While an
 * entry is pinned the hypervisor holds GTF_reading (and GTF_writing for
 * writable pins) in the entry's flags, set and cleared with atomic operations
 * on the guest's memory, so a granter that revokes with a compare-and-swap
 * (as Linux's gnttab_end_foreign_access does) sees that it is in use.
 *
 * A domain whose pages another domain still maps stays dying, memory and all,
 * until the last mapping goes, as in Xen.
 */
import {
  GNTMAP_device_map,
  GNTMAP_host_map,
  GNTMAP_readonly,
  GNTST_bad_gntref,
  GNTST_bad_page,
  GNTST_general_error,
  GNTST_okay,
  GTF_invalid,
  GTF_permit_access,
  GTF_readonly,
  GTF_reading,
  GTF_sub_page,
  GTF_type_mask,
  GTF_writing,
  grant_entry_v1,
} from "../include/public/grant_table.js";
import { INVALID_MFN, PAGE_SIZE, _pfn, mfn_x, pfn_to_paddr, type Pfn } from "../include/xen/mm.js";
import { GRANT_FRAMES_IN_ARCH_AREA, PFN_GRANT_TABLE } from "../arch/wasm32/config.js";
import type { Domain } from "./domain.js";

/** v1 entries per grant table frame (512: refs split as frame = ref >> 9, entry = ref & 511). */
export const GRANT_ENTRIES_PER_FRAME = PAGE_SIZE / grant_entry_v1.size;
const INVALID = mfn_x(INVALID_MFN);
/** Mappings per maptrack frame (Xen's MAPTRACK_PER_PAGE: 8-byte struct grant_mapping). */
export const MAPTRACK_PER_FRAME = PAGE_SIZE / 8;
/** libxl's defaults for a guest (xl.cfg max_grant_frames, max_maptrack_frames). */
export const DEFAULT_MAX_GRANT_FRAMES = 64;
export const DEFAULT_MAX_MAPTRACK_FRAMES = 1024;
/** Guest frame number a setup_table caller reads for a frame that has no page yet. */
export const INVALID_GFN = 2 ** 64 - 1;

/** An entry in use by a grantee (Xen's struct active_grant_entry). */
interface ActiveEntry {
  /** The domain that pinned it; only one may at a time. */
  domid: number;
  readers: number;
  writers: number;
  pfn: Pfn;
}

/** One mapping made by this domain (Xen's struct grant_mapping). */
export interface GrantMapping {
  granter: Domain;
  ref: number;
  readonly: boolean;
  pfn: Pfn;
}

export class GrantTable {
  /** Frames the table has (nr_grant_frames); grows with setup_table. */
  nrFrames = 1;
  /** Guest address of each frame that has a page. */
  private readonly frameAddr: (number | undefined)[] = [];
  private readonly active = new Map<number, ActiveEntry>();
  private readonly maptrack: (GrantMapping | undefined)[] = [];
  private readonly freeHandles: number[] = [];
  private mapCount = 0;
  /** Pins other domains hold on this domain's entries. */
  private foreignPins = 0;

  constructor(
    private readonly d: Domain,
    readonly maxFrames: number,
    readonly maxMaptrackFrames: number,
  ) {
    for (let i = 0; i < Math.min(GRANT_FRAMES_IN_ARCH_AREA, maxFrames); i++) {
      this.frameAddr.push(pfn_to_paddr(_pfn(PFN_GRANT_TABLE + i)));
    }
  }

  get nrEntries(): number {
    return this.nrFrames * GRANT_ENTRIES_PER_FRAME;
  }

  /** Mappings this domain holds of other domains' grants. */
  get mappings(): number {
    return this.mapCount;
  }

  /** Pins held on this domain's grants (by any grantee). */
  get pinned(): number {
    return this.foreignPins;
  }

  /** This domain's entries pinned by another domain now (mapped, or held for a copy), and by whom. */
  pins(): Array<{ ref: number; domid: number }> {
    return [...this.active.entries()]
      .filter(([, a]) => a.readers + a.writers > 0)
      .map(([ref, a]) => ({ ref, domid: a.domid }));
  }

  /** The gfn of frame `i`, or INVALID_GFN if it has no page. */
  frameGfn(i: number): number {
    const a = this.frameAddr[i];
    return a === undefined ? INVALID_GFN : a / PAGE_SIZE;
  }

  /** GNTTABOP_setup_table: grows the table to `nr` frames. False past max_grant_frames. */
  grow(nr: number): boolean {
    if (nr > this.maxFrames) return false;
    if (nr > this.nrFrames) this.nrFrames = nr;
    return true;
  }

  /**
   * XENMEM_add_to_physmap(XENMAPSPACE_grant_table): frame `idx` now lives at
   * guest address `addr`; its entries move with it. False past max_grant_frames.
   */
  placeFrame(idx: number, addr: number): boolean {
    if (idx >= this.maxFrames) return false;
    const mem = this.d.mem.u8;
    const old = this.frameAddr[idx];
    if (old !== undefined && old !== addr) {
      mem.copyWithin(addr, old, old + PAGE_SIZE);
      mem.fill(0, old, old + PAGE_SIZE);
    } else if (old === undefined) mem.fill(0, addr, addr + PAGE_SIZE);
    if (old !== undefined) this.d.logDirty?.mark(old / PAGE_SIZE);
    this.d.logDirty?.mark(addr / PAGE_SIZE);
    this.frameAddr[idx] = addr;
    if (idx >= this.nrFrames) this.nrFrames = idx + 1;
    return true;
  }

  /**
   * Adds to `out` every pfn another domain may write through this table
   * while the domain itself does not run: the table's frames (grantees' pins
   * set GTF_reading and GTF_writing there) and every page a valid entry
   * grants (mapped, or the target of a grant copy). Log-dirty compares only
   * these when the domain has not run since its last round (paging.ts).
   */
  writablePfns(out: Set<number>): void {
    const i32 = this.d.mem.i32;
    for (let f = 0; f < this.nrFrames; f++) {
      const a = this.frameAddr[f];
      if (a === undefined) continue;
      out.add(a / PAGE_SIZE);
      const w = a >> 2;
      for (let e = 0; e < GRANT_ENTRIES_PER_FRAME; e++) {
        if ((Atomics.load(i32, w + e * 2) & GTF_type_mask) === GTF_invalid) continue;
        out.add(Atomics.load(i32, w + e * 2 + 1) >>> 0);
      }
    }
  }

  /** True if the page at `addr` holds one of this table's frames. */
  holdsPage(addr: number): boolean {
    return this.frameAddr.includes(addr - (addr % PAGE_SIZE));
  }

  /** Guest address of entry `ref`, or undefined if its frame has no page. */
  private entryAddr(ref: number): number | undefined {
    const a = this.frameAddr[Math.floor(ref / GRANT_ENTRIES_PER_FRAME)];
    return a === undefined ? undefined : a + (ref % GRANT_ENTRIES_PER_FRAME) * grant_entry_v1.size;
  }

  /** The entry's flags and domid as one atomic 32-bit load, or undefined. */
  readEntry(ref: number): { flags: number; domid: number; frame: number } | undefined {
    const a = this.entryAddr(ref);
    if (a === undefined) return undefined;
    const w = Atomics.load(this.d.mem.i32, a >> 2);
    return {
      flags: w & 0xffff,
      domid: w >>> 16,
      frame: Atomics.load(this.d.mem.i32, (a >> 2) + 1) >>> 0,
    };
  }

  private setFlags(ref: number, bits: number): void {
    const a = this.entryAddr(ref);
    if (a !== undefined) Atomics.or(this.d.mem.i32, a >> 2, bits);
  }

  private clearFlags(ref: number, bits: number): void {
    const a = this.entryAddr(ref);
    if (a !== undefined) Atomics.and(this.d.mem.i32, a >> 2, ~bits);
  }

  /**
   * Checks that entry `ref` grants `grantee` access (writable unless
   * `readonly`) and marks it in use, as Xen's _set_status_v1 does: set the
   * flags, then re-read the entry, and back out if the granter changed it
   * meanwhile. Returns a GNTST_* status.
   */
  private acquire(ref: number, grantee: number, readonly: boolean): number {
    const ok = (e: { flags: number; domid: number } | undefined): boolean =>
      e !== undefined &&
      (e.flags & (GTF_type_mask | GTF_sub_page)) === GTF_permit_access &&
      e.domid === grantee &&
      (readonly || !(e.flags & GTF_readonly));
    if (!ok(this.readEntry(ref))) return GNTST_general_error;
    const bits = readonly ? GTF_reading : GTF_reading | GTF_writing;
    this.setFlags(ref, bits);
    if (!ok(this.readEntry(ref))) {
      this.clearFlags(ref, bits);
      return GNTST_general_error;
    }
    return GNTST_okay;
  }

  /**
   * Pins entry `ref` for `grantee` (a map or a copy): returns the granted pfn,
   * or a GNTST_* status (negative).
   */
  pin(ref: number, grantee: number, readonly: boolean): Pfn | number {
    if (!Number.isInteger(ref) || ref < 0 || ref >= this.nrEntries) return GNTST_bad_gntref;
    let act = this.active.get(ref);
    if (act && act.domid !== grantee) return GNTST_general_error;
    if (!act || (!readonly && act.writers === 0)) {
      const rc = this.acquire(ref, grantee, readonly);
      if (rc !== GNTST_okay) return rc;
      if (!act) {
        const pfn = _pfn(this.readEntry(ref)!.frame);
        if (!this.d.isPopulated(pfn)) {
          this.clearFlags(ref, GTF_reading | GTF_writing);
          return GNTST_bad_page;
        }
        act = { domid: grantee, readers: 0, writers: 0, pfn };
        this.active.set(ref, act);
      }
    }
    if (readonly) act.readers++;
    else act.writers++;
    this.foreignPins++;
    return act.pfn;
  }

  /**
   * Takes entry `ref` for one GNTTABOP_copy by `grantee` (Xen's
   * acquire_grant_for_copy): checks it as `pin` does and holds GTF_reading
   * (and GTF_writing to write) while the copy runs, without an active entry
   * unless one exists already. Returns the granted pfn or a GNTST_* status;
   * release with `releaseCopy`. Kept allocation-free: backends copy every
   * page of their I/O through here.
   */
  acquireCopy(ref: number, grantee: number, write: boolean): number {
    if (!(ref >= 0 && ref < this.nrFrames * GRANT_ENTRIES_PER_FRAME)) return GNTST_bad_gntref;
    const frame = this.frameAddr[ref >>> 9];
    if (frame === undefined) return GNTST_general_error;
    const act = this.active.size === 0 ? undefined : this.active.get(ref);
    if (act) {
      if (act.domid !== grantee) return GNTST_general_error;
      if (!write || act.writers > 0) return act.pfn;
    }
    const i32 = this.d.mem.i32;
    const i = (frame + ((ref & 511) << 3)) >> 2;
    const bits = write ? GTF_reading | GTF_writing : GTF_reading;
    // The word is flags | domid << 16; a write also needs GTF_readonly clear.
    // Atomics.or returns the entry as it was when the bits went in: if it
    // granted access then, the granter saw the bits before any later change.
    const mask = GTF_type_mask | GTF_sub_page | (write ? GTF_readonly : 0) | 0xffff0000;
    const want = GTF_permit_access | (grantee << 16);
    const before = Atomics.or(i32, i, bits);
    if ((before & mask) !== want) {
      Atomics.and(i32, i, ~(bits & ~before));
      return GNTST_general_error;
    }
    const pfn = act ? act.pfn : i32[i + 1]! >>> 0;
    if (!(pfn < this.d.p2m.length && this.d.p2m[pfn] !== INVALID)) {
      Atomics.and(i32, i, ~(bits & ~before));
      return GNTST_bad_page;
    }
    return pfn;
  }

  /** Ends a copy's hold on entry `ref`: clears the flags no mapping still needs. */
  releaseCopy(ref: number, write: boolean): void {
    let bits = write ? GTF_reading | GTF_writing : GTF_reading;
    const act = this.active.size === 0 ? undefined : this.active.get(ref);
    if (act) {
      if (act.readers + act.writers > 0) bits &= ~GTF_reading;
      if (act.writers > 0) bits &= ~GTF_writing;
    }
    const frame = this.frameAddr[ref >>> 9];
    if (bits && frame !== undefined) {
      Atomics.and(this.d.mem.i32, (frame + ((ref & 511) << 3)) >> 2, ~bits);
    }
  }

  /** Drops one pin of entry `ref`; clears the in-use flags when the last goes. */
  unpin(ref: number, readonly: boolean): void {
    const act = this.active.get(ref);
    if (!act) return;
    if (readonly) act.readers--;
    else act.writers--;
    this.foreignPins--;
    if (act.writers === 0) this.clearFlags(ref, GTF_writing);
    if (act.readers + act.writers === 0) {
      this.clearFlags(ref, GTF_reading);
      this.active.delete(ref);
    }
  }

  /** Records a mapping in this (the mapping) domain's maptrack; -1 when full. */
  addMapping(m: GrantMapping): number {
    let h = this.freeHandles.pop();
    if (h === undefined) {
      if (this.maptrack.length >= this.maxMaptrackFrames * MAPTRACK_PER_FRAME) return -1;
      h = this.maptrack.length;
      this.maptrack.push(undefined);
    }
    this.maptrack[h] = m;
    this.mapCount++;
    return h;
  }

  /** True if a new mapping would fit in maptrack. */
  get maptrackFull(): boolean {
    return (
      this.freeHandles.length === 0 &&
      this.maptrack.length >= this.maxMaptrackFrames * MAPTRACK_PER_FRAME
    );
  }

  /** The mapping behind `handle`, if any. */
  mapping(handle: number): GrantMapping | undefined {
    return Number.isInteger(handle) ? this.maptrack[handle] : undefined;
  }

  /** Removes mapping `handle` from maptrack and returns it. */
  removeMapping(handle: number): GrantMapping | undefined {
    const m = this.mapping(handle);
    if (!m) return undefined;
    this.maptrack[handle] = undefined;
    this.freeHandles.push(handle);
    this.mapCount--;
    return m;
  }

  /** Every live handle of this domain's maptrack. */
  handles(): number[] {
    const out: number[] = [];
    for (let h = 0; h < this.maptrack.length; h++) if (this.maptrack[h]) out.push(h);
    return out;
  }

  /**
   * The entries in use (flags not 0): what each grants to whom, and the
   * active entry's pin (who maps or copies it now, and how often). At most
   * `max` are listed; `total` counts them all.
   */
  entries(max = Infinity): {
    list: Array<{
      ref: number;
      flags: number;
      domid: number;
      frame: number;
      pin?: { domid: number; readers: number; writers: number };
    }>;
    total: number;
  } {
    const out = [];
    let total = 0;
    for (let ref = 0; ref < this.nrEntries; ref++) {
      const e = this.readEntry(ref);
      if (!e || e.flags === 0) continue;
      if (total++ >= max) continue;
      const act = this.active.get(ref);
      out.push({
        ref,
        flags: e.flags,
        domid: e.domid,
        frame: e.frame,
        ...(act ? { pin: { domid: act.domid, readers: act.readers, writers: act.writers } } : {}),
      });
    }
    return { list: out, total };
  }

  /** The grants this domain maps now: whose, which ref, and how. */
  mapped(): Array<{ handle: number; domid: number; ref: number; readonly: boolean }> {
    const out = [];
    for (let h = 0; h < this.maptrack.length; h++) {
      const m = this.maptrack[h];
      if (m) out.push({ handle: h, domid: m.granter.domid, ref: m.ref, readonly: m.readonly });
    }
    return out;
  }

  /** Lines describing the entries in use, for GNTTABOP_dump_table. */
  dump(): string[] {
    const lines = [
      `grant table for d${this.d.domid}: version 1, ${this.nrFrames} of ${this.maxFrames} frames`,
    ];
    for (const e of this.entries().list) {
      lines.push(
        `  [${e.ref}] flags 0x${e.flags.toString(16)} dom ${e.domid} frame 0x${e.frame.toString(16)}` +
          (e.pin ? ` pinned by d${e.pin.domid} r${e.pin.readers} w${e.pin.writers}` : ""),
      );
    }
    return lines;
  }
}

/** The GNTMAP_* flags a map operation pins with: 0 means neither host nor device map. */
export function mapKind(flags: number): { ok: boolean; readonly: boolean } {
  return {
    ok: (flags & (GNTMAP_host_map | GNTMAP_device_map)) !== 0,
    readonly: (flags & GNTMAP_readonly) !== 0,
  };
}
