/**
 * memory_op (Xen's `common/memory.c`): reservations and the physmap.
 *
 * wasm32 guests are auto-translated: a guest names frames by gfn (= pfn), and
 * the hypervisor keeps the pfn → mfn map. Populating a pfn takes a machine frame
 * from the heap and counts it in tot_pages; releasing one returns the frame and
 * zeroes the guest page, so no data outlives its frame. The wasm linear memory
 * itself is sized to maxmem and cannot be unmapped, so a released pfn stays
 * addressable (and zero): the accounting, not the MMU, enforces the reservation.
 *
 * Partial success is reported as Xen does: the number of extents completed.
 * Where tsxen differs: populating a pfn that is already populated stops the
 * batch there (Xen would replace the page), since a wasm32 pfn's memory cannot
 * be swapped for another frame's.
 */
import {
  XENMAPSPACE_grant_table,
  XENMAPSPACE_shared_info,
  XENMEM_add_to_physmap,
  XENMEM_current_reservation,
  XENMEM_decrease_reservation,
  XENMEM_increase_reservation,
  XENMEM_maximum_gpfn,
  XENMEM_maximum_reservation,
  XENMEM_populate_physmap,
  xen_add_to_physmap,
  xen_memory_reservation,
} from "../include/public/memory.js";
import { shared_info } from "../include/public/arch-wasm32.js";
import { XenErrno } from "../include/public/errno.js";
import { DOMID_SELF } from "../include/public/xen.js";
import {
  INVALID_MFN,
  PAGE_SIZE,
  _mfn,
  _pfn,
  mfn_x,
  pfn_to_paddr,
  type Pfn,
} from "../include/xen/mm.js";
import { PFN_SHARED_INFO, isArchFrame } from "../arch/wasm32/config.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Domain } from "./domain.js";
import type { Hypervisor } from "./hypervisor.js";

/** Largest extent order an unprivileged domain may ask for (Xen's domU default). */
export const DOMU_MAX_ORDER = 9;

/** Gives pfn `p` of `d` a machine frame. False when over max_pages or the host is out of memory. */
export function populatePfn(hv: Hypervisor, d: Domain, p: Pfn): boolean {
  if (p >= d.nrPfns || d.isPopulated(p) || d.totPages >= d.maxPages) return false;
  const m = hv.frames.alloc(d.domid);
  if (m === undefined) return false;
  d.p2m[p] = mfn_x(m);
  d.totPages++;
  return true;
}

/** Takes pfn `p`'s frame from `d`, zeroing the page. False if it was not populated. */
export function releasePfn(hv: Hypervisor, d: Domain, p: Pfn): boolean {
  if (!d.isPopulated(p)) return false;
  hv.frames.free(_mfn(d.p2m[p]!));
  d.p2m[p] = mfn_x(INVALID_MFN);
  d.totPages--;
  d.mem.u8.fill(0, pfn_to_paddr(p), pfn_to_paddr(p) + PAGE_SIZE);
  return true;
}

/** Returns every frame of a dying domain to the heap (its memory is dropped, not zeroed). */
export function freeAllFrames(hv: Hypervisor, d: Domain): void {
  for (let p = 0; p < d.nrPfns; p++) {
    if (d.p2m[p] !== mfn_x(INVALID_MFN)) {
      hv.frames.free(_mfn(d.p2m[p]!));
      d.p2m[p] = mfn_x(INVALID_MFN);
    }
  }
  for (const m of d.unmapped.splice(0)) hv.frames.free(m);
  d.totPages = 0;
}

/** Resolves a domid argument for `v`: itself, or (privileged callers) any domain. */
export function targetDomain(hv: Hypervisor, v: Vcpu, domid: number): Domain | number {
  if (domid === DOMID_SELF || domid === v.domain.domid) return v.domain;
  if (!v.domain.privileged) return -XenErrno.EPERM;
  return hv.domainById(domid) ?? -XenErrno.ESRCH;
}

