/**
 * libxenvchan for Dom0 (Xen's tools/libs/vchan; `io/libxenvchan.h`): a
 * bidirectional byte channel between two domains built from a shared page,
 * grants, an event channel and a rendezvous in xenstore.
 *
 * The server shares a page (and, for rings of 4 KiB or more, ring pages),
 * offers an unbound port to the client's domain, and writes
 * `<path>/ring-ref` and `<path>/event-channel` readable by the client. The
 * client reads them, maps the page and rings (Dom0's gntdev: direct views)
 * and binds the port. The left ring carries client→server bytes, the right
 * ring server→client; rings of up to 1 KiB and 2 KiB live inside the shared
 * page (orders 10 and 11), larger ones in their own granted pages.
 *
 * Each side asks for a notification by setting a bit in the other side's
 * notify byte (VCHAN_NOTIFY_WRITE: "tell me when you wrote"), and sends the
 * event after its own action only when the peer asked. Indices are
 * free-running uint32; data goes in before the producer index that
 * publishes it. A peer whose indices claim more than the ring holds makes
 * the ring look empty (reads) or full (writes), as libxenvchan does: nothing
 * is read or written outside the ring.
 */
import {
  VCHAN_NOTIFY_READ,
  VCHAN_NOTIFY_WRITE,
  vchan_interface,
} from "../../xen/include/public/io/libxenvchan.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import type { Dom0Drivers } from "../../dom0/drivers/index.js";
import {
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_unbound,
} from "../../xen/include/public/event_channel.js";
import type { XenEvtchn } from "../../dom0/drivers/evtchn.js";
import type { GrantMap, XenGnttab } from "../../dom0/drivers/gntdev.js";
import type { SharedPage, XenGntshr } from "../../dom0/drivers/gntalloc.js";
import type { Xenstored } from "../xenstored/xenstored.js";
import { canonicalize } from "../xenstored/path.js";
import { DOM0 } from "../xenstored/perms.js";

/** `p` as an absolute xenstore path (relative ones are Dom0's), or an Error that says what is wrong. */
function dom0Path(p: string): string {
  const c = canonicalize(p, 0);
  if ("error" in c) throw new Error(`vchan: '${p}' is not a xenstore path: ${c.error}`);
  return c.path;
}

const F = vchan_interface.fields;
/** Offset of the grant list in the shared page. */
const GRANTS = vchan_interface.size;
/** Largest rings that fit in the shared page (orders 10 and 11). */
const SMALL_RING = 1024;
const LARGE_RING = 2048;
/** libxenvchan's largest ring: 2^20 bytes (order 20), 256 grants. */
export const MAX_RING_SIZE = 1 << 20;

/** What a vchan needs of Dom0: its drivers, and xenstored for the rendezvous. */
export interface VchanContext {
  drivers: Dom0Drivers;
  xenstored: Xenstored;
}

/**
 * One ring: where its indices are in the shared page, and its bytes, as
 * equal chunks (one for a ring inside the shared page, one per granted page
 * otherwise: granted pages need not be contiguous).
 */
class Ring {
  readonly size: number;
  private readonly chunk: number;

  constructor(
    readonly page: DataView,
    readonly consOff: number,
    readonly prodOff: number,
    private readonly chunks: Uint8Array[],
  ) {
    this.chunk = chunks[0]!.length;
    this.size = this.chunk * chunks.length;
  }
  get cons(): number {
    return this.page.getUint32(this.consOff, true);
  }
  get prod(): number {
    return this.page.getUint32(this.prodOff, true);
  }
  /** Bytes the reader may take (0 if the indices are impossible). */
  ready(): number {
    const n = (this.prod - this.cons) >>> 0;
    return n > this.size ? 0 : n;
  }
  /** Bytes the writer may add (0 if the indices are impossible). */
  space(): number {
    const used = (this.prod - this.cons) >>> 0;
    return used > this.size ? 0 : this.size - used;
  }
  /** Copies `data` into the ring from free-running index `idx`, wrapping. */
  copyIn(idx: number, data: Uint8Array): void {
    let at = idx & (this.size - 1);
    let done = 0;
    while (done < data.length) {
      const off = at % this.chunk;
      const n = Math.min(data.length - done, this.chunk - off);
      this.chunks[Math.floor(at / this.chunk)]!.set(data.subarray(done, done + n), off);
      done += n;
      at = (at + n) & (this.size - 1);
    }
  }
  /** Copies `out.length` bytes out of the ring from free-running index `idx`, wrapping. */
  copyOut(idx: number, out: Uint8Array): void {
    let at = idx & (this.size - 1);
    let done = 0;
    while (done < out.length) {
      const off = at % this.chunk;
      const n = Math.min(out.length - done, this.chunk - off);
      out.set(this.chunks[Math.floor(at / this.chunk)]!.subarray(off, off + n), done);
      done += n;
      at = (at + n) & (this.size - 1);
    }
  }
}

