/**
 * The FIFO event channel ABI (Xen's `common/event_fifo.c`; `event_channel.h`
 * EVTCHN_FIFO_*): up to 2^17 ports, each with a 32-bit event word in pages the
 * guest supplies (EVTCHNOP_expand_array), and per vCPU a control block
 * (EVTCHNOP_init_control) with one queue head per priority and a READY bit
 * per non-empty queue.
 *
 * An event word holds PENDING, MASKED, LINKED and BUSY bits and a 17-bit LINK
 * to the next port in its queue. Raising an unmasked, unlinked event links it
 * at the tail of its priority's queue on its vCPU; the guest consumes from the
 * head and clears LINKED as it goes.
 *
 * Ordering: the guest changes words concurrently in principle (another vCPU
 * of the same domain), so every word update is an Atomics operation and the
 * tail link is a compare-and-swap that fails if the guest has already unlinked
 * the tail, in which case the event starts a new queue, as in Xen. All vCPUs
 * share one host thread today, so the hypervisor's own queue state needs no
 * lock.
 */
import {
  EVTCHN_FIFO_BUSY,
  EVTCHN_FIFO_LINKED,
  EVTCHN_FIFO_LINK_MASK,
  EVTCHN_FIFO_MASKED,
  EVTCHN_FIFO_MAX_QUEUES,
  EVTCHN_FIFO_NR_CHANNELS,
  EVTCHN_FIFO_PENDING,
  EVTCHN_FIFO_PRIORITY_MIN,
  evtchn_fifo_control_block,
} from "../include/public/event_channel.js";
import { vcpu_info } from "../include/public/arch-wasm32.js";
import { XenErrno } from "../include/public/errno.js";
import { PAGE_SIZE } from "../include/xen/mm.js";
import type { Domain } from "./domain.js";
import type { EventKick, PortOps } from "./event_channel.js";

/** Event words per page of the event array (Xen's EVTCHN_FIFO_EVENT_WORDS_PER_PAGE). */
export const EVTCHN_FIFO_EVENT_WORDS_PER_PAGE = PAGE_SIZE / 4;
/** Most event array pages: enough words for every FIFO port. */
export const EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES =
  EVTCHN_FIFO_NR_CHANNELS / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;

const PENDING = 1 << EVTCHN_FIFO_PENDING;
const MASKED = 1 << EVTCHN_FIFO_MASKED;
const LINKED = 1 << EVTCHN_FIFO_LINKED;
const BUSY = 1 << EVTCHN_FIFO_BUSY;
const HEAD = evtchn_fifo_control_block.fields.head.offset;
const UPCALL_PENDING = vcpu_info.fields.evtchn_upcall_pending.offset;

/** Per-vCPU FIFO state: where its control block is and each queue's tail. */
interface FifoVcpu {
  /** Guest address of the control block; undefined until init_control. */
  controlBlock: number | undefined;
  /** Tail port of each priority's queue (0: empty as far as Xen knows). */
  readonly tail: Uint32Array;
}

/** A domain's FIFO state as a save carries it (Fifo.snapshot). */
export interface FifoSnapshot {
  arrayPages: number[];
  vcpus: Array<{ controlBlock: number | undefined; tails: number[] }>;
}

/** What FIFO needs to know of a port beyond its number. */
export interface FifoPort {
  priority: number;
  /** Raised while its event word page was missing; re-raised when it arrives. */
  pending: boolean;
}

export class Fifo implements PortOps {
  readonly name = "FIFO";
  readonly maxPorts = EVTCHN_FIFO_NR_CHANNELS;
  /** Guest address of each event array page, in port order. */
  private readonly arrayPages: number[] = [];
  private readonly vcpus: FifoVcpu[];

  constructor(
    private readonly d: Domain,
    private readonly kick: EventKick,
    private readonly portState: (port: number) => FifoPort | undefined,
  ) {
    this.vcpus = d.vcpus.map(() => ({
      controlBlock: undefined,
      tail: new Uint32Array(EVTCHN_FIFO_MAX_QUEUES),
    }));
  }

  /**
   * What a save carries (domain_context.ts): the event array's pages and
   * each vCPU's control block and queue tails. The words and queues
   * themselves are in the guest's memory, which the save carries too.
   */
  snapshot(): FifoSnapshot {
    return {
      arrayPages: [...this.arrayPages],
      vcpus: this.vcpus.map((v) => ({ controlBlock: v.controlBlock, tails: [...v.tail] })),
    };
  }

  /**
   * Takes a saved snapshot, for a domain being restored (its memory in
   * place): nothing is raised, the words are as the guest left them.
   * Returns why it cannot be taken, or undefined.
   */
  restore(s: FifoSnapshot, inMemory: (addr: number, len: number) => boolean): string | undefined {
    if (s.vcpus.length !== this.vcpus.length)
      return `${s.vcpus.length} vCPUs' control blocks for ${this.vcpus.length} vCPUs`;
    if (s.arrayPages.length > EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES)
      return `${s.arrayPages.length} event array pages`;
    for (const a of s.arrayPages)
      if (!Number.isSafeInteger(a) || a % PAGE_SIZE !== 0 || !inMemory(a, PAGE_SIZE))
        return `an event array page at 0x${a.toString(16)}`;
    for (const v of s.vcpus) {
      const cb = v.controlBlock;
      if (
        cb !== undefined &&
        (!Number.isSafeInteger(cb) ||
          cb % 64 !== 0 ||
          !inMemory(cb, evtchn_fifo_control_block.size))
      )
        return `a control block at 0x${cb.toString(16)}`;
      if (
        v.tails.length !== EVTCHN_FIFO_MAX_QUEUES ||
        v.tails.some((t) => !Number.isInteger(t) || t < 0 || t >= EVTCHN_FIFO_NR_CHANNELS)
      )
        return "a queue's tail";
    }
    this.arrayPages.length = 0;
    this.arrayPages.push(...s.arrayPages);
    s.vcpus.forEach((v, i) => {
      this.vcpus[i]!.controlBlock = v.controlBlock;
      this.vcpus[i]!.tail.set(v.tails);
    });
    return undefined;
  }

