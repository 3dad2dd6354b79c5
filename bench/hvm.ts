/**
 * HVM guests against Node's own node:wasi running the same binaries, in the
 * same process (test/wasi_peer.ts):
 * - CPU-bound: extras/hvm/wasibench's CPU mix and a SQLite query, each timed
 *   by the program itself. Target: tsxen ≤ 1.3× node:wasi.
 * - One trapped WASI call's round trip: fd_write of one byte to a file in a
 *   share (the measure), and fd_fdstat_get (no host I/O: the crossing
 *   alone). Target: ≤ 2 µs for the write.
 * - 1 MiB sequential writes and reads through a share. Target ≥ 0.7× node:wasi.
 * - Boot of yosys (31 MB) to its exit (`yosys -V`): cold (nothing cached:
 *   checked, instrumented and compiled), from the disk cache (as a new host
 *   process finds it) and warm (loaded before), against node:wasi's
 *   compile-and-start of the same file. Target: warm ≤ 1.2×.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HVM_DIR } from "../extras/hvm/build.js";
import { Host } from "../tools/host/host.js";
import { forgetLoadedHvmImages, loadHvmImageFile } from "../xen/arch/wasm32/hvm_image.js";
import { YOSYS_WASM, runNodeWasi } from "../test/wasi_peer.js";
import { fmt, median, reportRow, type Row } from "./common.js";

const WASIBENCH = join(HVM_DIR, "wasibench.wasm");
const SQLITE = join(HVM_DIR, "sqlite3.wasm");

/** Runs `wasm` as an HVM guest with /data shared; its serial output and wall time (ms). */
async function tsxen(
  host: Host,
  wasm: string,
  args: string[],
  data: string,
  memory = 256,
): Promise<{ out: string; ms: number }> {
  const image = await loadHvmImageFile(wasm);
  const t = performance.now();
  const d = await host.createHvm({
    name: `bench-${Math.random().toString(36).slice(2, 8)}`,
    image,
    memory,
    args,
    env: [],
    shares: [{ guestPath: "/data", path: data, readonly: false }],
    disks: [],
    xenstore: true,
  });
  let out = "";
  host.xenconsoled.attach(
    d.domid,
    { output: (b) => (out += Buffer.from(b).toString()), closed: () => {} },
    true,
    "serial",
  );
  await host.waitShutdown(d.domid, 600_000);
  const ms = performance.now() - t;
  // The last output comes from the device model's thread; give it a moment.
  for (let i = 0; i < 100 && !/result: |Run Time|\d/.test(out.slice(-200)); i++)
    await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 20));
  host.destroy(d.domid);
  return { out, ms };
}

async function node(
  wasm: string,
  args: string[],
  data: string,
): Promise<{ out: string; ms: number; compileMs: number }> {
  const f = join(data, `node-out-${Math.random().toString(36).slice(2, 8)}.txt`);
  const t = performance.now();
  const r = await runNodeWasi(wasm, args, { "/data": data }, f);
  const ms = performance.now() - t;
  const out = readFileSync(f, "utf8");
  rmSync(f);
  return { out, ms, compileMs: r.compileMs };
}

const result = (out: string, name: string): number => {
  const m = new RegExp(`result: ${name} ([\\d.]+)`).exec(out);
  if (!m) throw new Error(`no '${name}' result in: ${out.slice(-300)}`);
  return Number(m[1]);
};

/** SQLite's own timer ("Run Time: real X"), seconds → ms. */
const sqliteMs = (out: string): number => {
  const m = /Run Time: real ([\d.]+)/.exec(out);
  if (!m) throw new Error(`no SQLite timing in: ${out.slice(-300)}`);
  return Number(m[1]) * 1000;
};

