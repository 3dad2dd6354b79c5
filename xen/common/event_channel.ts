/**
 * Event channels (Xen's `common/event_channel.c`): a domain's ports, their
 * binding (unbound, interdomain, VIRQ, IPI), notification, and the per-port
 * operations of the two ABIs, 2-level (event_2l.ts, the default) and FIFO
 * (event_fifo.ts, after EVTCHNOP_init_control).
 *
 * Ports are numbered from 1 (port 0 is never used). As in Xen, a port is
 * "valid" once the bucket of 64 ports holding it has been allocated; valid
 * but free ports report EVTCHNSTAT_closed and may be unmasked, anything past
 * the valid range is -EINVAL. The most ports a domain may have is the ABI's
 * limit capped by its max_evtchn_port (xl.cfg `max_event_channels`).
 */
import {
  EVTCHNSTAT_closed,
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_ipi,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
  EVTCHN_FIFO_PRIORITY_DEFAULT,
  EVTCHN_FIFO_PRIORITY_MIN,
} from "../include/public/event_channel.js";
import { XenErrno } from "../include/public/errno.js";
import {
  NR_VIRQS,
  VIRQ_DEBUG,
  VIRQ_TIMER,
  VIRQ_XENOPROF,
  VIRQ_XENPMU,
} from "../include/public/xen.js";
import type { Domain } from "./domain.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import { TwoLevel } from "./event_2l.js";
import { Fifo, type FifoPort, type FifoSnapshot } from "./event_fifo.js";

/**
 * Called when an event is newly pending for a vCPU. `pollOnly` is set when the
 * port is masked: then only a vCPU polling that port is woken.
 */
export type EventKick = (v: Vcpu, port: number, pollOnly: boolean) => void;

/** The per-port operations an event channel ABI provides (Xen's evtchn_port_ops). */
export interface PortOps {
  readonly name: string;
  /** Ports this ABI can name. */
  readonly maxPorts: number;
  setPending(port: number, vcpu: number): void;
  clearPending(port: number): void;
  unmask(port: number, vcpu: number): void;
  isPending(port: number): boolean;
  isMasked(port: number): boolean;
  setPriority?(port: number, priority: number): number;
}

/** Ports are made valid 64 at a time, as Xen allocates struct evtchn buckets. */
export const EVTCHNS_PER_BUCKET = 64;

/** One port (Xen's struct evtchn). */
export interface Evtchn extends FifoPort {
  state: number;
  /** vCPU notified when the port fires. */
  vcpu: number;
  /** Unbound: who may bind. Interdomain: the peer. */
  remoteDom: number;
  /** Interdomain: the peer's port. */
  remotePort: number;
  /** Interdomain: the peer's ports. */
  peer: EventChannels | undefined;
  virq: number;
  /** VIRQ: the vCPU it was bound on, which keys the VIRQ table even after bind_vcpu. */
  virqVcpu: number;
}

/** VIRQs delivered per vCPU; the rest are global (bound on vCPU 0 only). */
const PER_VCPU_VIRQS = new Set([VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF, VIRQ_XENPMU]);

/** A snapshot of one port, as EVTCHNOP_status reports it. */
export interface EvtchnStatus {
  state: number;
  vcpu: number;
  /** unbound/interdomain: remote domid; virq: the VIRQ. */
  u: number;
  /** interdomain: remote port. */
  uPort: number;
}

export class EventChannels {
  private readonly ports: (Evtchn | undefined)[] = [undefined];
  /** vcpu * NR_VIRQS + virq → port. */
  private readonly virqPort = new Map<number, number>();
  private validPorts = EVTCHNS_PER_BUCKET;
  private inUseCount = 0;
  ops: PortOps;
  fifo: Fifo | undefined;

  /**
   * @param maxEvtchnPort highest port this domain may use (Xen's
   *   max_evtchn_port; libxl's default for a guest is 1023).
   */
  constructor(
    private readonly d: Domain,
    private readonly kick: EventKick,
    readonly maxEvtchnPort: number,
  ) {
    this.ops = new TwoLevel(d, kick);
  }

  get domid(): number {
    return this.d.domid;
  }

  /** Most ports this domain may have now (Xen's max_evtchns, capped by max_evtchn_port). */
  get maxPorts(): number {
    return Math.min(this.ops.maxPorts, this.maxEvtchnPort + 1);
  }

  /** Number of ports in use. */
  get inUse(): number {
    return this.inUseCount;
  }

  /**
   * True if `port` names a slot of an allocated bucket, bound or not. Port 0
   * is valid but reserved: it is never bound, so status reports it closed and
   * close, send or bind_vcpu on it are -EINVAL, as in Xen.
   */
  isValid(port: number): boolean {
    return Number.isInteger(port) && port >= 0 && port < this.validPorts && port < this.maxPorts;
  }

