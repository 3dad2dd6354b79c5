import { test } from "node:test";
import assert from "node:assert/strict";
import { Timer, TimerQueue } from "./timer.js";
import { NOW } from "./time.js";

test("timers fire in deadline order, stopped ones never", async () => {
  const q = new TimerQueue();
  const fired: number[] = [];
  const ts = [30, 10, 20, 40].map((ms) => {
    const t = new Timer(() => fired.push(ms));
    q.set(t, NOW() + ms * 1e6);
    return t;
  });
  q.stop(ts[3]!);
  assert.equal(q.size, 3);
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(fired, [10, 20, 30]);
  assert.equal(q.size, 0);
  q.dispose();
});

test("a deadline beyond setTimeout's range neither fires nor spins", async () => {
  const q = new TimerQueue();
  let fired = 0;
  q.set(new Timer(() => fired++), NOW() + 1e18);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(fired, 0);
  assert.equal(q.size, 1);
  q.dispose();
});

test("a timer that throws is reported and the others still fire", async () => {
  const errors: unknown[] = [];
  const q = new TimerQueue((e) => errors.push(e));
  const fired: string[] = [];
  q.set(
    new Timer(() => {
      throw new Error("boom");
    }),
    NOW() + 5e6,
  );
  q.set(new Timer(() => fired.push("after")), NOW() + 6e6);
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(fired, ["after"]);
  assert.equal((errors[0] as Error).message, "boom");
  q.dispose();
});
