/**
 * The devices of tsxen's device model for an HVM (WASI) guest: what each
 * WASI preview1 call does when its ioreq arrives (`dm_worker.ts` takes the
 * ioreqs off the page). The program's memory is reached through the device
 * model's foreign mapping; every pointer and length it passes is checked
 * against that memory first (EFAULT), and every size is bounded, so no
 * argument can make the device model touch memory outside the program or
 * allocate without limit.
 *
 * Devices:
 * - the serial port: fds 0, 1, 2 (stdin, stdout, stderr), a character
 *   device; output goes to the domain's serial console, input comes from it
 *   (a read with nothing typed waits, as a UART read does);
 * - 9pfs shares (xl.cfg `p9=`): preopened directories named by their tag,
 *   with every path resolved inside the share (share.ts);
 * - disks (xl.cfg `disk=`): block devices under a preopened `/dev`
 *   (`/dev/xvda`...), read, written, sought and synced byte-wise over the
 *   storage code blkback uses (raw and qcow2 images);
 * - args (the domain's command line), environment, poll_oneoff's clocks,
 *   and proc_exit, which powers the domain off with the program's exit code.
 *
 * docs/arch-wasm32.md lists what each of the 46 preview1 functions does.
 */
import {
  closeSync,
  constants as C,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  futimesSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmdirSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeSync,
  type Stats,
} from "node:fs";
import * as W from "../../xen/include/public/hvm/wasi.js";
import { SECTOR, type BlockStorage } from "../backends/storage.js";
import { at, LookupError, release, resolvePath, type Resolved } from "./share.js";
import {
  FASTFD_APPEND,
  FASTFD_WRITE,
  WASM32_FASTFD_ENTRIES,
  WASM32_FASTFD_ENTRY,
  WASM32_IOREQ_FASTFD,
} from "../../xen/include/public/hvm/wasm32_io.js";

/** A share as the device model serves it. */
export interface ShareSpec {
  /** The guest path of its preopen (from the p9 tag). */
  guestPath: string;
  /** The host directory. */
  path: string;
  readonly: boolean;
}

/** A disk as the device model serves it: its name under /dev and its storage. */
export interface DiskDevice {
  name: string;
  storage: BlockStorage;
}

export interface WasiDeviceConfig {
  args: string[];
  env: string[];
  shares: ShareSpec[];
  disks: DiskDevice[];
}

/** What the device model's other parts do for the WASI devices. */
export interface WasiHost {
  /** Takes bytes for the serial console; false (nothing taken) while the console is backed up. */
  serialOut(bytes: Uint8Array): boolean;
  /** The program called proc_exit. */
  exit(code: number): void;
}

/** A call that cannot be answered yet: try again when input arrives or at `deadline` (ms, performance.now()). */
export interface Held {
  retry(): number | undefined;
  deadline: number;
}

/** An ioreq's argument slots: low and high 32-bit words (up to 16 slots). */
export interface IoreqArgs {
  readonly lo: ArrayLike<number>;
  readonly hi: ArrayLike<number>;
}

/** The answer to an ioreq: a WASI errno, or a call held for later. */
export type Answer = number | Held;

/**
 * One descriptor of a saved device model (docs/save-format.md,
 * EMULATOR_CONTEXT): what opens it again in another device model. Paths are
 * relative to the share's directory; `share` is its index in the config.
 */
export type SavedFd =
  | { n: number; kind: "serial"; port: 0 | 1 | 2; flags: number }
  | { n: number; kind: "dir"; share: number; path: string; preopen?: string }
  | {
      n: number;
      kind: "file";
      share: number;
      path: string;
      readonly: boolean;
      flags: number;
      pos: number;
    }
  | { n: number; kind: "devdir"; preopen?: string }
  | { n: number; kind: "disk"; disk: string; pos: number; readonly: boolean };

/** The WASI devices' state, as a save carries it. */
export interface WasiState {
  fds: SavedFd[];
  /** Serial input typed and not yet read (base64). */
  serialIn: string;
}

/**
 * A device model state read from a file, checked field by field (a save
 * file is input like any other); throws naming the first wrong field.
 * restoreState checks the rest against the devices (shares, disks).
 */
export function checkWasiState(x: unknown): WasiState {
  const fail = (what: string): never => {
    throw new Error(`device model state: ${what}`);
  };
  if (typeof x !== "object" || x === null) fail("not an object");
  const o = x as Record<string, unknown>;
  if (typeof o.serialIn !== "string" || o.serialIn.length > MAX_SERIAL_INPUT * 2)
    fail("serialIn must be base64 of at most 64 KiB");
  if (!Array.isArray(o.fds) || o.fds.length > MAX_FDS)
    fail(`fds must be a list of at most ${MAX_FDS}`);
  const int = (v: unknown, max: number): boolean =>
    Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;
  const optString = (v: unknown): boolean => v === undefined || typeof v === "string";
  for (const f of o.fds as unknown[]) {
    if (typeof f !== "object" || f === null) fail("a descriptor is not an object");
    const d = f as Record<string, unknown>;
    const what = `descriptor ${JSON.stringify(d.n)}`;
    if (!int(d.n, MAX_FDS - 1)) fail(`${what}: n must be 0..${MAX_FDS - 1}`);
    switch (d.kind) {
      case "serial":
        if (d.port !== 0 && d.port !== 1 && d.port !== 2) fail(`${what}: port must be 0, 1 or 2`);
        if (!int(d.flags, 0xffff)) fail(`${what}: bad flags`);
        break;
      case "devdir":
        if (!optString(d.preopen)) fail(`${what}: bad preopen`);
        break;
      case "disk":
        if (typeof d.disk !== "string" || !int(d.pos, Number.MAX_SAFE_INTEGER))
          fail(`${what}: a disk needs its name and position`);
        if (typeof d.readonly !== "boolean") fail(`${what}: bad readonly`);
        break;
      case "dir":
      case "file":
        if (!int(d.share, 255) || typeof d.path !== "string" || d.path.length > 4096)
          fail(`${what}: needs a share and a path`);
        if (d.kind === "dir" && !optString(d.preopen)) fail(`${what}: bad preopen`);
        if (
          d.kind === "file" &&
          (typeof d.readonly !== "boolean" ||
            !int(d.flags, 0xffff) ||
            !int(d.pos, Number.MAX_SAFE_INTEGER))
        )
          fail(`${what}: a file needs readonly, flags and its position`);
        break;
      default:
        fail(`${what}: unknown kind ${JSON.stringify(d.kind)}`);
    }
  }
  return x as WasiState;
}

/** Most descriptors one program may hold (each may be a host descriptor). */
export const MAX_FDS = 256;
/** Most bytes one read or write moves (a program sees a short count, as POSIX allows). */
export const MAX_IO_BYTES = 16 * 1024 * 1024;
/** Most iovecs in one call (POSIX's IOV_MAX). */
export const MAX_IOVS = 1024;
/** Most subscriptions one poll_oneoff takes. */
export const MAX_SUBSCRIPTIONS = 4096;
/** Serial input kept while the program does not read it. */
export const MAX_SERIAL_INPUT = 64 * 1024;

class Fault extends Error {}

const RIGHTS_ALL = W.WASI_RIGHTS_ALL;
const WRITE_RIGHTS =
  (1n << BigInt(W.WASI_RIGHT_FD_WRITE)) |
  (1n << BigInt(W.WASI_RIGHT_FD_DATASYNC)) |
  (1n << BigInt(W.WASI_RIGHT_FD_SYNC)) |
  (1n << BigInt(W.WASI_RIGHT_FD_FILESTAT_SET_SIZE));
