/**
 * docs/xl.md stays true: every command `xl help` lists is "supported" there,
 * and every Xen command xl refuses is there with the status xl gives it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MISSING } from "../tools/xl/missing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

test("docs/xl.md names every command xl has and every one it refuses, with its status", () => {
  const doc = readFileSync(join(ROOT, "docs/xl.md"), "utf8");
  const help = execFileSync(process.execPath, [join(ROOT, "dist/tools/xl/xl.cjs"), "help"], {
    encoding: "utf8",
  });
  const commands = [...help.matchAll(/^ ([a-z][a-z0-9-]*) +\S/gm)].map((m) => m[1]!);
  assert.ok(commands.length > 30, `only ${commands.length} commands in xl help`);
  for (const c of commands) {
    assert.match(doc, new RegExp(`^\\| \`${c}\` +\\| supported +\\|`, "m"), c);
    assert.equal(MISSING[c], undefined, `${c} is both implemented and missing`);
  }
  for (const [c, [status]] of Object.entries(MISSING)) {
    const word = status === "later" ? "not yet" : "not applicable";
    assert.match(doc, new RegExp(`^\\| \`${c}\` +\\| ${word} +\\|`, "m"), c);
  }
});
