/**
 * HVM program images: an unmodified WASI preview1 command module, checked
 * and prepared to run as an HVM guest (docs/arch-wasm32.md, "HVM guests").
 *
 * The program's code is left as it is but for one countdown at each loop
 * head (hvm_checks.ts), which lets its vCPU be paused while it computes. The module is checked
 * (valid wasm; every import a preview1 function with preview1's signature;
 * one 32-bit memory of its own; a `_start` export), and its memory
 * definition becomes an import of a shared memory, so that the domain's
 * memory can be handed to the vCPU's thread and mapped by the device model,
 * and capped at the domain's `memory=`. Compiled once per content, as PV
 * kernels are.
 *
 * Format: the WebAssembly core specification, binary format (section 5.5).
 */
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { cacheRoot } from "./cache_dir.js";
import { Worker } from "node:worker_threads";
import { FileCache, readHostFile } from "../../common/host_file.js";
import { Reader, leb } from "./binary.js";
import { addLoopChecks } from "./hvm_checks.js";
import { WASI_FUNCTIONS, WASI_MODULE } from "../../include/public/hvm/wasm32_io.js";
import { GUEST_IMAGE_BASE, IMPORT_HYPERCALL, IMPORT_MODULE } from "./config.js";
import { createRequire } from "node:module";

/** A checked, compiled HVM program, shared by every domain that runs it. */
export interface HvmImage {
  /** Content hash of the file as given (hex sha256). */
  readonly hash: string;
  readonly module: WebAssembly.Module;
  /** The memory the program declares: initial and maximum, in 64 KiB pages. */
  readonly minPages: number;
  readonly maxPages: number;
  /** The WASI functions it imports. */
  readonly wasiImports: readonly string[];
  /**
   * Whether it imports `xen.hypercall`: a program with PV drivers (docs/hvm.md,
   * "PV drivers on HVM"), whose memory is the domain's memory for the
   * hypervisor too, with wasm32's architecture area below GUEST_IMAGE_BASE.
   */
  readonly hypercalls: boolean;
  /** Bytes of the module as given. */
  readonly size: number;
  /** Loops given a check (hvm_checks.ts), or why the program has none. */
  readonly loopChecks: number | string;
  /** Made saveable (hvm_saveable.ts; xl.cfg `nomigrate = 0`). */
  readonly saveable: boolean;
}

/**
 * Largest program file accepted: read whole and compiled in memory, so a
 * path to a huge file must fail at once. yosys, the largest WASI program
 * the tests run, is 31 MB.
 */
export const MAX_HVM_IMAGE_BYTES = 256 * 1024 * 1024;

const SEC_TYPE = 1;
const SEC_IMPORT = 2;
const SEC_MEMORY = 5;
const SEC_GLOBAL = 6;
const SEC_EXPORT = 7;
const SEC_DATA = 11;

/** The hypercall import's type, as a PV kernel's (docs/arch-wasm32.md, "The module"). */
const HYPERCALL_SIG = "(i32, i32, i32, i32, i32, i32) -> (i32)";

const VALTYPES: Record<number, string> = {
  0x7f: "i32",
  0x7e: "i64",
  0x7d: "f32",
  0x7c: "f64",
  0x7b: "v128",
  0x70: "funcref",
  0x6f: "externref",
};

interface FuncType {
  params: string[];
  results: string[];
}

function readTypes(body: Uint8Array): FuncType[] {
  const r = new Reader(body);
  const n = r.u32();
  const out: FuncType[] = [];
  for (let i = 0; i < n; i++) {
    const form = r.byte();
    if (form !== 0x60) {
      // A GC-proposal type (rec group, struct, array): not in preview1 programs.
      throw new Error(`type ${i} is not a function type (0x${form.toString(16)})`);
    }
    const params = Array.from({ length: r.u32() }, () => VALTYPES[r.byte()] ?? "?");
    const results = Array.from({ length: r.u32() }, () => VALTYPES[r.byte()] ?? "?");
    out.push({ params, results });
  }
  return out;
}

