// xenbus (mini-os xenbus.c): this domain's connection to xenstored over the
// shared ring page and the store event channel of start_info, as
// xenstore-ring.txt describes. One request at a time; replies come back into
// a static buffer (the SDK does not allocate); watch events that arrive in
// between are queued (up to 16) for xenbus_wait_for_watch.
//
// Paths may be relative (to /local/domain/<domid>). Errors are returned as
// negative Xen errno values: -ENOENT, -EACCES, -EAGAIN (a transaction to
// retry), -EINVAL, or -EIO for any other.
import {
  XENSTORE_ADDR,
  START_INFO_ADDR,
  START_INFO_STORE_EVTCHN_OFF,
  XENSTORE_REQ_OFF,
  XENSTORE_RSP_OFF,
  XENSTORE_REQ_CONS_OFF,
  XENSTORE_REQ_PROD_OFF,
  XENSTORE_RSP_CONS_OFF,
  XENSTORE_RSP_PROD_OFF,
  XS_READ,
  XS_WRITE,
  XS_MKDIR,
  XS_RM,
  XS_DIRECTORY,
  XS_WATCH,
  XS_UNWATCH,
  XS_WATCH_EVENT,
  XS_ERROR,
  XS_TRANSACTION_START,
  XS_TRANSACTION_END,
  XS_SET_PERMS,
  XEN_ENOENT,
  XEN_EACCES,
  XEN_EAGAIN,
  XEN_EINVAL,
  XEN_EIO,
  XEN_EEXIST,
  XEN_ENOSPC,
  XEN_E2BIG,
  XenbusStateClosing,
  XenbusStateClosed,
} from "./xen_abi";
import { notify_remote_via_evtchn, fire_count, unmask_evtchn } from "./events";
import { block, wake_give_back, wake_mark } from "./sched";

const RING: u32 = 1024;
const MAX_MSG: i32 = 4096 + 16;
const reqbuf = memory.data(MAX_MSG);
const reply = memory.data(MAX_MSG + 1);
const EVENTS: u32 = 16;
const EVENT_SIZE: u32 = 512;
const events = memory.data(<i32>(EVENTS * EVENT_SIZE));
let ev_head: u32 = 0;
let ev_count: u32 = 0;
let req_len: i32 = 0;
let next_id: u32 = 1;
let reply_length: i32 = 0;
let port: u32 = 0;

/** The store event channel (start_info.store_evtchn). */
export function xenbus_port(): u32 {
  return load<u32>(START_INFO_ADDR + START_INFO_STORE_EVTCHN_OFF);
}

/** Connects to xenstored: takes the port from start_info and unmasks it. */
export function xenbus_init(): void {
  port = xenbus_port();
  unmask_evtchn(port);
}

/** The last reply's payload (a value, or NUL-separated names), and its length. */
export function xenbus_reply(): usize {
  return reply;
}
export function xenbus_reply_len(): i32 {
  return reply_length;
}

function put(s: string): void {
  for (let i = 0; i < s.length && req_len < MAX_MSG; i++)
    store<u8>(reqbuf + 16 + req_len++, <u8>s.charCodeAt(i));
}
function put_nul(): void {
  if (req_len < MAX_MSG) store<u8>(reqbuf + 16 + req_len++, 0);
}

function ring_u32(off: i32): u32 {
  return atomic.load<u32>(XENSTORE_ADDR + off);
}

/** Copies `n` bytes into the request ring, waiting for room. */
function ring_write(src: usize, n: u32): void {
  let done: u32 = 0;
  while (done < n) {
    const cons = ring_u32(XENSTORE_REQ_CONS_OFF);
    const prod = ring_u32(XENSTORE_REQ_PROD_OFF);
    const room = RING - (prod - cons);
    if (room == 0) {
      notify_remote_via_evtchn(port);
      block();
      continue;
    }
    let k: u32 = 0;
    while (k < room && done < n) {
      store<u8>(XENSTORE_ADDR + XENSTORE_REQ_OFF + ((prod + k) & (RING - 1)), load<u8>(src + done));
      k++;
      done++;
    }
    // The data goes in before the producer index that publishes it.
    atomic.store<u32>(XENSTORE_ADDR + XENSTORE_REQ_PROD_OFF, prod + k);
    notify_remote_via_evtchn(port);
  }
}

