// blkfront (mini-os blkfront.c): a block device frontend over the blkif ring
// (io/blkif.h), with the xenbus handshake of pv-drivers-lifecycle. Grants are
// persistent (feature-persistent): a page granted to the backend stays
// granted and the backend keeps it mapped. A page-aligned buffer is granted
// page by page on first use and then used in place (zero copy); any other
// buffer goes through a static pool of bounce pages. When the backend offers
// feature-max-indirect-segments, a page-aligned transfer goes as indirect
// requests (BLKIF_OP_INDIRECT) of up to 256 pages, their segments listed in
// granted indirect pages, so that 1 MiB is one request; otherwise, and for
// bounced transfers, up to BATCH requests of 11 pages each are in flight.
//
// blkfront_init(devid) connects virtual device `devid` (51712 is xvda);
// blkfront_read / blkfront_write move whole sectors; blkfront_flush makes
// earlier writes durable; blkfront_discard drops sectors. All return 0 or a
// negative value: -XEN_EIO for an error response, -XEN_EINVAL for a request
// the device cannot take.
//
// blkfront_aio_read / blkfront_aio_write (mini-os's blkfront_aio) start one
// indirect request and return its id without waiting, so that a guest can
// keep several in flight; blkfront_aio_wait collects the next one answered.
// The synchronous calls refuse to run while any is in flight.
import {
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_DISCARD,
  BLKIF_OP_INDIRECT,
  BLKIF_INDIRECT_OPERATION_OFF,
  BLKIF_INDIRECT_INDIRECT_OP_OFF,
  BLKIF_INDIRECT_NR_SEGMENTS_OFF,
  BLKIF_INDIRECT_ID_OFF,
  BLKIF_INDIRECT_SECTOR_NUMBER_OFF,
  BLKIF_INDIRECT_HANDLE_OFF,
  BLKIF_INDIRECT_INDIRECT_GREFS_OFF,
  BLKIF_RING_ENTRY,
  BLKIF_REQUEST_OPERATION_OFF,
  BLKIF_REQUEST_NR_SEGMENTS_OFF,
  BLKIF_REQUEST_HANDLE_OFF,
  BLKIF_REQUEST_ID_OFF,
  BLKIF_REQUEST_SECTOR_NUMBER_OFF,
  BLKIF_REQUEST_SEG_OFF,
  BLKIF_SEGMENT_BYTES,
  BLKIF_SEGMENT_GREF_OFF,
  BLKIF_SEGMENT_FIRST_SECT_OFF,
  BLKIF_SEGMENT_LAST_SECT_OFF,
  BLKIF_DISCARD_FLAG_OFF,
  BLKIF_DISCARD_NR_SECTORS_OFF,
  BLKIF_RESPONSE_ID_OFF,
  BLKIF_RESPONSE_STATUS_OFF,
  VDISK_READONLY,
  BLKIF_RSP_OKAY,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  XenbusStateInitialised,
  XenbusStateConnected,
  XEN_EIO,
  XEN_EINVAL,
  XEN_EBUSY,
} from "./xen_abi";
import { gnttab_grant_access, gnttab_grant_pages, virt_to_gfn } from "./gnttab";
import {
  evtchn_alloc_unbound,
  notify_remote_via_evtchn,
  unmask_evtchn,
  fire_count,
} from "./events";
import {
  xenbus_read_u32,
  xenbus_write,
  xenbus_write_u32,
  xenbus_wait_for_state,
  xenbus_read_string,
  xenbus_poll_watch,
  xenbus_follow_backend,
  Otherend,
} from "./xenbus";
import { block, wake_give_back, wake_mark } from "./sched";
import {
  front_ring_at,
  front_ring_init,
  ring_slot,
  ring_push_requests,
  ring_unconsumed_responses,
  ring_final_check_for_responses,
} from "./ring";
import { on_resume } from "./kernel";

const SEGS: u32 = <u32>BLKIF_MAX_SEGMENTS_PER_REQUEST;
/** Requests in flight at once. */
const BATCH: u32 = 8;
const SECTOR: u32 = 512;
/** Bytes one request carries: 11 pages. */
export const BLKFRONT_MAX_REQUEST: u32 = SEGS * 4096;

