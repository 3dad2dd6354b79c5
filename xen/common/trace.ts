/**
 * Trace buffers (Xen's `common/trace.c`): per-CPU rings of `t_rec` records
 * in pages of the hypervisor's own, which Dom0's xentrace maps (the
 * `t_info` page lists their frames) and drains, moving `t_buf.cons` up to
 * `t_buf.prod`. Controlled with XEN_SYSCTL_tbuf_op: size, event and CPU
 * masks, enable, disable.
 *
 * The CPUs are the host threads that run guest code (docs/tracing.md):
 * CPU 0 is the main thread, where the scheduler runs PV vCPUs and where
 * every hypercall is served; CPUs 1 to TRACE_CPUS - 1 are lent one each to
 * HVM vCPU threads, which record their ioreqs themselves, as a pCPU records
 * the VM exits of the vCPU it runs. Each buffer has one writer, so no
 * locks: a CPU is lent to another thread only after the last one ended.
 *
 * As in Xen: offsets run modulo twice the data size; a record that would
 * cross the end of the buffer is preceded by a TRC_TRACE_WRAP_BUFFER
 * record filling the gap; when the consumer is too slow, records are
 * dropped and counted, and a TRC_LOST_RECORDS record (the count, the
 * domain and vCPU running, the first lost record's time) goes in before
 * the next one that fits. The time stamp of a record ("cycles") is system
 * time in nanoseconds: a 1 GHz clock (docs/tracing.md).
 *
 * When tracing is off, the hypercall path has no test at all (the
 * hypervisor swaps in a recording entry while it is on: `toggled`); the
 * other trace points test `on`.
 *
 * This module is loaded by HVM vCPU threads too (TraceRing): it imports
 * nothing that needs the main thread.
 */
import {
  TRACE_EXTRA_MAX,
  TRACE_EXTRA_SHIFT,
  TRC_ALL,
  TRC_HD_CYCLE_FLAG,
  TRC_LOST_RECORDS,
  TRC_TRACE_WRAP_BUFFER,
  t_buf,
} from "../include/public/trace.js";
import { XenErrno } from "../include/public/errno.js";
import { PAGE_SIZE, mfn_x, type Mfn } from "../include/xen/mm.js";
import { DOMID_XEN } from "../include/public/xen.js";
import type { FrameAllocator } from "./page_alloc.js";
import type { XenPages } from "./ioreq.js";

/** Trace CPUs: the main thread (0) and one for each HVM vCPU thread that traces (1..7). */
export const TRACE_CPUS = 8;
/** Pages per CPU when the size was never set (xentrace's own default is 32 too). */
export const DEFAULT_TBUF_PAGES = 32;
/**
 * 32-bit word of t_info where the frame lists start: after tbuf_size and
 * one 16-bit mfn_offset per CPU.
 */
export const T_INFO_FIRST_WORD = Math.ceil((2 + 2 * TRACE_CPUS) / 4);
/**
 * Most pages per CPU (127, 508 KiB): t_info is one page, whose 32-bit words
 * after the header list every CPU's frames; this also bounds the host's
 * memory. Xen bounds it by its t_info size the same way.
 */
export const MAX_TBUF_PAGES = Math.floor((PAGE_SIZE / 4 - T_INFO_FIRST_WORD) / TRACE_CPUS);

/** Int32 words every writer reads before it records: shared with HVM vCPU threads. */
export const TCTL_ON = 0;
export const TCTL_EVT_MASK = 1;
export const TCTL_CPU_MASK = 2;
/** Bumped at every enable: a thread that sees it move says again which vCPU its CPU runs. */
export const TCTL_GEN = 3;
export const TCTL_BYTES = 16;

/** What an HVM vCPU thread needs to record on the CPU lent to it. */
export interface TraceCpu {
  readonly cpu: number;
  readonly buf: SharedArrayBuffer;
  readonly ctl: SharedArrayBuffer;
}

/**
 * One CPU's buffer and its single writer's state: the t_buf header, then
 * records. `now` is system time in ns on the writer's thread.
 */
