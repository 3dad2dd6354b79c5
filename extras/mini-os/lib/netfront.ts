// netfront (mini-os netfront.c): a network frontend over the netif tx and
// rx rings (io/netif.h), with the xenbus handshake of pv-drivers-lifecycle.
// It posts NRX receive pages (copy mode: request-rx-copy) and sends from a
// pool of NTX pages, one frame per slot (no scatter-gather). All pages are
// granted to the backend once.
//
// netfront_init() connects device/vif/0; netfront_send(ptr, len) queues a
// frame; netfront_recv(buf, max) takes one received frame (0 when none);
// netfront_wait(deadline) sleeps until an event or system time `deadline`.
import {
  XenbusStateInitialised,
  XenbusStateConnected,
  NETIF_TX_ENTRY,
  NETIF_RX_ENTRY,
  NETIF_TX_REQUEST_GREF_OFF,
  NETIF_TX_REQUEST_OFFSET_OFF,
  NETIF_TX_REQUEST_FLAGS_OFF,
  NETIF_TX_REQUEST_ID_OFF,
  NETIF_TX_REQUEST_SIZE_OFF,
  NETIF_TX_RESPONSE_ID_OFF,
  NETIF_RX_REQUEST_ID_OFF,
  NETIF_RX_REQUEST_PAD_OFF,
  NETIF_RX_REQUEST_GREF_OFF,
  NETIF_RX_RESPONSE_ID_OFF,
  NETIF_RX_RESPONSE_OFFSET_OFF,
  NETIF_RX_RESPONSE_STATUS_OFF,
  XEN_EINVAL,
  XEN_EIO,
} from "./xen_abi";
import { gnttab_grant_access, gnttab_grant_pages, virt_to_gfn } from "./gnttab";
import {
  evtchn_alloc_unbound,
  notify_remote_via_evtchn,
  unmask_evtchn,
  fire_count,
} from "./events";
import {
  xenbus_read,
  xenbus_read_u32,
  xenbus_write,
  xenbus_write_u32,
  xenbus_wait_for_state,
  xenbus_read_string,
  xenbus_poll_watch,
  xenbus_follow_backend,
  Otherend,
  xenbus_reply,
  xenbus_reply_len,
} from "./xenbus";
import { block, init_time, wake_give_back, wake_mark } from "./sched";
import {
  FrontRing,
  front_ring_at,
  front_ring_init,
  ring_slot,
  ring_push_requests,
  ring_unconsumed_responses,
  ring_final_check_for_responses,
} from "./ring";
import { HYPERVISOR_set_timer_op } from "./hypervisor";
import { on_resume } from "./kernel";

const NRX: u32 = 64;
const NTX: u32 = 32;

const tx_ring = memory.data(4096, 4096);
const rx_ring = memory.data(4096, 4096);
const rx_pages = memory.data(<i32>(NRX * 4096), 4096);
const tx_pages = memory.data(<i32>(NTX * 4096), 4096);
const rx_grefs = memory.data(<i32>(NRX * 4));
const tx_grefs = memory.data(<i32>(NTX * 4));
const tx_free = memory.data(<i32>(NTX * 4));
const mac = memory.data(8);

let tx_free_n: u32 = 0;
const txr = front_ring_at(memory.data(24, 8));
const rxr = front_ring_at(memory.data(24, 8));
let port: u32 = 0;
let backend_id: u32 = 0;
/** The link to the backend, once connected. */
let otherend: Otherend | null = null;
let closed: bool = false;

/** The 6-byte MAC address from device/vif/0/mac. */
export function netfront_mac(): usize {
  return mac;
}

function hexval(c: u32): i32 {
  if (c >= 48 && c <= 57) return <i32>c - 48;
  if (c >= 97 && c <= 102) return <i32>c - 87;
  if (c >= 65 && c <= 70) return <i32>c - 55;
  return -1;
}

function post_rx(id: u32): void {
  const r = ring_slot(rxr, rxr.req_prod_pvt);
  store<u16>(r + NETIF_RX_REQUEST_ID_OFF, <u16>id);
  store<u16>(r + NETIF_RX_REQUEST_PAD_OFF, 0);
  store<u32>(r + NETIF_RX_REQUEST_GREF_OFF, load<u32>(rx_grefs + id * 4));
  rxr.req_prod_pvt++;
}

