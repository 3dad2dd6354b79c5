/**
 * Hostile qcow2 images (made with qemu-img, then corrupted as an attacker
 * would) are refused at open, at once, with the corruption named, and leave
 * no file descriptor behind: tables too large for QEMU, tables past the end
 * of the file, metadata that overlaps, metadata whose refcount would let the
 * allocator hand it out (the guest's writes would then destroy the header),
 * and backing chains that loop.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  mkdtempSync,
  openSync,
  closeSync,
  readdirSync,
  readSync,
  truncateSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Qcow2Storage, openImage } from "../../dom0/backends/qcow2.js";

const qemuImg = (...args: string[]): string => execFileSync("qemu-img", args, { encoding: "utf8" });

/** A 64 MiB qcow2 image (64 KiB clusters) with its first 2 MiB written. */
function image(dir: string, name: string, backing?: string): string {
  const path = join(dir, name);
  if (backing) qemuImg("create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", path);
  else {
    qemuImg("create", "-q", "-f", "qcow2", path, "64M");
    execFileSync("qemu-io", ["-c", "write -P 0x5a 0 2M", path]);
  }
  return path;
}

/** Reads or writes big-endian header and table fields in place. */
function patch(path: string): {
  u32(off: number): number;
  u64(off: number): number;
  u64big(off: number): bigint;
  setU32(off: number, v: number): void;
  setU64(off: number, v: number | bigint): void;
  setBytes(off: number, b: Buffer): void;
} {
  const rw = (off: number, len: number, b?: Buffer): Buffer => {
    const fd = openSync(path, "r+");
    try {
      const buf = b ?? Buffer.alloc(len);
      if (b) writeSync(fd, b, 0, len, off);
      else readSync(fd, buf, 0, len, off);
      return buf;
    } finally {
      closeSync(fd);
    }
  };
  return {
    u32: (off) => rw(off, 4).readUInt32BE(0),
    u64: (off) => Number(rw(off, 8).readBigUInt64BE(0)),
    u64big: (off) => rw(off, 8).readBigUInt64BE(0),
    setU32: (off, v) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(v);
      rw(off, 4, b);
    },
    setU64: (off, v) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(BigInt(v));
      rw(off, 8, b);
    },
    setBytes: (off, b) => void rw(off, b.length, b),
  };
}

const fds = (): number => readdirSync("/proc/self/fd").length;

function refused(path: string, msg: RegExp): void {
  const before = fds();
  const t = performance.now();
  assert.throws(() => openImage(path, false), msg, path);
  const ms = performance.now() - t;
  assert.ok(ms < 200, `refusing ${path} took ${ms.toFixed(0)} ms`);
  assert.equal(fds(), before, "a file descriptor leaked");
}

// Header fields (qcow2.txt).
const L1_SIZE = 36;
const L1_OFFSET = 40;
const REFTABLE_OFFSET = 48;
const REFTABLE_CLUSTERS = 56;
const CLUSTER_BITS = 20;

