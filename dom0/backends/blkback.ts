/**
 * blkback (Linux's drivers/block/xen-blkback), the block backend: serves a
 * frontend's blkif ring (xen/include/public/io/blkif.h) from a
 * BlockStorage. Requests: BLKIF_OP_READ and WRITE (up to 11 segments, each a
 * granted page and a sector range in it), WRITE_BARRIER and FLUSH_DISKCACHE
 * (durable on the host before the response), DISCARD, and INDIRECT (up to
 * `feature-max-indirect-segments` segments listed in granted pages).
 * Features advertised: flush-cache, barrier, discard, persistent grants
 * (mappings kept across requests when the frontend agrees), multi-page
 * rings (`max-ring-page-order`), and the disk's sectors, sector-size,
 * physical-sector-size, info and mode.
 *
 * The frontend is not trusted: each request is copied out of the shared
 * ring before it is read; a bad segment count, grant, sector range or
 * operation gets an error response (the device carries on); a ring whose
 * producer index runs past what the ring can hold closes the device.
 *
 * Reads from a storage that can read off the main thread (a raw image:
 * BlockStorage.readAsync) are asynchronous, as Linux's blkback submits bios
 * and answers from their completion: the request's response goes on the
 * ring when its data is in the frontend's pages, in whatever order the reads
 * finish (blkif's ids say which is which), and the guests run meanwhile.
 * Flushes (fsync, which can take a disk's worth of time) and discards (a
 * hole punched in a raw image) are asynchronous too where the storage can,
 * and nothing after them starts before they are done. Everything else
 * (writes, qcow2's reads) is done before the batch's responses, and waits
 * for what is in flight: a write never overtakes an earlier read. Grant
 * mappings a read in flight fills, and the storage, are released only once
 * it is done. A device has at most MAX_READS_IN_FLIGHT reads in flight.
 */
import type { Dom0Drivers } from "../drivers/index.js";
import type { XenEvtchn } from "../drivers/evtchn.js";
import type { GrantMap, XenGnttab } from "../drivers/gntdev.js";
import { BackRing, type RingIndices } from "../drivers/ring.js";
import * as B from "../../xen/include/public/io/blkif.js";
import { sring_header } from "../../xen/include/public/io/ring.js";
import { XEN_IO_PROTO_ABI_NATIVE } from "../../xen/include/public/io/protocols.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { frontendUint, type BackendDevice, type DeviceInfo } from "./xenbus.js";
import { SECTOR, type BlockStorage } from "./storage.js";

/** Segments an indirect request may carry (Linux's MAX_INDIRECT_SEGMENTS). */
export const MAX_INDIRECT_SEGMENTS = 256;
/** Persistent grants kept per device (Linux's xen_blkif_max_pgrants default). */
export const MAX_PERSISTENT_GRANTS = 1056;
/** Largest ring: 2^4 pages (Linux's xen_blkif_max_ring_order default). */
export const MAX_RING_PAGE_ORDER = 4;

const R = B.blkif_request.fields;
const S = B.blkif_request_segment.fields;
const RSP = B.blkif_response.fields;

/** Bytes one storage call moves at most: a frontend's large buffer still gives several reads in flight. */
const MAX_RUN_BYTES = MAX_INDIRECT_SEGMENTS * PAGE_SIZE;
/**
 * Smallest read worth handing to the thread pool: the trip there and back
 * costs more main-thread time than copying this much from the page cache.
 */
const ASYNC_MIN_BYTES = 64 * 1024;
/**
 * Reads in flight per device at most: past that the ring waits, so that one
 * frontend cannot take all of Node's thread pool (four threads, shared with
 * the rest of the host) for long.
 */
export const MAX_READS_IN_FLIGHT = 8;

/** A response being prepared: its status may still turn to an error at drain. */
interface Resp {
  /** The request's id, echoed as its two 32-bit halves. */
  idLo: number;
  idHi: number;
  op: number;
  status: number;
  /** Reads in flight for it; the response goes on the ring at 0. */
  pending: number;
  /** Mappings made for this request alone, unmapped when it is answered. */
  temps: GrantMap[] | undefined;
  /** The connection it came in on (a late answer for an earlier one is dropped). */
  gen: number;
}

