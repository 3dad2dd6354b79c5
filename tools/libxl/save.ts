/**
 * xl's save file (Xen's `tools/xl/xl_saverestore.c` and libxl's stream,
 * xen-doc `specs/libxl-migration-stream`), around libxc's stream
 * (tools/libxc/xc_sr.ts). docs/save-format.md lays the file out:
 *
 * - xl's header: the 32-byte magic "Xen saved domain, xl format\n \0 \r",
 *   byte order 0x01020304, mandatory flags (JSON config, stream v2),
 *   optional flags, the optional data's length; the optional data: the
 *   config's length and the config, libxl's JSON (with tsxen's own config
 *   under "tsxen", from which the domain is made again), NUL-terminated;
 * - libxl's stream: "LibxlFmt", version 2, options; a LIBXC_CONTEXT
 *   record, libxc's stream, an END record.
 *
 * A file that is not this is refused naming what and where: the header
 * field, the record and its offset.
 */
import { closeSync, constants, fstatSync, openSync, read, writeSync, writevSync } from "node:fs";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { describeFsError, openHostFile } from "../../xen/common/host_file.js";
import { checkDomainConfig, type XlDomainConfig } from "./config.js";
import { parseDiskSpec } from "./disk.js";
import { parseNicSpec } from "./nic.js";
import {
  LIBXL_IDENT,
  LIBXL_REC_END,
  LIBXL_REC_LIBXC_CONTEXT,
  LIBXL_REC_EMULATOR_CONTEXT,
  EMULATOR_ID_TSXEN_WASI,
  DHDR_TYPE_WASM32_HVM,
  LIBXL_VERSION,
  StreamError,
  readXcStream,
  record,
  type StreamReader,
  type XcStream,
} from "../libxc/xc_sr.js";
import { MAX_EMULATOR_CONTEXT } from "../libxc/xc_hvm.js";

const readAsync = promisify(read);
/** Largest config a save file may carry. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export const SAVEFILE_MAGIC = Buffer.from("Xen saved domain, xl format\n \0 \r", "latin1");
export const SAVEFILE_BYTEORDER = 0x01020304;
export const XL_MANDATORY_FLAG_JSON = 1 << 0;
export const XL_MANDATORY_FLAG_STREAMv2 = 1 << 1;
/** Largest save file read back: a wasm32 guest's 4 GiB of pages fit under it. */
export const MAX_SAVE_FILE_BYTES = 2 ** 32 - 1;

/**
 * What goes before libxc's stream, in a file or a migration stream (xl's
 * save_domain_core_writeconfig, then libxl's stream header and its
 * LIBXC_CONTEXT record): xl's header, the optional data with the config,
 * libxl's header. `log` gets xl's "Saving to ..." line, naming `where`.
 */
export function streamPrologue(
  where: string,
  config: XlDomainConfig,
  libxlJson: Record<string, unknown>,
  log: (line: string) => void,
  frontends: Frontends = {},
  watches: SavedWatch[] = [],
): Buffer[] {
  const json = Buffer.from(
    `${JSON.stringify({ ...libxlJson, tsxen: config, tsxen_frontends: frontends, tsxen_watches: watches }, null, 4)}\0`,
  );
  const opt = Buffer.alloc(4 + json.length);
  opt.writeUInt32LE(json.length, 0);
  json.copy(opt, 4);
  const head = Buffer.alloc(48);
  SAVEFILE_MAGIC.copy(head, 0);
  head.writeUInt32LE(SAVEFILE_BYTEORDER, 32);
  head.writeUInt32LE(XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMv2, 36);
  head.writeUInt32LE(0, 40);
  head.writeUInt32LE(opt.length, 44);
  log(
    `Saving to ${where} new xl format (info 0x${(XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMv2).toString(16)}/0x0/${opt.length})`,
  );
  const libxl = Buffer.alloc(16);
  libxl.writeBigUInt64BE(LIBXL_IDENT, 0);
  libxl.writeUInt32BE(LIBXL_VERSION, 8);
  libxl.writeUInt32BE(0, 12);
  return [head, opt, libxl, record(LIBXL_REC_LIBXC_CONTEXT, new Uint8Array(0))];
}

