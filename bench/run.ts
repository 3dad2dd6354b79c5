/**
 * `npm run bench [-- --quick] [-- --only NAME]`: runs every benchmark and
 * prints one table of figures, same-run baselines and ratios. --quick runs each
 * in seconds (the test suite does this so none rots); figures are then not
 * meaningful. Benchmarks report; they never fail on a missed target.
 */
import { parseCommandLine } from "../tools/cli.js";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
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
import * as xl from "./xl.js";
import * as blk from "./blk.js";
import * as net from "./net.js";
import * as hvm from "./hvm.js";
import * as save from "./save.js";
import * as migrate from "./migrate.js";
import * as web from "./web.js";

const run = promisify(execFile);

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
  xl,
  blk,
  net,
  hvm,
  save,
  migrate,
  web,
} satisfies Record<string, { run(quick: boolean): Promise<Row[]> }>;

const { values } = parseCommandLine("bench", {
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string", multiple: true },
    /** Internal: run one benchmark here and print its rows as JSON (see below). */
    "rows-json": { type: "boolean", default: false },
  },
});
const quick = values.quick ?? false;
const names = (values.only ?? Object.keys(benches)) as Array<keyof typeof benches>;
for (const name of names) {
  if (!benches[name]) {
    console.error(`bench: unknown benchmark '${name}'; known: ${Object.keys(benches).join(", ")}`);
    process.exit(2);
  }
}

if (values["rows-json"]) {
  const rows: Row[] = [];
  for (const name of names) rows.push(...(await benches[name].run(quick)));
  console.log(JSON.stringify(rows));
  process.exit(0);
}

// Each benchmark runs in a process of its own, so that none measures the
// heap, JIT state or leftover domains of the ones before it.
const rows: Row[] = [];
for (const name of names) {
  const t0 = performance.now();
  const args = [process.argv[1]!, "--rows-json", "--only", name, ...(quick ? ["--quick"] : [])];
  const { stdout } = await run(process.execPath, args, { maxBuffer: 1 << 24 });
  // JSON turns NaN (no ratio) into null.
  const got = JSON.parse(stdout.trim().split("\n").pop()!) as Array<Row & { ratio: number | null }>;
  rows.push(...got.map((r) => ({ ...r, ratio: r.ratio ?? NaN })));
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