/** Segments per indirect request at most (one indirect page's worth is 512). */
const MAX_INDIRECT_SEGS: u32 = 256;
/** Indirect requests in flight at once, each with its own indirect page. */
const INDIRECT_SLOTS: u32 = 8;

const ring = memory.data(4096, 4096);
/** Indirect slots held by asynchronous requests, a bit each. */
let aio_busy: u32 = 0;
/** The status of the request blkfront_aio_wait last returned. */
let aio_status: i32 = 0;
const indirect_pages = memory.data(<i32>(INDIRECT_SLOTS * 4096), 4096);
const indirect_grefs = memory.data(<i32>(INDIRECT_SLOTS * 4));
/**
 * What each indirect page lists now: the buffer and page count (0: nothing
 * valid). A request for the same pages as the last one in its slot (a
 * program reading into the same buffer again) reuses the list as it is:
 * persistent grants do not change while the device is connected.
 */
const indirect_buf = memory.data(<i32>(INDIRECT_SLOTS * 4));
const indirect_nseg = memory.data(<i32>(INDIRECT_SLOTS * 4));
/** Segments per indirect request on this device; 0 when the backend has none. */
let indirect_segs: u32 = 0;
const pages = memory.data(<i32>(BATCH * SEGS * 4096), 4096);
const grefs = memory.data(<i32>(BATCH * SEGS * 4));
/** Persistent grants of callers' pages: gfn + 1 → gref, open addressing. */
const CACHE: u32 = 2048;
const cache_keys = memory.data(<i32>(CACHE * 4));
const cache_refs = memory.data(<i32>(CACHE * 4));
let cache_used: u32 = 0;

let backend_id: u32 = 0;
let port: u32 = 0;
const fr = front_ring_at(memory.data(24, 8));
let sectors: u64 = 0;
let readonly: bool = false;
let connected: bool = false;
/** The link to the backend, once connected. */
let otherend: Otherend | null = null;
let failed: u32 = 0;

/** Sectors on the connected device. */
export function blkfront_sectors(): u64 {
  return sectors;
}

/** Whether the device is read-only (info has VDISK_READONLY). */
export function blkfront_readonly(): bool {
  return readonly;
}

function decimal(n: u32): string {
  return n.toString();
}

/** The device connected (blkfront_init's devid) and its ring's grant, for a resume. */
let the_devid: u32 = 0;
let ring_ref: i32 = -1;
let indirect_granted = false;

/** Connects virtual device `devid`; 0, or a negative error (and the reason printed by the caller). */
export function blkfront_init(devid: u32): i32 {
  const first = ring_ref < 0;
  const rc = handshake(devid);
  // Once connected, a resume in a new domain connects it again (kernel.ts).
  if (rc == 0 && first) on_resume(blkfront_resume);
  return rc;
}

/**
 * After a resume in a new domain (suspend returned 0, Xen's PV protocol):
 * the toolstack made the device afresh, its backend waits (InitWait), and
 * the old port is gone. The frontend goes through the handshake again as
 * Linux's blkfront_resume does: the same ring page and grants (the grant
 * table came with the domain's memory), the ring's indices set to zero, a
 * new port, then Initialised and the backend's Connected. The backend's
 * path is read again (it names the new domid). No asynchronous request may
 * be in flight (one would be lost): -XEN_EINVAL then.
 */
export function blkfront_resume(): i32 {
  if (!connected) return 0;
  if (aio_busy != 0) return -XEN_EINVAL;
  connected = false;
  return handshake(the_devid);
}