export class TraceRing {
  private readonly dv: DataView;
  /** The header's words: prod is published with a release store, after the records. */
  private readonly head: Int32Array;
  private readonly ctl: Int32Array;
  /** Bytes of record data (after the t_buf header). */
  private readonly size: number;
  private lost = 0;
  private lostFirstTsc = 0;
  private lastTsc = 0;
  /** Records written and dropped on this CPU. */
  written = 0;
  dropped = 0;

  constructor(
    t: TraceCpu,
    private readonly now: () => number,
    /** The (domid, vcpu) on the CPU now, for TRC_LOST_RECORDS. */
    private readonly current: () => { domid: number; vcpu: number } | undefined,
  ) {
    this.dv = new DataView(t.buf);
    this.head = new Int32Array(t.buf, 0, t_buf.size / 4);
    this.ctl = new Int32Array(t.ctl, 0, TCTL_BYTES / 4);
    this.size = t.buf.byteLength - t_buf.size;
    this.cpu = t.cpu;
  }
  readonly cpu: number;

  /** How many times tracing was enabled: a writer on another thread notices a restart. */
  get generation(): number {
    return Atomics.load(this.ctl, TCTL_GEN);
  }

  /** Tracing is on (the writer's quick test before it builds a record). */
  get on(): boolean {
    return this.ctl[TCTL_ON] !== 0;
  }

  /**
   * Records `event` with up to 7 32-bit words of data, and the time unless
   * `cycles` is false (Xen records some events without one), unless its
   * class or this CPU is masked. Callers test `on` first.
   */
  record(event: number, d: readonly number[] = [], cycles = true): void {
    const ctl = this.ctl;
    if (
      (event & ctl[TCTL_EVT_MASK]! & TRC_ALL) === 0 ||
      ((ctl[TCTL_CPU_MASK]! >>> this.cpu) & 1) === 0
    )
      return;
    const dv = this.dv;
    // Time stamps strictly increase on a CPU, as a TSC does (xenalyze checks).
    const now = Math.max(this.now(), this.lastTsc + 1);
    this.lastTsc = now;
    let cons = dv.getUint32(t_buf.fields.cons.offset, true);
    const prod = dv.getUint32(t_buf.fields.prod.offset, true);
    const X = this.size;
    if (cons >= 2 * X || cons % 4 !== 0) {
      // A consumer that wrote nonsense: everything not yet read is dropped.
      cons = prod;
      dv.setUint32(t_buf.fields.cons.offset, cons, true);
    }
    const used = (prod - cons + 2 * X) % (2 * X);
    const n = Math.min(d.length, TRACE_EXTRA_MAX);
    const recSize = (cycles ? 12 : 4) + 4 * n;
    const lostSize = this.lost > 0 ? 12 + 16 : 0;
    // Room for a wrap record at most as large as this record, the lost record and this one.
    if (used + Math.max(recSize, 12) * 2 + lostSize > X) {
      if (this.lost === 0) this.lostFirstTsc = now;
      this.lost++;
      this.dropped++;
      return;
    }
    let p = prod;
    if (this.lost > 0) {
      const cur = this.current();
      p = this.put(p, TRC_LOST_RECORDS, now, [
        this.lost,
        (((cur?.domid ?? 0x7fff) & 0xffff) | ((cur?.vcpu ?? 0) << 16)) >>> 0,
        this.lostFirstTsc >>> 0,
        Math.floor(this.lostFirstTsc / 2 ** 32),
      ]);
      this.lost = 0;
    }
    const tsc = cycles ? now + (lostSize > 0 ? 1 : 0) : undefined;
    p = this.put(p, event, tsc, d.length > n ? d.slice(0, n) : d);
    if (lostSize > 0) this.lastTsc = now + 1;
    // The consumer reads prod, then the records before it.
    Atomics.store(this.head, t_buf.fields.prod.offset / 4, p);
    this.written++;
  }

