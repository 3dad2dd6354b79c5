/** The example guests in a real host: hello, ticker beside spin, pause, crash. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { kernel, newHost, sleep, until } from "../helpers.js";
import type { Domain } from "../../xen/common/domain.js";

test("hello prints its domid and command line, then powers off", async () => {
  const host = newHost();
  try {
    const d = await host.create({
      name: "hello",
      kernel: await kernel("hello"),
      memory: 2,
      cmdline: "a b=c",
    });
    assert.equal(await host.waitShutdown(d.domid), "poweroff");
    assert.equal(
      host.readConsole(d.domid),
      `Hello from tsxen! This is domain ${d.domid}, command line: 'a b=c'\n`,
    );
    assert.doesNotMatch(host.dmesg(), /Hello from tsxen/, "guest output is not the hypervisor's");
    assert.equal(host.list().find((r) => r.domid === d.domid)?.stateFlags, "---s--");
  } finally {
    await host.shutdown();
  }
});

test("ticker keeps a one-second rhythm while two spin guests run", async () => {
  const host = newHost();
  try {
    const spin = await kernel("spin");
    const s1 = host.createSync({ name: "spin1", kernel: spin, memory: 2 });
    const s2 = host.createSync({ name: "spin2", kernel: spin, memory: 2 });
    const t = await host.create({ name: "ticker", kernel: await kernel("ticker"), memory: 2 });
    const stamps: number[] = [];
    host.onConsole(t.domid, (s) => {
      if (s.includes("tick")) stamps.push(performance.now());
    });
    await until(() => stamps.length >= 4, 8000, "four ticks");
    const gaps = stamps.slice(1).map((x, i) => x - stamps[i]!);
    for (const g of gaps)
      assert.ok(Math.abs(g - 1000) < 100, `tick gap ${g.toFixed(1)} ms is not 1 s ± 100 ms`);
    // Both spinners really ran, and were descheduled within a few slices' time.
    for (const d of [s1, s2]) {
      assert.ok(
        d.vcpus[0]!.cpuTimeNs > 5e8,
        `spin d${d.domid} ran ${d.vcpus[0]!.cpuTimeNs / 1e6} ms`,
      );
      assert.ok(
        d.vcpus[0]!.longestSliceUs < 50_000,
        `longest slice ${d.vcpus[0]!.longestSliceUs} µs`,
      );
    }
    // The ticker blocks between ticks: its upcall clears the pending event, or
    // SCHEDOP_block would return at once and it would spin.
    assert.ok(
      t.vcpus[0]!.cpuTimeNs < 100e6,
      `ticker used ${t.vcpus[0]!.cpuTimeNs / 1e6} ms of CPU`,
    );
    const guestMs = [...host.readConsole(t.domid).matchAll(/at (\d+) ms/g)].map((m) =>
      Number(m[1]),
    );
    guestMs.forEach((ms, i) =>
      assert.ok(Math.abs(ms - 1000 * (i + 1)) < 100, `guest saw tick ${i + 1} at ${ms} ms`),
    );
  } finally {
    await host.shutdown();
  }
});

test("spin can be paused, unpaused and destroyed", async () => {
  const host = newHost();
  try {
    const free0 = host.hv.frames.freeFrames;
    const d = await host.create({ name: "spin", kernel: await kernel("spin"), memory: 8 });
    assert.equal(host.hv.frames.freeFrames, free0 - 8 * 256);
    await sleep(100);
    host.pause(d.domid);
    const r = host.list().find((x) => x.domid === d.domid)!;
    assert.equal(r.stateFlags, "--p---");
    const cpu = d.vcpus[0]!.cpuTimeNs;
    assert.ok(cpu > 0);
    await sleep(150);
    assert.equal(d.vcpus[0]!.cpuTimeNs, cpu, "a paused domain must not run");
    host.unpause(d.domid);
    await sleep(150);
    assert.ok(d.vcpus[0]!.cpuTimeNs > cpu + 50e6, "an unpaused domain runs again");
    assert.throws(() => host.unpause(d.domid), /is not paused/);
    host.destroy(d.domid);
    assert.equal(host.hv.domains.has(d.domid), false);
    assert.equal(host.hv.frames.freeFrames, free0);
    assert.equal(host.hv.timers.size, 0);
    assert.equal(host.hv.sched.queued, 0);
    assert.throws(() => host.destroy(d.domid), /does not exist/);
  } finally {
    await host.shutdown();
  }
});

test("crash ends crashed, and the console names the trap and the domain", async () => {
  const host = newHost();
  try {
    const bystander = await host.create({
      name: "ticker",
      kernel: await kernel("ticker"),
      memory: 2,
    });
    const d = await host.create({ name: "crash", kernel: await kernel("crash"), memory: 2 });
    assert.equal(await host.waitShutdown(d.domid), "crash");
    assert.equal(d.runState, "crashed");
    assert.equal(host.list().find((r) => r.domid === d.domid)?.stateFlags, "---sc-");
    assert.match(
      host.dmesg(),
      new RegExp(`Domain ${d.domid} \\(crash\\) vcpu#0 crashed: wasm trap: unreachable`),
    );
    assert.equal(d.crashMessage, "wasm trap: unreachable");
    assert.equal(host.readConsole(d.domid), "crash: about to trap\n");
    assert.equal(bystander.runState === "running" || bystander.runState === "blocked", true);
  } finally {
    await host.shutdown();
  }
});

test("1,000 hello domains created and destroyed leave the books where they started", async () => {
  const host = newHost();
  try {
    const k = await kernel("hello");
    const free0 = host.hv.frames.freeFrames;
    const total = host.hv.frames.totalFrames;
    for (let batch = 0; batch < 10; batch++) {
      const ds: Domain[] = [];
      for (let i = 0; i < 100; i++)
        ds.push(host.createSync({ name: `hello-${batch}-${i}`, kernel: k, memory: 1 }));
      assert.equal(host.hv.frames.freeFrames, free0 - 100 * 256);
      await until(() => ds.every((d) => d.isShutdown), 10_000, "100 hellos to power off");
      for (const d of ds) host.destroy(d.domid);
    }
    assert.equal(host.hv.frames.freeFrames, free0);
    assert.equal(host.hv.frames.totalFrames, total);
    assert.equal(host.hv.domains.size, 0);
    assert.equal(host.hv.timers.size, 0);
  } finally {
    await host.shutdown();
  }
});

test("bad domain configs are refused with a message that names the problem", async () => {
  const host = newHost(64 * 1024 ** 2 + 256 * 1024 ** 2);
  try {
    const k = await kernel("hello");
    const free0 = host.hv.frames.freeFrames;
    assert.throws(
      () => host.createSync({ name: "x", kernel: k, memory: 0 }),
      /memory=0 is not a positive/,
    );
    assert.throws(
      () => host.createSync({ name: "x", kernel: k, memory: 4, maxmem: 2 }),
      /maxmem=2 is less than memory=4/,
    );
    assert.throws(
      () => host.createSync({ name: "x", kernel: k, memory: 128 }),
      /not enough free machine memory/,
    );
    assert.throws(
      () => host.createSync({ name: "x", kernel: k, memory: 2, vcpus: 2 }),
      /no _start_vcpu export/,
    );
    assert.throws(
      () => host.createSync({ name: "x", kernel: k, memory: 2, vcpus: 17 }),
      /maxvcpus/,
    );
    assert.throws(
      () => host.createSync({ name: "x", kernel: k, memory: 2, domid: 0x7ff0 }),
      /domid 32752 is reserved/,
    );
    assert.throws(
      () => host.createSync({ name: "x", kernel: k, memory: 2, cmdline: "x".repeat(1024) }),
      /longer than 1023/,
    );
    const d = host.createSync({ name: "x", kernel: k, memory: 2, domid: 7, paused: true });
    assert.throws(
      () => host.createSync({ name: "y", kernel: k, memory: 2, domid: 7 }),
      /domid 7 is in use/,
    );
    await assert.rejects(
      host.create({ name: "x", kernel: "/nonexistent.wasm", memory: 2 }),
      /kernel \/nonexistent.wasm: No such file or directory \(ENOENT\)/,
    );
    host.destroy(d.domid);
    assert.equal(host.hv.frames.freeFrames, free0);
  } finally {
    await host.shutdown();
  }
});

test("the scheduler shares the CPU by weight and enforces caps", async () => {
  const host = newHost();
  try {
    const spin = await kernel("spin");
    const heavy = host.createSync({ name: "w512", kernel: spin, memory: 2, weight: 512 });
    const light = host.createSync({ name: "w256", kernel: spin, memory: 2, weight: 256 });
    const capped = host.createSync({ name: "cap10", kernel: spin, memory: 2, cap: 10 });
    await sleep(1500);
    const cpu = (d: Domain): number => d.vcpus[0]!.cpuTimeNs;
    const total = cpu(heavy) + cpu(light) + cpu(capped);
    const ratio = cpu(heavy) / cpu(light);
    assert.ok(
      ratio > 1.5 && ratio < 2.7,
      `weight 512 vs 256 got a CPU ratio of ${ratio.toFixed(2)}`,
    );
    const share = cpu(capped) / total;
    assert.ok(share < 0.17, `cap 10 domain got ${(share * 100).toFixed(1)}% of the CPU`);
    assert.ok(share > 0.03, `cap 10 domain got only ${(share * 100).toFixed(1)}% of the CPU`);
  } finally {
    await host.shutdown();
  }
});
