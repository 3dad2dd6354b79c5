/** The commands' command lines: a wrong option is one line naming it, exit status 2. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../extras/mini-os/paths.js";

for (const [script, line] of [
  ["dist/tools/host/main.js", "tsxen: Unknown option '--bogus' (see npm start -- --help)\n"],
  ["dist/tools/xenstored/main.js", "xenstored: Unknown option '--bogus' (see xenstored --help)\n"],
  ["dist/bench/run.js", "bench: Unknown option '--bogus'\n"],
] as const) {
  test(`${script} --bogus: one line, exit status 2`, () => {
    const r = spawnSync(process.execPath, [join(ROOT, script), "--bogus"], {
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(r.stderr, line);
    assert.equal(r.status, 2);
  });
}
