/**
 * Kernel images: load a guest `.wasm`, instrument it once (in a worker thread),
 * cache the result on disk by content hash, options and Binaryen version, and
 * compile it once per host so that every domain running it only instantiates.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { FileCache, readHostFile } from "../../common/host_file.js";
import { join } from "node:path";
import { cacheRoot } from "./cache_dir.js";
import { Worker } from "node:worker_threads";
import type { DataSegment } from "./binary.js";
import {
  DEFAULT_INSTRUMENT_OPTIONS,
  instrumentKernel,
  instrumenterVersion,
  type InstrumentOptions,
  type InstrumentedKernel,
} from "./instrument.js";
import { EXPORT_CALLBACK, EXPORT_ENTRY, EXPORT_SECONDARY_ENTRY } from "./config.js";

/** A compiled, instrumented kernel, shared by every domain that runs it. */
export interface Kernel {
  /** Content hash of the kernel as built (hex sha256). */
  readonly hash: string;
  readonly module: WebAssembly.Module;
  readonly segments: readonly DataSegment[];
  readonly minPages: number;
  readonly hasCallback: boolean;
  readonly hasSecondaryEntry: boolean;
}

/** Where instrumented kernels are cached: $TSXEN_CACHE_DIR, else the user cache. */
export function kernelCacheDir(): string {
  return join(cacheRoot(), "kernels");
}

const compiled = new Map<string, Promise<Kernel>>();
/** The same kernels once compiled, for synchronous lookup (compiledKernel). */
const ready = new Map<string, Kernel>();

/**
 * The kernel whose bytes as built hash to `hash` (hex sha256), if it has been
 * loaded and compiled in this process; undefined otherwise.
 */
export function compiledKernel(
  hash: string,
  options: InstrumentOptions = DEFAULT_INSTRUMENT_OPTIONS,
): Kernel | undefined {
  return ready.get(`${hash}-${instrumenterVersion(options)}`);
}

/**
 * One instrumenter worker, started on first use and reused: loading Binaryen
 * costs about a second per thread. It does not keep the process alive while idle.
 */
let worker: Worker | undefined;
let nextId = 0;
const pending = new Map<number, { resolve(k: InstrumentedKernel): void; reject(e: Error): void }>();

function instrumenter(): Worker {
  if (worker) return worker;
  const w = new Worker(new URL("./instrument_worker.js", import.meta.url));
  w.on("message", (msg: { id: number; ok: boolean; out?: InstrumentedKernel; error?: string }) => {
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (pending.size === 0) w.unref();
    if (msg.ok) p?.resolve(msg.out!);
    else p?.reject(new Error(msg.error));
  });
  w.on("error", (e) => {
    for (const p of pending.values()) p.reject(e);
    pending.clear();
    if (worker === w) worker = undefined;
  });
  w.on("exit", () => {
    for (const p of pending.values()) p.reject(new Error("the kernel instrumenter stopped"));
    pending.clear();
    if (worker === w) worker = undefined;
  });
  worker = w;
  return w;
}

function runWorker(bytes: Uint8Array, options: InstrumentOptions): Promise<InstrumentedKernel> {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    const w = instrumenter();
    w.ref();
    w.postMessage({ id, bytes, options });
  });
}

interface CacheFile {
  minPages: number;
  segments: Array<{ offset: number; data: string }>;
}

function readCache(path: string): InstrumentedKernel | undefined {
  try {
    const meta = JSON.parse(readFileSync(`${path}.json`, "utf8")) as CacheFile;
    const bytes = readFileSync(`${path}.wasm`);
    return {
      bytes,
      minPages: meta.minPages,
      segments: meta.segments.map((s) => ({
        offset: s.offset,
        data: Buffer.from(s.data, "base64"),
      })),
    };
  } catch {
    return undefined;
  }
}

