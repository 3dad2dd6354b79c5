/**
 * libxenvchan in Dom0: a server and a client through a Dom0-owned page
 * (the Dom0 ↔ Dom0 combination): 100 MiB with a checksum, every ring size
 * with wrap-around (also of the uint32 indices), packets, close detection,
 * and a hostile peer's wild indices.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Vchan } from "../tools/libvchan/vchan.js";
import { vchan_interface } from "../xen/include/public/io/libxenvchan.js";
import { newHost } from "./helpers.js";
import type { Host } from "../tools/host/host.js";

const F = vchan_interface.fields;
let serial = 0;

function pair(host: Host, readMin: number, writeMin: number): { srv: Vchan; cli: Vchan } {
  const ctx = { drivers: host.dom0, xenstored: host.xenstored };
  const path = `/local/domain/0/data/vchan/${++serial}`;
  const srv = Vchan.server(ctx, 0, path, readMin, writeMin);
  const cli = Vchan.client(ctx, 0, path);
  return { srv, cli };
}

/** Deterministic bytes: block `i` of `n`. */
function block(i: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = (i * 2654435761) >>> 0;
  for (let k = 0; k < n; k++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[k] = x >>> 24;
  }
  return b;
}

test("100 MiB from server to client and back, checksummed (Dom0 ↔ Dom0)", async () => {
  const host = newHost();
  try {
    const { srv, cli } = pair(host, 65536, 65536);
    const total = 100 * 2 ** 20;
    const chunk = 256 * 1024;
    const data = block(1, chunk);
    const move = async (from: Vchan, to: Vchan): Promise<void> => {
      const sent = createHash("sha256");
      const got = createHash("sha256");
      await Promise.all([
        (async () => {
          for (let off = 0; off < total; off += chunk) {
            data[0] = off & 0xff;
            sent.update(data);
            await from.writeAll(data);
          }
        })(),
        (async () => {
          for (let off = 0; off < total; off += chunk) got.update(await to.readExact(chunk));
        })(),
      ]);
      assert.equal(got.digest("hex"), sent.digest("hex"));
    };
    await move(srv, cli);
    await move(cli, srv);
    cli.close();
    srv.close();
  } finally {
    await host.shutdown();
  }
});

test("every ring size wraps around, the uint32 indices too", async () => {
  const host = newHost();
  try {
    for (const [rmin, wmin, orders] of [
      [1024, 2048, [10, 11]],
      [2048, 1024, [11, 10]],
      [4096, 4096, [12, 12]],
      [3000, 9000, [12, 14]],
      [1500, 9000, [11, 14]],
      [65536, 16384, [16, 14]],
    ] as const) {
      const { srv, cli } = pair(host, rmin, wmin);
      const page = (srv as unknown as { page: DataView }).page;
      assert.deepEqual(
        [page.getUint16(F.left_order.offset, true), page.getUint16(F.right_order.offset, true)],
        orders,
      );
      // Start every index just below 2^32 so that they wrap during the test.
      for (const f of [F.left_cons, F.left_prod, F.right_cons, F.right_prod])
        page.setUint32(f.offset, 2 ** 32 - 700, true);
      for (const [from, to] of [
        [srv, cli],
        [cli, srv],
      ] as const) {
        const size = from.bufferSpace();
        const sent: number[] = [];
        const got: number[] = [];
        let i = 0;
        // Odd pieces through three times the ring.
        while (sent.length < 3 * size) {
          const b = block(i++, 1 + ((i * 37) % 777));
          await from.writeAll(b);
          sent.push(...b);
          for (;;) {
            const r = to.read(4096);
            if (r.length === 0) break;
            got.push(...r);
          }
        }
        assert.equal(got.length, sent.length, `ring ${size}`);
        assert.ok(Buffer.from(got).equals(Buffer.from(sent)), `ring ${size} bytes`);
      }
      srv.close();
      cli.close();
    }
  } finally {
    await host.shutdown();
  }
});

test("packet mode is all or nothing", async () => {
  const host = newHost();
  try {
    const { srv, cli } = pair(host, 1024, 2048);
    assert.equal(cli.send(block(1, 1000)), true);
    assert.equal(cli.send(block(2, 100)), false, "24 bytes of room left");
    assert.equal(srv.recv(1001), undefined);
    assert.deepEqual(srv.recv(1000), block(1, 1000));
    assert.throws(
      () => cli.send(new Uint8Array(5000)),
      /5000-byte packet exceeds the 1024-byte ring/,
    );
    srv.close();
    cli.close();
  } finally {
    await host.shutdown();
  }
});

