/**
 * Files a user names (disks, backing files, configs) are opened without
 * blocking and refused by type and size, each error naming the path and the
 * cause. A FIFO with no writer would hold open(2) forever: each row must be
 * answered at once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openImage } from "../dom0/backends/qcow2.js";
import { readHostFileSync } from "../xen/common/host_file.js";

function fixtures(): { dir: string; fifo: string; loop: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "tsxen-files-"));
  const fifo = join(dir, "fifo.img");
  execFileSync("mkfifo", [fifo]);
  const loop = join(dir, "loop.img");
  symlinkSync(loop, loop);
  const file = join(dir, "disk.img");
  writeFileSync(file, Buffer.alloc(4096, 1));
  return { dir, fifo, loop, file };
}

test("a disk that is a FIFO, a directory, a character device or a symlink loop is refused by name", () => {
  const { dir, fifo, loop, file } = fixtures();
  const rows: Array<[string, boolean, RegExp]> = [
    [fifo, true, /disk .*fifo\.img: is a FIFO, not a regular file or block device/],
    [fifo, false, /disk .*fifo\.img: is a FIFO, not a regular file or block device/],
    [dir, true, /disk .*tsxen-files-\w+: is a directory, not a regular file or block device/],
    ["/dev/zero", true, /disk \/dev\/zero: is a character device/],
    [loop, true, /disk .*loop\.img: Too many levels of symbolic links \(ELOOP\)/],
    [join(dir, "none.img"), true, /disk .*none\.img: No such file or directory \(ENOENT\)/],
  ];
  for (const [path, readonly, msg] of rows) {
    const t = performance.now();
    assert.throws(() => openImage(path, readonly), msg, path);
    assert.ok(performance.now() - t < 200, `${path} took ${performance.now() - t} ms`);
  }
  const ok = openImage(file, true);
  assert.equal(ok.sectors, 8);
  ok.close();
});

test("a config file is read only when it is a small regular file", () => {
  const { dir, fifo, file } = fixtures();
  const big = join(dir, "big.cfg");
  writeFileSync(big, Buffer.alloc(2048, 0x20));
  assert.equal(readHostFileSync(file, { what: "config file", maxBytes: 8192 }).length, 4096);
  assert.throws(
    () => readHostFileSync(fifo, { what: "config file", maxBytes: 8192 }),
    /config file .*fifo\.img: is a FIFO, not a regular file/,
  );
  assert.throws(
    () => readHostFileSync(big, { what: "config file", maxBytes: 1024 }),
    /config file .*big\.cfg: is 2048 bytes; a config file may be at most 1024 bytes/,
  );
});
