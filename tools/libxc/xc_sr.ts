/**
 * libxc's save and restore stream (Xen's migration stream v2, xen-doc
 * `specs/libxc-migration-stream`; `tools/libs/guest/xg_sr_*.c`) for wasm32
 * PV domains, and the libxl stream around it (`specs/libxl-migration-stream`).
 * docs/save-format.md describes the whole file, with the domain type and
 * the two records that wasm32 adds.
 *
 * The image header (big-endian): marker 0xFFFFFFFFFFFFFFFF, id "XENF",
 * version 3, options (bit 0: endianness; 0, little). The domain header:
 * type (DHDR_TYPE_WASM32_PV), page_shift 12, Xen's major and minor. Then
 * records, each a type, a body length and the body padded to 8 bytes:
 * WASM32_MODULE (the module's sha256, its length and bytes), PAGE_DATA
 * (up to 1,024 pfns with Xen's type bits, then the pages), WASM32_CONTEXT
 * (the domain's context, xen/common/domain_context.ts), END.
 */
import { createHash } from "node:crypto";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";

export const XC_SR_ID = 0x58454e46;
export const XC_SR_VERSION = 3;
/** Domain types: Xen's x86 PV and HVM, and tsxen's wasm32 PV (a value the spec leaves free). */
export const DHDR_TYPE_X86_PV = 1;
export const DHDR_TYPE_X86_HVM = 2;
export const DHDR_TYPE_WASM32_PV = 0x0103;
/** tsxen's wasm32 HVM: a WASI program's memory, its unwound vCPU (WASM32_HVM_CONTEXT). */
export const DHDR_TYPE_WASM32_HVM = 0x0104;

export const REC_TYPE_END = 0;
export const REC_TYPE_PAGE_DATA = 1;
/** Every page follows again, for the receiver to compare with what it has (xl migrate --debug). */
export const REC_TYPE_VERIFY = 0x0d;
/** tsxen's mandatory records (in the range the spec keeps for new ones). */
export const REC_TYPE_WASM32_MODULE = 0x1000;
export const REC_TYPE_WASM32_CONTEXT = 0x1001;
export const REC_TYPE_WASM32_HVM_CONTEXT = 0x1002;

/** The libxl stream: "LibxlFmt", version 2; its records. */
export const LIBXL_IDENT = 0x4c6962786c466d74n;
export const LIBXL_VERSION = 2;
export const LIBXL_REC_END = 0;
export const LIBXL_REC_LIBXC_CONTEXT = 1;
export const LIBXL_REC_EMULATOR_CONTEXT = 3;
/**
 * EMULATOR_CONTEXT's emulator_id for tsxen's WASI device model (the spec
 * names 1, QEMU traditional, and 2, QEMU upstream, and keeps the rest for
 * future emulators): its blob is the device model's state as JSON.
 */
export const EMULATOR_ID_TSXEN_WASI = 3;

/** PAGE_DATA's pfn type bits (XEN_DOMCTL_PFINFO_*, shifted by 32): a normal page, and none. */
export const PFINFO_NOTAB = 0n;
export const PFINFO_XTAB = 0xfn << 60n;
/** A live save's defaults, Xen's: five rounds, stop when fewer than 50 pages are dirty. */
export const LIVE_MAX_ITERS = 5;
export const LIVE_MIN_REMAINING = 50;

/** Pages per PAGE_DATA record, as libxc batches them. */
export const MAX_BATCH = 1024;

/** A record's bytes: header, body, padding to 8. */
export function record(type: number, body: Uint8Array): Buffer {
  const pad = (8 - (body.length % 8)) % 8;
  const out = Buffer.alloc(8 + body.length + pad);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(body.length, 4);
  out.set(body, 8);
  return out;
}

