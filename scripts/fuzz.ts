/**
 * `npm run fuzz [-- --seconds N] [--seed S] [--only NAME]`: the fuzzers of
 * test/fuzzers.ts, each for N seconds (default 60) from seed S (default: a
 * new one, printed, so a failure can be run again). `npm test` runs the same
 * fuzzers for a few seconds with fixed seeds (test/fuzz.test.ts).
 */
import { parseArgs } from "node:util";
import {
  fuzzCfg,
  fuzzHvmImages,
  fuzzHypercalls,
  fuzzKernels,
  fuzzQcow2,
  fuzzWasiCalls,
  type FuzzReport,
} from "../test/fuzzers.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    seed: { type: "string" },
    only: { type: "string" },
  },
});
const ms = Number(values.seconds) * 1000;
const seed = values.seed !== undefined ? Number(values.seed) : (Math.random() * 2 ** 31) >>> 0;
if (!(ms > 0) || !Number.isInteger(seed)) {
  console.error("fuzz: --seconds must be a positive number and --seed an integer");
  process.exit(2);
}
const fuzzers: Record<string, () => Promise<FuzzReport> | FuzzReport> = {
  kernels: () => fuzzKernels(seed, ms),
  qcow2: () => fuzzQcow2(seed, ms),
  cfg: () => fuzzCfg(seed, ms),
  hypercalls: () => fuzzHypercalls(seed, ms),
  hvm: () => fuzzHvmImages(seed, ms),
  wasi: () => fuzzWasiCalls(seed, ms),
};
let failed = 0;
for (const [name, run] of Object.entries(fuzzers)) {
  if (values.only && values.only !== name) continue;
  const rep = await run();
  console.log(
    `fuzz ${name}: seed ${seed}, ${rep.iterations} inputs, ${rep.refused} refused, ${rep.failures.length} failures`,
  );
  for (const f of rep.failures) console.log(`  FAIL ${f}`);
  failed += rep.failures.length;
}
process.exit(failed > 0 ? 1 : 0);
