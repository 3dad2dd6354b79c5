/**
 * The 2-level event channel ABI (Xen's `common/event_2l.c`): one pending and
 * one mask bit per port in shared_info, and a per-vCPU selector word whose bit
 * N says "pending word N has something". 4,096 ports with wasm32's 64-bit
 * xen_ulong_t.
 *
 * The guest sets and clears the same bits in its own memory, so every access
 * is an Atomics operation on one 32-bit half of a 64-bit word.
 */
import { shared_info, vcpu_info } from "../include/public/arch-wasm32.js";
import { EVTCHN_2L_NR_CHANNELS } from "../include/public/event_channel.js";
import type { Domain } from "./domain.js";
import type { EventKick, PortOps } from "./event_channel.js";

const PENDING = shared_info.fields.evtchn_pending.offset;
const MASK = shared_info.fields.evtchn_mask.offset;
const SEL = vcpu_info.fields.evtchn_pending_sel.offset;
const UPCALL_PENDING = vcpu_info.fields.evtchn_upcall_pending.offset;

/** i32 index and bit mask of bit `n` of a bitmap of 64-bit words at byte `base`. */
function where(base: number, n: number): [number, number] {
  const byte = base + (n >> 6) * 8 + ((n & 63) >= 32 ? 4 : 0);
  return [byte >> 2, 1 << (n & 31)];
}

export class TwoLevel implements PortOps {
  readonly name = "2-level";
  readonly maxPorts = EVTCHN_2L_NR_CHANNELS;

  constructor(
    private readonly d: Domain,
    private readonly kick: EventKick,
  ) {}

  private testAndSet(base: number, n: number): boolean {
    const [i, bit] = where(base, n);
    return (Atomics.or(this.d.mem.i32, i, bit) & bit) !== 0;
  }
  private test(base: number, n: number): boolean {
    const [i, bit] = where(base, n);
    return (Atomics.load(this.d.mem.i32, i) & bit) !== 0;
  }
  private clear(base: number, n: number): void {
    const [i, bit] = where(base, n);
    Atomics.and(this.d.mem.i32, i, ~bit);
  }

  /** Sets the selector bit and upcall flag of vCPU `vcpu`, then wakes it. */
  private markSelector(vcpu: number, port: number): void {
    const v = this.d.vcpus[vcpu];
    if (!v) return;
    if (!this.testAndSet(v.vcpuInfoAddr + SEL, port >> 6)) {
      Atomics.store(this.d.mem.u8, v.vcpuInfoAddr + UPCALL_PENDING, 1);
    }
    this.kick(v, port, false);
  }

  setPending(port: number, vcpu: number): void {
    if (this.testAndSet(this.d.sharedInfoAddr + PENDING, port)) return;
    if (!this.test(this.d.sharedInfoAddr + MASK, port)) this.markSelector(vcpu, port);
    else {
      // A masked port still wakes a vCPU that polls it (SCHEDOP_poll).
      const v = this.d.vcpus[vcpu];
      if (v) this.kick(v, port, true);
    }
  }

  clearPending(port: number): void {
    this.clear(this.d.sharedInfoAddr + PENDING, port);
  }

  unmask(port: number, vcpu: number): void {
    const base = this.d.sharedInfoAddr;
    const [i, bit] = where(base + MASK, port);
    const was = Atomics.and(this.d.mem.i32, i, ~bit);
    // Re-raise only a pending event whose mask this call actually cleared.
    if (was & bit && this.test(base + PENDING, port)) this.markSelector(vcpu, port);
  }

  isPending(port: number): boolean {
    return this.test(this.d.sharedInfoAddr + PENDING, port);
  }

  isMasked(port: number): boolean {
    return this.test(this.d.sharedInfoAddr + MASK, port);
  }
}
