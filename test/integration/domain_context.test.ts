/**
 * A paused PV domain's whole state moves into a new domain and runs on
 * where it was (xen/common/domain_context.ts, the core of #18's save and
 * restore): its pages, each vCPU's unwound stacks, globals, continuations
 * and timers, and its event channel table. The new domain is built as the
 * builder builds one (createdomain, populate_physmap, the module bound by
 * hash), then given the context instead of a start.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { XcInterface } from "../../tools/libxc/xc.js";
import { LocalHypercalls } from "../../tools/libxc/channel.js";
import {
  ContextError,
  type DomainContext,
  decodeContext,
  encodeContext,
  restoreDomainContext,
  saveDomainContext,
} from "../../xen/common/domain_context.js";
import type { Host } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import { kernel, newHost, sleep, until } from "../helpers.js";
import { shared_info, vcpu_info, vcpu_time_info } from "../../xen/include/public/arch-wasm32.js";

/** `d`'s system time and wallclock as its vCPU 0 reads them (vcpu_time_info, shared_info), in ns. */
function guestClock(host: Host, d: Domain): { stime: number; wallclock: number } {
  const v = d.vcpus[0]!;
  host.hv.updateVcpuTime(v);
  const t = v.vcpuInfoAddr + vcpu_info.fields.time.offset;
  const stime = Number(d.mem.u64(t + vcpu_time_info.fields.system_time.offset));
  const f = shared_info.fields;
  const a = d.sharedInfoAddr;
  const wc = d.mem.u32(a + f.wc_sec.offset) * 1e9 + d.mem.u32(a + f.wc_nsec.offset);
  return { stime, wallclock: wc + stime };
}

/** A ticker that has ticked `ticks` times, paused. */
async function pausedTicker(host: Host, ticks: 1 | 2): Promise<Domain> {
  const a = host.createSync({ name: "ticker", kernel: await kernel("ticker"), memory: 4 });
  const what = ticks === 1 ? "a tick" : "two ticks";
  await until(() => host.readConsole(a.domid).includes(`tick ${ticks}`), 5000, what);
  host.pause(a.domid);
  return a;
}

/**
 * A new domain built through the builder's hypercalls with `a`'s pages and
 * module, not yet given a context.
 */
async function copyOf(host: Host, a: Domain): Promise<Domain> {
  const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
  const domid = await xc.domainCreate(0, {
    handle: new Uint8Array(16),
    maxVcpus: a.vcpus.length,
    maxEvtchnPort: 0,
    maxGrantFrames: -1,
    maxMaptrackFrames: -1,
  });
  await xc.domainSetMaxMem(domid, a.maxPages * 4);
  const pfns = [...Array(a.nrPfns).keys()].filter((p) => a.isPopulated(p as never));
  await xc.populatePhysmapExact(domid, pfns);
  const from = host.dom0.privcmd.mmapBatchV2(a.domid, pfns).pages;
  const to = host.dom0.privcmd.mmapBatchV2(domid, pfns).pages;
  pfns.forEach((_, i) => to[i]!.set(from[i]!));
  const bound = await xc.wasm32ModuleBind(domid, Buffer.from(a.kernel!.hash, "hex"));
  assert.equal(typeof bound, "object", "the hypervisor has the module");
  const b = host.hv.domainById(domid)!;
  // It writes its console with console_io, as the original did.
  b.isConsole = a.isConsole;
  return b;
}

/**
 * A copy of `a` (copyOf) given `a`'s context: taken now, or `ctx`, taken
 * earlier while `a` stayed paused.
 */
async function cloneDomain(
  host: Host,
  a: Domain,
  ctx: DomainContext = saveDomainContext(host.hv, a),
): Promise<Domain> {
  const b = await copyOf(host, a);
  restoreDomainContext(host.hv, b, ctx);
  return b;
}

