// libxenvchan for mini-os (io/libxenvchan.h): one channel per guest, as
// server or client, wire-compatible with Xen's library and with tsxen's Dom0
// one (tools/libvchan).
//
// A server keeps the shared page and its rings in its own memory and grants
// them to the client. A client cannot map the server's pages into a wasm
// memory, so it reaches the shared page, the indices and the ring bytes with
// GNTTABOP_copy (docs/arch-wasm32.md): the layout on the wire stays Xen's.
// Index and notify-byte updates from a client are copies; all vCPUs share one
// host thread, so a copy of 4 bytes is never torn.
//
// The rendezvous is Xen's: the server writes <path>/ring-ref and
// <path>/event-channel, readable by the client only. Setting up allocates a
// few strings (paths); reading and writing do not allocate.
import {
  VCHAN_NOTIFY_READ,
  VCHAN_NOTIFY_WRITE,
  VCHAN_LEFT_CONS_OFF,
  VCHAN_LEFT_PROD_OFF,
  VCHAN_RIGHT_CONS_OFF,
  VCHAN_RIGHT_PROD_OFF,
  VCHAN_LEFT_ORDER_OFF,
  VCHAN_RIGHT_ORDER_OFF,
  VCHAN_CLI_LIVE_OFF,
  VCHAN_SRV_LIVE_OFF,
  VCHAN_CLI_NOTIFY_OFF,
  VCHAN_SRV_NOTIFY_OFF,
  VCHAN_GRANTS_OFF,
  XEN_EINVAL,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_unbound,
} from "./xen_abi";
import {
  evtchn_alloc_unbound,
  evtchn_bind_interdomain,
  notify_remote_via_evtchn,
  unmask_evtchn,
  evtchn_status,
} from "./events";
import { gnttab_grant_access, gnttab_copy_from, gnttab_copy_to, virt_to_gfn } from "./gnttab";
import { xenbus_write_u32, xenbus_read_u32, xenbus_set_perms_owner_reader } from "./xenbus";
import { domid } from "./kernel";
import { block_on_port } from "./sched";

/** Largest ring this SDK makes or accepts: 64 KiB (order 16). */
export const VCHAN_MAX_ORDER: u32 = 16;
const MAX_PAGES: u32 = 1 << (VCHAN_MAX_ORDER - 12);

// Server memory: the shared page and up to 16 pages per ring.
const shared = memory.data(4096, 4096);
const left_pages = memory.data(<i32>(MAX_PAGES * 4096), 4096);
const right_pages = memory.data(<i32>(MAX_PAGES * 4096), 4096);
// Client: a copy of the server's shared page header and grant list.
const remote = memory.data(4096, 4096);
const tmp = memory.data(8);

let is_server = false;
let peer: u32 = 0;
let port: u32 = 0;
let shared_ref: u32 = 0;
let open_ = false;

function order_of(size: u32): u32 {
  let o: u32 = 12;
  while (size > (<u32>1) << o) o++;
  return o;
}

// --- the shared page: local for a server, by grant copy for a client ---------

function page_u32(off: u32): u32 {
  if (is_server) return atomic.load<u32>(shared + off);
  gnttab_copy_from(peer, shared_ref, off, tmp, 4);
  return load<u32>(tmp);
}
function page_set_u32(off: u32, v: u32): void {
  if (is_server) {
    atomic.store<u32>(shared + off, v);
    return;
  }
  store<u32>(tmp, v);
  gnttab_copy_to(tmp, peer, shared_ref, off, 4);
}
function page_u8(off: u32): u32 {
  if (is_server) return atomic.load<u8>(shared + off);
  gnttab_copy_from(peer, shared_ref, off, tmp, 1);
  return load<u8>(tmp);
}
function page_set_u8(off: u32, v: u32): void {
  if (is_server) {
    atomic.store<u8>(shared + off, <u8>v);
    return;
  }
  store<u8>(tmp, <u8>v);
  gnttab_copy_to(tmp, peer, shared_ref, off, 1);
}

