import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { stripKernel, nonZeroRuns } from "../xen/arch/wasm32/binary.js";
import { guestPath } from "../extras/mini-os/paths.js";

test("a built kernel loses its data segments and imports a 0..4 GiB shared memory", () => {
  const out = stripKernel(readFileSync(guestPath("hello")));
  assert.ok(out.segments.length > 0);
  assert.ok(out.segments.every((s) => s.offset >= 0x40000));
  const mod = new WebAssembly.Module(new Uint8Array(out.bytes));
  const mem = WebAssembly.Module.imports(mod).find((i) => i.kind === "memory");
  assert.deepEqual(mem && [mem.module, mem.name], ["env", "memory"]);
  // The rewritten module accepts a memory of any size up to 4 GiB.
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  new WebAssembly.Instance(mod, { env: { memory }, xen: { hypercall: () => 0 } });
});

test("modules that break the contract are refused with the reason", () => {
  assert.throws(() => stripKernel(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), /bad magic/);
  // (module) with no imports at all.
  assert.throws(
    () => stripKernel(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])),
    /does not import env.memory/,
  );
  // (module (import "env" "memory" (memory 1))): not shared.
  const unshared = [
    0,
    0x61,
    0x73,
    0x6d,
    1,
    0,
    0,
    0,
    2,
    0x0f,
    1,
    3,
    ...Buffer.from("env"),
    6,
    ...Buffer.from("memory"),
    2,
    0,
    1,
  ];
  assert.throws(() => stripKernel(Uint8Array.from(unshared)), /not shared memory/);
  // Truncated section.
  assert.throws(() => stripKernel(Uint8Array.from(unshared.slice(0, 15))), /truncated/);
});

test("zero bytes of data segments are not written: a new guest's memory is zero already", () => {
  const seg = (offset: number, bytes: number[]): { offset: number; data: Uint8Array } => ({
    offset,
    data: Uint8Array.from(bytes),
  });
  const big = new Array<number>(300).fill(0);
  big[10] = 1;
  big[11] = 2;
  big[40] = 3; // a short zero gap: one run
  big[200] = 4; // a long gap: a second run
  assert.deepEqual(nonZeroRuns([seg(1000, big), seg(5000, [0, 0, 0])]), [
    seg(1010, big.slice(10, 41)),
    seg(1200, [4]),
  ]);
  // Overlapping segments apply in order, zeros included: they are kept whole.
  const overlapping = [seg(100, [1, 2, 3, 4]), seg(102, [0, 0])];
  assert.deepEqual(nonZeroRuns(overlapping), overlapping);
});
