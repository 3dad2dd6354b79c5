/**
 * For tests that drive the toolstack as a user does: the commands' paths,
 * and a run and log directory of their own with `run` and `ok` to spawn
 * `tsxen` or `xl` there.
 */
import { spawnSync } from "node:child_process";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "../extras/mini-os/paths.js";

export const XL = join(ROOT, "dist/tools/xl/xl.cjs");
export const TSXEN = join(ROOT, "dist/tools/host/daemon.js");
export const EXAMPLES = join(ROOT, "extras/mini-os/examples");

export interface Cli {
  /** The temporary directory; the run and log directories are run/ and log/ in it. */
  dir: string;
  env: NodeJS.ProcessEnv;
  run(bin: string, args: string[]): { code: number | null; out: string; err: string };
  /** Runs and asserts it exited 0; its stdout. */
  ok(bin: string, ...args: string[]): string;
}

export function cli(prefix: string): Cli {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = { ...process.env, TSXEN_RUN_DIR: join(dir, "run"), TSXEN_LOG_DIR: join(dir, "log") };
  const run = (bin: string, args: string[]): ReturnType<Cli["run"]> => {
    const r = spawnSync(process.execPath, [bin, ...args], { env, cwd: ROOT, encoding: "utf8" });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const ok = (bin: string, ...args: string[]): string => {
    const r = run(bin, args);
    assert.equal(r.code, 0, `${args.join(" ")} failed (${r.code}): ${r.err}`);
    return r.out;
  };
  return { dir, env, run, ok };
}
