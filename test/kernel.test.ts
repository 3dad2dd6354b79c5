/** Kernel loading: the disk cache, and errors that name the file and the fault. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guestPath } from "../extras/mini-os/paths.js";
import {
  MAX_KERNEL_BYTES,
  kernelCacheDir,
  loadKernel,
  loadKernelFile,
} from "../xen/arch/wasm32/kernel.js";

/** The hello kernel with a custom section appended: same code, a new hash. */
function variant(tag: string): Uint8Array {
  const name = Buffer.from(tag);
  const body = Buffer.concat([Buffer.from([name.length]), name]);
  return Buffer.concat([readFileSync(guestPath("hello")), Buffer.from([0, body.length]), body]);
}

test("an instrumented kernel is cached on disk by its hash and reused", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-cache-"));
  const saved = process.env.TSXEN_CACHE_DIR;
  process.env.TSXEN_CACHE_DIR = dir;
  try {
    const bytes = variant(`cache-${process.pid}-${Date.now()}`);
    const k1 = await loadKernel(bytes);
    const files = readdirSync(kernelCacheDir());
    assert.deepEqual(files.map((f) => f.slice(-5)).sort(), [".json", ".wasm"]);
    assert.ok(files[0]!.startsWith(k1.hash));
    // The same bytes again: the same compiled kernel, no new files.
    assert.equal(await loadKernel(bytes), k1);
    assert.equal(readdirSync(kernelCacheDir()).length, 2);
  } finally {
    if (saved === undefined) delete process.env.TSXEN_CACHE_DIR;
    else process.env.TSXEN_CACHE_DIR = saved;
  }
});

test("a file that is not a kernel is refused with its name and the reason", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-bad-"));
  const notWasm = join(dir, "notes.wasm");
  writeFileSync(notWasm, "this is text");
  await assert.rejects(
    loadKernelFile(notWasm),
    new RegExp(`kernel ${notWasm}: not a WebAssembly module`),
  );
  await assert.rejects(
    loadKernelFile(join(dir, "missing.wasm")),
    /kernel .*missing.wasm: No such file or directory \(ENOENT\)/,
  );
});

test("a kernel that is not a regular file, or too large, is refused at once, by name", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-kinds-"));
  const fifo = join(dir, "fifo.wasm");
  execFileSync("mkfifo", [fifo]);
  const loop = join(dir, "loop.wasm");
  symlinkSync(loop, loop);
  const huge = join(dir, "huge.wasm");
  writeFileSync(huge, "");
  truncateSync(huge, MAX_KERNEL_BYTES + 1);
  const rows: Array<[string, RegExp]> = [
    // A FIFO with no writer would hold open(2) forever.
    [fifo, /kernel .*fifo\.wasm: is a FIFO, not a regular file/],
    ["/dev/zero", /kernel \/dev\/zero: is a character device, not a regular file/],
    [dir, /kernel .*tsxen-kinds-\w+: is a directory, not a regular file/],
    [loop, /kernel .*loop\.wasm: Too many levels of symbolic links \(ELOOP\)/],
    [huge, /kernel .*huge\.wasm: is 32 MiB; a kernel may be at most 32 MiB/],
  ];
  for (const [path, msg] of rows) {
    const t = performance.now();
    await assert.rejects(loadKernelFile(path), msg);
    assert.ok(performance.now() - t < 500, `${path} took ${performance.now() - t} ms to refuse`);
  }
});

test("a kernel file is read again only when it changes, and a vanished file is an error", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-kfile-"));
  const path = join(dir, "guest.wasm");
  writeFileSync(path, variant(`file-a-${process.pid}`));
  const k1 = await loadKernelFile(path);
  assert.equal(await loadKernelFile(path), k1);
  // New contents of another size: a new kernel, whatever the timestamps say.
  writeFileSync(path, variant(`file-b-longer-${process.pid}`));
  const k2 = await loadKernelFile(path);
  assert.notEqual(k2.hash, k1.hash);
  assert.equal(k2.hash, createHash("sha256").update(readFileSync(path)).digest("hex"));
  rmSync(path);
  await assert.rejects(
    loadKernelFile(path),
    /kernel .*guest\.wasm: No such file or directory \(ENOENT\)/,
  );
});
