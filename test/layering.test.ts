/**
 * Dependencies point one way: xen/include/public imports nothing outside
 * itself; xen/ imports nothing from tools/, dom0/, extras/, test/ or bench/;
 * dom0/ (Dom0's kernel) imports only xen/;
 * and there are no import cycles among the sources.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "../extras/mini-os/paths.js";

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts") && !name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^import[^"']*["'](\.[^"']+)["']/gm)].map((m) =>
    relative(ROOT, resolve(dirname(file), m[1]!.replace(/\.js$/, ".ts"))),
  );
}

const files = [
  ...sources(join(ROOT, "xen")),
  ...sources(join(ROOT, "dom0")),
  ...sources(join(ROOT, "tools")),
];

test("xen/include/public imports only from itself", () => {
  for (const f of files.filter((f) => relative(ROOT, f).startsWith("xen/include/public/"))) {
    for (const i of imports(f))
      assert.ok(i.startsWith("xen/include/public/"), `${relative(ROOT, f)} imports ${i}`);
  }
});

test("xen/ imports nothing from the layers above it", () => {
  for (const f of files.filter((f) => relative(ROOT, f).startsWith("xen/"))) {
    for (const i of imports(f))
      assert.ok(i.startsWith("xen/"), `${relative(ROOT, f)} imports ${i}`);
  }
});

test("dom0/ imports only from xen/ and itself", () => {
  for (const f of files.filter((f) => relative(ROOT, f).startsWith("dom0/"))) {
    for (const i of imports(f))
      assert.ok(/^(xen|dom0)\//.test(i), `${relative(ROOT, f)} imports ${i}`);
  }
});

test("no module cycles outside type-only imports", () => {
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    const value = [...text.matchAll(/^import (?!type )[^"']*["'](\.[^"']+)["']/gm)].map((m) =>
      relative(ROOT, resolve(dirname(f), m[1]!.replace(/\.js$/, ".ts"))),
    );
    graph.set(relative(ROOT, f), value);
  }
  const state = new Map<string, number>();
  const visit = (n: string, path: string[]): void => {
    if (state.get(n) === 2) return;
    assert.notEqual(state.get(n), 1, `import cycle: ${[...path, n].join(" → ")}`);
    state.set(n, 1);
    for (const m of graph.get(n) ?? []) visit(m, [...path, n]);
    state.set(n, 2);
  };
  for (const n of graph.keys()) visit(n, []);
});
