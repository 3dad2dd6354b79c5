/**
 * xenstored's transport to guests: each introduced domain's ring page and
 * event channel (xen-doc `misc/xenstore-ring.txt`; `io/xs_wire.h`
 * xenstore_domain_interface).
 *
 * The ring page is mapped from the guest's grant table entry
 * GNTTAB_RESERVED_XENSTORE (which the domain builder seeds for Dom0), as
 * Xen's xenstored maps it, through Dom0's gntdev: xenstored reads and writes
 * the guest's page directly. The port is the unbound one INTRODUCE names;
 * xenstored binds to it.
 *
 * Indices are free-running uint32 counters; a byte at offset x lives at
 * x mod 1024. Ordering: the guest may run between any two of our steps only
 * when we return to the event loop (all vCPUs share the host thread), but we
 * still follow the protocol's order: data before the producer index, the
 * consumer index after reading, then the notification. A guest whose indices
 * claim more than the ring holds, or that sends a message longer than
 * XENSTORE_PAYLOAD_MAX, loses its connection (the error field says why);
 * nobody else notices.
 */
import * as W from "../../xen/include/public/io/xs_wire.js";
import { GNTTAB_RESERVED_XENSTORE } from "../../xen/include/public/grant_table.js";
import type { Dom0Drivers } from "../../dom0/drivers/index.js";
import type { XenEvtchn } from "../../dom0/drivers/evtchn.js";
import type { GrantMap, XenGnttab } from "../../dom0/drivers/gntdev.js";
import { XsError } from "./errors.js";
import { SUPPORTED_FEATURES } from "./ops.js";
import type { DomainTransport, Xenstored } from "./xenstored.js";
import type { XsConnection } from "./connection.js";

const F = W.xenstore_domain_interface.fields;
const SIZE = W.XENSTORE_RING_SIZE;
/** Messages queued for a guest that does not read its ring before it is cut off. */
export const RING_QUEUE_MAX = 1024;

/** One guest's ring: the mapped page, the port, the parser, and output waiting for room. */
class Ring {
  private readonly dv: DataView;
  private readonly parser = new W.XsParser();
  private readonly queue: Uint8Array[] = [];
  private queueOff = 0;
  conn: XsConnection | undefined;
  dead = false;

  constructor(
    readonly domid: number,
    readonly map: GrantMap,
    readonly port: number,
    private readonly evtchn: XenEvtchn,
    private readonly d: Xenstored,
  ) {
    this.dv = new DataView(map.page.buffer, map.page.byteOffset, map.page.byteLength);
    this.dv.setUint32(F.server_features.offset, SUPPORTED_FEATURES, true);
    this.dv.setUint32(F.error.offset, W.XENSTORE_ERROR_NONE, true);
  }

  private u32(off: number): number {
    return this.dv.getUint32(off, true);
  }

  /** Called on every event from the guest (and once at introduction). */
  kick(): void {
    if (this.dead) return;
    if (this.u32(F.connection.offset) === W.XENSTORE_RECONNECT) {
      this.reconnect();
      return;
    }
    this.flush();
    // Back-pressure (the "outstanding" quota): a guest with that many replies
    // and events waiting unread gets no new request served until it reads.
    const limit = this.d.quotas.limit(this.domid, "outstanding");
    if (limit === 0 || this.queue.length < limit) this.readRequests();
  }

  private fail(error: number, why: string): void {
    this.dv.setUint32(F.error.offset, error, true);
    this.d.log(`domain ${this.domid}: ${why}: connection dropped`);
    this.dead = true;
    this.conn?.close();
    this.notify();
  }

  private readRequests(): void {
    const cons = this.u32(F.req_cons.offset);
    const prod = this.u32(F.req_prod.offset);
    const avail = (prod - cons) >>> 0;
    if (avail > SIZE) {
      this.fail(
        W.XENSTORE_ERROR_RINGIDX,
        `request ring indices ${cons}..${prod} claim ${avail} bytes`,
      );
      return;
    }
    if (avail === 0) return;
    const bytes = new Uint8Array(avail);
    for (let i = 0; i < avail; i++)
      bytes[i] = this.map.page[F.req.offset + ((cons + i) & (SIZE - 1))]!;
    // The consumer index moves only after the bytes are copied out.
    this.dv.setUint32(F.req_cons.offset, (cons + avail) >>> 0, true);
    this.notify();
    for (const r of this.parser.push(bytes)) {
      if ("error" in r) {
        this.fail(W.XENSTORE_ERROR_PROTO, r.error);
        return;
      }
      if (this.conn && !this.dead) this.d.handle(this.conn, r.msg);
    }
  }

