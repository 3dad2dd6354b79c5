/**
 * Trace buffers (Xen's `common/trace.c`): per-CPU rings of `t_rec` records
 * in pages of the hypervisor's own, which Dom0's xentrace maps (the
 * `t_info` page lists their frames) and drains, moving `t_buf.cons` up to
 * `t_buf.prod`. Controlled with XEN_SYSCTL_tbuf_op: size, event and CPU
 * masks, enable, disable. tsxen runs guests on one physical CPU (the main
 * thread), so there is one buffer.
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
import { NOW } from "./time.js";
import { DOMID_XEN } from "../include/public/xen.js";
import type { FrameAllocator } from "./page_alloc.js";
import type { XenPages } from "./ioreq.js";

/** Pages per CPU when the size was never set (xentrace's own default is 32 too). */
export const DEFAULT_TBUF_PAGES = 32;
/**
 * Most pages per CPU (4 MiB): t_info is one page, whose 32-bit words after
 * the header list the buffer's frames; this also bounds the host's memory.
 */
export const MAX_TBUF_PAGES = PAGE_SIZE / 4 - 1;

export class TraceBuffers {
  /** Xen's tb_init_done: records are being written. */
  on = false;
  /** Classes to record (XEN_SYSCTL_TBUFOP_set_evt_mask). */
  evtMask = TRC_ALL;
  /** CPUs to record on (bit 0: the only one). */
  cpuMask = 1;
  /** Pages per CPU, fixed once the buffers exist. */
  private pages = 0;
  /** The t_info page and the buffer, and their frames. */
  private tinfo: Uint8Array | undefined;
  private buf: Uint8Array | undefined;
  private dv: DataView | undefined;
  private mfns: Mfn[] = [];
  /** Bytes of record data in the buffer (after the t_buf header). */
  private size = 0;
  private lost = 0;
  private lostFirstTsc = 0;
  private lastTsc = 0;
  /** Records written and dropped since the buffers were made (for the tests and xl info). */
  written = 0;
  dropped = 0;

  constructor(
    private readonly frames: FrameAllocator,
    private readonly xenPages: XenPages,
    /** The (domid, vcpu) on the CPU now, for TRC_LOST_RECORDS. */
    private readonly current: () => { domid: number; vcpu: number } | undefined,
    /** Called when recording starts or stops (the hypervisor swaps its hypercall entry). */
    private readonly toggled: (on: boolean) => void = () => {},
  ) {}

  /** The t_info page's frame (0 before the buffers exist) and the bytes of t_info, for get_info. */
  info(): { mfn: number; size: number } {
    return this.tinfo ? { mfn: mfn_x(this.mfns[0]!), size: PAGE_SIZE } : { mfn: 0, size: 0 };
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
      this.toggled(true);
    }
    return 0;
  }

  disable(): void {
    if (!this.on) return;
    this.on = false;
    this.toggled(false);
  }

  /**
   * One page of t_info, then the buffer's pages; every frame comes from the
   * heap and is reachable by Dom0 as a page of Xen's (DOMID_XEN).
   */
  private alloc(pages: number): number {
    if (this.frames.freeFrames < pages + 1) return -XenErrno.ENOMEM;
    const mfns: Mfn[] = [];
    for (let i = 0; i <= pages; i++) mfns.push(this.frames.alloc(DOMID_XEN)!);
    const tinfo = new Uint8Array(new SharedArrayBuffer(PAGE_SIZE));
    const buf = new Uint8Array(new SharedArrayBuffer(pages * PAGE_SIZE));
    const ti = new DataView(tinfo.buffer);
    // t_info: tbuf_size, mfn_offset[0] (in 32-bit words from the start), then the list.
    const listWord = 1;
    ti.setUint16(0, pages, true);
    ti.setUint16(2, listWord, true);
    for (let i = 0; i < pages; i++) ti.setUint32((listWord + i) * 4, mfn_x(mfns[i + 1]!), true);
    this.xenPages.set(mfns[0]!, tinfo, true);
    for (let i = 0; i < pages; i++)
      this.xenPages.set(mfns[i + 1]!, buf.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), true);
    this.mfns = mfns;
    this.tinfo = tinfo;
    this.buf = buf;
    this.dv = new DataView(buf.buffer);
    this.size = pages * PAGE_SIZE - t_buf.size;
    this.pages = pages;
    return 0;
  }

  /**
   * Records `event` with up to 7 32-bit words of data and the time, unless
   * its class is masked. Callers test `on` first.
   */
  record(event: number, d: readonly number[] = []): void {
    if ((event & this.evtMask & TRC_ALL) === 0 || (this.cpuMask & 1) === 0) return;
    const dv = this.dv!;
    // Time stamps strictly increase on a CPU, as a TSC does (xenalyze checks).
    const now = Math.max(NOW(), this.lastTsc + 1);
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
    const recSize = 12 + 4 * n;
    const lostSize = this.lost > 0 ? 12 + 16 : 0;
    // Room for a wrap record at most as large as this record, the lost record and this one.
    if (used + recSize * 2 + lostSize > X) {
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
    p = this.put(p, event, now + (lostSize > 0 ? 1 : 0), d.length > n ? d.slice(0, n) : d);
    if (lostSize > 0) this.lastTsc = now + 1;
    dv.setUint32(t_buf.fields.prod.offset, p, true);
    this.written++;
  }

  /** Writes one record at offset `p` (wrapping first if it would cross the end); the next offset. */
  private put(p: number, event: number, tsc: number, d: readonly number[]): number {
    const X = this.size;
    const size = 12 + 4 * d.length;
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
    const dv = this.dv!;
    const o = t_buf.size + at;
    this.header(at, event, d.length, true);
    dv.setUint32(o + 4, tsc >>> 0, true);
    dv.setUint32(o + 8, Math.floor(tsc / 2 ** 32) >>> 0, true);
    for (let i = 0; i < d.length; i++) dv.setUint32(o + 12 + 4 * i, d[i]! >>> 0, true);
    return (p + size) % (2 * X);
  }

  private header(at: number, event: number, extra: number, cycles: boolean): void {
    const h =
      ((event & 0x0fffffff) | (extra << TRACE_EXTRA_SHIFT) | (cycles ? TRC_HD_CYCLE_FLAG : 0)) >>>
      0;
    this.dv!.setUint32(t_buf.size + at, h, true);
  }
}
