/**
 * The split network driver end to end: two mini-os guests ping each other
 * and exchange UDP through netback and the xenbr0 bridge; a vif detached in
 * the middle of traffic leaves no port, mapping or bridge port behind; and
 * hostile frontends played from TypeScript (bad offsets, runt packets,
 * grants never given, a wild ring, a frontend that will not copy) get
 * error responses or a closed vif while the host carries on.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { grantAccess, guestPath, newHost, notifyFromGuest, until } from "../helpers.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { xlDomainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";
import type { Host } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import * as N from "../../xen/include/public/io/netif.js";

function cfg(name: string, cmdline: string, kernel = "ping"): XlDomainConfig {
  return xlDomainConfig({
    name,
    kernel: guestPath(kernel),
    memory: 8,
    cmdline,
    onPoweroff: "preserve",
    onReboot: "destroy",
    onCrash: "preserve",
    vifs: ["bridge=xenbr0"],
  });
}

const out = (host: Host, d: Domain): string => host.xenconsoled.read(d.domid);

test("two guests ping each other and exchange UDP through the bridge", async () => {
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const pong = await libxl.create(cfg("pong", "ip=10.0.0.2"));
    const ping = await libxl.create(
      cfg("ping", "ip=10.0.0.1 peer=10.0.0.2 count=3 udp=300 size=1200"),
    );
    await until(() => ping.isShutdown, 20_000, "ping to finish");
    const o = out(host, ping);
    assert.equal(ping.shutdownName, "poweroff", o);
    assert.match(o, /64 bytes from 10\.0\.0\.2: icmp_seq=3 ttl=64 time=\d+\.\d{3} ms/);
    assert.match(o, /3 packets transmitted, 3 received, 0% packet loss/);
    assert.match(o, /udp echo: 'hello over udp'/);
    assert.match(o, /peer says 'GOT 300 360000'/, o);
    assert.match(out(host, pong), /port 9 got 300 datagrams, 360000 bytes/);
    assert.deepEqual(
      host.bridge("xenbr0").portNames.sort(),
      [`vif${ping.domid}.0`, `vif${pong.domid}.0`].sort(),
    );
    // The MACs libxl chose are in Xen's OUI and in both directories.
    const mac = host.xenstored.readText(`/local/domain/${pong.domid}/device/vif/0/mac`)!;
    assert.match(mac, /^00:16:3e(:[0-9a-f]{2}){3}$/);
    assert.equal(host.xenstored.readText(`/local/domain/0/backend/vif/${pong.domid}/0/mac`), mac);
    // The bridge was made on first use, and the console says so once.
    assert.equal(host.dmesg().match(/netback: bridge xenbr0 created/g)?.length, 1);
  } finally {
    await host.shutdown();
  }
});

test("a vif detached in the middle of traffic leaves nothing behind", async () => {
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const pong = await libxl.create(cfg("pong", "ip=10.0.0.2"));
    const ping = await libxl.create(
      cfg("ping", "ip=10.0.0.1 peer=10.0.0.2 count=1 udp=200000 size=1000"),
    );
    await until(() => /udp echo/.test(out(host, ping)), 20_000, "traffic to start");
    const vif = `vif${pong.domid}.0`;
    // Hot-unplug as libxl does it: the running guest's netfront sees its
    // backend close and closes too, well before libxl's 10 s timeout.
    const t0 = performance.now();
    await libxl.removeNic(pong.domid, 0);
    assert.ok(performance.now() - t0 < 2000, "the frontend answered");
    await until(() => /the vif was unplugged/.test(out(host, pong)), 2000, "the guest to notice");
    await until(
      () => !host.vif.list().some((d) => d.backend.endsWith(`/${pong.domid}/0`)),
      2000,
      "the vif to go",
    );
    assert.ok(!host.bridge("xenbr0").portNames.includes(vif), "off the bridge");
    assert.ok(![...host.netback.ports.values()].some((p) => p.dev.name === vif), "no port bound");
    assert.equal(host.xenstored.readText(`/local/domain/0/backend/vif/${pong.domid}/0`), undefined);
    assert.equal(host.xenstored.readText(`/local/domain/${pong.domid}/device/vif/0`), undefined);
    // The sender carries on, unanswered, and finishes.
    await until(() => ping.isShutdown, 60_000, "the sender");
    assert.equal(ping.shutdownName, "poweroff", out(host, ping));
    libxl.destroy(pong.domid);
    assert.equal(host.hv.domains.has(pong.domid), false, "no grant mapping keeps the domain dying");
  } finally {
    await host.shutdown();
  }
});

/** A netfront played from TypeScript on paused guest `d`. */
class FakeNetfront {
  static TX = 900;
  static RX = 901;
  static DATA = 902;
  readonly port: number;
  private txProd = 0;

