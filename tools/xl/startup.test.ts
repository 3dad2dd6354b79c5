/**
 * xl starts in about a tenth of a second because it loads only what a
 * command line needs: the sockets' clients and the formats. The domain
 * builder, the instrumenter and Binaryen (a 10 MB compiler, 0.35 s to load)
 * live in the daemon. A value imported into xl's module graph from the
 * builder's modules would pull them all in; this walks the graph of the
 * built xl and fails naming the chain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "../..");

/** Every module `entry` loads, each with the module that first imported it. */
function graph(entry: string): Map<string, { from: string | undefined; packages: string[] }> {
  const seen = new Map<string, { from: string | undefined; packages: string[] }>();
  const walk = (file: string, from: string | undefined): void => {
    if (seen.has(file)) return;
    const packages: string[] = [];
    seen.set(file, { from, packages });
    const src = readFileSync(file, "utf8");
    for (const m of src.matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)) {
      const spec = m[1]!;
      if (spec.startsWith(".")) walk(resolve(dirname(file), spec), file);
      else packages.push(spec);
    }
    for (const m of src.matchAll(/^import\s+"([^"]+)"/gm))
      if (m[1]!.startsWith(".")) walk(resolve(dirname(file), m[1]!), file);
  };
  walk(entry, undefined);
  return seen;
}

test("xl's start-up loads no compiler: nothing of the domain builder's is in its module graph", () => {
  const g = graph(join(here, "xl.js"));
  const chain = (f: string): string => {
    const out: string[] = [];
    for (let x: string | undefined = f; x; x = g.get(x)?.from) out.push(relative(dist, x));
    return out.join(" <- ");
  };
  for (const [file, { packages }] of g) {
    assert.ok(!packages.includes("binaryen"), `Binaryen is loaded by ${chain(file)}`);
    assert.ok(
      !/wasm32\/instrument\.js$/.test(file),
      `the instrumenter is loaded by ${chain(file)}`,
    );
  }
  assert.ok(g.size > 10, `xl's graph was walked (${g.size} modules)`);
});
