/**
 * qcow2 images written through blkback are valid for QEMU: `qemu-img check`
 * finds no errors, and `qemu-img convert` reads back the bytes the guest
 * wrote. Partial-cluster writes keep the rest of the cluster, images grow
 * as they are written, and an overlay reads through to its backing file
 * (which stays untouched) until a cluster is written.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guestPath, newHost, until } from "../helpers.js";
import { Libxl } from "../../tools/libxl/domain.js";
import { Qcow2Storage } from "../../dom0/backends/qcow2.js";
import { xlDomainConfig, type XlDomainConfig } from "../../tools/libxl/config.js";

const qemuImg = (...args: string[]): string => execFileSync("qemu-img", args, { encoding: "utf8" });

/** blkbench's pattern (extras/mini-os/examples/blkbench.ts) for `mib` MiB. */
function pattern(mib: number, seed: number, firstSector = 0): Buffer {
  const b = Buffer.alloc(mib << 20);
  for (let s = 0; s < b.length / 512; s++) {
    for (let i = 0; i < 128; i++) {
      b.writeUInt32LE(((firstSector + s) * 131 + i * 7 + seed * 1000003) >>> 0, s * 512 + i * 4);
    }
  }
  return b;
}

function cfg(name: string, cmdline: string, disk: string): XlDomainConfig {
  return xlDomainConfig({
    name,
    kernel: guestPath("blkbench"),
    memory: 8,
    cmdline,
    onPoweroff: "preserve",
    onReboot: "destroy",
    onCrash: "preserve",
    disks: [disk],
  });
}