// --- rings -------------------------------------------------------------------

function order(left: bool): u32 {
  return is_server
    ? load<u16>(shared + (left ? VCHAN_LEFT_ORDER_OFF : VCHAN_RIGHT_ORDER_OFF))
    : load<u16>(remote + (left ? VCHAN_LEFT_ORDER_OFF : VCHAN_RIGHT_ORDER_OFF));
}
function ring_size(left: bool): u32 {
  return (<u32>1) << order(left);
}
/** Grant-list index of the first page of a multi-page ring (left first, then right). */
function first_grant(left: bool): u32 {
  if (left) return 0;
  const lo = order(true);
  return lo >= 12 ? (<u32>1) << (lo - 12) : 0;
}

/** Copies `n` bytes between guest memory at `buf` and ring offset `at` (no wrap inside). */
function ring_copy(left: bool, at: u32, buf: usize, n: u32, into_ring: bool): void {
  const o = order(left);
  if (is_server) {
    const base =
      o == 10 ? shared + 1024 : o == 11 ? shared + 2048 : left ? left_pages : right_pages;
    if (into_ring) memory.copy(base + at, buf, n);
    else memory.copy(buf, base + at, n);
    return;
  }
  let done: u32 = 0;
  while (done < n) {
    let ref: u32;
    let off: u32;
    let room: u32;
    if (o <= 11) {
      ref = shared_ref;
      off = (o == 10 ? 1024 : 2048) + at + done;
      room = n - done;
    } else {
      const pos = at + done;
      ref = load<u32>(remote + VCHAN_GRANTS_OFF + 4 * (first_grant(left) + (pos >> 12)));
      off = pos & 4095;
      room = 4096 - off;
    }
    // A grant copy may cross a page on neither side.
    const local_room: u32 = 4096 - ((<u32>(buf + done)) & 4095);
    if (local_room < room) room = local_room;
    const k = n - done < room ? n - done : room;
    const st = into_ring
      ? gnttab_copy_to(buf + done, peer, ref, off, k)
      : gnttab_copy_from(peer, ref, off, buf + done, k);
    // A grant the server no longer gives (it went away): the channel is dead.
    if (st != 0) {
      open_ = false;
      return;
    }
    done += k;
  }
}

// The server reads the left ring and writes the right one; the client the reverse.
function rd_left(): bool {
  return is_server;
}

/** Bytes ready to read (0 if the peer's indices are impossible). */
export function vchan_data_ready(): u32 {
  const left = rd_left();
  const ready =
    page_u32(left ? VCHAN_LEFT_PROD_OFF : VCHAN_RIGHT_PROD_OFF) -
    page_u32(left ? VCHAN_LEFT_CONS_OFF : VCHAN_RIGHT_CONS_OFF);
  return ready > ring_size(left) ? 0 : ready;
}

/** Bytes that can be written now (0 if the peer's indices are impossible). */
export function vchan_buffer_space(): u32 {
  const left = !rd_left();
  const used =
    page_u32(left ? VCHAN_LEFT_PROD_OFF : VCHAN_RIGHT_PROD_OFF) -
    page_u32(left ? VCHAN_LEFT_CONS_OFF : VCHAN_RIGHT_CONS_OFF);
  const size = ring_size(left);
  return used > size ? 0 : size - used;
}

function request_notify(bit: u32): void {
  const off = is_server ? VCHAN_CLI_NOTIFY_OFF : VCHAN_SRV_NOTIFY_OFF;
  page_set_u8(off, page_u8(off) | bit);
}

function send_notify(bit: u32): void {
  const off = is_server ? VCHAN_SRV_NOTIFY_OFF : VCHAN_CLI_NOTIFY_OFF;
  const prev = page_u8(off);
  if ((prev & bit) != 0) {
    page_set_u8(off, prev & ~bit);
    notify_remote_via_evtchn(port);
  }
}

