/**
 * xenstored, side by side in one run with Xen's own C xenstored (run without
 * a hypervisor by ../shared/peers/cxenstored) and with a bare Node.js echo
 * server on a unix socket (the floor: a reply costs at least that). Each
 * daemon runs in its own process. Round trips are measured by C clients, the
 * same against each daemon: the peer's xs_lat (sequential XS_READ of /a) for
 * READ and bench/c/xs_write_lat.c for WRITE.
 *
 * Where Xen's C daemon cannot run (no gcc, no xen-utils, no shared/peers),
 * its rows say so instead of a figure.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "../extras/mini-os/paths.js";
import { XsClient } from "../tools/xenstore/client.js";
import { Xenstored } from "../tools/xenstored/xenstored.js";
import * as W from "../xen/include/public/io/xs_wire.js";
import { fmt, median, type Row, reportRow } from "./common.js";

const exec = promisify(execFile);
const PEER = join(ROOT, "..", "shared", "peers", "cxenstored");

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 500 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 10));
  if (!existsSync(path)) throw new Error(`bench: ${path} never appeared`);
}

/** Median READ round trip in µs by xs_lat, with `idle` other connections open. */
async function xsLat(bin: string, socket: string, n: number, idle: number): Promise<number> {
  const { stdout } = await exec(bin, [socket, String(n), String(idle)]);
  const m = /median=([\d.]+)us/.exec(stdout);
  if (!m) throw new Error(`xs_lat printed: ${stdout}`);
  return Number(m[1]);
}

/** Median round trip in µs printed by one of our C clients. */
async function cLat(bin: string, socket: string, n: number): Promise<number> {
  const { stdout } = await exec(bin, [socket, String(n)]);
  const m = /median=([\d.]+)us/.exec(stdout);
  if (!m) throw new Error(`${bin} printed: ${stdout}`);
  return Number(m[1]);
}

/** Median WRITE round trip in µs from one Node client (when there is no C compiler). */
async function writeLat(socket: string, n: number): Promise<number> {
  const c = await XsClient.open(socket);
  try {
    const t: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await c.write("/bench/w", String(i));
      t.push((performance.now() - t0) * 1000);
    }
    return median(t);
  } finally {
    c.close();
  }
}

/** Reads per second with `n` requests in flight on one connection. */
async function pipelined(socket: string, n: number): Promise<number> {
  const c = await XsClient.open(socket);
  try {
    await c.write("/a", "x");
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, () => c.read("/a")));
    return n / ((performance.now() - t0) / 1000);
  } finally {
    c.close();
  }
}

/** Commits per second of 8 clients writing disjoint subtrees in transactions, and their EAGAINs. */
async function commits(socket: string, each: number): Promise<{ rate: number; eagain: number }> {
  const clients = await Promise.all(Array.from({ length: 8 }, () => XsClient.open(socket)));
  let eagain = 0;
  try {
    await Promise.all(clients.map((c, i) => c.write(`/tx/c${i}/k`, "0")));
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c, i) => {
        for (let k = 0; k < each; k++) {
          const tx = await c.transactionStart();
          await c.write(`/tx/c${i}/k`, String(k), tx);
          if (!(await c.transactionEnd(tx))) eagain++;
        }
      }),
    );
    return { rate: (8 * each) / ((performance.now() - t0) / 1000), eagain };
  } finally {
    for (const c of clients) c.close();
  }
}

