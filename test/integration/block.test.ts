/**
 * The split block driver end to end: blkbench (mini-os blkfront) against
 * blkback over raw images; a disk written by one guest, detached, and read
 * back by another; and hostile frontends played from TypeScript on a paused
 * guest's memory (bad segment counts, grants, sectors, operations, a ring
 * with wild indices, garbage in xenstore): each gets an error response or a
 * closed device, while the host and another guest carry on. Reads done off
 * the main thread: a guest with four in flight, a write that must wait for
 * the reads before it, and a domain destroyed while its pages are read into.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { grantAccess, guestPath, newHost, notifyFromGuest, until } from "../helpers.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { xlDomainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";
import { parseDiskSpec } from "../../tools/libxl/disk.js";
import type { Host } from "../../tools/host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import * as B from "../../xen/include/public/io/blkif.js";
import { MAX_READS_IN_FLIGHT } from "../../dom0/backends/blkback.js";
import { RawFileStorage } from "../../dom0/backends/storage.js";

function cfg(name: string, kernel: string, over: Partial<XlDomainConfig> = {}): XlDomainConfig {
  return xlDomainConfig({
    name,
    kernel: guestPath(kernel),
    memory: 8,
    onPoweroff: "preserve",
    onCrash: "preserve",
    ...over,
  });
}

/** A sparse raw image of `bytes`. */
function sparse(path: string, bytes: number): void {
  writeFileSync(path, "");
  truncateSync(path, bytes);
}

const consoleOf = (host: Host, d: Domain): string => host.xenconsoled.read(d.domid);

/** Runs `fn` with a host, its libxl and a sparse raw image of `bytes`, and cleans up after. */
async function withDisk(
  bytes: number,
  fn: (ctx: { host: Host; libxl: Libxl; img: string }) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-blk-"));
  const img = join(dir, "disk.img");
  sparse(img, bytes);
  const host = newHost();
  try {
    await fn({ host, libxl: new Libxl(host), img });
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `fn` with a raw image of `bytes` (1 MiB unless given) whose first
 * MiB has `byte(i)` at byte i (the rest is a hole), a host, and a paused
 * guest `d` that has the image as xvda; cleans up after.
 */
async function withPausedGuestDisk(
  byte: (i: number) => number,
  fn: (ctx: { host: Host; libxl: Libxl; img: string; pattern: Buffer; d: Domain }) => Promise<void>,
  bytes = 1024 * 1024,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-blk-"));
  const img = join(dir, "disk.img");
  const pattern = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < pattern.length; i++) pattern[i] = byte(i);
  writeFileSync(img, pattern);
  truncateSync(img, bytes);
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const d = await libxl.create(cfg("fe", "ticker", { disks: [`vdev=xvda, target=${img}`] }), {
      paused: true,
    });
    await fn({ host, libxl, img, pattern, d });
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a disk written by one guest, detached, and read back by another", async () => {
  await withDisk(16 * 2 ** 20, async ({ host, libxl, img }) => {
    const disk = `format=raw, vdev=xvda, access=rw, target=${img}`;
    const a = await libxl.create(
      cfg("writer", "blkbench", { cmdline: "write seed=7 mib=4", disks: [disk] }),
    );
    await until(() => a.isShutdown, 20_000, "the writer to finish");
    assert.match(consoleOf(host, a), /sequential write 4 MiB/);
    assert.equal(a.shutdownName, "poweroff", consoleOf(host, a));
    // The writer is shut down: its frontend will never answer, so libxl's
    // timeout removes the device, and blkback lets go of the ring and grants.
    await libxl.removeDisk(a.domid, "xvda", 300);
    await until(() => host.vbd.list().length === 0, 2000, "blkback to drop the device");
    assert.equal(
      host.xenstored.readText(`/local/domain/0/backend/vbd/${a.domid}/51712`),
      undefined,
    );
    const b = await libxl.create(
      cfg("reader", "blkbench", { cmdline: "verify seed=7 mib=4", disks: [disk] }),
    );
    await until(() => b.isShutdown, 20_000, "the reader to finish");
    assert.match(consoleOf(host, b), /verify ok \(4 MiB\)/, consoleOf(host, b));
    // mini-os's blkfront took the backend's offer of indirect requests: 1 MiB
    // each, the disk read twice (timed, then checked).
    const dev = [...host.blkback.devices.values()].find((x) => x.info.frontendId === b.domid)!;
    assert.equal(dev.stats.indirect, 8);
    assert.equal(dev.stats.sectorsRead, 8 * 2048);
    // With four 1 MiB reads in flight (blkfront_aio), answered as blkback's
    // reads off the main thread finish, whatever their order.
    const e = await libxl.create(
      cfg("readahead", "blkbench", {
        cmdline: "verify seed=7 mib=4 depth=4 passes=2",
        memory: 16,
        disks: [disk],
      }),
    );
    await until(() => e.isShutdown, 20_000, "the read-ahead reader to finish");
    assert.match(
      consoleOf(host, e),
      /4 requests in flight[^]*verify ok \(4 MiB\)/,
      consoleOf(host, e),
    );
    const devE = [...host.blkback.devices.values()].find((x) => x.info.frontendId === e.domid)!;
    assert.equal(
      devE.stats.sectorsRead,
      6 * 4 * 2048,
      "two timed passes each way, and a checked one each way",
    );
    assert.ok(devE.stats.asyncReads > 0, "some reads were done off the main thread");
    // And with another seed, the check does fail: it is not vacuous.
    const c = await libxl.create(
      cfg("wrong", "blkbench", {
        cmdline: "verify seed=8 mib=1",
        disks: [disk.replace("xvda", "xvda")],
      }).valueOf() as XlDomainConfig,
    );
    await until(() => c.isShutdown, 20_000, "the wrong reader");
    assert.match(consoleOf(host, c), /verify FAILED at sector 0/);
  });
});