const sig = (params: readonly string[], results: readonly string[]): string =>
  `(${params.join(", ")}) -> (${results.join(", ")})`;

/** Reads limits (flags, min, max); memory64 and a missing max are reported to the caller. */
function readLimits(r: Reader): { flags: number; min: number; max: number | undefined } {
  const flags = r.byte();
  if (flags & 4)
    throw new Error("its memory is 64-bit (memory64); wasm32 guests have 32-bit memory");
  const min = r.u32();
  const max = flags & 1 ? r.u32() : undefined;
  return { flags, min, max };
}

/**
 * Checks `bytes` as an HVM program and returns the module to compile, with
 * its memory turned into an `env.memory` shared import. Throws an Error that
 * says what is wrong. Only the sections' framing, imports, memory and exports
 * are read here; the engine validates the code when it compiles the result,
 * off the main thread.
 */
export function prepareHvmImage(bytes: Uint8Array): {
  bytes: Uint8Array;
  minPages: number;
  maxPages: number;
  wasiImports: string[];
  hypercalls: boolean;
} {
  if (
    bytes.length < 8 ||
    bytes[0] !== 0 ||
    bytes[1] !== 0x61 ||
    bytes[2] !== 0x73 ||
    bytes[3] !== 0x6d
  )
    throw new Error("not a WebAssembly module (bad magic)");
  const r = new Reader(bytes, 8);
  const pieces: Uint8Array[] = [bytes.subarray(0, 8)];
  let types: FuncType[] = [];
  let memory: { flags: number; min: number; max: number | undefined } | undefined;
  const wasiImports: string[] = [];
  let importBody: Uint8Array | undefined;
  let importAt = -1;
  let hasStart = false;
  let afterTypes = 1;
  let globals: Uint8Array | undefined;
  let data: Uint8Array | undefined;
  while (r.pos < bytes.length) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const body = r.bytes(size);
    if (id === SEC_TYPE) {
      types = readTypes(body);
      pieces.push(bytes.subarray(start, r.pos));
      afterTypes = pieces.length;
      continue;
    }
    if (id === SEC_IMPORT) {
      importBody = body;
      importAt = pieces.length;
      pieces.push(new Uint8Array(0)); // replaced below
      continue;
    }
    if (id === SEC_MEMORY) {
      const m = new Reader(body);
      const n = m.u32();
      if (n !== 1) throw new Error(`it defines ${n} memories; an HVM program has one`);
      memory = readLimits(m);
      continue;
    }
    if (id === SEC_GLOBAL) globals = body;
    if (id === SEC_DATA) data = body;
    if (id === SEC_EXPORT) {
      const e = new Reader(body);
      const n = e.u32();
      for (let i = 0; i < n; i++) {
        const name = e.name();
        const kind = e.byte();
        e.u32();
        if (name === "_start" && kind === 0) hasStart = true;
      }
    }
    pieces.push(bytes.subarray(start, r.pos));
  }
  const imports: number[] = [];
  let count = 0;
  let hypercalls = false;
  if (importBody) {
    const m = new Reader(importBody);
    const n = m.u32();
    for (let i = 0; i < n; i++) {
      const from = m.pos;
      const mod = m.name();
      const field = m.name();
      const kind = m.byte();
      const what = `${mod}.${field}`;
      if (kind === 0x02)
        throw new Error(
          `it imports its memory (${what}); an HVM program defines its own (a PV kernel imports it: use type = "pv")`,
        );
      if (kind !== 0x00)
        throw new Error(
          `it imports ${what}, which is not a function; HVM programs import only WASI preview1 functions`,
        );
      const t = types[m.u32()];
      const got = t ? sig(t.params, t.results) : "?";
      if (mod === IMPORT_MODULE && field === IMPORT_HYPERCALL) {
        if (got !== HYPERCALL_SIG)
          throw new Error(
            `its import ${what} has type ${got}; wasm32's hypercall is ${HYPERCALL_SIG}`,
          );
        if (hypercalls) throw new Error(`it imports ${what} twice`);
        hypercalls = true;
        for (let b = from; b < m.pos; b++) imports.push(importBody[b]!);
        count++;
        continue;
      }
      if (mod !== WASI_MODULE)
        throw new Error(
          `it imports ${what}; HVM programs import only ${WASI_MODULE} functions and ${IMPORT_MODULE}.${IMPORT_HYPERCALL}`,
        );
      const f = WASI_FUNCTIONS.get(field);
      if (!f) throw new Error(`it imports ${what}, which is not a WASI preview1 function`);
      const want = sig(f.params, f.result ? [f.result] : []);
      if (want !== got)
        throw new Error(`its import ${what} has type ${got}; preview1's ${field} is ${want}`);
      wasiImports.push(field);
      for (let b = from; b < m.pos; b++) imports.push(importBody[b]!);
      count++;
    }
  }
  if (!hasStart) throw new Error("it does not export _start: not a WASI command");
  if (!memory) throw new Error("it defines no memory");
  // The memory, as a shared import: declared up to the program's own maximum
  // (or 4 GiB), so that one compiled module serves domains of any size.
  const declaredMax = memory.max ?? 65536;
  if (memory.min > declaredMax) throw new Error("its memory's minimum exceeds its maximum");
  if (hypercalls) checkArchArea(memory.min, globals, data);
  const name = (s: string): number[] => {
    const b = Buffer.from(s);
    return [...leb(b.length), ...b];
  };
  imports.push(
    ...name("env"),
    ...name("memory"),
    0x02,
    0x03,
    ...leb(memory.min),
    ...leb(declaredMax),
  );
  count++;
  const body = [...leb(count), ...imports];
  const section = Uint8Array.from([SEC_IMPORT, ...leb(body.length), ...body]);
  if (importAt >= 0) pieces[importAt] = section;
  else pieces.splice(afterTypes, 0, section);
  // One copy into a fresh buffer (Buffer.concat took 120 ms over 30 MB here).
  const out = new Uint8Array(pieces.reduce((t, p) => t + p.length, 0));
  let off = 0;
  for (const p of pieces) {
    out.set(p, off);
    off += p.length;
  }
  return { bytes: out, minPages: memory.min, maxPages: declaredMax, wasiImports, hypercalls };
}

