/**
 * grant_table_op(cmd, uop, count) (Xen's `do_grant_table_op`): the guest-facing
 * side of grant_table.ts. Batched operations (map, unmap, copy) report a
 * GNTST_* status per element and return 0; a bad pointer is -EFAULT; the
 * single-element operations require count = 1 (-EINVAL otherwise).
 *
 * A wasm32 guest that maps a grant gets a handle and holds the pin (the
 * granter cannot revoke it), but no alias in its own linear memory: wasm has
 * no way to map another memory into it. Guests move data with
 * GNTTABOP_copy; Dom0's kernel reads the mapped page directly
 * (Hypervisor.grantMappingView). docs/arch-wasm32.md says the same to guests.
 */
import {
  TRC_MEM_PAGE_GRANT_COPY,
  TRC_MEM_PAGE_GRANT_MAP,
  TRC_MEM_PAGE_GRANT_UNMAP,
} from "../include/public/trace.js";
import { trackedHypercall } from "./watchdog.js";
import * as G from "../include/public/grant_table.js";
import { XenErrno } from "../include/public/errno.js";
import { DOMID_SELF, HYPERVISOR } from "../include/public/xen.js";
import { PAGE_SIZE, _pfn, mfn_x, type Pfn } from "../include/xen/mm.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Domain } from "./domain.js";
import type { Hypervisor } from "./hypervisor.js";
import { INVALID_GFN, mapKind } from "./grant_table.js";

/** Most elements one batched call may carry (Xen bounds count by INT_MAX; this bounds work). */
export const GNTTAB_MAX_BATCH = 1 << 16;

/** Maps entry `ref` of domain `dom` for `ld`: the GNTST_* status and, if okay, handle and bus address. */
export function mapGrantRef(
  hv: Hypervisor,
  ld: Domain,
  dom: number,
  ref: number,
  flags: number,
): { status: number; handle: number; busAddr: number } {
  const fail = (status: number): { status: number; handle: number; busAddr: number } => ({
    status,
    handle: 0,
    busAddr: 0,
  });
  const kind = mapKind(flags);
  if (!kind.ok) return fail(G.GNTST_bad_gntref);
  const rd = hv.domainById(dom);
  if (!rd) return fail(G.GNTST_bad_domain);
  if (rd.isDying) return fail(G.GNTST_general_error);
  if (ld.gnttab.maptrackFull) return fail(G.GNTST_no_space);
  const pfn = rd.gnttab.pin(ref, ld.domid, kind.readonly);
  if (pfn < 0) return fail(pfn);
  const handle = ld.gnttab.addMapping({
    granter: rd,
    ref,
    readonly: kind.readonly,
    pfn: pfn as Pfn,
  });
  if (hv.trace.on) hv.trace.record(TRC_MEM_PAGE_GRANT_MAP, [rd.domid]);
  return { status: G.GNTST_okay, handle, busAddr: mfn_x(rd.p2mLookup(pfn as Pfn)) * PAGE_SIZE };
}

/** Unmaps `ld`'s mapping `handle`; completes the granter's destruction if it was waiting. */
export function unmapGrantRef(hv: Hypervisor, ld: Domain, handle: number): number {
  const m = ld.gnttab.removeMapping(handle);
  if (!m) return G.GNTST_bad_handle;
  if (hv.trace.on) hv.trace.record(TRC_MEM_PAGE_GRANT_UNMAP, [m.granter.domid]);
  m.granter.gnttab.unpin(m.ref, m.readonly);
  if (m.granter.isDying && m.granter.gnttab.pinned === 0) hv.releaseDyingDomain(m.granter);
  return G.GNTST_okay;
}

/**
 * One GNTTABOP_copy element at `op` in `ld`'s memory (already bounds-checked
 * by the batch); returns its status. Each grant side is held only while the
 * bytes move. This is the data path of every backend, so it reads the element
 * with unchecked DataView loads and allocates nothing but the source view.
 */
