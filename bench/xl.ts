/**
 * `xl create -c hello.cfg` as a user runs it: a whole CLI process against a
 * running host daemon (started here, in a temporary run directory), timed
 * from spawn to the guest's first console byte on xl's stdout. Baseline
 * from the same run: spawning `node -e 0` to its exit, the floor for any
 * command written for Node. Both medians are reported, and their ratio.
 * And `xl list`, a command that only asks the daemon, from spawn to exit
 * against the same baseline (the fast I/O issue's target: ≤ 1.2×). Both run
 * the `xl` command as installed: the bundle (tools/xl/bundle.ts).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../extras/mini-os/paths.js";
import { fmt, median, type Row } from "./common.js";

const XL = join(ROOT, "dist/tools/xl/xl.cjs");
const TSXEN = join(ROOT, "dist/tools/host/daemon.js");

function time(args: string[], env: NodeJS.ProcessEnv, untilFirstByte: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(process.execPath, args, { env, cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let t1: number | undefined;
    let err = "";
    c.stdout.once("data", () => (t1 ??= performance.now()));
    c.stderr.on("data", (b: Buffer) => (err += b.toString()));
    c.on("exit", (code) => {
      const end = performance.now();
      if (code !== 0) reject(new Error(`${args.join(" ")} exited ${code}: ${err}`));
      else if (untilFirstByte && t1 === undefined) reject(new Error("no console output"));
      else resolve((untilFirstByte ? t1! : end) - t0);
    });
  });
}

export async function run(quick: boolean): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-bench-xl-"));
  const env = { ...process.env, TSXEN_RUN_DIR: join(dir, "run"), TSXEN_LOG_DIR: join(dir, "log") };
  const started = spawnSync(process.execPath, [TSXEN, "start"], { env, encoding: "utf8" });
  if (started.status !== 0) throw new Error(`tsxen start: ${started.stderr}`);
  try {
    const n = quick ? 3 : 30;
    const node: number[] = [];
    const xl: number[] = [];
    const list: number[] = [];
    const cfg = join(ROOT, "extras/mini-os/examples/hello.cfg");
    // Alternate, so that both see the same machine state.
    for (let i = 0; i < n; i++) {
      node.push(await time(["-e", "0"], env, false));
      xl.push(await time([XL, "create", "-q", "-c", cfg], env, true));
      list.push(await time([XL, "list"], env, false));
    }
    const x = median(xl);
    const b = median(node);
    return [
      {
        name: "xl create -c hello → first byte (CLI)",
        measured: fmt(x, "ms", 1),
        baseline: `node -e 0 ${fmt(b, "ms", 1)}`,
        ratio: x / b,
        target: "(report)",
        met: true,
      },
      {
        name: "xl list (CLI, spawn to exit)",
        measured: fmt(median(list), "ms", 1),
        baseline: `node -e 0 ${fmt(b, "ms", 1)}`,
        ratio: median(list) / b,
        target: "≤ 1.2×",
        met: median(list) / b <= 1.2,
      },
    ];
  } finally {
    spawnSync(process.execPath, [TSXEN, "stop", "--timeout", "1"], { env });
    rmSync(dir, { recursive: true, force: true });
  }
}