/** libxl's END record: after libxc's stream. */
export const streamEpilogue = (): Buffer => record(LIBXL_REC_END, new Uint8Array(0));

/**
 * Writes a save file to `path` (created mode 0600, or truncated; a FIFO or
 * anything but a regular file is refused without blocking). Returns its size.
 */
export function saveFile(
  path: string,
  config: XlDomainConfig,
  libxlJson: Record<string, unknown>,
  libxc: Uint8Array[],
  log: (line: string) => void,
  frontends: Frontends = {},
  watches: SavedWatch[] = [],
  /** libxl's records after libxc's stream (an HVM domain's EMULATOR_CONTEXT). */
  after: Uint8Array[] = [],
): number {
  const parts = joinAdjacent([
    ...streamPrologue(path, config, libxlJson, log, frontends, watches),
    ...libxc,
    ...after,
    streamEpilogue(),
  ]);
  let fd: number;
  try {
    fd = openSync(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NONBLOCK,
      0o600,
    );
  } catch (e) {
    throw new Error(`libxl: cannot write save file ${path}: ${describeFsError(e)}`, { cause: e });
  }
  let size = 0;
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`libxl: save file ${path} is not a regular file`);
    // Up to IOV_MAX (1,024) pieces a system call: the pages go out as they
    // are in the domain's memory.
    for (let i = 0; i < parts.length; i += 1024) {
      const iov = parts.slice(i, i + 1024);
      const want = iov.reduce((n, p) => n + p.length, 0);
      let done = writevSync(fd, iov);
      // A short write (rare for a file): the rest piece by piece.
      for (const p of iov) {
        if (done >= p.length) {
          done -= p.length;
          continue;
        }
        let off = done;
        done = 0;
        while (off < p.length) off += writeSync(fd, p, off, p.length - off);
      }
      size += want;
    }
  } finally {
    closeSync(fd);
  }
  return size;
}

/**
 * `parts` with runs of views that follow one another in the same memory
 * made one view: a record's pages are a run of the domain's memory, so a
 * 64 MiB guest goes to writev as a few dozen pieces, not 16,000 pages.
 */
function joinAdjacent(parts: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const p of parts) {
    const last = out[out.length - 1];
    if (last && last.buffer === p.buffer && last.byteOffset + last.byteLength === p.byteOffset)
      out[out.length - 1] = new Uint8Array(
        p.buffer,
        last.byteOffset,
        last.byteLength + p.byteLength,
      );
    else out.push(p);
  }
  return out;
}

/**
 * The guest's side of each device, as it was at the save ("vbd/51712" →
 * its frontend nodes: rings, port, features, state), so that the restored
 * domain's backends attach to the same rings (docs/save-format.md).
 */
export type Frontends = Record<string, Record<string, string>>;

/**
 * The guest's xenstore watches at the save, for xenstored to hold again on
 * the restored domain's connection. A path under the domain's own home is
 * kept relative to it (`home`), and one under its devices' backend
 * directories (/local/domain/0/backend/<type>/<domid>/, where a frontend
 * watches its backend's state) relative to those (`backend`: "vif/0/state"),
 * so that both follow the new domid.
 */
export interface SavedWatch {
  path: string;
  home: boolean;
  backend?: boolean;
  token: string;
  relative: boolean;
  depth: number | null;
}

/** Most watches a domain holds (xenstored's default quota). */
const MAX_SAVED_WATCHES = 128;

/** What a save file holds; `reader` stays open for the restore to read the pages. */
export interface SavedDomain {
  config: XlDomainConfig;
  frontends: Frontends;
  watches: SavedWatch[];
  stream: XcStream;
  image: { sha256: Uint8Array; bytes: Uint8Array };
  /** An HVM domain's device model state (EMULATOR_CONTEXT's blob, JSON), and its offset. */
  emulator?: { blob: Buffer; at: number };
  reader: StreamReader;
  close(): void;
}