function copyOne(hv: Hypervisor, ld: Domain, op: number): number {
  const dv = ld.mem.dv;
  const f = G.gnttab_copy.fields;
  const p = G.gnttab_copy_ptr.fields;
  const s = op + f.source.offset;
  const t = op + f.dest.offset;
  const len = dv.getUint16(op + f.len.offset, true);
  const flags = dv.getUint16(op + f.flags.offset, true);
  const sDom = dv.getUint16(s + p.domid.offset, true);
  const tDom = dv.getUint16(t + p.domid.offset, true);
  const sOff = dv.getUint16(s + p.offset.offset, true);
  const tOff = dv.getUint16(t + p.offset.offset, true);
  const su = dv.getUint32(s + p.u.offset, true) + dv.getUint32(s + p.u.offset + 4, true) * 2 ** 32;
  const tu = dv.getUint32(t + p.u.offset, true) + dv.getUint32(t + p.u.offset + 4, true) * 2 ** 32;
  const sGref = (flags & G.GNTCOPY_source_gref) !== 0;
  const tGref = (flags & G.GNTCOPY_dest_gref) !== 0;
  if (sOff + len > PAGE_SIZE || tOff + len > PAGE_SIZE) return G.GNTST_bad_copy_arg;
  // Only the caller's own frames may be named by frame number.
  if ((!sGref && sDom !== DOMID_SELF) || (!tGref && tDom !== DOMID_SELF)) {
    return G.GNTST_permission_denied;
  }
  const sd = sGref ? copyDomain(hv, ld, sDom) : ld;
  if (typeof sd === "number") return sd;
  const td = tGref ? copyDomain(hv, ld, tDom) : ld;
  if (typeof td === "number") return td;
  let sPfn: number;
  if (sGref) {
    sPfn = su < 2 ** 32 ? sd.gnttab.acquireCopy(su, ld.domid, false) : G.GNTST_bad_gntref;
    if (sPfn < 0) return sPfn;
  } else if (!ld.isPopulated(_pfn(su))) return G.GNTST_bad_page;
  else sPfn = su;
  let tPfn: number;
  if (tGref) {
    tPfn = tu < 2 ** 32 ? td.gnttab.acquireCopy(tu, ld.domid, true) : G.GNTST_bad_gntref;
    if (tPfn < 0) {
      if (sGref) sd.gnttab.releaseCopy(su, false);
      return tPfn;
    }
  } else if (!ld.isPopulated(_pfn(tu))) {
    if (sGref) sd.gnttab.releaseCopy(su, false);
    return G.GNTST_bad_page;
  } else tPfn = tu;
  const from = sPfn * PAGE_SIZE + sOff;
  const to = tPfn * PAGE_SIZE + tOff;
  if (sd === td) td.mem.u8.copyWithin(to, from, from + len);
  // Whole pages (what backends copy) come from a cached view: no allocation.
  else if (len === PAGE_SIZE) td.mem.u8.set(sd.pageView(sPfn), to);
  else td.mem.u8.set(sd.mem.u8.subarray(from, from + len), to);
  if (sGref) sd.gnttab.releaseCopy(su, false);
  if (tGref) td.gnttab.releaseCopy(tu, true);
  if (hv.trace.on) hv.trace.record(TRC_MEM_PAGE_GRANT_COPY, [sd.domid, td.domid, len]);
  return G.GNTST_okay;
}

/** The granting domain of one side of a copy, or a GNTST_* status. */
function copyDomain(hv: Hypervisor, ld: Domain, domid: number): Domain | number {
  const d = domid === DOMID_SELF ? ld : hv.domainById(domid);
  if (!d) return G.GNTST_bad_domain;
  return d.isDying ? G.GNTST_general_error : d;
}

/** A domid argument of a table-wide op: self, or any domain for the privileged. */
function tableTarget(hv: Hypervisor, ld: Domain, dom: number): Domain | number {
  if (dom === DOMID_SELF || dom === ld.domid) return ld;
  if (!ld.privileged) return G.GNTST_permission_denied;
  return hv.domainById(dom) ?? G.GNTST_bad_domain;
}

/** grant_table_op(cmd, uop, count), marked for the watchdog while it runs (trackedHypercall). */
export const do_grant_table_op = trackedHypercall(
  HYPERVISOR.__HYPERVISOR_grant_table_op,
  do_grant_table_op_body,
);