test("a ticking guest moves to a new domain and ticks on from where it was", async () => {
  const host = newHost();
  try {
    const a = await pausedTicker(host, 2);
    await assert.rejects(
      (async () =>
        saveDomainContext(
          host.hv,
          host.createSync({ name: "r", kernel: await kernel("ticker"), memory: 4 }),
        ))(),
      ContextError,
      "a running domain cannot be saved",
    );
    const b = await cloneDomain(host, a);
    host.destroy(a.domid);
    host.unpause(b.domid);
    await until(
      () => host.readConsole(b.domid).includes("tick 4"),
      5000,
      "ticks in the new domain",
    );
    const out = host.readConsole(b.domid);
    assert.doesNotMatch(out, /tick [12] /, "it did not start again");
    assert.match(out, /tick 3 at (\d+) ms/);
    const ms = Number(/tick 3 at (\d+) ms/.exec(out)![1]);
    assert.ok(
      ms >= 2900 && ms < 4000,
      `tick 3 came ${ms} ms after the guest's start: its clock carried on`,
    );
  } finally {
    await host.shutdown();
  }
});

test("a restored domain's clock goes on from the saved time, on a host whose clock is anywhere; its wallclock stays the host's", async () => {
  const host = newHost();
  try {
    const a = await pausedTicker(host, 2);
    const saved = saveDomainContext(host.hv, a);
    // Time spent saved does not count: the clock stops with the saved state.
    await sleep(1500);
    const b = await cloneDomain(host, a, saved);
    const before = saved.guestNowNs;
    host.destroy(a.domid);
    const after = guestClock(host, b);
    assert.ok(
      after.stime - before >= 0 && after.stime - before < 200e6,
      `its system time went on from ${before}, at ${after.stime}`,
    );
    assert.ok(Math.abs(after.wallclock - Date.now() * 1e6) < 50e6, "its wallclock is the host's");
    host.unpause(b.domid);
    await until(() => host.readConsole(b.domid).includes("tick 3"), 5000, "tick 3");
    const ms = Number(/tick 3 at (\d+) ms/.exec(host.readConsole(b.domid))![1]);
    assert.ok(ms >= 2900 && ms < 3500, `tick 3 at ${ms} ms of its own time, not 1.5 s later`);

    // A host whose clock is far ahead (one that has run for days): the
    // domain's time, timers and wallclock are as they were.
    host.pause(b.domid);
    const ctx = saveDomainContext(host.hv, b);
    const c = await copyOf(host, b);
    const days = 3 * 86400e9;
    // As if saved on a host that had run three days longer than this one.
    restoreDomainContext(host.hv, c, {
      ...ctx,
      guestNowNs: ctx.guestNowNs + days,
      vcpus: ctx.vcpus.map((v) => ({
        ...v,
        singleshotNs: v.singleshotNs >= 0 ? v.singleshotNs + days : -1,
      })),
    });
    host.destroy(b.domid);
    const clock = guestClock(host, c);
    assert.ok(clock.stime >= ctx.guestNowNs + days, "its time is the saved one");
    assert.ok(Math.abs(clock.wallclock - Date.now() * 1e6) < 50e6, "its wallclock is the host's");
    host.unpause(c.domid);
    // Its timer still fires about a second after the last tick (not in three days).
    await until(() => host.readConsole(c.domid).includes("tick 4"), 3000, "tick 4");
  } finally {
    await host.shutdown();
  }
});

