/**
 * `npm run bench [-- --quick] [-- --only NAME]`: runs every benchmark and
 * prints one table of figures, same-run baselines and ratios. --quick runs each
 * in seconds (the test suite does this so none rots); figures are then not
 * meaningful. Benchmarks report; they never fail on a missed target.
 */
import { parseArgs } from "node:util";
import type { Row } from "./common.js";
import * as cpu from "./cpu.js";
import * as hypercall from "./hypercall.js";
import * as create from "./create.js";
import * as idle from "./idle.js";
import * as preempt from "./preempt.js";
import * as evtchn from "./evtchn.js";
import * as gnttab from "./gnttab.js";
import * as xenstored from "./xenstored.js";
import * as vchan from "./vchan.js";

const benches = {
  hypercall,
  cpu,
  create,
  idle,
  preempt,
  evtchn,
  gnttab,
  xenstored,
  vchan,
} satisfies Record<string, { run(quick: boolean): Promise<Row[]> }>;

const { values } = parseArgs({
  options: { quick: { type: "boolean", default: false }, only: { type: "string", multiple: true } },
});
const quick = values.quick ?? false;
const names = (values.only ?? Object.keys(benches)) as Array<keyof typeof benches>;

const rows: Row[] = [];
for (const name of names) {
  const b = benches[name];
  if (!b) {
    console.error(`bench: unknown benchmark '${name}'; known: ${Object.keys(benches).join(", ")}`);
    process.exit(2);
  }
  const t0 = performance.now();
  rows.push(...(await b.run(quick)));
  console.error(`bench: ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
const w = Math.max(...rows.map((r) => r.name.length));
console.log(
  `${"benchmark".padEnd(w)}  ${"measured".padStart(12)}  ${"baseline".padStart(12)}  ${"ratio".padStart(7)}  target`,
);
for (const r of rows) {
  const ratio = Number.isNaN(r.ratio) ? "" : `${r.ratio.toFixed(2)}×`;
  console.log(
    `${r.name.padEnd(w)}  ${r.measured.padStart(12)}  ${r.baseline.padStart(12)}  ${ratio.padStart(7)}  ${r.target}${r.met || quick ? "" : "  (missed)"}`,
  );
}
if (quick) console.log("(quick mode: figures are not meaningful)");
