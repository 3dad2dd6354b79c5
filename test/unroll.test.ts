/**
 * Loop unrolling (xen/arch/wasm32/unroll.ts): which loops it takes, and that
 * an unrolled module computes what the original does, for loops of every
 * shape it meets, including ones it must leave alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import binaryen from "binaryen";
import { wasmExports, watBinary } from "./helpers.js";
import { unrollLoops, UNROLL_FACTOR } from "../xen/arch/wasm32/unroll.js";

/** Each function takes n and returns an i32; comments say what must happen to its loop. */
const WAT = `(module
  (memory 1)
  ;; for (i = 0; i < n; i++) s += i * 3: unrolled
  (func (export "sum") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $L (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (local.set $s (i32.add (local.get $s) (i32.mul (local.get $i) (i32.const 3))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $L))))
    (local.get $s))
  ;; a break through the then block's own label: unrolled, the label kept
  (func (export "brk") (param $n i32) (result i32) (local $i i32)
    (loop $L (if (i32.lt_s (local.get $i) (i32.const 1000)) (then (block $b
      (br_if $b (i32.eq (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $L)))))
    (local.get $i))
  ;; a continue (another branch to the loop head): left alone
  (func (export "cont") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $L (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $L (i32.and (local.get $i) (i32.const 1)))
      (local.set $s (i32.add (local.get $s) (local.get $i)))
      (br $L))))
    (local.get $s))
  ;; nested loops: the inner one unrolled, then the outer one, with copies of the unrolled inner one
  (func (export "nest") (param $n i32) (result i32) (local $i i32) (local $j i32) (local $s i32)
    (loop $O (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (local.set $j (i32.const 0))
      (loop $I (if (i32.lt_s (local.get $j) (local.get $i)) (then
        (i32.store8 (local.get $j) (i32.add (i32.load8_u (local.get $j)) (i32.const 1)))
        (local.set $s (i32.add (local.get $s) (i32.load8_u (local.get $j))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $I))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $O))))
    (local.get $s))
  ;; a condition with a side effect, evaluated once per iteration and once at the end
  (func (export "side") (param $n i32) (result i32) (local $c i32) (local $d i32)
    (loop $L (if (i32.lt_s
        (local.tee $c (i32.add (local.get $c) (i32.const 1)))
        (local.get $n))
      (then
        (local.set $d (i32.add (local.get $d) (local.get $c)))
        (br $L))))
    (i32.add (local.get $c) (i32.mul (local.get $d) (i32.const 1000))))
  ;; a label inside the body: unrolled, each copy with a label of its own
  (func (export "inner") (param $n i32) (result i32) (local $i i32)
    (loop $L (if (i32.lt_s (local.get $i) (local.get $n)) (then
      (block $x (br_if $x (i32.const 1)) (unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $L))))
    (local.get $i))
  ;; do { s += i; i++ } while (i < n): unrolled
  (func (export "dosum") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (loop $L
      (local.set $s (i32.add (local.get $s) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $L (i32.lt_s (local.get $i) (local.get $n))))
    (local.get $s))
  ;; a do-while left through its body's label: unrolled, the label kept
  (func (export "dobrk") (param $n i32) (result i32) (local $i i32)
    (loop $L (block $d
      (br_if $d (i32.ge_s (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 2)))
      (br_if $L (i32.lt_s (local.get $i) (i32.const 1000)))))
    (local.get $i))
  ;; a do-while that yields a value: left alone
  (func (export "doval") (param $n i32) (result i32) (local $i i32)
    (loop $L (result i32)
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $L (i32.lt_s (local.get $i) (local.get $n)))
      (local.get $i))))`;

const NAMES = ["sum", "brk", "cont", "nest", "side", "inner", "dosum", "dobrk", "doval"] as const;
type Fns = Record<(typeof NAMES)[number], (n: number) => number>;

const instantiate = (bytes: Uint8Array): Promise<Fns> => wasmExports<Fns>(bytes);

test("loops of the unrollable shape are unrolled, nested ones too; others are left alone; results do not change", async () => {
  const before = watBinary(WAT);
  const m = binaryen.parseText(WAT);
  try {
    // All but cont and doval: sum, brk, nest's two loops, side, inner, dosum, dobrk.
    assert.equal(unrollLoops(m), 8);
    assert.ok(m.validate(), "the unrolled module validates");
    const text = m.emitText();
    // nest's outer loop holds UNROLL_FACTOR copies of the inner one, each
    // with a name of its own; inner's block $x is renamed in all but one copy.
    assert.equal(text.match(/\(loop \$I/g)?.length, UNROLL_FACTOR);
    assert.equal(new Set(text.match(/\(loop \$I\S*/g)).size, UNROLL_FACTOR);
    assert.equal(new Set(text.match(/\(block \$x\S*/g)).size, UNROLL_FACTOR);
    assert.match(text, /\(block \$b/, "brk's exit block keeps its label");
    assert.match(text, /\(block \$d/, "dobrk's exit block keeps its label");
    const a = await instantiate(before);
    const b = await instantiate(m.emitBinary());
    for (const n of [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 100, 1001]) {
      for (const f of NAMES) {
        assert.equal(b[f](n), a[f](n), `${f}(${n})`);
      }
    }
  } finally {
    m.dispose();
  }
});
