/**
 * The domain list's figures for the web console: what `xl list` and `xl top`
 * (xentop) show for every domain, taken once a second, with the last
 * minutes of each domain's CPU and I/O rates kept for its graphs.
 *
 * A sample is one pass over the domains (Host.list) and the backends'
 * counters (Libxl.backendStats). Only rows that changed since the last
 * sample are handed on: an idle domain's row does not change (its CPU time
 * stands still, and its uptime is sent as a start time the page counts
 * from), so a host of a thousand idle domains sends next to nothing.
 * Creation and destruction are not waited for: the hypervisor's `created`
 * and `destroyed` events take a sample at once.
 */
import type { Host } from "../host/host.js";
import type { Libxl } from "../libxl/domain.js";
import type { HypervisorEvents } from "../../xen/common/hypervisor.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import type { DomainRow, History } from "./protocol.js";

export type { DomainRow, History } from "./protocol.js";

type IoColumns = Pick<
  DomainRow,
  "nets" | "netTxB" | "netRxB" | "vbds" | "vbdRd" | "vbdWr" | "vbdRsect" | "vbdWsect"
>;
const noIo = (): IoColumns => ({
  nets: 0,
  netTxB: 0,
  netRxB: 0,
  vbds: 0,
  vbdRd: 0,
  vbdWr: 0,
  vbdRsect: 0,
  vbdWsect: 0,
});

/** Samples kept per domain for its graphs: five minutes at one a second. */
export const HISTORY = 300;

class Ring {
  readonly t = new Float64Array(HISTORY);
  readonly cpu = new Float32Array(HISTORY);
  readonly vbd = new Float32Array(HISTORY);
  readonly net = new Float32Array(HISTORY);
  n = 0;

  push(t: number, cpu: number, vbd: number, net: number): void {
    const i = this.n++ % HISTORY;
    this.t[i] = t;
    this.cpu[i] = cpu;
    this.vbd[i] = vbd;
    this.net[i] = net;
  }

  /** The newest sample, if any. */
  last(): { at: number; cpu: number; vbd: number; net: number } | undefined {
    if (this.n === 0) return undefined;
    const i = (this.n - 1) % HISTORY;
    return {
      at: this.t[i]!,
      cpu: Math.round(this.cpu[i]! * 10) / 10,
      vbd: this.vbd[i]!,
      net: this.net[i]!,
    };
  }

  read(): History {
    const out: History = { t: [], cpu: [], vbd: [], net: [] };
    const from = Math.max(0, this.n - HISTORY);
    for (let k = from; k < this.n; k++) {
      const i = k % HISTORY;
      out.t.push(this.t[i]!);
      out.cpu.push(Math.round(this.cpu[i]! * 10) / 10);
      out.vbd.push(this.vbd[i]!);
      out.net.push(this.net[i]!);
    }
    return out;
  }
}

interface Tracked {
  row: DomainRow;
  /** The row as last handed on, to tell whether it changed. */
  key: string;
  ring: Ring;
  cpuAt: number;
}

export interface FigureListener {
  /** Rows that changed (or are new), and domains that are gone. */
  rows(changed: DomainRow[], gone: number[]): void;
}

export class DomainFigures {
  private readonly tracked = new Map<number, Tracked>();
  private readonly listeners = new Set<FigureListener>();
  private timer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Immediate | undefined;
  private lastAt = performance.now();
  private readonly events: HypervisorEvents = {
    created: () => this.sampleSoon(),
    shutdown: () => this.sampleSoon(),
    destroyed: () => this.sampleSoon(),
  };
  /** Time spent sampling, ms (the web benchmark reads it). */
  sampleMs = 0;