/** A little-endian uint64 field as a number (exact below 2^53). */
const u64 = (dv: DataView, off: number): number =>
  dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 2 ** 32;

/** Transfers merged into one storage call. */
interface Run {
  read: boolean;
  at: number;
  buffer: ArrayBufferLike;
  start: number;
  end: number;
  members: Resp[];
}

/** Counters, for tests and `xl block-list`-style reports. */
export interface BlkbackStats {
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  /** Reads and writes that came as BLKIF_OP_INDIRECT (counted in reads/writes too). */
  indirect: number;
  /** Storage reads done off the main thread (several requests' worth when merged). */
  asyncReads: number;
  errors: number;
  sectorsRead: number;
  sectorsWritten: number;
}

export class BlkbackDevice implements BackendDevice {
  private ring: BackRing | undefined;
  private ringMaps: GrantMap[] = [];
  private port = -1;
  private persistent = false;
  /**
   * Persistent grants by ref. An array, not a Map: refs are small (a
   * frontend's grant table is at most max_grant_frames × 512 entries) and an
   * array lookup is several times cheaper, which matters at 256 per MiB.
   */
  private pgrants: (GrantMap | undefined)[] = [];
  /**
   * Each persistent grant's page offset in the frontend's memory, plus one
   * (0: none), by ref: the per-segment lookups of a request read numbers
   * here rather than objects.
   */
  private pgOffset = new Float64Array(0);
  private pgrantCount = 0;
  private run: Run | undefined;
  /** Reads, flushes and discards in flight (storage calls not yet done). */
  private inflight = 0;
  /** A flush or a discard is in flight: every request waits for it. */
  private exclusive = false;
  /** A request that must wait for what is in flight is on the ring. */
  private stalled = false;
  /** Counts connections, for Resp.gen. */
  private gen = 0;
  /** What waits for everything in flight to finish: unmapping its pages, closing the storage. */
  private readonly whenIdle: Array<() => void> = [];
  /** Where each request is copied before it is read. */
  private readonly scratch = new Uint8Array(B.blkif_request.size);
  private readonly scratchView = new DataView(this.scratch.buffer);
  /**
   * The request's memory as runs of contiguous bytes (segments that carry
   * on where the one before ended), start and end offsets in the
   * frontend's memory: one run for a frontend's usual contiguous buffer.
   */
  private readonly runStart = new Float64Array(MAX_INDIRECT_SEGMENTS);
  private readonly runEnd = new Float64Array(MAX_INDIRECT_SEGMENTS);
  /** The frontend's memory, of which every grant mapped here is a view (set by the first). */
  private frontendMemory: ArrayBufferLike | undefined;
  private readonly gnt: XenGnttab;
  readonly stats: BlkbackStats = {
    reads: 0,
    writes: 0,
    flushes: 0,
    discards: 0,
    indirect: 0,
    asyncReads: 0,
    errors: 0,
    sectorsRead: 0,
    sectorsWritten: 0,
  };

  constructor(
    readonly info: DeviceInfo,
    readonly storage: BlockStorage,
    private readonly drivers: Dom0Drivers,
    private readonly evtchn: XenEvtchn,
    private readonly ports: Map<number, BlkbackDevice>,
    private readonly log: (msg: string) => void = () => {},
  ) {
    this.gnt = drivers.openGnttab();
  }

  features(): Record<string, string> {
    const s = this.storage;
    return {
      "feature-flush-cache": "1",
      "feature-barrier": "1",
      "feature-discard": s.readonly ? "0" : "1",
      "discard-granularity": String(SECTOR),
      "discard-alignment": "0",
      "discard-secure": "0",
      "feature-max-indirect-segments": String(MAX_INDIRECT_SEGMENTS),
      "feature-persistent": "1",
      "max-ring-page-order": String(MAX_RING_PAGE_ORDER),
      sectors: String(s.sectors),
      "sector-size": String(SECTOR),
      "physical-sector-size": String(SECTOR),
      info: String(s.readonly ? B.VDISK_READONLY : 0),
      mode: s.readonly ? "r" : "w",
    };
  }