/** Positioned reads of an open file, off the main thread. */
function fileReader(fd: number, size: number, path: string): StreamReader {
  const readAt = async (into: Uint8Array, pos: number): Promise<void> => {
    let got = 0;
    while (got < into.length) {
      const { bytesRead } = await readAsync(fd, into, got, into.length - got, pos + got);
      if (bytesRead === 0)
        throw new Error(`libxl: save file ${path}: it ends at offset ${pos + got}`);
      got += bytesRead;
    }
  };
  return {
    size,
    read: async (pos, len) => {
      const b = Buffer.allocUnsafe(len);
      await readAt(b, pos);
      return b;
    },
    readInto: readAt,
  };
}

/**
 * Opens and checks save file `path` (opened without blocking, a regular
 * file of at most MAX_SAVE_FILE_BYTES): every header and record, but not
 * the page bytes, which the restore reads into the new domain. Throws
 * naming what is wrong and where; the file is closed then.
 */
export async function readSaveFile(
  path: string,
  log: (line: string) => void,
): Promise<SavedDomain> {
  const { fd, size } = openHostFile(path, { what: "save file", maxBytes: MAX_SAVE_FILE_BYTES });
  const reader = fileReader(fd, size, path);
  const close = (): void => closeSync(fd);
  try {
    return { ...(await checkSaveFile(path, reader, log)), reader, close };
  } catch (e) {
    close();
    throw e;
  }
}

async function checkSaveFile(
  path: string,
  r: StreamReader,
  log: (line: string) => void,
): Promise<Omit<SavedDomain, "reader" | "close">> {
  const fail = (what: string, off: number): never => {
    throw new Error(`libxl: save file ${path}: ${what} at offset ${off}`);
  };
  if (r.size < 48) fail("not an xl save file (magic)", 0);
  const optLen = checkXlHeader(await r.read(0, 48), fail);
  if (48 + optLen > r.size) fail(`optional data of ${optLen} bytes`, 44);
  log(`Loading new save file ${path} (new xl fmt info 0x3/0x0/${optLen})`);
  const { config, frontends, watches } = checkXlConfig(await r.read(48, optLen), fail);
  log(" Savefile contains xl domain config in JSON format");
  let o = 48 + optLen;
  if (o + 16 > r.size) fail("libxl's stream header is cut short", o);
  checkLibxlHeader(await r.read(o, 16), o, fail);
  o += 16;
  let stream: XcStream | undefined;
  let emulator: SavedDomain["emulator"];
  for (;;) {
    if (o + 8 > r.size) fail("libxl's stream ends before its END record", o);
    const rh = await r.read(o, 8);
    const type = rh.readUInt32LE(0);
    const len = rh.readUInt32LE(4);
    if (type === LIBXL_REC_END) {
      if (len !== 0) fail("libxl's END record has a body", o);
      o += 8;
      break;
    }
    if (type === LIBXL_REC_EMULATOR_CONTEXT) {
      if (!stream) fail("EMULATOR_CONTEXT before LIBXC_CONTEXT", o);
      if (emulator) fail("a second EMULATOR_CONTEXT", o);
      if (len < 8 || len > 8 + MAX_EMULATOR_CONTEXT) fail(`EMULATOR_CONTEXT of ${len} bytes`, o);
      const padded = len + ((8 - (len % 8)) % 8);
      if (o + 8 + padded > r.size) fail("EMULATOR_CONTEXT is cut short", o);
      const body = await r.read(o + 8, len);
      const id = body.readUInt32LE(0);
      if (id !== EMULATOR_ID_TSXEN_WASI)
        fail(`EMULATOR_CONTEXT of emulator 0x${id.toString(16)}, not tsxen's device model`, o + 8);
      if (body.readUInt32LE(4) !== 0)
        fail(`EMULATOR_CONTEXT of emulator index ${body.readUInt32LE(4)}`, o + 12);
      emulator = { blob: body.subarray(8), at: o + 16 };
      o += 8 + padded;
      continue;
    }
    if (type !== LIBXL_REC_LIBXC_CONTEXT)
      fail(`libxl record type 0x${type.toString(16)}, which this restore does not know`, o);
    if (len !== 0) fail("LIBXC_CONTEXT has a body", o);
    if (stream) fail("a second LIBXC_CONTEXT", o);
    try {
      stream = await readXcStream(r, o + 8, config.maxmem * 256);
    } catch (e) {
      if (e instanceof StreamError)
        throw new Error(`libxl: save file ${path}: ${e.message}`, { cause: e });
      throw e;
    }
    o = stream.end;
  }
  if (o !== r.size) fail(`${r.size - o} bytes after the end`, o);
  if (!stream) return fail("no LIBXC_CONTEXT record", 48 + optLen + 16);
  if (!stream.module) return fail("no WASM32_MODULE record", 48 + optLen + 16);
  const sha = createHash("sha256").update(stream.module.bytes).digest();
  if (!sha.equals(Buffer.from(stream.module.sha256)))
    fail("WASM32_MODULE's bytes do not have its sha256", 48 + optLen + 16);
  const hvm = stream.domainType === DHDR_TYPE_WASM32_HVM;
  if (hvm !== (config.type === "hvm"))
    fail(
      `a ${hvm ? "HVM" : "PV"} domain's stream for a config of type ${config.type}`,
      48 + optLen + 16,
    );
  if (hvm && !stream.hvmContext) fail("no WASM32_HVM_CONTEXT record", 48 + optLen + 16);
  if (hvm && !emulator) fail("no EMULATOR_CONTEXT record (the device model's state)", o);
  if (!hvm && emulator) fail("an EMULATOR_CONTEXT record for a PV domain", emulator.at - 16);
  log(
    `xc: info: Found wasm32 ${hvm ? "HVM" : "PV"} domain from Xen ${stream.xenMajor}.${stream.xenMinor}`,
  );
  return { config, frontends, watches, stream, image: stream.module, emulator };
}

