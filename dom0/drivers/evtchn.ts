/**
 * Dom0's event channel driver: the counterpart of Linux's `/dev/xen/evtchn`
 * and libxenevtchn (`xenevtchn_bind_unbound_port`, `_bind_interdomain`,
 * `_bind_virq`, `_notify`, `_unbind`, `_unmask`, `_pending`).
 *
 * One EvtchnDevice per host is Dom0's upcall handler: it scans Dom0's 2-level
 * pending bitmap as a guest kernel would, masks and clears each pending port,
 * and hands it to the XenEvtchn handle that bound it. As libxenevtchn's
 * clients do, a handle's listener unmasks the port (`unmask`) once it has
 * dealt with the event; until then further events on it are held, not lost.
 * Every operation is a hypercall through privcmd.
 */
import * as EV from "../../xen/include/public/event_channel.js";
import { shared_info, vcpu_info } from "../../xen/include/public/arch-wasm32.js";
import { HYPERVISOR, DOMID_SELF } from "../../xen/include/public/xen.js";
import { errnoName } from "../../xen/include/public/errno.js";
import type { Privcmd } from "./privcmd.js";

const PENDING = shared_info.fields.evtchn_pending.offset;
const MASK = shared_info.fields.evtchn_mask.offset;

/** An event channel operation that failed: names the operation and Xen's error. */
export class EvtchnError extends Error {
  constructor(
    readonly op: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`evtchn: ${op} ${detail} failed: ${errnoName(errno)}`);
  }
}

/** Dom0's upcall: dispatches pending ports to the handles that own them. */
export class EvtchnDevice {
  private readonly owners = new Map<number, XenEvtchn>();

  constructor(readonly privcmd: Privcmd) {
    privcmd.hv.dom0Kernel = { upcall: () => this.upcall() };
  }

  /** Opens a handle (xenevtchn_open). */
  open(): XenEvtchn {
    return new XenEvtchn(this);
  }

  /** @internal */
  own(port: number, h: XenEvtchn): void {
    this.owners.set(port, h);
  }

  /** @internal */
  disown(port: number): void {
    this.owners.delete(port);
  }

  /** Scans Dom0's pending bitmap; each pending, unmasked port is masked, cleared and delivered. */
  upcall(): void {
    const d = this.privcmd.dom0;
    const i32 = d.mem.i32;
    const si = d.sharedInfoAddr;
    const vi = d.vcpus[0]!.vcpuInfoAddr;
    d.mem.u8[vi + vcpu_info.fields.evtchn_upcall_pending.offset] = 0;
    const selIdx = (vi + vcpu_info.fields.evtchn_pending_sel.offset) >> 2;
    for (let half = 0; half < 2; half++) {
      let sel = Atomics.exchange(i32, selIdx + half, 0) >>> 0;
      while (sel !== 0) {
        const bit = 31 - Math.clz32(sel & -sel);
        sel &= sel - 1;
        const word = half * 32 + bit;
        for (let h = 0; h < 2; h++) {
          const pi = (si + PENDING + word * 8 + h * 4) >> 2;
          const mi = (si + MASK + word * 8 + h * 4) >> 2;
          let bits = (Atomics.load(i32, pi) & ~Atomics.load(i32, mi)) >>> 0;
          while (bits !== 0) {
            const b = 31 - Math.clz32(bits & -bits);
            bits &= bits - 1;
            const port = word * 64 + h * 32 + b;
            // Mask before clearing, so that a new event waits for unmask.
            Atomics.or(i32, mi, 1 << b);
            Atomics.and(i32, pi, ~(1 << b));
            this.owners.get(port)?.deliver(port);
          }
        }
      }
    }
  }
}

/** One client's event channels (a xenevtchn_handle). */
export class XenEvtchn {
  private readonly ports = new Set<number>();
  private readonly listeners = new Set<(port: number) => void>();
  private readonly backlog: number[] = [];

  constructor(private readonly dev: EvtchnDevice) {}

  private op(cmd: number, name: string, detail: string, fill: (a: number) => void): number {
    const pc = this.dev.privcmd;
    const a = pc.bounce(32);
    fill(a);
    const rc = pc.hypercall(HYPERVISOR.__HYPERVISOR_event_channel_op, cmd, a);
    if (rc < 0) throw new EvtchnError(name, -rc, detail);
    return a;
  }

  private adopt(port: number): number {
    this.ports.add(port);
    this.dev.own(port, this);
    return port;
  }

  /** xenevtchn_bind_unbound_port: a port in Dom0 that domain `remoteDomid` may bind to. */
  bindUnboundPort(remoteDomid: number): number {
    return this.adopt(this.allocUnboundIn(DOMID_SELF, remoteDomid));
  }

