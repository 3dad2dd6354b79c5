/**
 * The libxc stream of a saveable HVM domain (docs/save-format.md, "HVM
 * domains"): what xc_domain_save writes for an x86 HVM guest (its pages,
 * then HVM_CONTEXT with the vCPUs' registers and the platform's state), on
 * wasm32: the program's pages, then WASM32_HVM_CONTEXT with the domain's
 * clock, the memory's size and the vCPU as the program's thread unwound it
 * (its mutable globals and its Asyncify stack). The device model's state
 * travels beside it in libxl's EMULATOR_CONTEXT record, as QEMU's does.
 *
 * WASM32_HVM_CONTEXT's body, little-endian: magic "W32H", version 1, the
 * domain's system time (i64 ns), the memory's size in 64 KiB pages, the
 * global count and the stack's length (u32 each), a u32 kept 0; then each
 * global: its index (u32), its kind (u32: 0 a number, as f64; 1 an i64)
 * and its value (8 bytes); then the stack's bytes.
 */
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import {
  HvmContextError,
  decodeHvmContext as decodeContext,
  encodeHvmContext,
  type HvmContext,
} from "../../xen/common/hvm_context.js";

export { encodeHvmContext, type HvmContext };

/** Largest device model state read back (JSON). */
export const MAX_EMULATOR_CONTEXT = 1024 * 1024;

/** decodeHvmContext, its error a StreamError (the stream's offset named). */
export function decodeHvmContext(b: Buffer, at: number): HvmContext {
  try {
    return decodeContext(b, at);
  } catch (e) {
    if (e instanceof HvmContextError) throw new StreamError(`libxc stream: ${e.message}`);
    throw e;
  }
}
import { WASM_PAGE_SIZE } from "../../xen/arch/wasm32/config.js";
import {
  DHDR_TYPE_WASM32_HVM,
  EMULATOR_ID_TSXEN_WASI,
  LIBXL_REC_EMULATOR_CONTEXT,
  MAX_BATCH,
  REC_TYPE_END,
  REC_TYPE_PAGE_DATA,
  REC_TYPE_WASM32_MODULE,
  REC_TYPE_WASM32_HVM_CONTEXT,
  MAX_READ_RECORD,
  checkStreamHeaders,
  nextRecord,
  pageDataPfns,
  type SequentialSource,
  REC_TYPE_VERIFY,
  StreamError,
  moduleRecord,
  parseModuleRecord,
  pageDataRecord,
  record,
  streamHeaders,
} from "./xc_sr.js";

/**
 * xc_domain_save of a stopped saveable HVM domain: headers (wasm32 HVM),
 * the program as given, its memory's pages (views of it, in records of
 * MAX_BATCH), the context, END.
 */
export function hvmStream(
  xen: { major: number; minor: number },
  image: { sha256: Uint8Array; bytes: Uint8Array },
  memory: WebAssembly.Memory,
  ctx: HvmContext,
  /** xl migrate --debug: every page a second time behind a VERIFY record. */
  verify = false,
): Uint8Array[] {
  return [
    streamHeaders(xen.major, xen.minor, DHDR_TYPE_WASM32_HVM),
    moduleRecord(image),
    ...memoryRecords(memory, ctx.wasmPages),
    ...hvmTail(memory, ctx, verify),
    record(REC_TYPE_END, new Uint8Array(0)),
  ];
}

/** PAGE_DATA records of every page of `memory`'s first `wasmPages` (views of it). */
function memoryRecords(memory: WebAssembly.Memory, wasmPages: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const pfns = (wasmPages * WASM_PAGE_SIZE) / PAGE_SIZE;
  const buf = memory.buffer;
  for (let p = 0; p < pfns; p += MAX_BATCH) {
    const n = Math.min(MAX_BATCH, pfns - p);
    const batch = Array.from({ length: n }, (_, k) => p + k);
    const view = new Uint8Array(buf, p * PAGE_SIZE, n * PAGE_SIZE);
    out.push(...pageDataRecord(batch, () => undefined, view));
  }
  return out;
}

/**
 * The records that end a stopped HVM domain's libxc stream before END:
 * with `verify`, VERIFY and every page again (the receiver compares them
 * with what it has), then WASM32_HVM_CONTEXT.
 */
export function hvmTail(
  memory: WebAssembly.Memory,
  ctx: HvmContext,
  verify: boolean,
): Uint8Array[] {
  return [
    ...(verify
      ? [record(REC_TYPE_VERIFY, new Uint8Array(0)), ...memoryRecords(memory, ctx.wasmPages)]
      : []),
    record(REC_TYPE_WASM32_HVM_CONTEXT, encodeHvmContext(ctx)),
  ];
}

/** libxl's EMULATOR_CONTEXT record with the device model's state. */
export function emulatorRecord(state: unknown): Uint8Array {
  const blob = Buffer.from(JSON.stringify(state));
  const body = Buffer.alloc(8 + blob.length);
  body.writeUInt32LE(EMULATOR_ID_TSXEN_WASI, 0);
  body.writeUInt32LE(0, 4);
  blob.copy(body, 8);
  return record(LIBXL_REC_EMULATOR_CONTEXT, body);
}

