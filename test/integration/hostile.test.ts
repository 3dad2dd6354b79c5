/** Hostile guests: a hypercall fuzzer and a memory scribbler. Nobody else is touched. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { accountedFrames, kernel, newHost, until } from "../helpers.js";
import type { Domain } from "../../xen/common/domain.js";

/** Hash of the part of a domain's memory that is not written while it is paused. */
function memoryHash(d: Domain): string {
  return createHash("sha256").update(d.mem.u8).digest("hex");
}

for (const seed of [1, 2, 3]) {
  test(`fuzzing every implemented hypercall with wild arguments (seed ${seed}) corrupts nothing`, async () => {
    const host = newHost();
    try {
      // A bystander that never runs: its memory must come out bit-identical.
      const canary = await host.create({
        name: "canary",
        kernel: await kernel("ticker"),
        memory: 2,
        paused: true,
      });
      const before = memoryHash(canary);
      const fuzz = await host.create({
        name: "fuzz",
        kernel: await kernel("fuzz"),
        memory: 4,
        maxmem: 8,
        cmdline: `${seed} 20000`,
      });
      const reason = await host.waitShutdown(fuzz.domid, 60_000);
      assert.equal(reason, "poweroff", `fuzzer ended with ${reason}: ${fuzz.crashMessage ?? ""}`);
      assert.match(host.readConsole(fuzz.domid), /fuzz: survived 20000 hypercalls, \d+ errors/);
      assert.equal(memoryHash(canary), before, "the bystander's memory changed");
      assert.equal(canary.runState, "paused");
      assert.equal(accountedFrames(host), host.hv.frames.totalFrames, "frame books do not balance");
      assert.ok(
        fuzz.totPages <= fuzz.maxPages,
        `tot_pages ${fuzz.totPages} > max_pages ${fuzz.maxPages}`,
      );
      // Unimplemented hypercalls were reported once each, by name.
      const enosys =
        host
          .dmesg()
          .match(
            new RegExp(`d${fuzz.domid}: hypercall mmu_update \\(1\\) is not implemented`, "g"),
          ) ?? [];
      assert.equal(enosys.length, 1);
      host.destroy(fuzz.domid);
      host.destroy(canary.domid);
      assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
    } finally {
      await host.shutdown();
    }
  });
}

test("a guest scribbling over all its memory, save areas included, is still preempted and hurts only itself", async () => {
  const host = newHost();
  try {
    const ticker = await host.create({ name: "ticker", kernel: await kernel("ticker"), memory: 2 });
    const canary = await host.create({
      name: "canary",
      kernel: await kernel("spin"),
      memory: 2,
      paused: true,
    });
    const before = memoryHash(canary);
    const s = await host.create({
      name: "scribble",
      kernel: await kernel("scribble"),
      memory: 2,
      vcpus: 1,
      maxvcpus: 2,
    });
    const ticks: number[] = [];
    host.onConsole(ticker.domid, () => ticks.push(performance.now()));
    await until(() => ticks.length >= 3, 8000, "three ticks beside the scribbler");
    for (let i = 1; i < ticks.length; i++) {
      const gap = ticks[i]! - ticks[i - 1]!;
      assert.ok(Math.abs(gap - 1000) < 100, `tick gap ${gap.toFixed(1)} ms`);
    }
    for (const v of s.vcpus) {
      assert.ok(
        v.longestSliceUs < 50_000,
        `scribbler vcpu${v.id} ran ${v.longestSliceUs} µs in one slice`,
      );
    }
    assert.ok(s.vcpus[1]!.cpuTimeNs > 0, "the scribbling vCPU never ran");
    assert.ok(["running", "blocked", "crashed"].includes(s.runState), s.runState);
    assert.equal(memoryHash(canary), before);
    assert.notEqual(ticker.runState, "crashed");
    host.destroy(s.domid);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  } finally {
    await host.shutdown();
  }
});

test("a stack too deep to deschedule crashes its domain with a message that says so", async () => {
  const host = newHost();
  try {
    const d = await host.create({ name: "deep", kernel: await kernel("deep"), memory: 2 });
    assert.equal(await host.waitShutdown(d.domid), "crash");
    assert.match(d.crashMessage ?? "", /call stack is deeper than the vCPU's 8192-byte save area/);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  } finally {
    await host.shutdown();
  }
});