const LINK_HINT = `link with -Wl,--global-base=${GUEST_IMAGE_BASE} and without --stack-first`;

/**
 * A program with PV drivers shares wasm32's memory layout with PV kernels:
 * the first 256 KiB are the architecture's (start_info, shared_info, the
 * console and xenstore rings, grant frames), so its data and its stack must
 * lie above them. Its data segments are checked, and every mutable i32
 * global set to a constant (the stack pointer is one) must point there too.
 * A program that breaks this would only overwrite its own rings; it is
 * refused so that it fails at once, with the cause named.
 */
function checkArchArea(minPages: number, globals?: Uint8Array, data?: Uint8Array): void {
  if (minPages * 65536 <= GUEST_IMAGE_BASE)
    throw new Error(
      `its memory (${minPages * 64} KiB) ends inside wasm32's architecture area; a program importing ${IMPORT_MODULE}.${IMPORT_HYPERCALL} has its data above 0x${GUEST_IMAGE_BASE.toString(16)} (${LINK_HINT})`,
    );
  if (data) {
    const r = new Reader(data);
    const n = r.u32();
    for (let i = 0; i < n; i++) {
      const flags = r.u32();
      if (flags === 1) {
        r.bytes(r.u32());
        continue;
      }
      if (flags === 2) r.u32();
      else if (flags !== 0) throw new Error(`data segment ${i} has unknown flags ${flags}`);
      if (r.byte() !== 0x41)
        throw new Error(
          `data segment ${i} has a computed offset; a program with PV drivers places its data at fixed addresses`,
        );
      const at = r.i32() >>> 0;
      if (r.byte() !== 0x0b) throw new Error(`data segment ${i} has a computed offset`);
      const len = r.u32();
      r.bytes(len);
      if (at < GUEST_IMAGE_BASE && len > 0)
        throw new Error(
          `its data segment ${i} at 0x${at.toString(16)} overlaps wasm32's architecture area (below 0x${GUEST_IMAGE_BASE.toString(16)}; ${LINK_HINT})`,
        );
    }
  }
  if (globals) {
    const r = new Reader(globals);
    const n = r.u32();
    for (let i = 0; i < n; i++) {
      const type = r.byte();
      const mutable = r.byte() === 1;
      const op = r.byte();
      // Only `i32.const N end` is looked at; other initialisers are left to the engine.
      if (op !== 0x41) return;
      const v = r.i32() >>> 0;
      if (r.byte() !== 0x0b) return;
      if (type === 0x7f && mutable && v > 0 && v < GUEST_IMAGE_BASE)
        throw new Error(
          `its global ${i} (the stack pointer, as clang makes it) starts at 0x${v.toString(16)}, inside wasm32's architecture area (${LINK_HINT})`,
        );
    }
  }
}