  /**
   * Allocates an unbound port in domain `domid` for `remoteDomid`, as the
   * toolstack does for a guest's xenstore and console channels. The port is
   * the guest's, not this handle's.
   */
  allocUnboundIn(domid: number, remoteDomid: number): number {
    const f = EV.evtchn_alloc_unbound.fields;
    const mem = this.dev.privcmd.mem;
    const where = domid === DOMID_SELF ? "" : `in d${domid} `;
    const a = this.op(
      EV.EVTCHNOP_alloc_unbound,
      "alloc_unbound",
      `${where}for d${remoteDomid}`,
      (a) => {
        mem.setU16(a + f.dom.offset, domid);
        mem.setU16(a + f.remote_dom.offset, remoteDomid);
      },
    );
    return mem.u32(a + f.port.offset);
  }

  /** xenevtchn_bind_interdomain: connects a Dom0 port to `domid`'s unbound `remotePort`. */
  bindInterdomain(domid: number, remotePort: number): number {
    const f = EV.evtchn_bind_interdomain.fields;
    const mem = this.dev.privcmd.mem;
    const a = this.op(
      EV.EVTCHNOP_bind_interdomain,
      "bind_interdomain",
      `to d${domid} port ${remotePort}`,
      (a) => {
        mem.setU16(a + f.remote_dom.offset, domid);
        mem.setU32(a + f.remote_port.offset, remotePort);
      },
    );
    return this.adopt(mem.u32(a + f.local_port.offset));
  }

  /** xenevtchn_bind_virq: a port for global VIRQ `virq` (VIRQ_DOM_EXC, VIRQ_CONSOLE...). */
  bindVirq(virq: number): number {
    const f = EV.evtchn_bind_virq.fields;
    const mem = this.dev.privcmd.mem;
    const a = this.op(EV.EVTCHNOP_bind_virq, "bind_virq", `VIRQ ${virq}`, (a) => {
      mem.setU32(a + f.virq.offset, virq);
      mem.setU32(a + f.vcpu.offset, 0);
    });
    return this.adopt(mem.u32(a + f.port.offset));
  }

  /** EVTCHNOP_status of Dom0's `port`: its state (EVTCHNSTAT_*). */
  status(port: number): number {
    const f = EV.evtchn_status.fields;
    const mem = this.dev.privcmd.mem;
    const a = this.op(EV.EVTCHNOP_status, "status", `of port ${port}`, (a) => {
      mem.setU16(a + f.dom.offset, DOMID_SELF);
      mem.setU32(a + f.port.offset, port);
    });
    return mem.u32(a + f.status.offset);
  }

  /** xenevtchn_notify: sends an event on `port`. */
  notify(port: number): void {
    this.op(EV.EVTCHNOP_send, "send", `on port ${port}`, (a) =>
      this.dev.privcmd.mem.setU32(a, port),
    );
  }

  /** xenevtchn_unmask: lets further events on `port` through (re-raising one held meanwhile). */
  unmask(port: number): void {
    this.op(EV.EVTCHNOP_unmask, "unmask", `port ${port}`, (a) =>
      this.dev.privcmd.mem.setU32(a, port),
    );
  }

  /** xenevtchn_unbind: closes `port`. */
  unbind(port: number): void {
    if (!this.ports.has(port)) {
      throw new EvtchnError("close", 22, `port ${port} (not bound by this handle)`);
    }
    this.ports.delete(port);
    this.dev.disown(port);
    this.op(EV.EVTCHNOP_close, "close", `port ${port}`, (a) =>
      this.dev.privcmd.mem.setU32(a, port),
    );
  }

  /** Calls `fn(port)` for each event on this handle's ports; returns an unsubscribe. */
  on(fn: (port: number) => void): () => void {
    this.listeners.add(fn);
    for (const p of this.backlog.splice(0)) fn(p);
    return () => this.listeners.delete(fn);
  }

  /** xenevtchn_pending: the next port that fired, if no listener took it. */
  pending(): number | undefined {
    return this.backlog.shift();
  }

  /** @internal Called by the device for a port of this handle. */
  deliver(port: number): void {
    if (this.listeners.size === 0) {
      this.backlog.push(port);
      return;
    }
    for (const l of this.listeners) l(port);
  }

  /** Ports bound through this handle. */
  get bound(): number[] {
    return [...this.ports];
  }

  /** xenevtchn_close: unbinds every port of this handle. Idempotent. */
  dispose(): void {
    for (const p of [...this.ports]) {
      try {
        this.unbind(p);
      } catch {
        // The port may already be gone with its peer domain's reset; nothing to release.
      }
    }
    this.listeners.clear();
    this.backlog.length = 0;
  }
}