function handshake(devid: u32): i32 {
  const dev = "device/vbd/" + decimal(devid);
  const backend = xenbus_read_string(dev + "/backend");
  if (backend === null) return -XEN_EINVAL;
  const bid = xenbus_read_u32(dev + "/backend-id");
  if (bid < 0) return <i32>bid;
  if (ring_ref >= 0 && <u32>bid != backend_id) return -XEN_EINVAL;
  backend_id = <u32>bid;
  the_devid = devid;
  // SHARED_RING_INIT: every index zero.
  front_ring_init(fr, ring, 4096, BLKIF_RING_ENTRY, 0);
  if (ring_ref < 0) {
    ring_ref = gnttab_grant_access(backend_id, virt_to_gfn(ring), false);
    if (ring_ref < 0) return -XEN_EINVAL;
    if (!gnttab_grant_pages(backend_id, pages, BATCH * SEGS, grefs, false)) return -XEN_EINVAL;
  }
  const ref = ring_ref;
  const p = evtchn_alloc_unbound(backend_id);
  if (p < 0) return p;
  port = <u32>p;
  unmask_evtchn(port);
  let rc = xenbus_write_u32(dev + "/ring-ref", <u32>ref);
  if (rc == 0) rc = xenbus_write_u32(dev + "/event-channel", port);
  // XEN_IO_PROTO_ABI_NATIVE of xen/include/public/io/protocols.ts.
  if (rc == 0) rc = xenbus_write(dev + "/protocol", "wasm32-abi");
  if (rc == 0) rc = xenbus_write(dev + "/feature-persistent", "1");
  if (rc == 0) rc = xenbus_write_u32(dev + "/state", <u32>XenbusStateInitialised);
  if (rc < 0) return rc;
  rc = xenbus_wait_for_state(backend + "/state", <u32>XenbusStateConnected, "blkfront");
  if (rc < 0) return rc;
  const n = xenbus_read_u32(backend + "/sectors");
  if (n < 0) return <i32>n;
  sectors = <u64>n;
  const info = xenbus_read_u32(backend + "/info");
  readonly = info > 0 && (info & VDISK_READONLY) != 0;
  if (xenbus_read_u32(backend + "/sector-size") != <i64>SECTOR) return -XEN_EINVAL;
  const most = xenbus_read_u32(backend + "/feature-max-indirect-segments");
  if (most > <i64>SEGS) {
    // Writable: a backend maps persistent grants writable.
    if (
      !indirect_granted &&
      !gnttab_grant_pages(backend_id, indirect_pages, INDIRECT_SLOTS, indirect_grefs, false)
    ) {
      return -XEN_EINVAL;
    }
    indirect_granted = true;
    indirect_segs = most < <i64>MAX_INDIRECT_SEGS ? <u32>most : MAX_INDIRECT_SEGS;
    memory.fill(indirect_nseg, 0, INDIRECT_SLOTS * 4);
  }
  rc = xenbus_write_u32(dev + "/state", <u32>XenbusStateConnected);
  if (rc < 0) return rc;
  connected = true;
  // The watch xenbus_wait_for_state set stays, for blkfront_check_backend.
  otherend = new Otherend(dev, backend, "blkfront");
  return 0;
}

/**
 * Reads the backend's state and follows it: when it is Closing or gone
 * (hot-unplug, `xl block-detach`), the frontend stops using the ring and
 * goes to Closing, then Closed, as pv-drivers-lifecycle asks, so that the
 * backend can let go without waiting out the toolstack's timeout. Returns
 * true once the device is closed.
 */
export function blkfront_follow_backend(): bool {
  const o = otherend;
  if (!connected || o === null) return !connected;
  if (!xenbus_follow_backend(o)) return false;
  connected = false;
  return true;
}

/**
 * For a guest's main loop: follows the backend (blkfront_follow_backend)
 * when a xenstore watch event has come in since the last call. Returns true
 * once the device is closed.
 */
export function blkfront_check_backend(): bool {
  if (!connected) return true;
  if (xenbus_poll_watch() == 0) return false;
  return blkfront_follow_backend();
}

/** A persistent grant of the page at `addr`, made on first use; -1 when none can be had. */
function grant_for(addr: usize): i32 {
  const gfn = virt_to_gfn(addr);
  let h = (gfn * 2654435761) & (CACHE - 1);
  for (let n: u32 = 0; n < CACHE; n++) {
    const k = load<u32>(cache_keys + h * 4);
    if (k == gfn + 1) return <i32>load<u32>(cache_refs + h * 4);
    if (k == 0) {
      // Keep a quarter free so that lookups stay short.
      if (cache_used >= (CACHE * 3) / 4) return -1;
      const ref = gnttab_grant_access(backend_id, gfn, false);
      if (ref < 0) return -1;
      store<u32>(cache_keys + h * 4, gfn + 1);
      store<u32>(cache_refs + h * 4, <u32>ref);
      cache_used++;
      return ref;
    }
    h = (h + 1) & (CACHE - 1);
  }
  return -1;
}

/**
 * Takes the next request slot and fills the blkif_request header every
 * operation shares (handle 0: one device per ring); returns the slot.
 */