type Fail = (what: string, off: number) => never;

/**
 * Checks xl's 48-byte header (at offset 0): magic, byte order, mandatory
 * flags (a JSON config and a v2 stream, nothing else). Returns the optional
 * data's length.
 */
export function checkXlHeader(head: Buffer, fail: Fail): number {
  if (!head.subarray(0, 32).equals(SAVEFILE_MAGIC)) fail("not an xl save file (magic)", 0);
  if (head.readUInt32LE(32) !== SAVEFILE_BYTEORDER) fail("saved with another byte order", 32);
  const mandatory = head.readUInt32LE(36);
  const known = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMv2;
  if (mandatory & ~known)
    fail(`unknown mandatory flags 0x${(mandatory & ~known).toString(16)}`, 36);
  if (!(mandatory & XL_MANDATORY_FLAG_STREAMv2))
    fail("a legacy (v1) stream, which tsxen does not read", 36);
  if (!(mandatory & XL_MANDATORY_FLAG_JSON)) fail("a config that is not JSON", 36);
  const optLen = head.readUInt32LE(44);
  if (optLen < 4 || optLen > MAX_CONFIG_BYTES) fail(`optional data of ${optLen} bytes`, 44);
  return optLen;
}

/** The domain's config and its devices' frontends from xl's optional data (at offset 48). */
export function checkXlConfig(
  opt: Buffer,
  fail: Fail,
): { config: XlDomainConfig; frontends: Frontends; watches: SavedWatch[] } {
  const cfgLen = opt.readUInt32LE(0);
  if (cfgLen + 4 > opt.length || cfgLen === 0) fail(`a config of ${cfgLen} bytes`, 48);
  const text = opt
    .subarray(4, 4 + cfgLen)
    .toString("utf8")
    .replace(/\0$/, "");
  let json: { tsxen?: unknown; tsxen_frontends?: unknown; tsxen_watches?: unknown };
  let config: XlDomainConfig;
  try {
    json = JSON.parse(text) as typeof json;
    config = checkDomainConfig(json.tsxen);
  } catch (e) {
    // One line: JSON.parse quotes the text around the fault.
    return fail(`its config: ${(e as Error).message.replace(/\s+/g, " ")}`, 52);
  }
  return {
    config,
    frontends: checkFrontends(json.tsxen_frontends, config, fail),
    watches: checkWatches(json.tsxen_watches, fail),
  };
}

