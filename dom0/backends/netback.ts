/**
 * netback (Linux's drivers/net/xen-netback), the network backend: a vif
 * `vif<domid>.<devid>` on a software bridge, serving the frontend's netif
 * tx and rx rings (xen/include/public/io/netif.h), moving packet data with
 * GNTTABOP_copy as Linux's netback does (`feature-rx-copy`; receive-side
 * flipping is long gone from Xen). The rings themselves are mapped.
 * Packets may span several slots (`feature-sg`, NETTXF_more_data chains of
 * up to XEN_NETIF_NR_SLOTS_MIN); a frontend may ask for several queues
 * (`multi-queue-num-queues` with `queue-N/` directories, up to
 * `multi-queue-max-queues`) and for split event channels.
 *
 * Frames for the guest wait in a bounded queue until the frontend posts rx
 * buffers; past the bound they are dropped, as a NIC drops on a full ring.
 * A malformed tx request is answered NETIF_RSP_ERROR and its packet
 * dropped; a ring whose indices run wild closes the vif.
 */
import type { Dom0Drivers } from "../drivers/index.js";
import type { XenEvtchn } from "../drivers/evtchn.js";
import type { GrantMap, XenGnttab } from "../drivers/gntdev.js";
import { BackRing, type RingIndices } from "../drivers/ring.js";
import * as N from "../../xen/include/public/io/netif.js";
import { sring_header } from "../../xen/include/public/io/ring.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { frontendUint, type BackendDevice, type DeviceInfo } from "./xenbus.js";
import type { Bridge, BridgePort } from "./bridge.js";

export const MAX_QUEUES = 4;
/** Frames waiting for rx buffers, per queue. */
export const RX_QUEUE_MAX = 512;
const MAX_PACKET = 65535;
const ETH_HLEN = 14;

const TX = N.netif_tx_request.fields;
const TXR = N.netif_tx_response.fields;
const RX = N.netif_rx_request.fields;
const RXR = N.netif_rx_response.fields;

interface Queue {
  tx: BackRing;
  rx: BackRing;
  txPort: number;
  rxPort: number;
  maps: GrantMap[];
  pending: Uint8Array[];
}

export interface NetbackStats {
  /** From the guest's side, as xentop counts: what the guest sent (its tx ring) and received. */
  txPackets: number;
  rxPackets: number;
  txBytes: number;
  rxBytes: number;
  txErrors: number;
  rxDropped: number;
}

export class NetbackDevice implements BackendDevice, BridgePort {
  readonly name: string;
  private queues: Queue[] = [];
  private sg = false;
  private readonly gnt: XenGnttab;
  readonly stats: NetbackStats = {
    txPackets: 0,
    rxPackets: 0,
    txBytes: 0,
    rxBytes: 0,
    txErrors: 0,
    rxDropped: 0,
  };

  constructor(
    readonly info: DeviceInfo,
    readonly bridge: Bridge,
    drivers: Dom0Drivers,
    private readonly evtchn: XenEvtchn,
    private readonly ports: Map<number, { dev: NetbackDevice; q: number }>,
    private readonly log: (msg: string) => void = () => {},
  ) {
    this.name = `vif${info.frontendId}.${info.devid}`;
    this.gnt = drivers.openGnttab();
  }

  features(): Record<string, string> {
    return {
      "feature-rx-copy": "1",
      "feature-rx-flip": "0",
      "feature-sg": "1",
      "feature-gso-tcpv4": "0",
      "feature-split-event-channels": "1",
      "multi-queue-max-queues": String(MAX_QUEUES),
    };
  }

  get connected(): boolean {
    return this.queues.length > 0;
  }

  connect(): void {
    const { store, frontend, frontendId } = this.info;
    const read = (p: string): string | undefined => store.read(`${frontend}/${p}`);
    const num = (p: string): number => frontendUint(this.info, p);
    if (read("request-rx-copy") !== "1") {
      throw new Error("the frontend does not request-rx-copy: this netback only copies");
    }
    const nq = read("multi-queue-num-queues") === undefined ? 1 : num("multi-queue-num-queues");
    if (nq < 1 || nq > MAX_QUEUES)
      throw new Error(`multi-queue-num-queues ${nq} is not 1..${MAX_QUEUES}`);
    this.sg = read("feature-sg") === "1";
    const queues: Queue[] = [];
    try {
      for (let q = 0; q < nq; q++) {
        const dir = nq > 1 ? `queue-${q}/` : "";
        const maps = this.gnt.mapMany(
          frontendId,
          [num(`${dir}tx-ring-ref`), num(`${dir}rx-ring-ref`)],
          true,
        );
        const queue: Queue = {
          // Attached where the rings are (fresh: 0; a live ring: after its last response).
          tx: BackRing.attach(maps[0]!.page, N.NETIF_TX_ENTRY),
          rx: BackRing.attach(maps[1]!.page, N.NETIF_RX_ENTRY),
          txPort: -1,
          rxPort: -1,
          maps,
          pending: [],
        };
        queues.push(queue);
        if (read(`${dir}event-channel-tx`) !== undefined) {
          queue.txPort = this.evtchn.bindInterdomain(frontendId, num(`${dir}event-channel-tx`));
          queue.rxPort = this.evtchn.bindInterdomain(frontendId, num(`${dir}event-channel-rx`));
        } else {
          queue.txPort = queue.rxPort = this.evtchn.bindInterdomain(
            frontendId,
            num(`${dir}event-channel`),
          );
        }
        this.ports.set(queue.txPort, { dev: this, q });
        this.ports.set(queue.rxPort, { dev: this, q });
      }
    } catch (e) {
      this.release(queues);
      throw e;
    }
    this.queues = queues;
    this.bridge.attach(this);
    for (let q = 0; q < queues.length; q++) this.kick(q);
  }