  /** Queues one message for the guest and writes what fits. */
  send(msg: W.XsMsg): void {
    if (this.dead) return;
    if (this.queue.length >= RING_QUEUE_MAX) {
      this.fail(W.XENSTORE_ERROR_COMM, `${RING_QUEUE_MAX} replies and events wait unread`);
      return;
    }
    this.queue.push(W.encodeXsMsg(msg));
    this.flush();
  }

  private flush(): void {
    let wrote = false;
    while (this.queue.length > 0) {
      const cons = this.u32(F.rsp_cons.offset);
      const prod = this.u32(F.rsp_prod.offset);
      const used = (prod - cons) >>> 0;
      if (used > SIZE) {
        this.fail(
          W.XENSTORE_ERROR_RINGIDX,
          `response ring indices ${cons}..${prod} claim ${used} bytes`,
        );
        return;
      }
      const room = SIZE - used;
      if (room === 0) break;
      const head = this.queue[0]!;
      const n = Math.min(room, head.length - this.queueOff);
      for (let i = 0; i < n; i++) {
        this.map.page[F.rsp.offset + ((prod + i) & (SIZE - 1))] = head[this.queueOff + i]!;
      }
      // Data first, then the producer index that publishes it.
      this.dv.setUint32(F.rsp_prod.offset, (prod + n) >>> 0, true);
      wrote = true;
      this.queueOff += n;
      if (this.queueOff === head.length) {
        this.queue.shift();
        this.queueOff = 0;
      }
    }
    if (wrote) this.notify();
  }

  /** The guest asked to reconnect: its watches and transactions go, the ring starts afresh. */
  private reconnect(): void {
    const c = this.conn;
    if (c) {
      this.d.watches.removeAll(c);
      c.transactions.clear();
    }
    this.queue.length = 0;
    this.queueOff = 0;
    for (const off of [F.req_cons, F.req_prod, F.rsp_cons, F.rsp_prod])
      this.dv.setUint32(off.offset, 0, true);
    this.dv.setUint32(F.connection.offset, W.XENSTORE_CONNECTED, true);
    this.notify();
  }

  private notify(): void {
    try {
      this.evtchn.notify(this.port);
    } catch {
      // The guest is gone; its release follows.
    }
  }
}

/** xenstored's rings to guests, through Dom0's drivers. */
export class RingTransport implements DomainTransport {
  private readonly rings = new Map<number, Ring>();
  private readonly byPort = new Map<number, Ring>();
  private readonly evtchn: XenEvtchn;
  private readonly gnttab: XenGnttab;

  constructor(
    drivers: Dom0Drivers,
    private readonly exists_: (domid: number) => boolean,
  ) {
    this.evtchn = drivers.openEvtchn();
    this.gnttab = drivers.openGnttab();
    this.evtchn.on((port) => {
      this.evtchn.unmask(port);
      this.byPort.get(port)?.kick();
    });
  }

  exists(domid: number): boolean {
    return this.exists_(domid);
  }

  introduce(d: Xenstored, domid: number, _gfn: number, port: number): XsConnection {
    let map: GrantMap;
    try {
      map = this.gnttab.map(domid, GNTTAB_RESERVED_XENSTORE);
    } catch (e) {
      throw new XsError(
        "EINVAL",
        `cannot map domain ${domid}'s xenstore page: ${(e as Error).message}`,
      );
    }
    let local: number;
    try {
      local = this.evtchn.bindInterdomain(domid, port);
    } catch (e) {
      this.gnttab.unmap(map);
      throw new XsError(
        "EINVAL",
        `cannot bind domain ${domid}'s port ${port}: ${(e as Error).message}`,
      );
    }
    const ring = new Ring(domid, map, local, this.evtchn, d);
    ring.conn = d.connect(domid, false, (m) => ring.send(m), `domain ${domid}`);
    this.rings.set(domid, ring);
    this.byPort.set(local, ring);
    ring.kick();
    return ring.conn;
  }

  release(domid: number): void {
    const r = this.rings.get(domid);
    if (!r) return;
    r.dead = true;
    this.rings.delete(domid);
    this.byPort.delete(r.port);
    try {
      this.evtchn.unbind(r.port);
    } catch {
      // Already closed with its domain.
    }
    try {
      this.gnttab.unmap(r.map);
    } catch {
      // Nothing mapped any more.
    }
  }

  /** Domains with a ring. */
  get domains(): number[] {
    return [...this.rings.keys()];
  }

  /** Releases every ring. Idempotent. */
  dispose(): void {
    for (const domid of [...this.rings.keys()]) this.release(domid);
    this.evtchn.dispose();
    this.gnttab.dispose();
  }
}
