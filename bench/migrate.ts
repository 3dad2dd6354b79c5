/**
 * Live migration of a 64 MiB PV guest between two hosts in one process
 * (tools/libxl/migrate.ts's channelPair standing in for ssh): the downtime
 * (from the domain's stop on the source to its unpause on the destination,
 * as the sender sees the report) and the whole migration, for an idle guest
 * (the ticker) and for one that dirties all its memory all the time (the
 * dirtier). The same-run baseline is Node copying the guest's memory once:
 * the least a stop-and-copy of the whole guest costs. Medians of the runs.
 * And what a log-dirty round costs the host (a CLEAN of the whole guest,
 * compared with its copy) against Node comparing the same bytes: a guest
 * pays nothing while it runs, the round is a memcmp.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../extras/mini-os/build.js";
import { Host } from "../tools/host/host.js";
import { parseCfg } from "../tools/libxlu/cfg.js";
import { domainConfig, type XlDomainConfig } from "../tools/libxl/config.js";
import { Libxl } from "../tools/libxl/domain.js";
import { channelPair } from "../tools/libxl/migrate.js";
import { LIVE_MAX_ITERS, LIVE_MIN_REMAINING } from "../tools/libxc/xc_sr.js";
import { fmt, median, type Row } from "./common.js";
import {
  XEN_DOMCTL_SHADOW_OP_CLEAN,
  XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY,
  XEN_DOMCTL_SHADOW_OP_OFF,
} from "../xen/include/public/domctl.js";

export async function run(quick: boolean): Promise<Row[]> {
  const memory = quick ? 8 : 64;
  const reps = quick ? 1 : 5;
  const hosts = [0, 1].map(() => new Host({ memoryBytes: 1024 ** 3 }));
  try {
    const [xa, xb] = hosts.map((h) => new Libxl(h)) as [Libxl, Libxl];
    const ex = join(ROOT, "extras", "mini-os", "examples");
    const file = join(ex, "ticker.cfg");
    const base = domainConfig(parseCfg(readFileSync(file, "utf8"), file), file, ex).config;
    const cfg = (name: string, kernel: string): XlDomainConfig => ({
      ...base,
      name,
      kernel: join(ROOT, "build", "mini-os", `${kernel}.wasm`),
      memory,
      maxmem: memory,
    });
    const rows: Row[] = [];
    // Node copying the guest's memory once, best of the runs.
    const mem = Buffer.alloc(memory * 1024 * 1024, 1);
    const copies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      Buffer.from(mem);
      copies.push(performance.now() - t);
    }
    const copyMs = Math.min(...copies);

    // A log-dirty round of an idle guest (nothing dirty: the whole comparison).
    const idle = await xa.create(cfg("logdirty", "ticker"));
    const bits = new Uint8Array((memory * 256) / 8);
    await xa.xc.shadowControl(idle.domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    const rounds: number[] = [];
    const compares: number[] = [];
    const other = Buffer.from(mem);
    for (let i = 0; i < reps * 2; i++) {
      let t = performance.now();
      await xa.xc.shadowControl(idle.domid, XEN_DOMCTL_SHADOW_OP_CLEAN, bits);
      rounds.push(performance.now() - t);
      t = performance.now();
      Buffer.compare(mem, other);
      compares.push(performance.now() - t);
    }
    await xa.xc.shadowControl(idle.domid, XEN_DOMCTL_SHADOW_OP_OFF);
    xa.destroy(idle.domid);
    rows.push({
      name: `a log-dirty round (CLEAN) of a ${memory} MiB guest vs Node comparing its bytes`,
      measured: fmt(median(rounds), "ms", 2),
      baseline: fmt(median(compares), "ms", 2),
      ratio: median(rounds) / median(compares),
      target: "(report: the host's cost of a round; the guest's is nothing)",
      met: true,
    });
    for (const kind of ["ticker", "dirtier"]) {
      const down: number[] = [];
      const total: number[] = [];
      let rounds: number[] = [];
      let [from, to] = [xa, xb];
      let d = await from.create(cfg(kind, kind));
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 0; i < reps; i++) {
        const [cs, cr] = channelPair();
        const t = performance.now();
        const [sent, domid] = await Promise.all([
          from
            .migrateSend(d.domid, cs, {
              debug: false,
              maxIters: LIVE_MAX_ITERS,
              minRemaining: LIVE_MIN_REMAINING,
            })
            .finally(() => cs.end()),
          to.migrateReceive(cr, { paused: false, debug: false }).finally(() => cr.end()),
        ]);
        total.push(performance.now() - t);
        down.push(sent.downtimeMs);
        rounds = sent.stats.rounds;
        [from, to] = [to, from];
        d = from.host.hv.domainById(domid)!;
        await new Promise((r) => setTimeout(r, 100));
      }
      from.destroy(d.domid);
      const what = kind === "ticker" ? "an idle" : "an all-dirtying";
      rows.push(
        {
          name: `migrate ${what} ${memory} MiB guest: downtime vs Node copying its memory`,
          measured: fmt(median(down), "ms", 1),
          baseline: fmt(copyMs, "ms", 1),
          ratio: median(down) / copyMs,
          target: `(report: pages per round ${rounds.join(", ")})`,
          met: true,
        },
        {
          name: `migrate ${what} ${memory} MiB guest: whole migration vs Node copying its memory`,
          measured: fmt(median(total), "ms", 1),
          baseline: fmt(copyMs, "ms", 1),
          ratio: median(total) / copyMs,
          target: "(report)",
          met: true,
        },
      );
    }
    return rows;
  } finally {
    for (const h of hosts) await h.shutdown();
  }
}