/** Copies `n` bytes out of the response ring, waiting for them. */
function ring_read(dst: usize, n: u32): void {
  let done: u32 = 0;
  while (done < n) {
    const seen = fire_count(port);
    const cons = ring_u32(XENSTORE_RSP_CONS_OFF);
    const prod = ring_u32(XENSTORE_RSP_PROD_OFF);
    const avail = prod - cons;
    if (avail == 0) {
      while (fire_count(port) == seen && ring_u32(XENSTORE_RSP_PROD_OFF) == prod) block();
      continue;
    }
    let k: u32 = 0;
    while (k < avail && done < n) {
      store<u8>(dst + done, load<u8>(XENSTORE_ADDR + XENSTORE_RSP_OFF + ((cons + k) & (RING - 1))));
      k++;
      done++;
    }
    // The consumer index moves after the bytes are copied out.
    atomic.store<u32>(XENSTORE_ADDR + XENSTORE_RSP_CONS_OFF, cons + k);
    notify_remote_via_evtchn(port);
  }
}

function error_code(): i32 {
  // Compares the error name in the reply with the ones this SDK tells apart.
  const n = reply_length;
  if (match("ENOENT", n)) return -XEN_ENOENT;
  if (match("EACCES", n)) return -XEN_EACCES;
  if (match("EAGAIN", n)) return -XEN_EAGAIN;
  if (match("EINVAL", n)) return -XEN_EINVAL;
  if (match("EEXIST", n)) return -XEN_EEXIST;
  if (match("ENOSPC", n)) return -XEN_ENOSPC;
  if (match("E2BIG", n)) return -XEN_E2BIG;
  return -XEN_EIO;
}

function match(s: string, n: i32): bool {
  if (n < s.length) return false;
  for (let i = 0; i < s.length; i++) if (load<u8>(reply + i) != <u8>s.charCodeAt(i)) return false;
  return true;
}

/**
 * Sends the request built in reqbuf and waits for its reply. Returns 0 or
 * -errno. A wait nested in the caller's loop: it gives back the wakeups it
 * took (sched.ts, wake_mark), so that a watch event that came meanwhile,
 * queued or still in the ring behind the reply, is looked for.
 */
function transact(type: u32, tx: u32): i32 {
  const mark = wake_mark();
  const rc = transact_wait(type, tx);
  wake_give_back(mark);
  return rc;
}

function transact_wait(type: u32, tx: u32): i32 {
  const id = next_id++;
  store<u32>(reqbuf, type);
  store<u32>(reqbuf + 4, id);
  store<u32>(reqbuf + 8, tx);
  store<u32>(reqbuf + 12, <u32>req_len);
  ring_write(reqbuf, 16 + <u32>req_len);
  req_len = 0;
  while (true) {
    ring_read(reply, 16);
    const rtype = load<u32>(reply);
    const rid = load<u32>(reply + 4);
    const len = load<u32>(reply + 12);
    if (len > 4096) return -XEN_EIO;
    ring_read(reply, len);
    store<u8>(reply + len, 0);
    reply_length = <i32>len;
    if (rtype == XS_WATCH_EVENT) {
      queue_event(len);
      continue;
    }
    if (rid != id) continue;
    return rtype == XS_ERROR ? error_code() : 0;
  }
}

function queue_event(len: u32): void {
  if (ev_count == EVENTS) return;
  const slot = events + ((ev_head + ev_count) % EVENTS) * EVENT_SIZE;
  const n = len < EVENT_SIZE - 1 ? len : EVENT_SIZE - 1;
  memory.copy(slot, reply, n);
  store<u8>(slot + n, 0);
  ev_count++;
}

/** Reads `path`: the value is at xenbus_reply(), xenbus_reply_len() bytes. */
export function xenbus_read(path: string, tx: u32 = 0): i32 {
  put(path);
  put_nul();
  return transact(XS_READ, tx);
}

/** Writes `value` at `path`, creating it and its parents. */
export function xenbus_write(path: string, value: string, tx: u32 = 0): i32 {
  put(path);
  put_nul();
  put(value);
  return transact(XS_WRITE, tx);
}

