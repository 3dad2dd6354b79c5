/**
 * Idle domains: how many ticker guests (blocked between one-second ticks) one
 * host keeps alive and ticking at once. Target ≥ 10,000 on a 2-core, 24 GiB
 * machine; the baseline is the target itself. Also reports resident memory
 * per domain and the share of expected ticks that arrived.
 */
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import { fmt, type Row, reportRow } from "./common.js";

export async function run(quick: boolean): Promise<Row[]> {
  const target = 10_000;
  const n = quick ? 100 : target;
  const host = new Host({ memoryBytes: 16 * 1024 ** 3 });
  try {
    const kernel = await loadKernelFile(guestPath("ticker"));
    const rss0 = process.memoryUsage().rss;
    let ticks = 0;
    for (let i = 0; i < n; i++) {
      const d = host.createSync({ name: `idle${i}`, kernel, memory: 1 });
      d.consoleListeners.add(() => ticks++);
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    // Let every ticker reach its steady one-tick-a-second rhythm, then count.
    await new Promise((r) => setTimeout(r, 1500));
    const seconds = quick ? 2 : 5;
    const before = ticks;
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const got = ticks - before;
    const alive = [...host.hv.domains.values()].filter((d) => !d.isShutdown).length;
    const rssPer = (process.memoryUsage().rss - rss0) / n;
    return [
      {
        name: `idle ticker domains alive (${seconds}s window)`,
        measured: String(alive),
        baseline: String(target),
        ratio: alive / target,
        target: "≥ 10,000",
        met: alive >= target,
      },
      {
        name: "ticks delivered / expected in the window",
        measured: String(got),
        baseline: String(alive * seconds),
        ratio: got / (alive * seconds),
        target: "≈ 1",
        met: got >= 0.9 * alive * seconds,
      },
      reportRow("resident memory per idle domain", fmt(rssPer / 1024, "KiB", 0)),
    ];
  } finally {
    await host.shutdown();
  }
}