/** Heap per domain and DIRECTORY time for a tree of `n` domains' nodes, in process. */
function bigTree(n: number): { bytesPerDomain: number; dirUs: number; nodes: number } {
  globalThis.gc?.();
  const before = process.memoryUsage().heapUsed;
  const d = new Xenstored();
  const dom0 = { domid: 0, privileged: true, target: undefined };
  const v = (s: string): Uint8Array => new TextEncoder().encode(s);
  for (let i = 1; i <= n; i++) {
    const h = `/local/domain/${i}`;
    d.write(d.store, dom0, `${h}/name`, v(`guest${i}`));
    d.write(d.store, dom0, `${h}/domid`, v(String(i)));
    d.write(d.store, dom0, `${h}/memory/target`, v("262144"));
    d.write(d.store, dom0, `${h}/control/shutdown`, v(""));
    d.write(d.store, dom0, `${h}/device/vif/0/state`, v("4"));
    d.write(d.store, dom0, `${h}/device/vif/0/backend`, v(`/local/domain/0/backend/vif/${i}/0`));
  }
  globalThis.gc?.();
  const bytes = process.memoryUsage().heapUsed - before;
  const c = d.connect(0, true, () => {}, "bench");
  const t: number[] = [];
  for (let k = 0; k < 20; k++) {
    const t0 = performance.now();
    d.handle(c, {
      type: W.XS_DIRECTORY_PART,
      reqId: 1,
      txId: 0,
      payload: W.joinNul(["/local/domain", "0"]),
    });
    t.push((performance.now() - t0) * 1000);
  }
  return { bytesPerDomain: bytes / n, dirUs: median(t), nodes: d.store.size };
}

