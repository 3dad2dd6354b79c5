/**
 * Byte-level edits of a guest module that Binaryen's JS API cannot make: take
 * out the active data segments (the hypervisor writes them into guest memory
 * once per domain, since re-applying them for every vCPU instance would
 * overwrite live data) and widen the `env.memory` import to any shared memory
 * of up to 4 GiB, so one compiled kernel serves domains of every size.
 *
 * Format: the WebAssembly core specification, binary format (sections 5.5.x).
 */

/** An active data segment taken out of a module. */
export interface DataSegment {
  readonly offset: number;
  readonly data: Uint8Array;
}

/** A kernel module after its data segments were taken out. */
export interface StrippedModule {
  readonly bytes: Uint8Array;
  readonly segments: DataSegment[];
  /** Smallest memory (in 64 KiB pages) the module's import asked for. */
  readonly minPages: number;
}

const SEC_IMPORT = 2;
const SEC_DATA = 11;
const SEC_DATACOUNT = 12;

export class Reader {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    pos = 0,
  ) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.b.length) throw new Error("truncated module");
    return this.b[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result >>> 0;
      shift += 7;
      if (shift > 28) throw new Error("LEB128 too long");
    }
  }
  i32(): number {
    let result = 0;
    let shift = 0;
    let byte: number;
    do {
      byte = this.byte();
      result |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    if (shift < 32 && byte & 0x40) result |= ~0 << shift;
    return result | 0;
  }
  bytes(n: number): Uint8Array {
    if (this.pos + n > this.b.length) throw new Error("truncated module");
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  name(): string {
    return new TextDecoder().decode(this.bytes(this.u32()));
  }
}

export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Rewrites the import section so `env.memory` is shared, 0..65536 pages. */
function rewriteImports(body: Uint8Array): { body: Uint8Array; minPages: number } {
  const r = new Reader(body);
  const out: number[] = [];
  const count = r.u32();
  out.push(...leb(count));
  let minPages = -1;
  for (let i = 0; i < count; i++) {
    const start = r.pos;
    const mod = r.name();
    const field = r.name();
    const kind = r.byte();
    const kindEnd = r.pos;
    switch (kind) {
      case 0x00: // function: type index
        r.u32();
        break;
      case 0x01: {
        // table: reftype, limits
        r.byte();
        if (r.byte() & 1) r.u32();
        r.u32();
        break;
      }
      case 0x02: {
        // memory: limits
        const flags = r.byte();
        const min = r.u32();
        if (flags & 1) r.u32();
        if (mod !== "env" || field !== "memory") {
          throw new Error(`kernel imports memory as ${mod}.${field}; the contract is env.memory`);
        }
        if (!(flags & 2)) throw new Error("kernel's env.memory import is not shared memory");
        out.push(...body.subarray(start, kindEnd), 0x03, ...leb(0), ...leb(65536));
        minPages = min;
        continue;
      }
      case 0x03: // global: valtype, mutability
        r.byte();
        r.byte();
        break;
      case 0x04: // tag: attribute, type index
        r.byte();
        r.u32();
        break;
      default:
        throw new Error(`unknown import kind ${kind}`);
    }
    out.push(...body.subarray(start, r.pos));
  }
  if (minPages < 0) throw new Error("kernel does not import env.memory");
  return { body: Uint8Array.from(out), minPages };
}

function readDataSection(body: Uint8Array): DataSegment[] {
  const r = new Reader(body);
  const count = r.u32();
  const segs: DataSegment[] = [];
  for (let i = 0; i < count; i++) {
    const flags = r.u32();
    if (flags !== 0) throw new Error(`data segment ${i} is not an active segment of memory 0`);
    if (r.byte() !== 0x41) throw new Error(`data segment ${i} offset is not i32.const`);
    const offset = r.i32() >>> 0;
    if (r.byte() !== 0x0b) throw new Error(`data segment ${i} offset expression is not constant`);
    const data = r.bytes(r.u32()).slice();
    segs.push({ offset, data });
  }
  return segs;
}

/**
 * Takes the active data segments out of `module` and widens its memory import.
 * Throws an Error naming what is wrong when the module breaks the guest contract.
 */
export function stripKernel(module: Uint8Array): StrippedModule {
  if (
    module.length < 8 ||
    module[0] !== 0 ||
    module[1] !== 0x61 ||
    module[2] !== 0x73 ||
    module[3] !== 0x6d
  ) {
    throw new Error("not a WebAssembly module (bad magic)");
  }
  const r = new Reader(module, 8);
  const out: number[] = [...module.subarray(0, 8)];
  let segments: DataSegment[] = [];
  let minPages = -1;
  while (r.pos < module.length) {
    const id = r.byte();
    const size = r.u32();
    const body = r.bytes(size);
    if (id === SEC_DATA) {
      segments = readDataSection(body);
      continue;
    }
    if (id === SEC_DATACOUNT) continue;
    if (id === SEC_IMPORT) {
      const rewritten = rewriteImports(body);
      minPages = rewritten.minPages;
      out.push(id, ...leb(rewritten.body.length), ...rewritten.body);
      continue;
    }
    out.push(id, ...leb(size));
    for (const b of body) out.push(b);
  }
  if (minPages < 0) throw new Error("kernel does not import env.memory");
  return { bytes: Uint8Array.from(out), segments: nonZeroRuns(segments), minPages };
}

/** Zero bytes shorter than this between two non-zero runs stay in one segment. */
const ZERO_GAP = 64;

/**
 * The segments' non-zero bytes only: a new guest's memory is already zero,
 * and writing zeros (a compiler's `memory.data` reservations are zero
 * segments) would only make those pages resident in every domain. Segments
 * that overlap are kept whole.
 */
export function nonZeroRuns(segments: readonly DataSegment[]): DataSegment[] {
  // Segments apply in order, so with overlaps a zero may overwrite: keep them whole.
  const sorted = [...segments].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1]!.offset + sorted[i - 1]!.data.length > sorted[i]!.offset)
      return [...segments];
  }
  const out: DataSegment[] = [];
  for (const s of segments) {
    const d = s.data;
    let i = 0;
    while (i < d.length) {
      while (i < d.length && d[i] === 0) i++;
      if (i === d.length) break;
      const start = i;
      let end = i;
      // Extend over non-zero bytes and short zero gaps.
      while (i < d.length) {
        if (d[i] !== 0) {
          end = ++i;
          continue;
        }
        let z = i;
        while (z < d.length && d[z] === 0 && z - i < ZERO_GAP) z++;
        if (z === d.length || d[z] === 0) break;
        i = z;
      }
      out.push({ offset: s.offset + start, data: d.slice(start, end) });
      i = end;
    }
  }
  return out;
}