/** Writes `len` bytes at `ptr` as the value of `path`. */
export function xenbus_write_raw(path: string, ptr: usize, len: i32, tx: u32 = 0): i32 {
  put(path);
  put_nul();
  for (let i = 0; i < len && req_len < MAX_MSG; i++)
    store<u8>(reqbuf + 16 + req_len++, load<u8>(ptr + i));
  return transact(XS_WRITE, tx);
}

/**
 * Sets `path`'s permissions to an owner entry ("n<owner>": nobody else by
 * default) and one reader ("r<reader>"), the usual shape for a rendezvous.
 */
export function xenbus_set_perms_owner_reader(
  path: string,
  owner: u32,
  reader: u32,
  tx: u32 = 0,
): i32 {
  put(path);
  put_nul();
  put("n");
  put_u32(owner);
  put_nul();
  put("r");
  put_u32(reader);
  put_nul();
  return transact(XS_SET_PERMS, tx);
}

function put_u32(n: u32): void {
  let div: u32 = 1;
  while (n / div >= 10) div *= 10;
  for (; div > 0; div /= 10)
    if (req_len < MAX_MSG) store<u8>(reqbuf + 16 + req_len++, <u8>(48 + ((n / div) % 10)));
}

/** Writes decimal `n` as the value of `path`. */
export function xenbus_write_u32(path: string, n: u32, tx: u32 = 0): i32 {
  put(path);
  put_nul();
  put_u32(n);
  return transact(XS_WRITE, tx);
}

/** Reads `path` as a decimal number; negative errno on failure. */
export function xenbus_read_u32(path: string): i64 {
  const rc = xenbus_read(path);
  if (rc < 0) return rc;
  let v: i64 = 0;
  for (let i = 0; i < reply_length; i++) {
    const c = load<u8>(reply + i);
    if (c < 48 || c > 57) return -XEN_EINVAL;
    v = v * 10 + (c - 48);
  }
  return v;
}

/** Makes sure `path` exists. */
export function xenbus_mkdir(path: string, tx: u32 = 0): i32 {
  put(path);
  put_nul();
  return transact(XS_MKDIR, tx);
}

/** Removes `path` and everything below it. */
export function xenbus_rm(path: string, tx: u32 = 0): i32 {
  put(path);
  put_nul();
  return transact(XS_RM, tx);
}

/** Lists `path`'s children: returns how many; their names, NUL-terminated, are in xenbus_reply(). */
export function xenbus_directory(path: string, tx: u32 = 0): i32 {
  put(path);
  put_nul();
  const rc = transact(XS_DIRECTORY, tx);
  if (rc < 0) return rc;
  let n = 0;
  for (let i = 0; i < reply_length; i++) if (load<u8>(reply + i) == 0) n++;
  return n;
}

// The watches set, as XS_WATCH's payload (path NUL token NUL), so that a
// domain resumed in a new domain sets them again (xenbus_resume).
const MAX_WATCHES: i32 = 16;
const WATCH_BYTES: i32 = 256;
const watches = memory.data(MAX_WATCHES * WATCH_BYTES);
const watch_len = memory.data(MAX_WATCHES * 4);

function watch_slot(): i32 {
  // The request just built, if an equal one is kept, or a free slot, or -1.
  let free = -1;
  for (let i = 0; i < MAX_WATCHES; i++) {
    const n = load<i32>(watch_len + i * 4);
    if (n == 0) {
      if (free < 0) free = i;
      continue;
    }
    if (n == req_len && memory.compare(watches + i * WATCH_BYTES, reqbuf + 16, n) == 0) return i;
  }
  return free;
}

/** Watches `path`; events carry `token`. The first one comes at once. */
export function xenbus_watch(path: string, token: string): i32 {
  put(path);
  put_nul();
  put(token);
  put_nul();
  // Kept once xenstored took it (a watch kept already stays kept).
  const slot = req_len <= WATCH_BYTES ? watch_slot() : -1;
  const fresh = slot >= 0 && load<i32>(watch_len + slot * 4) == 0;
  const n = req_len;
  if (fresh) memory.copy(watches + slot * WATCH_BYTES, reqbuf + 16, n);
  const rc = transact(XS_WATCH, 0);
  if (fresh && rc >= 0) store<i32>(watch_len + slot * 4, n);
  // A watch this kernel keeps, which xenstored has already: after a resume
  // in a new domain with the same domid (a migration to a fresh host), the
  // watches set again include the backend paths a driver watches anew.
  if (!fresh && slot >= 0 && rc == -XEN_EEXIST) return 0;
  return rc;
}

