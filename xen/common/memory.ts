/**
 * memory_op (Xen's `common/memory.c`): reservations and the physmap.
 *
 * wasm32 guests are auto-translated: a guest names frames by gfn (= pfn), and
 * the hypervisor keeps the pfn → mfn map. A domain's linear memory is as large
 * as the pages it was given (its top), not as large as maxmem: populating a
 * pfn at or above the top grows it (a whole 64 KiB wasm page at a time), and
 * the guest's own `memory.grow` is rewritten into the same (confine.ts), so a
 * guest cannot touch a page it was not given. Every pfn below the top is
 * backed by a machine frame charged to the domain: populated (counted in
 * tot_pages) or a hole (`Domain.holes`: released, or the rest of a wasm page
 * a growth added). Wasm memory cannot shrink or unmap a page, so releasing a
 * pfn zeroes it and keeps its frame as a hole: the host's memory stays equal
 * to what the books say, and `xl info`'s free memory is real.
 *
 * Partial success is reported as Xen does: the number of extents completed.
 * Where tsxen differs: populating a pfn that is already populated stops the
 * batch there (Xen would replace the page), since a wasm32 pfn's memory cannot
 * be swapped for another frame's.
 */
import { trackedHypercall } from "./watchdog.js";
import { TRC_MEM_DECREASE_RESERVATION, TRC_MEM_SET_P2M_ENTRY } from "../include/public/trace.js";
import {
  XENMAPSPACE_grant_table,
  XENMAPSPACE_shared_info,
  XENMEM_acquire_resource,
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
import { DOMID_SELF, HYPERVISOR } from "../include/public/xen.js";
import {
  INVALID_MFN,
  PAGE_SIZE,
  _mfn,
  _pfn,
  mfn_x,
  pfn_to_paddr,
  type Pfn,
} from "../include/xen/mm.js";
import {
  FRAMES_PER_WASM_PAGE,
  PFN_SHARED_INFO,
  WASM32_MAX_WASM_PAGES,
  isArchFrame,
} from "../arch/wasm32/config.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Domain } from "./domain.js";
import type { Hypervisor } from "./hypervisor.js";
import { acquireResource } from "./dm.js";

/**
 * A continued memory_op carries the extent to start from in cmd's bits
 * above this shift (Xen's MEMOP_EXTENT_SHIFT, internal to the hypervisor:
 * xen/include/xen/hypercall.h).
 */
export const MEMOP_EXTENT_SHIFT = 6;

/** Largest extent order an unprivileged domain may ask for (Xen's domU default). */
export const DOMU_MAX_ORDER = 9;

/** Heap frames that making pfns below `endPfn` addressable would take (whole wasm pages). */
export function growthCost(d: Domain, endPfn: number): number {
  const top = Math.ceil(endPfn / FRAMES_PER_WASM_PAGE) * FRAMES_PER_WASM_PAGE;
  return Math.max(0, top - d.topPfn);
}

/**
 * Grows `d`'s linear memory so that every pfn below `endPfn` is addressable,
 * each new pfn's frame taken from the heap as a hole. False (nothing done)
 * past maxmem or when the host lacks the frames.
 */
export function growTop(hv: Hypervisor, d: Domain, endPfn: number): boolean {
  const cost = growthCost(d, endPfn);
  if (cost === 0) return true;
  if (d.topPfn + cost > d.nrPfns || hv.frames.freeFrames < cost) return false;
  try {
    if (d.memoryReplaceable && d.gnttab.pinned === 0) {
      // Nothing holds a view of it yet: a fresh memory of the new size, with
      // the old pages copied in, instead of growing it in place.
      const next = new WebAssembly.Memory({
        initial: (d.topPfn + cost) / FRAMES_PER_WASM_PAGE,
        maximum: WASM32_MAX_WASM_PAGES,
        shared: true,
      });
      copyPopulatedPages(d, new Uint8Array(next.buffer));
      d.wasmMemory = next;
      d.mem.retarget(next);
    } else {
      d.wasmMemory.grow(cost / FRAMES_PER_WASM_PAGE);
      d.mem.refresh(d.wasmMemory.buffer);
    }
  } catch {
    return false;
  }
  for (let i = 0; i < cost; i++) d.holes.push(hv.frames.alloc(d.domid)!);
  return true;
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

/**
 * Copies `d`'s memory into `to`, a fresh memory (all zero), page by page,
 * leaving out the pages that are not populated (they are zero: holes are
 * made zero and released pages are zeroed) and those that are zero. The
 * first touch of a page of a fresh shared memory, even a read, costs the
 * host a page fault (about 10 µs on a virtual machine), and a domain being
 * built has next to nothing in it when it grows.
 */
function copyPopulatedPages(d: Domain, to: Uint8Array): void {
  const from = d.mem.u8;
  for (let p = 0; p * PAGE_SIZE < from.length; p++) {
    if (!d.isPopulated(_pfn(p))) continue;
    const page = from.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    if (Buffer.compare(page, ZERO_PAGE) !== 0) to.set(page, p * PAGE_SIZE);
  }
}

/**
 * Charges a new domain for its linear memory as created: every pfn below the
 * top gets a frame, as a hole that populatePfn then fills.
 */
export function chargeInitialTop(hv: Hypervisor, d: Domain): void {
  while (d.holes.length + d.totPages < d.topPfn) d.holes.push(hv.frames.alloc(d.domid)!);
}

/** Gives pfn `p` of `d` a machine frame. False when over max_pages or the host is out of memory. */
export function populatePfn(hv: Hypervisor, d: Domain, p: Pfn): boolean {
  if (p >= d.nrPfns || d.isPopulated(p) || d.totPages >= d.maxPages) return false;
  if (p >= d.topPfn && !growTop(hv, d, p + 1)) return false;
  // Below the top, an unpopulated pfn always has its hole frame.
  d.p2m[p] = mfn_x(d.holes.pop()!);
  d.totPages++;
  return true;
}

/** Takes pfn `p` out of `d`'s physmap, zeroing the page; its frame stays a hole. False if it was not populated. */
export function releasePfn(d: Domain, p: Pfn): boolean {
  if (!d.isPopulated(p)) return false;
  d.holes.push(_mfn(d.p2m[p]!));
  d.p2m[p] = mfn_x(INVALID_MFN);
  d.totPages--;
  d.mem.u8.fill(0, pfn_to_paddr(p), pfn_to_paddr(p) + PAGE_SIZE);
  d.logDirty?.mark(p);
  return true;
}

/**
 * `memory.grow(delta)` of a guest (the `xen.grow` import): the next `delta`
 * wasm pages are populated from the domain's reservation. The old size in
 * wasm pages, or -1 past maxmem, max_pages or the host's free memory, as the
 * instruction answers when it cannot grow.
 */
export function guestGrow(hv: Hypervisor, d: Domain, delta: number): number {
  const old = d.topPfn / FRAMES_PER_WASM_PAGE;
  delta >>>= 0;
  if (delta === 0) return old;
  const frames = delta * FRAMES_PER_WASM_PAGE;
  const end = d.topPfn + frames;
  if (end > d.nrPfns || d.totPages + frames > d.maxPages) return -1;
  const from = d.topPfn;
  if (!growTop(hv, d, end)) return -1;
  for (let p = from; p < end; p++) populatePfn(hv, d, _pfn(p));
  return old;
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
  for (const m of d.holes.splice(0)) hv.frames.free(m);
  d.totPages = 0;
}

/** Resolves a domid argument for `v`: itself, or (privileged callers) any domain. */
export function targetDomain(hv: Hypervisor, v: Vcpu, domid: number): Domain | number {
  if (domid === DOMID_SELF || domid === v.domain.domid) return v.domain;
  if (!v.domain.privileged) return -XenErrno.EPERM;
  return hv.domainById(domid) ?? -XenErrno.ESRCH;
}

function reservation(hv: Hypervisor, v: Vcpu, cmd: number, arg: number, start: number): number {
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
  let done = start;
  for (; done < nr; done++) {
    // A long batch continues in the vCPU's next slice from this extent, with
    // the extent in cmd's high bits, as Xen's memory_op continues.
    if (done > start && hv.preemptCheck(v)) {
      return hv.createContinuation(
        v,
        HYPERVISOR.__HYPERVISOR_memory_op,
        cmd + done * 2 ** MEMOP_EXTENT_SHIFT,
        arg,
      );
    }
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
    if (cmd === XENMEM_populate_physmap && target.hvmBuild) {
      // An HVM domain being built: its pfns get frames; its program's
      // memory is made over them when its vCPU starts (Hypervisor.startHvm).
      if (target.totPages + frames > target.maxPages || hv.frames.freeFrames < frames) break;
      let free = true;
      for (let i = 0; i < frames && free; i++)
        if (target.p2m[gpfn + i] !== mfn_x(INVALID_MFN)) free = false;
      if (!free) break;
      for (let i = 0; i < frames; i++) target.p2m[gpfn + i] = mfn_x(hv.frames.alloc(target.domid)!);
      target.totPages += frames;
      continue;
    }
    if (cmd === XENMEM_populate_physmap) {
      // Growing a shared memory costs far more than a page: when the top
      // must move, it moves once for the run of contiguous extents ahead
      // (as far as max_pages allows), not once per 64 KiB. A memory that is
      // still replaced when it grows (a domain being built) grows for the
      // run at its first extent, before anything is in it to copy. A run
      // cut short later leaves holes, charged to the domain as any
      // growth's are.
      const first = done === start && target.memoryReplaceable;
      if (first || growthCost(target, gpfn + frames) > 0) {
        let end = gpfn + frames;
        const room = target.maxPages - target.totPages;
        for (let k = done + 1; k < nr && end - gpfn + frames <= room; k++) {
          if (mem.u64(list + k * 8) !== end || end + frames > target.nrPfns) break;
          end += frames;
        }
        if (end > gpfn + frames && hv.frames.freeFrames >= growthCost(target, end))
          growTop(hv, target, end);
      }
      let ok = true;
      for (let i = 0; i < frames && ok; i++) {
        if (target.isPopulated(_pfn(gpfn + i))) ok = false;
      }
      if (
        !ok ||
        target.totPages + frames > target.maxPages ||
        hv.frames.freeFrames < growthCost(target, gpfn + frames) ||
        !growTop(hv, target, gpfn + frames)
      )
        break;
      for (let i = 0; i < frames; i++) populatePfn(hv, target, _pfn(gpfn + i));
      if (hv.trace.on) {
        // As x86's p2m records it: gfn, mfn (64-bit each), the p2m type (ram), domain and order.
        const mfn = target.p2m[gpfn]!;
        hv.trace.record(TRC_MEM_SET_P2M_ENTRY, [gpfn, 0, mfn, 0, 0, target.domid | (order << 16)]);
      }
    } else {
      // decrease_reservation: the architecture's own frames are not the guest's to give.
      let ok = true;
      for (let i = 0; i < frames && ok; i++) {
        const p = _pfn(gpfn + i);
        if (!target.isPopulated(p) || isArchFrame(p)) ok = false;
      }
      if (!ok) break;
      for (let i = 0; i < frames; i++) releasePfn(target, _pfn(gpfn + i));
      if (hv.trace.on)
        hv.trace.record(TRC_MEM_DECREASE_RESERVATION, [gpfn, 0, target.domid | (order << 16)]);
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
  target.logDirty?.mark(from / PAGE_SIZE);
  target.logDirty?.mark(gpfn);
  target.sharedInfoAddr = to;
  return 0;
}

/** memory_op(cmd, arg), marked for the watchdog while it runs (trackedHypercall). */
export const do_memory_op = trackedHypercall(HYPERVISOR.__HYPERVISOR_memory_op, do_memory_op_body);

function do_memory_op_body(hv: Hypervisor, v: Vcpu, cmd: number, arg: number): number {
  arg >>>= 0;
  cmd >>>= 0;
  const start = Math.floor(cmd / 2 ** MEMOP_EXTENT_SHIFT);
  cmd %= 2 ** MEMOP_EXTENT_SHIFT;
  switch (cmd) {
    case XENMEM_increase_reservation:
    case XENMEM_decrease_reservation:
    case XENMEM_populate_physmap:
      return reservation(hv, v, cmd, arg, start);
    case XENMEM_current_reservation:
    case XENMEM_maximum_reservation: {
      const target = targetDomain(hv, v, v.domain.mem.u16(arg));
      if (typeof target === "number") return target;
      return cmd === XENMEM_current_reservation ? target.totPages : target.maxPages;
    }
    case XENMEM_maximum_gpfn: {
      const target = targetDomain(hv, v, v.domain.mem.u16(arg));
      if (typeof target === "number") return target;
      return target.topPfn - 1;
    }
    case XENMEM_add_to_physmap:
      return addToPhysmap(hv, v, arg);
    case XENMEM_acquire_resource:
      return acquireResource(hv, v, arg);
    default:
      return -XenErrno.ENOSYS;
  }
}