test("the context's encoding: version 4's flags say a domain suspended itself (then no port may come with it) or uses FIFO (its section follows the ports); versions 3 and 2 still read", async () => {
  const host = newHost();
  try {
    const a = await pausedTicker(host, 1);
    const ctx = saveDomainContext(host.hv, a);
    assert.equal(ctx.suspended, false);
    assert.equal(ctx.fifo, undefined, "a 2-level guest has no FIFO section");
    assert.ok(ctx.evtchns.length > 0, "a running guest's ports come along");
    const v4 = encodeContext(ctx);
    // CPU time goes as whole nanoseconds.
    ctx.vcpus.forEach((v) => (v.cpuTimeNs = Math.round(v.cpuTimeNs)));
    assert.deepEqual(decodeContext(v4), ctx);
    // Version 3: the same bytes (bit 1 unknown to it).
    const v3 = Uint8Array.from(v4);
    new DataView(v3.buffer).setUint32(4, 3, true);
    assert.deepEqual(decodeContext(v3), ctx);
    // Version 2: no flags; the rest the same.
    const v2 = new Uint8Array(v4.length - 8);
    v2.set(v4.subarray(0, 32));
    v2.set(v4.subarray(40), 32);
    new DataView(v2.buffer).setUint32(4, 2, true);
    assert.deepEqual(decodeContext(v2), ctx);
    // A FIFO section round-trips.
    const fifo = {
      arrayPages: [0x50000],
      vcpus: [{ controlBlock: 0x51000, tails: Array.from({ length: 16 }, (_, i) => i) }],
      pendingPorts: [ctx.evtchns[0]!.port],
    };
    assert.deepEqual(decodeContext(encodeContext({ ...ctx, fifo })), { ...ctx, fifo });
    // The suspended flag with ports, an unknown flag, a non-zero word, a
    // FIFO flag without its section, bit 1 in version 3: refused.
    const bad = (edit: (dv: DataView) => void, from = v4): Uint8Array => {
      const b = Uint8Array.from(from);
      edit(new DataView(b.buffer));
      return b;
    };
    assert.throws(
      () => decodeContext(bad((dv) => dv.setUint32(32, 1, true))),
      /a suspended domain's ports are not carried/,
    );
    assert.throws(
      () => decodeContext(encodeContext({ ...ctx, suspended: true, evtchns: [], fifo })),
      /a suspended domain's FIFO state is not carried/,
    );
    assert.throws(() => decodeContext(bad((dv) => dv.setUint32(32, 4, true))), /unknown flags 0x4/);
    assert.throws(
      () => decodeContext(bad((dv) => dv.setUint32(32, 2, true))),
      /the FIFO event array's page count at offset \d+ is cut short/,
    );
    assert.throws(
      () => decodeContext(bad((dv) => dv.setUint32(32, 2, true), v3)),
      /unknown flags 0x2/,
    );
    assert.throws(
      () => decodeContext(bad((dv) => dv.setUint32(36, 1, true))),
      /the word after the flags is not 0/,
    );
    assert.throws(
      () => decodeContext(bad((dv) => dv.setUint32(4, 5, true))),
      /version 5, not 2 to 4/,
    );
  } finally {
    await host.shutdown();
  }
});

test("a context that would give a guest a timer firing without end is refused", async () => {
  const host = newHost();
  try {
    const a = await pausedTicker(host, 1);
    const ctx = saveDomainContext(host.hv, a);
    ctx.vcpus[0]!.periodNs = 1;
    ctx.vcpus[0]!.periodicNs = 0;
    const b = await copyOf(host, a);
    assert.throws(
      () => restoreDomainContext(host.hv, b, ctx),
      /its period or CPU time is out of range/,
    );
    assert.equal(b.vcpus[0]!.periodic.active, false, "nothing was armed");
  } finally {
    await host.shutdown();
  }
});

test("a guest spinning in a loop moves mid-loop, and a guest in a hypercall continuation too", async () => {
  const host = newHost();
  try {
    const a = host.createSync({ name: "spin", kernel: await kernel("spin"), memory: 4 });
    await until(() => a.vcpus[0]!.cpuTimeNs > 50e6, 5000, "some spinning");
    host.pause(a.domid);
    assert.equal(a.vcpus[0]!.mainSuspended, true, "unwound mid-loop");
    const b = await cloneDomain(host, a);
    host.destroy(a.domid);
    host.unpause(b.domid);
    await until(() => b.vcpus[0]!.cpuTimeNs > a.vcpus[0]!.cpuTimeNs + 50e6, 5000, "spinning on");
    assert.equal(b.isShutdown, false, "no crash: the rewound stack was the one it left");
  } finally {
    await host.shutdown();
  }
});
