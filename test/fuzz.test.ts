/**
 * The fuzzers of test/fuzzers.ts, each with a fixed seed and a few seconds'
 * budget, so that every run of `npm test` tries the same inputs first; `npm
 * run fuzz` runs them longer with new seeds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  fuzzCfg,
  fuzzHvmImages,
  fuzzHypercalls,
  fuzzKernels,
  fuzzQcow2,
  fuzzWasiCalls,
  type FuzzReport,
} from "./fuzzers.js";

const BUDGET_MS = 3000;

function held(rep: FuzzReport, refusals = true): void {
  assert.deepEqual(rep.failures, [], `${rep.name}, seed ${rep.seed}`);
  assert.ok(rep.iterations > 10, `${rep.name}: only ${rep.iterations} inputs in the budget`);
  if (refusals)
    assert.ok(rep.refused > 0, `${rep.name}: no input was refused, so none was hostile`);
}

test("fuzzed guest modules are refused with an Error or run preemptibly", async () => {
  held(await fuzzKernels(1, BUDGET_MS));
});

test("fuzzed qcow2 images are refused or served within bounds, with no fd left open", () => {
  held(fuzzQcow2(2, BUDGET_MS));
});

test("fuzzed xl.cfg files parse or are refused with an Error, quickly", () => {
  held(fuzzCfg(3, BUDGET_MS));
});

test("fuzzed hypercall arguments: every call's work is bounded, and the books balance", async () => {
  // Hypercalls answer with errors, not refusals: there is nothing to count.
  held(await fuzzHypercalls(4, BUDGET_MS), false);
});

test("fuzzed WASI programs are refused with an Error or run as HVM guests, and their loop checks always compile", async () => {
  held(await fuzzHvmImages(5, BUDGET_MS));
});

test("fuzzed WASI calls answer an errno, touch nothing outside their share, and leak no descriptor", () => {
  held(fuzzWasiCalls(6, BUDGET_MS));
});