/** Writes up to `len` bytes at `buf`; returns how many fitted (non-blocking). */
export function vchan_write(buf: usize, len: u32): u32 {
  const left = !rd_left();
  const n0 = vchan_buffer_space();
  const n = n0 < len ? n0 : len;
  if (n == 0) {
    request_notify(VCHAN_NOTIFY_READ);
    return 0;
  }
  const size = ring_size(left);
  const prod_off = left ? VCHAN_LEFT_PROD_OFF : VCHAN_RIGHT_PROD_OFF;
  const prod = page_u32(prod_off);
  const at = prod & (size - 1);
  const first = n < size - at ? n : size - at;
  ring_copy(left, at, buf, first, true);
  if (n > first) ring_copy(left, 0, buf + first, n - first, true);
  if (!open_) return 0;
  // The data goes in before the producer index that publishes it.
  page_set_u32(prod_off, prod + n);
  send_notify(VCHAN_NOTIFY_WRITE);
  return n;
}

/** Reads up to `max` bytes into `buf`; returns how many (non-blocking). */
export function vchan_read(buf: usize, max: u32): u32 {
  const left = rd_left();
  const r = vchan_data_ready();
  const n = r < max ? r : max;
  if (n == 0) {
    request_notify(VCHAN_NOTIFY_WRITE);
    return 0;
  }
  const size = ring_size(left);
  const cons_off = left ? VCHAN_LEFT_CONS_OFF : VCHAN_RIGHT_CONS_OFF;
  const cons = page_u32(cons_off);
  const at = cons & (size - 1);
  const first = n < size - at ? n : size - at;
  ring_copy(left, at, buf, first, false);
  if (n > first) ring_copy(left, 0, buf + first, n - first, false);
  if (!open_) return 0;
  // The consumer index moves after the bytes are copied out.
  page_set_u32(cons_off, cons + n);
  send_notify(VCHAN_NOTIFY_READ);
  return n;
}

/**
 * Whether the peer is connected (or, for a server, not yet):
 * libxenvchan_is_open. A peer that died without closing is seen through the
 * event channel: its end is gone, so ours is no longer interdomain (tsxen's
 * stand-in for the unmap notifications Linux's gntdev and gntalloc give).
 */
export function vchan_is_open(): bool {
  if (!open_) return false;
  const live = page_u8(is_server ? VCHAN_CLI_LIVE_OFF : VCHAN_SRV_LIVE_OFF);
  if (live == 0) return false;
  const st = evtchn_status(port);
  return st == EVTCHNSTAT_interdomain || (is_server && live == 2 && st == EVTCHNSTAT_unbound);
}

/** Blocks until the peer signals, or 50 ms pass (so that a dead peer is noticed). */
export function vchan_wait(): void {
  block_on_port(port, 50000000);
}

/**
 * libxenvchan_server_init: offers a channel to domain `client` at xenstore
 * path `path` (relative to this domain's home, or absolute), with rings of at
 * least `read_min` (client→server) and `write_min` bytes. Returns 0 or -errno.
 */