function next_request(op: u8, nseg: u32, id: u64, sector: u64): usize {
  const r = ring_slot(fr, fr.req_prod_pvt);
  store<u8>(r + BLKIF_REQUEST_OPERATION_OFF, op);
  store<u8>(r + BLKIF_REQUEST_NR_SEGMENTS_OFF, <u8>nseg);
  store<u16>(r + BLKIF_REQUEST_HANDLE_OFF, 0);
  store<u64>(r + BLKIF_REQUEST_ID_OFF, id);
  store<u64>(r + BLKIF_REQUEST_SECTOR_NUMBER_OFF, sector);
  fr.req_prod_pvt++;
  return r;
}

/** Writes segment `i` of the list at `segs`: sectors 0..`bytes`/512 - 1 of grant `gref`'s page. */
function put_segment(segs: usize, i: u32, gref: u32, bytes: u32): void {
  const s = segs + i * BLKIF_SEGMENT_BYTES;
  store<u32>(s + BLKIF_SEGMENT_GREF_OFF, gref);
  store<u8>(s + BLKIF_SEGMENT_FIRST_SECT_OFF, 0);
  store<u8>(s + BLKIF_SEGMENT_LAST_SECT_OFF, <u8>(bytes / SECTOR - 1));
}

/** Queues one request; `slot` picks its data pages (and is its id). */
function queue(op: u8, slot: u32, sector: u64, bytes: u32): void {
  const nseg = (bytes + 4095) / 4096;
  const r = next_request(op, nseg, slot, sector);
  for (let i: u32 = 0; i < nseg; i++) {
    const left = bytes - i * 4096;
    const gref = load<u32>(grefs + (slot * SEGS + i) * 4);
    put_segment(r + BLKIF_REQUEST_SEG_OFF, i, gref, left < 4096 ? left : 4096);
  }
}

/** Publishes queued requests; notifies the backend if it asked to be. */
function push(): void {
  if (ring_push_requests(fr)) notify_remote_via_evtchn(port);
}

/** Sleeps until the backend's event, or a response already on the ring. */
function sleep_for_responses(): void {
  const mark = wake_mark();
  const seen = fire_count(port);
  while (fire_count(port) == seen && ring_unconsumed_responses(fr) == 0) block();
  wake_give_back(mark);
}

/** Waits for `n` responses; returns how many were errors. */
function wait(n: u32): u32 {
  let errors: u32 = 0;
  while (n > 0) {
    while (ring_unconsumed_responses(fr) > 0 && n > 0) {
      const status = load<i16>(ring_slot(fr, fr.rsp_cons) + BLKIF_RESPONSE_STATUS_OFF);
      if (status != <i16>BLKIF_RSP_OKAY) errors++;
      fr.rsp_cons++;
      n--;
    }
    if (n == 0 || ring_final_check_for_responses(fr)) continue;
    sleep_for_responses();
  }
  return errors;
}

/**
 * Lists the (granted) whole pages of `buf` as `nseg` blkif_request_segments
 * at `segs`; false if a page cannot be granted.
 */
function list_pages(segs: usize, buf: usize, nseg: u32): bool {
  for (let i: u32 = 0; i < nseg; i++) {
    const g = grant_for(buf + i * 4096);
    if (g < 0) return false;
    put_segment(segs, i, <u32>g, 4096);
  }
  return true;
}

/** Queues an indirect request for the pages of `buf`, listed in indirect page `slot`. */
function queue_indirect(op: u8, slot: u32, sector: u64, buf: usize, bytes: u32): bool {
  const nseg = bytes / 4096;
  if (
    load<u32>(indirect_nseg + slot * 4) != nseg ||
    load<u32>(indirect_buf + slot * 4) != <u32>buf
  ) {
    store<u32>(indirect_nseg + slot * 4, 0);
    if (!list_pages(indirect_pages + slot * 4096, buf, nseg)) return false;
    store<u32>(indirect_buf + slot * 4, <u32>buf);
    store<u32>(indirect_nseg + slot * 4, nseg);
  }
  // blkif_request_indirect has its own layout (nr_segments is 16 bits).
  const r = ring_slot(fr, fr.req_prod_pvt);
  store<u8>(r + BLKIF_INDIRECT_OPERATION_OFF, <u8>BLKIF_OP_INDIRECT);
  store<u8>(r + BLKIF_INDIRECT_INDIRECT_OP_OFF, op);
  store<u16>(r + BLKIF_INDIRECT_NR_SEGMENTS_OFF, <u16>nseg);
  store<u64>(r + BLKIF_INDIRECT_ID_OFF, slot);
  store<u64>(r + BLKIF_INDIRECT_SECTOR_NUMBER_OFF, sector);
  store<u16>(r + BLKIF_INDIRECT_HANDLE_OFF, 0);
  store<u32>(r + BLKIF_INDIRECT_INDIRECT_GREFS_OFF, load<u32>(indirect_grefs + slot * 4));
  fr.req_prod_pvt++;
  return true;
}