function reservation(hv: Hypervisor, v: Vcpu, cmd: number, arg: number): number {
  const mem = v.domain.mem;
  const f = xen_memory_reservation.fields;
  mem.check(arg, xen_memory_reservation.size);
  const list = mem.u64(arg + f.extent_start.offset);
  const nr = mem.u64(arg + f.nr_extents.offset);
  const order = mem.u32(arg + f.extent_order.offset);
  const target = targetDomain(hv, v, mem.u16(arg + f.domid.offset));
  if (typeof target === "number") return target;
  if (order > DOMU_MAX_ORDER && !v.domain.privileged) return 0;
  if (order > 20) return 0;
  const frames = 2 ** order;
  let done = 0;
  for (; done < nr; done++) {
    if (cmd === XENMEM_increase_reservation) {
      // Frames not placed in the physmap: their mfns go back to the caller.
      if (target.totPages + frames > target.maxPages || hv.frames.freeFrames < frames) break;
      const first = hv.frames.alloc(target.domid)!;
      target.unmapped.push(first);
      target.totPages++;
      for (let i = 1; i < frames; i++) {
        target.unmapped.push(hv.frames.alloc(target.domid)!);
        target.totPages++;
      }
      if (list !== 0) mem.setU64(list + done * 8, mfn_x(first));
      continue;
    }
    if (list === 0) break;
    const gpfn = mem.u64(list + done * 8);
    if (gpfn % frames !== 0 || gpfn + frames > target.nrPfns) break;
    if (cmd === XENMEM_populate_physmap) {
      let ok = true;
      for (let i = 0; i < frames && ok; i++) {
        if (target.isPopulated(_pfn(gpfn + i))) ok = false;
      }
      if (!ok || target.totPages + frames > target.maxPages || hv.frames.freeFrames < frames) break;
      for (let i = 0; i < frames; i++) populatePfn(hv, target, _pfn(gpfn + i));
    } else {
      // decrease_reservation: the architecture's own frames are not the guest's to give.
      let ok = true;
      for (let i = 0; i < frames && ok; i++) {
        const p = _pfn(gpfn + i);
        if (!target.isPopulated(p) || isArchFrame(p)) ok = false;
      }
      if (!ok) break;
      for (let i = 0; i < frames; i++) releasePfn(hv, target, _pfn(gpfn + i));
    }
  }
  return done;
}

function addToPhysmap(hv: Hypervisor, v: Vcpu, arg: number): number {
  const mem = v.domain.mem;
  const f = xen_add_to_physmap.fields;
  mem.check(arg, xen_add_to_physmap.size);
  const target = targetDomain(hv, v, mem.u16(arg + f.domid.offset));
  if (typeof target === "number") return target;
  const space = mem.u32(arg + f.space.offset);
  const idx = mem.u64(arg + f.idx.offset);
  const gpfn = _pfn(mem.u64(arg + f.gpfn.offset));
  if (space === XENMAPSPACE_grant_table) {
    // A grant frame may sit on any ordinary populated page of the guest's.
    const to = pfn_to_paddr(gpfn);
    if (!target.isPopulated(gpfn) || isArchFrame(gpfn) || to === target.sharedInfoAddr) {
      return -XenErrno.EINVAL;
    }
    if (target.gnttab.holdsPage(to) && target.gnttab.frameGfn(idx) !== gpfn) {
      return -XenErrno.EBUSY;
    }
    return target.gnttab.placeFrame(idx, to) ? 0 : -XenErrno.EINVAL;
  }
  if (space !== XENMAPSPACE_shared_info) return -XenErrno.ENOSYS;
  if (idx !== 0) return -XenErrno.EINVAL;
  if (!target.isPopulated(gpfn) || (isArchFrame(gpfn) && gpfn !== PFN_SHARED_INFO)) {
    return -XenErrno.EINVAL;
  }
  if (target.gnttab.holdsPage(pfn_to_paddr(gpfn))) return -XenErrno.EBUSY;
  const to = pfn_to_paddr(gpfn);
  if (to === target.sharedInfoAddr) return 0;
  const from = target.sharedInfoAddr;
  target.mem.u8.copyWithin(to, from, from + shared_info.size);
  target.mem.u8.fill(0, from, from + shared_info.size);
  target.sharedInfoAddr = to;
  return 0;
}

/** memory_op(cmd, arg) */
export function do_memory_op(hv: Hypervisor, v: Vcpu, cmd: number, arg: number): number {
  arg >>>= 0;
  switch (cmd) {
    case XENMEM_increase_reservation:
    case XENMEM_decrease_reservation:
    case XENMEM_populate_physmap:
      return reservation(hv, v, cmd, arg);
    case XENMEM_current_reservation:
    case XENMEM_maximum_reservation: {
      const target = targetDomain(hv, v, v.domain.mem.u16(arg));
      if (typeof target === "number") return target;
      return cmd === XENMEM_current_reservation ? target.totPages : target.maxPages;
    }
    case XENMEM_maximum_gpfn: {
      const target = targetDomain(hv, v, v.domain.mem.u16(arg));
      if (typeof target === "number") return target;
      return target.nrPfns - 1;
    }
    case XENMEM_add_to_physmap:
      return addToPhysmap(hv, v, arg);
    default:
      return -XenErrno.ENOSYS;
  }
}