test("xl block-detach of a running guest: its blkfront closes and the backend lets go", async () => {
  await withDisk(4 * 2 ** 20, async ({ host, libxl, img }) => {
    const disk = `vdev=xvda, target=${img}`;
    const d = await libxl.create(
      cfg("holder", "blkbench", { cmdline: "write mib=1 hold", disks: [disk] }),
    );
    await until(
      () => /holding xvda/.test(consoleOf(host, d)),
      20_000,
      "the guest to hold its disk",
    );
    assert.equal(host.vbd.list().length, 1);
    // Hot-unplug as libxl does it: the frontend sees its backend close and
    // closes too, well before libxl's 10 s timeout.
    const t0 = performance.now();
    await libxl.removeDisk(d.domid, "xvda");
    assert.ok(performance.now() - t0 < 5000, "the frontend answered");
    await until(() => d.isShutdown, 5000, "the guest to power off");
    assert.match(consoleOf(host, d), /xvda was unplugged; powering off/);
    assert.equal(d.shutdownName, "poweroff", consoleOf(host, d));
    await until(() => host.vbd.list().length === 0, 2000, "blkback to drop the device");
    assert.equal(host.blkback.devices.size, 0, "no port bound");
    assert.equal(host.xenstored.readText(`/local/domain/${d.domid}/device/vbd/51712`), undefined);
  });
});

test("xl block-attach to a running guest: it finds the new disk and uses it", async () => {
  await withDisk(4 * 2 ** 20, async ({ host, libxl, img }) => {
    const d = await libxl.create(cfg("plug", "blkbench", { cmdline: "wait mib=2 ios=10" }));
    await until(() => /waiting for xvda/.test(consoleOf(host, d)), 20_000, "the guest to wait");
    assert.equal(host.vbd.list().length, 0);
    libxl.addDisk(d.domid, parseDiskSpec(`vdev=xvda, target=${img}`));
    await until(() => d.isShutdown, 20_000, "the guest to use its new disk");
    assert.match(consoleOf(host, d), /verify ok \(2 MiB\)/, consoleOf(host, d));
    assert.equal(d.shutdownName, "poweroff", consoleOf(host, d));
  });
});

/** A frontend played from TypeScript on paused guest `d`: its pages, grants, port and ring. */
class FakeFrontend {
  static RING_PFN = 900;
  static DATA_PFN = 904;
  readonly port: number;
  private prod = 0;
  private readonly base = FakeFrontend.RING_PFN * 4096;
  private readonly slots: number;