  /** The bound port `port`, or undefined. */
  get(port: number): Evtchn | undefined {
    return this.isValid(port) ? this.ports[port] : undefined;
  }

  /** Binds the lowest free port; -ENOSPC when the domain has all it may have. */
  private allocPort(state: number, vcpu: number): number {
    let port = 1;
    while (port < this.ports.length && this.ports[port]) port++;
    if (port >= this.maxPorts) return -XenErrno.ENOSPC;
    if (port >= this.validPorts) this.validPorts += EVTCHNS_PER_BUCKET;
    const ch: Evtchn = {
      state,
      vcpu,
      remoteDom: 0,
      remotePort: 0,
      peer: undefined,
      virq: 0,
      virqVcpu: 0,
      priority: EVTCHN_FIFO_PRIORITY_DEFAULT,
      pending: false,
    };
    this.ports[port] = ch;
    this.inUseCount++;
    return port;
  }

  /** The bound ports and their channels, in port order (a domain's save). */
  *channels(): Generator<[number, Evtchn]> {
    for (let p = 1; p < this.ports.length; p++) {
      const ch = this.ports[p];
      if (ch) yield [p, ch];
    }
  }

  /**
   * Binds `port` as it was saved (a domain's restore): unbound (offered to
   * `remoteDom`), a VIRQ or an IPI. False when the port is taken, out of
   * range, or the binding is not one of those or invalid.
   */
  restorePort(
    port: number,
    c: {
      state: number;
      vcpu: number;
      remoteDom: number;
      virq: number;
      virqVcpu: number;
      priority: number;
      /** FIFO: raised while its event word's page was missing. */
      pending?: boolean;
    },
  ): boolean {
    if (!Number.isInteger(port) || port < 1 || port >= this.maxPorts || this.ports[port])
      return false;
    if (!Number.isInteger(c.priority) || c.priority < 0 || c.priority > EVTCHN_FIFO_PRIORITY_MIN)
      return false;
    if (!this.d.vcpus[c.vcpu]) return false;
    let key = -1;
    if (c.state === EVTCHNSTAT_virq) {
      if (
        !Number.isInteger(c.virq) ||
        c.virq < 0 ||
        c.virq >= NR_VIRQS ||
        !this.d.vcpus[c.virqVcpu]
      )
        return false;
      key = c.virqVcpu * NR_VIRQS + c.virq;
      if (this.virqPort.has(key)) return false;
    } else if (c.state !== EVTCHNSTAT_unbound && c.state !== EVTCHNSTAT_ipi) return false;
    while (port >= this.validPorts) this.validPorts += EVTCHNS_PER_BUCKET;
    this.ports[port] = {
      state: c.state,
      vcpu: c.vcpu,
      remoteDom: c.state === EVTCHNSTAT_unbound ? c.remoteDom : 0,
      remotePort: 0,
      peer: undefined,
      virq: c.state === EVTCHNSTAT_virq ? c.virq : 0,
      virqVcpu: c.state === EVTCHNSTAT_virq ? c.virqVcpu : 0,
      priority: c.priority,
      pending: this.fifo !== undefined && c.pending === true,
    };
    if (key >= 0) this.virqPort.set(key, port);
    this.inUseCount++;
    return true;
  }

  /** EVTCHNOP_alloc_unbound: a port that domain `remoteDom` may bind to. */
  allocUnbound(remoteDom: number): number {
    const port = this.allocPort(EVTCHNSTAT_unbound, 0);
    if (port < 0) return port;
    this.ports[port]!.remoteDom = remoteDom;
    return port;
  }

  /**
   * EVTCHNOP_bind_interdomain: connects a new local port to `remote`'s unbound
   * `remotePort`, which must have been offered to this domain. The local port
   * is raised at once, so an event sent before the bind is not lost.
   */
  bindInterdomain(remote: EventChannels, remotePort: number): number {
    const rch = remote.get(remotePort);
    if (!rch || rch.state !== EVTCHNSTAT_unbound || rch.remoteDom !== this.domid) {
      return -XenErrno.EINVAL;
    }
    const port = this.allocPort(EVTCHNSTAT_interdomain, 0);
    if (port < 0) return port;
    const lch = this.ports[port]!;
    lch.remoteDom = remote.domid;
    lch.remotePort = remotePort;
    lch.peer = remote;
    rch.state = EVTCHNSTAT_interdomain;
    rch.remoteDom = this.domid;
    rch.remotePort = port;
    rch.peer = this;
    this.ops.setPending(port, lch.vcpu);
    return port;
  }