function writeCache(path: string, k: InstrumentedKernel): void {
  try {
    mkdirSync(join(path, ".."), { recursive: true });
    const meta: CacheFile = {
      minPages: k.minPages,
      segments: k.segments.map((s) => ({
        offset: s.offset,
        data: Buffer.from(s.data).toString("base64"),
      })),
    };
    // Write-then-rename so a concurrent reader never sees half a file.
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(`${tmp}.wasm`, k.bytes);
    writeFileSync(`${tmp}.json`, JSON.stringify(meta));
    renameSync(`${tmp}.wasm`, `${path}.wasm`);
    renameSync(`${tmp}.json`, `${path}.json`);
  } catch {
    // A cache that cannot be written only costs time on the next load.
  }
}

/**
 * Loads a kernel from its bytes: instrumented from the disk cache or in a
 * worker, then compiled; concurrent and later loads of the same bytes share
 * one compiled module. Rejects with an Error that says what is wrong.
 */
export function loadKernel(
  bytes: Uint8Array,
  options: InstrumentOptions = DEFAULT_INSTRUMENT_OPTIONS,
): Promise<Kernel> {
  const hash = createHash("sha256").update(bytes).digest("hex");
  const key = `${hash}-${instrumenterVersion(options)}`;
  let p = compiled.get(key);
  if (!p) {
    p = (async () => {
      const path = join(kernelCacheDir(), key);
      let k = readCache(path);
      if (!k) {
        k = await runWorker(bytes, options);
        writeCache(path, k);
      }
      const module = await WebAssembly.compile(new Uint8Array(k.bytes));
      const exports = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
      if (!exports.has(EXPORT_ENTRY))
        throw new Error(`kernel does not export its entry point ${EXPORT_ENTRY}`);
      const kernel: Kernel = {
        hash,
        module,
        segments: k.segments,
        minPages: k.minPages,
        hasCallback: exports.has(EXPORT_CALLBACK),
        hasSecondaryEntry: exports.has(EXPORT_SECONDARY_ENTRY),
      };
      ready.set(key, kernel);
      return kernel;
    })();
    p.catch(() => compiled.delete(key));
    compiled.set(key, p);
  }
  return p;
}

/**
 * Instruments `bytes` in this thread and stores the result in the disk cache,
 * unless it is there already (used at build time, so first boots are fast).
 */
export function warmKernelCache(
  bytes: Uint8Array,
  options: InstrumentOptions = DEFAULT_INSTRUMENT_OPTIONS,
): void {
  const hash = createHash("sha256").update(bytes).digest("hex");
  const path = join(kernelCacheDir(), `${hash}-${instrumenterVersion(options)}`);
  if (!readCache(path)) writeCache(path, instrumentKernel(bytes, options));
}

/** Loads a kernel from a `.wasm` file; the error names the file. */
export function loadKernelFile(
  path: string,
  options: InstrumentOptions = DEFAULT_INSTRUMENT_OPTIONS,
): Promise<Kernel> {
  // libxl loads the kernel on every create: an unchanged file is not read again.
  return loadedFiles.get(
    path,
    () => readAndLoadKernel(path, options),
    instrumenterVersion(options),
  );
}

/** Kernels loaded from files, while the files stay the same. */
const loadedFiles = new FileCache<Kernel>();

/**
 * Largest kernel file accepted. A kernel is read whole and instrumented in
 * memory, and Binaryen takes about 120 times a module's size to do it (a
 * 30.8 MB WASI program took 3.8 GB, measured on Node 20), so a path to a huge
 * file must fail at once with a message, not after eating the host's
 * memory. mini-os kernels are under 2 MB.
 */
export const MAX_KERNEL_BYTES = 32 * 1024 * 1024;

async function readAndLoadKernel(path: string, options: InstrumentOptions): Promise<Kernel> {
  // Opened without blocking and checked (a FIFO, /dev/zero, a directory or a
  // huge file is refused by name) before anything is read; read off the main thread.
  const { bytes } = await readHostFile(path, { what: "kernel", maxBytes: MAX_KERNEL_BYTES });
  try {
    return await loadKernel(bytes, options);
  } catch (e) {
    throw new Error(`kernel ${path}: ${(e as Error).message}`, { cause: e });
  }
}
