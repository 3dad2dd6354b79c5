/**
 * vchan between guests and Dom0 in every combination, with real guests
 * (mini-os vchan-echo): guest ↔ guest, Dom0 server ↔ guest client, guest
 * server ↔ Dom0 client (Dom0 ↔ Dom0 is in test/vchan.test.ts). Each moves
 * 100 MiB each way and compares checksums; a peer that dies or closes
 * mid-stream is seen as closed by the other side.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Host } from "../../tools/host/host.js";
import { Vchan } from "../../tools/libvchan/vchan.js";
import { VchanSocketProxy } from "../../tools/libvchan/socket-proxy.js";
import { connect, createServer } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernel, newHost, until } from "../helpers.js";

const MiB100 = 100 * 2 ** 20;

/** The guests' pattern: byte i is (i * 31 + 7) & 255. */
function pattern(from: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = ((from + i) * 31 + 7) & 255;
  return b;
}

/** FNV-1a, as vchan-echo computes it. */
function fnv(h: number, b: Uint8Array): number {
  for (const x of b) h = Math.imul(h ^ x, 16777619) >>> 0;
  return h;
}

async function echoServer(v: Vchan): Promise<number> {
  let total = 0;
  for (;;) {
    const b = v.read(65536);
    if (b.length > 0) {
      total += b.length;
      await v.writeAll(b);
      continue;
    }
    if (!v.isOpen()) return total;
    await v.wait();
  }
}

async function guest(host: Host, domid: number, cmdline: string): Promise<void> {
  await host.create({
    name: `vchan${domid}`,
    kernel: await kernel("vchan-echo"),
    memory: 4,
    domid,
    cmdline,
    xenstore: true,
  });
}

const ctx = (host: Host) => ({ drivers: host.dom0, xenstored: host.xenstored });

test("guest ↔ guest: 100 MiB echoed, checksums equal", async () => {
  const host = newHost();
  try {
    await guest(host, 40, "role=server peer=41");
    await until(() => /serves d41/.test(host.readConsole(40)), 5000, "the echo server");
    await guest(host, 41, `role=client peer=40 bytes=${MiB100}`);
    assert.equal(await host.waitShutdown(41, 60_000), "poweroff");
    assert.match(host.readConsole(41), /sent 104857600 bytes, fnv (\d+); echo fnv \1 ok/);
    assert.equal(await host.waitShutdown(40, 5000), "poweroff");
    assert.match(host.readConsole(40), /echoed 104857600 bytes; the client closed/);
  } finally {
    await host.shutdown();
  }
});

test("Dom0 server ↔ guest client: 100 MiB echoed by Dom0", async () => {
  const host = newHost();
  try {
    const srv = Vchan.server(ctx(host), 42, "/local/domain/0/data/vchan/echo", 65536, 65536);
    const echoed = echoServer(srv);
    await guest(host, 42, `role=client peer=0 bytes=${MiB100}`);
    assert.equal(await host.waitShutdown(42, 60_000), "poweroff");
    assert.match(host.readConsole(42), /sent 104857600 bytes, fnv (\d+); echo fnv \1 ok/);
    assert.equal(await echoed, MiB100);
    srv.close();
  } finally {
    await host.shutdown();
  }
});

test("guest server ↔ Dom0 client: 100 MiB through the guest's echo, checksummed", async () => {
  const host = newHost();
  try {
    await guest(host, 43, "role=server peer=0");
    await until(() => /serves d0/.test(host.readConsole(43)), 5000, "the echo server");
    const cli = Vchan.client(ctx(host), 43, "/local/domain/43/data/vchan/echo");
    const chunk = 1 << 20;
    let sentHash = 2166136261;
    let gotHash = 2166136261;
    await Promise.all([
      (async () => {
        for (let off = 0; off < MiB100; off += chunk) {
          const b = pattern(off, chunk);
          sentHash = fnv(sentHash, b);
          await cli.writeAll(b);
        }
      })(),
      (async () => {
        for (let off = 0; off < MiB100; off += chunk)
          gotHash = fnv(gotHash, await cli.readExact(chunk));
      })(),
    ]);
    assert.equal(gotHash, sentHash);
    cli.close();
    assert.equal(await host.waitShutdown(43, 5000), "poweroff");
    assert.match(host.readConsole(43), /echoed 104857600 bytes; the client closed/);
  } finally {
    await host.shutdown();
  }
});

test("a peer killed mid-stream is seen as closed, on either side", async () => {
  const host = newHost();
  try {
    // A guest server destroyed while Dom0 streams to it.
    await guest(host, 44, "role=server peer=0 size=4096");
    await until(() => /serves d0/.test(host.readConsole(44)), 5000, "the echo server");
    const cli = Vchan.client(ctx(host), 44, "/local/domain/44/data/vchan/echo");
    let got = 0;
    const reading = (async () => {
      for (;;) got += (await cli.readExact(4096)).length;
    })();
    const writing = cli.writeAll(new Uint8Array(MiB100));
    await until(() => got > 0, 5000, "echo traffic");
    host.destroy(44);
    await assert.rejects(writing, /vchan: closed after \d+ of 104857600 bytes/);
    await assert.rejects(reading, /vchan: closed after \d+ of 4096 bytes/);
    assert.equal(cli.isOpen(), false);
    cli.close();
    // A Dom0 server that closes while a guest client streams.
    const srv = Vchan.server(ctx(host), 45, "/local/domain/0/data/vchan/echo", 4096, 4096);
    await guest(host, 45, `role=client peer=0 bytes=${MiB100}`);
    await until(() => srv.dataReady() > 0, 5000, "the client's traffic");
    srv.close();
    assert.equal(await host.waitShutdown(45, 5000), "poweroff");
    assert.match(host.readConsole(45), /saw the server close after \d+ bytes/);
  } finally {
    await host.shutdown();
  }
});

