/**
 * Shared request/response rings as `io/ring.h`'s macros define them, for
 * Dom0's backends (and for frontends written in TypeScript, in tests): a
 * front ring that produces requests and consumes responses, a back ring
 * that does the reverse, over one shared page (a Uint8Array view: a guest's
 * granted page mapped by gntdev, or a page of Dom0's own).
 *
 * Indices are free-running uint32; every difference is taken modulo 2^32.
 * Ordering: entries are written before the producer index that publishes
 * them, and the index is written before the event check (ring.h's wmb/mb;
 * here a DataView store is complete before the next statement, and all
 * domains share one host thread).
 *
 * A back ring never trusts the frontend's indices: `unconsumedRequests` is
 * bounded by the free space as RING_HAS_UNCONSUMED_REQUESTS bounds it, and
 * `requestProdOverflow` and `requestConsOverflow` tell a backend to stop
 * (RING_REQUEST_PROD_OVERFLOW, RING_REQUEST_CONS_OVERFLOW).
 */
import { ringSize, sring_header } from "../../xen/include/public/io/ring.js";

const H = sring_header.fields;

class SharedRing {
  readonly dv: DataView;
  /** Entries in the ring (a power of two). */
  readonly size: number;

  constructor(
    readonly page: Uint8Array,
    /** Bytes of one slot: the larger of the request and the response. */
    readonly slotBytes: number,
  ) {
    this.dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
    this.size = ringSize(page.byteLength, slotBytes);
    if (this.size === 0)
      throw new RangeError(
        `ring: a ${slotBytes}-byte slot does not fit in ${page.byteLength} bytes`,
      );
  }

  u32(off: number): number {
    return this.dv.getUint32(off, true);
  }
  setU32(off: number, v: number): void {
    this.dv.setUint32(off, v >>> 0, true);
  }

  /**
   * Writes producer index `prodOff` := `now`; true if the peer's event index
   * at `eventOff` lies in what this push published (RING_PUSH_*_AND_CHECK_NOTIFY).
   */
  protected publish(prodOff: number, eventOff: number, now: number): boolean {
    const old = this.u32(prodOff);
    this.setU32(prodOff, now);
    return (now - this.u32(eventOff)) >>> 0 < (now - old) >>> 0;
  }

  /**
   * RING_FINAL_CHECK_FOR_*: with nothing `pending`, asks for an event at the
   * entry after `cons`, then looks again so that one arriving meanwhile is seen.
   */
  protected finalCheck(eventOff: number, cons: number, pending: () => number): boolean {
    if (pending() > 0) return true;
    this.setU32(eventOff, cons + 1);
    return pending() > 0;
  }

  /** The slot of free-running index `idx`: a view of its bytes in the page. */
  slot(idx: number): Uint8Array {
    const at = this.slotOffset(idx);
    return this.page.subarray(at, at + this.slotBytes);
  }

  /** Byte offset of slot `idx` in the page (for reading it through `dv` without a view). */
  slotOffset(idx: number): number {
    return sring_header.size + (idx & (this.size - 1)) * this.slotBytes;
  }
}

/** A back ring's indices (BackRing.indices), for a view of the device. */
export interface RingIndices {
  /** Entries in the ring. */
  size: number;
  reqProd: number;
  reqEvent: number;
  rspProd: number;
  rspEvent: number;
  /** The backend's private indices: requests consumed, responses produced. */
  reqCons: number;
  rspProdPvt: number;
}

/** SHARED_RING_INIT: empty ring, events wanted from the first entry on. */
export function sharedRingInit(page: Uint8Array): void {
  const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
  dv.setUint32(H.req_prod.offset, 0, true);
  dv.setUint32(H.rsp_prod.offset, 0, true);
  dv.setUint32(H.req_event.offset, 1, true);
  dv.setUint32(H.rsp_event.offset, 1, true);
  page.fill(0, H.pvt.offset, sring_header.size);
}

/** The frontend's side (FRONT_RING_INIT / FRONT_RING_ATTACH). */
export class FrontRing extends SharedRing {
  /** Requests produced but not yet pushed (req_prod_pvt). */
  reqProdPvt: number;
  /** Responses consumed (rsp_cons). */
  rspCons: number;

  /**
   * FRONT_RING_INIT with `start` 0 (after sharedRingInit), FRONT_RING_ATTACH
   * otherwise: both private indices start at `start`.
   */
  constructor(page: Uint8Array, slotBytes: number, start = 0) {
    super(page, slotBytes);
    this.reqProdPvt = start >>> 0;
    this.rspCons = start >>> 0;
  }

  /** RING_FREE_REQUESTS */
  freeRequests(): number {
    return this.size - ((this.reqProdPvt - this.rspCons) >>> 0);
  }

  /** RING_FULL */
  full(): boolean {
    return this.freeRequests() === 0;
  }

  /** The slot for the next request (RING_GET_REQUEST at req_prod_pvt), then counts it. */
  nextRequest(): Uint8Array {
    if (this.full()) throw new RangeError(`ring: all ${this.size} request slots are in use`);
    const s = this.slot(this.reqProdPvt);
    this.reqProdPvt = (this.reqProdPvt + 1) >>> 0;
    return s;
  }