export async function run(quick: boolean): Promise<Row[]> {
  const data = mkdtempSync(join(tmpdir(), "tsxen-bench-hvm-"));
  // A cache of its own, empty: the cold boot must find nothing prepared.
  process.env.TSXEN_CACHE_DIR = join(data, "cache");
  const host = new Host({ memoryBytes: 4 * 1024 ** 3, dom0MemoryBytes: 256 * 1024 ** 2 });
  const rows: Row[] = [];
  const reps = quick ? 1 : 5;
  try {
    // --- boot of yosys, cold then warm ---
    const nodeBoot: number[] = [];
    const coldT = performance.now();
    const cold = await tsxen(host, YOSYS_WASM, ["yosys", "-V"], data, 256);
    const coldMs = performance.now() - coldT;
    if (!/Yosys/.test(cold.out)) throw new Error(`yosys -V printed ${cold.out}`);
    const warm: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t = performance.now();
      await tsxen(host, YOSYS_WASM, ["yosys", "-V"], data, 256);
      warm.push(performance.now() - t);
      nodeBoot.push((await node(YOSYS_WASM, ["yosys", "-V"], data)).ms);
    }
    const nb = median(nodeBoot);
    const wb = median(warm);
    rows.push({
      name: "HVM boot of yosys (31 MB), warm: tsxen vs node:wasi compile-and-start",
      measured: fmt(wb, "ms", 0),
      baseline: fmt(nb, "ms", 0),
      ratio: wb / nb,
      target: "≤ 1.2×",
      met: wb / nb <= 1.2,
    });
    rows.push(
      reportRow(
        "HVM boot of yosys, cold (check, loop checks, compile)",
        fmt(coldMs, "ms", 0),
        fmt(nb, "ms", 0),
      ),
    );
    // A new host process: nothing loaded, the prepared program on disk.
    forgetLoadedHvmImages();
    const diskT = performance.now();
    await tsxen(host, YOSYS_WASM, ["yosys", "-V"], data, 256);
    rows.push(
      reportRow(
        "HVM boot of yosys, from the disk cache (a new host process)",
        fmt(performance.now() - diskT, "ms", 0),
        fmt(nb, "ms", 0),
      ),
    );

    // --- CPU-bound ---
    const rounds = quick ? "1" : "12";
    const cpuT: number[] = [];
    const cpuN: number[] = [];
    for (let i = 0; i < reps; i++) {
      cpuT.push(
        result((await tsxen(host, WASIBENCH, ["wasibench", "cpu", rounds], data)).out, "cpu"),
      );
      cpuN.push(result((await node(WASIBENCH, ["wasibench", "cpu", rounds], data)).out, "cpu"));
    }
    const [ct, cn] = [median(cpuT), median(cpuN)];
    rows.push({
      name: "HVM CPU-bound (wasibench cpu): tsxen vs node:wasi",
      measured: fmt(ct, "ms", 0),
      baseline: fmt(cn, "ms", 0),
      ratio: ct / cn,
      target: "≤ 1.3×",
      met: ct / cn <= 1.3,
    });
    const rowsN = quick ? 20_000 : 2_000_000;
    // The query in an init file, so that the shell's own timer reports it.
    writeFileSync(
      join(data, "q.sql"),
      `.timer on\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<${rowsN}) SELECT count(*), sum(x % 7), max(length(printf('%x', x))) FROM c;\n`,
    );
    const sqlArgs = ["sqlite3", "-init", "/data/q.sql", ":memory:", ".quit"];
    const sqT: number[] = [];
    const sqN: number[] = [];
    for (let i = 0; i < reps; i++) {
      sqT.push(sqliteMs((await tsxen(host, SQLITE, sqlArgs, data)).out));
      sqN.push(sqliteMs((await node(SQLITE, sqlArgs, data)).out));
    }
    const [st, sn] = [median(sqT), median(sqN)];
    rows.push({
      name: "HVM CPU-bound (SQLite query): tsxen vs node:wasi",
      measured: fmt(st, "ms", 0),
      baseline: fmt(sn, "ms", 0),
      ratio: st / sn,
      target: "≤ 1.3×",
      met: st / sn <= 1.3,
    });

    // --- one trapped call ---
    const calls = quick ? "2000" : "200000";
    const w1T: number[] = [];
    const w1N: number[] = [];
    const nopT: number[] = [];
    const nopN: number[] = [];
    for (let i = 0; i < reps; i++) {
      w1T.push(
        result(
          (await tsxen(host, WASIBENCH, ["wasibench", "write1", calls, "/data/w1"], data)).out,
          "write1",
        ),
      );
      w1N.push(
        result(
          (await node(WASIBENCH, ["wasibench", "write1", calls, "/data/w1"], data)).out,
          "write1",
        ),
      );
      nopT.push(
        result((await tsxen(host, WASIBENCH, ["wasibench", "noop", calls], data)).out, "noop"),
      );
      nopN.push(result((await node(WASIBENCH, ["wasibench", "noop", calls], data)).out, "noop"));
    }
    const w1 = median(w1T);
    rows.push({
      name: "HVM trapped call: fd_write of 1 byte to a share, round trip",
      measured: fmt(w1, "µs"),
      baseline: fmt(median(w1N), "µs"),
      ratio: w1 / median(w1N),
      target: "≤ 2 µs",
      met: w1 <= 2,
    });
    rows.push(
      reportRow(
        "HVM trapped call with no host I/O (fd_fdstat_get)",
        fmt(median(nopT), "µs"),
        fmt(median(nopN), "µs"),
      ),
    );

    // --- sequential I/O ---
    const mib = quick ? "4" : "64";
    const wT: number[] = [];
    const rT: number[] = [];
    const wN: number[] = [];
    const rN: number[] = [];
    for (let i = 0; i < reps; i++) {
      const a = (await tsxen(host, WASIBENCH, ["wasibench", "io", mib, "/data/io"], data)).out;
      wT.push(result(a, "write"));
      rT.push(result(a, "read"));
      const b = (await node(WASIBENCH, ["wasibench", "io", mib, "/data/io"], data)).out;
      wN.push(result(b, "write"));
      rN.push(result(b, "read"));
    }
    for (const [what, t, n] of [
      ["writes", median(wT), median(wN)],
      ["reads", median(rT), median(rN)],
    ] as const) {
      rows.push({
        name: `HVM 1 MiB sequential ${what} through a share: tsxen vs node:wasi`,
        measured: fmt(t, "MiB/s", 0),
        baseline: fmt(n, "MiB/s", 0),
        ratio: t / n,
        target: "≥ 0.7×",
        met: t / n >= 0.7,
      });
    }
  } finally {
    await host.shutdown();
    rmSync(data, { recursive: true, force: true });
  }
  return rows;
}
