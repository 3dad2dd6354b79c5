/**
 * Guests talking to xenstored over their rings: the mini-os `xenstore`
 * example reads, writes, uses a transaction and obeys control/shutdown; a
 * guest that scribbles over its ring loses its connection and nobody else
 * notices; a destroyed guest leaves no node, port or mapping behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Host } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import * as W from "../../xen/include/public/io/xs_wire.js";
import { start_info } from "../../xen/include/public/arch-wasm32.js";
import { PFN_XENSTORE } from "../../xen/arch/wasm32/config.js";
import { kernel, newHost, notifyFromGuest, until } from "../helpers.js";

const text = (b: Uint8Array | undefined): string => new TextDecoder().decode(b);

async function boot(host: Host, name: string): Promise<Domain> {
  const d = await host.create({
    name,
    kernel: await kernel("xenstore"),
    memory: 2,
    xenstore: true,
  });
  await until(
    () => /counter 1, data has 2 entries/.test(host.readConsole(d.domid)),
    10_000,
    `${name}'s xenstore work`,
  );
  return d;
}

test("a guest reads, writes and counts in a transaction over its ring, and obeys control/shutdown", async () => {
  const host = newHost();
  try {
    const events: string[] = [];
    const watcher = host.xenstored.connect(
      0,
      true,
      (m) => events.push(text(W.splitNul(m.payload)[0])),
      "test",
    );
    host.xenstored.handle(watcher, {
      type: W.XS_WATCH,
      reqId: 1,
      txId: 0,
      payload: W.joinNul(["@introduceDomain", "i"]),
    });
    host.xenstored.handle(watcher, {
      type: W.XS_WATCH,
      reqId: 2,
      txId: 0,
      payload: W.joinNul(["@releaseDomain", "r"]),
    });
    const d = await boot(host, "guest");
    const home = `/local/domain/${d.domid}`;
    assert.match(host.readConsole(d.domid), new RegExp(`d${d.domid} is named 'guest'`));
    assert.equal(host.xenstored.readText(`${home}/data/greeting`), "hello from mini-os");
    assert.equal(host.xenstored.readText(`${home}/data/counter`), "1");
    assert.equal(
      host.xenstored.readText(`${home}/store/port`),
      String(d.mem.u32(d.startInfoAddr() + start_info.fields.store_evtchn.offset)),
    );
    assert.ok(events.includes("@introduceDomain"));
    // The toolstack asks for a poweroff, as `xl shutdown` does.
    host.xenstored.writeText(`${home}/control/shutdown`, "poweroff");
    assert.equal(await host.waitShutdown(d.domid), "poweroff");
    assert.match(host.readConsole(d.domid), /control\/shutdown says 'poweroff'/);
    assert.equal(host.xenstored.readText(`${home}/control/shutdown`), "", "the guest acknowledged");
    host.destroy(d.domid);
    assert.equal(host.hv.domains.has(d.domid), false, "nothing held its memory");
    assert.equal(host.xenstored.readText(home), undefined);
    assert.equal(host.xenstored.domains.has(d.domid), false);
    assert.equal(host.hv.dom0.gnttab.mappings, 0);
    assert.ok(events.includes("@releaseDomain"));
    assert.deepEqual(host.xenstored.store.check(), []);
  } finally {
    await host.shutdown();
  }
});

test("a guest that writes wild ring indices loses its connection; another guest carries on", async () => {
  const host = newHost();
  try {
    const good = await boot(host, "good");
    const bad = await host.create({
      name: "bad",
      kernel: await kernel("hello"),
      memory: 2,
      xenstore: true,
      paused: true,
    });
    const ring = PFN_XENSTORE * 4096;
    const F = W.xenstore_domain_interface.fields;
    bad.mem.setU32(ring + F.req_prod.offset, bad.mem.u32(ring + F.req_cons.offset) + 5000);
    const port = bad.mem.u32(bad.startInfoAddr() + start_info.fields.store_evtchn.offset);
    assert.equal(notifyFromGuest(host, bad, port, 0x60000), 0);
    await until(
      () => bad.mem.u32(ring + F.error.offset) === W.XENSTORE_ERROR_RINGIDX,
      2000,
      "the ring error",
    );
    assert.ok(host.xenstored.logLines.some((l) => /claim \d+ bytes: connection dropped/.test(l)));
    // The good guest still answers its toolstack.
    host.xenstored.writeText(`/local/domain/${good.domid}/control/shutdown`, "reboot");
    assert.equal(await host.waitShutdown(good.domid), "reboot");
  } finally {
    await host.shutdown();
  }
});

test("xenstored restarts under a running guest: its nodes, connection and watches carry on", async () => {
  const host = newHost();
  try {
    const d = await boot(host, "survivor");
    const home = `/local/domain/${d.domid}`;
    const before = host.xenstored.store.get(`${home}/data/greeting`)!;
    const state = host.restartXenstored();
    assert.equal(state.version, 1);
    assert.ok(
      state.domains.some(
        (x) => x.domid === d.domid && x.watches.some((w) => w.path === `${home}/control/shutdown`),
      ),
    );
    const after = host.xenstored.store.get(`${home}/data/greeting`)!;
    assert.equal(text(after.value), "hello from mini-os");
    assert.equal(after.generation, before.generation, "generation counts are kept");
    // The guest's watch, made before the restart, fires from the new daemon.
    host.xenstored.writeText(`${home}/control/shutdown`, "poweroff");
    assert.equal(await host.waitShutdown(d.domid), "poweroff");
    assert.equal(
      host.xenstored.readText(`${home}/control/shutdown`),
      "",
      "and the guest still writes over its ring",
    );
  } finally {
    await host.shutdown();
  }
});

test("fuzzed bytes on a guest's ring: the guest is answered or cut off, xenstored and the tree survive", async () => {
  const host = newHost();
  try {
    const keeper = await boot(host, "keeper");
    const F = W.xenstore_domain_interface.fields;
    const ring = PFN_XENSTORE * 4096;
    let seed = 99;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let round = 0; round < 10; round++) {
      const bad = await host.create({
        name: `fz${round}`,
        kernel: await kernel("hello"),
        memory: 2,
        xenstore: true,
        paused: true,
      });
      const port = bad.mem.u32(bad.startInfoAddr() + start_info.fields.store_evtchn.offset);
      for (let burst = 0; burst < 5; burst++) {
        const prod = bad.mem.u32(ring + F.req_prod.offset);
        const n = 16 + rand(600);
        for (let i = 0; i < n; i++)
          bad.mem.u8[ring + F.req.offset + ((prod + i) & 1023)] =
            rand(4) === 0 ? rand(30) : rand(256);
        bad.mem.setU32(ring + F.req_prod.offset, (prod + n) >>> 0);
        notifyFromGuest(host, bad, port, 0x60000);
        await new Promise((r) => setTimeout(r, 2));
      }
      host.destroy(bad.domid);
    }
    assert.deepEqual(host.xenstored.store.check(), []);
    assert.equal(
      host.xenstored.readText(`/local/domain/${keeper.domid}/data/greeting`),
      "hello from mini-os",
    );
    host.xenstored.writeText(`/local/domain/${keeper.domid}/control/shutdown`, "poweroff");
    assert.equal(await host.waitShutdown(keeper.domid), "poweroff");
  } finally {
    await host.shutdown();
  }
});
