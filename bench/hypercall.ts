/**
 * Hypercall round trip: a guest in the hypervisor calling xen_version in a
 * loop (timed by its own clock), against the same loop calling a bare JS
 * import that returns 0, in the same process. Target ≤ 2×. Then the same
 * loop with tracing on, for the cost of a trace record.
 */
import { readFileSync } from "node:fs";
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { bestMs, fmt, type Row } from "./common.js";
import { XcInterface } from "../tools/libxc/xc.js";
import { LocalHypercalls } from "../tools/libxc/channel.js";
import { DOMID_XEN } from "../xen/include/public/xen.js";
import { MAX_TBUF_PAGES } from "../xen/common/trace.js";

export async function run(quick: boolean): Promise<Row[]> {
  const n = quick ? 100_000 : 2_000_000;
  const bytes = readFileSync(guestPath("hcbench"));
  const memory = new WebAssembly.Memory({ initial: 64, maximum: 64, shared: true });
  const bare = (
    await WebAssembly.instantiate(bytes, { env: { memory }, xen: { hypercall: () => 0 } })
  ).instance.exports as { calls(n: number): number };
  bare.calls(10_000);

  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    // The bare loop and a guest take turns, so that both see the same
    // spells of a noisy machine.
    const best: number[] = [];
    let bareMs = Infinity;
    for (let rep = 0; rep < (quick ? 1 : 7); rep++) {
      bareMs = Math.min(
        bareMs,
        bestMs(1, () => bare.calls(n)),
      );
      const d = await host.create({
        name: `hcbench${rep}`,
        kernel: guestPath("hcbench"),
        memory: 2,
        cmdline: String(n),
      });
      await host.waitShutdown(d.domid, 120_000);
      const m = /in (\d+) ns/.exec(host.readConsole(d.domid));
      if (!m) throw new Error(`hcbench printed no result: ${host.readConsole(d.domid)}`);
      best.push(Number(m[1]) / n);
      host.destroy(d.domid);
    }
    const hcNs = Math.min(...best);
    const bareNs = (bareMs * 1e6) / n;

    // The same loop with tracing on: each call writes one TRC_PV_HYPERCALL_V2
    // record (36 bytes). CPU 0's buffer (127 pages, the most) holds every
    // record of a run of 12,000 calls, so none is dropped, and is emptied
    // between runs as xentrace would. Runs that short need many to find the
    // warm figure: 20, the best kept (5 gave 170 ns a record, 20 gave 100).
    const traced: number[] = [];
    const m = 12_000;
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    await xc.tbufSetSize(MAX_TBUF_PAGES);
    await xc.tbufEnable(true);
    const tinfo = host.dom0.privcmd.mmapBatchV2(DOMID_XEN, [(await xc.tbufGetInfo()).mfn])
      .pages[0]!;
    const head = host.dom0.privcmd.mmapBatchV2(DOMID_XEN, [
      // CPU 0's first frame, at the word its mfn_offset names.
      new DataView(tinfo.buffer, tinfo.byteOffset).getUint32(
        new DataView(tinfo.buffer, tinfo.byteOffset).getUint16(2, true) * 4,
        true,
      ),
    ]).pages[0]!;
    const heads = new DataView(head.buffer, head.byteOffset, 8);
    const before = host.hv.trace.written;
    for (let rep = 0; rep < (quick ? 1 : 20); rep++) {
      heads.setUint32(0, heads.getUint32(4, true), true);
      const d = await host.create({
        name: `hctrace${rep}`,
        kernel: guestPath("hcbench"),
        memory: 2,
        cmdline: String(m),
      });
      await host.waitShutdown(d.domid, 120_000);
      const r = /in (\d+) ns/.exec(host.readConsole(d.domid));
      if (!r) throw new Error(`hcbench printed no result: ${host.readConsole(d.domid)}`);
      traced.push(Number(r[1]) / m);
      host.destroy(d.domid);
    }
    await xc.tbufEnable(false);
    if (host.hv.trace.dropped > 0 || host.hv.trace.written - before < m)
      throw new Error(`tracing dropped ${host.hv.trace.dropped} records`);
    const tracedNs = Math.min(...traced);
    return [
      {
        name: "hypercall round trip vs bare wasm→JS import",
        measured: fmt(hcNs, "ns"),
        baseline: fmt(bareNs, "ns"),
        ratio: hcNs / bareNs,
        target: "≤ 2×",
        met: hcNs / bareNs <= 2,
      },
      {
        name: "hypercall with tracing on (one record each) vs tracing off",
        measured: fmt(tracedNs, "ns"),
        baseline: fmt(hcNs, "ns"),
        ratio: tracedNs / hcNs,
        target: `(report: ${fmt(tracedNs - hcNs, "ns")} a record)`,
        met: true,
      },
    ];
  } finally {
    await host.shutdown();
  }
}