  /** EVTCHNOP_bind_virq: a new port that receives `virq` for vCPU `vcpu`. */
  bindVirq(virq: number, vcpu: number): number {
    if (!Number.isInteger(virq) || virq < 0 || virq >= NR_VIRQS) return -XenErrno.EINVAL;
    // Global and per-domain VIRQs are bound on vCPU 0 and moved with bind_vcpu.
    if (!PER_VCPU_VIRQS.has(virq) && vcpu !== 0) return -XenErrno.EINVAL;
    if (!this.d.vcpus[vcpu]) return -XenErrno.ENOENT;
    const key = vcpu * NR_VIRQS + virq;
    if (this.virqPort.has(key)) return -XenErrno.EEXIST;
    const port = this.allocPort(EVTCHNSTAT_virq, vcpu);
    if (port < 0) return port;
    this.ports[port]!.virq = virq;
    this.ports[port]!.virqVcpu = vcpu;
    this.virqPort.set(key, port);
    return port;
  }

  /** EVTCHNOP_bind_ipi: a port that this domain's vCPUs use to notify vCPU `vcpu`. */
  bindIpi(vcpu: number): number {
    if (!this.d.vcpus[vcpu]) return -XenErrno.ENOENT;
    return this.allocPort(EVTCHNSTAT_ipi, vcpu);
  }

  /**
   * EVTCHNOP_bind_vcpu: moves notification of `port` to vCPU `vcpu`. Only
   * global VIRQs, unbound and interdomain ports can move; per-vCPU VIRQs and
   * IPIs are tied to their vCPU (-EINVAL).
   */
  bindVcpu(port: number, vcpu: number): number {
    if (!this.d.vcpus[vcpu]) return -XenErrno.ENOENT;
    const ch = this.get(port);
    if (!ch) return -XenErrno.EINVAL;
    switch (ch.state) {
      case EVTCHNSTAT_virq:
        if (PER_VCPU_VIRQS.has(ch.virq)) return -XenErrno.EINVAL;
        ch.vcpu = vcpu;
        return 0;
      case EVTCHNSTAT_unbound:
      case EVTCHNSTAT_interdomain:
        ch.vcpu = vcpu;
        return 0;
      default:
        return -XenErrno.EINVAL;
    }
  }

  /**
   * EVTCHNOP_send: raises the peer of an interdomain port, or the target vCPU
   * of an IPI. Sending on an unbound port is dropped silently, as in Xen.
   */
  send(port: number): number {
    const ch = this.get(port);
    if (!ch) return -XenErrno.EINVAL;
    switch (ch.state) {
      case EVTCHNSTAT_interdomain: {
        const peer = ch.peer!;
        const rch = peer.ports[ch.remotePort]!;
        peer.ops.setPending(ch.remotePort, rch.vcpu);
        return 0;
      }
      case EVTCHNSTAT_ipi:
        this.ops.setPending(port, ch.vcpu);
        return 0;
      case EVTCHNSTAT_unbound:
        return 0;
      default:
        return -XenErrno.EINVAL;
    }
  }

  /**
   * EVTCHNOP_close: frees `port`. Its interdomain peer goes back to unbound,
   * offered to this domain again, as Xen leaves it.
   */
  close(port: number): number {
    const ch = this.get(port);
    if (!ch) return -XenErrno.EINVAL;
    if (ch.state === EVTCHNSTAT_virq) this.virqPort.delete(ch.virqVcpu * NR_VIRQS + ch.virq);
    if (ch.state === EVTCHNSTAT_interdomain && ch.peer) {
      const rch = ch.peer.ports[ch.remotePort];
      if (rch && rch.peer === this) {
        rch.state = EVTCHNSTAT_unbound;
        rch.remoteDom = this.domid;
        rch.remotePort = 0;
        rch.peer = undefined;
      }
    }
    this.ops.clearPending(port);
    this.ports[port] = undefined;
    this.inUseCount--;
    return 0;
  }

  /** EVTCHNOP_status for `port`. */
  status(port: number): EvtchnStatus | number {
    if (!this.isValid(port)) return -XenErrno.EINVAL;
    const ch = this.ports[port];
    if (!ch) return { state: EVTCHNSTAT_closed, vcpu: 0, u: 0, uPort: 0 };
    switch (ch.state) {
      case EVTCHNSTAT_unbound:
        return { state: ch.state, vcpu: ch.vcpu, u: ch.remoteDom, uPort: 0 };
      case EVTCHNSTAT_interdomain:
        return { state: ch.state, vcpu: ch.vcpu, u: ch.remoteDom, uPort: ch.remotePort };
      case EVTCHNSTAT_virq:
        return { state: ch.state, vcpu: ch.vcpu, u: ch.virq, uPort: 0 };
      default:
        return { state: ch.state, vcpu: ch.vcpu, u: 0, uPort: 0 };
    }
  }