  /** Number of ports that have an event word. */
  get wordsMapped(): number {
    return this.arrayPages.length * EVTCHN_FIFO_EVENT_WORDS_PER_PAGE;
  }

  /**
   * Guest addresses this ABI writes on its own, whenever an event is raised:
   * the event array pages and the vCPUs' control blocks (log-dirty's
   * candidates while the domain does not run, paging.ts).
   */
  guestAddresses(): number[] {
    const blocks = this.vcpus.map((v) => v.controlBlock).filter((a) => a !== undefined);
    return [...this.arrayPages, ...blocks];
  }

  /** i32 index of `port`'s event word in guest memory, or -1 if its page is missing. */
  private word(port: number): number {
    const page = this.arrayPages[Math.floor(port / EVTCHN_FIFO_EVENT_WORDS_PER_PAGE)];
    if (page === undefined) return -1;
    return (page + (port % EVTCHN_FIFO_EVENT_WORDS_PER_PAGE) * 4) >> 2;
  }

  /** EVTCHNOP_init_control for vCPU `vcpu`: -EINVAL if it already has a control block. */
  mapControlBlock(vcpu: number, addr: number): number {
    const fv = this.vcpus[vcpu];
    if (!fv) return -XenErrno.ENOENT;
    if (fv.controlBlock !== undefined) return -XenErrno.EINVAL;
    fv.controlBlock = addr;
    return 0;
  }

  /** EVTCHNOP_expand_array: one more page of event words at guest address `addr`. */
  addArrayPage(addr: number, ports: Iterable<[number, number]>): number {
    if (this.arrayPages.length >= EVTCHN_FIFO_MAX_EVENT_ARRAY_PAGES) return -XenErrno.ENOSPC;
    const first = this.wordsMapped;
    this.arrayPages.push(addr);
    // Events raised while this page was missing are raised now.
    for (const [port, vcpu] of ports) {
      if (port < first || port >= this.wordsMapped) continue;
      const st = this.portState(port);
      if (st?.pending) {
        st.pending = false;
        this.setPending(port, vcpu);
      }
    }
    return 0;
  }

  setPending(port: number, vcpu: number): void {
    const i32 = this.d.mem.i32;
    const w = this.word(port);
    const st = this.portState(port);
    if (w < 0) {
      if (st) st.pending = true;
      return;
    }
    Atomics.or(i32, w, PENDING);
    const v = this.d.vcpus[vcpu];
    const fv = this.vcpus[vcpu];
    if (!v || !fv) return;
    const cur = Atomics.load(i32, w);
    if (cur & MASKED) {
      this.kick(v, port, true);
      return;
    }
    if (cur & LINKED || fv.controlBlock === undefined) return;
    if (Atomics.or(i32, w, LINKED) & LINKED) return;
    const prio = st?.priority ?? 7;
    const tail = fv.tail[prio]!;
    // Link the old tail to this port only while the tail is still linked (the
    // guest has not consumed it); otherwise this port heads a new queue.
    let linked = false;
    if (tail !== 0 && tail !== port) linked = this.setLink(tail, port);
    if (!linked) Atomics.store(i32, (fv.controlBlock + HEAD + prio * 4) >> 2, port);
    fv.tail[prio] = port;
    if (!linked) {
      const ready = fv.controlBlock >> 2;
      const was = Atomics.or(i32, ready, 1 << prio);
      if (!(was & (1 << prio))) Atomics.store(this.d.mem.u8, v.vcpuInfoAddr + UPCALL_PENDING, 1);
    }
    this.kick(v, port, false);
  }

  /** Sets the LINK field of `tail`'s word to `port` if `tail` is still LINKED. */
  private setLink(tail: number, port: number): boolean {
    const i32 = this.d.mem.i32;
    const w = this.word(tail);
    if (w < 0) return false;
    for (;;) {
      const old = Atomics.load(i32, w);
      if (!(old & LINKED)) return false;
      const next = (old & ~(BUSY | EVTCHN_FIFO_LINK_MASK)) | port;
      if (Atomics.compareExchange(i32, w, old, next) === old) return true;
    }
  }

  clearPending(port: number): void {
    const w = this.word(port);
    const st = this.portState(port);
    if (st) st.pending = false;
    if (w >= 0) Atomics.and(this.d.mem.i32, w, ~PENDING);
  }

  unmask(port: number, vcpu: number): void {
    const w = this.word(port);
    if (w < 0) return;
    Atomics.and(this.d.mem.i32, w, ~MASKED);
    if (Atomics.load(this.d.mem.i32, w) & PENDING) this.setPending(port, vcpu);
  }

  isPending(port: number): boolean {
    const w = this.word(port);
    return w >= 0 && (Atomics.load(this.d.mem.i32, w) & PENDING) !== 0;
  }

  isMasked(port: number): boolean {
    const w = this.word(port);
    return w < 0 || (Atomics.load(this.d.mem.i32, w) & MASKED) !== 0;
  }

  setPriority(port: number, priority: number): number {
    if (priority > EVTCHN_FIFO_PRIORITY_MIN) return -XenErrno.EINVAL;
    const st = this.portState(port);
    // An event already linked stays on its old queue; the next one uses the new.
    if (st) st.priority = priority;
    return 0;
  }
}
