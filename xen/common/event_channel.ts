/**
 * Event channels, 2-level ABI (Xen's `event_channel.c` and `event_2l.c`).
 *
 * This is the core the hypervisor itself needs: per-domain ports, VIRQ
 * binding, pending and mask bits in shared_info with the per-vCPU selector,
 * and waking the vCPU that an event is for. Interdomain channels, IPIs and the
 * FIFO ABI build on it (issue #3).
 *
 * Pending, mask and selector words are 64-bit (xen_ulong_t on wasm32); they are
 * updated as 32-bit halves with Atomics, because the guest sets and clears the
 * same bits in its own memory.
 */
import { shared_info, vcpu_info } from "../include/public/arch-wasm32.js";
import {
  EVTCHN_2L_NR_CHANNELS,
  EVTCHNSTAT_closed,
  EVTCHNSTAT_virq,
} from "../include/public/event_channel.js";
import { XenErrno } from "../include/public/errno.js";
import { NR_VIRQS } from "../include/public/xen.js";
import type { Domain } from "./domain.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";

interface Port {
  state: number;
  vcpu: number;
  virq: number;
}

const PENDING = shared_info.fields.evtchn_pending.offset;
const MASK = shared_info.fields.evtchn_mask.offset;
const SEL = vcpu_info.fields.evtchn_pending_sel.offset;
const UPCALL_PENDING = vcpu_info.fields.evtchn_upcall_pending.offset;

/**
 * Called when an event is newly pending for a vCPU. `pollOnly` is set when the
 * port is masked: then only a vCPU polling that port is woken.
 */
export type EventKick = (v: Vcpu, port: number, pollOnly: boolean) => void;

export class EventChannels {
  private readonly ports: (Port | undefined)[] = [undefined];
  private readonly virqPort = new Map<number, number>();
  /** Most ports this domain may use (Xen's max_evtchns, within the 2-level limit). */
  maxPorts = EVTCHN_2L_NR_CHANNELS;

  constructor(private readonly d: Domain) {}

  /** Number of ports in use. */
  get inUse(): number {
    return this.ports.filter((p) => p !== undefined && p.state !== EVTCHNSTAT_closed).length;
  }

  private allocPort(): number {
    for (let p = 1; p < this.ports.length; p++) if (!this.ports[p]) return p;
    if (this.ports.length >= this.maxPorts) return -XenErrno.ENOSPC;
    this.ports.push(undefined);
    return this.ports.length - 1;
  }

  /** EVTCHNOP_bind_virq: a new port that receives `virq` for vCPU `vcpu`. */
  bindVirq(virq: number, vcpu: number): number {
    if (virq < 0 || virq >= NR_VIRQS) return -XenErrno.EINVAL;
    if (vcpu < 0 || vcpu >= this.d.vcpus.length) return -XenErrno.ENOENT;
    const key = vcpu * NR_VIRQS + virq;
    if (this.virqPort.has(key)) return -XenErrno.EEXIST;
    const port = this.allocPort();
    if (port < 0) return port;
    this.ports[port] = { state: EVTCHNSTAT_virq, vcpu, virq };
    this.virqPort.set(key, port);
    return port;
  }

  /** EVTCHNOP_close */
  close(port: number): number {
    const p = this.ports[port];
    if (port <= 0 || !p) return -XenErrno.EINVAL;
    if (p.state === EVTCHNSTAT_virq) this.virqPort.delete(p.vcpu * NR_VIRQS + p.virq);
    this.ports[port] = undefined;
    this.clearBit(PENDING, port);
    return 0;
  }

  /** EVTCHNOP_status: [state, vcpu, virq] of a port, or -errno. */
  status(port: number): { state: number; vcpu: number; virq: number } | number {
    if (port < 0 || port >= this.maxPorts) return -XenErrno.EINVAL;
    const p = this.ports[port];
    return p ? { ...p } : { state: EVTCHNSTAT_closed, vcpu: 0, virq: 0 };
  }

  /** Raises `virq` on vCPU `vcpu` if the domain bound a port to it (send_guest_vcpu_virq). */
  sendVirq(vcpu: number, virq: number, kick: EventKick): void {
    const port = this.virqPort.get(vcpu * NR_VIRQS + virq);
    if (port !== undefined) this.setPending(port, kick);
  }

  /** Marks `port` pending and notifies its vCPU as the 2-level ABI requires. */
  setPending(port: number, kick: EventKick): void {
    const p = this.ports[port];
    if (!p) return;
    const v = this.d.vcpus[p.vcpu];
    if (!v) return;
    if (this.testAndSetBit(PENDING, port)) return;
    if (!this.testBit(MASK, port)) this.markSelector(v, port, kick);
    else kick(v, port, true); // pollers wake on masked ports too
  }

  /**
   * EVTCHNOP_unmask: clears the mask and re-raises the event if it is pending.
   * A closed port gives -EINVAL; Xen returns 0 for closed ports inside an
   * allocated bucket (#3 replaces this core with bucketed ports).
   */
  unmask(port: number, kick: EventKick): number {
    const p = this.ports[port];
    if (port <= 0 || port >= this.maxPorts || !p) return -XenErrno.EINVAL;
    this.clearBit(MASK, port);
    const v = this.d.vcpus[p.vcpu];
    if (v && this.testBit(PENDING, port)) this.markSelector(v, port, kick);
    return 0;
  }

  /** True when `port` is pending in shared_info. */
  isPending(port: number): boolean {
    return port > 0 && port < this.maxPorts && this.testBit(PENDING, port);
  }

  /** Closes every port (domain destruction). */
  dispose(): void {
    this.ports.length = 1;
    this.virqPort.clear();
  }

  private markSelector(v: Vcpu, port: number, kick: EventKick): void {
    const infoAddr = v.vcpuInfoAddr;
    if (!this.testAndSetAbs(infoAddr + SEL, port >> 6)) {
      const u8 = this.d.mem.u8;
      Atomics.store(u8, infoAddr + UPCALL_PENDING, 1);
    }
    kick(v, port, false);
  }

  /** i32 index and bit of bit `n` of the 64-bit-word bitmap at shared_info+`field`. */
  private where(base: number, n: number): [number, number] {
    const byte = base + (n >> 6) * 8 + ((n & 63) >= 32 ? 4 : 0);
    return [byte >> 2, 1 << (n & 31)];
  }
  private testAndSetAbs(base: number, n: number): boolean {
    const [i, bit] = this.where(base, n);
    return (Atomics.or(this.d.mem.i32, i, bit) & bit) !== 0;
  }
  private testAndSetBit(field: number, n: number): boolean {
    return this.testAndSetAbs(this.d.sharedInfoAddr + field, n);
  }
  private testBit(field: number, n: number): boolean {
    const [i, bit] = this.where(this.d.sharedInfoAddr + field, n);
    return (Atomics.load(this.d.mem.i32, i) & bit) !== 0;
  }
  private clearBit(field: number, n: number): void {
    const [i, bit] = this.where(this.d.sharedInfoAddr + field, n);
    Atomics.and(this.d.mem.i32, i, ~bit);
  }
}
