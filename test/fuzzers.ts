/**
 * Fuzzers for the entry points a hostile guest, image or user reaches:
 * guest module bytes (instrumentation, then running what loads), qcow2
 * headers and tables, and xl.cfg files. Each is seeded (the same seed makes
 * the same inputs) and runs until its time budget is spent. An input may be
 * refused, with an Error that says why; what is a failure is anything else:
 * a throw that is not an Error, Binaryen aborting, an instrumented module V8
 * cannot compile, a slice or an operation that overruns its bound, a file
 * descriptor left open, a file grown past what its disk can need, a host
 * that does not survive. `test/fuzz.test.ts` runs each briefly with fixed
 * seeds in `npm test`; `npm run fuzz` runs them longer (scripts/fuzz.ts).
 */
import { execFileSync } from "node:child_process";
import {
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import binaryen from "binaryen";
import { instrumentKernel } from "../xen/arch/wasm32/instrument.js";
import { loadKernel } from "../xen/arch/wasm32/kernel.js";
import { openImage } from "../dom0/backends/qcow2.js";
import { MemoryStorage, SECTOR } from "../dom0/backends/storage.js";
import { parseCfg } from "../tools/libxlu/cfg.js";
import { domainConfig } from "../tools/libxl/config.js";
import { ROOT } from "../extras/mini-os/paths.js";
import { Host } from "../tools/host/host.js";
import { loadHvmImage, prepareHvmImage } from "../xen/arch/wasm32/hvm_image.js";
import { addLoopChecks } from "../xen/arch/wasm32/hvm_checks.js";
import { WasiDevices } from "../dom0/devicemodel/wasi.js";
import { WASI_PORT_NAMES } from "../xen/include/public/hvm/wasm32_io.js";

/** What a fuzzer did: inputs tried, and the failures found (empty when all held). */
export interface FuzzReport {
  readonly name: string;
  readonly seed: number;
  iterations: number;
  refused: number;
  readonly failures: string[];
}

/** xorshift32: a small seeded generator, the same on every machine. */
export function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return (n: number): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return n <= 0 ? 0 : x % n;
  };
}

/** Numbers that find edges: zeros, ones, signs, powers of two and their neighbours. */
const INTERESTING = [
  0, 1, 2, 7, 8, 255, 256, 4095, 4096, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff,
];

/** Mutates `input` in place-ish: a few byte, word and chunk edits; returns the result. */
function mutate(input: Uint8Array, r: (n: number) => number): Uint8Array {
  let b = Uint8Array.from(input);
  const edits = 1 + r(4);
  for (let e = 0; e < edits; e++) {
    const at = r(b.length);
    switch (r(6)) {
      case 0:
        b[at] = r(256);
        break;
      case 1:
        b[at]! ^= 1 << r(8);
        break;
      case 2: {
        const v = INTERESTING[r(INTERESTING.length)]!;
        for (let i = 0; i < 4 && at + i < b.length; i++)
          b[at + i] = (v >>> (8 * (r(2) ? i : 3 - i))) & 0xff;
        break;
      }
      case 3: {
        // Delete a chunk.
        const n = 1 + r(16);
        b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + n)]);
        break;
      }
      case 4: {
        // Duplicate a chunk.
        const n = 1 + r(32);
        b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at, at + n), ...b.subarray(at)]);
        break;
      }
      default: {
        // Insert random bytes.
        const n = 1 + r(8);
        const ins = Array.from({ length: n }, () => r(256));
        b = Uint8Array.from([...b.subarray(0, at), ...ins, ...b.subarray(at)]);
      }
    }
    if (b.length === 0) b = Uint8Array.from(input);
  }
  return b;
}

const until = (budgetMs: number): (() => boolean) => {
  const end = performance.now() + budgetMs;
  return () => performance.now() < end;
};