/**
 * Checks, hashes and compiles `bytes` into an HvmImage, in the calling
 * thread (hvm_image_worker.ts runs it off the main thread: touching a 30 MB
 * module, even to copy it, held the main thread 80 ms or more here).
 */
export async function compileHvmImage(bytes: Uint8Array, saveable = false): Promise<HvmImage> {
  const hash = createHash("sha256").update(bytes).digest("hex");
  const cached = readImageCache(hash, saveable);
  let meta: ImageMeta;
  let code: Uint8Array;
  if (cached) ({ meta, code } = cached);
  else {
    const prep = prepareHvmImage(bytes);
    const checked = addLoopChecks(prep.bytes);
    code = "bytes" in checked ? checked.bytes : prep.bytes;
    if (saveable && prep.hypercalls)
      throw new Error(
        "nomigrate=0: a program with PV drivers (it imports xen.hypercall) cannot be saved yet",
      );
    // Binaryen is loaded only where a saveable program is made (the compiler's thread).
    if (saveable) code = (await import("./hvm_saveable.js")).makeSaveable(code, bytes.length);
    meta = {
      minPages: prep.minPages,
      maxPages: prep.maxPages,
      wasiImports: prep.wasiImports,
      hypercalls: prep.hypercalls,
      loopChecks: "bytes" in checked ? checked.loops : checked.skipped,
    };
  }
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(code as Uint8Array<ArrayBuffer>);
  } catch (e) {
    const why = (e as Error).message.replace(/^WebAssembly\.compile\(\): /, "");
    throw new Error(`not a valid WebAssembly module: ${why}`, { cause: e });
  }
  if (!cached) writeImageCache(hash, saveable, meta, code);
  return { hash, module, size: bytes.length, saveable, ...meta };
}

/** What the cache keeps beside a prepared program's bytes. */
type ImageMeta = Pick<
  HvmImage,
  "minPages" | "maxPages" | "wasiImports" | "hypercalls" | "loopChecks"
>;

/** Bumped whenever preparing or checking a program changes its output. */
export const HVM_IMAGE_VERSION = 2;

/** Bumped whenever making a program saveable (hvm_saveable.ts) changes its output. */
const HVM_SAVEABLE_VERSION = 1;

/** Binaryen's version, read without loading Binaryen: part of a saveable program's cache key. */
const BINARYEN_VERSION = (
  createRequire(import.meta.url)("binaryen/package.json") as { version: string }
).version;