  private release(queues: Queue[]): void {
    for (const q of queues) {
      for (const p of new Set([q.txPort, q.rxPort])) {
        if (p < 0) continue;
        this.ports.delete(p);
        try {
          this.evtchn.unbind(p);
        } catch {
          // Closed with the frontend's domain.
        }
      }
      for (const m of q.maps) this.gnt.unmap(m);
    }
  }

  rings(): Array<{ name: string } & RingIndices> {
    return this.queues.flatMap((q, i) => {
      const n = this.queues.length > 1 ? `queue-${i}/` : "";
      return [
        { name: `${n}tx`, ...q.tx.indices() },
        { name: `${n}rx`, ...q.rx.indices() },
      ];
    });
  }

  /** Frames for the guest waiting for it to post receive buffers. */
  inFlight(): number {
    return this.queues.reduce((n, q) => n + q.pending.length, 0);
  }

  disconnect(): void {
    this.bridge.detach(this);
    this.release(this.queues);
    this.queues = [];
  }

  destroy(): void {
    this.disconnect();
    this.gnt.dispose();
  }

  /** An event on queue `q`: transmit what the guest sent, fill what it posted. */
  kick(q: number): void {
    if (!this.queues[q]) return;
    this.transmit(q);
    if (this.queues[q]) this.receive(q);
  }

  private transmit(qi: number): void {
    const q = this.queues[qi]!;
    const ring = q.tx;
    for (;;) {
      if (ring.requestProdOverflow()) {
        const prod = ring.u32(sring_header.fields.req_prod.offset);
        return this.info.fatal(
          `the tx ring is bogus: req_prod ${prod}, ${ring.rspProdPvt} answered`,
        );
      }
      while (ring.unconsumedRequests() > 0) {
        // Find the packet's slots without consuming them: it may not be all there yet.
        const avail = ring.unconsumedRequests();
        let n = 0;
        let flags = 0;
        do {
          if (n >= avail) break;
          flags = new DataView(ring.slot(ring.reqCons + n).buffer).getUint16(
            ring.slot(ring.reqCons + n).byteOffset + TX.flags.offset,
            true,
          );
          n++;
        } while (flags & N.NETTXF_more_data && n <= N.XEN_NETIF_NR_SLOTS_MIN);
        const complete = !(flags & N.NETTXF_more_data);
        if (!complete && n < N.XEN_NETIF_NR_SLOTS_MIN + 1 && n >= avail) break;
        const reqs = Array.from({ length: n }, () => {
          const s = ring.nextRequest();
          const dv = new DataView(s.buffer, s.byteOffset, N.netif_tx_request.size);
          return {
            gref: dv.getUint32(TX.gref.offset, true),
            offset: dv.getUint16(TX.offset.offset, true),
            flags: dv.getUint16(TX.flags.offset, true),
            id: dv.getUint16(TX.id.offset, true),
            size: dv.getUint16(TX.size.offset, true),
          };
        });
        const packet = complete ? this.gather(reqs) : undefined;
        if (!packet) this.stats.txErrors++;
        for (const r of reqs) {
          const slot = ring.nextResponse();
          const dv = new DataView(slot.buffer, slot.byteOffset, N.netif_tx_response.size);
          dv.setUint16(TXR.id.offset, r.id, true);
          dv.setInt16(TXR.status.offset, packet ? N.NETIF_RSP_OKAY : N.NETIF_RSP_ERROR, true);
        }
        if (packet) {
          this.stats.txPackets++;
          this.stats.txBytes += packet.length;
          this.bridge.forward(packet, this);
          if (!this.queues[qi]) return; // the vif went away meanwhile
        }
      }
      if (ring.pushResponses()) this.evtchn.notify(q.txPort);
      if (!ring.finalCheckForRequests()) return;
    }
  }