/** The image and domain headers. */
export function streamHeaders(
  xenMajor: number,
  xenMinor: number,
  domainType: number = DHDR_TYPE_WASM32_PV,
): Buffer {
  const h = Buffer.alloc(24 + 16);
  h.writeBigUInt64BE(0xffffffffffffffffn, 0);
  h.writeUInt32BE(XC_SR_ID, 8);
  h.writeUInt32BE(XC_SR_VERSION, 12);
  h.writeUInt16BE(0, 16);
  h.writeUInt32LE(domainType, 24);
  h.writeUInt16LE(12, 28);
  h.writeUInt32LE(xenMajor, 32);
  h.writeUInt32LE(xenMinor, 36);
  return h;
}

/**
 * A PAGE_DATA record for `pfns`, each page's bytes from `page` (undefined:
 * not present, XTAB), as pieces to write one after another: the header and
 * pfn list, then the pages themselves (views, not copies).
 */
export function pageDataRecord(
  pfns: readonly number[],
  page: (pfn: number) => Uint8Array | undefined,
  /** All the pages as one view, in pfn order (a mapping of consecutive pfns): the body's data. */
  region?: Uint8Array,
): Uint8Array[] {
  const pages = region ? undefined : pfns.map(page);
  const present = pages ? (pages.filter((p) => p !== undefined) as Uint8Array[]) : [region!];
  const count = pages ? present.length : pfns.length;
  const head = Buffer.alloc(16 + 8 * pfns.length);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  dv.setUint32(0, REC_TYPE_PAGE_DATA, true);
  dv.setUint32(4, 8 + 8 * pfns.length + PAGE_SIZE * count, true);
  dv.setUint32(8, pfns.length, true);
  // Each entry a u64: the pfn, the type in bits 60–63 (XTAB: not populated).
  const xtabHigh = Number(PFINFO_XTAB >> 32n);
  for (let i = 0; i < pfns.length; i++) {
    const pfn = pfns[i]!;
    const type = !pages || pages[i] ? 0 : xtabHigh;
    dv.setUint32(16 + 8 * i, pfn % 2 ** 32, true);
    dv.setUint32(20 + 8 * i, (Math.floor(pfn / 2 ** 32) | type) >>> 0, true);
  }
  // The body is a multiple of 8 bytes: no padding.
  return [head, ...present];
}

/** The WASM32_MODULE record of a module: its sha256, its length, its bytes. */
export function moduleRecord(image: { sha256: Uint8Array; bytes: Uint8Array }): Uint8Array {
  const mod = Buffer.alloc(40 + image.bytes.length);
  mod.set(image.sha256, 0);
  mod.writeBigUInt64LE(BigInt(image.bytes.length), 32);
  mod.set(image.bytes, 40);
  return record(REC_TYPE_WASM32_MODULE, mod);
}

/** Reads a WASM32_MODULE record's body (checking the length and the hash). */
export function parseModuleRecord(
  body: Buffer,
  at: number,
): { sha256: Uint8Array; bytes: Uint8Array } {
  if (body.length < 40)
    throw new StreamError(`libxc stream: WASM32_MODULE of ${body.length} bytes at offset ${at}`);
  const size = Number(body.readBigUInt64LE(32));
  if (40 + size !== body.length)
    throw new StreamError(
      `libxc stream: WASM32_MODULE says ${size} bytes, has ${body.length - 40} at offset ${at}`,
    );
  const bytes = Uint8Array.from(body.subarray(40));
  const sha256 = Uint8Array.from(body.subarray(0, 32));
  if (!createHash("sha256").update(bytes).digest().equals(Buffer.from(sha256)))
    throw new StreamError(
      `libxc stream: WASM32_MODULE's bytes do not have its sha256 at offset ${at}`,
    );
  return { sha256, bytes };
}

/** A stream that cannot be read: the message names the record and the offset. */
export class StreamError extends Error {}