/**
 * The rights that ask for writing. wasi-libc's open() asks for every right
 * but the read and write ones, then adds those its O_ flags want, so only
 * these say a descriptor is for writing (fd_sync, say, comes with any).
 */
const WANTS_WRITE =
  (1n << BigInt(W.WASI_RIGHT_FD_WRITE)) |
  (1n << BigInt(W.WASI_RIGHT_FD_ALLOCATE)) |
  (1n << BigInt(W.WASI_RIGHT_FD_FILESTAT_SET_SIZE));

type Fd =
  | { kind: "serial"; n: 0 | 1 | 2; flags: number }
  | { kind: "dir"; fd: number; share: ShareSpec; preopen?: string; entries?: DirEntry[] }
  | FileFd
  | { kind: "devdir"; preopen?: string }
  | { kind: "disk"; disk: DiskDevice; pos: number; readonly: boolean };

interface DirEntry {
  name: string;
  ino: bigint;
  type: number;
}

/** The fast-descriptor table of the ioreq page (public/hvm/wasm32_io.ts), as views. */
export interface FastFds {
  readonly i32: Int32Array;
  readonly f64: Float64Array;
}

/**
 * An open regular file of a share. When its descriptor number is below
 * WASM32_FASTFD_ENTRIES and the device model has a fast-descriptor table,
 * the file is published there: its position lives in the table, shared with
 * the vCPU, which reads and writes the file itself.
 */
class FileFd {
  readonly kind = "file" as const;
  private localPos = 0;
  private slot = -1;

  constructor(
    readonly fd: number,
    readonly readonly: boolean,
    public flags: number,
    private readonly fast: FastFds | undefined,
  ) {}

  get pos(): number {
    return this.slot >= 0 ? this.fast!.f64[this.f64Index(this.slot)]! : this.localPos;
  }
  set pos(v: number) {
    if (this.slot >= 0) this.fast!.f64[this.f64Index(this.slot)] = v;
    else this.localPos = v;
  }

  private i32Index = (n: number): number => (WASM32_IOREQ_FASTFD + n * WASM32_FASTFD_ENTRY) >> 2;
  private f64Index = (n: number): number =>
    (WASM32_IOREQ_FASTFD + n * WASM32_FASTFD_ENTRY + 8) >> 3;

  /** Publishes the file as WASI descriptor `n` (or withdraws it, with undefined); the position carries over. */
  place(n: number | undefined): void {
    const pos = this.pos;
    if (this.slot >= 0) {
      this.fast!.i32[this.i32Index(this.slot)] = 0;
      this.slot = -1;
    }
    this.localPos = pos;
    if (n === undefined || !this.fast || n >= WASM32_FASTFD_ENTRIES) return;
    this.slot = n;
    this.fast.f64[this.f64Index(n)] = pos;
    this.fast.i32[this.i32Index(n) + 1] =
      (this.readonly ? 0 : FASTFD_WRITE) | (this.flags & W.WASI_FDFLAG_APPEND ? FASTFD_APPEND : 0);
    this.fast.i32[this.i32Index(n)] = this.fd + 1;
  }
}

/** Host errno names → WASI errno. */
const HOST_ERRNO: Record<string, number> = {
  EACCES: W.WASI_EACCES,
  EAGAIN: W.WASI_EAGAIN,
  EBADF: W.WASI_EBADF,
  EBUSY: W.WASI_EBUSY,
  EEXIST: W.WASI_EEXIST,
  EFBIG: W.WASI_EFBIG,
  EINVAL: W.WASI_EINVAL,
  EIO: W.WASI_EIO,
  EISDIR: W.WASI_EISDIR,
  ELOOP: W.WASI_ELOOP,
  EMFILE: W.WASI_EMFILE,
  EMLINK: W.WASI_EMLINK,
  ENAMETOOLONG: W.WASI_ENAMETOOLONG,
  ENFILE: W.WASI_ENFILE,
  ENODEV: W.WASI_ENODEV,
  ENOENT: W.WASI_ENOENT,
  ENOMEM: W.WASI_ENOMEM,
  ENOSPC: W.WASI_ENOSPC,
  ENOTDIR: W.WASI_ENOTDIR,
  ENOTEMPTY: W.WASI_ENOTEMPTY,
  ENOTSUP: W.WASI_ENOTSUP,
  EOPNOTSUPP: W.WASI_ENOTSUP,
  ENXIO: W.WASI_ENXIO,
  EPERM: W.WASI_EPERM,
  EPIPE: W.WASI_EPIPE,
  EROFS: W.WASI_EROFS,
  ESPIPE: W.WASI_ESPIPE,
  ETXTBSY: W.WASI_ETXTBSY,
  EXDEV: W.WASI_EXDEV,
  EDQUOT: W.WASI_ENOSPC,
};

export function hostErrno(e: unknown): number {
  if (e instanceof LookupError) return e.errno;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return (code && HOST_ERRNO[code]) || W.WASI_EIO;
}

const LOOKUP_ERRNOS = {
  notcapable: W.WASI_ENOTCAPABLE,
  loop: W.WASI_ELOOP,
  inval: W.WASI_EINVAL,
  nametoolong: W.WASI_ENAMETOOLONG,
  notdir: W.WASI_ENOTDIR,
};