/** Guest modules the kernel fuzzer starts from: each uses what confine.ts rewrites. */
const SEED_MODULES = [
  `(func (export "_start") (param i32) (loop $l (br $l)))`,
  `(func (export "_start") (param i32)
     (loop $l
       (memory.fill (i32.const 0x100000) (local.get 0) (i32.const 0x20000))
       (memory.copy (i32.const 0x100010) (i32.const 0x100000) (i32.const 0x20000))
       (drop (memory.atomic.wait32 (i32.const 0x100000) (i32.const 0) (i64.const 100)))
       (drop (memory.grow (i32.const 1)))
       (br $l)))`,
  `(global $g (mut i32) (i32.const 0)) (func $s (global.set $g (i32.const 1))) (start $s)
   (table 4 funcref) (elem (i32.const 0) $s)
   (func (export "_start") (param i32)
     (loop $l (drop (call $hc (i32.const 29) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
       (call_indirect (i32.const 0)) (br $l)))`,
].map((body) => {
  const m = binaryen.parseText(`(module
    (import "xen" "hypercall" (func $hc (param i32 i32 i32 i32 i32 i32) (result i32)))
    (import "env" "memory" (memory 1 65536 shared))
    ${body})`);
  try {
    return m.emitBinary();
  } finally {
    m.dispose();
  }
});

/**
 * Mutated guest modules: instrumentation refuses them with an Error or makes
 * a module V8 compiles; a sample of those that load run beside nothing for
 * a few slices, and none may hold a slice past 50 ms or take the host down.
 */
export async function fuzzKernels(seed: number, budgetMs: number): Promise<FuzzReport> {
  const rep: FuzzReport = { name: "kernel modules", seed, iterations: 0, refused: 0, failures: [] };
  const r = rng(seed);
  const more = until(budgetMs);
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  try {
    while (more() && rep.failures.length === 0) {
      rep.iterations++;
      const bytes = mutate(SEED_MODULES[r(SEED_MODULES.length)]!, r);
      let out: Uint8Array;
      try {
        out = instrumentKernel(bytes).bytes;
      } catch (e) {
        // A module V8 accepts that instrumentation then breaks is a bug of ours.
        if (!(e instanceof Error) || /Aborted|Binaryen bug/.test(e.message)) {
          rep.failures.push(
            `instrumenting threw ${String(e)} for ${Buffer.from(bytes).toString("hex")}`,
          );
        } else rep.refused++;
        continue;
      }
      try {
        await WebAssembly.compile(new Uint8Array(out));
      } catch (e) {
        rep.failures.push(`V8 cannot compile an instrumented kernel: ${String(e)}`);
        continue;
      }
      if (r(4) !== 0) continue;
      let kernel;
      try {
        kernel = await loadKernel(bytes);
      } catch {
        rep.refused++;
        continue;
      }
      let d;
      try {
        d = host.createSync({ name: `fuzz${rep.iterations}`, kernel, memory: 4, maxmem: 8 });
      } catch (e) {
        if (!(e instanceof Error)) rep.failures.push(`create threw ${String(e)}`);
        rep.refused++;
        continue;
      }
      await new Promise((res) => setTimeout(res, 30));
      for (const v of d.vcpus) {
        if (v.longestSliceUs > 50_000)
          rep.failures.push(
            `a fuzzed kernel ran ${v.longestSliceUs} µs in one slice: ${Buffer.from(bytes).toString("hex")}`,
          );
      }
      host.destroy(d.domid);
    }
  } finally {
    await host.shutdown();
  }
  return rep;
}

/** Where a qcow2 image keeps its tables (qcow2.txt's header fields). */
function qcow2Tables(b: Buffer): Array<[number, number]> {
  const cs = 2 ** b.readUInt32BE(20);
  const l1 = Number(b.readBigUInt64BE(40));
  const ref = Number(b.readBigUInt64BE(48));
  const regions: Array<[number, number]> = [
    [0, 112],
    [l1, b.readUInt32BE(36) * 8],
    [ref, b.readUInt32BE(56) * cs],
  ];
  const block0 = Number(b.readBigUInt64BE(ref));
  if (block0 > 0 && block0 < b.length) regions.push([block0, cs]);
  const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  if (l2 > 0 && l2 < b.length) regions.push([l2, cs]);
  return regions;
}

const fds = (): number => readdirSync("/proc/self/fd").length;

/**
 * Mutated qcow2 images (headers, L1, refcount table and blocks, L2 tables):
 * each is refused with an Error within 500 ms or served; a served one
 * answers reads and writes (or refuses them with an Error) within 200 ms
 * each and grows the file by no more than its disk could need. No fd leaks.
 */
