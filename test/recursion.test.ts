/**
 * Self-recursion split (xen/arch/wasm32/recursion.ts): which functions it
 * takes, that Binaryen then inlines the copy, and that results do not change.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import binaryen from "binaryen";
import { wasmExports, watBinary } from "./helpers.js";
import { MAX_RECURSIVE_NODES, splitSelfRecursion } from "../xen/arch/wasm32/recursion.js";

const WAT = `(module
  ;; small and self-recursive: split
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_s (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add
        (call $fib (i32.sub (local.get $n) (i32.const 1)))
        (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  ;; self-recursive with a local and a loop: split
  (func $sum (export "sum") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (if (i32.le_s (local.get $n) (i32.const 0)) (then (return (i32.const 0))))
    (loop $L (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (local.set $s (i32.add (local.get $s) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $L))))
    (i32.add (local.get $s) (call $sum (i32.sub (local.get $n) (i32.const 3)))))
  ;; mutually recursive: left alone
  (func $even (export "even") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 1))
      (else (call $odd (i32.sub (local.get $n) (i32.const 1))))))
  (func $odd (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
      (else (call $even (i32.sub (local.get $n) (i32.const 1))))))
  ;; self-recursive but larger than MAX_RECURSIVE_NODES: left alone
  (func $big (export "big") (param $n i32) (result i32)
    (if (result i32) (i32.le_s (local.get $n) (i32.const 0)) (then (i32.const 1))
      (else (i32.add ${"(i32.add (i32.const 1) ".repeat(MAX_RECURSIVE_NODES)}
        (call $big (i32.sub (local.get $n) (i32.const 1)))${")".repeat(MAX_RECURSIVE_NODES)}
        (i32.const 0))))))`;

type Fns = Record<"fib" | "sum" | "even" | "big", (n: number) => number>;

const instantiate = (bytes: Uint8Array): Promise<Fns> => wasmExports<Fns>(bytes);

test("small self-recursive functions get one level of themselves inlined; results do not change", async () => {
  const before = watBinary(WAT);
  const m = binaryen.parseText(WAT);
  try {
    assert.equal(splitSelfRecursion(m), 2, "fib and sum; not even/odd or big");
    binaryen.setAlwaysInlineMaxSize(MAX_RECURSIVE_NODES);
    m.runPasses(["inlining", "remove-unused-module-elements"]);
    assert.ok(m.validate(), "the module validates");
    const text = m.emitText();
    assert.doesNotMatch(text, /\(func \$\S*tsxen_recursion/, "every copy was inlined");
    // fib now calls itself four times: two levels in one body.
    const start = text.indexOf("(func $fib (");
    const fib = text.slice(start, text.indexOf("\n (func", start + 1));
    assert.equal(fib.match(/\(call \$fib/g)?.length, 4);
    const a = await instantiate(before);
    const b = await instantiate(m.emitBinary());
    for (const n of [0, 1, 2, 3, 5, 10, 20]) {
      for (const f of ["fib", "sum", "even", "big"] as const) {
        assert.equal(b[f](n), a[f](n), `${f}(${n})`);
      }
    }
  } finally {
    m.dispose();
  }
});