  connect(): void {
    const { store, frontend, frontendId } = this.info;
    const num = (k: string): number => frontendUint(this.info, k);
    const orderNode = store.read(`${frontend}/ring-page-order`);
    const order = orderNode === undefined ? 0 : num("ring-page-order");
    if (order > MAX_RING_PAGE_ORDER) {
      throw new Error(
        `ring-page-order ${order} is above max-ring-page-order ${MAX_RING_PAGE_ORDER}`,
      );
    }
    const refs =
      orderNode === undefined
        ? [num("ring-ref")]
        : Array.from({ length: 1 << order }, (_, i) => num(`ring-ref${i}`));
    const evtchn = num("event-channel");
    const protocol = store.read(`${frontend}/protocol`);
    if (protocol !== undefined && protocol !== XEN_IO_PROTO_ABI_NATIVE) {
      throw new Error(
        `protocol '${protocol.slice(0, 32)}' is not this host's (${XEN_IO_PROTO_ABI_NATIVE})`,
      );
    }
    this.ringMaps = this.gnt.mapMany(frontendId, refs, true);
    // A multi-page ring is one array: its pages must follow one another.
    const first = this.ringMaps[0]!.page;
    for (let i = 1; i < this.ringMaps.length; i++) {
      const p = this.ringMaps[i]!.page;
      if (p.buffer !== first.buffer || p.byteOffset !== first.byteOffset + i * PAGE_SIZE) {
        this.unmapRing();
        throw new Error("the ring's pages are not contiguous in the frontend's memory");
      }
    }
    const view = new Uint8Array(first.buffer, first.byteOffset, refs.length * PAGE_SIZE);
    // Attached where the ring is: a fresh ring's rsp_prod is 0; a live one
    // (a restored or migrated domain's) goes on after its last response.
    this.ring = BackRing.attach(view, B.BLKIF_RING_ENTRY);
    try {
      this.port = this.evtchn.bindInterdomain(frontendId, evtchn);
    } catch (e) {
      this.unmapRing();
      throw e;
    }
    this.persistent = store.read(`${frontend}/feature-persistent`) === "1";
    this.ports.set(this.port, this);
    this.kick();
  }

  private unmapRing(): void {
    for (const m of this.ringMaps) this.gnt.unmap(m);
    this.ringMaps = [];
    this.ring = undefined;
  }

  rings(): Array<{ name: string } & RingIndices> {
    return this.ring ? [{ name: "blkif", ...this.ring.indices() }] : [];
  }

  /** Requests consumed and not answered: blkback answers at once what is not read off the thread. */
  inFlight(): number {
    return this.inflight;
  }

  disconnect(): void {
    if (this.port >= 0) {
      this.ports.delete(this.port);
      try {
        this.evtchn.unbind(this.port);
      } catch {
        // Closed with the frontend's domain.
      }
      this.port = -1;
    }
    // Reads in flight still fill persistent grants' pages: those go when they are done.
    const held = this.pgrants;
    this.idle(() => {
      for (const m of held) if (m) this.gnt.unmap(m);
    });
    this.pgrants = [];
    this.pgOffset = new Float64Array(0);
    this.pgrantCount = 0;
    this.stalled = false;
    this.gen++;
    this.unmapRing();
  }

  destroy(): void {
    this.disconnect();
    this.idle(() => {
      this.gnt.dispose();
      this.storage.close();
    });
  }

  /** Resolves once no storage call is in flight (a detach waits, so no late write lands after it). */
  drained(): Promise<void> {
    return new Promise((r) => this.idle(r));
  }

  /** Runs `fn` now if nothing is in flight, otherwise once the last storage call is done. */
  private idle(fn: () => void): void {
    if (this.inflight === 0) fn();
    else this.whenIdle.push(fn);
  }