  /** A ring of 2^`order` pages at RING_PFN (grant refs 20...), data pages at DATA_PFN (refs 11...). */
  constructor(
    readonly host: Host,
    readonly d: Domain,
    readonly order = 0,
  ) {
    this.grant(10, FakeFrontend.RING_PFN);
    for (let i = 0; i < 1 << order; i++) this.grant(20 + i, FakeFrontend.RING_PFN + i);
    for (let i = 0; i < 16; i++) this.grant(FakeFrontend.dataRef(i), FakeFrontend.DATA_PFN + i);
    d.mem.clear(this.base, 4096 << order);
    this.slots = B.blkifRingSize(1 << order);
    this.port = host.dom0.openEvtchn().allocUnboundIn(d.domid, 0);
  }

  grant(ref: number, pfn: number): void {
    grantAccess(this.d, ref, 0, pfn);
  }

  /** The grant ref of data page `i` (0..15, at DATA_PFN + i). */
  static dataRef(i: number): number {
    return i < 4 ? 11 + i : 26 + i;
  }

  /**
   * An indirect read of data pages 0..`n`-1 (whole pages) from `sector`: the
   * segments listed in page `pfn`, granted as `ref`. Returns the request's fill.
   */
  indirectRead(ref: number, pfn: number, n: number, sector = 0): (dv: DataView, o: number) => void {
    this.grant(ref, pfn);
    for (let i = 0; i < n; i++) {
      const o = pfn * 4096 + i * 8;
      this.d.mem.setU32(o, FakeFrontend.dataRef(i));
      this.d.mem.setU8(o + 4, 0);
      this.d.mem.setU8(o + 5, 7);
    }
    const I = B.blkif_request_indirect.fields;
    return (dv, o) => {
      dv.setUint8(o + I.operation.offset, B.BLKIF_OP_INDIRECT);
      dv.setUint8(o + I.indirect_op.offset, B.BLKIF_OP_READ);
      dv.setUint16(o + I.nr_segments.offset, n, true);
      dv.setBigUint64(o + I.sector_number.offset, BigInt(sector), true);
      dv.setUint32(o + I.indirect_grefs.offset, ref, true);
    };
  }

  get frontend(): string {
    return `/local/domain/${this.d.domid}/device/vbd/51712`;
  }
  get backend(): string {
    return `/local/domain/0/backend/vbd/${this.d.domid}/51712`;
  }

  async connect(): Promise<void> {
    const xs = this.host.xenstored;
    if (this.order > 0) {
      xs.writeText(`${this.frontend}/ring-page-order`, String(this.order));
      for (let i = 0; i < 1 << this.order; i++)
        xs.writeText(`${this.frontend}/ring-ref${i}`, String(20 + i));
    } else xs.writeText(`${this.frontend}/ring-ref`, "10");
    xs.writeText(`${this.frontend}/event-channel`, String(this.port));
    xs.writeText(`${this.frontend}/state`, "3");
    await until(() => xs.readText(`${this.backend}/state`) === "4", 2000, "the backend to connect");
  }

  /** Sends one request (`fill` writes it); resolves with the response status. */
  async request(fill: (dv: DataView, o: number) => void): Promise<number> {
    return (await this.requests([fill]))[0]!;
  }

  /**
   * Sends several requests with one event; resolves with their statuses in
   * request order, whatever order the responses came in (found by id).
   */
  async requests(fills: Array<(dv: DataView, o: number) => void>): Promise<number[]> {
    const first = this.send(fills);
    await until(() => this.responses === this.prod, 2000, "the responses");
    const status = new Map<number, number>();
    for (let i = first; i < this.prod; i++) status.set(...this.response(i));

    const ids = fills.map((_, k) => first + k + 1000);
    assert.deepEqual(
      [...status.keys()].sort((a, b) => a - b),
      ids,
      "each response echoes one request's id",
    );
    return ids.map((id) => status.get(id)!);
  }

  /** The backend's rsp_prod: responses it has produced. */
  get responses(): number {
    return this.d.mem.u32(this.base + 8);
  }

  /** Response `i` (in the order produced): its id and status. */
  response(i: number): [number, number] {
    const o = this.base + 64 + (i % this.slots) * 112;
    return [
      this.d.mem.u32(o),
      this.d.mem.dv.getInt16(o + B.blkif_response.fields.status.offset, true),
    ];
  }