/** Removes the watch on `path` with `token`. */
export function xenbus_unwatch(path: string, token: string): i32 {
  put(path);
  put_nul();
  put(token);
  put_nul();
  const slot = watch_slot();
  if (slot >= 0 && load<i32>(watch_len + slot * 4) == req_len) store<i32>(watch_len + slot * 4, 0);
  return transact(XS_UNWATCH, 0);
}

/**
 * After a resume in a new domain (suspend returned 0): the store port is
 * the new one start_info gives, watch events queued before are dropped,
 * and every watch is set again, each firing once, as Linux's xenbus does
 * on a PV resume. Returns how many were set, or -errno.
 */
export function xenbus_resume(): i32 {
  xenbus_init();
  ev_head = 0;
  ev_count = 0;
  let n = 0;
  for (let i = 0; i < MAX_WATCHES; i++) {
    const len = load<i32>(watch_len + i * 4);
    if (len == 0) continue;
    memory.copy(reqbuf + 16, watches + i * WATCH_BYTES, len);
    req_len = len;
    const rc = transact(XS_WATCH, 0);
    if (rc < 0) return rc;
    n++;
  }
  return n;
}

/** Starts a transaction; returns its id (> 0) or -errno. */
export function xenbus_transaction_start(): i32 {
  put_nul();
  const rc = transact(XS_TRANSACTION_START, 0);
  if (rc < 0) return rc;
  let id: u32 = 0;
  for (let i = 0; i < reply_length && load<u8>(reply + i) != 0; i++)
    id = id * 10 + (load<u8>(reply + i) - 48);
  return <i32>id;
}

/** Ends transaction `tx`: commits (or aborts); -EAGAIN means run it again. */
export function xenbus_transaction_end(tx: u32, abort: bool): i32 {
  put(abort ? "F" : "T");
  put_nul();
  return transact(XS_TRANSACTION_END, tx);
}

/**
 * Waits for the next watch event; returns the address of its path
 * (NUL-terminated, then the token, NUL-terminated). Valid until the next call.
 */
export function xenbus_wait_for_watch(): usize {
  const mark = wake_mark();
  const ev = wait_for_watch();
  wake_give_back(mark);
  return ev;
}

function wait_for_watch(): usize {
  while (ev_count == 0) {
    const seen = fire_count(port);
    const cons = ring_u32(XENSTORE_RSP_CONS_OFF);
    if (ring_u32(XENSTORE_RSP_PROD_OFF) != cons) {
      if (!take_message()) return 0;
      continue;
    }
    while (fire_count(port) == seen && ring_u32(XENSTORE_RSP_PROD_OFF) == cons) block();
  }
  return next_event();
}

/** Reads one message off the ring, queueing it if it is a watch event; false if it is malformed. */
function take_message(): bool {
  ring_read(reply, 16);
  const rtype = load<u32>(reply);
  const len = load<u32>(reply + 12);
  if (len > 4096) return false;
  ring_read(reply, len);
  store<u8>(reply + len, 0);
  reply_length = <i32>len;
  if (rtype == XS_WATCH_EVENT) queue_event(len);
  return true;
}

/** A watch event that has already arrived (as xenbus_wait_for_watch gives it), or 0: never waits. */
export function xenbus_poll_watch(): usize {
  // A message half written waits for its rest: a nested wait (transact's).
  const mark = wake_mark();
  let ok = true;
  while (
    ok &&
    ev_count == 0 &&
    ring_u32(XENSTORE_RSP_PROD_OFF) != ring_u32(XENSTORE_RSP_CONS_OFF)
  ) {
    ok = take_message();
  }
  wake_give_back(mark);
  return !ok || ev_count == 0 ? 0 : next_event();
}

function next_event(): usize {
  const slot = events + ev_head * EVENT_SIZE;
  ev_head = (ev_head + 1) % EVENTS;
  ev_count--;
  return slot;
}

/** True if the NUL-terminated string at `p` equals `s`. */
export function str_eq(p: usize, s: string): bool {
  for (let i = 0; i < s.length; i++) if (load<u8>(p + i) != <u8>s.charCodeAt(i)) return false;
  return load<u8>(p + s.length) == 0;
}