/** What an HVM domain's migration stream gave the receiver (readHvmStream). */
export interface ReceivedHvm {
  module: { sha256: Uint8Array; bytes: Uint8Array };
  ctx: HvmContext;
  /** The saved memory, pfn 0 up: every page of it was sent. */
  memory: Buffer;
  /** The device model's state (EMULATOR_CONTEXT's blob) and its offset. */
  emulator: { blob: Buffer; at: number };
  verified: number;
}

/**
 * The receiving end of an HVM domain's migration (the stream read in
 * order, after LIBXC_CONTEXT): libxc's headers and records to END, then
 * libxl's EMULATOR_CONTEXT. The pages are kept as they come (at most
 * `maxPfn`); after VERIFY each is compared with the first. Throws
 * StreamError naming the record and its offset.
 */
export async function readHvmStream(src: SequentialSource, maxPfn: number): Promise<ReceivedHvm> {
  const fail = (what: string, at: number): never => {
    throw new StreamError(`libxc stream: ${what} at offset ${at}`);
  };
  const at0 = src.offset;
  if (checkStreamHeaders(await src.read(40), at0).domainType !== DHDR_TYPE_WASM32_HVM)
    fail("a PV domain's stream for an HVM config", at0 + 24);
  let module: ReceivedHvm["module"] | undefined;
  let ctx: HvmContext | undefined;
  // One copy of the memory, at most the domain's `maxPfn` pages, made when
  // the first page comes: a page sent again overwrites its place, so a
  // sender's many rounds cannot make the receiver keep more than that (a
  // view of each record's body would keep the whole record).
  let mem: Buffer | undefined;
  const sent = new Uint8Array(Math.ceil(maxPfn / 8));
  const wasSent = (p: number): boolean => (sent[p >> 3]! & (1 << (p & 7))) !== 0;
  let verifying = false;
  let verified = 0;
  for (;;) {
    const rec = await nextRecord(src, MAX_READ_RECORD);
    const { body, at } = rec;
    if (rec.type === REC_TYPE_END) {
      if (body.length !== 0) fail("END has a body", at);
      break;
    }
    switch (rec.type) {
      case REC_TYPE_WASM32_MODULE:
        if (module) fail("a second WASM32_MODULE", at);
        module = parseModuleRecord(body, at);
        break;
      case REC_TYPE_PAGE_DATA: {
        if (body.length < 8) fail("PAGE_DATA is too short", at);
        const count = body.readUInt32LE(0);
        const list = pageDataPfns(
          body.subarray(8, 8 + 8 * Math.min(count, MAX_BATCH)),
          count,
          body.length,
          at,
          maxPfn,
        );
        let data = 8 + 8 * count;
        for (const { pfn, present } of list) {
          if (!present) fail(`PAGE_DATA: pfn ${pfn} not present in an HVM domain`, at);
          const page = body.subarray(data, data + PAGE_SIZE);
          data += PAGE_SIZE;
          mem ??= Buffer.alloc(maxPfn * PAGE_SIZE);
          const at4k = pfn * PAGE_SIZE;
          if (!verifying) {
            page.copy(mem, at4k);
            sent[pfn >> 3]! |= 1 << (pfn & 7);
          } else if (!wasSent(pfn) || !mem.subarray(at4k, at4k + PAGE_SIZE).equals(page))
            fail(`VERIFY: pfn 0x${pfn.toString(16)} differs from what was sent before`, at);
          else verified++;
        }
        break;
      }
      case REC_TYPE_VERIFY:
        if (body.length !== 0) fail("VERIFY has a body", at);
        verifying = true;
        break;
      case REC_TYPE_WASM32_HVM_CONTEXT:
        if (ctx) fail("a second WASM32_HVM_CONTEXT", at);
        ctx = decodeHvmContext(body, at + 8);
        break;
      default:
        if (!(rec.type & 0x80000000)) fail(`${rec.name}, which this restore does not know`, at);
    }
  }
  if (!module) return fail("no WASM32_MODULE record", at0);
  if (!ctx) return fail("no WASM32_HVM_CONTEXT record", at0);
  const pfns = (ctx.wasmPages * WASM_PAGE_SIZE) / PAGE_SIZE;
  let missing = !mem || pfns > maxPfn;
  for (let p = 0; p < maxPfn && !missing; p++) if (wasSent(p) !== p < pfns) missing = true;
  if (missing || !mem) return fail(`the pages sent are not the ${pfns} of the saved memory`, at0);
  // libxl's record after libxc's stream: the device model's state.
  const at = src.offset;
  const h = await src.read(8);
  const len = h.readUInt32LE(4);
  if (h.readUInt32LE(0) !== LIBXL_REC_EMULATOR_CONTEXT)
    fail("no EMULATOR_CONTEXT record (the device model's state)", at);
  if (len < 8 || len > 8 + MAX_EMULATOR_CONTEXT) fail(`EMULATOR_CONTEXT of ${len} bytes`, at);
  const body = (await src.read(len + ((8 - (len % 8)) % 8))).subarray(0, len);
  if (body.readUInt32LE(0) !== EMULATOR_ID_TSXEN_WASI || body.readUInt32LE(4) !== 0)
    fail("EMULATOR_CONTEXT of another emulator", at + 8);
  return {
    module,
    ctx,
    memory: mem.subarray(0, pfns * PAGE_SIZE),
    emulator: { blob: body.subarray(8), at: at + 16 },
    verified,
  };
}