  /** Puts requests on the ring and sends one event; returns the first one's index. */
  send(fills: Array<(dv: DataView, o: number) => void>): number {
    const first = this.prod;
    for (const fill of fills) {
      const o = this.base + 64 + (this.prod % this.slots) * 112;
      this.d.mem.clear(o, 112);
      fill(this.d.mem.dv, o);
      this.d.mem.setU32(o + B.blkif_request.fields.id.offset, this.prod + 1000);
      this.prod++;
    }
    this.d.mem.setU32(this.base, this.prod);
    this.kick();
    return first;
  }

  /** EVTCHNOP_send from the guest's side. */
  kick(): void {
    assert.equal(notifyFromGuest(this.host, this.d, this.port), 0);
  }
}

/** A read or write of `segs` ([gref, first, last]) from `sector`. */
const rw =
  (op: number, sector: number, segs: Array<[number, number, number]>, nr = segs.length) =>
  (dv: DataView, o: number): void => {
    const R = B.blkif_request.fields;
    dv.setUint8(o + R.operation.offset, op);
    dv.setUint8(o + R.nr_segments.offset, nr);
    dv.setBigUint64(o + R.sector_number.offset, BigInt(sector), true);
    segs.forEach(([g, f, l], i) => {
      const s = o + R.seg.offset + i * 8;
      dv.setUint32(s, g, true);
      dv.setUint8(s + 4, f);
      dv.setUint8(s + 5, l);
    });
  };

