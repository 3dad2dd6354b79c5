/**
 * Dom0's grant device: the counterpart of Linux's `/dev/xen/gntdev` and
 * libxengnttab (`xengnttab_map_grant_ref(s)`, `xengnttab_unmap`,
 * `xengnttab_grant_copy`). A mapping is made with GNTTABOP_map_grant_ref on
 * Dom0's vCPU and gives back a Uint8Array that is a direct view of the page
 * in the granting domain's memory: zero copy. The view must not be used
 * after `unmap`; a read-only mapping is a promise by Dom0's code, since a
 * typed array cannot be made read-only.
 */
import * as G from "../../xen/include/public/grant_table.js";
import { HYPERVISOR } from "../../xen/include/public/xen.js";
import { errnoName } from "../../xen/include/public/errno.js";
import type { Privcmd } from "./privcmd.js";

/** A grant operation that failed: names the domain, the ref and Xen's status. */
export class GrantError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** One mapped grant. */
export interface GrantMap {
  readonly domid: number;
  readonly ref: number;
  readonly handle: number;
  readonly writable: boolean;
  /** The granted page, aliasing the granter's memory. */
  readonly page: Uint8Array;
}

/** One client's grant mappings (a xengnttab_handle). */
export class XenGnttab {
  private readonly maps = new Map<number, GrantMap>();

  constructor(private readonly pc: Privcmd) {}

  /** xengnttab_map_grant_ref: maps `domid`'s grant `ref`. Throws GrantError naming the failure. */
  map(domid: number, ref: number, writable = true): GrantMap {
    return this.mapMany(domid, [ref], writable)[0]!;
  }

  /**
   * xengnttab_map_grant_refs: maps several of `domid`'s grants in one
   * hypercall. All or nothing: if one fails, the others are unmapped.
   */
  mapMany(domid: number, refs: readonly number[], writable = true): GrantMap[] {
    const size = G.gnttab_map_grant_ref.size;
    const f = G.gnttab_map_grant_ref.fields;
    const mem = this.pc.mem;
    const a = this.pc.bounce(size * refs.length);
    const flags = G.GNTMAP_host_map | (writable ? 0 : G.GNTMAP_readonly);
    refs.forEach((ref, i) => {
      mem.setU32(a + i * size + f.flags.offset, flags);
      mem.setU32(a + i * size + f.ref.offset, ref);
      mem.setU16(a + i * size + f.dom.offset, domid);
    });
    const rc = this.pc.hypercall(
      HYPERVISOR.__HYPERVISOR_grant_table_op,
      G.GNTTABOP_map_grant_ref,
      a,
      refs.length,
    );
    if (rc < 0)
      throw new GrantError(G.GNTST_general_error, `gntdev: map failed: ${errnoName(-rc)}`);
    const out: GrantMap[] = [];
    let failure: GrantError | undefined;
    refs.forEach((ref, i) => {
      const st = (mem.u16(a + i * size + f.status.offset) << 16) >> 16;
      if (st !== G.GNTST_okay) {
        failure ??= new GrantError(
          st,
          `gntdev: mapping grant ${ref} of d${domid} failed: ${G.gntstName(st)}`,
        );
        return;
      }
      const handle = mem.u32(a + i * size + f.handle.offset);
      const m: GrantMap = {
        domid,
        ref,
        handle,
        writable,
        page: this.pc.hv.grantMappingView(handle)!,
      };
      this.maps.set(handle, m);
      out.push(m);
    });
    if (failure) {
      for (const m of out) this.unmap(m);
      throw failure;
    }
    return out;
  }

  /** xengnttab_unmap: unmaps one mapping made by this handle. */
  unmap(m: GrantMap): void {
    if (!this.maps.delete(m.handle)) {
      throw new GrantError(G.GNTST_bad_handle, `gntdev: handle ${m.handle} is not mapped here`);
    }
    const size = G.gnttab_unmap_grant_ref.size;
    const f = G.gnttab_unmap_grant_ref.fields;
    const mem = this.pc.mem;
    const a = this.pc.bounce(size);
    mem.setU32(a + f.handle.offset, m.handle);
    this.pc.hypercall(HYPERVISOR.__HYPERVISOR_grant_table_op, G.GNTTABOP_unmap_grant_ref, a, 1);
    const st = (mem.u16(a + f.status.offset) << 16) >> 16;
    if (st !== G.GNTST_okay) {
      throw new GrantError(st, `gntdev: unmapping handle ${m.handle} failed: ${G.gntstName(st)}`);
    }
  }

  /** Mappings this handle holds. */
  get mapped(): number {
    return this.maps.size;
  }

  /** xengnttab_close: unmaps everything this handle mapped. Idempotent. */
  dispose(): void {
    for (const m of [...this.maps.values()]) this.unmap(m);
  }
}