  /**
   * Whether request `req` (copied from req_cons, not yet consumed) must wait
   * for what is in flight: for a flush or a discard, every request; for
   * reads in flight, or about to be (a read queued for merging), anything
   * but a read, and every request once there are MAX_READS_IN_FLIGHT.
   */
  private mustWait(req: Uint8Array): boolean {
    if (this.exclusive) return true;
    // (A queued read may yet be done here; the stall then ends with its batch.)
    const queued = this.run?.read === true && !!this.storage.readAsync ? 1 : 0;
    if (this.inflight + queued >= MAX_READS_IN_FLIGHT) return true;
    if (this.inflight + queued === 0) return false;
    const op = req[R.operation.offset];
    const iop = req[B.blkif_request_indirect.fields.indirect_op.offset];
    return !(op === B.BLKIF_OP_READ || (op === B.BLKIF_OP_INDIRECT && iop === B.BLKIF_OP_READ));
  }

  /** Serves every request on the ring (the event handler). */
  kick(): void {
    const ring = this.ring;
    if (!ring) return;
    for (;;) {
      if (ring.requestProdOverflow()) {
        const prod = ring.u32(sring_header.fields.req_prod.offset);
        return this.info.fatal(
          `the frontend's ring is bogus: req_prod ${prod}, ${ring.rspProdPvt} answered, ${ring.size} slots`,
        );
      }
      const resps: Resp[] = [];
      while (ring.unconsumedRequests() > 0) {
        // Copy first: the frontend can rewrite the slot while we work, and
        // what is decided here (wait, or serve) must hold for what is served.
        const req = this.scratch;
        req.set(ring.slot(ring.reqCons).subarray(0, B.blkif_request.size));
        if (this.mustWait(req)) {
          // Taken up again when something in flight is done (ioDone).
          this.stalled = true;
          break;
        }
        ring.nextRequest();
        const dv = this.scratchView;
        const op = req[R.operation.offset]!;
        const resp: Resp = {
          idLo: dv.getUint32(R.id.offset, true),
          idHi: dv.getUint32(R.id.offset + 4, true),
          op,
          status: B.BLKIF_RSP_OKAY,
          pending: 0,
          temps: undefined,
          gen: this.gen,
        };
        resps.push(resp);
        try {
          resp.status = this.handle(req, dv, op, resp);
        } catch (e) {
          this.log(`${this.info.backend}: request failed: ${(e as Error).message}`);
          resp.status = B.BLKIF_RSP_ERROR;
        }
        // Writes and flushes start after the reads before them (a stall
        // above), and are done before the reads after them start.
        if (op !== B.BLKIF_OP_READ && op !== B.BLKIF_OP_INDIRECT) this.drain();
      }
      // The batch's transfers, merged, then every response whose data is
      // there, in order; the others when their reads are done.
      this.drain(true);
      for (const resp of resps) if (resp.pending === 0) this.answer(ring, resp);
      if (ring.pushResponses()) this.evtchn.notify(this.port);
      // The read the stall waited for was done here after all.
      if (this.stalled && this.inflight === 0) this.stalled = false;
      else if (this.stalled || !ring.finalCheckForRequests()) return;
    }
  }

  /** Puts `resp` on the ring and lets go of its temporary mappings. */
  private answer(ring: BackRing | undefined, resp: Resp): void {
    if (resp.temps) for (const m of resp.temps) this.gnt.unmap(m);
    resp.temps = undefined;
    if (!ring || resp.gen !== this.gen) return;
    if (resp.status !== B.BLKIF_RSP_OKAY) this.stats.errors++;
    const rdv = ring.dv;
    const o = ring.slotOffset(ring.rspProdPvt);
    ring.nextResponse();
    rdv.setUint32(o + RSP.id.offset, resp.idLo, true);
    rdv.setUint32(o + RSP.id.offset + 4, resp.idHi, true);
    rdv.setUint8(o + RSP.operation.offset, resp.op);
    rdv.setInt16(o + RSP.status.offset, resp.status, true);
  }