export function fuzzQcow2(seed: number, budgetMs: number): FuzzReport {
  const rep: FuzzReport = { name: "qcow2 images", seed, iterations: 0, refused: 0, failures: [] };
  const dir = mkdtempSync(join(tmpdir(), "tsxen-fuzz-qcow2-"));
  const basePath = join(dir, "base.qcow2");
  execFileSync("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-o",
    "cluster_size=4096",
    basePath,
    "16M",
  ]);
  execFileSync("qemu-io", ["-c", "write -P 0x33 0 256k", "-c", "write -P 0x44 8M 64k", basePath]);
  const base = readFileSync(basePath);
  const regions = qcow2Tables(base);
  const r = rng(seed);
  const more = until(budgetMs);
  const path = join(dir, "fuzz.qcow2");
  const fd0 = fds();
  const slow = (what: string, t: number, ms: number): void => {
    const took = performance.now() - t;
    if (took > ms)
      rep.failures.push(
        `${what} took ${took.toFixed(0)} ms (seed ${seed}, input ${rep.iterations})`,
      );
  };
  while (more() && rep.failures.length === 0) {
    rep.iterations++;
    const b = Buffer.from(base);
    for (let e = 1 + r(3); e > 0; e--) {
      const [off, len] = regions[r(regions.length)]!;
      const at = off + (r(Math.max(1, len)) & ~3);
      if (at + 8 > b.length) continue;
      switch (r(3)) {
        case 0:
          b[at] = r(256);
          break;
        case 1:
          b.writeUInt32BE(INTERESTING[r(INTERESTING.length)]!, at);
          break;
        default: {
          // Point it at another table, or somewhere in or past the file.
          const [to] = regions[r(regions.length)]!;
          b.writeBigUInt64BE(
            BigInt([to, r(b.length), 2 ** 40, b.length][r(4)]!) | (r(2) ? 1n << 63n : 0n),
            at,
          );
        }
      }
    }
    writeFileSync(path, b);
    let t = performance.now();
    let img;
    try {
      img = openImage(path, false);
    } catch (e) {
      if (!(e instanceof Error)) rep.failures.push(`open threw ${String(e)}`);
      else rep.refused++;
      slow("refusing an image", t, 500);
      continue;
    }
    slow("opening an image", t, 500);
    try {
      const size = img.sectors * SECTOR;
      for (let op = 0; op < 16; op++) {
        const n = 1 + r(16);
        const sector = r(Math.max(1, img.sectors - n));
        const buf = new Uint8Array(n * SECTOR).fill(r(256));
        t = performance.now();
        try {
          if (r(2)) img.read(sector, buf);
          else img.write(sector, buf);
        } catch (e) {
          if (!(e instanceof Error)) rep.failures.push(`an I/O threw ${String(e)}`);
        }
        slow("one I/O", t, 200);
      }
      const grown = statSync(path).size - b.length;
      // Every cluster written, its L2 tables and refcount blocks, twice over.
      if (grown > 2 * size + 4 * 1024 * 1024)
        rep.failures.push(`the file grew by ${grown} bytes for a ${size}-byte disk`);
    } finally {
      img.close();
    }
  }
  if (fds() !== fd0) rep.failures.push(`${fds() - fd0} file descriptors left open`);
  return rep;
}

/** Characters that matter to xl.cfg's syntax, and some that should not. */
const CFG_NOISE = [
  ..."=\"'[],;#\n\\ \t0123456789abc-+.xMGk",
  "\u00e9",
  "\u0000",
  "9".repeat(400),
  "[".repeat(200),
];

/**
 * Mutated xl.cfg files (the examples'): parsing and building the domain
 * config return or throw an Error, each within 100 ms.
 */
export function fuzzCfg(seed: number, budgetMs: number): FuzzReport {
  const rep: FuzzReport = { name: "xl.cfg files", seed, iterations: 0, refused: 0, failures: [] };
  const dir = join(ROOT, "extras", "mini-os", "examples");
  const bases = readdirSync(dir)
    .filter((f) => f.endsWith(".cfg"))
    .map((f) => readFileSync(join(dir, f), "utf8"));
  const r = rng(seed);
  const more = until(budgetMs);
  while (more() && rep.failures.length === 0) {
    rep.iterations++;
    let text = bases[r(bases.length)]!;
    for (let e = 1 + r(6); e > 0; e--) {
      const at = r(text.length + 1);
      const noise = CFG_NOISE[r(CFG_NOISE.length)]!;
      text =
        r(3) === 0
          ? text.slice(0, at) + text.slice(at + 1 + r(8))
          : text.slice(0, at) + noise + text.slice(at);
    }
    const t = performance.now();
    try {
      domainConfig(parseCfg(text, "fuzz.cfg"), "fuzz.cfg", dir);
    } catch (e) {
      if (!(e instanceof Error) || !e.message)
        rep.failures.push(`threw ${String(e)} for ${JSON.stringify(text)}`);
      else rep.refused++;
    }
    const took = performance.now() - t;
    if (took > 100)
      rep.failures.push(
        `a config took ${took.toFixed(0)} ms: ${JSON.stringify(text.slice(0, 200))}`,
      );
  }
  return rep;
}

