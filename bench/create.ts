/**
 * Domain creation: create → first console byte (median), and creation rates
 * through the host API and through libxl (#5's ≥ 1,000/s), in-process.
 * Baselines from the same run: instantiating the same compiled kernel bare
 * (the engine's floor for "a new guest"), and LightVM's published 2.3 ms as
 * the Xen figure to beat.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { guestPath, ROOT } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import { fmt, median, type Row } from "./common.js";
import type { Domain } from "../xen/common/domain.js";
import { parseCfg } from "../tools/libxlu/cfg.js";
import { domainConfig } from "../tools/libxl/config.js";
import { Libxl } from "../tools/libxl/domain.js";

export async function run(quick: boolean): Promise<Row[]> {
  const host = new Host({ memoryBytes: 8 * 1024 ** 3 });
  try {
    const kernel = await loadKernelFile(guestPath("hello"));
    // Floor: a bare instance of the same module with a fresh shared memory.
    const floor: number[] = [];
    for (let i = 0; i < (quick ? 20 : 200); i++) {
      const t0 = performance.now();
      const memory = new WebAssembly.Memory({ initial: 16, maximum: 16, shared: true });
      new WebAssembly.Instance(kernel.module, {
        env: { memory },
        xen: { hypercall: () => 0, preempt: () => {} },
      });
      floor.push(performance.now() - t0);
    }
    const firstByte: number[] = [];
    for (let i = 0; i < (quick ? 20 : 200); i++) {
      const t0 = performance.now();
      const t1 = await new Promise<number>((resolve) => {
        const d = host.createSync({ name: `fb${i}`, kernel, memory: 1 });
        d.consoleListeners.add(() => resolve(performance.now()));
      });
      firstByte.push(t1 - t0);
      for (const d of [...host.hv.domains.values()]) host.destroy(d.domid);
    }
    const fb = median(firstByte);
    const fl = median(floor);

    // Rate 1: create and destroy (no run).
    const n = quick ? 200 : 5000;
    let t0 = performance.now();
    for (let i = 0; i < n; i++)
      host.destroy(host.createSync({ name: `r${i}`, kernel, memory: 1, paused: true }).domid);
    const createRate = n / ((performance.now() - t0) / 1000);

    // Rate 2: create, boot to poweroff, destroy, in batches of 500.
    const m = quick ? 200 : 5000;
    t0 = performance.now();
    for (let done = 0; done < m; done += 500) {
      const batch: Domain[] = [];
      for (let i = 0; i < Math.min(500, m - done); i++)
        batch.push(host.createSync({ name: `b${done + i}`, kernel, memory: 1 }));
      await new Promise<void>((resolve) => {
        const check = (): void =>
          batch.every((d) => d.isShutdown) ? resolve() : void setImmediate(check);
        check();
      });
      for (const d of batch) host.destroy(d.domid);
    }
    const bootRate = m / ((performance.now() - t0) / 1000);

    // Rate 3: libxl from hello.cfg, kernel file and xenstore nodes included, after a warm-up.
    const dir = join(ROOT, "extras", "mini-os", "examples");
    const file = join(dir, "hello.cfg");
    const cfg = domainConfig(parseCfg(readFileSync(file, "utf8"), file), file, dir).config;
    const xl = new Libxl(host);
    const libxlRound = async (count: number, tag: string): Promise<number> => {
      const start = performance.now();
      for (let i = 0; i < count; i++) {
        const d = await xl.create({ ...cfg, name: `${tag}${i}` }, { paused: true });
        xl.destroy(d.domid);
      }
      return count / ((performance.now() - start) / 1000);
    };
    await libxlRound(quick ? 20 : 500, "w");
    const libxlRate = await libxlRound(quick ? 100 : 5000, "x");
    return [
      {
        name: "create → first console byte (median) vs LightVM 2.3 ms",
        measured: fmt(fb, "ms", 3),
        baseline: "2.300 ms",
        ratio: fb / 2.3,
        target: "≤ 1 ms",
        met: fb <= 1,
      },
      {
        name: "create → first console byte vs bare instantiate",
        measured: fmt(fb, "ms", 3),
        baseline: fmt(fl, "ms", 3),
        ratio: fb / fl,
        target: "(report)",
        met: true,
      },
      {
        name: "create+destroy rate (domains/s) vs target 1,000/s",
        measured: fmt(createRate, "/s", 0),
        baseline: "1000 /s",
        ratio: createRate / 1000,
        target: "≥ 1,000/s",
        met: createRate >= 1000,
      },
      {
        name: "libxl create+destroy rate (hello.cfg, xenstore nodes) vs target 1,000/s",
        measured: fmt(libxlRate, "/s", 0),
        baseline: "1000 /s",
        ratio: libxlRate / 1000,
        target: "≥ 1,000/s",
        met: libxlRate >= 1000,
      },
      {
        name: "create+boot+poweroff+destroy rate vs target 1,000/s",
        measured: fmt(bootRate, "/s", 0),
        baseline: "1000 /s",
        ratio: bootRate / 1000,
        target: "≥ 1,000/s",
        met: bootRate >= 1000,
      },
    ];
  } finally {
    await host.shutdown();
  }
}