  /**
   * A read, flush or discard done off the main thread has finished:
   * answers the requests it completes.
   */
  private ioDone(members: Resp[], err: Error | undefined): void {
    this.inflight--;
    if (err) this.fail(members, err);
    const ring = this.ring;
    for (const m of members) if (--m.pending === 0) this.answer(ring, m);
    if (this.inflight === 0) {
      this.exclusive = false;
      for (const fn of this.whenIdle.splice(0)) fn();
    }
    if (!ring) return;
    if (ring.pushResponses()) this.evtchn.notify(this.port);
    if (this.stalled) {
      // What waited may go now (kick looks again).
      this.stalled = false;
      this.kick();
    }
  }

  private fail(members: Resp[], e: Error): void {
    this.log(`${this.info.backend}: ${this.storage.description}: ${e.message}`);
    for (const m of members) m.status = B.BLKIF_RSP_ERROR;
  }

  /**
   * Runs `start` (a storage call that answers `done` from the event loop)
   * for `members`: their responses wait for it, and so do the idle tasks.
   */
  private offMainThread(members: Resp[], start: (done: (err?: Error) => void) => void): void {
    start((err) => {
      try {
        this.ioDone(members, err);
      } catch (e) {
        // From the event loop: report, never take the host down.
        this.log(`${this.info.backend}: answering a request failed: ${(e as Error).message}`);
      }
    });
    this.inflight++;
    for (const m of members) m.pending++;
  }

  /**
   * Queues a transfer of `buffer`'s bytes `start`–`end` at sector `at`,
   * merged with the one before when it continues it on disk and in memory
   * (a frontend's requests for one large buffer are usually such a run).
   */
  private issue(
    read: boolean,
    at: number,
    buffer: ArrayBufferLike,
    start: number,
    end: number,
    resp: Resp,
  ): void {
    const r = this.run;
    if (
      r &&
      r.read === read &&
      r.buffer === buffer &&
      r.end === start &&
      r.at + (r.end - r.start) / SECTOR === at &&
      end - r.start <= MAX_RUN_BYTES
    ) {
      r.end = end;
      if (r.members[r.members.length - 1] !== resp) r.members.push(resp);
      return;
    }
    this.drain();
    this.run = { read, at, buffer, start, end, members: [resp] };
  }

  /**
   * Starts the queued transfer, or does it; a storage failure fails every
   * request in it. A large read goes off the main thread (where the storage
   * can) when there is something to overlap it with: reads already in
   * flight, or, unless it is the `last` of its batch, the transfers after
   * it. Alone, it is quicker done here than handed over.
   */
  private drain(last = false): void {
    const r = this.run;
    if (!r) return;
    this.run = undefined;
    const bytes = new Uint8Array(r.buffer, r.start, r.end - r.start);
    const storage = this.storage;
    try {
      if (
        r.read &&
        storage.readAsync &&
        bytes.length >= ASYNC_MIN_BYTES &&
        (!last || this.inflight > 0)
      ) {
        const readAsync = storage.readAsync.bind(storage);
        this.offMainThread(r.members, (done) => readAsync(r.at, bytes, done));
        this.stats.asyncReads++;
      } else if (r.read) storage.read(r.at, bytes);
      else storage.write(r.at, bytes);
    } catch (e) {
      this.fail(r.members, e as Error);
    }
  }