/** The saved watches: at most the quota's worth, each what XS_WATCH would take. */
function checkWatches(v: unknown, fail: Fail): SavedWatch[] {
  const bad = (why: string): never => fail(`its xenstore watches: ${why}`, 52);
  if (v === undefined) return [];
  if (!Array.isArray(v)) return bad("not a list");
  if (v.length > MAX_SAVED_WATCHES) bad(`${v.length}, more than ${MAX_SAVED_WATCHES}`);
  return v.map((w: unknown, i) => {
    const x = w as Partial<SavedWatch> | null;
    // Relative to the home: not absolute; to the backends': "<type>/<devid>/...";
    // otherwise absolute, or special.
    const placed = (y: Partial<SavedWatch>): boolean =>
      typeof y.path === "string" &&
      (y.home === true
        ? !y.path.startsWith("/") && y.backend !== true
        : y.backend === true
          ? /^[a-z]+\/\d+(\/|$)/.test(y.path)
          : y.path.startsWith("/") || y.path.startsWith("@"));
    if (
      typeof x !== "object" ||
      x === null ||
      typeof x.path !== "string" ||
      x.path.length > 3072 ||
      !placed(x) ||
      (x.backend !== undefined && typeof x.backend !== "boolean") ||
      typeof x.token !== "string" ||
      x.token.length > 3072 ||
      typeof x.relative !== "boolean" ||
      typeof x.home !== "boolean" ||
      !(x.depth === null || (Number.isInteger(x.depth) && (x.depth as number) >= 0))
    )
      bad(`watch ${i} is not a watch`);
    return x as SavedWatch;
  });
}

/**
 * The saved frontends, checked against the config: one per disk and vif,
 * none else, each a small map of node paths to strings (what a guest may
 * write in its own device directory anyway).
 */
function checkFrontends(v: unknown, config: XlDomainConfig, fail: Fail): Frontends {
  const bad = (why: string): never => fail(`its devices' frontends: ${why}`, 52);
  if (v === undefined) v = {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) return bad("not an object");
  const want = new Set([
    ...config.disks.map((d) => `vbd/${parseDiskSpec(d).devid}`),
    ...config.vifs.map((spec, i) => `vif/${parseNicSpec(spec).devid ?? i}`),
    ...(config.channels ?? []).map((_, i) => `console/${i + 1}`),
  ]);
  const out: Frontends = {};
  for (const [dev, nodes] of Object.entries(v)) {
    if (!want.has(dev)) bad(`'${dev.slice(0, 32)}' is not one of the domain's devices`);
    if (typeof nodes !== "object" || nodes === null || Array.isArray(nodes))
      bad(`${dev} is not an object`);
    const entries = Object.entries(nodes as object);
    if (entries.length > 64) bad(`${dev} has ${entries.length} nodes`);
    for (const [k, val] of entries)
      if (
        !/^[A-Za-z0-9_-]{1,64}(\/[A-Za-z0-9_-]{1,64})?$/.test(k) ||
        typeof val !== "string" ||
        val.length > 4096
      )
        bad(`${dev}'s node '${k.slice(0, 32)}'`);
    out[dev] = nodes as Record<string, string>;
  }
  // All of them, or none (a guest that suspended itself connects its
  // devices again, as on Xen: restoreFrom checks that it did).
  if (Object.keys(out).length > 0) for (const dev of want) if (!out[dev]) bad(`none for ${dev}`);
  return out;
}

/** libxl's stream header ("LibxlFmt", version 2, little-endian) at offset `o`. */
export function checkLibxlHeader(lh: Buffer, o: number, fail: Fail): void {
  if (lh.readBigUInt64BE(0) !== LIBXL_IDENT) fail("not a libxl stream (ident)", o);
  const v = lh.readUInt32BE(8);
  if (v !== LIBXL_VERSION) fail(`libxl stream version ${v}, not ${LIBXL_VERSION}`, o + 8);
  if (lh.readUInt32BE(12) & 1) fail("a big-endian libxl stream", o + 12);
}