/** Positioned reads of a stream's file (the page bytes are read where they go). */
export interface StreamReader {
  readonly size: number;
  /** `len` bytes at `pos`; throws when the file has fewer. */
  read(pos: number, len: number): Promise<Buffer>;
  /** Fills `into` from `pos`. */
  readInto(into: Uint8Array, pos: number): Promise<void>;
}

/** What a libxc stream of a wasm32 domain holds. */
export interface XcStream {
  xenMajor: number;
  xenMinor: number;
  /** DHDR_TYPE_WASM32_PV or DHDR_TYPE_WASM32_HVM. */
  domainType: number;
  module: { sha256: Uint8Array; bytes: Uint8Array } | undefined;
  /**
   * The saved pages as runs of consecutive pfns whose bytes follow one
   * another in the file (read by the restore, each straight into the
   * domain), in stream order; no pfn is in two.
   */
  runs: PageRun[];
  /** Pages in the runs. */
  pageCount: number;
  context: Uint8Array | undefined;
  /** An HVM domain's vCPU and clock (WASM32_HVM_CONTEXT), and where its body is. */
  hvmContext: Uint8Array | undefined;
  hvmContextAt?: number;
  /** Where the stream ended (after END). */
  end: number;
}

/** Pages `pfn` to `pfn + count - 1`, their bytes at `at` in the file one after another. */
export interface PageRun {
  pfn: number;
  count: number;
  at: number;
}

/** Names of the records, for messages. */
const REC_NAMES: Record<number, string> = {
  [REC_TYPE_END]: "END",
  [REC_TYPE_PAGE_DATA]: "PAGE_DATA",
  [REC_TYPE_WASM32_MODULE]: "WASM32_MODULE",
  [REC_TYPE_WASM32_CONTEXT]: "WASM32_CONTEXT",
  [REC_TYPE_WASM32_HVM_CONTEXT]: "WASM32_HVM_CONTEXT",
  [REC_TYPE_VERIFY]: "VERIFY",
};

/**
 * Checks the image and domain headers (the 40 bytes at offset `at`);
 * returns the Xen version that wrote them. Throws StreamError.
 */
export function checkStreamHeaders(
  h: Buffer,
  at: number,
): { xenMajor: number; xenMinor: number; domainType: number } {
  const fail = (what: string, off: number): never => {
    throw new StreamError(`libxc stream: ${what} at offset ${off}`);
  };
  if (h.readBigUInt64BE(0) !== 0xffffffffffffffffn)
    fail("not a migration stream v2 image (marker; a legacy image?)", at);
  if (h.readUInt32BE(8) !== XC_SR_ID) fail("the image header's id is not XENF", at + 8);
  const version = h.readUInt32BE(12);
  if (version !== XC_SR_VERSION) fail(`image version ${version}, not ${XC_SR_VERSION}`, at + 12);
  if (h.readUInt16BE(16) & 1) fail("a big-endian image", at + 16);
  const type = h.readUInt32LE(24);
  if (type !== DHDR_TYPE_WASM32_PV && type !== DHDR_TYPE_WASM32_HVM)
    fail(
      `domain type 0x${type.toString(16)}${type === DHDR_TYPE_X86_PV ? " (x86 PV)" : type === DHDR_TYPE_X86_HVM ? " (x86 HVM)" : ""}, not wasm32 PV or HVM`,
      at + 24,
    );
  const shift = h.readUInt16LE(28);
  if (shift !== 12) fail(`page_shift ${shift}, not 12`, at + 28);
  return { xenMajor: h.readUInt32LE(32), xenMinor: h.readUInt32LE(36), domainType: type };
}

/**
 * The pfns of a PAGE_DATA record whose body (`len` bytes, at `bodyAt`)
 * starts with `head` (count and reserved) and `list`: each pfn, and whether
 * its page follows (XTAB: none). Throws StreamError naming the record.
 */