/**
 * The hypercall fuzzer guest (extras/mini-os/tests/fuzz.ts: every hypercall
 * with wild arguments), run again and again with new seeds from `seed` until
 * the budget is spent: each run must end in poweroff, no slice may pass
 * 50 ms (every call's work is bounded, or continued), the watchdog must not
 * fire, and the frame books must balance.
 */
export async function fuzzHypercalls(seed: number, budgetMs: number): Promise<FuzzReport> {
  const rep: FuzzReport = {
    name: "hypercall arguments",
    seed,
    iterations: 0,
    refused: 0,
    failures: [],
  };
  const r = rng(seed);
  const more = until(budgetMs);
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  const { guestPath } = await import("../extras/mini-os/paths.js");
  const { loadKernelFile } = await import("../xen/arch/wasm32/kernel.js");
  const kernel = await loadKernelFile(guestPath("fuzz"));
  try {
    while (more() && rep.failures.length === 0) {
      rep.iterations++;
      const s = 1 + r(1 << 30);
      const d = await host.create({
        name: `hcfuzz${rep.iterations}`,
        kernel,
        memory: 4,
        maxmem: 8,
        cmdline: `${s} 20000`,
      });
      const why = await host.waitShutdown(d.domid, 60_000);
      if (why !== "poweroff")
        rep.failures.push(`guest seed ${s} ended with ${why}: ${d.crashMessage ?? ""}`);
      const slice = Math.max(...d.vcpus.map((v) => v.longestSliceUs));
      if (slice > 50_000) rep.failures.push(`guest seed ${s} ran ${slice} µs in one slice`);
      host.destroy(d.domid);
      let sum = host.hv.frames.freeFrames + host.hv.dom0Pages;
      for (const x of host.hv.domains.values()) sum += x.totPages + x.holes.length;
      if (sum !== host.hv.frames.totalFrames)
        rep.failures.push(`guest seed ${s}: the frame books are off`);
    }
    const wd = host
      .dmesg()
      .split("\n")
      .filter((l) => l.includes("watchdog:"));
    if (wd.length > 0) rep.failures.push(...wd);
  } finally {
    await host.shutdown();
  }
  return rep;
}

/** Small HVM programs to mutate (extras/hvm, built by extras/hvm/build.ts). */
function hvmSeeds(): Uint8Array[] {
  const dir = join(ROOT, "build", "hvm");
  return ["hello", "echo", "sleep"].map((n) => readFileSync(join(dir, `${n}.wasm`)));
}

/**
 * Mutated WASI programs: each is refused with an Error (naming what is
 * wrong) or prepared; a prepared one that V8 compiles still compiles with
 * its loop checks added; every fourth that compiles runs as an HVM domain
 * for a moment and is destroyed, leaving the books balanced.
 */
