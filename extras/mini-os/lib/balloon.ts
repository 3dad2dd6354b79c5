// The balloon driver (Linux's drivers/xen/balloon.c, in little): follows the
// toolstack's memory target (memory/target, written by `xl mem-set`) by
// giving pages back to Xen with XENMEM_decrease_reservation and taking them
// again with XENMEM_populate_physmap.
//
// mini-os allocates nothing after boot but small strings, so the pages it
// gives are its highest ones, above the kernel's data and a reserve for
// those strings: the ballooned pfns are one range [low, top) at the top of
// its memory. Filling the balloon back repopulates that range from `low`
// up; past it, it populates new pfns above `top` (linear memory grows), as
// far as `xl mem-max` allows.
import { HYPERVISOR_memory_op } from "./hypervisor";
import {
  DOMID_SELF,
  XENMEM_current_reservation,
  XENMEM_decrease_reservation,
  XENMEM_populate_physmap,
  XEN_MEMORY_RESERVATION_BYTES,
  XEN_MEMORY_RESERVATION_EXTENT_START_OFF,
  XEN_MEMORY_RESERVATION_NR_EXTENTS_OFF,
  XEN_MEMORY_RESERVATION_EXTENT_ORDER_OFF,
  XEN_MEMORY_RESERVATION_DOMID_OFF,
} from "./xen_abi";

/** Pages kept above the kernel's data for what it still allocates (1 MiB). */
const RESERVE_PAGES: u32 = 256;
/** Pfns per reservation call. */
const BATCH: u32 = 256;

// Taken from the heap on first use: static buffers would grow every kernel's image.
let reservation: usize = 0;
let extents: usize = 0;

let started = false;
/** The pfns [low, top) are ballooned out; [0, low) are the kernel's. */
let low: u32 = 0;
let top: u32 = 0;

function init(): void {
  if (started) return;
  started = true;
  reservation = (heap.alloc(<usize>XEN_MEMORY_RESERVATION_BYTES + 8) + 7) & ~(<usize>7);
  extents = (heap.alloc(<usize>(BATCH * 8) + 8) + 7) & ~(<usize>7);
  top = (<u32>memory.size()) << 4;
  low = top;
}

/** Pages the domain holds now (XENMEM_current_reservation). */
export function balloon_current_pages(): i32 {
  init();
  store<u16>(reservation, <u16>DOMID_SELF);
  return HYPERVISOR_memory_op(XENMEM_current_reservation, reservation);
}

/**
 * One reservation call over n pfns from `first`, counting up (or down when
 * `down`); how many it did, or -errno. Xen does the extents in order.
 */
function reserve(cmd: i32, first: u32, n: u32, down: bool = false): i32 {
  for (let i: u32 = 0; i < n; i++) store<u64>(extents + i * 8, <u64>(down ? first - i : first + i));
  memory.fill(reservation, 0, <usize>XEN_MEMORY_RESERVATION_BYTES);
  store<u64>(reservation + XEN_MEMORY_RESERVATION_EXTENT_START_OFF, <u64>extents);
  store<u64>(reservation + XEN_MEMORY_RESERVATION_NR_EXTENTS_OFF, <u64>n);
  store<u32>(reservation + XEN_MEMORY_RESERVATION_EXTENT_ORDER_OFF, 0);
  store<u16>(reservation + XEN_MEMORY_RESERVATION_DOMID_OFF, <u16>DOMID_SELF);
  return HYPERVISOR_memory_op(cmd, reservation);
}

/**
 * Moves the domain toward `target_kib`: returns the pages it holds after,
 * or -errno when Xen refused the first step. It stops short, as Linux's
 * balloon does, when there is nothing more to give or Xen gives no more.
 */
export function balloon_set_target(target_kib: u32): i32 {
  init();
  const want = <i32>(target_kib / 4);
  let cur = balloon_current_pages();
  if (cur < 0) return cur;
  // The lowest pfn that may go: above the data and what the runtime still allocates.
  const floor = <u32>((__heap_base + 4095) >> 12) + RESERVE_PAGES;
  while (cur > want && low > floor) {
    const n = min<u32>(min<u32>(<u32>(cur - want), BATCH), low - floor);
    // From the top down, so that what was given stays one range even if Xen stops early.
    const done = reserve(XENMEM_decrease_reservation, low - 1, n, true);
    if (done < 0) return done;
    low -= <u32>done;
    cur -= done;
    if (<u32>done < n) break;
  }
  while (cur < want) {
    let n = min<u32>(<u32>(want - cur), BATCH);
    let first = low;
    if (low < top) n = min<u32>(n, top - low);
    else first = top;
    const done = reserve(XENMEM_populate_physmap, first, n);
    if (done <= 0) break;
    if (low < top) low += <u32>done;
    else {
      top += <u32>done;
      low = top;
    }
    cur += done;
    if (<u32>done < n) break;
  }
  return balloon_current_pages();
}