/** The disk cache of prepared programs: by content hash, HVM_IMAGE_VERSION and whether saveable. */
function imageCachePath(hash: string, saveable: boolean): string {
  const flavour = saveable ? `-saveable${HVM_SAVEABLE_VERSION}-binaryen${BINARYEN_VERSION}` : "";
  return join(cacheRoot(), "hvm", `${hash}-v${HVM_IMAGE_VERSION}${flavour}`);
}

function readImageCache(
  hash: string,
  saveable: boolean,
): { meta: ImageMeta; code: Uint8Array } | undefined {
  try {
    const base = imageCachePath(hash, saveable);
    const meta = JSON.parse(readFileSync(`${base}.json`, "utf8")) as ImageMeta;
    return { meta, code: readFileSync(`${base}.wasm`) };
  } catch {
    return undefined;
  }
}

function writeImageCache(hash: string, saveable: boolean, meta: ImageMeta, code: Uint8Array): void {
  try {
    const base = imageCachePath(hash, saveable);
    mkdirSync(dirname(base), { recursive: true });
    const tmp = `${base}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(`${tmp}.wasm`, code);
    writeFileSync(`${tmp}.json`, JSON.stringify(meta));
    // The bytes first: a reader that finds the metadata finds them whole.
    renameSync(`${tmp}.wasm`, `${base}.wasm`);
    renameSync(`${tmp}.json`, `${base}.json`);
  } catch {
    // A cache that cannot be written only costs time on the next load.
  }
}

/** Forgets the programs loaded in this process (the disk cache stays): for measuring a new host's boot. */
export function forgetLoadedHvmImages(): void {
  loadedFiles.clear();
}

/** The compiler thread, started on first use and reused; it holds the process open only while busy. */
let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, { resolve(i: HvmImage): void; reject(e: Error): void }>();

function compiler(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL("./hvm_image_worker.js", import.meta.url));
  w.on("message", (m: { id: number; image?: HvmImage; error?: string }) => {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (pending.size === 0) w.unref();
    if (m.image) p?.resolve(m.image);
    else p?.reject(new Error(m.error));
  });
  const fail = (why: string): void => {
    worker = undefined;
    for (const p of pending.values()) p.reject(new Error(why));
    pending.clear();
  };
  w.on("error", (e) => fail(`the program compiler failed: ${e.message}`));
  w.on("exit", () => fail("the program compiler stopped"));
  worker = w;
  return w;
}

/**
 * Prepares and compiles `bytes` on the compiler thread. The bytes are
 * handed over (their buffer is transferred when they own it whole): the
 * caller must not use them afterwards.
 */
export function loadHvmImage(bytes: Uint8Array, saveable = false): Promise<HvmImage> {
  return new Promise((resolve, reject) => {
    const w = compiler();
    const id = nextId++;
    pending.set(id, { resolve, reject });
    w.ref();
    const whole =
      bytes.byteOffset === 0 &&
      bytes.byteLength === bytes.buffer.byteLength &&
      bytes.buffer instanceof ArrayBuffer;
    w.postMessage({ id, bytes, saveable }, whole ? [bytes.buffer as ArrayBuffer] : []);
  });
}

/** Programs loaded from files, while the files stay the same. */
const loadedFiles = new FileCache<HvmImage>();

/** Loads an HVM program from a file (saveable: hvm_saveable.ts); the error names the file. */
export function loadHvmImageFile(path: string, saveable = false): Promise<HvmImage> {
  return loadedFiles.get(
    path,
    async () => {
      const { bytes } = await readHostFile(path, {
        what: "kernel",
        maxBytes: MAX_HVM_IMAGE_BYTES,
      });
      try {
        return await loadHvmImage(bytes, saveable);
      } catch (e) {
        throw new Error(`HVM program ${path}: ${(e as Error).message}`, { cause: e });
      }
    },
    saveable ? "saveable" : "",
  );
}