test("vchan-chat: two guests take turns in packet mode", async () => {
  const host = newHost();
  try {
    const k = await kernel("vchan-chat");
    await host.create({
      name: "chat-a",
      kernel: k,
      memory: 4,
      domid: 46,
      cmdline: "role=server peer=47 lines=5",
      xenstore: true,
    });
    await until(() => /waits for d47/.test(host.readConsole(46)), 5000, "the chat server");
    await host.create({
      name: "chat-b",
      kernel: k,
      memory: 4,
      domid: 47,
      cmdline: "role=client peer=46 lines=5",
      xenstore: true,
    });
    assert.equal(await host.waitShutdown(47, 10_000), "poweroff");
    assert.equal(await host.waitShutdown(46, 10_000), "poweroff");
    for (let n = 1; n <= 5; n++) {
      assert.match(host.readConsole(46), new RegExp(`d46 heard 'd47 says line ${n}'`));
      assert.match(host.readConsole(47), new RegExp(`d47 heard 'd46 says line ${n}'`));
    }
  } finally {
    await host.shutdown();
  }
});

test("vchan-socket-proxy: a unix socket reaches a guest's vchan, both ways", async () => {
  const host = newHost();
  const dir = mkdtempSync(join(tmpdir(), "tsxen-vchan-"));
  try {
    // Client mode: a socket client talks to the guest's echo server.
    const sock = join(dir, "echo.sock");
    const logged: string[] = [];
    const proxy = await VchanSocketProxy.start(ctx(host), {
      mode: "client",
      domid: 48,
      path: "/local/domain/48/data/vchan/echo",
      socket: sock,
      log: (line) => logged.push(line),
    });
    // Before the server is there, a connection is closed and the log says why.
    const early = connect(sock);
    await new Promise((r) => early.on("close", r));
    assert.deepEqual(logged, [
      "cannot connect to d48's vchan: vchan: no /local/domain/48/data/vchan/echo/ring-ref in xenstore: is the server there?",
    ]);
    await guest(host, 48, "role=server peer=0");
    await until(() => /serves d0/.test(host.readConsole(48)), 5000, "the echo server");
    const data = pattern(0, 10 * 2 ** 20);
    const c = connect(sock);
    const chunks: Buffer[] = [];
    let got = 0;
    const done = new Promise<void>((r) =>
      c.on("data", (b: Buffer) => {
        chunks.push(b);
        got += b.length;
        if (got >= data.length) r();
      }),
    );
    c.write(data);
    await done;
    assert.ok(Buffer.concat(chunks).equals(Buffer.from(data)));
    c.end();
    assert.equal(await host.waitShutdown(48, 5000), "poweroff", "the guest saw the vchan close");
    await proxy.close();
    // Server mode: the guest connects to a vchan the proxy offers, and reaches a socket server.
    const echoSock = join(dir, "server.sock");
    const echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(echoSock, r));
    const p2 = await VchanSocketProxy.start(ctx(host), {
      mode: "server",
      domid: 49,
      path: "/local/domain/0/data/vchan/echo",
      socket: echoSock,
    });
    await guest(host, 49, "role=client peer=0 bytes=1048576");
    assert.equal(await host.waitShutdown(49, 10_000), "poweroff");
    assert.match(host.readConsole(49), /sent 1048576 bytes, fnv (\d+); echo fnv \1 ok/);
    await p2.close();
    echo.close();
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a hostile Dom0 client's wild indices leave a guest server reading and writing nothing", async () => {
  const host = newHost();
  try {
    await guest(host, 50, "role=server peer=0 size=4096");
    await until(() => /serves d0/.test(host.readConsole(50)), 5000, "the echo server");
    const cli = Vchan.client(ctx(host), 50, "/local/domain/50/data/vchan/echo");
    const page = (cli as unknown as { page: DataView }).page;
    const d = host.hv.domains.get(50)!;
    // Claim a gigabyte written into the 4 KiB left ring, and more consumed than produced on the right.
    page.setUint32(0, page.getUint32(0, true), true);
    page.setUint32(4, (page.getUint32(0, true) + 1e9) >>> 0, true);
    page.setUint32(8, (page.getUint32(12, true) + 99999) >>> 0, true);
    cli.write(new Uint8Array(1)); // a notification, which the guest answers by looking at the indices
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(d.isShutdown, false, "the guest did not crash");
    assert.equal(cli.dataReady(), 0, "nothing was echoed");
    cli.close();
  } finally {
    await host.shutdown();
  }
});