/** Queues a request whose segments are the (granted) pages of `buf` itself. */
function queue_direct(op: u8, sector: u64, buf: usize, bytes: u32): bool {
  // The segments go in first: a page that cannot be granted leaves the slot unused.
  const nseg = bytes / 4096;
  if (!list_pages(ring_slot(fr, fr.req_prod_pvt) + BLKIF_REQUEST_SEG_OFF, buf, nseg)) return false;
  next_request(op, nseg, 0, sector);
  return true;
}

/** In place: `buf` is page-aligned; false (nothing sent) if its pages cannot all be granted. */
function rw_direct(write: bool, sector: u64, buf: usize, bytes: u32): i32 {
  const op = write ? <u8>BLKIF_OP_WRITE : <u8>BLKIF_OP_READ;
  const most = indirect_segs > 0 ? indirect_segs * 4096 : BLKFRONT_MAX_REQUEST;
  const slots = indirect_segs > 0 ? INDIRECT_SLOTS : fr.size;
  let done: u32 = 0;
  while (done < bytes) {
    let inflight: u32 = 0;
    while (inflight < slots && done < bytes) {
      const left = bytes - done;
      const len = left < most ? left : most;
      const at = sector + done / SECTOR;
      const queued =
        indirect_segs > 0
          ? queue_indirect(op, inflight, at, buf + done, len)
          : queue_direct(op, at, buf + done, len);
      if (!queued) {
        if (inflight == 0 && done == 0) return 1;
        break;
      }
      done += len;
      inflight++;
    }
    if (inflight == 0) return 1;
    push();
    if (wait(inflight) > 0) return -XEN_EIO;
  }
  return 0;
}

/** Whether a transfer of `bytes` from `sector` fits the device; 0, or a negative error. */
function check_transfer(write: bool, sector: u64, bytes: u32): i32 {
  if (!connected) return -XEN_EIO;
  if (bytes % SECTOR != 0 || sector + <u64>(bytes / SECTOR) > sectors) return -XEN_EINVAL;
  if (write && readonly) return -XEN_EINVAL;
  return 0;
}

/** Reads or writes `bytes` (whole sectors) at `buf` from `sector` on. */
function rw(write: bool, sector: u64, buf: usize, bytes: u32): i32 {
  const bad = check_transfer(write, sector, bytes);
  if (bad < 0) return bad;
  // The indirect slots and the responses are the asynchronous requests' now.
  if (aio_busy != 0) return -XEN_EBUSY;
  if ((buf & 4095) == 0 && bytes % 4096 == 0) {
    const rc = rw_direct(write, sector, buf, bytes);
    if (rc <= 0) return rc;
    // Out of grants before anything was sent: bounce instead.
  }
  let done: u32 = 0;
  while (done < bytes) {
    let inflight: u32 = 0;
    const start = done;
    while (inflight < BATCH && done < bytes) {
      const left = bytes - done;
      const len = left < BLKFRONT_MAX_REQUEST ? left : BLKFRONT_MAX_REQUEST;
      const data = pages + inflight * SEGS * 4096;
      if (write) memory.copy(data, buf + done, len);
      queue(write ? <u8>BLKIF_OP_WRITE : <u8>BLKIF_OP_READ, inflight, sector + done / SECTOR, len);
      done += len;
      inflight++;
    }
    push();
    failed += wait(inflight);
    if (failed > 0) {
      failed = 0;
      return -XEN_EIO;
    }
    if (!write) {
      let at = start;
      for (let i: u32 = 0; i < inflight; i++) {
        const left = bytes - at;
        const len = left < BLKFRONT_MAX_REQUEST ? left : BLKFRONT_MAX_REQUEST;
        memory.copy(buf + at, pages + i * SEGS * 4096, len);
        at += len;
      }
    }
  }
  return 0;
}