  private handle(req: Uint8Array, dv: DataView, op: number, resp: Resp): number {
    const sector = u64(dv, R.sector_number.offset);
    switch (op) {
      case B.BLKIF_OP_READ:
      case B.BLKIF_OP_WRITE:
      case B.BLKIF_OP_WRITE_BARRIER: {
        const n = req[R.nr_segments.offset]!;
        if (op === B.BLKIF_OP_WRITE_BARRIER && n === 0) return this.flush(resp);
        if (n === 0 || n > B.BLKIF_MAX_SEGMENTS_PER_REQUEST) return B.BLKIF_RSP_ERROR;
        const st = this.rw(op === B.BLKIF_OP_READ, sector, dv, R.seg.offset, n, resp);
        return st === B.BLKIF_RSP_OKAY && op === B.BLKIF_OP_WRITE_BARRIER ? this.flush(resp) : st;
      }
      case B.BLKIF_OP_FLUSH_DISKCACHE:
        return this.flush(resp);
      case B.BLKIF_OP_DISCARD: {
        const count = u64(dv, B.blkif_request_discard.fields.nr_sectors.offset);
        if (this.storage.readonly || sector + count > this.storage.sectors)
          return B.BLKIF_RSP_ERROR;
        this.stats.discards++;
        const storage = this.storage;
        // However large, off the main thread where the storage can.
        const discardAsync = storage.discardAsync?.bind(storage);
        this.exclusiveOp(resp, discardAsync && ((done) => discardAsync(sector, count, done)), () =>
          storage.discard(sector, count),
        );
        return B.BLKIF_RSP_OKAY;
      }
      case B.BLKIF_OP_INDIRECT: {
        const I = B.blkif_request_indirect.fields;
        const iop = req[I.indirect_op.offset]!;
        const n = dv.getUint16(I.nr_segments.offset, true);
        if (
          (iop !== B.BLKIF_OP_READ && iop !== B.BLKIF_OP_WRITE) ||
          n === 0 ||
          n > MAX_INDIRECT_SEGMENTS
        ) {
          return B.BLKIF_RSP_ERROR;
        }
        // Persistent grants cover the indirect page too, as in Linux. One
        // page lists them all (MAX_INDIRECT_SEGMENTS is within a page's 512).
        const temp: GrantMap[] = [];
        let st: number;
        try {
          let page: Uint8Array;
          try {
            page = this.grantPage(dv.getUint32(I.indirect_grefs.offset, true), false, temp).page;
          } catch {
            return B.BLKIF_RSP_ERROR;
          }
          const list = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
          st = this.rw(iop === B.BLKIF_OP_READ, sector, list, 0, n, resp);
        } finally {
          // Read through: the segments are all in rw's runs now.
          for (const m of temp) this.gnt.unmap(m);
        }
        if (st === B.BLKIF_RSP_OKAY) this.stats.indirect++;
        return st;
      }
      default:
        return B.BLKIF_RSP_EOPNOTSUPP;
    }
  }

  /**
   * Makes the writes before it durable (fsync): off the main thread where
   * the storage can, `resp` answered when it is done. Only a request that
   * waited for everything in flight gets here (mustWait).
   */
  private flush(resp: Resp): number {
    // Writes queued before the flush reach storage first.
    this.drain();
    this.stats.flushes++;
    const storage = this.storage;
    this.exclusiveOp(resp, storage.flushAsync?.bind(storage), () => storage.flush());
    return B.BLKIF_RSP_OKAY;
  }

  /**
   * A flush or a discard for `resp`: `start`ed off the main thread when the
   * storage has a way to, every request after it waiting until it is done;
   * otherwise `sync`, here.
   */
  private exclusiveOp(
    resp: Resp,
    start: ((done: (err?: Error) => void) => void) | undefined,
    sync: () => void,
  ): void {
    if (!start) return sync();
    this.offMainThread([resp], start);
    this.exclusive = true;
  }

  /** Maps the frontend's grant `gref`, noting the memory that every mapping is a view of. */
  private map(gref: number, writable: boolean): GrantMap {
    const m = this.gnt.map(this.info.frontendId, gref, writable);
    this.frontendMemory ??= m.page.buffer;
    return m;
  }