export function pageDataPfns(
  list: Buffer,
  count: number,
  len: number,
  recAt: number,
  maxPfn: number,
): Array<{ pfn: number; present: boolean }> {
  const fail = (what: string, off: number): never => {
    throw new StreamError(`libxc stream: ${what} at offset ${off}`);
  };
  if (count === 0 || count > MAX_BATCH) fail(`PAGE_DATA with ${count} pfns`, recAt);
  if (8 + 8 * count > len) fail(`PAGE_DATA's ${count} pfns do not fit its body`, recAt);
  const out: Array<{ pfn: number; present: boolean }> = [];
  let data = 8 + 8 * count;
  for (let i = 0; i < count; i++) {
    // A u64 as two u32s: the type in bits 60–63, the pfn in bits 0–51.
    const hi = list.readUInt32LE(8 * i + 4);
    const t = hi >>> 28;
    const pfn = (hi & 0xfffff) * 2 ** 32 + list.readUInt32LE(8 * i);
    if (t === 0xf) {
      out.push({ pfn, present: false });
      continue;
    }
    const where = recAt + 16 + 8 * i;
    if (t !== 0) fail(`PAGE_DATA: pfn ${pfn} has page type ${t}`, where);
    if (pfn >= maxPfn) fail(`PAGE_DATA: pfn ${pfn} is past the domain's ${maxPfn}`, where);
    if (data + PAGE_SIZE > len) fail(`PAGE_DATA: pfn ${pfn}'s page is missing`, recAt);
    out.push({ pfn, present: true });
    data += PAGE_SIZE;
  }
  if (data !== len) fail(`PAGE_DATA has ${len - data} bytes too many`, recAt);
  return out;
}

/** A stream read in order, from a pipe or a socket. */
export interface SequentialSource {
  /** The next `n` bytes; throws when the stream ends first, naming the offset. */
  read(n: number): Promise<Buffer>;
  /** Bytes read so far: the offset of the next one. */
  readonly offset: number;
  /** Bytes that have come and are not read yet, where the source knows (a read of more waits). */
  readonly buffered?: number;
}

/** One record of a sequential stream: its type, body and offset. */
export interface StreamRecord {
  type: number;
  name: string;
  body: Buffer;
  at: number;
}

/**
 * Reads the next record of `src` whole (at most `maxBody` bytes of body, or
 * PAGE_DATA's largest), padding included. Throws StreamError.
 */
export async function nextRecord(src: SequentialSource, maxBody: number): Promise<StreamRecord> {
  const at = src.offset;
  const rh = await src.read(8);
  const type = rh.readUInt32LE(0);
  const len = rh.readUInt32LE(4);
  const name = REC_NAMES[type] ?? `record type 0x${type.toString(16)}`;
  const largest = type === REC_TYPE_PAGE_DATA ? 8 + MAX_BATCH * (8 + PAGE_SIZE) : maxBody;
  if (len > largest) throw new StreamError(`libxc stream: ${name} of ${len} bytes at offset ${at}`);
  const padded = len + ((8 - (len % 8)) % 8);
  const body = padded > 0 ? await src.read(padded) : Buffer.alloc(0);
  return { type, name, body: body.subarray(0, len), at };
}

/** Largest record body read whole (a module, a context): a module's 32 MiB and its header. */
export const MAX_READ_RECORD = 32 * 1024 * 1024 + 64;

/**
 * Reads the libxc stream that starts at `at`, checking every header and
 * record (the page bytes are not read: their offsets are kept); throws
 * StreamError naming the header or record and its offset.
 */
