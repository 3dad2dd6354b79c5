/**
 * Instrumentation cost: the same CPU-bound functions of one kernel, run bare
 * (as built) and instrumented (preemption checks + Asyncify), in one process.
 * Target: instrumented ≤ 1.5× bare; the worst case is reported too.
 */
import { readFileSync } from "node:fs";
import { guestPath } from "../extras/mini-os/paths.js";
import { instrumentKernel } from "../xen/arch/wasm32/instrument.js";
import { bestPairMs, fmt, type Row } from "./common.js";

type Fns = { loop(n: number): number; fib(n: number): number; sieve(n: number): number };

function memory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: 80, maximum: 80, shared: true });
}

export async function run(quick: boolean): Promise<Row[]> {
  const bytes = readFileSync(guestPath("cpubench"));
  const hypercall = (): number => 0;
  const bareMem = memory();
  const bare = (
    await WebAssembly.instantiate(bytes, { env: { memory: bareMem }, xen: { hypercall } })
  ).instance.exports as unknown as Fns;
  const k = instrumentKernel(bytes);
  const instMem = memory();
  for (const s of k.segments) new Uint8Array(instMem.buffer).set(s.data, s.offset);
  // The real check reads one host word, as the hypervisor's does.
  const word = new Int32Array(new SharedArrayBuffer(4));
  let gen = 1;
  const preempt = (): void => {
    if (word[0] === gen) gen++;
  };
  const inst = (
    await WebAssembly.instantiate(new Uint8Array(k.bytes), {
      env: { memory: instMem },
      xen: { hypercall, preempt },
    })
  ).instance.exports as unknown as Fns;

  const scale = quick ? 0.05 : 1;
  const cases: Array<[string, (f: Fns) => number]> = [
    ["tight loop", (f) => f.loop(Math.round(50_000_000 * scale))],
    ["call-heavy (fib)", (f) => f.fib(quick ? 20 : 30)],
    ["memory loop (sieve)", (f) => f.sieve(Math.round(60 * scale) || 1)],
  ];
  const rows: Row[] = [];
  let worst = 0;
  for (const [name, fn] of cases) {
    if (fn(bare) !== fn(inst))
      throw new Error(`cpu bench ${name}: instrumented and bare results differ`);
    const [b, i] = bestPairMs(
      quick ? 2 : 7,
      () => fn(bare),
      () => fn(inst),
    );
    worst = Math.max(worst, i / b);
    rows.push({
      name: `CPU ${name}: instrumented vs bare`,
      measured: fmt(i, "ms"),
      baseline: fmt(b, "ms"),
      ratio: i / b,
      target: "≤ 1.5×",
      met: i / b <= 1.5,
    });
  }
  rows.push({
    name: "CPU worst case of the above",
    measured: "",
    baseline: "",
    ratio: worst,
    target: "≤ 1.5×",
    met: worst <= 1.5,
  });
  return rows;
}