test("hostile frontends get error responses or a closed device; the host carries on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-blk-"));
  const img = join(dir, "disk.img");
  const pattern = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31) & 0xff;
  writeFileSync(img, pattern);
  const other = join(dir, "other.img");
  sparse(other, 8 * 2 ** 20);
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const disk = `vdev=xvda, target=${img}`;
    const d = await libxl.create(cfg("fe", "ticker", { disks: [disk] }), { paused: true });
    const fe = new FakeFrontend(host, d);
    await fe.connect();
    const ok = B.BLKIF_RSP_OKAY;
    const err = B.BLKIF_RSP_ERROR;
    // A good read lands in the granted page.
    assert.equal(await fe.request(rw(B.BLKIF_OP_READ, 8, [[11, 0, 7]])), ok);
    assert.deepEqual(
      Buffer.from(d.mem.read(FakeFrontend.DATA_PFN * 4096, 4096)),
      pattern.subarray(4096, 8192),
    );
    const rows: Array<[string, (dv: DataView, o: number) => void, number]> = [
      ["no segments", rw(B.BLKIF_OP_READ, 0, [], 0), err],
      ["12 segments", rw(B.BLKIF_OP_READ, 0, [[11, 0, 0]], 12), err],
      ["a grant never given", rw(B.BLKIF_OP_READ, 0, [[999, 0, 7]]), err],
      ["a sector past the end", rw(B.BLKIF_OP_READ, 2047, [[11, 0, 1]]), err],
      ["first_sect > last_sect", rw(B.BLKIF_OP_READ, 0, [[11, 5, 2]]), err],
      ["last_sect past the page", rw(B.BLKIF_OP_WRITE, 0, [[11, 0, 8]]), err],
      // Checked throughout before anything is written.
      [
        "a write whose third segment is bad",
        rw(B.BLKIF_OP_WRITE, 0, [
          [11, 0, 7],
          [11, 0, 7],
          [11, 3, 1],
        ]),
        err,
      ],
      [
        "a write whose second grant was never given",
        rw(B.BLKIF_OP_WRITE, 8, [
          [11, 0, 7],
          [999, 0, 7],
        ]),
        err,
      ],
      ["an unknown operation", (dv, o) => dv.setUint8(o, 99), B.BLKIF_RSP_EOPNOTSUPP],
      [
        "an indirect request of 300 segments",
        (dv, o) => {
          dv.setUint8(o, B.BLKIF_OP_INDIRECT);
          dv.setUint8(o + 1, B.BLKIF_OP_READ);
          dv.setUint16(o + 2, 300, true);
        },
        err,
      ],
      ["a flush", (dv, o) => dv.setUint8(o, B.BLKIF_OP_FLUSH_DISKCACHE), ok],
    ];
    for (const [what, fill, want] of rows) assert.equal(await fe.request(fill), want, what);
    // The refused write changed nothing on the disk.
    assert.deepEqual(readFileSync(img), pattern);

    // Another guest does real I/O meanwhile.
    const g = await libxl.create(
      cfg("good", "blkbench", { cmdline: "mib=2 ios=100", disks: [`vdev=xvda, target=${other}`] }),
    );

    // A ring whose producer runs far ahead: the device closes with an error.
    d.mem.setU32(FakeFrontend.RING_PFN * 4096, 100_000);
    fe.kick();
    await until(
      () => host.xenstored.readText(`${fe.backend}/state`) === "5",
      2000,
      "the device to close",
    );
    assert.match(host.xenstored.readText(`${fe.backend}/error`) ?? "", /ring is bogus/);

    // Garbage in xenstore: a second disk whose frontend writes nonsense.
    const d2 = await libxl.create(cfg("fe2", "ticker", { disks: [disk] }), { paused: true });
    const front2 = `/local/domain/${d2.domid}/device/vbd/51712`;
    const back2 = `/local/domain/0/backend/vbd/${d2.domid}/51712`;
    host.xenstored.writeText(`${front2}/ring-ref`, "banana");
    host.xenstored.writeText(`${front2}/event-channel`, "7");
    host.xenstored.writeText(`${front2}/state`, "3");
    await until(() => host.xenstored.readText(`${back2}/state`) === "6", 2000, "a refused connect");
    assert.match(host.xenstored.readText(`${back2}/error`) ?? "", /ring-ref is 'banana'/);
    // And where Linux's xenbus_dev_error puts it: error/<backend path>, errno first.
    const linuxError = `/local/domain/0/error/backend/vbd/${d2.domid}/51712/error`;
    assert.match(host.xenstored.readText(linuxError) ?? "", /^\d+ .*ring-ref is 'banana'/);

    await until(() => g.isShutdown, 20_000, "the good guest");
    assert.match(consoleOf(host, g), /verify ok \(2 MiB\)/, consoleOf(host, g));
    // Destroying the hostile domains leaves nothing mapped or bound.
    libxl.destroy(d.domid);
    libxl.destroy(d2.domid);
    await until(
      () => host.vbd.list().every((x) => !x.backend.includes(`/${d.domid}/`)),
      2000,
      "cleanup",
    );
    await until(
      () => host.xenstored.store.get(linuxError) === undefined,
      2000,
      "the error node to go with its domain",
    );
    assert.equal(host.hv.domains.has(d.domid), false, "no grant mapping keeps the domain dying");
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("random reads and writes, direct and indirect, some invalid, agree with a model of the disk", async () => {
  const byte = (i: number): number => (i * 13 + (i >> 10)) & 0xff;
  await withPausedGuestDisk(byte, async ({ host, img, pattern, d }) => {
    const fe = new FakeFrontend(host, d);
    await fe.connect();
    // A fixed seed (mulberry32): a failure replays.
    let seed = 0x5eed;
    const rand = (n: number): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const model = Buffer.from(pattern);
    const sectors = model.length / 512;
    const INDIRECT_REF = 60;
    const INDIRECT_PFN = 960;
    fe.grant(INDIRECT_REF, INDIRECT_PFN);
    const page = (i: number): number => (FakeFrontend.DATA_PFN + i) * 4096;
    for (let round = 0; round < 300; round++) {
      const write = rand(2) === 0;
      const indirect = rand(3) === 0;
      const n = 1 + rand(indirect ? 16 : B.BLKIF_MAX_SEGMENTS_PER_REQUEST);
      // Reads fill distinct pages (so each byte has one source); writes may repeat one.
      const order = Array.from({ length: 16 }, (_, i) => i);
      for (let i = 15; i > 0; i--) {
        const j = rand(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      // Runs of neighbouring pages, so that some segments carry on from the last.
      if (rand(2) === 0) order.sort((a, b) => a - b);
      const segs: Array<[number, number, number]> = [];
      let valid = true;
      let total = 0;
      for (let k = 0; k < n; k++) {
        const p = write ? rand(16) : order[k]!;
        let first = rand(2) === 0 ? 0 : rand(8);
        let last = rand(2) === 0 ? 7 : first + rand(8 - first);
        let ref = FakeFrontend.dataRef(p);
        const spoil = rand(25);
        if (spoil === 0) [first, last] = [5, 2];
        else if (spoil === 1) last = 8;
        else if (spoil === 2) ref = 999;
        if (spoil <= 2) valid = false;
        segs.push([ref, first, last]);
        total += last - first + 1;
      }
      const sector = rand(sectors - total + 4);
      if (sector + total > sectors) valid = false;
      // Bytes that differ from page to page, sector to sector and round to round.
      if (write) {
        for (let i = 0; i < 16; i++) {
          const b = Buffer.alloc(4096);
          for (let j = 0; j < 4096; j++) b[j] = (round * 131 + i * 17 + (j >> 9) * 7 + j) & 0xff;
          d.mem.write(page(i), b);
        }
      }
      const op = write ? B.BLKIF_OP_WRITE : B.BLKIF_OP_READ;
      let fill: (dv: DataView, o: number) => void;
      if (!indirect) fill = rw(op, sector, segs);
      else {
        segs.forEach(([g, f, l], k) => {
          const o = INDIRECT_PFN * 4096 + k * 8;
          d.mem.setU32(o, g);
          d.mem.setU8(o + 4, f);
          d.mem.setU8(o + 5, l);
        });
        const I = B.blkif_request_indirect.fields;
        fill = (dv, o) => {
          dv.setUint8(o + I.operation.offset, B.BLKIF_OP_INDIRECT);
          dv.setUint8(o + I.indirect_op.offset, op);
          dv.setUint16(o + I.nr_segments.offset, n, true);
          dv.setBigUint64(o + I.sector_number.offset, BigInt(sector), true);
          dv.setUint32(o + I.indirect_grefs.offset, INDIRECT_REF, true);
        };
      }
      const what = `round ${round}: ${write ? "write" : "read"} ${indirect ? "indirect " : ""}at ${sector} of ${JSON.stringify(segs)}`;
      const st = await fe.request(fill);
      assert.equal(st, valid ? B.BLKIF_RSP_OKAY : B.BLKIF_RSP_ERROR, what);
      if (!valid) continue;
      let at = sector * 512;
      for (const [g, f, l] of segs) {
        const p = [...Array(16).keys()].find((i) => FakeFrontend.dataRef(i) === g)!;
        const mem = Buffer.from(d.mem.read(page(p) + f * 512, (l - f + 1) * 512));
        if (write) mem.copy(model, at);
        else assert.ok(mem.equals(model.subarray(at, at + mem.length)), `${what}: segment data`);
        at += mem.length;
      }
    }
    // Refused writes wrote nothing; the others wrote all they carried.
    assert.ok(readFileSync(img).equals(model), "the image is the model");
  });
});

test("indirect requests, discard, barriers and a multi-page ring", async () => {
  const byte = (i: number): number => (i * 7 + (i >> 9)) & 0xff;
  await withPausedGuestDisk(byte, async ({ host, img, pattern, d }) => {
    // A two-page ring: 64 slots; go round it more than once.
    const fe = new FakeFrontend(host, d, 1);
    await fe.connect();
    const back = host.xenstored.readText(`${fe.backend}/max-ring-page-order`);
    assert.equal(back, "4");
    for (let i = 0; i < 70; i++) {
      assert.equal(await fe.request(rw(B.BLKIF_OP_READ, i * 8, [[11, 0, 7]])), B.BLKIF_RSP_OKAY);
    }
    assert.deepEqual(
      Buffer.from(d.mem.read(FakeFrontend.DATA_PFN * 4096, 4096)),
      pattern.subarray(69 * 4096, 70 * 4096),
    );

    // INDIRECT: 12 segments (more than a direct request holds) listed in an indirect page.
    const st = await fe.request(fe.indirectRead(60, 960, 12, 16));
    assert.equal(st, B.BLKIF_RSP_OKAY);
    for (let i = 0; i < 12; i++) {
      const got = Buffer.from(d.mem.read((FakeFrontend.DATA_PFN + i) * 4096, 4096));
      assert.ok(
        got.equals(pattern.subarray((2 + i) * 4096, (3 + i) * 4096)),
        `indirect segment ${i}`,
      );
    }

    // DISCARD: the sectors read back as zeros.
    const D = B.blkif_request_discard.fields;
    assert.equal(
      await fe.request((dv, o) => {
        dv.setUint8(o + D.operation.offset, B.BLKIF_OP_DISCARD);
        dv.setBigUint64(o + D.sector_number.offset, 100n, true);
        dv.setBigUint64(o + D.nr_sectors.offset, 20n, true);
      }),
      B.BLKIF_RSP_OKAY,
    );
    // WRITE_BARRIER: the page's bytes are on disk when it answers.
    d.mem.u8.fill(0x5a, FakeFrontend.DATA_PFN * 4096, FakeFrontend.DATA_PFN * 4096 + 512);
    assert.equal(await fe.request(rw(B.BLKIF_OP_WRITE_BARRIER, 4, [[11, 0, 0]])), B.BLKIF_RSP_OKAY);
    const disk = readFileSync(img);
    assert.ok(
      disk.subarray(100 * 512, 120 * 512).every((x) => x === 0),
      "discarded",
    );
    assert.ok(
      disk.subarray(99 * 512, 100 * 512).equals(pattern.subarray(99 * 512, 100 * 512)),
      "only those",
    );
    assert.ok(
      disk.subarray(4 * 512, 5 * 512).every((x) => x === 0x5a),
      "the barrier write",
    );
    const dev = [...host.blkback.devices.values()][0]!;
    assert.ok(dev.stats.flushes >= 1 && dev.stats.discards === 1);
  });
});

/** Milliseconds by which raw images' reads off the main thread are held back (0: not). */
let slowReads = 0;
const readAsync = RawFileStorage.prototype.readAsync;
RawFileStorage.prototype.readAsync = function (sector, dst, done) {
  if (slowReads === 0) return readAsync.call(this, sector, dst, done);
  setTimeout(() => readAsync.call(this, sector, dst, done), slowReads);
};

test("a write waits for the reads in flight before it, which read what was there before", async () => {
  const byte = (i: number): number => (i * 13 + (i >> 12)) & 0xff;
  try {
    await withPausedGuestDisk(byte, async ({ host, libxl, img, pattern, d }) => {
      const fe = new FakeFrontend(host, d);
      await fe.connect();
      // Two indirect reads of the first 64 KiB into the 16 data pages (large
      // enough to go off the main thread), then a write over their first
      // sectors from another page, all in one batch.
      fe.grant(62, 962);
      const reads = [fe.indirectRead(60, 960, 16), fe.indirectRead(61, 961, 16)];
      // A slow disk: reads off the main thread start 20 ms late, so that a
      // write that did not wait for them would be on disk first.
      slowReads = 20;
      // Each round writes a new byte over the first page; its reads must see
      // the one before.
      let before = pattern.subarray(0, 4096);
      for (let round = 0; round < 3; round++) {
        const byte = 0xe0 + round;
        d.mem.u8.fill(byte, 962 * 4096, 963 * 4096);
        d.mem.clear(FakeFrontend.DATA_PFN * 4096, 16 * 4096);
        const statuses = await fe.requests([...reads, rw(B.BLKIF_OP_WRITE, 0, [[62, 0, 7]])]);
        assert.deepEqual(statuses, [B.BLKIF_RSP_OKAY, B.BLKIF_RSP_OKAY, B.BLKIF_RSP_OKAY]);
        assert.deepEqual(
          Buffer.from(d.mem.read(FakeFrontend.DATA_PFN * 4096, 16 * 4096)),
          Buffer.concat([before, pattern.subarray(4096, 16 * 4096)]),
          `round ${round}: the reads saw the disk from before the write`,
        );
        before = Buffer.alloc(4096, byte);
      }
      const dev = [...host.blkback.devices.values()][0]!;
      assert.ok(dev.stats.asyncReads >= 3, "reads went off the main thread");
      const disk = readFileSync(img);
      assert.ok(disk.subarray(0, 4096).equals(before), "the last write is on disk");
      assert.ok(disk.subarray(4096).equals(pattern.subarray(4096)), "and nothing else changed");

      // Destroyed with reads in flight: the pages they fill stay mapped, and
      // the domain dying, until they are done; then nothing is left.
      slowReads = 300;
      const started = dev.stats.asyncReads;
      fe.send(reads);
      await until(() => dev.stats.asyncReads === started + 2, 2000, "the reads to start");
      libxl.destroy(d.domid);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(
        host.hv.domains.get(d.domid)?.isDying,
        true,
        "dying while its pages are read into",
      );
      await until(() => !host.hv.domains.has(d.domid), 3000, "the domain to go");
      assert.equal(host.vbd.list().length, 0);
    });
  } finally {
    slowReads = 0;
  }
});

/** Milliseconds by which raw images' flushes off the main thread are held back (0: not). */
let slowFlushes = 0;
const flushAsync = RawFileStorage.prototype.flushAsync;
RawFileStorage.prototype.flushAsync = function (done) {
  if (slowFlushes === 0) return flushAsync.call(this, done);
  setTimeout(() => flushAsync.call(this, done), slowFlushes);
};

test("a flush is done off the main thread, and the requests after it wait for it", async () => {
  try {
    await withPausedGuestDisk(
      (i) => i & 0xff,
      async ({ host, d }) => {
        const fe = new FakeFrontend(host, d);
        await fe.connect();
        slowFlushes = 200;
        const flush = (dv: DataView, o: number): void =>
          dv.setUint8(o + B.blkif_request.fields.operation.offset, B.BLKIF_OP_FLUSH_DISKCACHE);
        const first = fe.send([flush, rw(B.BLKIF_OP_READ, 8, [[11, 0, 7]])]);
        // Meanwhile the host runs: timers fire, and the read is not answered.
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(fe.responses, first, "nothing answered yet");
        await until(() => fe.responses === first + 2, 2000, "both answers");
        // The flush's response comes first: the read waited for it.
        assert.deepEqual(fe.response(first), [first + 1000, B.BLKIF_RSP_OKAY]);
        assert.deepEqual(fe.response(first + 1), [first + 1001, B.BLKIF_RSP_OKAY]);
        const dev = [...host.blkback.devices.values()][0]!;
        assert.equal(dev.stats.flushes, 1);
      },
    );
  } finally {
    slowFlushes = 0;
  }
});

test("a frontend has at most MAX_READS_IN_FLIGHT reads off the main thread; the rest wait", async () => {
  try {
    await withPausedGuestDisk(
      (i) => (i >> 9) & 0xff,
      async ({ host, d }) => {
        const fe = new FakeFrontend(host, d);
        await fe.connect();
        const dev = [...host.blkback.devices.values()][0]!;
        const read = fe.indirectRead(60, 960, 16);
        slowReads = 200;
        const first = fe.send(Array.from({ length: MAX_READS_IN_FLIGHT + 4 }, () => read));
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(dev.stats.asyncReads, MAX_READS_IN_FLIGHT, "the others wait on the ring");
        assert.equal(fe.responses, first);
        await until(
          () => fe.responses === first + MAX_READS_IN_FLIGHT + 4,
          3000,
          "every read answered",
        );
        for (let i = first; i < fe.responses; i++)
          assert.equal(fe.response(i)[1], B.BLKIF_RSP_OKAY);
        assert.equal(dev.stats.asyncReads, MAX_READS_IN_FLIGHT + 4);
      },
    );
  } finally {
    slowReads = 0;
  }
});

test("a discard of a whole 1 GiB disk punches a hole: it takes no space and reads back as zeros", async () => {
  await withPausedGuestDisk(
    (i) => (i * 5 + 1) & 0xff,
    async ({ host, img, d }) => {
      const fe = new FakeFrontend(host, d);
      await fe.connect();
      const D = B.blkif_request_discard.fields;
      const st = await fe.request((dv, o) => {
        dv.setUint8(o + D.operation.offset, B.BLKIF_OP_DISCARD);
        dv.setBigUint64(o + D.sector_number.offset, 0n, true);
        dv.setBigUint64(o + D.nr_sectors.offset, BigInt(2 ** 30 / 512), true);
      });
      assert.equal(st, B.BLKIF_RSP_OKAY);
      const after = statSync(img);
      assert.equal(after.size, 2 ** 30, "the disk keeps its size");
      // Zeros written over it would have taken the whole GiB.
      assert.ok(after.blocks * 512 < 1024 * 1024, `${after.blocks * 512} bytes allocated`);
      const head = Buffer.alloc(1024 * 1024, 0xff);
      const fd = openSync(img, "r");
      readSync(fd, head, 0, head.length, 0);
      closeSync(fd);
      assert.ok(
        head.every((x) => x === 0),
        "the data that was there reads back as zeros",
      );
    },
    2 ** 30,
  );
});
