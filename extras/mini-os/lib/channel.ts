// PV channels (xen-doc misc/console.txt, xen-pv-channel(7)): a named PV
// console past the first, device/console/N, whose other end the toolstack
// chose in xl.cfg's channel= (a Unix socket in Dom0). The frontend is this
// file: it finds the device by name, grants Dom0 a page holding a
// xencons_interface, allocates an event channel, writes ring-ref and port,
// and goes to Initialised; once the backend is Connected, bytes flow: what
// the guest writes goes to `out`, what the host sends arrives in `in`.
// One channel per guest, as the library keeps one vchan. After a resume in
// a new domain (Xen's PV suspend) the channel connects again: channel_resume.
import {
  XENCONS_OUT_OFF,
  XENCONS_OUT_CONS_OFF,
  XENCONS_OUT_PROD_OFF,
  XENCONS_OUT_SIZE,
  XenbusStateConnected,
  XenbusStateInitialised,
  XEN_ENOENT,
} from "./xen_abi";
import { evtchn_alloc_unbound, notify_remote_via_evtchn, unmask_evtchn } from "./events";
import { gnttab_grant_access, virt_to_gfn } from "./gnttab";
import {
  xenbus_read_string,
  xenbus_read_u32,
  xenbus_write_u32,
  xenbus_switch_state,
  xenbus_wait_for_state,
} from "./xenbus";
import { block_on_port } from "./sched";
import { xencons_ring_read } from "./console";
import { on_resume } from "./kernel";

/**
 * The ring page granted to the backend, taken from the heap when a channel
 * is first opened (a static page would grow every kernel's image).
 */
let ring: usize = 0;
let port: u32 = 0;
let open_ = false;
/** The channel's device and ring grant, kept for channel_resume. */
let the_devid: u32 = 0;
let ring_ref: i32 = -1;

/** Consoles looked at for the name: device/console/1 .. MAX_CONSOLES. */
const MAX_CONSOLES: u32 = 8;

/**
 * Opens the channel named `name`: its devid, or -errno (-ENOENT when the
 * toolstack gave this domain no such channel).
 */
export function channel_open(name: string): i32 {
  for (let n: u32 = 1; n <= MAX_CONSOLES; n++) {
    let dir = "device/console/";
    dir += n.toString();
    const nm = xenbus_read_string(dir + "/name");
    if (nm == null || nm != name) continue;
    if (ring == 0) ring = (heap.alloc(8192) + 4095) & ~(<usize>4095);
    memory.fill(ring, 0, 4096);
    const first = ring_ref < 0;
    const rc = connect(n);
    if (rc < 0) return rc;
    // Once connected, a resume in a new domain connects it again (kernel.ts).
    if (first) on_resume(channel_resume);
    return <i32>n;
  }
  return -XEN_ENOENT;
}

/**
 * The handshake for device/console/`n`: the ring page granted (once: the
 * grant table comes with the domain's memory across a resume), a new port,
 * ring-ref and port written, Initialised, the backend's Connected, then
 * Connected. The ring's indices are left as they are: what either side had
 * not read yet is read after a resume.
 */
function connect(n: u32): i32 {
  let dir = "device/console/";
  dir += n.toString();
  const be = xenbus_read_u32(dir + "/backend-id");
  if (be < 0) return <i32>be;
  const backend = xenbus_read_string(dir + "/backend");
  if (backend == null) return -XEN_ENOENT;
  if (ring_ref < 0) {
    ring_ref = gnttab_grant_access(<u32>be, virt_to_gfn(ring), false);
    if (ring_ref < 0) return ring_ref;
  }
  const p = evtchn_alloc_unbound(<u32>be);
  if (p < 0) return p;
  port = <u32>p;
  unmask_evtchn(port);
  let rc = xenbus_write_u32(dir + "/ring-ref", <u32>ring_ref);
  if (rc == 0) rc = xenbus_write_u32(dir + "/port", port);
  if (rc == 0) rc = xenbus_switch_state(dir + "/state", XenbusStateInitialised);
  if (rc == 0) rc = xenbus_wait_for_state(backend + "/state", XenbusStateConnected, "channel");
  if (rc == 0) rc = xenbus_switch_state(dir + "/state", XenbusStateConnected);
  if (rc < 0) return rc;
  the_devid = n;
  open_ = true;
  return 0;
}

/**
 * After a resume in a new domain (suspend returned 0): the toolstack made
 * the channel afresh and its backend waits (InitWait); the frontend
 * connects again with the same ring and grant and a new port, as blkfront
 * and netfront do.
 */
export function channel_resume(): i32 {
  if (!open_) return 0;
  open_ = false;
  return connect(the_devid);
}

/** Writes up to `len` bytes at `p` to the channel; how many fit. */
export function channel_write(p: usize, len: u32): u32 {
  if (!open_) return 0;
  const cons = atomic.load<u32>(ring + XENCONS_OUT_CONS_OFF);
  let prod = load<u32>(ring + XENCONS_OUT_PROD_OFF);
  let n: u32 = 0;
  while (n < len && prod - cons < <u32>XENCONS_OUT_SIZE) {
    store<u8>(ring + XENCONS_OUT_OFF + (prod & (<u32>XENCONS_OUT_SIZE - 1)), load<u8>(p + n));
    prod++;
    n++;
  }
  if (n > 0) {
    atomic.store<u32>(ring + XENCONS_OUT_PROD_OFF, prod);
    notify_remote_via_evtchn(port);
  }
  return n;
}

/** Reads up to `cap` bytes into `p`; how many there were. */
export function channel_read(p: usize, cap: u32): u32 {
  return open_ ? xencons_ring_read(ring, port, p, cap) : 0;
}

/** Waits for the backend's next event on the channel (or 50 ms). */
export function channel_wait(): void {
  block_on_port(port, 50000000);
}