function orderOf(size: number): number {
  let o = 12;
  while (size > 1 << o) o++;
  return o;
}

export class Vchan {
  private waiters: Array<() => void> = [];
  private closed = false;

  private constructor(
    readonly isServer: boolean,
    readonly peer: number,
    private readonly page: DataView,
    private readonly rd: Ring,
    private readonly wr: Ring,
    private readonly evtchn: XenEvtchn,
    readonly port: number,
    private readonly release: () => void,
  ) {
    evtchn.on(() => {
      evtchn.unmask(port);
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
  }

  /**
   * libxenvchan_server_init: offers a channel to domain `client` at xenstore
   * path `xsPath`, with rings of at least `readMin` (client→server) and
   * `writeMin` (server→client) bytes.
   */
  static server(
    ctx: VchanContext,
    client: number,
    xsPath: string,
    readMin: number,
    writeMin: number,
  ): Vchan {
    xsPath = dom0Path(xsPath);
    if (readMin > MAX_RING_SIZE || writeMin > MAX_RING_SIZE) {
      throw new RangeError(`vchan: rings are at most ${MAX_RING_SIZE} bytes`);
    }
    let leftOrder = orderOf(readMin);
    let rightOrder = orderOf(writeMin);
    // Small rings live in the shared page: one at 1 KiB, the other at 2 KiB.
    if (readMin <= SMALL_RING && writeMin <= LARGE_RING) [leftOrder, rightOrder] = [10, 11];
    else if (readMin <= LARGE_RING && writeMin <= SMALL_RING) [leftOrder, rightOrder] = [11, 10];
    else if (readMin <= LARGE_RING) leftOrder = 11;
    else if (writeMin <= LARGE_RING) rightOrder = 11;
    const shr: XenGntshr = ctx.drivers.openGntshr();
    const pages: SharedPage[] = [];
    const share = (n: number): SharedPage[] => {
      const p = shr.share(client, n);
      pages.push(...p);
      return p;
    };
    let evtchn: XenEvtchn | undefined;
    try {
      const [shared] = share(1);
      const dv = new DataView(shared!.page.buffer, shared!.page.byteOffset, PAGE_SIZE);
      let grantAt = GRANTS;
      const ringIn = (order: number): Uint8Array[] => {
        if (order === 10) return [shared!.page.subarray(1024, 2048)];
        if (order === 11) return [shared!.page.subarray(2048, 4096)];
        const ps = share(1 << (order - 12));
        for (const p of ps) {
          dv.setUint32(grantAt, p.ref, true);
          grantAt += 4;
        }
        return ps.map((p) => p.page);
      };
      dv.setUint16(F.left_order.offset, leftOrder, true);
      dv.setUint16(F.right_order.offset, rightOrder, true);
      const left = ringIn(leftOrder);
      const right = ringIn(rightOrder);
      dv.setUint8(F.cli_live.offset, 2);
      dv.setUint8(F.srv_live.offset, 1);
      // The server wants to hear when the client writes.
      dv.setUint8(F.cli_notify.offset, VCHAN_NOTIFY_WRITE);
      const ev = ctx.drivers.openEvtchn();
      evtchn = ev;
      const port = ev.bindUnboundPort(client);
      const xs = ctx.xenstored;
      const perms = [
        { domid: 0, access: 0 },
        { domid: client, access: 1 },
      ];
      for (const [k, v] of [
        ["ring-ref", shared!.ref],
        ["event-channel", port],
      ] as const) {
        xs.writeText(`${xsPath}/${k}`, String(v));
        xs.setPerms(xs.store, DOM0, `${xsPath}/${k}`, perms);
      }
      return new Vchan(
        true,
        client,
        dv,
        new Ring(dv, F.left_cons.offset, F.left_prod.offset, left),
        new Ring(dv, F.right_cons.offset, F.right_prod.offset, right),
        ev,
        port,
        () => {
          ev.dispose();
          for (const p of pages) shr.unshare(p);
        },
      );
    } catch (e) {
      // Nothing stays granted or bound when a step fails (no such client, no free refs).
      evtchn?.dispose();
      for (const p of pages) shr.unshare(p);
      throw e;
    }
  }

  /** libxenvchan_client_init: connects to the channel domain `server` offers at `xsPath`. */
  static client(ctx: VchanContext, server: number, xsPath: string): Vchan {
    xsPath = dom0Path(xsPath);
    const xs = ctx.xenstored;
    const read = (k: string): number => {
      const v = xs.readText(`${xsPath}/${k}`);
      if (v === undefined)
        throw new Error(`vchan: no ${xsPath}/${k} in xenstore: is the server there?`);
      return Number(v);
    };
    const gnt: XenGnttab = ctx.drivers.openGnttab();
    const maps: GrantMap[] = [];
    const map = (ref: number): Uint8Array => {
      const m = gnt.map(server, ref);
      maps.push(m);
      return m.page;
    };
    try {
      return Vchan.connect(server, read, map, maps, gnt, ctx);
    } catch (e) {
      // A server that published a bad ring leaves nothing mapped behind.
      for (const m of maps) gnt.unmap(m);
      throw e;
    }
  }

  /** The client's half after its handle exists: maps the rings and binds the port. */
  private static connect(
    server: number,
    read: (k: string) => number,
    map: (ref: number) => Uint8Array,
    maps: GrantMap[],
    gnt: XenGnttab,
    ctx: VchanContext,
  ): Vchan {
    const shared = map(read("ring-ref"));
    const dv = new DataView(shared.buffer, shared.byteOffset, PAGE_SIZE);
    let grantAt = GRANTS;
    const ringIn = (order: number): Uint8Array[] => {
      if (order === 10) return [shared.subarray(1024, 2048)];
      if (order === 11) return [shared.subarray(2048, 4096)];
      if (order < 12 || order > 20) throw new Error(`vchan: ring order ${order} is not 10..20`);
      // The grant list must stay inside the shared page.
      const n = 1 << (order - 12);
      if (grantAt + 4 * n > PAGE_SIZE)
        throw new Error("vchan: the grant list overruns the shared page");
      const ps: Uint8Array[] = [];
      for (let i = 0; i < n; i++) {
        ps.push(map(dv.getUint32(grantAt, true)));
        grantAt += 4;
      }
      return ps;
    };
    const left = ringIn(dv.getUint16(F.left_order.offset, true));
    const right = ringIn(dv.getUint16(F.right_order.offset, true));
    const evtchn = ctx.drivers.openEvtchn();
    let port: number;
    try {
      port = evtchn.bindInterdomain(server, read("event-channel"));
    } catch (e) {
      evtchn.dispose();
      throw e;
    }
    dv.setUint8(F.cli_live.offset, 1);
    // The client wants to hear when the server writes.
    dv.setUint8(F.srv_notify.offset, VCHAN_NOTIFY_WRITE);
    const v = new Vchan(
      false,
      server,
      dv,
      new Ring(dv, F.right_cons.offset, F.right_prod.offset, right),
      new Ring(dv, F.left_cons.offset, F.left_prod.offset, left),
      evtchn,
      port,
      () => {
        evtchn.dispose();
        for (const m of maps) gnt.unmap(m);
      },
    );
    evtchn.notify(port);
    return v;
  }

  /** Asks the peer to notify us after it does `bit` (request_notify). */
  private requestNotify(bit: number): void {
    const off = this.isServer ? F.cli_notify.offset : F.srv_notify.offset;
    this.page.setUint8(off, this.page.getUint8(off) | bit);
  }

  /** Notifies the peer after we did `bit`, if it asked (send_notify). */
  private sendNotify(bit: number): void {
    const off = this.isServer ? F.srv_notify.offset : F.cli_notify.offset;
    const prev = this.page.getUint8(off);
    if (prev & bit) {
      this.page.setUint8(off, prev & ~bit);
      if (!this.closed) this.evtchn.notify(this.port);
    }
  }

  /** For a server: whether the client has connected yet (cli_live left 2). */
  peerConnected(): boolean {
    return this.page.getUint8(this.isServer ? F.cli_live.offset : F.srv_live.offset) === 1;
  }

  /** Bytes ready to read (libxenvchan_data_ready). */
  dataReady(): number {
    return this.rd.ready();
  }

  /** Bytes that can be written now (libxenvchan_buffer_space). */
  bufferSpace(): number {
    return this.wr.space();
  }

  /**
   * Whether the peer is (still, or not yet) connected (libxenvchan_is_open).
   * A peer that died without closing is seen through the event channel: its
   * end is gone, so ours is no longer interdomain (tsxen's stand-in for the
   * unmap notifications of Linux's gntdev and gntalloc).
   */
  isOpen(): boolean {
    if (this.closed) return false;
    const live = this.page.getUint8(this.isServer ? F.cli_live.offset : F.srv_live.offset);
    if (live === 0) return false;
    const st = this.evtchn.status(this.port);
    return (
      st === EVTCHNSTAT_interdomain || (this.isServer && live === 2 && st === EVTCHNSTAT_unbound)
    );
  }

  /** Writes as much of `data` as fits now; returns how much (libxenvchan_write, non-blocking). */
  write(data: Uint8Array): number {
    const n = Math.min(this.wr.space(), data.length);
    if (n === 0) {
      this.requestNotify(VCHAN_NOTIFY_READ);
      return 0;
    }
    const r = this.wr;
    const prod = r.prod;
    r.copyIn(prod, data.subarray(0, n));
    // The data is in before the producer index that publishes it.
    this.page.setUint32(r.prodOff, (prod + n) >>> 0, true);
    this.sendNotify(VCHAN_NOTIFY_WRITE);
    return n;
  }

  /** Writes all of `data` or none (libxenvchan_send, packet mode); returns whether it did. */
  send(data: Uint8Array): boolean {
    if (data.length > this.wr.size)
      throw new RangeError(
        `vchan: a ${data.length}-byte packet exceeds the ${this.wr.size}-byte ring`,
      );
    if (this.wr.space() < data.length) {
      this.requestNotify(VCHAN_NOTIFY_READ);
      return false;
    }
    return this.write(data) === data.length;
  }

  /** Reads up to `max` bytes available now (libxenvchan_read, non-blocking). */
  read(max: number): Uint8Array {
    const r = this.rd;
    const n = Math.min(r.ready(), max);
    if (n === 0) {
      this.requestNotify(VCHAN_NOTIFY_WRITE);
      return new Uint8Array(0);
    }
    const cons = r.cons;
    const out = new Uint8Array(n);
    r.copyOut(cons, out);
    // The consumer index moves after the bytes are copied out.
    this.page.setUint32(r.consOff, (cons + n) >>> 0, true);
    this.sendNotify(VCHAN_NOTIFY_READ);
    return out;
  }

  /** Reads exactly `n` bytes if they are all there, else nothing (libxenvchan_recv, packet mode). */
  recv(n: number): Uint8Array | undefined {
    if (this.rd.ready() < n) {
      this.requestNotify(VCHAN_NOTIFY_WRITE);
      return undefined;
    }
    return this.read(n);
  }

  /** Resolves at the next event from the peer, at once if closed, or after 50 ms (a dead peer sends none). */
  wait(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((r) => {
      const done = (): void => {
        clearTimeout(t);
        r();
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((f) => f !== done);
        r();
      }, 50);
      this.waiters.push(done);
    });
  }

  /** Writes all of `data`, waiting for room as needed. Rejects if the channel closes first. */
  async writeAll(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) {
      if (!this.isOpen()) throw new Error(`vchan: closed after ${off} of ${data.length} bytes`);
      const n = this.write(data.subarray(off));
      off += n;
      if (n === 0) await this.wait();
    }
  }

  /** Reads exactly `n` bytes, waiting as needed. Rejects if the channel closes first. */
  async readExact(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const b = this.read(n - off);
      out.set(b, off);
      off += b.length;
      if (b.length === 0) {
        if (!this.isOpen()) throw new Error(`vchan: closed after ${off} of ${n} bytes`);
        await this.wait();
      }
    }
    return out;
  }

  /** libxenvchan_close: tells the peer, releases pages, port and mappings. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.page.setUint8(this.isServer ? F.srv_live.offset : F.cli_live.offset, 0);
    try {
      this.evtchn.notify(this.port);
    } catch {
      // The peer's end is already gone.
    }
    this.closed = true;
    for (const f of this.waiters.splice(0)) f();
    this.release();
  }
}
