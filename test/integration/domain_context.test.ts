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
  restoreDomainContext,
  saveDomainContext,
} from "../../xen/common/domain_context.js";
import type { Host } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import { kernel, newHost, until } from "../helpers.js";

/** A copy of `a` in a new domain, built through the builder's hypercalls, given `a`'s context. */
async function cloneDomain(host: Host, a: Domain): Promise<Domain> {
  const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
  const ctx = saveDomainContext(host.hv, a);
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
  restoreDomainContext(host.hv, b, ctx);
  // It writes its console with console_io, as the original did.
  b.isConsole = a.isConsole;
  return b;
}

test("a ticking guest moves to a new domain and ticks on from where it was", async () => {
  const host = newHost();
  try {
    const a = host.createSync({ name: "ticker", kernel: await kernel("ticker"), memory: 4 });
    await until(() => host.readConsole(a.domid).includes("tick 2"), 5000, "two ticks");
    host.pause(a.domid);
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

test("a context that would give a guest a timer firing without end is refused", async () => {
  const host = newHost();
  try {
    const a = host.createSync({ name: "ticker", kernel: await kernel("ticker"), memory: 4 });
    await until(() => host.readConsole(a.domid).includes("tick 1"), 5000, "a tick");
    host.pause(a.domid);
    const ctx = saveDomainContext(host.hv, a);
    ctx.vcpus[0]!.periodNs = 1;
    ctx.vcpus[0]!.periodicNs = 0;
    const xc = new XcInterface(new LocalHypercalls(host.dom0.privcmd));
    const domid = await xc.domainCreate(0, {
      handle: new Uint8Array(16),
      maxVcpus: 1,
      maxEvtchnPort: 0,
      maxGrantFrames: -1,
      maxMaptrackFrames: -1,
    });
    await xc.domainSetMaxMem(domid, 4096);
    await xc.populatePhysmapExact(domid, [...Array(1024).keys()]);
    await xc.wasm32ModuleBind(domid, Buffer.from(a.kernel!.hash, "hex"));
    const b = host.hv.domainById(domid)!;
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