  constructor(
    private readonly host: Host,
    private readonly libxl: Libxl | undefined,
    readonly intervalMs = 1000,
  ) {
    host.hv.listeners.add(this.events);
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  listen(l: FigureListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Every row now (what a page gets when it connects). */
  rows(): DomainRow[] {
    return [...this.tracked.values()].map((t) => t.row);
  }

  history(domid: number): History | undefined {
    return this.tracked.get(domid)?.ring.read();
  }

  /** The domain's newest sample (what a page's graph adds each second). */
  latest(domid: number): ReturnType<Ring["last"]> {
    return this.tracked.get(domid)?.ring.last();
  }

  /** Samples at the next turn of the event loop (after an action, a creation, a death). */
  sampleSoon(): void {
    this.soon ??= setImmediate(() => {
      this.soon = undefined;
      this.sample(false);
    });
  }

  /**
   * One pass over the domains. `tick` is the once-a-second sample, which
   * adds to the graphs and computes the rates; an extra one (sampleSoon)
   * only brings the rows up to date.
   */
  sample(tick = true): void {
    const t0 = performance.now();
    const now = Date.now();
    const dt = (t0 - this.lastAt) / 1000;
    if (tick) this.lastAt = t0;
    // The backends' counters, summed per domain as the row's I/O columns.
    const io = new Map<number, IoColumns>();
    for (const s of this.libxl?.backendStats() ?? []) {
      let x = io.get(s.domid);
      if (!x) io.set(s.domid, (x = noIo()));
      if (s.kind === "vbd") {
        x.vbds++;
        x.vbdRd += s.rd;
        x.vbdWr += s.wr;
        x.vbdRsect += s.rsect;
        x.vbdWsect += s.wsect;
      } else {
        x.nets++;
        x.netTxB += s.txBytes;
        x.netRxB += s.rxBytes;
      }
    }
    const changed: DomainRow[] = [];
    const seen = new Set<number>();
    const hv = this.host.hv;
    for (const info of this.host.list()) {
      seen.add(info.domid);
      const d = hv.domainById(info.domid);
      let tr = this.tracked.get(info.domid);
      const x = io.get(info.domid);
      const prev = tr?.row;
      const row: DomainRow = {
        domid: info.domid,
        name: info.name,
        type: info.domid === 0 ? "dom0" : d?.hvm ? "hvm" : "pv",
        state: info.stateFlags,
        cpuS: Math.round(info.cpuTime * 10) / 10,
        cpuPct: prev?.cpuPct ?? 0,
        memKiB: d ? (d.totPages * PAGE_SIZE) / 1024 : info.memMiB * 1024,
        maxMemKiB: d ? (d.maxPages * PAGE_SIZE) / 1024 : info.maxMemMiB * 1024,
        vcpus: info.vcpus,
        startMs: prev?.startMs ?? this.startTime(info.domid, now),
        ...(x ?? noIo()),
        ...(info.shutdownReason ? { reason: info.crashMessage ?? info.shutdownReason } : {}),
      };
      if (!tr) {
        tr = { row, key: "", ring: new Ring(), cpuAt: info.cpuTime };
        this.tracked.set(info.domid, tr);
      }
      if (tick && dt > 0) {
        row.cpuPct = Math.round(((info.cpuTime - tr.cpuAt) / dt) * 1000) / 10;
        tr.cpuAt = info.cpuTime;
        const vbdRate = prev
          ? (row.vbdRsect + row.vbdWsect - prev.vbdRsect - prev.vbdWsect) / dt
          : 0;
        const netRate = prev ? (row.netTxB + row.netRxB - prev.netTxB - prev.netRxB) / dt : 0;
        tr.ring.push(now, row.cpuPct, Math.max(0, vbdRate), Math.max(0, netRate));
      }
      tr.row = row;
      // The CPU time moves a little with every slice; the row changes when it shows.
      const key = JSON.stringify(row);
      if (key !== tr.key) {
        tr.key = key;
        changed.push(row);
      }
    }
    const gone: number[] = [];
    for (const domid of this.tracked.keys()) {
      if (!seen.has(domid)) {
        this.tracked.delete(domid);
        gone.push(domid);
      }
    }
    this.sampleMs += performance.now() - t0;
    if (changed.length === 0 && gone.length === 0) return;
    for (const l of this.listeners) l.rows(changed, gone);
  }

  /** When the domain started: libxl's /vm/<uuid>/start_time (seconds), else now. */
  private startTime(domid: number, now: number): number {
    if (domid === 0) return now - process.uptime() * 1000;
    const xs = this.host.xenstored;
    const vm = xs.readText(`/local/domain/${domid}/vm`);
    const t = vm ? Number(xs.readText(`${vm}/start_time`)) : NaN;
    return Number.isFinite(t) ? Math.round(t * 1000) : now;
  }

  dispose(): void {
    clearInterval(this.timer);
    if (this.soon) clearImmediate(this.soon);
    this.host.hv.listeners.delete(this.events);
    this.listeners.clear();
  }
}