export async function fuzzHvmImages(seed: number, budgetMs: number): Promise<FuzzReport> {
  const rep: FuzzReport = { name: "HVM programs", seed, iterations: 0, refused: 0, failures: [] };
  const r = rng(seed);
  const more = until(budgetMs);
  const seeds = hvmSeeds();
  // Mutants are not worth keeping: a cache of their own, removed after.
  const cache = mkdtempSync(join(tmpdir(), "tsxen-fuzz-cache-"));
  const cacheBefore = process.env.TSXEN_CACHE_DIR;
  process.env.TSXEN_CACHE_DIR = cache;
  const host = new Host({ memoryBytes: 1024 ** 3, dom0MemoryBytes: 64 * 1024 ** 2 });
  try {
    while (more() && rep.failures.length === 0) {
      rep.iterations++;
      const bytes = mutate(seeds[r(seeds.length)]!, r);
      const hex = (): string => Buffer.from(bytes).toString("hex").slice(0, 200);
      let prepared;
      try {
        prepared = prepareHvmImage(bytes);
      } catch (e) {
        if (!(e instanceof Error) || e.message === "")
          rep.failures.push(`prepare threw ${String(e)} for ${hex()}`);
        else rep.refused++;
        continue;
      }
      try {
        await WebAssembly.compile(prepared.bytes as Uint8Array<ArrayBuffer>);
      } catch {
        rep.refused++;
        continue;
      }
      const checked = addLoopChecks(prepared.bytes);
      if ("bytes" in checked) {
        try {
          await WebAssembly.compile(checked.bytes as Uint8Array<ArrayBuffer>);
        } catch (e) {
          rep.failures.push(
            `a module V8 accepts does not compile with loop checks: ${String(e)}: ${hex()}`,
          );
          continue;
        }
      }
      if (r(4) !== 0) continue;
      let image;
      try {
        image = await loadHvmImage(Uint8Array.from(bytes));
      } catch {
        rep.refused++;
        continue;
      }
      try {
        const d = await host.createHvm({
          name: `fuzz${rep.iterations}`,
          image,
          memory: 16,
          args: ["fuzz"],
          env: [],
          shares: [],
          disks: [],
        });
        await new Promise((res) => setTimeout(res, 20));
        if (host.hv.domains.has(d.domid)) host.destroy(d.domid);
      } catch (e) {
        if (!(e instanceof Error)) rep.failures.push(`create threw ${String(e)}`);
        rep.refused++;
      }
    }
    await new Promise((res) => setTimeout(res, 50));
    const frames = host.hv.frames.freeFrames + host.hv.dom0Pages;
    if (host.hv.domains.size === 0 && frames !== host.hv.frames.totalFrames)
      rep.failures.push(`frames lost: ${host.hv.frames.totalFrames - frames}`);
  } finally {
    await host.shutdown();
    if (cacheBefore === undefined) delete process.env.TSXEN_CACHE_DIR;
    else process.env.TSXEN_CACHE_DIR = cacheBefore;
    rmSync(cache, { recursive: true, force: true });
  }
  return rep;
}

/**
 * The device model's WASI calls with wild arguments: every one of the 46
 * functions, random slots (small numbers, descriptors that exist, pointers
 * into and past the program's memory, huge lengths), against a share with a
 * few files and a disk. Each call must answer a WASI errno (or hold), never
 * throw; nothing outside the share may appear or change; the device model's
 * host descriptors are all given back when it closes.
 */
/** Where each path function takes its (pointer, length) pairs and its directory descriptors. */
const PATH_SLOTS: Record<string, { paths: number[]; dirs: number[] }> = {
  path_open: { paths: [2], dirs: [0] },
  path_filestat_get: { paths: [2], dirs: [0] },
  path_filestat_set_times: { paths: [2], dirs: [0] },
  path_create_directory: { paths: [1], dirs: [0] },
  path_remove_directory: { paths: [1], dirs: [0] },
  path_unlink_file: { paths: [1], dirs: [0] },
  path_readlink: { paths: [1], dirs: [0] },
  path_symlink: { paths: [0, 3], dirs: [2] },
  path_rename: { paths: [1, 4], dirs: [0, 3] },
  path_link: { paths: [2, 5], dirs: [0, 4] },
};

