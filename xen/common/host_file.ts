/**
 * Files a user names to the host (a kernel, a disk image, a backing file, an
 * xl.cfg), opened the one safe way: without blocking (a FIFO with no writer
 * would hold `open` forever), the type checked on the open descriptor before
 * anything is read (a directory, a FIFO, a socket or a character device such
 * as /dev/zero is refused), and the size checked before it is read. Every
 * error names what the file was for, the path and the real cause, in the
 * words of strerror(3) with the errno's name.
 */
import {
  constants,
  fstatSync,
  openSync,
  closeSync,
  readFileSync,
  readSync,
  statSync,
  type Stats,
} from "node:fs";
import { open } from "node:fs/promises";
import { resolve } from "node:path";

/** What the file is for and what is accepted. */
export interface HostFileOptions {
  /** What the file is, for messages: "kernel", "disk", "backing file", "config file". */
  readonly what: string;
  /** Open for writing too. */
  readonly write?: boolean;
  /** Accept a block device (disks). */
  readonly blockDevice?: boolean;
  /** Refuse a file larger than this many bytes. */
  readonly maxBytes?: number;
}

/** A user's file that cannot be used: the message says which, and why. */
export class HostFileError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** strerror(3)'s words for the errors a user's path meets. */
const STRERROR: Record<string, string> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  ELOOP: "Too many levels of symbolic links",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  ENXIO: "No such device or address",
  EROFS: "Read-only file system",
  ENAMETOOLONG: "File name too long",
  EMFILE: "Too many open files",
  ETXTBSY: "Text file busy",
  EBUSY: "Device or resource busy",
  EIO: "Input/output error",
};

/** "No such file or directory (ENOENT)" for a Node fs error. */
export function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code && STRERROR[code]) return `${STRERROR[code]} (${code})`;
  return code ? `${(e as Error).message.replace(/,.*$/, "")}` : String(e);
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "not a regular file";
}

const MiB = 1024 * 1024;
const mib = (n: number): string =>
  n < MiB ? `${n} bytes` : `${Math.round((n / MiB) * 10) / 10} MiB`;

/** The size in bytes of block device `st` (fstat reports 0 for one), from sysfs. */
function blockDeviceBytes(st: Stats): number {
  const major = Math.floor(st.rdev / 256) & 0xfff;
  const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
  try {
    return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim()) * 512;
  } catch {
    return 0;
  }
}

/** Checks an open file's type and size; returns its size in bytes. */
function checkOpened(path: string, st: Stats, opts: HostFileOptions): number {
  const ok = st.isFile() || (opts.blockDevice === true && st.isBlockDevice());
  if (!ok) {
    const want = opts.blockDevice ? "a regular file or block device" : "a regular file";
    throw new HostFileError("EINVAL", `${opts.what} ${path}: is ${kindOf(st)}, not ${want}`);
  }
  const size = st.isBlockDevice() ? blockDeviceBytes(st) : st.size;
  if (opts.maxBytes !== undefined && size > opts.maxBytes) {
    throw new HostFileError(
      "EFBIG",
      `${opts.what} ${path}: is ${mib(size)}; a ${opts.what} may be at most ${mib(opts.maxBytes)}`,
    );
  }
  return size;
}

const flags = (opts: HostFileOptions): number =>
  (opts.write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK | constants.O_NOCTTY;

function openFailed(path: string, opts: HostFileOptions, e: unknown): HostFileError {
  return new HostFileError(
    (e as NodeJS.ErrnoException).code ?? "EIO",
    `${opts.what} ${path}: ${describeFsError(e)}`,
  );
}

/** Opens a user's file for use as a disk or the like: its fd and size in bytes. */
export function openHostFile(
  path: string,
  opts: HostFileOptions,
): { fd: number; size: number; stat: Stats } {
  let fd: number;
  try {
    fd = openSync(path, flags(opts));
  } catch (e) {
    throw openFailed(path, opts, e);
  }
  try {
    const stat = fstatSync(fd);
    return { fd, size: checkOpened(path, stat, opts), stat };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Reads a whole user's file (a config), synchronously: for small files only. */
export function readHostFileSync(
  path: string,
  opts: HostFileOptions & { maxBytes: number },
): Buffer {
  const { fd, size } = openHostFile(path, opts);
  try {
    const buf = Buffer.alloc(size);
    let got = 0;
    // A file that shrank meanwhile ends early; one that grew is read to its size then.
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } catch (e) {
    if (e instanceof HostFileError) throw e;
    throw openFailed(path, opts, e);
  } finally {
    closeSync(fd);
  }
}

/** Reads a whole user's file off the main thread (a kernel), with the same checks. */
export async function readHostFile(
  path: string,
  opts: HostFileOptions & { maxBytes: number },
): Promise<{ bytes: Buffer; stat: Stats }> {
  let handle;
  try {
    handle = await open(path, flags(opts));
  } catch (e) {
    throw openFailed(path, opts, e);
  }
  try {
    const stat = await handle.stat();
    const size = checkOpened(path, stat, opts);
    // Not zeroed first: only the bytes read are returned.
    const bytes = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await handle.read(bytes, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return { bytes: bytes.subarray(0, got), stat };
  } catch (e) {
    if (e instanceof HostFileError) throw e;
    throw openFailed(path, opts, e);
  } finally {
    await handle.close();
  }
}

/**
 * What was made from files (a parsed or compiled image), kept while each
 * file stays the same: same device, inode, size and times. Loaders read
 * a kernel on every create, and an unchanged file is neither read nor
 * hashed again. Only regular files are remembered (stat never blocks, even
 * on a FIFO); anything else is loaded, and its loader says what is wrong.
 */
export class FileCache<T> {
  private readonly seen = new Map<string, { id: string; value: T }>();

  /** `load`'s result for `path`, or the one kept for it; `variant` tells apart loads of one file made differently. */
  async get(path: string, load: () => Promise<T>, variant = ""): Promise<T> {
    const abs = resolve(path);
    let id: string | undefined;
    try {
      const st = statSync(abs);
      if (st.isFile()) id = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}:${variant}`;
    } catch {
      // The load reports what is wrong.
    }
    const seen = this.seen.get(abs);
    if (id !== undefined && seen?.id === id) return seen.value;
    const value = await load();
    if (id !== undefined) this.seen.set(abs, { id, value });
    return value;
  }

  clear(): void {
    this.seen.clear();
  }
}