  /** Writes one record at offset `p` (wrapping first if it would cross the end); the next offset. */
  private put(p: number, event: number, tsc: number | undefined, d: readonly number[]): number {
    const X = this.size;
    const size = (tsc === undefined ? 4 : 12) + 4 * d.length;
    let at = p % X;
    if (at + size > X) {
      // Fill the gap to the end with a wrap record (no time stamp), then start again at 0.
      const gap = X - at;
      // Past 7 words of padding, the record carries a time stamp to fill the rest.
      const words = (gap - 4) / 4;
      if (words > TRACE_EXTRA_MAX) this.header(at, TRC_TRACE_WRAP_BUFFER, words - 2, true);
      else this.header(at, TRC_TRACE_WRAP_BUFFER, words, false);
      p = (p + gap) % (2 * X);
      at = 0;
    }
    const dv = this.dv;
    let o = t_buf.size + at;
    this.header(at, event, d.length, tsc !== undefined);
    o += 4;
    if (tsc !== undefined) {
      dv.setUint32(o, tsc >>> 0, true);
      dv.setUint32(o + 4, Math.floor(tsc / 2 ** 32) >>> 0, true);
      o += 8;
    }
    for (let i = 0; i < d.length; i++) dv.setUint32(o + 4 * i, d[i]! >>> 0, true);
    return (p + size) % (2 * X);
  }

  private header(at: number, event: number, extra: number, cycles: boolean): void {
    const h =
      ((event & 0x0fffffff) | (extra << TRACE_EXTRA_SHIFT) | (cycles ? TRC_HD_CYCLE_FLAG : 0)) >>>
      0;
    this.dv.setUint32(t_buf.size + at, h, true);
  }
}

export class TraceBuffers {
  /** Xen's tb_init_done: records are being written (mirrored in TCTL_ON for the other threads). */
  on = false;
  private readonly ctlBuf = new SharedArrayBuffer(TCTL_BYTES);
  private readonly ctl = new Int32Array(this.ctlBuf);
  /** Pages per CPU, fixed once the buffers exist. */
  private pages = 0;
  /** The t_info page, and each CPU's buffer. */
  private tinfo: Uint8Array | undefined;
  private bufs: SharedArrayBuffer[] = [];
  private tinfoMfn: Mfn | undefined;
  /** CPU 0's writer: the main thread. */
  private main: TraceRing | undefined;
  /** Which CPUs (1..) are lent to an HVM vCPU thread. */
  private readonly lent = new Set<number>();

  constructor(
    private readonly frames: FrameAllocator,
    private readonly xenPages: XenPages,
    /** System time in ns on the main thread. */
    private readonly now: () => number,
    /** The (domid, vcpu) on the main thread now, for TRC_LOST_RECORDS. */
    private readonly current: () => { domid: number; vcpu: number } | undefined,
    /** Called when recording starts or stops (the hypervisor swaps its hypercall entry). */
    private readonly toggled: (on: boolean) => void = () => {},
  ) {
    this.ctl[TCTL_EVT_MASK] = TRC_ALL;
    this.ctl[TCTL_CPU_MASK] = -1;
  }

  /** Classes to record (XEN_SYSCTL_TBUFOP_set_evt_mask). */
  get evtMask(): number {
    return this.ctl[TCTL_EVT_MASK]! >>> 0;
  }
  set evtMask(m: number) {
    Atomics.store(this.ctl, TCTL_EVT_MASK, m | 0);
  }
  /** CPUs to record on, bit n for CPU n (XEN_SYSCTL_TBUFOP_set_cpu_mask). */
  get cpuMask(): number {
    return this.ctl[TCTL_CPU_MASK]! >>> 0;
  }
  set cpuMask(m: number) {
    Atomics.store(this.ctl, TCTL_CPU_MASK, m | 0);
  }

  /** Records written and dropped on every CPU (the main thread's count; threads count their own). */
  get written(): number {
    return this.main?.written ?? 0;
  }
  get dropped(): number {
    return this.main?.dropped ?? 0;
  }

