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
import { DOM0_BOUNCE_PAGES, type Privcmd } from "./privcmd.js";
import { DOMID_SELF } from "../../xen/include/public/xen.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";

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
  /**
   * `page.byteOffset`, kept as a number: a view of shared memory answers
   * `byteOffset` and `buffer` through a slow path (tens of ns each).
   */
  readonly offset: number;
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
      const page = this.pc.hv.grantMappingView(handle)!;
      const m: GrantMap = { domid, ref, handle, writable, page, offset: page.byteOffset };
      this.maps.set(handle, m);
      out.push(m);
    });
    if (failure) {
      for (const m of out) this.unmap(m);
      throw failure;
    }
    return out;
  }

  /**
   * xengnttab_grant_copy: copies between other domains' grants and Dom0's
   * memory with GNTTABOP_copy, as Linux's netback moves packets. Each
   * segment is one grant, `offset` into it, and `data` (at most the rest of
   * the page): read from the guest into `data`, or written from `data` to
   * the guest (`toGuest`). Dom0's side is a page of its bounce area per
   * segment. Returns each segment's GNTST status; the batch is split into
   * hypercalls as the bounce area allows.
   */
  grantCopy(
    segs: ReadonlyArray<{
      toGuest: boolean;
      domid: number;
      ref: number;
      offset: number;
      data: Uint8Array;
    }>,
  ): number[] {
    const f = G.gnttab_copy.fields;
    const p = G.gnttab_copy_ptr.fields;
    const size = G.gnttab_copy.size;
    const perCall = DOM0_BOUNCE_PAGES - 1;
    const status: number[] = [];
    for (let first = 0; first < segs.length; first += perCall) {
      const batch = segs.slice(first, first + perCall);
      const mem = this.pc.mem;
      const a = this.pc.bounce(PAGE_SIZE * (batch.length + 1));
      const pageOf = (i: number): number => a + PAGE_SIZE * (i + 1);
      batch.forEach((s, i) => {
        if (s.offset < 0 || s.offset + s.data.length > PAGE_SIZE) {
          throw new RangeError(
            `gntdev: a copy of ${s.data.length} bytes at ${s.offset} crosses a page`,
          );
        }
        const op = a + i * size;
        const guest = op + (s.toGuest ? f.dest : f.source).offset;
        const local = op + (s.toGuest ? f.source : f.dest).offset;
        mem.setU64(guest + p.u.offset, s.ref);
        mem.setU16(guest + p.domid.offset, s.domid);
        mem.setU16(guest + p.offset.offset, s.offset);
        mem.setU64(local + p.u.offset, pageOf(i) / PAGE_SIZE);
        mem.setU16(local + p.domid.offset, DOMID_SELF);
        mem.setU16(local + p.offset.offset, 0);
        mem.setU16(op + f.len.offset, s.data.length);
        mem.setU16(op + f.flags.offset, s.toGuest ? G.GNTCOPY_dest_gref : G.GNTCOPY_source_gref);
        if (s.toGuest) mem.write(pageOf(i), s.data);
      });
      const rc = this.pc.hypercall(
        HYPERVISOR.__HYPERVISOR_grant_table_op,
        G.GNTTABOP_copy,
        a,
        batch.length,
      );
      if (rc < 0)
        throw new GrantError(G.GNTST_general_error, `gntdev: copy failed: ${errnoName(-rc)}`);
      batch.forEach((s, i) => {
        const st = mem.dv.getInt16(a + i * size + f.status.offset, true);
        if (st === G.GNTST_okay && !s.toGuest)
          s.data.set(mem.u8.subarray(pageOf(i), pageOf(i) + s.data.length));
        status.push(st);
      });
    }
    return status;
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