  /** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: true if the backend wants an event. */
  pushRequests(): boolean {
    return this.publish(H.req_prod.offset, H.req_event.offset, this.reqProdPvt);
  }

  /** RING_HAS_UNCONSUMED_RESPONSES */
  unconsumedResponses(): number {
    return (this.u32(H.rsp_prod.offset) - this.rspCons) >>> 0;
  }

  /** The next response (RING_GET_RESPONSE at rsp_cons), then counts it consumed. */
  nextResponse(): Uint8Array {
    const s = this.slot(this.rspCons);
    this.rspCons = (this.rspCons + 1) >>> 0;
    return s;
  }

  /** RING_FINAL_CHECK_FOR_RESPONSES: true if responses are waiting. */
  finalCheckForResponses(): boolean {
    return this.finalCheck(H.rsp_event.offset, this.rspCons, () => this.unconsumedResponses());
  }
}

/** The backend's side (BACK_RING_INIT / BACK_RING_ATTACH). */
export class BackRing extends SharedRing {
  /** Responses produced but not yet pushed (rsp_prod_pvt). */
  rspProdPvt: number;
  /** Requests consumed (req_cons). */
  reqCons: number;

  /**
   * BACK_RING_INIT with `start` 0, BACK_RING_ATTACH otherwise: both private
   * indices start at `start`.
   */
  constructor(page: Uint8Array, slotBytes: number, start = 0) {
    super(page, slotBytes);
    this.rspProdPvt = start >>> 0;
    this.reqCons = start >>> 0;
  }

  /**
   * BACK_RING_ATTACH at the ring's own rsp_prod, as Linux's backends attach
   * since they can be unbound and bound again: a backend taking over a live
   * ring (after a save or a migration, or its own restart) goes on from the
   * last response published, so the requests after it are served (again).
   * The frontend's rsp_prod is only a starting point: every index check
   * after it is relative, as for any other ring.
   */
  static attach(page: Uint8Array, slotBytes: number): BackRing {
    const rspProd = new DataView(page.buffer, page.byteOffset, page.byteLength).getUint32(
      H.rsp_prod.offset,
      true,
    );
    return new BackRing(page, slotBytes, rspProd);
  }

  /**
   * The ring's indices as both ends see them now: the shared header's
   * (req_prod, rsp_prod and the two event indices, as the frontend may have
   * written them) and this end's private ones.
   */
  indices(): RingIndices {
    return {
      size: this.size,
      reqProd: this.u32(H.req_prod.offset),
      reqEvent: this.u32(H.req_event.offset),
      rspProd: this.u32(H.rsp_prod.offset),
      rspEvent: this.u32(H.rsp_event.offset),
      reqCons: this.reqCons,
      rspProdPvt: this.rspProdPvt,
    };
  }

  /**
   * RING_HAS_UNCONSUMED_REQUESTS: requests waiting, never more than the
   * ring can hold beyond the responses not yet produced, whatever the
   * frontend wrote into req_prod.
   */
  unconsumedRequests(): number {
    const req = (this.u32(H.req_prod.offset) - this.reqCons) >>> 0;
    const rsp = this.size - ((this.reqCons - this.rspProdPvt) >>> 0);
    return Math.max(0, Math.min(req, rsp));
  }

  /**
   * RING_REQUEST_PROD_OVERFLOW: the frontend's req_prod claims more requests
   * than the ring can hold beyond the responses produced (a bogus ring).
   */
  requestProdOverflow(): boolean {
    return (this.u32(H.req_prod.offset) - this.rspProdPvt) >>> 0 > this.size;
  }

  /** RING_REQUEST_CONS_OVERFLOW: consuming at `cons` would overrun unanswered requests. */
  requestConsOverflow(cons = this.reqCons): boolean {
    return (cons - this.rspProdPvt) >>> 0 >= this.size;
  }

  /** The next request (RING_GET_REQUEST at req_cons), then counts it consumed. */
  nextRequest(): Uint8Array {
    if (this.unconsumedRequests() === 0 || this.requestConsOverflow()) {
      throw new RangeError(
        `ring: no request to consume at ${this.reqCons} (${this.unconsumedRequests()} waiting, ${(this.reqCons - this.rspProdPvt) >>> 0} unanswered)`,
      );
    }
    const s = this.slot(this.reqCons);
    this.reqCons = (this.reqCons + 1) >>> 0;
    return s;
  }

  /** The slot for the next response (RING_GET_RESPONSE at rsp_prod_pvt), then counts it. */
  nextResponse(): Uint8Array {
    const s = this.slot(this.rspProdPvt);
    this.rspProdPvt = (this.rspProdPvt + 1) >>> 0;
    return s;
  }

  /** RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: true if the frontend wants an event. */
  pushResponses(): boolean {
    return this.publish(H.rsp_prod.offset, H.rsp_event.offset, this.rspProdPvt);
  }

  /** RING_FINAL_CHECK_FOR_REQUESTS: true if requests are waiting. */
  finalCheckForRequests(): boolean {
    return this.finalCheck(H.req_event.offset, this.reqCons, () => this.unconsumedRequests());
  }
}
