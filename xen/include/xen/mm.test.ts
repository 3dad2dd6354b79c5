import { test } from "node:test";
import assert from "node:assert/strict";
import { _gfn, _mfn, _pfn, gfn_to_pfn, paddr_to_pfn, pfn_to_paddr, type Pfn } from "./mm.js";

test("frame conversions keep their numbers", () => {
  assert.equal(pfn_to_paddr(_pfn(3)), 3 * 4096);
  assert.equal(paddr_to_pfn(8191), 1);
  assert.equal(gfn_to_pfn(_gfn(42)), 42);
});

test("the compiler keeps mfn, gfn and pfn apart", () => {
  const takesPfn = (p: Pfn): number => p;
  // @ts-expect-error an mfn is not a pfn
  takesPfn(_mfn(1));
  // @ts-expect-error a gfn is not a pfn
  takesPfn(_gfn(1));
  // @ts-expect-error a plain number is not a pfn
  takesPfn(1);
  assert.equal(takesPfn(_pfn(1)), 1);
});