  constructor(
    readonly host: Host,
    readonly d: Domain,
  ) {
    this.grant(10, FakeNetfront.TX);
    this.grant(11, FakeNetfront.RX);
    this.grant(12, FakeNetfront.DATA);
    d.mem.clear(FakeNetfront.TX * 4096, 3 * 4096);
    this.port = host.dom0.openEvtchn().allocUnboundIn(d.domid, 0);
  }

  grant(ref: number, pfn: number): void {
    grantAccess(this.d, ref, 0, pfn);
  }

  get frontend(): string {
    return `/local/domain/${this.d.domid}/device/vif/0`;
  }
  get backend(): string {
    return `/local/domain/0/backend/vif/${this.d.domid}/0`;
  }

  start(copy = true): void {
    const w = (k: string, v: string): void =>
      this.host.xenstored.writeText(`${this.frontend}/${k}`, v);
    w("tx-ring-ref", "10");
    w("rx-ring-ref", "11");
    w("event-channel", String(this.port));
    if (copy) w("request-rx-copy", "1");
    w("state", "3");
  }

  /** One tx request; resolves with its response status. */
  async send(gref: number, offset: number, size: number, flags = 0): Promise<number> {
    const base = FakeNetfront.TX * 4096;
    const o = base + 64 + (this.txProd % 256) * 12;
    const dv = this.d.mem.dv;
    dv.setUint32(o, gref, true);
    dv.setUint16(o + 4, offset, true);
    dv.setUint16(o + 6, flags, true);
    dv.setUint16(o + 8, this.txProd, true);
    dv.setUint16(o + 10, size, true);
    this.txProd++;
    dv.setUint32(base, this.txProd, true);
    this.kick();
    await until(() => dv.getUint32(base + 8, true) === this.txProd, 2000, "a tx response");
    return dv.getInt16(o + 2, true);
  }

  kick(): void {
    assert.equal(notifyFromGuest(this.host, this.d, this.port), 0);
  }
}

test("hostile netfronts get error responses or a closed vif; the host carries on", async () => {
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const d = await libxl.create(cfg("fe", "", "ticker"), { paused: true });
    const fe = new FakeNetfront(host, d);
    fe.start();
    await until(
      () => host.xenstored.readText(`${fe.backend}/state`) === "4",
      2000,
      "the vif to connect",
    );
    const frames: Uint8Array[] = [];
    const tap = { name: "tap", deliver: (f: Uint8Array) => frames.push(f.slice()) };
    host.bridge("xenbr0").attach(tap);
    // A good broadcast frame reaches the bridge's other port.
    const page = FakeNetfront.DATA * 4096;
    d.mem.u8.fill(0xff, page, page + 6);
    d.mem.u8.fill(0x02, page + 6, page + 12);
    assert.equal(await fe.send(12, 0, 60), N.NETIF_RSP_OKAY);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.length, 60);
    const rows: Array<[string, number, number, number, number]> = [
      ["offset + size past the page", 12, 4090, 60, 0],
      ["a runt frame", 12, 0, 10, 0],
      ["a grant never given", 999, 0, 60, 0],
      ["an extra-info slot nobody offered", 12, 0, 60, N.NETTXF_extra_info],
    ];
    for (const [what, gref, offset, size, flags] of rows) {
      assert.equal(await fe.send(gref, offset, size, flags), N.NETIF_RSP_ERROR, what);
    }
    assert.equal(frames.length, 1, "nothing bad reached the bridge");
    // A wild producer index closes the vif.
    d.mem.setU32(FakeNetfront.TX * 4096, 1_000_000);
    fe.kick();
    await until(
      () => host.xenstored.readText(`${fe.backend}/state`) === "5",
      2000,
      "the vif to close",
    );
    assert.match(host.xenstored.readText(`${fe.backend}/error`) ?? "", /tx ring is bogus/);
    assert.ok(!host.bridge("xenbr0").portNames.includes(`vif${d.domid}.0`));

    // A frontend that will not copy is refused at connect.
    const d2 = await libxl.create(cfg("fe2", "", "ticker"), { paused: true });
    const fe2 = new FakeNetfront(host, d2);
    fe2.start(false);
    await until(
      () => host.xenstored.readText(`${fe2.backend}/state`) === "6",
      2000,
      "a refused vif",
    );
    assert.match(host.xenstored.readText(`${fe2.backend}/error`) ?? "", /request-rx-copy/);
    host.bridge("xenbr0").detach(tap);

    // Meanwhile real guests are fine.
    const pong = await libxl.create(cfg("pong", "ip=10.0.0.2"));
    const ping = await libxl.create(cfg("ping", "ip=10.0.0.1 peer=10.0.0.2 count=2"));
    await until(() => ping.isShutdown, 20_000, "ping");
    assert.match(out(host, ping), /2 packets transmitted, 2 received/);
    for (const x of [d, d2, pong]) libxl.destroy(x.domid);
    assert.equal(host.hv.domains.has(d.domid), false);
  } finally {
    await host.shutdown();
  }
});