test("tables QEMU refuses, or that lie past the end of the file, are refused by name", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qhostile-"));
  // A refcount table of 1,000 clusters of 2 MiB (2 GB): QEMU's limit is 8 MiB.
  const big = image(dir, "bigref.qcow2");
  patch(big).setU32(CLUSTER_BITS, 21);
  patch(big).setU32(REFTABLE_CLUSTERS, 1000);
  refused(big, /Reference count table too large/);
  // The L1 table 1 TiB into a 1 MiB file: the first write would grow the file to reach it.
  const far = image(dir, "farl1.qcow2");
  patch(far).setU64(L1_OFFSET, 2 ** 40);
  refused(far, /Active L1 table at 1099511627776 .* is past the end of the file/);
  const odd = image(dir, "oddl1.qcow2");
  patch(odd).setU64(L1_OFFSET, patch(odd).u64(L1_OFFSET) + 512);
  refused(odd, /Active L1 table offset invalid/);
  const huge = image(dir, "hugel1.qcow2");
  patch(huge).setU32(L1_SIZE, 8 * 1024 * 1024);
  refused(huge, /Active L1 table too large/);
  // 512-byte clusters and an L1 table naming 100,000 L2 tables: the open
  // would read each; refused before any is read.
  const tiny = join(dir, "tiny.qcow2");
  qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", tiny, "64M");
  const t = patch(tiny);
  const n = 100_000;
  const l1 = Buffer.alloc(n * 8);
  for (let i = 0; i < n; i++) l1.writeBigUInt64BE(BigInt((1 << 20) + i * 512), i * 8);
  t.setU32(L1_SIZE, n);
  t.setU64(L1_OFFSET, 1 << 30);
  t.setBytes(1 << 30, l1);
  refused(tiny, /names 100000 L2 tables; tsxen checks images of at most 65536/);
  // A sparse 64 GiB file of 512-byte clusters: 2^27 clusters, a handful in
  // use. The check visits those, not every cluster of the file.
  const sparse = join(dir, "sparse.qcow2");
  qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", sparse, "64M");
  truncateSync(sparse, 512 * 2 ** 27 - 512);
  const t0 = performance.now();
  openImage(sparse, true).close();
  assert.ok(performance.now() - t0 < 100, `checking it took ${performance.now() - t0} ms`);
});

test("metadata that overlaps, or whose refcount would let a write land on it, is refused", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qhostile-"));
  // The refcount table's first entry points at the refcount table itself.
  const self = image(dir, "selfref.qcow2");
  const p = patch(self);
  p.setU64(p.u64(REFTABLE_OFFSET), p.u64(REFTABLE_OFFSET));
  refused(self, /refcount block 0 at \d+ overlaps the refcount table/);

  // The header's refcount is 0: the allocator would hand cluster 0 to the guest.
  const free = image(dir, "freehdr.qcow2");
  const f = patch(free);
  const block0 = f.u64(f.u64(REFTABLE_OFFSET));
  f.setBytes(block0, Buffer.alloc(2));
  refused(free, /cluster 0 \(the header\) has refcount 0 but 1 reference/);

  // A data cluster that is the L1 table: a guest write would rewrite the L1.
  const over = image(dir, "overl1.qcow2");
  const o = patch(over);
  const l2 = Number(o.u64big(o.u64(L1_OFFSET)) & 0x00fffffffffffe00n);
  o.setU64(l2, (1n << 63n) + BigInt(o.u64(L1_OFFSET)));
  refused(over, /the data cluster of L2 table 0 entry 0 at \d+ overlaps the active L1 table/);

  // The untouched image still opens, and qemu-img agrees it is clean.
  const ok = image(dir, "ok.qcow2");
  openImage(ok, false).close();
  qemuImg("check", "-q", ok);
});

test("a backing chain that loops (A→A, A→B→A) is refused, naming the loop, with no fd left open", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-qhostile-"));
  const base = image(dir, "base.qcow2");
  // A→A: A's backing name rewritten to its own (same length).
  const a = image(dir, "AAAA.qcow2", base);
  const pa = patch(a);
  const nameAt = pa.u64(8);
  pa.setBytes(nameAt, Buffer.from("AAAA.qcow2"));
  pa.setU32(16, "AAAA.qcow2".length);
  refused(a, /backing file .*AAAA\.qcow2: the backing chain loops back to .*AAAA\.qcow2/);
  // A→B→A.
  const b = image(dir, "BBBB.qcow2", base);
  const c = image(dir, "CCCC.qcow2", b);
  const pb = patch(b);
  pb.setBytes(pb.u64(8), Buffer.from("CCCC.qcow2"));
  pb.setU32(16, "CCCC.qcow2".length);
  refused(c, /the backing chain loops back to .*CCCC\.qcow2/);
  // A chain deeper than 16 images.
  let top = base;
  for (let i = 0; i < 17; i++) top = image(dir, `d${String(i).padStart(2, "0")}.qcow2`, top);
  refused(top, /the backing chain is deeper than 16 images/);
  // A sound chain opens.
  const sound = image(dir, "sound.qcow2", base);
  const s = new Qcow2Storage(sound, true);
  assert.match(s.description, /backing qcow2:.*base\.qcow2/);
  s.close();
});
