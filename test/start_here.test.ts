/**
 * docs/start-here.md cannot rot: every command in its `sh` blocks runs, in
 * order, in one bash (as a reader runs them in one shell), against a host
 * started in a directory of its own, and each block's commands must all
 * succeed. The output is checked for what each step promises to show.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

test("every command of docs/start-here.md runs on this checkout, in order", () => {
  const doc = readFileSync(join(ROOT, "docs/start-here.md"), "utf8");
  const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 12, `only ${blocks.length} blocks`);
  // Each block's lines stop the script at the first failure; a marker after
  // each block says how far it got.
  const script = [
    "shopt -s expand_aliases",
    "set -e",
    ...blocks.map((b, i) => `${b}\necho "=== block ${i} done"`),
  ].join("\n");
  const dir = mkdtempSync(join(tmpdir(), "tsxen-start-here-"));
  const env = { ...process.env, TSXEN_RUN_DIR: join(dir, "run"), TSXEN_LOG_DIR: join(dir, "log") };
  let r;
  try {
    r = spawnSync("bash", ["-c", script], { cwd: ROOT, encoding: "utf8", timeout: 120_000, env });
  } finally {
    // Whatever happened, no host is left behind.
    spawnSync(
      process.execPath,
      [join(ROOT, "dist/tools/host/daemon.js"), "stop", "--timeout", "1"],
      {
        env,
      },
    );
    rmSync(dir, { recursive: true, force: true });
  }
  const out = r.stdout;
  const done = [...out.matchAll(/=== block (\d+) done/g)].length;
  assert.equal(
    done,
    blocks.length,
    `stopped after block ${done}: ${blocks[done] ?? ""}\n${r.stderr.slice(-2000)}\n${out.slice(-2000)}`,
  );
  assert.equal(r.status, 0, r.stderr);
  const missing = [
    /__HYPERVISOR_console_io/,
    /hypercall +\[ op\|args = 0x155000/,
    /PV events:/,
    /evtchn_send +\[ dom:port/,
    /grant_(map|copy) +\[/,
    /grant_copy +\[ from = \d+, to = 0, bytes = 98 \]/,
    /ticker +\d+ +\d+ +1 +[-rb]/,
    /hello-hvm/,
    /ioreq server 0: emulator d0/,
    /General information for domain 0/,
    /xen_version +: 4\.17/,
    /domainbuilder: detail: xc_dom_boot_mem_init/,
    /libxl: debug: libxl_create\.c: domcreate_complete/,
    /"c_info"/,
    /\/local\/domain\/1\/name = "ticker"/,
    /ticker d\d+: tick 1/,
    /VBD BlkBack 51712/,
    /grant table for d0/,
    /grant reference \d+ gives d7/,
    /export type Mfn/,
    /'m' pressed -> Memory info/,
    /tsxen: host stopped/,
  ].filter((want) => !want.test(out));
  assert.deepEqual(missing, [], out.slice(-3000));
});