export async function readXcStream(r: StreamReader, at: number, maxPfn: number): Promise<XcStream> {
  const fail = (what: string, off: number): never => {
    throw new StreamError(`libxc stream: ${what} at offset ${off}`);
  };
  if (at + 40 > r.size) fail("the headers are cut short", at);
  const { xenMajor, xenMinor, domainType } = checkStreamHeaders(await r.read(at, 40), at);
  const out: XcStream = {
    xenMajor,
    xenMinor,
    domainType,
    module: undefined,
    runs: [],
    pageCount: 0,
    context: undefined,
    hvmContext: undefined,
    end: 0,
  };
  const hvm = domainType === DHDR_TYPE_WASM32_HVM;
  let o = at + 40;
  // The pfns seen so far, one bit each: a pfn in two records is refused.
  const seen = new Uint8Array(Math.ceil(maxPfn / 8));
  for (;;) {
    if (o + 8 > r.size) fail("the stream ends before its END record", o);
    const rh = await r.read(o, 8);
    const rt = rh.readUInt32LE(0);
    const len = rh.readUInt32LE(4);
    const name = REC_NAMES[rt] ?? `record type 0x${rt.toString(16)}`;
    const padded = len + ((8 - (len % 8)) % 8);
    if (o + 8 + padded > r.size) fail(`${name} (${len} bytes) is cut short`, o);
    const bodyAt = o + 8;
    switch (rt) {
      case REC_TYPE_END:
        if (len !== 0) fail("END has a body", o);
        out.end = o + 8;
        return out;
      case REC_TYPE_PAGE_DATA: {
        if (len < 8) fail("PAGE_DATA is too short", o);
        const count = (await r.read(bodyAt, 4)).readUInt32LE(0);
        if (count === 0 || count > MAX_BATCH) fail(`PAGE_DATA with ${count} pfns`, o);
        const list = await r.read(bodyAt + 8, Math.min(8 * count, len - 8));
        let data = bodyAt + 8 + 8 * count;
        const entries = pageDataPfns(list, count, len, o, maxPfn);
        let run: PageRun | undefined;
        for (let i = 0; i < entries.length; i++) {
          const { pfn, present } = entries[i]!;
          if (!present) continue;
          if (seen[pfn >> 3]! & (1 << (pfn & 7))) fail(`PAGE_DATA: pfn ${pfn} twice`, o);
          seen[pfn >> 3]! |= 1 << (pfn & 7);
          if (run && run.pfn + run.count === pfn && run.at + run.count * PAGE_SIZE === data)
            run.count++;
          else out.runs.push((run = { pfn, count: 1, at: data }));
          out.pageCount++;
          data += PAGE_SIZE;
        }
        break;
      }
      case REC_TYPE_WASM32_MODULE: {
        if (out.module) fail("a second WASM32_MODULE", o);
        if (len < 40 || len > MAX_READ_RECORD) fail(`WASM32_MODULE of ${len} bytes`, o);
        const body = await r.read(bodyAt, len);
        const size = Number(body.readBigUInt64LE(32));
        if (40 + size !== len) fail(`WASM32_MODULE says ${size} bytes, has ${len - 40}`, o);
        out.module = { sha256: body.subarray(0, 32), bytes: body.subarray(40) };
        break;
      }
      case REC_TYPE_WASM32_CONTEXT:
        if (hvm) fail("WASM32_CONTEXT in an HVM domain's stream", o);
        if (out.context) fail("a second WASM32_CONTEXT", o);
        if (len > MAX_READ_RECORD) fail(`WASM32_CONTEXT of ${len} bytes`, o);
        out.context = await r.read(bodyAt, len);
        break;
      case REC_TYPE_WASM32_HVM_CONTEXT:
        if (!hvm) fail("WASM32_HVM_CONTEXT in a PV domain's stream", o);
        if (out.hvmContext) fail("a second WASM32_HVM_CONTEXT", o);
        if (len > MAX_READ_RECORD) fail(`WASM32_HVM_CONTEXT of ${len} bytes`, o);
        out.hvmContext = await r.read(bodyAt, len);
        out.hvmContextAt = bodyAt;
        break;
      default:
        // Optional records (bit 31) may be skipped; an unknown mandatory one may not.
        if (!(rt & 0x80000000)) fail(`${name}, which this restore does not know`, o);
    }
    o += 8 + padded;
  }
}