test("a guest's writes to qcow2 pass qemu-img check and read back in qemu-img", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qcow2-"));
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const img = join(dir, "a.qcow2");
    qemuImg("create", "-q", "-f", "qcow2", img, "16M");
    const before = statSync(img).size;
    const d = await libxl.create(
      cfg("q", "mib=4 ios=50 seed=5", `format=qcow2, vdev=xvda, target=${img}`),
    );
    await until(() => d.isShutdown, 20_000, "blkbench");
    const out = host.xenconsoled.read(d.domid);
    assert.match(out, /verify ok \(4 MiB\)/, out);
    libxl.destroy(d.domid);
    await until(() => host.vbd.list().length === 0, 2000, "the device to go");
    assert.ok(statSync(img).size > before + (4 << 20), "the image grew as it was written");
    assert.match(qemuImg("check", img), /No errors were found on the image/);
    const raw = join(dir, "a.raw");
    qemuImg("convert", "-f", "qcow2", "-O", "raw", img, raw);
    const got = readFileSync(raw);
    assert.ok(got.subarray(0, 4 << 20).equals(pattern(4, 5)), "qemu-img reads the guest's bytes");
    assert.ok(
      got.subarray(4 << 20).every((x) => x === 0),
      "the rest reads as zeros",
    );
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an overlay reads through to its backing file and leaves it untouched", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qcow2-"));
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const base = join(dir, "base.raw");
    writeFileSync(base, Buffer.concat([pattern(2, 3), Buffer.alloc(6 << 20)]));
    const over = join(dir, "over.qcow2");
    qemuImg("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", over);
    const r = await libxl.create(
      cfg("r", "verify seed=3 mib=2", `format=qcow2, vdev=xvda, access=ro, target=${over}`),
    );
    await until(() => r.isShutdown, 20_000, "the reader");
    assert.match(host.xenconsoled.read(r.domid), /verify ok \(2 MiB\)/);
    libxl.destroy(r.domid);
    const w = await libxl.create(
      cfg("w", "write seed=4 mib=1", `format=qcow2, vdev=xvda, target=${over}`),
    );
    await until(() => w.isShutdown, 20_000, "the writer");
    libxl.destroy(w.domid);
    await until(() => host.vbd.list().length === 0, 2000, "the devices to go");
    assert.match(qemuImg("check", over), /No errors were found/);
    const raw = join(dir, "over.raw");
    qemuImg("convert", "-f", "qcow2", "-O", "raw", over, raw);
    const got = readFileSync(raw);
    assert.ok(got.subarray(0, 1 << 20).equals(pattern(1, 4)), "the written MiB");
    assert.ok(
      got.subarray(1 << 20, 2 << 20).equals(pattern(2, 3).subarray(1 << 20)),
      "read through",
    );
    assert.ok(
      readFileSync(base)
        .subarray(0, 2 << 20)
        .equals(pattern(2, 3)),
      "the backing file is unchanged",
    );
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("partial-cluster writes keep the rest of the cluster; bad images are refused by name", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qcow2-"));
  try {
    const img = join(dir, "p.qcow2");
    qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img, "1M");
    const q = new Qcow2Storage(img, false);
    const a = Buffer.alloc(1024, 0xaa);
    const b = Buffer.alloc(512, 0xbb);
    q.write(3, a); // sectors 3-4 of cluster 0
    q.write(9, b); // sector 1 of cluster 1
    q.write(6, Buffer.alloc(2048, 0xcc)); // sectors 6-9: across the cluster boundary
    q.flush();
    const back = Buffer.alloc(8 * 512);
    q.read(2, back);
    q.close();
    const want = Buffer.alloc(8 * 512);
    want.fill(0xaa, 512, 1536);
    want.fill(0xcc, 2048, 4096);
    assert.ok(back.equals(want));
    assert.match(qemuImg("check", img), /No errors were found/);
    const raw = join(dir, "p.raw");
    qemuImg("convert", "-O", "raw", img, raw);
    assert.ok(readFileSync(raw).subarray(1024, 5120).equals(want));

    writeFileSync(join(dir, "junk.qcow2"), Buffer.from("QFI\xfb\0\0\0\x09", "latin1"));
    assert.throws(
      () => new Qcow2Storage(join(dir, "junk.qcow2"), true),
      /junk\.qcow2: qcow2 version 9 is not 2 or 3/,
    );
    writeFileSync(join(dir, "raw.img"), Buffer.alloc(4096));
    assert.throws(
      () => new Qcow2Storage(join(dir, "raw.img"), true),
      /raw\.img: not a qcow2 image/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("compressed clusters (qemu-img convert -c): a guest reads them; writes move them out", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qcow2-"));
  const host = newHost();
  const libxl = new Libxl(host);
  try {
    const raw = join(dir, "c.raw");
    const data = Buffer.concat([pattern(2, 3), Buffer.alloc(2 << 20)]);
    writeFileSync(raw, data);
    const img = join(dir, "c.qcow2");
    qemuImg("convert", "-q", "-c", "-f", "raw", "-O", "qcow2", raw, img);
    assert.match(
      qemuImg("check", img),
      /[1-9][\d.]*% compressed clusters/,
      "qemu-img compressed it",
    );

    const d = await libxl.create(
      cfg("c", "verify seed=3 mib=2", `format=qcow2, vdev=xvda, target=${img}`),
    );
    await until(() => d.isShutdown, 20_000, "blkbench");
    assert.match(
      host.xenconsoled.read(d.domid),
      /verify ok \(2 MiB\)/,
      host.xenconsoled.read(d.domid),
    );
    libxl.destroy(d.domid);
    await until(() => host.vbd.list().length === 0, 2000, "the device to go");

    // A sector into one compressed cluster, a whole other one, then everything back.
    const q = new Qcow2Storage(img, false);
    const sector = Buffer.alloc(512, 0x5a);
    q.write(5, sector);
    const whole = Buffer.alloc(q.clusterSize, 0xa5);
    q.write((3 * q.clusterSize) / 512, whole);
    q.flush();
    const want = Buffer.from(data);
    sector.copy(want, 5 * 512);
    whole.copy(want, 3 * q.clusterSize);
    const back = Buffer.alloc(want.length);
    q.read(0, back);
    q.close();
    assert.ok(back.equals(want), "tsxen reads what it wrote over the compressed data");
    // The compressed bytes gave back their references: no leaks, no errors.
    assert.match(qemuImg("check", img), /No errors were found on the image/);
    const out = join(dir, "c.out");
    qemuImg("convert", "-f", "qcow2", "-O", "raw", img, out);
    assert.ok(readFileSync(out).equals(want), "qemu-img reads the same bytes");

    // A compressed cluster that does not inflate is an error that names it:
    // find cluster 0's compressed bytes through L1 and L2, and spoil them.
    const bad = join(dir, "bad.qcow2");
    qemuImg("convert", "-q", "-c", "-f", "raw", "-O", "qcow2", raw, bad);
    const file = readFileSync(bad);
    const clusterBits = file.readUInt32BE(20);
    const l1 = Number(file.readBigUInt64BE(40));
    const l2 = Number(file.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
    const entry = file.readBigUInt64BE(l2);
    assert.ok(entry & (1n << 62n), "cluster 0 is compressed");
    const x = BigInt(62 - (clusterBits - 8));
    const at = Number(entry & ((1n << x) - 1n));
    file.fill(0xff, at, at + 16);
    writeFileSync(bad, file);
    const spoilt = new Qcow2Storage(bad, true);
    assert.throws(
      () => spoilt.read(0, Buffer.alloc(512)),
      new RegExp(`bad\\.qcow2: the compressed cluster at ${at} does not inflate`),
    );
    spoilt.close();
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a discard zeroes clusters without writing them and gives their references back, and new writes reuse them", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qcow2-"));
  try {
    const cases: Array<{ name: string; opts: string[] }> = [
      { name: "v3", opts: ["-o", "compat=1.1,cluster_size=65536"] },
      { name: "v2 over a backing file", opts: ["-o", "compat=0.10,cluster_size=65536"] },
    ];
    for (const c of cases) {
      const img = join(dir, `${c.name.replace(/\W+/g, "-")}.qcow2`);
      const size = 64 << 20;
      let want: Buffer;
      if (c.name.startsWith("v2")) {
        // A 4 MiB backing file under a 64 MiB disk: beyond it, nothing shows through.
        const base = join(dir, "base.raw");
        writeFileSync(base, pattern(4, 9));
        want = Buffer.concat([pattern(4, 9), Buffer.alloc(size - (4 << 20))]);
        qemuImg(
          "create",
          "-q",
          "-f",
          "qcow2",
          ...c.opts,
          "-b",
          base,
          "-F",
          "raw",
          img,
          String(size),
        );
      } else {
        qemuImg("create", "-q", "-f", "qcow2", ...c.opts, img, String(size));
        want = Buffer.alloc(size);
      }
      const q = new Qcow2Storage(img, false);
      const data = pattern(4, 7);
      q.write(0, data);
      data.copy(want, 0);
      // From 0.5 MiB + 1 sector to 3 MiB + 2 sectors: partial clusters at both ends.
      const from = 1024 + 1;
      const to = 6 * 1024 + 2;
      q.discard(from, to - from);
      want.fill(0, from * 512, to * 512);
      // And the empty rest of the disk, which has no L2 tables: passed over.
      q.discard(8 * 2048, size / 512 - 8 * 2048);
      want.fill(0, 8 << 20);
      q.flush();
      const back = Buffer.alloc(8 << 20);
      q.read(0, back);
      const fileSize = statSync(img).size;
      q.close();
      assert.ok(back.equals(want.subarray(0, 8 << 20)), `${c.name}: tsxen reads zeros there`);
      assert.ok(fileSize < 8 << 20, `${c.name}: nothing written for the discarded clusters`);
      const check = qemuImg("check", img);
      assert.match(check, /No errors were found/, `${c.name}: ${check}`);
      assert.doesNotMatch(check, /leaked/, `${c.name}: ${check}`);
      const raw = join(dir, "out.raw");
      qemuImg("convert", "-O", "raw", img, raw);
      assert.ok(readFileSync(raw).equals(want), `${c.name}: qemu-img reads the same bytes`);
      if (c.name !== "v3") continue;
      // The 40 clusters given back (0.5–3 MiB) take the next 2 MiB written,
      // as QEMU's would: the file does not grow.
      const again = new Qcow2Storage(img, false);
      const more = pattern(2, 5);
      again.write(16 * 2048, more);
      more.copy(want, 16 << 20);
      again.close();
      assert.equal(statSync(img).size, fileSize, "freed clusters reused");
      const recheck = qemuImg("check", img);
      assert.match(recheck, /No errors were found/, recheck);
      assert.doesNotMatch(recheck, /leaked/, recheck);
      qemuImg("convert", "-O", "raw", img, raw);
      assert.ok(readFileSync(raw).equals(want), "qemu-img reads the reused clusters' new bytes");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