export async function run(quick: boolean): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-xsbench-"));
  const procs: ChildProcess[] = [];
  let cPid: number | undefined;
  const n = quick ? 300 : 20_000;
  const idle = quick ? 16 : 512;
  try {
    const xsLatBin = join(dir, "xs_lat");
    let cSocket: string | undefined;
    let haveC = false;
    try {
      await exec("gcc", ["-O2", "-o", xsLatBin, join(PEER, "xs_lat.c")]);
      haveC = existsSync("/usr/lib/xen-4.17/bin/xenstored");
    } catch {
      haveC = false;
    }
    const ours = join(dir, "ours");
    procs.push(
      spawn(
        process.execPath,
        [join(ROOT, "dist", "tools", "xenstored", "main.js"), "--socket", ours],
        { stdio: "ignore" },
      ),
    );
    const echo = join(dir, "echo");
    procs.push(
      spawn(
        process.execPath,
        ["-e", `require("net").createServer((s) => s.pipe(s)).listen(${JSON.stringify(echo)})`],
        { stdio: "ignore" },
      ),
    );
    await waitFor(ours);
    await waitFor(echo);
    if (haveC) {
      try {
        await exec("sh", [join(PEER, "run.sh"), join(dir, "c")], {
          env: { ...process.env, CXS_BACKGROUND: "1" },
        });
        cSocket = join(dir, "c", "socket");
        cPid = Number(readFileSync(join(dir, "c", "xenstored.pid"), "utf8"));
      } catch {
        haveC = false;
      }
    }
    for (const s of [ours, cSocket]) {
      if (!s) continue;
      const c = await XsClient.open(s);
      await c.write("/a", "x");
      c.close();
    }
    const rows: Row[] = [];
    if (!existsSync(xsLatBin)) {
      rows.push({
        name: "xenstored READ round trip",
        measured: "n/a (no gcc for xs_lat)",
        baseline: "",
        ratio: NaN,
        target: "",
        met: true,
      });
    } else {
      // Alternating runs, medians of them: one run swings ±15% on 2 cores.
      const o: number[] = [];
      const e: number[] = [];
      const cr: number[] = [];
      for (let rep = 0; rep < (quick ? 1 : 3); rep++) {
        o.push(await xsLat(xsLatBin, ours, n, 0));
        e.push(await xsLat(xsLatBin, echo, n, 0));
        if (cSocket) cr.push(await xsLat(xsLatBin, cSocket, n, 0));
      }
      const oursRead = median(o);
      const echoRead = median(e);
      const cRead = cSocket ? median(cr) : NaN;
      const oursIdle = await xsLat(xsLatBin, ours, n, idle);
      const cIdle = cSocket ? await xsLat(xsLatBin, cSocket, n, idle) : NaN;
      rows.push(
        {
          name: "xenstored READ round trip vs Xen's C xenstored (median)",
          measured: fmt(oursRead, "µs", 1),
          baseline: cSocket ? fmt(cRead, "µs", 1) : "n/a",
          ratio: oursRead / cRead,
          target: "≤ 1.0×",
          met: !cSocket || oursRead / cRead <= 1.0,
        },
        {
          name: "xenstored READ round trip vs Node echo floor",
          measured: fmt(oursRead, "µs", 1),
          baseline: fmt(echoRead, "µs", 1),
          ratio: oursRead / echoRead,
          target: "≤ 1.15×",
          met: oursRead / echoRead <= 1.15,
        },
        {
          name: `READ with ${idle} idle connections vs without (ours)`,
          measured: fmt(oursIdle, "µs", 1),
          baseline: fmt(oursRead, "µs", 1),
          ratio: oursIdle / oursRead,
          target: "≤ 1.2×",
          met: oursIdle / oursRead <= 1.2,
        },
        {
          name: `READ with ${idle} idle connections, Xen's C xenstored`,
          measured: cSocket ? fmt(cIdle, "µs", 1) : "n/a",
          baseline: cSocket ? fmt(cRead, "µs", 1) : "",
          ratio: cIdle / cRead,
          target: "(report)",
          met: true,
        },
      );
    }
    // WRITE by a C client of ours (bench/c/xs_write_lat.c), the same against both.
    const writeBin = join(dir, "xs_write_lat");
    let wOurs: number;
    let wC = NaN;
    try {
      await exec("gcc", ["-O2", "-o", writeBin, join(ROOT, "bench", "c", "xs_write_lat.c")]);
      const wo: number[] = [];
      const wc: number[] = [];
      for (let rep = 0; rep < (quick ? 1 : 3); rep++) {
        wo.push(await cLat(writeBin, ours, n));
        if (cSocket) wc.push(await cLat(writeBin, cSocket, n));
      }
      wOurs = median(wo);
      if (cSocket) wC = median(wc);
    } catch {
      wOurs = await writeLat(ours, Math.min(n, 5000));
      if (cSocket) wC = await writeLat(cSocket, Math.min(n, 5000));
    }
    rows.push({
      name: "xenstored WRITE round trip vs Xen's C xenstored (median)",
      measured: fmt(wOurs, "µs", 1),
      baseline: cSocket ? fmt(wC, "µs", 1) : "n/a",
      ratio: wOurs / wC,
      target: "≤ 1.0×",
      met: !cSocket || wOurs / wC <= 1.0,
    });
    const pipe = await pipelined(ours, quick ? 2000 : 100_000);
    rows.push({
      name: "pipelined READs on one connection (ops/s)",
      measured: fmt(pipe, "/s", 0),
      baseline: fmt(100_000, "/s", 0),
      ratio: pipe / 100_000,
      target: "≥ 100,000/s",
      met: pipe >= 100_000,
    });
    const tx = await commits(ours, quick ? 20 : 1000);
    rows.push({
      name: "transaction commits/s, 8 clients, disjoint subtrees (EAGAINs)",
      measured: `${tx.rate.toFixed(0)} /s (${tx.eagain})`,
      baseline: "",
      ratio: NaN,
      target: "no EAGAIN",
      met: tx.eagain === 0,
    });
    const big = bigTree(quick ? 500 : 10_000);
    rows.push(
      reportRow(
        `tree of ${quick ? 500 : 10_000} domains (${big.nodes} nodes): heap per domain, DIRECTORY`,
        `${(big.bytesPerDomain / 1024).toFixed(1)} KiB`,
        fmt(big.dirUs, "µs", 0),
      ),
    );
    return rows;
  } finally {
    for (const p of procs) p.kill();
    if (cPid) {
      try {
        process.kill(cPid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
