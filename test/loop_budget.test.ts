/**
 * Loop budgets (xen/arch/wasm32/loop_budget.ts): with log-execution's checks
 * counted by a JS import, a call-free innermost loop is checked once every
 * LOOP_BUDGET iterations, a loop with a call in it on every iteration, and
 * results do not change.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import binaryen from "binaryen";
import { LOOP_BUDGET, budgetLoops } from "../xen/arch/wasm32/loop_budget.js";

const WAT = `(module
  (func $id (param i32) (result i32) (local.get 0))
  ;; call-free: budgeted
  (func (export "count") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $L (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (local.set $s (i32.add (local.get $s) (i32.xor (local.get $i) (i32.const 5))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $L))))
    (local.get $s))
  ;; a loop that yields a value and leaves through its body's label: budgeted
  (func (export "value") (param $n i32) (result i32) (local $i i32)
    (loop $L (result i32) (block $b (result i32)
      (local.set $i (i32.add (local.get $i) (i32.const 3)))
      (br_if $b (i32.mul (local.get $i) (i32.const 2)) (i32.ge_s (local.get $i) (local.get $n)))
      (br $L))))
  ;; a call in the body: checked on every iteration
  (func (export "calls") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $L (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (local.set $s (i32.add (local.get $s) (call $id (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $L))))
    (local.get $s)))`;

type Fns = Record<"count" | "value" | "calls", (n: number) => number>;

/** The module with log-execution's checks, budgeted or not; `checks` counts them. */
async function build(budget: boolean): Promise<{ fns: Fns; checks: { n: number } }> {
  const m = binaryen.parseText(WAT);
  try {
    m.runPasses(["log-execution"]);
    const taken = budget ? budgetLoops(m, "log_execution") : 0;
    if (budget) assert.equal(taken, 2, "count and value; not calls");
    assert.ok(m.validate());
    const checks = { n: 0 };
    const module = await WebAssembly.compile(new Uint8Array(m.emitBinary()));
    const instance = await WebAssembly.instantiate(module, {
      env: { log_execution: () => void checks.n++ },
    });
    return { fns: instance.exports as unknown as Fns, checks };
  } finally {
    m.dispose();
  }
}

test("call-free innermost loops are checked once every LOOP_BUDGET iterations; results do not change", async () => {
  const plain = await build(false);
  const budgeted = await build(true);
  for (const n of [0, 1, 5, LOOP_BUDGET - 1, LOOP_BUDGET, LOOP_BUDGET + 1, 1000]) {
    for (const f of ["count", "value", "calls"] as const) {
      assert.equal(budgeted.fns[f](n), plain.fns[f](n), `${f}(${n})`);
    }
  }
  const checks = async (f: keyof Fns, n: number): Promise<[number, number]> => {
    const counts: number[] = [];
    for (const b of [plain, budgeted]) {
      b.checks.n = 0;
      b.fns[f](n);
      counts.push(b.checks.n);
    }
    return [counts[0]!, counts[1]!];
  };
  const n = 100 * LOOP_BUDGET;
  const [before, after] = await checks("count", n);
  assert.ok(before > n, `plain: a check per iteration (${before})`);
  assert.ok(after <= n / LOOP_BUDGET + 3, `budgeted: about one per ${LOOP_BUDGET} (${after})`);
  const [withCall, withCallAfter] = await checks("calls", n);
  assert.equal(withCallAfter, withCall, "a loop with a call keeps a check per iteration");
});
