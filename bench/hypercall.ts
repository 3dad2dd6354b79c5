/**
 * Hypercall round trip: a guest in the hypervisor calling xen_version in a
 * loop (timed by its own clock), against the same loop calling a bare JS
 * import that returns 0, in the same process. Target ≤ 2×.
 */
import { readFileSync } from "node:fs";
import { guestPath } from "../extras/mini-os/build.js";
import { Host } from "../tools/host/host.js";
import { bestMs, fmt, type Row } from "./common.js";

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
    return [
      {
        name: "hypercall round trip vs bare wasm→JS import",
        measured: fmt(hcNs, "ns"),
        baseline: fmt(bareNs, "ns"),
        ratio: hcNs / bareNs,
        target: "≤ 2×",
        met: hcNs / bareNs <= 2,
      },
    ];
  } finally {
    await host.shutdown();
  }
}
