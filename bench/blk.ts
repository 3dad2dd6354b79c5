/**
 * Block I/O through the split driver: blkbench (mini-os blkfront) against
 * blkback on a raw image, sequential 1 MiB writes (with the final flush) and
 * reads, and random 4 KiB reads. Baseline from the same run: Node writing
 * (then fsync) and reading the same file directly in 1 MiB chunks, and
 * reading 4 KiB at random offsets. Sequential writes (each pass with its
 * flush) and reads are the best of PASSES passes on both sides, so that
 * neither is measured cold (the JIT still warming up blkback's path, for
 * one) nor on a bad spell of the disk. Ratios are guest / Node, higher is
 * better.
 *
 * Sequential reads are timed two ways, in turns: one 1 MiB request at a
 * time, against Node's readSync of one chunk at a time; and with
 * READ_DEPTH requests in flight (blkbench depth=N), as a readahead would,
 * against the better of Node's two ways: readSync, and READ_DEPTH reads in
 * flight on its thread pool. Both sides first warm up, untimed: a pass of
 * writes and a flush, then WARMUP_MIB read each way. The guest's requests
 * go through Dom0's JavaScript, which V8 compiles fully only after a
 * thousand or so of them, and the figures are for a host that has run a
 * while. The guest's warm-up reading speed is reported too, in its own row.
 */
import {
  read,
  closeSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guestPath } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { Libxl } from "../tools/libxl/domain.js";
import { xlDomainConfig } from "../tools/libxl/config.js";
import type { Row } from "./common.js";

/** Sequential writes and reads are timed this many times on both sides; the fastest pass counts. */
const PASSES = 10;
/** Sequential 1 MiB reads in flight at once, in the guest and in Node's second way. */
const READ_DEPTH = 4;
/** MiB read each way before anything is timed (full runs). */
const WARMUP_MIB = 2048;

/**
 * `n` 1 MiB buffers for Node's side, page-aligned as guest memory is. A
 * Buffer's bytes start wherever malloc put them, and on this kind of machine
 * the kernel copies into a buffer 16 bytes off a page boundary at half the
 * speed: Node's figure would then depend on the allocator's luck, and flatter
 * the guest. A wasm memory starts on a page.
 */
function alignedBuffers(n: number): Uint8Array[] {
  const mem = new WebAssembly.Memory({ initial: n * 16 });
  return Array.from({ length: n }, (_, i) => new Uint8Array(mem.buffer, i << 20, 1 << 20));
}

/** Reads chunks 0..`mib`-1 of `fd` with `depth` fs.read calls in flight; MiB/s. */
function readAhead(fd: number, mib: number, depth: number): Promise<number> {
  const bufs = alignedBuffers(depth);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let next = 0;
    let done = 0;
    const start = (b: Uint8Array): void => {
      const i = next++;
      read(fd, b, 0, b.length, i << 20, (err) => {
        if (err) return reject(err);
        if (++done === mib) return resolve(mib / ((performance.now() - t0) / 1000));
        if (next < mib) start(b);
      });
    };
    for (const b of bufs.slice(0, Math.min(depth, mib))) start(b);
  });
}