/**
 * A frontend's wait for its backend (pv-drivers-lifecycle): watches the
 * state node at `path` (absolute) until it reads `want` (returns 0) or
 * Closing or later (returns -XEN_EIO).
 */
export function xenbus_wait_for_state(path: string, want: u32, token: string): i32 {
  const rc = xenbus_watch(path, token);
  if (rc < 0) return rc;
  while (true) {
    const st = xenbus_read_u32(path);
    if (st == <i64>want) return 0;
    if (st >= <i64>XenbusStateClosing) return -XEN_EIO;
    xenbus_wait_for_watch();
  }
}

/**
 * Waits until node `path` exists: a device the toolstack hot-plugs after
 * boot, say (its frontend's `state` node is written last). Watches `path`
 * (xenstored fires a watch once when it is set, so nothing is missed) and
 * reads it after each event. Returns 0, or a negative error.
 */
export function xenbus_wait_for_node(path: string, token: string): i32 {
  const rc = xenbus_watch(path, token);
  if (rc < 0) return rc;
  while (xenbus_read(path) < 0) xenbus_wait_for_watch();
  return xenbus_unwatch(path, token);
}

/**
 * A frontend's link to its backend (Linux's xenbus_device and its
 * otherend): the frontend's state node, the node naming the backend's
 * directory, and the backend's state node with the watch token that
 * follows it. Made once, when the device connects.
 */
export class Otherend {
  frontend_state: string;
  backend_node: string;
  backend: string;
  backend_state: string;
  token: string;

  constructor(dev: string, backend: string, token: string) {
    this.frontend_state = dev + "/state";
    this.backend_node = dev + "/backend";
    this.backend = backend;
    this.backend_state = backend + "/state";
    this.token = token;
  }
}

/**
 * A frontend's answer to its backend closing (pv-drivers-lifecycle): reads
 * the backend's state; when it is Closing or later, or gone (hot-unplug),
 * moves the frontend's state to Closing, then Closed, and returns true. The
 * driver then stops using its rings.
 *
 * The backend's path is checked against the frontend's `backend` node
 * first: a guest saved and restored without suspending (docs/save-format.md,
 * "Devices") finds its devices under its new domid, the backend's path
 * naming that domid, while it still holds the old one. It then follows the
 * new path and watches it (a string made once per move: the stub runtime
 * never frees).
 */
export function xenbus_follow_backend(o: Otherend): bool {
  if (xenbus_read(o.backend_node) >= 0 && !str_eq(xenbus_reply(), o.backend)) {
    const moved = xenbus_read_string(o.backend_node);
    if (moved !== null) {
      o.backend = moved;
      o.backend_state = moved + "/state";
      xenbus_watch(o.backend_state, o.token);
    }
  }
  const st = xenbus_read_u32(o.backend_state);
  if (st >= 0 && st < <i64>XenbusStateClosing) return false;
  xenbus_switch_state(o.frontend_state, <u32>XenbusStateClosing);
  xenbus_switch_state(o.frontend_state, <u32>XenbusStateClosed);
  return true;
}

/**
 * Writes `state` at the state node `path`, as Linux's xenbus_switch_state:
 * in a transaction that first reads the node, so that a device the
 * toolstack has already removed (hot-unplug) is not brought back as an
 * empty directory by a late write. Returns 0, -XEN_ENOENT when the node is
 * gone, or another negative error.
 */
export function xenbus_switch_state(path: string, state: u32): i32 {
  while (true) {
    const tx = xenbus_transaction_start();
    if (tx < 0) return tx;
    let rc = xenbus_read(path, <u32>tx);
    if (rc >= 0) rc = xenbus_write_u32(path, state, <u32>tx);
    const end = xenbus_transaction_end(<u32>tx, rc < 0);
    if (rc < 0) return rc;
    if (end != -XEN_EAGAIN) return end < 0 ? end : 0;
  }
  return unreachable();
}

/** The value at `path` as a string, or null (setup only: it allocates). */
export function xenbus_read_string(path: string): string | null {
  if (xenbus_read(path) < 0) return null;
  return String.UTF8.decodeUnsafe(reply, <usize>reply_length);
}