  /**
   * The frontend's page behind `gref`: a persistent grant (mapped writable
   * once and kept, as Linux's blkback keeps them) when the frontend agreed
   * to them and there is room, otherwise a mapping made for this transfer
   * alone and added to `temp`. Throws on a bad grant.
   */
  private grantPage(gref: number, writable: boolean, temp: GrantMap[]): GrantMap {
    if (!this.persistent) {
      const m = this.map(gref, writable);
      temp.push(m);
      return m;
    }
    let m = this.pgrants[gref];
    if (m) return m;
    m = this.map(gref, true);
    if (this.pgrantCount < MAX_PERSISTENT_GRANTS) {
      this.pgrants[gref] = m;
      // The ref mapped, so it is within the frontend's grant table.
      if (gref >= this.pgOffset.length) {
        const grown = new Float64Array(Math.max(gref + 1, 2 * this.pgOffset.length));
        grown.set(this.pgOffset);
        this.pgOffset = grown;
      }
      this.pgOffset[gref] = m.offset + 1;
      this.pgrantCount++;
    } else temp.push(m);
    return m;
  }

  /**
   * Reads or writes the `n` blkif_request_segments listed at `list`+`off`,
   * from `sector` on. One pass reads each segment once (whatever the
   * frontend does to the list meanwhile), checks it, finds its page and
   * collects runs: segments that carry on where the one before ended in the
   * frontend's memory (its buffer is usually contiguous), each one storage
   * call. Only a request valid throughout is started.
   */
  private rw(
    read: boolean,
    sector: number,
    list: DataView,
    off: number,
    n: number,
    resp: Resp,
  ): number {
    if (!Number.isSafeInteger(sector) || (!read && this.storage.readonly)) {
      return B.BLKIF_RSP_ERROR;
    }
    const perSector = PAGE_SIZE / SECTOR;
    const size = B.blkif_request_segment.size;
    const { runStart, runEnd } = this;
    const known = this.pgOffset;
    const temp: GrantMap[] = [];
    let total = 0;
    let runs = 0;
    let end = -1;
    let bad = false;
    try {
      for (let i = 0; i < n; i++) {
        const o = off + i * size;
        const g = list.getUint32(o + S.gref.offset, true);
        const f = list.getUint8(o + S.first_sect.offset);
        const l = list.getUint8(o + S.last_sect.offset);
        if (f > l || l >= perSector) {
          bad = true;
          break;
        }
        total += l - f + 1;
        let page = g < known.length ? known[g]! - 1 : -1;
        if (page < 0) page = this.grantPage(g, read, temp).offset;
        const start = page + f * SECTOR;
        if (start !== end) runStart[runs++] = start;
        end = page + (l + 1) * SECTOR;
        runEnd[runs - 1] = end;
      }
    } catch {
      // A grant the frontend never gave.
      bad = true;
    }
    if (bad || sector + total > this.storage.sectors) {
      for (const m of temp) this.gnt.unmap(m);
      return B.BLKIF_RSP_ERROR;
    }
    // Temporary mappings stay until the request is answered.
    if (temp.length > 0) resp.temps = temp;
    // Set by the first mapping, which every page found here went through.
    const buffer = this.frontendMemory!;
    let at = sector;
    for (let r = 0; r < runs; r++) {
      this.issue(read, at, buffer, runStart[r]!, runEnd[r]!, resp);
      at += (runEnd[r]! - runStart[r]!) / SECTOR;
    }
    if (read) {
      this.stats.reads++;
      this.stats.sectorsRead += total;
    } else {
      this.stats.writes++;
      this.stats.sectorsWritten += total;
    }
    return B.BLKIF_RSP_OKAY;
  }
}

/**
 * The blkback driver: one event channel handle for all its devices, each
 * device's port routed to it.
 */
export class Blkback {
  readonly evtchn: XenEvtchn;
  readonly devices = new Map<number, BlkbackDevice>();

  constructor(readonly drivers: Dom0Drivers) {
    this.evtchn = drivers.openEvtchn();
    this.evtchn.on((port) => {
      this.evtchn.unmask(port);
      this.devices.get(port)?.kick();
    });
  }

  /** A device for `info` served from `storage`. */
  device(info: DeviceInfo, storage: BlockStorage, log?: (msg: string) => void): BlkbackDevice {
    return new BlkbackDevice(info, storage, this.drivers, this.evtchn, this.devices, log);
  }

  dispose(): void {
    this.evtchn.dispose();
  }
}
