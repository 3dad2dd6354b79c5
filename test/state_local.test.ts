/**
 * Asyncify's state in a local (xen/arch/wasm32/state_local.ts): after the
 * pass, a function reads Asyncify's state global only at entry and after its
 * calls, and unwinding and rewinding through it (from inside a loop, many
 * times over) still gives the result an uninterrupted run gives.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import binaryen from "binaryen";
import { stateInLocals } from "../xen/arch/wasm32/state_local.js";

const WAT = `(module
  (import "env" "pause" (func $pause))
  (memory (export "memory") 1)
  (func $step (param $x i32) (result i32)
    (call $pause)
    (i32.add (i32.mul (local.get $x) (i32.const 3)) (i32.const 1)))
  (func (export "run") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $L (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (call $pause)
      (local.set $s (i32.xor (local.get $s) (call $step (local.get $i))))
      (local.set $s (i32.rotl (local.get $s) (i32.const 5)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $L))))
    (local.get $s)))`;

const STATE = "__asyncify_state";
/** Where the unwound stack is kept: the data header at 16, the stack from 64 on. */
const DATA = 16;

interface Exports {
  memory: WebAssembly.Memory;
  run(n: number): number;
  asyncify_start_unwind(data: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(data: number): void;
  asyncify_stop_rewind(): void;
}

/** The module through Asyncify, with or without the pass; and how many reads of the state each function has. */
function build(pass: boolean): { bytes: Uint8Array; moved: number; reads: number[] } {
  const m = binaryen.parseText(WAT);
  try {
    binaryen.setPassArgument("asyncify-imports", "env.pause");
    m.runPasses(["asyncify"]);
    const moved = pass ? stateInLocals(m, STATE) : 0;
    assert.ok(m.validate());
    const text = m.emitText();
    const reads = text
      .split("\n (func ")
      .slice(1)
      .map((f) => f.split(`(global.get $${STATE})`).length - 1);
    m.optimize();
    return { bytes: m.emitBinary(), moved, reads };
  } finally {
    binaryen.clearPassArguments();
    m.dispose();
  }
}

/** Runs `run(n)`, unwinding out of every `every`-th pause and rewinding back in. */
async function runWithUnwinds(bytes: Uint8Array, n: number, every: number): Promise<number[]> {
  let pauses = 0;
  let rewinding = false;
  const pause = (): void => {
    if (rewinding) {
      rewinding = false;
      x.asyncify_stop_rewind();
      return;
    }
    if (++pauses % every === 0) x.asyncify_start_unwind(DATA);
  };
  const module = await WebAssembly.compile(new Uint8Array(bytes));
  const instance = await WebAssembly.instantiate(module, { env: { pause } });
  // pause runs only inside run, once x is set.
  const x = instance.exports as unknown as Exports;
  const header = new Int32Array(x.memory.buffer, DATA, 2);
  header[0] = 64;
  header[1] = 4096;
  let unwinds = 0;
  let result = x.run(n);
  for (;;) {
    if (header[0] === 64) break; // nothing was saved: the run finished
    x.asyncify_stop_unwind();
    unwinds++;
    rewinding = true;
    x.asyncify_start_rewind(DATA);
    result = x.run(n);
  }
  return [result, unwinds];
}

test("functions read Asyncify's state from a local, reloaded at entry and after each call", () => {
  const before = build(false);
  const after = build(true);
  assert.ok(after.moved >= 2, `step and run take the local (${after.moved})`);
  // step has one call: 1 + 1 reads, against Asyncify's many. run's loop
  // has two calls and is there twice (a normal pass's copy and the rewind
  // copy): 1 + 2 × 2.
  const [step, run] = after.reads;
  assert.equal(step, 2);
  assert.equal(run, 5);
  assert.ok(before.reads[1]! > run!, `Asyncify alone reads it more (${before.reads[1]})`);
});

test("unwinding and rewinding through the pass's output gives an uninterrupted run's result", async () => {
  const plain = build(false).bytes;
  const passed = build(true).bytes;
  for (const [n, every] of [
    [0, 1],
    [1, 1],
    [10, 1],
    [57, 2],
    [200, 7],
  ] as const) {
    const [expected] = await runWithUnwinds(plain, n, 1_000_000);
    const [got, unwinds] = await runWithUnwinds(passed, n, every);
    assert.equal(got, expected, `run(${n}) unwinding every ${every} pauses`);
    assert.equal(unwinds, Math.floor((2 * n) / every), `run(${n}): unwinds`);
  }
});