export function vchan_server_init(client: u32, path: string, read_min: u32, write_min: u32): i32 {
  let lo = order_of(read_min);
  let ro = order_of(write_min);
  if (read_min <= 1024 && write_min <= 2048) {
    lo = 10;
    ro = 11;
  } else if (read_min <= 2048 && write_min <= 1024) {
    lo = 11;
    ro = 10;
  } else if (read_min <= 2048) lo = 11;
  else if (write_min <= 2048) ro = 11;
  if (lo > VCHAN_MAX_ORDER || ro > VCHAN_MAX_ORDER) return -XEN_EINVAL;
  is_server = true;
  peer = client;
  memory.fill(shared, 0, 4096);
  store<u16>(shared + VCHAN_LEFT_ORDER_OFF, <u16>lo);
  store<u16>(shared + VCHAN_RIGHT_ORDER_OFF, <u16>ro);
  let g: u32 = 0;
  for (let side = 0; side < 2; side++) {
    const o = side == 0 ? lo : ro;
    if (o < 12) continue;
    const base = side == 0 ? left_pages : right_pages;
    for (let i: u32 = 0; i < (<u32>1) << (o - 12); i++) {
      const ref = gnttab_grant_access(client, virt_to_gfn(base + i * 4096), false);
      if (ref < 0) return -XEN_EINVAL;
      store<u32>(shared + VCHAN_GRANTS_OFF + 4 * g++, <u32>ref);
    }
  }
  store<u8>(shared + VCHAN_CLI_LIVE_OFF, 2);
  store<u8>(shared + VCHAN_SRV_LIVE_OFF, 1);
  // The server wants to hear when the client writes.
  store<u8>(shared + VCHAN_CLI_NOTIFY_OFF, <u8>VCHAN_NOTIFY_WRITE);
  const sref = gnttab_grant_access(client, virt_to_gfn(shared), false);
  if (sref < 0) return -XEN_EINVAL;
  const p = evtchn_alloc_unbound(client);
  if (p < 0) return p;
  port = <u32>p;
  unmask_evtchn(port);
  open_ = true;
  let rc = xenbus_write_u32(path + "/ring-ref", <u32>sref);
  if (rc == 0) rc = xenbus_set_perms_owner_reader(path + "/ring-ref", domid(), client);
  if (rc == 0) rc = xenbus_write_u32(path + "/event-channel", port);
  if (rc == 0) rc = xenbus_set_perms_owner_reader(path + "/event-channel", domid(), client);
  return rc;
}

/**
 * libxenvchan_client_init: connects to the channel domain `server` offers at
 * xenstore path `path` (absolute). Returns 0 or -errno.
 */
export function vchan_client_init(server: u32, path: string): i32 {
  const ref = xenbus_read_u32(path + "/ring-ref");
  if (ref < 0) return <i32>ref;
  const ev = xenbus_read_u32(path + "/event-channel");
  if (ev < 0) return <i32>ev;
  is_server = false;
  peer = server;
  shared_ref = <u32>ref;
  const st = gnttab_copy_from(server, shared_ref, 0, remote, 4096);
  if (st != 0) return -XEN_EINVAL;
  const lo = order(true);
  const ro = order(false);
  if (lo < 10 || ro < 10 || lo > VCHAN_MAX_ORDER || ro > VCHAN_MAX_ORDER) return -XEN_EINVAL;
  const p = evtchn_bind_interdomain(server, <u32>ev);
  if (p < 0) return p;
  port = <u32>p;
  unmask_evtchn(port);
  open_ = true;
  page_set_u8(VCHAN_CLI_LIVE_OFF, 1);
  // The client wants to hear when the server writes.
  page_set_u8(VCHAN_SRV_NOTIFY_OFF, VCHAN_NOTIFY_WRITE);
  notify_remote_via_evtchn(port);
  return 0;
}

/** libxenvchan_close: tells the peer the channel is closed. */
export function vchan_close(): void {
  if (!open_) return;
  page_set_u8(is_server ? VCHAN_SRV_LIVE_OFF : VCHAN_CLI_LIVE_OFF, 0);
  notify_remote_via_evtchn(port);
  open_ = false;
}

/** Writes all `len` bytes or none (libxenvchan_send, packet mode); returns whether it did. */
export function vchan_send(buf: usize, len: u32): bool {
  if (vchan_buffer_space() < len) {
    request_notify(VCHAN_NOTIFY_READ);
    return false;
  }
  return vchan_write(buf, len) == len;
}

/** Reads exactly `len` bytes if they are all there, else nothing (libxenvchan_recv). */
export function vchan_recv(buf: usize, len: u32): bool {
  if (vchan_data_ready() < len) {
    request_notify(VCHAN_NOTIFY_WRITE);
    return false;
  }
  return vchan_read(buf, len) == len;
}