function do_grant_table_op_body(
  hv: Hypervisor,
  v: Vcpu,
  cmd: number,
  uop: number,
  count: number,
): number {
  const ld = v.domain;
  const mem = ld.mem;
  uop >>>= 0;
  count >>>= 0;
  // A batch that is still going when the slice ends continues in the
  // vCPU's next slice from where it stopped, as Xen's continuation does.
  const batch = (size: number, one: (op: number) => void): number => {
    if (count > GNTTAB_MAX_BATCH) return -XenErrno.EINVAL;
    mem.check(uop, size * count);
    for (let i = 0; i < count; i++) {
      one(uop + i * size);
      if (i + 1 < count && hv.preemptCheck(v)) return continueAt(i + 1, size);
    }
    return 0;
  };
  const continueAt = (next: number, size: number): number =>
    hv.createContinuation(
      v,
      HYPERVISOR.__HYPERVISOR_grant_table_op,
      cmd,
      uop + next * size,
      count - next,
    );
  const single = (size: number): boolean => {
    if (count !== 1) return false;
    mem.check(uop, size);
    return true;
  };
  switch (cmd) {
    case G.GNTTABOP_map_grant_ref: {
      const f = G.gnttab_map_grant_ref.fields;
      return batch(G.gnttab_map_grant_ref.size, (op) => {
        const r = mapGrantRef(
          hv,
          ld,
          mem.u16(op + f.dom.offset),
          mem.u32(op + f.ref.offset),
          mem.u32(op + f.flags.offset),
        );
        mem.setU16(op + f.status.offset, r.status & 0xffff);
        mem.setU32(op + f.handle.offset, r.handle);
        mem.setU64(op + f.dev_bus_addr.offset, r.busAddr);
      });
    }
    case G.GNTTABOP_unmap_grant_ref: {
      const f = G.gnttab_unmap_grant_ref.fields;
      return batch(G.gnttab_unmap_grant_ref.size, (op) => {
        const st = unmapGrantRef(hv, ld, mem.u32(op + f.handle.offset));
        mem.setU16(op + f.status.offset, st & 0xffff);
      });
    }
    case G.GNTTABOP_copy: {
      const f = G.gnttab_copy.fields;
      if (count > GNTTAB_MAX_BATCH) return -XenErrno.EINVAL;
      mem.check(uop, G.gnttab_copy.size * count);
      for (let i = 0; i < count; i++) {
        const op = uop + i * G.gnttab_copy.size;
        mem.dv.setInt16(op + f.status.offset, copyOne(hv, ld, op), true);
        if (i + 1 < count && hv.preemptCheck(v)) return continueAt(i + 1, G.gnttab_copy.size);
      }
      return 0;
    }
    case G.GNTTABOP_setup_table: {
      const f = G.gnttab_setup_table.fields;
      if (!single(G.gnttab_setup_table.size)) return -XenErrno.EINVAL;
      const t = tableTarget(hv, ld, mem.u16(uop + f.dom.offset));
      const nr = mem.u32(uop + f.nr_frames.offset);
      let status = typeof t === "number" ? t : G.GNTST_okay;
      if (typeof t !== "number") {
        const list = mem.u64(uop + f.frame_list.offset);
        if (!t.gnttab.grow(nr)) status = G.GNTST_general_error;
        else {
          for (let i = 0; i < nr; i++) {
            const gfn = t.gnttab.frameGfn(i);
            // INVALID_GFN is all ones, which a double cannot carry exactly.
            if (gfn === INVALID_GFN) {
              mem.setU32(list + i * 8, 0xffffffff);
              mem.setU32(list + i * 8 + 4, 0xffffffff);
            } else mem.setU64(list + i * 8, gfn);
          }
        }
      }
      mem.setU16(uop + f.status.offset, status & 0xffff);
      return 0;
    }
    case G.GNTTABOP_query_size: {
      const f = G.gnttab_query_size.fields;
      if (!single(G.gnttab_query_size.size)) return -XenErrno.EINVAL;
      const t = tableTarget(hv, ld, mem.u16(uop + f.dom.offset));
      if (typeof t !== "number") {
        mem.setU32(uop + f.nr_frames.offset, t.gnttab.nrFrames);
        mem.setU32(uop + f.max_nr_frames.offset, t.gnttab.maxFrames);
      }
      mem.setU16(uop + f.status.offset, (typeof t === "number" ? t : G.GNTST_okay) & 0xffff);
      return 0;
    }
    case G.GNTTABOP_dump_table: {
      const f = G.gnttab_dump_table.fields;
      if (!single(G.gnttab_dump_table.size)) return -XenErrno.EINVAL;
      const t = tableTarget(hv, ld, mem.u16(uop + f.dom.offset));
      if (typeof t !== "number") for (const line of t.gnttab.dump()) hv.console.printk(line);
      mem.setU16(uop + f.status.offset, (typeof t === "number" ? t : G.GNTST_okay) & 0xffff);
      return 0;
    }
    case G.GNTTABOP_get_version: {
      const f = G.gnttab_get_version.fields;
      if (!single(G.gnttab_get_version.size)) return -XenErrno.EINVAL;
      const t = tableTarget(hv, ld, mem.u16(uop + f.dom.offset));
      if (t === G.GNTST_permission_denied) return -XenErrno.EPERM;
      if (typeof t === "number") return -XenErrno.ESRCH;
      mem.setU32(uop + f.version.offset, 1);
      return 0;
    }
    case G.GNTTABOP_set_version: {
      if (!single(G.gnttab_set_version.size)) return -XenErrno.EINVAL;
      const want = mem.u32(uop);
      // tsxen's grant tables are v1 only, as Xen with gnttab=max-ver:1.
      const rc = want === 1 ? 0 : want === 2 ? -XenErrno.ENOSYS : -XenErrno.EINVAL;
      mem.setU32(uop, 1);
      return rc;
    }
    default:
      return -XenErrno.ENOSYS;
  }
}
