/**
 * hvm_image.ts and hvm_checks.ts: what an HVM program must be (each refusal
 * names what is wrong), how its memory becomes a shared import capped by the
 * domain, and that loop checks keep the program's meaning and reach the check.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  compileHvmImage,
  HVM_IMAGE_VERSION,
  prepareHvmImage,
} from "../xen/arch/wasm32/hvm_image.js";
import {
  addLoopChecks,
  CHECK_BUDGET,
  CHECK_BUDGET_EXPORT,
  CHECK_TABLE_EXPORT,
} from "../xen/arch/wasm32/hvm_checks.js";
import { watBinary } from "./helpers.js";

const W = `(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))`;
const START = `(func (export "_start"))`;

test("an HVM program's imports, memory and entry are checked, each refusal naming what is wrong", () => {
  const cases: Array<[string, RegExp]> = [
    [
      `(module ${W} (import "env" "f" (func)) (memory 1) ${START})`,
      /it imports env\.f; HVM programs import only wasi_snapshot_preview1 functions/,
    ],
    [
      `(module (import "wasi_snapshot_preview1" "fd_frobnicate" (func)) (memory 1) ${START})`,
      /fd_frobnicate, which is not a WASI preview1 function/,
    ],
    [
      `(module (import "wasi_snapshot_preview1" "fd_write" (func (param i64) (result i32))) (memory 1) ${START})`,
      /import wasi_snapshot_preview1\.fd_write has type \(i64\) -> \(i32\); preview1's fd_write is \(i32, i32, i32, i32\) -> \(i32\)/,
    ],
    [
      `(module ${W} (import "env" "memory" (memory 1)) ${START})`,
      /imports its memory \(env\.memory\); an HVM program defines its own/,
    ],
    [`(module ${W} ${START})`, /defines no memory/],
    [`(module ${W} (memory 1))`, /does not export _start: not a WASI command/],
    [`(module ${W} (memory i64 1) ${START})`, /memory64/],
  ];
  for (const [wat, want] of cases) {
    assert.throws(() => prepareHvmImage(watBinary(wat)), want, wat);
  }
  assert.throws(
    () => prepareHvmImage(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])),
    /not a WebAssembly module \(bad magic\)/,
  );
});

test("a program with PV drivers may import xen.hypercall, with its data and stack above wasm32's architecture area", () => {
  const HC = `(import "xen" "hypercall" (func (param i32 i32 i32 i32 i32 i32) (result i32)))`;
  const ok = prepareHvmImage(
    watBinary(
      `(module ${W} ${HC} (memory 8) (global (mut i32) (i32.const 0x50000)) (data (i32.const 0x40000) "hi") ${START})`,
    ),
  );
  assert.equal(ok.hypercalls, true);
  assert.equal(prepareHvmImage(watBinary(`(module ${W} (memory 1) ${START})`)).hypercalls, false);
  const cases: Array<[string, RegExp]> = [
    [
      `(module (import "xen" "hypercall" (func (param i32) (result i32))) (memory 8) ${START})`,
      /its import xen\.hypercall has type \(i32\) -> \(i32\); wasm32's hypercall is \(i32, i32, i32, i32, i32, i32\) -> \(i32\)/,
    ],
    [
      `(module ${HC} (import "xen" "preempt" (func)) (memory 8) ${START})`,
      /it imports xen\.preempt/,
    ],
    [
      `(module ${HC} (memory 2) ${START})`,
      /its memory \(128 KiB\) ends inside wasm32's architecture area.*--global-base=262144/,
    ],
    [
      `(module ${HC} (memory 8) (data (i32.const 1024) "x") ${START})`,
      /its data segment 0 at 0x400 overlaps wasm32's architecture area/,
    ],
    [
      `(module ${HC} (memory 8) (global (mut i32) (i32.const 65536)) ${START})`,
      /its global 0 \(the stack pointer, as clang makes it\) starts at 0x10000, inside wasm32's architecture area/,
    ],
  ];
  for (const [wat, want] of cases) assert.throws(() => prepareHvmImage(watBinary(wat)), want, wat);
});

test("the program's memory becomes a shared env.memory import up to its own maximum, or 4 GiB", async () => {
  for (const [mem, max] of [
    ["(memory 2)", 65536],
    ["(memory 2 40)", 40],
  ] as const) {
    const p = prepareHvmImage(
      watBinary(`(module ${W} ${mem} (export "memory" (memory 0)) ${START})`),
    );
    assert.equal(p.minPages, 2);
    assert.equal(p.maxPages, max);
    const m = await WebAssembly.compile(p.bytes as Uint8Array<ArrayBuffer>);
    const imp = WebAssembly.Module.imports(m).find((i) => i.kind === "memory");
    assert.deepEqual(imp, { module: "env", name: "memory", kind: "memory" });
    // A shared memory of the domain's size links; the program's exports still name it.
    const memory = new WebAssembly.Memory({ initial: 2, maximum: Math.min(max, 16), shared: true });
    const inst = await WebAssembly.instantiate(m, {
      env: { memory },
      wasi_snapshot_preview1: { fd_write: () => 0 },
    });
    assert.equal(inst.exports.memory, memory);
  }
});

test("loop checks keep a program's results and call the check once per budget of iterations", async () => {
  const wat = `(module ${W} (memory 1) ${START}
    (func (export "sum") (param $n i32) (result i32) (local $i i32) (local $s i32)
      (block $out (loop $l
        (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $s (i32.add (local.get $s) (i32.mul (local.get $i) (i32.const 3))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
      (local.get $s)))`;
  const prepared = prepareHvmImage(watBinary(wat));
  const checked = addLoopChecks(prepared.bytes);
  assert.ok("bytes" in checked, "checks added");
  assert.equal(checked.loops, 1);
  const module = await WebAssembly.compile(checked.bytes as Uint8Array<ArrayBuffer>);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const inst = await WebAssembly.instantiate(module, {
    env: { memory },
    wasi_snapshot_preview1: { fd_write: () => 0 },
  });
  let checks = 0;
  const thunk = await WebAssembly.instantiate(
    Uint8Array.from([
      0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 2, 7, 1, 1, 0x78, 1, 0x66, 0, 0, 7, 5,
      1, 1, 0x66, 0, 0,
    ]),
    {
      x: {
        f: () => {
          checks++;
          budget.value = CHECK_BUDGET;
        },
      },
    },
  );
  const table = inst.exports[CHECK_TABLE_EXPORT] as WebAssembly.Table;
  const budget = inst.exports[CHECK_BUDGET_EXPORT] as WebAssembly.Global;
  table.set(0, thunk.instance.exports.f as () => void);
  const sum = inst.exports.sum as (n: number) => number;
  const n = 3 * CHECK_BUDGET + 10;
  let expect = 0;
  for (let i = 0; i < n; i++) expect = (expect + i * 3) | 0;
  assert.equal(sum(n), expect);
  assert.equal(checks, 3, "one check per CHECK_BUDGET passes of the loop");
});

test("a prepared program is kept in the disk cache by content, and loaded from it with the same meaning", async () => {
  const { mkdtempSync, readdirSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = mkdtempSync(join(tmpdir(), "tsxen-hvm-cache-"));
  const before = process.env.TSXEN_CACHE_DIR;
  process.env.TSXEN_CACHE_DIR = dir;
  try {
    const wat = `(module ${W} (memory 3 9) ${START} (func (export "f") (loop $l (br $l))))`;
    const first = await compileHvmImage(watBinary(wat));
    const files = readdirSync(join(dir, "hvm"));
    assert.deepEqual(files.map((f) => f.replace(/^[0-9a-f]{64}-/, "")).sort(), [
      `v${HVM_IMAGE_VERSION}.json`,
      `v${HVM_IMAGE_VERSION}.wasm`,
    ]);
    const again = await compileHvmImage(watBinary(wat));
    assert.equal(again.hash, first.hash);
    assert.deepEqual(
      [again.minPages, again.maxPages, again.wasiImports, again.loopChecks],
      [3, 9, ["fd_write"], 1],
    );
    // The cached module carries the loop checks.
    assert.ok(WebAssembly.Module.exports(again.module).some((e) => e.name === CHECK_TABLE_EXPORT));
  } finally {
    if (before === undefined) delete process.env.TSXEN_CACHE_DIR;
    else process.env.TSXEN_CACHE_DIR = before;
    rmSync(dir, { recursive: true, force: true });
  }
});