function filetypeOf(st: Stats): number {
  if (st.isFile()) return W.WASI_FILETYPE_REGULAR_FILE;
  if (st.isDirectory()) return W.WASI_FILETYPE_DIRECTORY;
  if (st.isSymbolicLink()) return W.WASI_FILETYPE_SYMBOLIC_LINK;
  if (st.isBlockDevice()) return W.WASI_FILETYPE_BLOCK_DEVICE;
  if (st.isCharacterDevice()) return W.WASI_FILETYPE_CHARACTER_DEVICE;
  if (st.isSocket()) return W.WASI_FILETYPE_SOCKET_STREAM;
  return W.WASI_FILETYPE_UNKNOWN;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export class WasiDevices {
  private readonly fds: (Fd | undefined)[] = [];
  private u8: Uint8Array;
  private dv: DataView;
  private readonly serialIn: Uint8Array[] = [];
  private serialInBytes = 0;
  private readonly args: Uint8Array[];
  private readonly env: Uint8Array[];
  private exited = false;

  constructor(
    private readonly memory: WebAssembly.Memory,
    readonly config: WasiDeviceConfig,
    private readonly host: WasiHost,
    /** Opens a share's root directory (the device model opens them before the guest runs). */
    shareRoots: number[],
    /** The ioreq page's fast-descriptor table, when the vCPU may do file I/O itself. */
    private readonly fast?: FastFds,
  ) {
    this.u8 = new Uint8Array(memory.buffer);
    this.dv = new DataView(memory.buffer);
    this.args = config.args.map((a) => enc.encode(`${a}\0`));
    this.env = config.env.map((a) => enc.encode(`${a}\0`));
    this.fds[0] = { kind: "serial", n: 0, flags: 0 };
    this.fds[1] = { kind: "serial", n: 1, flags: W.WASI_FDFLAG_APPEND };
    this.fds[2] = { kind: "serial", n: 2, flags: W.WASI_FDFLAG_APPEND };
    config.shares.forEach((share, i) =>
      this.fds.push({ kind: "dir", fd: shareRoots[i]!, share, preopen: share.guestPath }),
    );
    if (config.disks.length > 0) this.fds.push({ kind: "devdir", preopen: "/dev" });
  }

  /**
   * The descriptors as a save carries them (the program is stopped: no call
   * is in flight). Each host descriptor's path is read back from the kernel
   * and must still lie inside its share: a file removed since it was opened
   * cannot be opened again, and the save is refused naming it.
   */
  saveState(): WasiState {
    const fds: SavedFd[] = [];
    // Where each share's directory is: its preopen's, or (the program
    // closed that) the configured path's.
    const roots = this.config.shares.map((sh) => {
      const f = this.fds.find(
        (x) => x?.kind === "dir" && x.preopen !== undefined && x.share === sh,
      );
      return f?.kind === "dir" ? readlinkSync(`/proc/self/fd/${f.fd}`) : realpathSync(sh.path);
    });
    const where = (n: number, fd: number, share: ShareSpec): { share: number; path: string } => {
      const i = this.config.shares.indexOf(share);
      const p = readlinkSync(`/proc/self/fd/${fd}`);
      if (fstatSync(fd).nlink === 0)
        throw new Error(`descriptor ${n} (${p}) was removed from share ${share.guestPath}`);
      const root = roots[i]!;
      if (p !== root && !p.startsWith(`${root === "/" ? "" : root}/`))
        throw new Error(
          `descriptor ${n} (${p}) is no longer inside share ${share.guestPath}: it was removed or moved away`,
        );
      return { share: i, path: p === root ? "" : p.slice(root === "/" ? 1 : root.length + 1) };
    };
    this.fds.forEach((f, n) => {
      if (!f) return;
      switch (f.kind) {
        case "serial":
          fds.push({ n, kind: "serial", port: f.n, flags: f.flags });
          break;
        case "dir":
          fds.push({ n, kind: "dir", ...where(n, f.fd, f.share), preopen: f.preopen });
          break;
        case "file": {
          const share = this.config.shares.find((sh) => sh === this.fileShare.get(f));
          if (!share) throw new Error(`descriptor ${n}: its share is not known`);
          fds.push({
            n,
            kind: "file",
            ...where(n, f.fd, share),
            readonly: f.readonly,
            flags: f.flags,
            pos: f.pos,
          });
          break;
        }
        case "devdir":
          fds.push({ n, kind: "devdir", preopen: f.preopen });
          break;
        case "disk":
          fds.push({ n, kind: "disk", disk: f.disk.name, pos: f.pos, readonly: f.readonly });
          break;
      }
    });
    return { fds, serialIn: Buffer.concat(this.serialIn).toString("base64") };
  }

  /**
   * Opens a saved device model's descriptors again, each at its number,
   * through the same lookup a program's path_open takes (nothing leaves its
   * share). Throws naming the descriptor that cannot be opened; what was
   * opened is closed again by close().
   */
  restoreState(state: WasiState): void {
    const roots = this.fds.filter((f) => f?.kind === "dir") as Array<Extract<Fd, { kind: "dir" }>>;
    const keep = new Map<number, Fd>();
    for (const f of state.fds) {
      if (!Number.isInteger(f.n) || f.n < 0 || f.n >= MAX_FDS || keep.has(f.n))
        throw new Error(`descriptor ${f.n}: not a descriptor number`);
      switch (f.kind) {
        case "serial":
          keep.set(f.n, { kind: "serial", n: f.port, flags: f.flags });
          break;
        case "devdir":
          if (this.config.disks.length === 0) throw new Error(`descriptor ${f.n}: no disks`);
          keep.set(f.n, { kind: "devdir", preopen: f.preopen });
          break;
        case "disk": {
          const disk = this.config.disks.find((d) => d.name === f.disk);
          if (!disk) throw new Error(`descriptor ${f.n}: no disk ${f.disk}`);
          if (!f.readonly && disk.storage.readonly)
            throw new Error(`descriptor ${f.n}: disk ${f.disk} is read-only now`);
          keep.set(f.n, { kind: "disk", disk, pos: f.pos, readonly: f.readonly });
          break;
        }
        case "dir":
        case "file": {
          const share = this.config.shares[f.share];
          const root = roots.find((r) => r.share === share && r.preopen !== undefined);
          if (!share || !root) throw new Error(`descriptor ${f.n}: no share ${f.share}`);
          if (f.kind === "dir" && f.path === "" && f.preopen !== undefined) {
            if ([...keep.values()].includes(root))
              throw new Error(`descriptor ${f.n}: share ${f.share}'s preopen twice`);
            keep.set(f.n, root);
            break;
          }
          let hostFd: number;
          try {
            const r = resolvePath(root.fd, f.path, false, LOOKUP_ERRNOS, hostErrno);
            try {
              const flags =
                C.O_NOFOLLOW |
                C.O_NONBLOCK |
                (f.kind === "dir"
                  ? C.O_RDONLY | C.O_DIRECTORY
                  : f.readonly || share.readonly
                    ? C.O_RDONLY
                    : C.O_RDWR);
              hostFd = openSync(at(r.dirFd, r.name), flags);
            } finally {
              release(r);
            }
          } catch (e) {
            throw new Error(
              `descriptor ${f.n}: cannot open ${share.guestPath}/${f.path} again: ${(e as Error).message}`,
              { cause: e },
            );
          }
          if (f.kind === "dir") keep.set(f.n, { kind: "dir", fd: hostFd, share });
          else {
            if (!fstatSync(hostFd).isFile()) {
              tryClose(hostFd);
              throw new Error(`descriptor ${f.n}: ${share.guestPath}/${f.path} is not a file now`);
            }
            const file = new FileFd(hostFd, f.readonly || share.readonly, f.flags, this.fast);
            file.pos = f.pos;
            this.fileShare.set(file, share);
            keep.set(f.n, file);
          }
          break;
        }
        default:
          throw new Error(`a saved descriptor of an unknown kind`);
      }
    }
    // The preopens no saved descriptor kept are closed (the program had closed them).
    for (const f of this.fds)
      if (f?.kind === "dir" && ![...keep.values()].includes(f)) tryClose(f.fd);
    this.fds.length = 0;
    for (const [n, f] of keep) {
      this.fds[n] = f;
      if (f instanceof FileFd) f.place(n);
    }
    const typed = Buffer.from(state.serialIn, "base64");
    if (typed.length > 0) this.input(typed);
  }

  /** The share each open file came from (a file's descriptor does not say). */
  private readonly fileShare = new WeakMap<FileFd, ShareSpec>();

  /** Serial input typed at the console. */
  input(bytes: Uint8Array): void {
    if (this.serialInBytes + bytes.length > MAX_SERIAL_INPUT) return;
    this.serialIn.push(bytes);
    this.serialInBytes += bytes.length;
  }

  /** Closes every host descriptor (the domain is gone). */
  close(): void {
    for (const f of this.fds) if (f instanceof FileFd) f.place(undefined);
    for (const f of this.fds) if (f && (f.kind === "dir" || f.kind === "file")) tryClose(f.fd);
    this.fds.length = 0;
  }

  // --- guest memory ------------------------------------------------------------

  /**
   * Checks [ptr, ptr+len) against the program's memory as it is now, and
   * refreshes the views when the memory grew: take the address first, then
   * use this.u8 / this.dv, never the other way round in one expression.
   */
  private chk(ptr: number, len: number): number {
    ptr >>>= 0;
    if (ptr + len > this.u8.length) {
      this.u8 = new Uint8Array(this.memory.buffer);
      this.dv = new DataView(this.memory.buffer);
    }
    if (len < 0 || ptr + len > this.u8.length) throw new Fault();
    return ptr;
  }
  private u32(p: number): number {
    const a = this.chk(p, 4);
    return this.dv.getUint32(a, true);
  }
  private setU32(p: number, v: number): void {
    const a = this.chk(p, 4);
    this.dv.setUint32(a, v >>> 0, true);
  }
  private setU64(p: number, v: bigint | number): void {
    const a = this.chk(p, 8);
    this.dv.setBigUint64(a, BigInt.asUintN(64, BigInt(v)), true);
  }
  private string(ptr: number, len: number): string {
    if (len > 4096) throw new LookupError(W.WASI_ENAMETOOLONG, "path too long");
    const p = this.chk(ptr, len);
    try {
      return dec.decode(this.u8.slice(p, p + len));
    } catch {
      throw new LookupError(W.WASI_EILSEQ, "path is not UTF-8");
    }
  }
  /** The iovecs at `iovs` as views of guest memory (checked), at most MAX_IO_BYTES in all. */
  private iovecs(iovs: number, n: number): Uint8Array[] {
    if (n > MAX_IOVS) throw new LookupError(W.WASI_EINVAL, "too many iovecs");
    const base = this.chk(iovs, n * 8);
    const out: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < n; i++) {
      const buf = this.dv.getUint32(base + i * 8, true);
      let len = this.dv.getUint32(base + i * 8 + 4, true);
      len = Math.min(len, MAX_IO_BYTES - total);
      const p = this.chk(buf, len);
      out.push(this.u8.subarray(p, p + len));
      total += len;
    }
    return out;
  }

  // --- dispatch ---------------------------------------------------------------

  /** Runs WASI function `name` with the ioreq's argument slots. */
  call(name: string, a: IoreqArgs): Answer {
    if (this.exited) return W.WASI_ENOSYS;
    try {
      return this.dispatch(name, a);
    } catch (e) {
      if (e instanceof Fault) return W.WASI_EFAULT;
      return hostErrno(e);
    }
  }

  private dispatch(name: string, args: IoreqArgs): Answer {
    // Arguments as the ioreq's 64-bit slots: low words for the i32 ones,
    // a BigInt made only for the i64 ones.
    const n = (i: number): number => args.lo[i]!;
    // A signed 64-bit slot as a number (exact to 2^53; callers check they are safe).
    const s = (i: number): number => {
      const h = args.hi[i]!;
      const l = args.lo[i]!;
      return h >= 2 ** 31 ? -((~h >>> 0) * 2 ** 32 + (~l >>> 0) + 1) : h * 2 ** 32 + l;
    };
    const a = (i: number): bigint => (BigInt(args.hi[i]!) << 32n) | BigInt(args.lo[i]!);
    switch (name) {
      case "args_get":
        return this.strings(this.args, n(0), n(1));
      case "args_sizes_get":
        return this.sizes(this.args, n(0), n(1));
      case "environ_get":
        return this.strings(this.env, n(0), n(1));
      case "environ_sizes_get":
        return this.sizes(this.env, n(0), n(1));
      case "fd_write":
        return this.fdWrite(n(0), n(1), n(2), n(3), undefined);
      case "fd_pwrite":
        return this.fdWrite(n(0), n(1), n(2), n(4), a(3));
      case "fd_read":
        return this.fdRead(n(0), n(1), n(2), n(3), undefined);
      case "fd_pread":
        return this.fdRead(n(0), n(1), n(2), n(4), a(3));
      case "fd_seek":
        return this.fdSeek(n(0), s(1), n(2), n(3));
      case "fd_tell":
        return this.fdSeek(n(0), 0, W.WASI_WHENCE_CUR, n(1));
      case "fd_close":
        return this.fdClose(n(0));
      case "fd_fdstat_get":
        return this.fdFdstatGet(n(0), n(1));
      case "fd_fdstat_set_flags":
        return this.fdSetFlags(n(0), n(1));
      case "fd_fdstat_set_rights":
        return this.fd(n(0)) ? 0 : W.WASI_EBADF;
      case "fd_filestat_get":
        return this.fdFilestatGet(n(0), n(1));
      case "fd_filestat_set_size":
        return this.fdSetSize(n(0), a(1));
      case "fd_filestat_set_times":
        return this.fdSetTimes(n(0), a(1), a(2), n(3));
      case "fd_prestat_get":
        return this.prestatGet(n(0), n(1));
      case "fd_prestat_dir_name":
        return this.prestatName(n(0), n(1), n(2));
      case "fd_readdir":
        return this.fdReaddir(n(0), n(1), n(2), a(3), n(4));
      case "fd_renumber":
        return this.fdRenumber(n(0), n(1));
      case "fd_sync":
      case "fd_datasync":
        return this.fdSync(n(0), name === "fd_datasync");
      case "fd_advise":
        return this.fd(n(0)) ? 0 : W.WASI_EBADF;
      case "fd_allocate":
        return this.fdAllocate(n(0), a(1), a(2));
      case "path_open":
        return this.pathOpen(n(0), n(1), n(2), n(3), n(4), a(5), n(7), n(8));
      case "path_filestat_get":
        return this.pathFilestatGet(n(0), n(1), n(2), n(3), n(4));
      case "path_filestat_set_times":
        return this.pathSetTimes(n(0), n(1), n(2), n(3), a(4), a(5), n(6));
      case "path_create_directory":
        return this.pathOp(n(0), n(1), n(2), false, (r) => mkdirSync(at(r.dirFd, r.name), 0o777));
      case "path_remove_directory":
        return this.pathOp(n(0), n(1), n(2), false, (r) => rmdirSync(at(r.dirFd, r.name)));
      case "path_unlink_file":
        return this.pathOp(n(0), n(1), n(2), false, (r) => {
          // unlink(2) of a directory is EISDIR on Linux; WASI says so too.
          if (lstatSync(at(r.dirFd, r.name)).isDirectory())
            throw Object.assign(new Error(), { code: "EISDIR" });
          unlinkSync(at(r.dirFd, r.name));
        });
      case "path_readlink":
        return this.pathReadlink(n(0), n(1), n(2), n(3), n(4), n(5));
      case "path_symlink":
        return this.pathSymlink(n(0), n(1), n(2), n(3), n(4));
      case "path_rename":
        return this.pathTwo(n(0), n(1), n(2), n(3), n(4), n(5), false, (x, y) =>
          renameSync(at(x.dirFd, x.name), at(y.dirFd, y.name)),
        );
      case "path_link":
        return this.pathTwo(
          n(0),
          n(2),
          n(3),
          n(4),
          n(5),
          n(6),
          (n(1) & W.WASI_LOOKUP_SYMLINK_FOLLOW) !== 0,
          (x, y) => linkSync(at(x.dirFd, x.name), at(y.dirFd, y.name)),
        );
      case "poll_oneoff":
        return this.pollOneoff(n(0), n(1), n(2), n(3));
      case "proc_exit":
        this.exited = true;
        this.host.exit(n(0));
        return 0;
      case "proc_raise":
        // Signals are not part of preview1's model any more: no handler can run.
        return W.WASI_ENOSYS;
      case "sock_accept":
      case "sock_recv":
      case "sock_send":
      case "sock_shutdown":
        // No socket is ever preopened for an HVM program on tsxen.
        return this.fd(n(0)) ? W.WASI_ENOTSOCK : W.WASI_EBADF;
      default:
        return W.WASI_ENOSYS;
    }
  }

  // --- args and environment -------------------------------------------------------

  private strings(list: Uint8Array[], ptrs: number, buf: number): number {
    const total = list.reduce((t, s) => t + s.length, 0);
    const p = this.chk(ptrs, list.length * 4);
    let b = this.chk(buf, total);
    list.forEach((s, i) => {
      this.dv.setUint32(p + i * 4, b, true);
      this.u8.set(s, b);
      b += s.length;
    });
    return 0;
  }
  private sizes(list: Uint8Array[], count: number, size: number): number {
    this.setU32(count, list.length);
    this.setU32(
      size,
      list.reduce((t, s) => t + s.length, 0),
    );
    return 0;
  }

  // --- descriptors ---------------------------------------------------------------

  private fd(n: number): Fd | undefined {
    return this.fds[n];
  }
  private alloc(f: Fd): number {
    let i = this.fds.indexOf(undefined);
    if (i < 0) i = this.fds.length;
    if (i >= MAX_FDS) return -1;
    this.fds[i] = f;
    if (f instanceof FileFd) f.place(i);
    return i;
  }

  private fdWrite(
    fdn: number,
    iovs: number,
    n: number,
    nwritten: number,
    at_: bigint | undefined,
  ): Answer {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    const bufs = this.iovecs(iovs, n);
    const total = bufs.reduce((t, b) => t + b.length, 0);
    this.chk(nwritten, 4);
    switch (f.kind) {
      case "serial": {
        if (f.n === 0) return W.WASI_EBADF;
        if (at_ !== undefined) return W.WASI_ESPIPE;
        const out = new Uint8Array(total);
        let o = 0;
        for (const b of bufs) {
          out.set(b, o);
          o += b.length;
        }
        const done = (): number => {
          this.setU32(nwritten, total);
          return 0;
        };
        if (total === 0 || this.host.serialOut(out)) return done();
        // The console is backed up: the write waits until it drains, as a
        // full UART holds the CPU's writes.
        return { deadline: Infinity, retry: () => (this.host.serialOut(out) ? done() : undefined) };
      }
      case "file": {
        if (f.readonly) return W.WASI_EBADF;
        let pos =
          at_ === undefined
            ? f.flags & W.WASI_FDFLAG_APPEND
              ? fstatSync(f.fd).size
              : f.pos
            : Number(at_);
        let written = 0;
        for (const b of bufs) {
          let off = 0;
          while (off < b.length) {
            const k = writeSync(f.fd, b, off, b.length - off, pos);
            off += k;
            pos += k;
            written += k;
          }
        }
        if (at_ === undefined) f.pos = pos;
        this.setU32(nwritten, written);
        return 0;
      }
      case "disk": {
        if (f.readonly) return W.WASI_EBADF;
        const pos = at_ === undefined ? f.pos : Number(at_);
        let w = 0;
        for (const b of bufs) w += this.diskIo(f.disk, pos + w, b, true);
        if (at_ === undefined) f.pos = pos + w;
        this.setU32(nwritten, w);
        return w < total && w === 0 && total > 0 ? W.WASI_ENOSPC : 0;
      }
      default:
        return W.WASI_EISDIR;
    }
  }

  private fdRead(
    fdn: number,
    iovs: number,
    n: number,
    nread: number,
    at_: bigint | undefined,
  ): Answer {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    const bufs = this.iovecs(iovs, n);
    this.chk(nread, 4);
    switch (f.kind) {
      case "serial": {
        if (f.n !== 0) return W.WASI_EBADF;
        if (at_ !== undefined) return W.WASI_ESPIPE;
        const attempt = (): number | undefined => {
          if (this.serialInBytes === 0) {
            if (f.flags & W.WASI_FDFLAG_NONBLOCK) return W.WASI_EAGAIN;
            return undefined;
          }
          // The views may be stale if memory grew while the read waited.
          const views = this.iovecs(iovs, n);
          let got = 0;
          for (const v of views) {
            let o = 0;
            while (o < v.length && this.serialIn.length > 0) {
              const head = this.serialIn[0]!;
              const k = Math.min(head.length, v.length - o);
              v.set(head.subarray(0, k), o);
              o += k;
              got += k;
              this.serialInBytes -= k;
              if (k === head.length) this.serialIn.shift();
              else this.serialIn[0] = head.subarray(k);
            }
          }
          this.setU32(nread, got);
          return 0;
        };
        const r = attempt();
        if (r !== undefined) return r;
        return { deadline: Infinity, retry: attempt };
      }
      case "file": {
        let pos = at_ === undefined ? f.pos : Number(at_);
        let got = 0;
        for (const b of bufs) {
          let off = 0;
          while (off < b.length) {
            const k = readSync(f.fd, b, off, b.length - off, pos);
            if (k === 0) break;
            off += k;
            pos += k;
            got += k;
          }
          if (off < b.length) break;
        }
        if (at_ === undefined) f.pos = pos;
        this.setU32(nread, got);
        return 0;
      }
      case "disk": {
        const pos = at_ === undefined ? f.pos : Number(at_);
        let got = 0;
        for (const b of bufs) {
          const k = this.diskIo(f.disk, pos + got, b, false);
          got += k;
          if (k < b.length) break;
        }
        if (at_ === undefined) f.pos = pos + got;
        this.setU32(nread, got);
        return 0;
      }
      default:
        return W.WASI_EISDIR;
    }
  }

  /** Moves `b` to or from the disk at byte `pos` (clipped at the disk's end); bytes moved. */
  private diskIo(disk: DiskDevice, pos: number, b: Uint8Array, write: boolean): number {
    const size = disk.storage.sectors * SECTOR;
    const len = Math.max(0, Math.min(b.length, size - pos));
    if (len === 0) return 0;
    const first = Math.floor(pos / SECTOR);
    const last = Math.floor((pos + len - 1) / SECTOR);
    const head = pos - first * SECTOR;
    const span = new Uint8Array((last - first + 1) * SECTOR);
    if (!write || head !== 0 || len % SECTOR !== 0) disk.storage.read(first, span);
    if (write) {
      span.set(b.subarray(0, len), head);
      disk.storage.write(first, span);
    } else {
      b.set(span.subarray(head, head + len));
    }
    return len;
  }

  private fdSeek(fdn: number, offset: number, whence: number, out: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    if (f.kind !== "file" && f.kind !== "disk")
      return f.kind === "serial" ? W.WASI_ESPIPE : W.WASI_EBADF;
    const end = f.kind === "file" ? fstatSync(f.fd).size : f.disk.storage.sectors * SECTOR;
    const base =
      whence === W.WASI_WHENCE_SET
        ? 0
        : whence === W.WASI_WHENCE_CUR
          ? f.pos
          : whence === W.WASI_WHENCE_END
            ? end
            : NaN;
    if (Number.isNaN(base)) return W.WASI_EINVAL;
    const pos = base + offset;
    if (pos < 0 || !Number.isSafeInteger(pos)) return W.WASI_EINVAL;
    this.setU64(out, pos);
    f.pos = pos;
    return 0;
  }

  private fdClose(fdn: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    // Withdrawn from the vCPU before the host descriptor can be reused.
    if (f instanceof FileFd) f.place(undefined);
    if (f.kind === "dir" || f.kind === "file") tryClose(f.fd);
    this.fds[fdn] = undefined;
    return 0;
  }

  private fdRenumber(from: number, to: number): number {
    const f = this.fd(from);
    if (!f || !this.fd(to)) return W.WASI_EBADF;
    if (from === to) return 0;
    this.fdClose(to);
    this.fds[to] = f;
    this.fds[from] = undefined;
    if (f instanceof FileFd) f.place(to);
    return 0;
  }

  private fdFdstatGet(fdn: number, out: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    const F = W.wasi_fdstat.fields;
    const p = this.chk(out, W.wasi_fdstat.size);
    this.u8.fill(0, p, p + W.wasi_fdstat.size);
    let type: number;
    let flags = 0;
    let rights = RIGHTS_ALL;
    switch (f.kind) {
      case "serial":
        type = W.WASI_FILETYPE_CHARACTER_DEVICE;
        flags = f.flags;
        break;
      case "dir":
      case "devdir":
        type = W.WASI_FILETYPE_DIRECTORY;
        break;
      case "file":
        type = W.WASI_FILETYPE_REGULAR_FILE;
        flags = f.flags;
        if (f.readonly) rights &= ~WRITE_RIGHTS;
        break;
      case "disk":
        type = W.WASI_FILETYPE_BLOCK_DEVICE;
        if (f.readonly) rights &= ~WRITE_RIGHTS;
        break;
    }
    this.dv.setUint8(p + F.fs_filetype.offset, type);
    this.dv.setUint16(p + F.fs_flags.offset, flags, true);
    this.dv.setBigUint64(p + F.fs_rights_base.offset, rights, true);
    this.dv.setBigUint64(p + F.fs_rights_inheriting.offset, RIGHTS_ALL, true);
    return 0;
  }

  private fdSetFlags(fdn: number, flags: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    if (f.kind === "file" || f.kind === "serial") {
      f.flags =
        flags &
        (W.WASI_FDFLAG_APPEND |
          W.WASI_FDFLAG_NONBLOCK |
          W.WASI_FDFLAG_SYNC |
          W.WASI_FDFLAG_DSYNC |
          W.WASI_FDFLAG_RSYNC);
      if (f instanceof FileFd) f.place(fdn);
      return 0;
    }
    return W.WASI_EBADF;
  }

  private writeFilestat(out: number, st: Stats | { size: number; type: number }): void {
    const F = W.wasi_filestat.fields;
    const p = this.chk(out, W.wasi_filestat.size);
    this.u8.fill(0, p, p + W.wasi_filestat.size);
    if ("type" in st) {
      this.dv.setUint8(p + F.filetype.offset, st.type);
      this.dv.setBigUint64(p + F.nlink.offset, 1n, true);
      this.dv.setBigUint64(p + F.size.offset, BigInt(st.size), true);
      return;
    }
    this.dv.setBigUint64(p + F.dev.offset, BigInt(st.dev), true);
    this.dv.setBigUint64(p + F.ino.offset, BigInt(st.ino), true);
    this.dv.setUint8(p + F.filetype.offset, filetypeOf(st));
    this.dv.setBigUint64(p + F.nlink.offset, BigInt(st.nlink), true);
    this.dv.setBigUint64(p + F.size.offset, BigInt(st.size), true);
    const ns = (ms: number): bigint => BigInt(Math.round(ms * 1e6));
    this.dv.setBigUint64(p + F.atim.offset, ns(st.atimeMs), true);
    this.dv.setBigUint64(p + F.mtim.offset, ns(st.mtimeMs), true);
    this.dv.setBigUint64(p + F.ctim.offset, ns(st.ctimeMs), true);
  }

  private fdFilestatGet(fdn: number, out: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    switch (f.kind) {
      case "serial":
        this.writeFilestat(out, { size: 0, type: W.WASI_FILETYPE_CHARACTER_DEVICE });
        return 0;
      case "devdir":
        this.writeFilestat(out, { size: 0, type: W.WASI_FILETYPE_DIRECTORY });
        return 0;
      case "disk":
        this.writeFilestat(out, {
          size: f.disk.storage.sectors * SECTOR,
          type: W.WASI_FILETYPE_BLOCK_DEVICE,
        });
        return 0;
      default:
        this.writeFilestat(out, fstatSync(f.fd));
        return 0;
    }
  }

  private fdSetSize(fdn: number, size: bigint): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    if (f.kind !== "file") return f.kind === "disk" ? W.WASI_EPERM : W.WASI_EBADF;
    if (f.readonly) return W.WASI_EBADF;
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) return W.WASI_EFBIG;
    ftruncateSync(f.fd, Number(size));
    return 0;
  }

  private fdAllocate(fdn: number, off: bigint, len: bigint): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    if (f.kind !== "file") return f.kind === "disk" ? 0 : W.WASI_EBADF;
    if (f.readonly) return W.WASI_EBADF;
    const end = off + len;
    if (end > BigInt(Number.MAX_SAFE_INTEGER)) return W.WASI_EFBIG;
    if (Number(end) > fstatSync(f.fd).size) ftruncateSync(f.fd, Number(end));
    return 0;
  }

  private times(
    st: { atimeMs: number; mtimeMs: number },
    atim: bigint,
    mtim: bigint,
    flags: number,
  ): [number, number] {
    const now = Date.now() / 1000;
    const sec = (ns: bigint): number => Number(ns) / 1e9;
    const a =
      flags & W.WASI_FSTFLAG_ATIM_NOW
        ? now
        : flags & W.WASI_FSTFLAG_ATIM
          ? sec(atim)
          : st.atimeMs / 1000;
    const m =
      flags & W.WASI_FSTFLAG_MTIM_NOW
        ? now
        : flags & W.WASI_FSTFLAG_MTIM
          ? sec(mtim)
          : st.mtimeMs / 1000;
    return [a, m];
  }

  private fdSetTimes(fdn: number, atim: bigint, mtim: bigint, flags: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    if (f.kind !== "file" && f.kind !== "dir") return W.WASI_EBADF;
    if (f.kind === "file" ? f.readonly : f.share.readonly) return W.WASI_EROFS;
    const [a, m] = this.times(fstatSync(f.fd), atim, mtim, flags);
    futimesSync(f.fd, a, m);
    return 0;
  }

  private prestatGet(fdn: number, out: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    const name = f.kind === "dir" || f.kind === "devdir" ? f.preopen : undefined;
    if (name === undefined) return W.WASI_EBADF;
    const F = W.wasi_prestat.fields;
    const p = this.chk(out, W.wasi_prestat.size);
    this.dv.setUint8(p + F.tag.offset, W.WASI_PREOPENTYPE_DIR);
    this.dv.setUint32(p + F.pr_name_len.offset, enc.encode(name).length, true);
    return 0;
  }

  private prestatName(fdn: number, buf: number, len: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    const name = f.kind === "dir" || f.kind === "devdir" ? f.preopen : undefined;
    if (name === undefined) return W.WASI_EBADF;
    const b = enc.encode(name);
    if (len < b.length) return W.WASI_ENAMETOOLONG;
    const at_ = this.chk(buf, b.length);
    this.u8.set(b, at_);
    return 0;
  }

  private fdReaddir(fdn: number, buf: number, len: number, cookie: bigint, used: number): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    let entries: DirEntry[];
    if (f.kind === "devdir") {
      entries = this.config.disks.map((d, i) => ({
        name: d.name,
        ino: BigInt(i + 1),
        type: W.WASI_FILETYPE_BLOCK_DEVICE,
      }));
    } else if (f.kind === "dir") {
      // Listed afresh when a listing starts over; cookies index into it.
      if (cookie === 0n || !f.entries) {
        f.entries = readdirSync(at(f.fd, "."), { withFileTypes: true }).map((e) => ({
          name: e.name,
          ino: 0n,
          type: e.isFile()
            ? W.WASI_FILETYPE_REGULAR_FILE
            : e.isDirectory()
              ? W.WASI_FILETYPE_DIRECTORY
              : e.isSymbolicLink()
                ? W.WASI_FILETYPE_SYMBOLIC_LINK
                : W.WASI_FILETYPE_UNKNOWN,
        }));
        f.entries.unshift(
          { name: ".", ino: 0n, type: W.WASI_FILETYPE_DIRECTORY },
          { name: "..", ino: 0n, type: W.WASI_FILETYPE_DIRECTORY },
        );
      }
      entries = f.entries;
    } else {
      return W.WASI_ENOTDIR;
    }
    const p = this.chk(buf, len);
    this.chk(used, 4);
    const D = W.wasi_dirent;
    let o = 0;
    for (let i = Number(cookie); i < entries.length && o < len; i++) {
      const e = entries[i]!;
      const name = enc.encode(e.name);
      const rec = new Uint8Array(D.size + name.length);
      const dv = new DataView(rec.buffer);
      dv.setBigUint64(D.fields.d_next.offset, BigInt(i + 1), true);
      dv.setBigUint64(D.fields.d_ino.offset, e.ino, true);
      dv.setUint32(D.fields.d_namlen.offset, name.length, true);
      dv.setUint8(D.fields.d_type.offset, e.type);
      rec.set(name, D.size);
      // A record that does not fit is cut: the caller sees a full buffer and asks again.
      const k = Math.min(rec.length, len - o);
      this.u8.set(rec.subarray(0, k), p + o);
      o += k;
    }
    this.setU32(used, o);
    return 0;
  }

  private fdSync(fdn: number, data: boolean): number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    if (f.kind === "file") (data ? fdatasyncSync : fsyncSync)(f.fd);
    else if (f.kind === "disk") f.disk.storage.flush();
    else if (f.kind === "dir") fsyncSync(f.fd);
    else return W.WASI_EINVAL;
    return 0;
  }

  // --- paths ---------------------------------------------------------------------

  /** The share directory descriptor `fdn` and its share, or an errno. */
  private dirOf(fdn: number): { fd: number; share: ShareSpec } | number {
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    if (f.kind !== "dir") return f.kind === "devdir" ? W.WASI_ENOTSUP : W.WASI_ENOTDIR;
    return f;
  }

  private lookup(dirFd: number, pathPtr: number, pathLen: number, follow: boolean): Resolved {
    return resolvePath(dirFd, this.string(pathPtr, pathLen), follow, LOOKUP_ERRNOS, hostErrno);
  }

  private pathOp(
    fdn: number,
    ptr: number,
    len: number,
    follow: boolean,
    op: (r: Resolved) => void,
  ): number {
    const d = this.dirOf(fdn);
    if (typeof d === "number") return d;
    if (d.share.readonly) return W.WASI_EROFS;
    const r = this.lookup(d.fd, ptr, len, follow);
    try {
      if (r.name === ".") return W.WASI_EINVAL;
      op(r);
      return 0;
    } finally {
      release(r);
    }
  }

  private pathTwo(
    fd1: number,
    p1: number,
    l1: number,
    fd2: number,
    p2: number,
    l2: number,
    follow: boolean,
    op: (a: Resolved, b: Resolved) => void,
  ): number {
    const d1 = this.dirOf(fd1);
    if (typeof d1 === "number") return d1;
    const d2 = this.dirOf(fd2);
    if (typeof d2 === "number") return d2;
    if (d1.share.readonly || d2.share.readonly) return W.WASI_EROFS;
    // Two shares are two file systems to the program, as two 9p mounts are.
    if (d1.share !== d2.share) return W.WASI_EXDEV;
    const a = this.lookup(d1.fd, p1, l1, follow);
    try {
      const b = this.lookup(d2.fd, p2, l2, false);
      try {
        if (a.name === "." || b.name === ".") return W.WASI_EINVAL;
        op(a, b);
        return 0;
      } finally {
        release(b);
      }
    } finally {
      release(a);
    }
  }

  private pathOpen(
    fdn: number,
    lookupFlags: number,
    ptr: number,
    len: number,
    oflags: number,
    rights: bigint,
    fdflags: number,
    out: number,
  ): number {
    this.chk(out, 4);
    const f = this.fd(fdn);
    if (!f) return W.WASI_EBADF;
    const wantWrite =
      (rights & WANTS_WRITE) !== 0n ||
      (oflags & (W.WASI_O_CREAT | W.WASI_O_TRUNC)) !== 0 ||
      (fdflags & W.WASI_FDFLAG_APPEND) !== 0;
    if (f.kind === "devdir") {
      const name = this.string(ptr, len);
      if (name === "." || name === "") {
        const i = this.alloc({ kind: "devdir" });
        if (i < 0) return W.WASI_EMFILE;
        this.setU32(out, i);
        return 0;
      }
      const disk = this.config.disks.find((d) => d.name === name);
      if (!disk) return oflags & W.WASI_O_CREAT ? W.WASI_EPERM : W.WASI_ENOENT;
      if (oflags & W.WASI_O_DIRECTORY) return W.WASI_ENOTDIR;
      if (wantWrite && disk.storage.readonly) return W.WASI_EROFS;
      const i = this.alloc({
        kind: "disk",
        disk,
        pos: 0,
        readonly: !wantWrite || disk.storage.readonly,
      });
      if (i < 0) return W.WASI_EMFILE;
      this.setU32(out, i);
      return 0;
    }
    const d = this.dirOf(fdn);
    if (typeof d === "number") return d;
    if (wantWrite && d.share.readonly) return W.WASI_EROFS;
    const r = this.lookup(d.fd, ptr, len, (lookupFlags & W.WASI_LOOKUP_SYMLINK_FOLLOW) !== 0);
    let hostFd: number;
    try {
      let flags = C.O_NOFOLLOW | C.O_NONBLOCK;
      if (oflags & W.WASI_O_DIRECTORY) flags |= C.O_DIRECTORY | C.O_RDONLY;
      else flags |= wantWrite ? C.O_RDWR : C.O_RDONLY;
      if (oflags & W.WASI_O_CREAT) flags |= C.O_CREAT;
      if (oflags & W.WASI_O_EXCL) flags |= C.O_EXCL;
      if (oflags & W.WASI_O_TRUNC) flags |= C.O_TRUNC;
      try {
        hostFd = openSync(at(r.dirFd, r.name), flags, 0o666);
      } catch (e) {
        // Opening a directory read-write is EISDIR: open it as a directory if only reading was meant.
        if (
          (e as NodeJS.ErrnoException).code === "EISDIR" &&
          !(oflags & (W.WASI_O_CREAT | W.WASI_O_TRUNC)) &&
          (rights & (1n << BigInt(W.WASI_RIGHT_FD_WRITE))) === 0n
        ) {
          hostFd = openSync(at(r.dirFd, r.name), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
        } else throw e;
      }
    } finally {
      release(r);
    }
    let st: Stats;
    try {
      st = fstatSync(hostFd);
    } catch (e) {
      tryClose(hostFd);
      throw e;
    }
    let fdObj: Fd;
    if (st.isDirectory()) {
      fdObj = { kind: "dir", fd: hostFd, share: d.share };
    } else if (st.isFile()) {
      fdObj = new FileFd(hostFd, !wantWrite, fdflags & W.WASI_FDFLAG_APPEND, this.fast);
      this.fileShare.set(fdObj, d.share);
    } else {
      // A FIFO, socket or device node inside a share is not served: reading
      // one could hold the device model for as long as its other end likes.
      tryClose(hostFd);
      return W.WASI_ENOTSUP;
    }
    const i = this.alloc(fdObj);
    if (i < 0) {
      tryClose(hostFd);
      return W.WASI_EMFILE;
    }
    this.setU32(out, i);
    return 0;
  }

  private pathFilestatGet(
    fdn: number,
    flags: number,
    ptr: number,
    len: number,
    out: number,
  ): number {
    const f = this.fd(fdn);
    if (f?.kind === "devdir") {
      const name = this.string(ptr, len);
      const disk = this.config.disks.find((x) => x.name === name);
      if (name === "." || name === "")
        this.writeFilestat(out, { size: 0, type: W.WASI_FILETYPE_DIRECTORY });
      else if (disk)
        this.writeFilestat(out, {
          size: disk.storage.sectors * SECTOR,
          type: W.WASI_FILETYPE_BLOCK_DEVICE,
        });
      else return W.WASI_ENOENT;
      return 0;
    }
    const d = this.dirOf(fdn);
    if (typeof d === "number") return d;
    this.chk(out, W.wasi_filestat.size);
    const follow = (flags & W.WASI_LOOKUP_SYMLINK_FOLLOW) !== 0;
    const r = this.lookup(d.fd, ptr, len, follow);
    try {
      this.writeFilestat(out, (follow ? statSync : lstatSync)(at(r.dirFd, r.name)));
    } finally {
      release(r);
    }
    return 0;
  }

  private pathSetTimes(
    fdn: number,
    flags: number,
    ptr: number,
    len: number,
    atim: bigint,
    mtim: bigint,
    fst: number,
  ): number {
    const d = this.dirOf(fdn);
    if (typeof d === "number") return d;
    if (d.share.readonly) return W.WASI_EROFS;
    const follow = (flags & W.WASI_LOOKUP_SYMLINK_FOLLOW) !== 0;
    const r = this.lookup(d.fd, ptr, len, follow);
    try {
      const p = at(r.dirFd, r.name);
      const [a, m] = this.times(lstatSync(p), atim, mtim, fst);
      (follow ? utimesSync : lutimesSync)(p, a, m);
    } finally {
      release(r);
    }
    return 0;
  }

  private pathReadlink(
    fdn: number,
    ptr: number,
    len: number,
    buf: number,
    bufLen: number,
    used: number,
  ): number {
    const d = this.dirOf(fdn);
    if (typeof d === "number") return d;
    const r = this.lookup(d.fd, ptr, len, false);
    let target: Uint8Array;
    try {
      target = enc.encode(readlinkSync(at(r.dirFd, r.name)));
    } finally {
      release(r);
    }
    const k = Math.min(target.length, bufLen);
    const p = this.chk(buf, k);
    this.u8.set(target.subarray(0, k), p);
    this.setU32(used, k);
    return 0;
  }

  private pathSymlink(
    oldPtr: number,
    oldLen: number,
    fdn: number,
    ptr: number,
    len: number,
  ): number {
    const target = this.string(oldPtr, oldLen);
    // A link the share's own lookups would refuse is refused when made, so
    // that nothing in a share points a host user out of it either.
    if (target.startsWith("/")) return W.WASI_ENOTCAPABLE;
    return this.pathOp(fdn, ptr, len, false, (r) => symlinkSync(target, at(r.dirFd, r.name)));
  }

  // --- poll_oneoff ------------------------------------------------------------------

  private pollOneoff(inPtr: number, outPtr: number, n: number, nevents: number): Answer {
    if (n === 0) return W.WASI_EINVAL;
    if (n > MAX_SUBSCRIPTIONS) return W.WASI_EINVAL;
    const S = W.wasi_subscription;
    const E = W.wasi_event;
    this.chk(inPtr, n * S.size);
    this.chk(outPtr, n * E.size);
    this.chk(nevents, 4);
    const subs: Array<{ userdata: bigint; tag: number; fd: number; deadline: number }> = [];
    const nowMs = performance.now();
    const realNs = (): number => Date.now() * 1e6;
    for (let i = 0; i < n; i++) {
      const p = this.chk(inPtr + i * S.size, S.size);
      const userdata = this.dv.getBigUint64(p, true);
      const tag = this.dv.getUint8(p + S.fields.tag.offset);
      const u = p + S.fields.u.offset;
      if (tag === W.WASI_EVENTTYPE_CLOCK) {
        const C_ = W.wasi_subscription_clock.fields;
        const id = this.dv.getUint32(u + C_.id.offset, true);
        const timeout = Number(this.dv.getBigUint64(u + C_.timeout.offset, true));
        const abs =
          (this.dv.getUint16(u + C_.flags.offset, true) & W.WASI_SUBSCRIPTION_CLOCK_ABSTIME) !== 0;
        let deadline: number;
        if (id === W.WASI_CLOCK_REALTIME)
          deadline = abs ? nowMs + (timeout - realNs()) / 1e6 : nowMs + timeout / 1e6;
        else if (id === W.WASI_CLOCK_MONOTONIC)
          deadline = abs ? this.monotonicDeadline(timeout) : nowMs + timeout / 1e6;
        else return W.WASI_EINVAL;
        subs.push({ userdata, tag, fd: -1, deadline });
      } else if (tag === W.WASI_EVENTTYPE_FD_READ || tag === W.WASI_EVENTTYPE_FD_WRITE) {
        subs.push({ userdata, tag, fd: this.dv.getUint32(u, true), deadline: Infinity });
      } else {
        return W.WASI_EINVAL;
      }
    }
    const attempt = (): number | undefined => {
      const now = performance.now();
      const events: Array<{ userdata: bigint; error: number; type: number; nbytes: bigint }> = [];
      for (const s of subs) {
        if (s.tag === W.WASI_EVENTTYPE_CLOCK) {
          if (s.deadline <= now)
            events.push({ userdata: s.userdata, error: 0, type: s.tag, nbytes: 0n });
          continue;
        }
        const f = this.fd(s.fd);
        if (!f) {
          events.push({ userdata: s.userdata, error: W.WASI_EBADF, type: s.tag, nbytes: 0n });
        } else if (s.tag === W.WASI_EVENTTYPE_FD_READ && f.kind === "serial") {
          if (f.n === 0 && this.serialInBytes > 0)
            events.push({
              userdata: s.userdata,
              error: 0,
              type: s.tag,
              nbytes: BigInt(this.serialInBytes),
            });
        } else {
          // Files, disks and the serial port's output are always ready.
          events.push({ userdata: s.userdata, error: 0, type: s.tag, nbytes: 0n });
        }
      }
      if (events.length === 0) return undefined;
      const o = this.chk(outPtr, n * E.size);
      events.forEach((e, i) => {
        const p = o + i * E.size;
        this.u8.fill(0, p, p + E.size);
        this.dv.setBigUint64(p + E.fields.userdata.offset, e.userdata, true);
        this.dv.setUint16(p + E.fields.error.offset, e.error, true);
        this.dv.setUint8(p + E.fields.type.offset, e.type);
        this.dv.setBigUint64(p + E.fields.nbytes.offset, e.nbytes, true);
      });
      this.setU32(nevents, events.length);
      return 0;
    };
    const r = attempt();
    if (r !== undefined) return r;
    const deadline = Math.min(...subs.map((s) => s.deadline));
    return { deadline, retry: attempt };
  }

  /** The performance.now() at which the hypervisor's system time reaches `ns`. */
  monotonicDeadline: (ns: number) => number = (ns) => performance.now() + ns / 1e6;
}

function tryClose(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}