export function fuzzWasiCalls(seed: number, budgetMs: number): FuzzReport {
  const rep: FuzzReport = { name: "WASI calls", seed, iterations: 0, refused: 0, failures: [] };
  const r = rng(seed);
  const more = until(budgetMs);
  const base = mkdtempSync(join(tmpdir(), "tsxen-fuzz-wasi-"));
  const share = join(base, "share");
  const outside = join(base, "outside");
  mkdirSync(share);
  mkdirSync(outside);
  writeFileSync(join(share, "a.txt"), "hello");
  mkdirSync(join(share, "d"));
  writeFileSync(join(outside, "secret"), "secret");
  const fdsBefore = fds();
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 8, shared: true });
  const u8 = new Uint8Array(memory.buffer);
  const disk = new MemoryStorage(64);
  const root = openSync(share, "r");
  // The ioreq page whose fast-descriptor table the device model keeps.
  const page = new SharedArrayBuffer(4096);
  const fastTable = new Int32Array(page);
  const dev = new WasiDevices(
    memory,
    {
      args: ["fuzz", "x"],
      env: ["A=b"],
      shares: [{ guestPath: "/s", path: share, readonly: false }],
      disks: [{ name: "xvda", storage: disk }],
    },
    { serialOut: () => true, exit: () => {} },
    [root],
    { i32: new Int32Array(page), f64: new Float64Array(page) },
  );
  // Paths the fuzzer may pass: some fine, some hostile, placed in memory.
  const PATHS = [
    "a.txt",
    "d",
    "d/x",
    "..",
    "../outside/secret",
    "/etc/passwd",
    "d/../../outside",
    "new",
    "xvda",
    ".",
    "",
  ];
  const pathAt: Array<[number, number]> = [];
  let at = 0x8000;
  for (const p of PATHS) {
    const b = Buffer.from(p);
    u8.set(b, at);
    pathAt.push([at, b.length]);
    at += b.length + 1;
  }
  const names = [...WASI_PORT_NAMES];
  const pick = (): number => {
    switch (r(6)) {
      case 0:
        return r(8); // descriptors, small flags
      case 1:
        return 0x10000 + r(0x20000); // inside memory
      case 2:
        return memory.buffer.byteLength - r(16); // the edge of memory
      case 3:
        return INTERESTING[r(INTERESTING.length)]!;
      case 4:
        return r(2 ** 32);
      default:
        return r(64);
    }
  };
  try {
    while (more() && rep.failures.length === 0) {
      rep.iterations++;
      const name = names[r(names.length)]!;
      if (name === "proc_exit") continue;
      const lo = new Uint32Array(16);
      const hi = new Uint32Array(16);
      for (let i = 0; i < 16; i++) {
        lo[i] = pick() >>> 0;
        hi[i] = r(8) === 0 ? pick() >>> 0 : 0;
      }
      const slots = PATH_SLOTS[name];
      if (slots && r(4) !== 0) {
        // Paths that name something (or try to leave), from the share's descriptor.
        for (const s of slots.paths) {
          const [p, l] = pathAt[r(pathAt.length)]!;
          lo[s] = p;
          lo[s + 1] = l;
        }
        for (const s of slots.dirs) if (r(4) !== 0) lo[s] = 3;
        if (name === "path_open" && r(2) === 0) {
          // Mostly sensible flags, so that files do get opened (and published as fast).
          lo[1] = r(2);
          lo[4] = r(16);
          lo[5] = r(2) ? 0x7fffffff : 2;
          hi[5] = 0;
          lo[7] = r(2) ? 0 : 1;
          lo[8] = 0x10000 + r(0x1000) * 4;
        }
      }
      // The share's preopen (fd 3) stays, so that the run goes on reaching files.
      if ((name === "fd_close" || name === "fd_renumber") && (lo[0] === 3 || lo[1] === 3)) continue;
      let answer;
      try {
        answer = dev.call(name, { lo, hi });
      } catch (e) {
        rep.failures.push(`${name}(${[...lo].slice(0, 9).join(",")}) threw ${String(e)}`);
        continue;
      }
      if (typeof answer === "number") {
        if (!Number.isInteger(answer) || answer < 0 || answer > 76)
          rep.failures.push(`${name} answered ${answer}`);
        else if (answer !== 0) rep.refused++;
      }
    }
    // Every published fast descriptor is a descriptor the device model holds open.
    for (let n = 0; n < 64; n++) {
      const host = fastTable[(0x200 + n * 16) >> 2]! - 1;
      if (host < 0) continue;
      try {
        fstatSync(host);
      } catch {
        rep.failures.push(`fast descriptor ${n} names host descriptor ${host}, which is closed`);
      }
    }
    if (
      readFileSync(join(outside, "secret"), "utf8") !== "secret" ||
      readdirSync(outside).length !== 1
    )
      rep.failures.push("something outside the share changed");
    if (readdirSync(base).sort().join() !== "outside,share")
      rep.failures.push(`the share's parent holds ${readdirSync(base).join(", ")}`);
  } finally {
    dev.close();
    rmSync(base, { recursive: true, force: true });
  }
  for (let n = 0; n < 64; n++) {
    if (fastTable[(0x200 + n * 16) >> 2] !== 0)
      rep.failures.push(`fast descriptor ${n} is still published after the device model closed`);
  }
  if (fds() !== fdsBefore) rep.failures.push(`host descriptors leaked: ${fds() - fdsBefore}`);
  return rep;
}
