/**
 * The example guests that talk to each other: pingpong (event channels, both
 * ABIs) and sharepage (grants and copies), set up through the host API the
 * way a toolstack would: the first guest offers, the host reads the offer
 * from its console and starts the second with it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Host } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import { accountedFrames, kernel, newHost, until } from "../helpers.js";

/** Resolves with the match once `re` appears on `d`'s console. */
async function consoleMatch(host: Host, d: Domain, re: RegExp): Promise<RegExpMatchArray> {
  let m: RegExpMatchArray | null = null;
  await until(
    () => (m = re.exec(host.readConsole(d.domid))) !== null,
    10_000,
    `${re} on d${d.domid}`,
  );
  return m!;
}

/** Runs a pingpong pair; returns the ping's report. */
async function pingpong(
  host: Host,
  n: number,
  fifo = false,
): Promise<{ median: number; mean: number }> {
  const k = await kernel("pingpong");
  const pongId = 50;
  const pingId = 51;
  const extra = fifo ? " fifo" : "";
  const pong = await host.create({
    name: "pong",
    kernel: k,
    memory: 2,
    domid: pongId,
    cmdline: `role=pong peer=${pingId} n=${n}${extra}`,
  });
  const [, port] = await consoleMatch(host, pong, /offers port (\d+) to d51/);
  const ping = await host.create({
    name: "ping",
    kernel: k,
    memory: 2,
    domid: pingId,
    cmdline: `role=ping peer=${pongId} port=${port} n=${n}${extra}`,
  });
  assert.equal(await host.waitShutdown(ping.domid, 30_000), "poweroff");
  assert.equal(await host.waitShutdown(pong.domid, 30_000), "poweroff");
  const m = await consoleMatch(host, ping, /(\d+) round trips, median (\d+) ns, mean (\d+) ns/);
  assert.equal(Number(m[1]), n);
  assert.match(host.readConsole(pong.domid), new RegExp(`answered ${n} events`));
  host.destroy(ping.domid);
  host.destroy(pong.domid);
  return { median: Number(m[2]), mean: Number(m[3]) };
}

for (const fifo of [false, true]) {
  test(`pingpong: two guests exchange 2,000 events over an interdomain channel (${fifo ? "FIFO" : "2-level"})`, async () => {
    const host = newHost();
    try {
      const r = await pingpong(host, 2000, fifo);
      assert.ok(r.median > 0 && r.mean > 0);
      assert.equal(host.hv.domains.size, 0);
      assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
    } finally {
      await host.shutdown();
    }
  });
}

test("sharepage: one guest reads another's page by grant copy and answers through its own grant", async () => {
  const host = newHost();
  try {
    const k = await kernel("sharepage");
    const a = await host.create({
      name: "offer",
      kernel: k,
      memory: 2,
      domid: 60,
      cmdline: "role=offer peer=61",
    });
    const [, ref, port] = await consoleMatch(host, a, /offers ref (\d+) port (\d+)/);
    const b = await host.create({
      name: "fetch",
      kernel: k,
      memory: 2,
      domid: 61,
      cmdline: `role=fetch peer=60 ref=${ref} port=${port}`,
    });
    assert.equal(await host.waitShutdown(b.domid), "poweroff");
    assert.equal(await host.waitShutdown(a.domid), "poweroff");
    assert.match(host.readConsole(b.domid), /d61 read: 'hello d61, this is a page of mine'/);
    assert.match(host.readConsole(a.domid), /d60 got answer: 'thanks d60, from your neighbour'/);
    assert.match(host.readConsole(b.domid), /d61 done/);
    // Both ended their grants: nothing is pinned, nothing mapped.
    assert.equal(a.gnttab.pinned + b.gnttab.pinned, 0);
    host.destroy(a.domid);
    host.destroy(b.domid);
    assert.equal(accountedFrames(host), host.hv.frames.totalFrames);
  } finally {
    await host.shutdown();
  }
});