  /** The t_info page's frame (0 before the buffers exist) and the bytes of t_info, for get_info. */
  info(): { mfn: number; size: number } {
    return this.tinfoMfn ? { mfn: mfn_x(this.tinfoMfn), size: PAGE_SIZE } : { mfn: 0, size: 0 };
  }

  /** XEN_SYSCTL_TBUFOP_set_size: pages per CPU, before the buffers are made. */
  setSize(pages: number): number {
    if (this.tinfo) return -XenErrno.EBUSY;
    if (!Number.isInteger(pages) || pages < 1 || pages > MAX_TBUF_PAGES) return -XenErrno.EINVAL;
    this.pages = pages;
    return 0;
  }

  /** XEN_SYSCTL_TBUFOP_enable: makes the buffers on first use, then records. */
  enable(): number {
    if (!this.tinfo) {
      const rc = this.alloc(this.pages || DEFAULT_TBUF_PAGES);
      if (rc < 0) return rc;
    }
    if (!this.on) {
      this.on = true;
      Atomics.add(this.ctl, TCTL_GEN, 1);
      Atomics.store(this.ctl, TCTL_ON, 1);
      this.toggled(true);
    }
    return 0;
  }

  disable(): void {
    if (!this.on) return;
    this.on = false;
    Atomics.store(this.ctl, TCTL_ON, 0);
    this.toggled(false);
  }

  /**
   * One page of t_info, then every CPU's pages; every frame comes from the
   * heap and is reachable by Dom0 as a page of Xen's (DOMID_XEN).
   */
  private alloc(pages: number): number {
    if (this.frames.freeFrames < TRACE_CPUS * pages + 1) return -XenErrno.ENOMEM;
    const tinfoMfn = this.frames.alloc(DOMID_XEN)!;
    const tinfo = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
    const ti = new DataView(tinfo.buffer);
    // t_info: tbuf_size, mfn_offset[cpu] (in 32-bit words from the start), then the lists.
    ti.setUint16(0, pages, true);
    this.xenPages.set(tinfoMfn, tinfo, true);
    for (let cpu = 0; cpu < TRACE_CPUS; cpu++) {
      const word = T_INFO_FIRST_WORD + cpu * pages;
      ti.setUint16(2 + 2 * cpu, word, true);
      const buf = new SharedArrayBuffer(pages * PAGE_SIZE);
      for (let i = 0; i < pages; i++) {
        const mfn = this.frames.alloc(DOMID_XEN)!;
        ti.setUint32((word + i) * 4, mfn_x(mfn), true);
        this.xenPages.set(mfn, new Uint8Array(buf, i * PAGE_SIZE, PAGE_SIZE), true);
      }
      this.bufs.push(buf);
    }
    this.tinfoMfn = tinfoMfn;
    this.tinfo = tinfo;
    this.pages = pages;
    this.main = new TraceRing(this.cpuOf(0), this.now, this.current);
    return 0;
  }

  private cpuOf(cpu: number): TraceCpu {
    return { cpu, buf: this.bufs[cpu]!, ctl: this.ctlBuf };
  }

  /**
   * Lends a free CPU to an HVM vCPU thread, once the buffers exist; undefined
   * when they do not or every CPU is lent.
   */
  lendCpu(): TraceCpu | undefined {
    if (!this.tinfo) return undefined;
    for (let cpu = 1; cpu < TRACE_CPUS; cpu++)
      if (!this.lent.has(cpu)) {
        this.lent.add(cpu);
        return this.cpuOf(cpu);
      }
    return undefined;
  }

  /** Takes a CPU back, once the thread it was lent to has ended. */
  returnCpu(cpu: number): void {
    this.lent.delete(cpu);
  }

  /**
   * Records `event` on CPU 0 (the main thread) with up to 7 32-bit words of
   * data and the time, unless its class is masked. Callers test `on` first.
   */
  record(event: number, d: readonly number[] = []): void {
    this.main!.record(event, d);
  }
}
