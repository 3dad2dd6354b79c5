/**
 * confine.ts: the rewritten bulk memory instructions keep the instruction's
 * meaning (memmove for overlaps, a fault writes nothing) while checking for
 * preemption between pieces; features tsxen refuses are named.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { instrumentKernel } from "../xen/arch/wasm32/instrument.js";
import { BULK_CHUNK } from "../xen/arch/wasm32/confine.js";
import { watBinary } from "./helpers.js";

const PAGES = 64; // 4 MiB

/** The instrumented module's exports, run outside a hypervisor (preempt never unwinds). */
async function instance(body: string): Promise<{
  exports: Record<string, (...a: number[]) => number>;
  u8: Uint8Array;
  preempts: () => number;
}> {
  const out = instrumentKernel(
    watBinary(`(module
      (import "xen" "hypercall" (func $hc (param i32 i32 i32 i32 i32 i32) (result i32)))
      (import "env" "memory" (memory 1 65536 shared))
      (func (export "_start") (param i32) (drop (call $hc (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))))
      ${body})`),
  );
  const memory = new WebAssembly.Memory({ initial: PAGES, maximum: PAGES, shared: true });
  let preempts = 0;
  const module = await WebAssembly.compile(new Uint8Array(out.bytes));
  const inst = await WebAssembly.instantiate(module, {
    xen: {
      hypercall: () => 0,
      preempt: () => void preempts++,
      grow: () => -1,
    },
    env: { memory },
  });
  return {
    exports: inst.exports as unknown as Record<string, (...a: number[]) => number>,
    u8: new Uint8Array(memory.buffer),
    preempts: () => preempts,
  };
}

test("memory.copy in pieces is memmove: overlaps either way, sizes around the piece size", async () => {
  const { exports, u8, preempts } = await instance(
    `(func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))`,
  );
  const model = new Uint8Array(u8.length);
  let seed = 7;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  for (let i = 0; i < u8.length; i++) u8[i] = model[i] = i * 31 + (i >> 9);
  const sizes = [0, 1, BULK_CHUNK - 1, BULK_CHUNK, BULK_CHUNK + 1, 3 * BULK_CHUNK + 17, 1 << 20];
  for (const n of sizes) {
    for (const shift of [0, 1, -1, 4096, -4096, BULK_CHUNK + 3, -(BULK_CHUNK + 3), 1 << 21]) {
      const s = 65536 + rnd(1 << 20);
      const d = s + shift;
      if (d < 0 || d + n > u8.length || s + n > u8.length) continue;
      exports.copy!(d, s, n);
      model.copyWithin(d, s, s + n);
      assert.ok(Buffer.compare(u8, model) === 0, `copy(${d}, ${s}, ${n}) differs from memmove`);
    }
  }
  assert.ok(preempts() > 0, "large copies checked for preemption between pieces");
});

test("a bulk instruction out of bounds traps before writing anything", async () => {
  const { exports, u8 } = await instance(
    `(func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
     (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))`,
  );
  u8.fill(0);
  u8.fill(9, 0, 1 << 20);
  const end = PAGES * 65536;
  assert.throws(
    () => exports.fill!(end - 3 * BULK_CHUNK, 5, 4 * BULK_CHUNK),
    WebAssembly.RuntimeError,
  );
  assert.throws(
    () => exports.copy!(end - 3 * BULK_CHUNK, 0, 4 * BULK_CHUNK),
    WebAssembly.RuntimeError,
  );
  assert.throws(
    () => exports.copy!(0, end - 3 * BULK_CHUNK, 4 * BULK_CHUNK),
    WebAssembly.RuntimeError,
  );
  assert.throws(() => exports.fill!(0xffff0000, 5, 0x20000), WebAssembly.RuntimeError);
  assert.equal(
    u8.subarray(end - 4 * BULK_CHUNK).some((b) => b !== 0),
    false,
    "nothing written at the end",
  );
  assert.equal(
    u8.subarray(0, 1 << 20).every((b) => b === 9),
    true,
    "nothing written at the start",
  );
  exports.fill!(100, 3, 3 * BULK_CHUNK + 5);
  assert.equal(u8[99], 9);
  assert.equal(u8[100 + 3 * BULK_CHUNK + 4], 3);
  assert.equal(u8[100 + 3 * BULK_CHUNK + 5], 9);
});

test("kernels using features tsxen refuses are refused by the feature's name", () => {
  const wrap = (body: string, hc = "(param i32 i32 i32 i32 i32 i32) (result i32)"): Uint8Array =>
    watBinary(`(module
      (import "xen" "hypercall" (func $hc ${hc}))
      (import "env" "memory" (memory 1 65536 shared))
      ${body})`);
  const rows: Array<[string, string, RegExp]> = [
    [
      "tail calls",
      `(func $f (export "_start") (param i32) (return_call $f (local.get 0)))`,
      /kernel uses tail calls/,
    ],
    [
      "exceptions",
      `(tag $e) (func (export "_start") (param i32) (throw $e))`,
      /kernel uses exception handling/,
    ],
    [
      "xen.grow is the hypervisor's",
      `(import "xen" "grow" (func (param i32) (result i32))) (func (export "_start") (param i32))`,
      /kernel imports xen\.grow, which belongs to the hypervisor/,
    ],
    [
      "a huge table",
      `(table 2000000 funcref) (func (export "_start") (param i32))`,
      /table .* has 2000000 entries; at most 1048576/,
    ],
  ];
  // Found by the kernel fuzzer: a hypercall import of another type broke instrumentation.
  assert.throws(
    () =>
      instrumentKernel(
        wrap(
          `(func (export "_start") (param i32) (drop (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const 0))))`,
          "(param i32 i32 i32 i32 v128 i32) (result i32)",
        ),
      ),
    /kernel imports xen\.hypercall with the wrong type/,
  );
  for (const [what, body, msg] of rows) {
    let bytes: Uint8Array;
    try {
      bytes = wrap(body);
    } catch (e) {
      assert.fail(`${what}: Binaryen could not parse the test module: ${String(e)}`);
    }
    assert.throws(() => instrumentKernel(bytes), msg, what);
  }
});
