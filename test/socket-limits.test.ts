/**
 * What a local client can make the host hold is bounded: a xenstored client
 * that sends without reading stops being read once its unsent replies pass
 * XS_OUTPUT_HIGH; the daemon's JSON sockets hold at most MAX_LINE per
 * connection and MAX_TOTAL_INPUT for all, and serve at most MAX_CONNECTIONS.
 * Other clients are answered meanwhile.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newHost, sleep, until } from "./helpers.js";
import { XsSocketServer, XS_OUTPUT_HIGH } from "../tools/xenstored/socket.js";
import { XsClient } from "../tools/xenstore/client.js";
import { XS_READ, encodeXsMsg } from "../xen/include/public/io/xs_wire.js";
import { PrivcmdServer } from "../tools/libxc/privcmd_socket.js";
import { MAX_CONNECTIONS, MAX_LINE, MAX_TOTAL_INPUT } from "../tools/jsonl.js";

const connect = (path: string): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = createConnection(path);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });

test("a xenstored client that sends 400,000 READs and never reads is held at the backlog; others are answered", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-xslimit-"));
  const host = newHost();
  const server = new XsSocketServer(host.xenstored, join(dir, "socket"));
  await server.listen();
  try {
    host.xenstored.writeText("/local/domain/0/name", "Domain-0".padEnd(3000, "x"));
    const attacker = await connect(server.path);
    attacker.pause();
    const one = encodeXsMsg({
      type: XS_READ,
      reqId: 1,
      txId: 0,
      payload: Buffer.from("/local/domain/0/name\0"),
    });
    const batch = Buffer.concat(Array.from({ length: 1000 }, () => one));
    for (let i = 0; i < 400; i++) attacker.write(batch);
    await sleep(500);
    // 400,000 replies of 3 KiB would be 1.2 GB; the daemon holds one backlog.
    const held = server.unsentBytes();
    assert.ok(held < XS_OUTPUT_HIGH + 64 * 1024, `the daemon holds ${held} bytes for the client`);
    const other = await XsClient.open(server.path);
    const t = performance.now();
    assert.equal((await other.read("/local/domain/0/name")).length, 3000);
    assert.ok(performance.now() - t < 100, "another client waited");
    other.close();
    attacker.destroy();
    await until(() => server.unsentBytes() === 0, 2000, "the attacker's backlog to go with it");
  } finally {
    await server.close();
    await host.shutdown();
  }
});

test("JSON sockets: a line over MAX_LINE, unfinished input over MAX_TOTAL_INPUT and connections over MAX_CONNECTIONS are cut off", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-jsonlimit-"));
  const host = newHost();
  const log: string[] = [];
  const privcmd = new PrivcmdServer(host.dom0.privcmd, join(dir, "privcmd"), (m) => log.push(m));
  await privcmd.listen();
  const sockets: Socket[] = [];
  try {
    // One connection, one line longer than MAX_LINE: closed.
    const long = await connect(privcmd.path);
    sockets.push(long);
    const closed = new Promise((r) => long.once("close", r));
    long.on("error", () => {});
    long.write(Buffer.alloc(MAX_LINE + 4096, 0x61));
    await closed;
    assert.ok(log.some((l) => l.includes(`a line longer than ${MAX_LINE} bytes`)));

    // Many connections, each with most of a line unfinished: past the total,
    // the one that would add more is closed; the total never passes it by much.
    const each = MAX_LINE - 4096;
    const n = Math.ceil(MAX_TOTAL_INPUT / each) + 8;
    let cut = 0;
    for (let i = 0; i < n; i++) {
      const s = await connect(privcmd.path);
      sockets.push(s);
      s.on("error", () => {});
      s.once("close", () => cut++);
      s.write(Buffer.alloc(each, 0x62));
    }
    await until(() => cut >= 8, 5000, "connections past the total to be closed");
    assert.ok(log.some((l) => l.includes(`all clients (${MAX_TOTAL_INPUT} bytes)`)));
    for (const s of sockets) s.destroy();

    // More than MAX_CONNECTIONS at once: the extra ones are closed at accept.
    const many: Socket[] = [];
    let refused = 0;
    for (let i = 0; i < MAX_CONNECTIONS + 5; i++) {
      const s = await connect(privcmd.path);
      s.on("error", () => {});
      s.once("close", () => refused++);
      many.push(s);
    }
    await until(() => refused >= 5, 2000, "connections past the limit to be closed");
    for (const s of many) s.destroy();
  } finally {
    for (const s of sockets) s.destroy();
    await privcmd.close();
    await host.shutdown();
  }
});