  /** Copies a packet out of its tx slots; undefined if the slots are not a valid packet. */
  private gather(
    reqs: Array<{ gref: number; offset: number; flags: number; size: number }>,
  ): Uint8Array | undefined {
    const total = reqs[0]!.size;
    if (reqs.some((r) => r.flags & N.NETTXF_extra_info)) return undefined; // no GSO was offered
    if (total < ETH_HLEN || total > MAX_PACKET) return undefined;
    // The first slot's own data is what the others leave of the total.
    const rest = reqs.slice(1).reduce((a, r) => a + r.size, 0);
    if (rest >= total) return undefined;
    const sizes = [total - rest, ...reqs.slice(1).map((r) => r.size)];
    if (reqs.some((r, i) => r.offset + sizes[i]! > PAGE_SIZE)) return undefined;
    // GNTTABOP_copy, fragment by fragment, as Linux's netback.
    const segs = reqs.map((r, i) => ({
      toGuest: false,
      domid: this.info.frontendId,
      ref: r.gref,
      offset: r.offset,
      data: new Uint8Array(sizes[i]!),
    }));
    let status: number[];
    try {
      status = this.gnt.grantCopy(segs);
    } catch {
      return undefined;
    }
    if (status.some((st) => st !== 0)) return undefined;
    const packet = new Uint8Array(total);
    let at = 0;
    for (const sg of segs) {
      packet.set(sg.data, at);
      at += sg.data.length;
    }
    return packet;
  }

  /** A frame from the bridge, for this guest. */
  deliver(frame: Uint8Array): void {
    if (this.queues.length === 0) return;
    // Steer by the addresses, so that one flow stays on one queue.
    const qi = this.queues.length === 1 ? 0 : (frame[5]! ^ frame[11]!) % this.queues.length;
    const q = this.queues[qi]!;
    if (q.pending.length >= RX_QUEUE_MAX) {
      this.stats.rxDropped++;
      return;
    }
    q.pending.push(frame.slice());
    this.receive(qi);
  }

  private receive(qi: number): void {
    const q = this.queues[qi]!;
    const ring = q.rx;
    let pushed = false;
    while (q.pending.length > 0) {
      const frame = q.pending[0]!;
      const slots = Math.ceil(frame.length / PAGE_SIZE);
      if (slots > 1 && !this.sg) {
        q.pending.shift();
        this.stats.rxDropped++;
        continue;
      }
      if (ring.unconsumedRequests() < slots) break;
      q.pending.shift();
      const reqs = Array.from({ length: slots }, () => {
        const sl = ring.nextRequest();
        const dv = new DataView(sl.buffer, sl.byteOffset, N.netif_rx_request.size);
        return { id: dv.getUint16(RX.id.offset, true), gref: dv.getUint32(RX.gref.offset, true) };
      });
      // GNTTABOP_copy into the guest's posted pages.
      let status: number[];
      try {
        status = this.gnt.grantCopy(
          reqs.map((r, i) => ({
            toGuest: true,
            domid: this.info.frontendId,
            ref: r.gref,
            offset: 0,
            data: frame.subarray(i * PAGE_SIZE, Math.min(frame.length, (i + 1) * PAGE_SIZE)),
          })),
        );
      } catch {
        status = reqs.map(() => -1);
      }
      reqs.forEach((r, i) => {
        const len = Math.min(frame.length, (i + 1) * PAGE_SIZE) - i * PAGE_SIZE;
        const rs = ring.nextResponse();
        const rv = new DataView(rs.buffer, rs.byteOffset, N.netif_rx_response.size);
        rv.setUint16(RXR.id.offset, r.id, true);
        rv.setUint16(RXR.offset.offset, 0, true);
        rv.setUint16(
          RXR.flags.offset,
          N.NETRXF_data_validated | (i + 1 < slots ? N.NETRXF_more_data : 0),
          true,
        );
        rv.setInt16(RXR.status.offset, status[i] === 0 ? len : N.NETIF_RSP_ERROR, true);
      });
      this.stats.rxPackets++;
      this.stats.rxBytes += frame.length;
      pushed = true;
    }
    if (pushed && ring.pushResponses()) this.evtchn.notify(q.rxPort);
  }
}

/** The netback driver: one event channel handle for all its vifs. */
export class Netback {
  readonly evtchn: XenEvtchn;
  readonly ports = new Map<number, { dev: NetbackDevice; q: number }>();

  constructor(readonly drivers: Dom0Drivers) {
    this.evtchn = drivers.openEvtchn();
    this.evtchn.on((port) => {
      this.evtchn.unmask(port);
      const t = this.ports.get(port);
      t?.dev.kick(t.q);
    });
  }

  device(info: DeviceInfo, bridge: Bridge, log?: (msg: string) => void): NetbackDevice {
    return new NetbackDevice(info, bridge, this.drivers, this.evtchn, this.ports, log);
  }

  dispose(): void {
    this.evtchn.dispose();
  }
}