/** Publishes `r`'s queued requests; notifies the backend if it asked to be. */
function push(r: FrontRing): void {
  if (ring_push_requests(r)) notify_remote_via_evtchn(port);
}

/** The rings' grants, made once (a resume keeps them: the grant table comes with the domain). */
let txref: i32 = -1;
let rxref: i32 = -1;

/** Connects device/vif/0; 0 or a negative error. */
export function netfront_init(): i32 {
  const first = txref < 0;
  const rc = handshake();
  // Once connected, a resume in a new domain connects it again (kernel.ts).
  if (rc == 0 && first) on_resume(netfront_resume);
  return rc;
}

/**
 * After a resume in a new domain (suspend returned 0): the toolstack made
 * the vif afresh and its backend waits; the frontend goes through the
 * handshake again as Linux's netfront_resume does: the same rings and
 * grants, the rings' indices zeroed, every transmit slot free again (the
 * frames in flight are lost, as a network may lose them), the receive
 * buffers posted anew, a new port. The backend's path is read again.
 */
export function netfront_resume(): i32 {
  if (closed || otherend === null) return 0;
  return handshake();
}

function handshake(): i32 {
  const dev = "device/vif/0";
  const backend = xenbus_read_string(dev + "/backend");
  if (backend === null) return -XEN_EINVAL;
  const bid = xenbus_read_u32(dev + "/backend-id");
  if (bid < 0) return <i32>bid;
  if (txref >= 0 && <u32>bid != backend_id) return -XEN_EINVAL;
  backend_id = <u32>bid;
  if (xenbus_read(dev + "/mac") < 0 || xenbus_reply_len() != 17) return -XEN_EINVAL;
  for (let i = 0; i < 6; i++) {
    const hi = hexval(load<u8>(xenbus_reply() + i * 3));
    const lo = hexval(load<u8>(xenbus_reply() + i * 3 + 1));
    if (hi < 0 || lo < 0) return -XEN_EINVAL;
    store<u8>(mac + i, <u8>((hi << 4) | lo));
  }
  front_ring_init(txr, tx_ring, 4096, NETIF_TX_ENTRY, 0);
  front_ring_init(rxr, rx_ring, 4096, NETIF_RX_ENTRY, 0);
  if (txref < 0) {
    txref = gnttab_grant_access(backend_id, virt_to_gfn(tx_ring), false);
    rxref = gnttab_grant_access(backend_id, virt_to_gfn(rx_ring), false);
    if (txref < 0 || rxref < 0) return -XEN_EINVAL;
    if (!gnttab_grant_pages(backend_id, rx_pages, NRX, rx_grefs, false)) return -XEN_EINVAL;
    if (!gnttab_grant_pages(backend_id, tx_pages, NTX, tx_grefs, true)) return -XEN_EINVAL;
  }
  for (let i: u32 = 0; i < NTX; i++) store<u32>(tx_free + i * 4, i);
  tx_free_n = NTX;
  const p = evtchn_alloc_unbound(backend_id);
  if (p < 0) return p;
  port = <u32>p;
  unmask_evtchn(port);
  let rc = xenbus_write_u32(dev + "/tx-ring-ref", <u32>txref);
  if (rc == 0) rc = xenbus_write_u32(dev + "/rx-ring-ref", <u32>rxref);
  if (rc == 0) rc = xenbus_write_u32(dev + "/event-channel", port);
  if (rc == 0) rc = xenbus_write(dev + "/request-rx-copy", "1");
  if (rc == 0) rc = xenbus_write(dev + "/feature-rx-notify", "1");
  if (rc == 0) rc = xenbus_write_u32(dev + "/state", <u32>XenbusStateInitialised);
  if (rc < 0) return rc;
  rc = xenbus_wait_for_state(backend + "/state", <u32>XenbusStateConnected, "netfront");
  if (rc < 0) return rc;
  otherend = new Otherend(dev, backend, "netfront");
  for (let i: u32 = 0; i < NRX; i++) post_rx(i);
  push(rxr);
  return xenbus_write_u32(dev + "/state", <u32>XenbusStateConnected);
}