/**
 * Starts one request for `bytes` at `buf` from `sector`, answered later
 * (blkfront_aio_wait); returns its id (0..7), or a negative error:
 * -XEN_EINVAL when the device has no indirect requests, the transfer is
 * not whole pages of a page-aligned buffer within one request
 * (feature-max-indirect-segments pages), or its pages cannot all be
 * granted; -XEN_EBUSY when 8 are in flight.
 */
function aio(write: bool, sector: u64, buf: usize, bytes: u32): i32 {
  const bad = check_transfer(write, sector, bytes);
  if (bad < 0) return bad;
  if (indirect_segs == 0 || (buf & 4095) != 0 || bytes == 0 || bytes % 4096 != 0) {
    return -XEN_EINVAL;
  }
  if (bytes > indirect_segs * 4096) return -XEN_EINVAL;
  const slot = <u32>ctz(~aio_busy);
  if (slot >= INDIRECT_SLOTS) return -XEN_EBUSY;
  const op = write ? <u8>BLKIF_OP_WRITE : <u8>BLKIF_OP_READ;
  if (!queue_indirect(op, slot, sector, buf, bytes)) return -XEN_EINVAL;
  aio_busy |= 1 << slot;
  push();
  return <i32>slot;
}

export function blkfront_aio_read(sector: u64, buf: usize, bytes: u32): i32 {
  return aio(false, sector, buf, bytes);
}

export function blkfront_aio_write(sector: u64, buf: usize, bytes: u32): i32 {
  return aio(true, sector, buf, bytes);
}

/**
 * Waits for the next asynchronous request to be answered and returns its
 * id (its status: blkfront_aio_status); -XEN_EINVAL when none is in flight.
 */
export function blkfront_aio_wait(): i32 {
  if (aio_busy == 0) return -XEN_EINVAL;
  while (true) {
    while (ring_unconsumed_responses(fr) > 0) {
      const r = ring_slot(fr, fr.rsp_cons);
      const id = load<u64>(r + BLKIF_RESPONSE_ID_OFF);
      const status = load<i16>(r + BLKIF_RESPONSE_STATUS_OFF);
      fr.rsp_cons++;
      // An id that is not in flight is the backend's mistake: skipped.
      if (id >= <u64>INDIRECT_SLOTS || (aio_busy & (1 << (<u32>id))) == 0) continue;
      aio_busy &= ~(1 << (<u32>id));
      aio_status = status == <i16>BLKIF_RSP_OKAY ? 0 : -XEN_EIO;
      return <i32>id;
    }
    if (ring_final_check_for_responses(fr)) continue;
    sleep_for_responses();
  }
  return unreachable();
}

/** 0 if the request blkfront_aio_wait last returned succeeded, -XEN_EIO if not. */
export function blkfront_aio_status(): i32 {
  return aio_status;
}

export function blkfront_read(sector: u64, buf: usize, bytes: u32): i32 {
  return rw(false, sector, buf, bytes);
}

export function blkfront_write(sector: u64, buf: usize, bytes: u32): i32 {
  return rw(true, sector, buf, bytes);
}

/** BLKIF_OP_FLUSH_DISKCACHE: earlier writes are on the host's disk when it returns 0. */
export function blkfront_flush(): i32 {
  if (!connected) return -XEN_EIO;
  if (aio_busy != 0) return -XEN_EBUSY;
  next_request(<u8>BLKIF_OP_FLUSH_DISKCACHE, 0, 0, 0);
  push();
  return wait(1) == 0 ? 0 : -XEN_EIO;
}

/** BLKIF_OP_DISCARD of `count` sectors from `sector`. */
export function blkfront_discard(sector: u64, count: u64): i32 {
  if (!connected) return -XEN_EIO;
  if (aio_busy != 0) return -XEN_EBUSY;
  // blkif_request_discard shares the header's offsets up to sector_number.
  const r = next_request(<u8>BLKIF_OP_DISCARD, 0, 0, sector);
  store<u8>(r + BLKIF_DISCARD_FLAG_OFF, 0);
  store<u64>(r + BLKIF_DISCARD_NR_SECTORS_OFF, count);
  push();
  return wait(1) == 0 ? 0 : -XEN_EIO;
}
