import { test } from "node:test";
import assert from "node:assert/strict";
import { FrameAllocator } from "./page_alloc.js";

test("frames are handed out until none are left, and come back", () => {
  const a = new FrameAllocator(4);
  const got = [a.alloc(1), a.alloc(1), a.alloc(2), a.alloc(2)];
  assert.equal(a.alloc(3), undefined);
  assert.equal(a.freeFrames, 0);
  assert.equal(a.ownerOf(got[2]!), 2);
  a.free(got[1]!);
  assert.equal(a.freeFrames, 1);
  assert.equal(a.ownerOf(got[1]!), -1);
  assert.throws(() => a.free(got[1]!), /freed twice/);
  assert.equal(a.alloc(5), got[1]);
});