/** Takes back the tx slots the backend has answered. */
function reclaim_tx(): void {
  while (ring_unconsumed_responses(txr) > 0) {
    const id = load<u16>(ring_slot(txr, txr.rsp_cons) + NETIF_TX_RESPONSE_ID_OFF);
    store<u32>(tx_free + tx_free_n * 4, <u32>id);
    tx_free_n++;
    txr.rsp_cons++;
  }
}

/** Sleeps until an event arrives or system time `deadline` (ns; 0 for no deadline). */
export function netfront_wait(deadline: u64): void {
  // Ask for events on both rings' next responses; with a frame already
  // received, do not sleep (answered tx slots are just taken back).
  reclaim_tx();
  ring_final_check_for_responses(txr);
  if (ring_final_check_for_responses(rxr)) return;
  if (deadline != 0) {
    init_time();
    HYPERVISOR_set_timer_op(deadline);
  }
  block();
}

/** Queues frame `len` bytes at `ptr` (at most a page); 0, or -XEN_EINVAL. */
export function netfront_send(ptr: usize, len: u32): i32 {
  if (closed) return -XEN_EIO;
  if (len == 0 || len > 4096) return -XEN_EINVAL;
  reclaim_tx();
  const mark = wake_mark();
  while (tx_free_n == 0) {
    const seen = fire_count(port);
    if (!ring_final_check_for_responses(txr)) {
      while (fire_count(port) == seen && ring_unconsumed_responses(txr) == 0) block();
    }
    reclaim_tx();
  }
  wake_give_back(mark);
  tx_free_n--;
  const id = load<u32>(tx_free + tx_free_n * 4);
  memory.copy(tx_pages + id * 4096, ptr, len);
  const r = ring_slot(txr, txr.req_prod_pvt);
  store<u32>(r + NETIF_TX_REQUEST_GREF_OFF, load<u32>(tx_grefs + id * 4));
  store<u16>(r + NETIF_TX_REQUEST_OFFSET_OFF, 0);
  store<u16>(r + NETIF_TX_REQUEST_FLAGS_OFF, 0);
  store<u16>(r + NETIF_TX_REQUEST_ID_OFF, <u16>id);
  store<u16>(r + NETIF_TX_REQUEST_SIZE_OFF, <u16>len);
  txr.req_prod_pvt++;
  push(txr);
  return 0;
}

/** Copies one received frame into `buf` (up to `max` bytes); its length, or 0 if none waits. */
export function netfront_recv(buf: usize, max: u32): u32 {
  if (closed) return 0;
  while (ring_unconsumed_responses(rxr) > 0) {
    const r = ring_slot(rxr, rxr.rsp_cons);
    const id = <u32>load<u16>(r + NETIF_RX_RESPONSE_ID_OFF);
    const offset = <u32>load<u16>(r + NETIF_RX_RESPONSE_OFFSET_OFF);
    const status = load<i16>(r + NETIF_RX_RESPONSE_STATUS_OFF);
    rxr.rsp_cons++;
    let n: u32 = 0;
    if (status > 0 && id < NRX && offset + <u32>status <= 4096) {
      n = <u32>status < max ? <u32>status : max;
      memory.copy(buf, rx_pages + id * 4096 + offset, n);
    }
    if (id < NRX) post_rx(id);
    push(rxr);
    if (n > 0) return n;
  }
  return 0;
}

/**
 * Follows the backend's state (its watch was set at init): when it closes
 * (hot-unplug, `xl network-detach`), the frontend closes too, as
 * pv-drivers-lifecycle asks, and stops using the rings. Returns true once
 * the vif is closed. Call it from the guest's main loop.
 */
export function netfront_check_backend(): bool {
  if (closed || otherend === null) return closed;
  if (xenbus_poll_watch() == 0) return false;
  return netfront_follow_backend();
}

/**
 * Reads the backend's state and follows it (netfront_check_backend without
 * taking a watch event, for a guest that reads its events itself).
 */
export function netfront_follow_backend(): bool {
  const o = otherend;
  if (closed || o === null) return closed;
  closed = xenbus_follow_backend(o);
  return closed;
}
