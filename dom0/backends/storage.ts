/**
 * Where a virtual disk's sectors live, behind one interface (the part of
 * QEMU's block layer or Linux's loop device that blkback reaches): a raw
 * image file, or memory. Sectors are 512 bytes. `flush` makes every write
 * before it durable on the host (fsync for a file).
 */
import { closeSync, fsync, fsyncSync, read, readSync, write, writeSync } from "node:fs";
import { execFile } from "node:child_process";
import { openHostFile } from "../../xen/common/host_file.js";

export const SECTOR = 512;

export interface BlockStorage {
  readonly sectors: number;
  readonly readonly: boolean;
  /** What `xl block-list` and errors call it. */
  readonly description: string;
  /** Reads `dst.length` bytes (whole sectors) from `sector`. */
  read(sector: number, dst: Uint8Array): void;
  /**
   * Where a storage has it: the same read done off the main thread (Node's
   * thread pool), `done` called later from the event loop (never before
   * readAsync returns) with the error, if any. `dst` must stay valid until
   * then, and the storage open.
   */
  readAsync?(sector: number, dst: Uint8Array, done: (err?: Error) => void): void;
  write(sector: number, src: Uint8Array): void;
  flush(): void;
  /** Where a storage has it: flush done off the main thread, `done` as for readAsync. */
  flushAsync?(done: (err?: Error) => void): void;
  /** The sectors read back as zeros afterwards. */
  discard(sector: number, count: number): void;
  /** Where a storage has it: discard done off the main thread, `done` as for readAsync. */
  discardAsync?(sector: number, count: number, done: (err?: Error) => void): void;
  close(): void;
}

/**
 * What the disks kept in an image file share: the open file, fsync as
 * flush, discard as zeros written, and closing.
 */
export abstract class ImageFile implements BlockStorage {
  protected fd: number;
  abstract readonly sectors: number;
  abstract readonly description: string;

  /** @param what what the file is to the user, for errors: "disk" or "backing file" */
  constructor(
    readonly path: string,
    readonly readonly: boolean,
    what = "disk",
  ) {
    // Without blocking, and only a regular file or a block device (a FIFO,
    // a directory or a character device is refused with its name).
    const { fd, size } = openHostFile(path, {
      what,
      write: !readonly,
      blockDevice: true,
    });
    this.fd = fd;
    this.bytes = size;
  }

  /** The image file's size in bytes when it was opened (block devices included). */
  protected readonly bytes: number;

  abstract read(sector: number, dst: Uint8Array): void;
  abstract write(sector: number, src: Uint8Array): void;

  flush(): void {
    fsyncSync(this.fd);
  }

  flushAsync(done: (err?: Error) => void): void {
    fsync(this.fd, (err) => done(err ?? undefined));
  }

  discard(sector: number, count: number): void {
    writeZeros(this, sector, count);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** A raw image: byte n of the disk is byte n of the file. */
export class RawFileStorage extends ImageFile {
  readonly sectors: number;
  readonly description: string;

  constructor(path: string, readonly: boolean, what = "disk") {
    super(path, readonly, what);
    this.sectors = Math.floor(this.bytes / SECTOR);
    this.description = `raw:${path}`;
  }

  read(sector: number, dst: Uint8Array): void {
    preadFully(this.fd, dst, sector * SECTOR);
  }

  readAsync(sector: number, dst: Uint8Array, done: (err?: Error) => void): void {
    preadFullyAsync(this.fd, dst, sector * SECTOR, done);
  }

  write(sector: number, src: Uint8Array): void {
    pwriteFully(this.fd, src, sector * SECTOR);
  }

  /**
   * Punches a hole (util-linux's fallocate --punch-hole, what Linux's loop
   * device does for a discard): the range reads back as zeros and takes no
   * space, however large it is. The file is named through /proc as this
   * process's open descriptor, so a file renamed or replaced meanwhile is
   * not touched. Where that fails (no fallocate, a file system without
   * holes) zeros are written, off the main thread too.
   */
  discardAsync(sector: number, count: number, done: (err?: Error) => void): void {
    const offset = sector * SECTOR;
    const length = count * SECTOR;
    if (length === 0) return void setImmediate(done);
    const file = `/proc/${process.pid}/fd/${this.fd}`;
    const args = ["--punch-hole", "--offset", String(offset), "--length", String(length), file];
    execFile("fallocate", args, (err) => {
      if (!err) return done();
      writeZerosAsync(this.fd, offset, length, done);
    });
  }
}

/** Reads `dst.length` bytes of `fd` at `pos`, however many reads it takes; zeros past the end of the file. */
export function preadFully(fd: number, dst: Uint8Array, pos: number): void {
  let done = 0;
  while (done < dst.length) {
    const n = readSync(fd, dst, done, dst.length - done, pos + done);
    if (n === 0) {
      dst.fill(0, done);
      return;
    }
    done += n;
  }
}

/** preadFully on Node's thread pool: `done` once `dst` is filled, or with the error. */
export function preadFullyAsync(
  fd: number,
  dst: Uint8Array,
  pos: number,
  done: (err?: Error) => void,
): void {
  const step = (filled: number): void => {
    read(fd, dst, filled, dst.length - filled, pos + filled, (err, n) => {
      if (err) return done(err);
      if (n === 0) dst.fill(0, filled);
      if (n === 0 || filled + n === dst.length) return done();
      step(filled + n);
    });
  };
  step(0);
}

/** `length` zero bytes written at `offset` of `fd` on Node's thread pool, 1 MiB at a time. */
function writeZerosAsync(
  fd: number,
  offset: number,
  length: number,
  done: (err?: Error) => void,
): void {
  const zeros = new Uint8Array(Math.min(length, 1 << 20));
  const end = offset + length;
  const step = (at: number): void => {
    if (at >= end) return done();
    const n = Math.min(zeros.length, end - at);
    write(fd, zeros, 0, n, at, (err, wrote) => (err ? done(err) : step(at + wrote)));
  };
  step(offset);
}

/** Writes all of `src` to `fd` at `pos`, however many writes it takes. */
export function pwriteFully(fd: number, src: Uint8Array, pos: number): void {
  let done = 0;
  while (done < src.length) done += writeSync(fd, src, done, src.length - done, pos + done);
}

/** Discard as zeros written over the range, 1 MiB at a time: simple, and what the guest reads back. */
export function writeZeros(storage: BlockStorage, sector: number, count: number): void {
  const zeros = new Uint8Array(Math.min(count, 2048) * SECTOR);
  for (let s = 0; s < count; s += zeros.length / SECTOR) {
    const n = Math.min(zeros.length / SECTOR, count - s);
    storage.write(sector + s, zeros.subarray(0, n * SECTOR));
  }
}

/** A disk in memory (a scratch disk; gone with the host). */
export class MemoryStorage implements BlockStorage {
  readonly bytes: Uint8Array;
  readonly description: string;

  constructor(
    readonly sectors: number,
    readonly readonly = false,
  ) {
    this.bytes = new Uint8Array(sectors * SECTOR);
    this.description = `memory:${sectors * SECTOR}`;
  }

  read(sector: number, dst: Uint8Array): void {
    dst.set(this.bytes.subarray(sector * SECTOR, sector * SECTOR + dst.length));
  }
  write(sector: number, src: Uint8Array): void {
    this.bytes.set(src, sector * SECTOR);
  }
  flush(): void {}
  discard(sector: number, count: number): void {
    this.bytes.fill(0, sector * SECTOR, (sector + count) * SECTOR);
  }
  close(): void {}
}
