/**
 * Preemption precision: two spin guests (infinite loops that never call the
 * hypervisor) share the CPU; how far does the longest slice overrun the
 * configured slice length? Baseline: the slice length itself.
 */
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { loadKernelFile } from "../xen/arch/wasm32/kernel.js";
import { fmt, median, type Row } from "./common.js";

export async function run(quick: boolean): Promise<Row[]> {
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    const kernel = await loadKernelFile(guestPath("spin"));
    const ds = [0, 1].map((i) => host.createSync({ name: `spin${i}`, kernel, memory: 2 }));
    await new Promise((r) => setTimeout(r, quick ? 200 : 2000));
    const sliceMs = host.hv.sched.params.tsliceUs / 1000;
    const longest = Math.max(...ds.map((d) => d.vcpus[0]!.longestSliceUs)) / 1000;
    const cpu = ds.map((d) => d.vcpus[0]!.cpuTimeNs / 1e6);
    const share = Math.min(...cpu) / Math.max(...cpu);
    return [
      {
        name: "longest slice of a spinning guest vs slice length",
        measured: fmt(longest, "ms"),
        baseline: fmt(sliceMs, "ms"),
        ratio: longest / sliceMs,
        target: "(report)",
        met: true,
      },
      {
        name: "CPU split between two equal spinners (min/max)",
        measured: fmt(median(cpu), "ms", 0),
        baseline: "",
        ratio: share,
        target: "≈ 1",
        met: share > 0.8,
      },
    ];
  } finally {
    await host.shutdown();
  }
}