  /** EVTCHNOP_unmask: valid ports only; re-raises a pending event. */
  unmask(port: number): number {
    if (!this.isValid(port)) return -XenErrno.EINVAL;
    const ch = this.ports[port];
    this.ops.unmask(port, ch?.vcpu ?? 0);
    return 0;
  }

  /** EVTCHNOP_set_priority (FIFO only: -ENOSYS on 2-level). */
  setPriority(port: number, priority: number): number {
    if (!this.ops.setPriority) return -XenErrno.ENOSYS;
    const ch = this.get(port);
    if (!ch) return -XenErrno.EINVAL;
    return this.ops.setPriority(port, priority);
  }

  /**
   * EVTCHNOP_init_control: maps vCPU `vcpu`'s FIFO control block at guest
   * address `addr`. The first call switches the domain to FIFO; pending state
   * of bound ports carries over.
   */
  initControl(vcpu: number, addr: number): number {
    if (!this.fifo) {
      const fifo = new Fifo(this.d, this.kick, (p) => this.ports[p]);
      const rc = fifo.mapControlBlock(vcpu, addr);
      if (rc < 0) return rc;
      for (let p = 1; p < this.ports.length; p++) {
        const ch = this.ports[p];
        if (!ch) continue;
        ch.pending = this.ops.isPending(p);
        ch.priority = EVTCHN_FIFO_PRIORITY_DEFAULT;
      }
      this.fifo = fifo;
      this.ops = fifo;
      return 0;
    }
    return this.fifo.mapControlBlock(vcpu, addr);
  }

  /**
   * A restore's FIFO state (domain_context.ts): the domain uses the FIFO ABI
   * from the start, with the saved control blocks and event array. Before
   * any port is restored. Returns why it cannot, or undefined.
   */
  restoreFifo(
    s: FifoSnapshot,
    inMemory: (addr: number, len: number) => boolean,
  ): string | undefined {
    if (this.fifo || this.inUse > 0) return "the domain already has event channels";
    const fifo = new Fifo(this.d, this.kick, (p) => this.ports[p]);
    const why = fifo.restore(s, inMemory);
    if (why) return why;
    this.fifo = fifo;
    this.ops = fifo;
    return undefined;
  }

  /** EVTCHNOP_expand_array: one more page of FIFO event words. */
  expandArray(addr: number): number {
    if (!this.fifo) return -XenErrno.EOPNOTSUPP;
    return this.fifo.addArrayPage(addr, this.boundPorts());
  }

  private *boundPorts(): Iterable<[number, number]> {
    for (let p = 1; p < this.ports.length; p++) {
      const ch = this.ports[p];
      if (ch) yield [p, ch.vcpu];
    }
  }

  /** EVTCHNOP_reset: closes every port and returns to the 2-level ABI. */
  reset(): void {
    for (let p = 1; p < this.ports.length; p++) if (this.ports[p]) this.close(p);
    this.fifo = undefined;
    this.ops = new TwoLevel(this.d, this.kick);
  }

  /** Raises per-vCPU `virq` on vCPU `vcpu` if bound (Xen's send_guest_vcpu_virq). */
  sendVirq(vcpu: number, virq: number): void {
    const port = this.virqPort.get(vcpu * NR_VIRQS + virq);
    if (port !== undefined) this.ops.setPending(port, this.ports[port]!.vcpu);
  }

  /** Raises global `virq` on whichever vCPU its port notifies (send_guest_global_virq). */
  sendGlobalVirq(virq: number): void {
    this.sendVirq(0, virq);
  }

  /** Raises `port` locally (the hypervisor's own notifications). */
  setPending(port: number): void {
    const ch = this.get(port);
    if (ch) this.ops.setPending(port, ch.vcpu);
  }

  /** True when `port` is pending (SCHEDOP_poll). */
  isPending(port: number): boolean {
    return this.isValid(port) && this.ops.isPending(port);
  }

  /** Every bound port and its state, for `xl debug-keys e` style dumps and tests. */
  *bound(): Iterable<[number, EvtchnStatus]> {
    for (let p = 1; p < this.ports.length; p++) {
      if (this.ports[p]) yield [p, this.status(p) as EvtchnStatus];
    }
  }

  /** Closes every port (domain destruction); peers' ports go back to unbound. */
  dispose(): void {
    for (let p = 1; p < this.ports.length; p++) if (this.ports[p]) this.close(p);
    this.ports.length = 1;
    this.virqPort.clear();
  }
}