test("netback: two queues with split event channels, and a frame across two rx slots", async () => {
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const d = await libxl.create(cfg("mq", "", "ticker"), { paused: true });
    const mem = d.mem;
    const grant = (ref: number, pfn: number): void => grantAccess(d, ref, 0, pfn);
    const evtchn = host.dom0.openEvtchn();
    const front = `/local/domain/${d.domid}/device/vif/0`;
    const back = `/local/domain/0/backend/vif/${d.domid}/0`;
    const w = (k: string, v: string): void => host.xenstored.writeText(`${front}/${k}`, v);
    const ports: Array<{ tx: number; rx: number }> = [];
    for (let q = 0; q < 2; q++) {
      grant(10 + 2 * q, 900 + 2 * q);
      grant(11 + 2 * q, 901 + 2 * q);
      mem.clear((900 + 2 * q) * 4096, 2 * 4096);
      const p = { tx: evtchn.allocUnboundIn(d.domid, 0), rx: evtchn.allocUnboundIn(d.domid, 0) };
      ports.push(p);
      w(`queue-${q}/tx-ring-ref`, String(10 + 2 * q));
      w(`queue-${q}/rx-ring-ref`, String(11 + 2 * q));
      w(`queue-${q}/event-channel-tx`, String(p.tx));
      w(`queue-${q}/event-channel-rx`, String(p.rx));
    }
    for (let i = 0; i < 8; i++) grant(20 + i, 910 + i);
    w("multi-queue-num-queues", "2");
    w("request-rx-copy", "1");
    w("feature-sg", "1");
    w("state", "3");
    await until(() => host.xenstored.readText(`${back}/state`) === "4", 2000, "the vif");
    assert.equal(host.xenstored.readText(`${back}/multi-queue-max-queues`), "4");
    const send = (port: number): void => assert.equal(notifyFromGuest(host, d, port), 0);
    const frames: Uint8Array[] = [];
    const tap = { name: "tap", deliver: (f: Uint8Array) => frames.push(f.slice()) };
    const br = host.bridge("xenbr0");
    br.attach(tap);

    // Transmit on queue 1: one 60-byte frame from page 910.
    mem.u8.fill(0xff, 910 * 4096, 910 * 4096 + 6);
    const tx1 = 902 * 4096;
    mem.setU32(tx1 + 64, 20);
    mem.setU16(tx1 + 64 + 4, 0);
    mem.setU16(tx1 + 64 + 6, 0);
    mem.setU16(tx1 + 64 + 8, 7);
    mem.setU16(tx1 + 64 + 10, 60);
    mem.setU32(tx1, 1);
    send(ports[1]!.tx);
    await until(() => frames.length === 1, 2000, "the frame on the bridge");
    assert.equal(mem.u32(tx1 + 8), 1, "queue 1 answered");
    assert.equal(mem.dv.getUint16(tx1 + 64, true), 7);

    // Receive: post two pages on each queue; a 5000-byte frame needs two slots.
    for (let q = 0; q < 2; q++) {
      const rx = (901 + 2 * q) * 4096;
      for (let i = 0; i < 2; i++) {
        mem.setU16(rx + 64 + i * 8, 100 + i);
        mem.setU32(rx + 64 + i * 8 + 4, 21 + 2 * q + i);
      }
      mem.setU32(rx, 2);
      send(ports[q]!.rx);
    }
    const big = new Uint8Array(5000).map((_, i) => i & 0xff);
    big.fill(0xff, 0, 6);
    big[5] = 0xfe; // steer: (0xfe ^ 0x02) % 2 = 0
    big.fill(0x02, 6, 12);
    br.forward(big, tap);
    const rx0 = 901 * 4096;
    await until(() => mem.u32(rx0 + 8) === 2, 2000, "two rx responses on queue 0");
    const r0 = {
      id: mem.dv.getUint16(rx0 + 64, true),
      flags: mem.dv.getUint16(rx0 + 68, true),
      status: mem.dv.getInt16(rx0 + 70, true),
    };
    const r1 = {
      id: mem.dv.getUint16(rx0 + 72, true),
      flags: mem.dv.getUint16(rx0 + 76, true),
      status: mem.dv.getInt16(rx0 + 78, true),
    };
    assert.deepEqual(
      [r0.id, r0.status, r0.flags & N.NETRXF_more_data],
      [100, 4096, N.NETRXF_more_data],
    );
    assert.deepEqual([r1.id, r1.status, r1.flags & N.NETRXF_more_data], [101, 904, 0]);
    const got = Buffer.concat([
      Buffer.from(mem.read(911 * 4096, 4096)),
      Buffer.from(mem.read(912 * 4096, 904)),
    ]);
    assert.ok(got.equals(Buffer.from(big)), "the frame, in order across the two pages");
    assert.equal(mem.u32(903 * 4096 + 8), 0, "queue 1 got nothing");
    br.detach(tap);
    libxl.destroy(d.domid);
  } finally {
    await host.shutdown();
  }
});