test("a peer that goes away mid-stream is seen as closed", async () => {
  const host = newHost();
  try {
    const { srv, cli } = pair(host, 4096, 4096);
    assert.equal(srv.isOpen(), true);
    const writing = srv.writeAll(new Uint8Array(1 << 20));
    await cli.readExact(10_000);
    cli.close();
    await assert.rejects(writing, /vchan: closed after \d+ of 1048576 bytes/);
    assert.equal(srv.isOpen(), false);
    // The other way: the server goes; the client reads what was sent, then sees the close.
    const p2 = pair(host, 4096, 4096);
    await p2.srv.writeAll(block(3, 100));
    p2.srv.close();
    assert.equal(p2.cli.isOpen(), false);
    assert.deepEqual(p2.cli.read(100), block(3, 100));
    await assert.rejects(p2.cli.readExact(1), /vchan: closed after 0 of 1 bytes/);
    p2.cli.close();
  } finally {
    await host.shutdown();
  }
});

test("a hostile peer's wild indices never make the other side read or write outside the ring", async () => {
  const host = newHost();
  try {
    const { srv, cli } = pair(host, 4096, 4096);
    const page = (cli as unknown as { page: DataView }).page;
    // The client claims to have written 10^9 bytes into the 4 KiB left ring.
    page.setUint32(F.left_prod.offset, page.getUint32(F.left_cons.offset, true) + 1e9, true);
    assert.equal(srv.dataReady(), 0);
    assert.equal(srv.read(100).length, 0);
    // And to have consumed far more than the server wrote into the right ring.
    page.setUint32(F.right_cons.offset, page.getUint32(F.right_prod.offset, true) + 123456, true);
    assert.equal(srv.bufferSpace(), 0);
    assert.equal(srv.write(new Uint8Array(10)), 0);
    srv.close();
    cli.close();
  } finally {
    await host.shutdown();
  }
});

test("the tutorial's steps run and end with a working channel", async () => {
  const { tutorial } = await import("../tools/libvchan/tutorial.js");
  const lines: string[] = [];
  await tutorial("rendezvous", (s) => lines.push(s));
  assert.ok(lines.some((l) => /grant reference \d+ gives d7/.test(l)));
  assert.ok(lines.some((l) => /port \d+ in Dom0, unbound, for d7/.test(l)));
  for (const step of ["connect", "library"] as const) {
    const out = await tutorial(step, () => {});
    assert.match(out, /sent 65536 bytes, fnv (\d+); echo fnv \1 ok/, step);
  }
});

test("a server's bad ring order or port fails the client's connect and leaves nothing mapped or bound", async () => {
  const host = newHost();
  try {
    const ctx = { drivers: host.dom0, xenstored: host.xenstored };
    const path = `/local/domain/0/data/vchan/${++serial}`;
    // 64 KiB rings: the client maps the shared page and 16 pages of the left ring first.
    const srv = Vchan.server(ctx, 0, path, 65536, 65536);
    const page = (srv as unknown as { page: DataView }).page;
    const mapped = host.hv.dom0.gnttab.mappings;
    const right = page.getUint16(F.right_order.offset, true);
    page.setUint16(F.right_order.offset, 25, true);
    assert.throws(() => Vchan.client(ctx, 0, path), /vchan: ring order 25 is not 10\.\.20/);
    assert.equal(host.hv.dom0.gnttab.mappings, mapped);
    page.setUint16(F.right_order.offset, right, true);
    const xs = host.xenstored;
    xs.writeText(`${path}/event-channel`, "4000");
    assert.throws(() => Vchan.client(ctx, 0, path), /4000/);
    assert.equal(host.hv.dom0.gnttab.mappings, mapped);
    srv.close();
  } finally {
    await host.shutdown();
  }
});

test("a server that runs Dom0 out of pages midway fails and gives back what it took", async () => {
  const host = newHost();
  try {
    // Leave room for the shared page and one 1 MiB ring (256 pages), not the second.
    const hog = host.dom0.openGntshr();
    const pc = host.dom0.privcmd;
    hog.share(0, pc.freePageCount - 300);
    const free = pc.freePageCount;
    const ctx = { drivers: host.dom0, xenstored: host.xenstored };
    const path = `/local/domain/0/data/vchan/${++serial}`;
    assert.throws(
      () => Vchan.server(ctx, 0, path, 2 ** 20, 2 ** 20),
      /gntalloc: cannot share 256 pages with d0: Dom0 is out of pages/,
    );
    assert.equal(pc.freePageCount, free, "the shared page and the first ring are given back");
    assert.equal(host.xenstored.store.get(`${path}/ring-ref`), undefined);
    hog.dispose();
    assert.throws(
      () => Vchan.server(ctx, 0, "data/vchan/no spaces", 4096, 4096),
      /vchan: 'data\/vchan\/no spaces' is not a xenstore path: a character outside/,
    );
  } finally {
    await host.shutdown();
  }
});