async function nodeBaseline(
  path: string,
  mib: number,
  ios: number,
  warmup: number,
): Promise<{ write: number; read: number; readAhead: number; iops: number }> {
  const [buf] = alignedBuffers(1) as [Uint8Array];
  buf.fill(7);
  const fd = openSync(path, "r+");
  // The warm-up, as the guest's: a pass of writes and a flush, then reads.
  for (let i = 0; i < mib; i++) writeSync(fd, buf, 0, buf.length, i << 20);
  fsyncSync(fd);
  for (let i = 0; i < warmup; i++) readSync(fd, buf, 0, buf.length, (i % mib) << 20);
  for (let i = 0; i < warmup; i += mib) await readAhead(fd, mib, READ_DEPTH);
  let write = 0;
  for (let p = 0; p < PASSES; p++) {
    const t0 = performance.now();
    for (let i = 0; i < mib; i++) writeSync(fd, buf, 0, buf.length, i << 20);
    fsyncSync(fd);
    write = Math.max(write, mib / ((performance.now() - t0) / 1000));
  }
  let read = 0;
  let ahead = 0;
  for (let p = 0; p < PASSES; p++) {
    const t0 = performance.now();
    for (let i = 0; i < mib; i++) readSync(fd, buf, 0, buf.length, i << 20);
    read = Math.max(read, mib / ((performance.now() - t0) / 1000));
    ahead = Math.max(ahead, await readAhead(fd, mib, READ_DEPTH));
  }
  const small = buf.subarray(0, 4096);
  const span = Math.floor((mib << 20) / 4096);
  const t0 = performance.now();
  for (let i = 0; i < ios; i++)
    readSync(fd, small, 0, 4096, Math.floor(Math.random() * span) * 4096);
  const iops = ios / ((performance.now() - t0) / 1000);
  closeSync(fd);
  return { write, read, readAhead: Math.max(read, ahead), iops };
}

export async function run(quick: boolean): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-bench-blk-"));
  const img = join(dir, "disk.img");
  const mib = quick ? 4 : 64;
  const ios = quick ? 200 : 20_000;
  const warmup = quick ? 8 : WARMUP_MIB;
  writeFileSync(img, "");
  truncateSync(img, (mib + 8) << 20);
  const host = new Host({ memoryBytes: 2 * 1024 ** 3 });
  try {
    const base = await nodeBaseline(img, mib, ios, warmup);
    const libxl = new Libxl(host);
    const d = await libxl.create(
      xlDomainConfig({
        name: "blkbench",
        kernel: guestPath("blkbench"),
        memory: 16,
        cmdline: `mib=${mib} ios=${ios} passes=${PASSES} depth=${READ_DEPTH} warmup=${warmup}`,
        onPoweroff: "preserve",
        onCrash: "preserve",
        disks: [`vdev=xvda, target=${img}`],
      }),
    );
    await host.waitShutdown(d.domid, 120_000);
    const out = host.xenconsoled.read(d.domid);
    const us = (what: string): number => {
      const m = new RegExp(`${what} \\d+ MiB in \\d+ ms \\(\\d+ MiB/s, (\\d+) us\\)`).exec(out);
      if (!m) throw new Error(`blkbench printed no ${what}:\n${out}`);
      return Number(m[1]);
    };
    const write = mib / (us("sequential write") / 1e6);
    const read = mib / (us("sequential read") / 1e6);
    const ahead = mib / (us("sequential read-ahead") / 1e6);
    const warm = warmup / (us("warm-up read") / 1e6);
    const m = /random 4 KiB reads \d+ in \d+ ms \((\d+) IOPS\)/.exec(out);
    if (!m) throw new Error(`blkbench printed no IOPS:\n${out}`);
    const iops = Number(m[1]);
    const f = (x: number): string => `${x.toFixed(0)} MiB/s`;
    const seq = (name: string, guest: number, node: number): Row => ({
      name,
      measured: f(guest),
      baseline: `Node ${f(node)}`,
      ratio: guest / node,
      target: "≥ 0.8×",
      met: guest / node >= 0.8,
    });
    return [
      seq("guest sequential 1 MiB writes + flush", write, base.write),
      seq("guest sequential 1 MiB reads", read, base.read),
      seq(`guest sequential 1 MiB reads, ${READ_DEPTH} in flight`, ahead, base.readAhead),
      {
        ...seq(`guest sequential 1 MiB reads, first ${warmup} MiB (warm-up)`, warm, base.read),
        target: "(report)",
        met: true,
      },
      {
        name: "guest random 4 KiB reads",
        measured: `${iops} IOPS`,
        baseline: `Node ${base.iops.toFixed(0)} IOPS`,
        ratio: iops / base.iops,
        target: "(report)",
        met: true,
      },
    ];
  } finally {
    await host.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}
