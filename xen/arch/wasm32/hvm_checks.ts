/**
 * Loop checks for HVM programs: the one change tsxen makes inside an
 * unmodified program's code, so that its vCPU can be paused (and its time
 * counted) while it computes without doing any I/O.
 *
 * At the head of every loop goes a countdown on a global of the module's
 * own; when it reaches zero, one call_indirect through a one-entry table
 * reaches the vCPU thread's check (hvm_vcpu_worker.ts), which honours a
 * pause and refills the countdown. Everything is appended (a type, a table,
 * a global, two exports), so no index the program uses moves, and the
 * rewrite is a single pass over the code section's bytes: no Binaryen,
 * which needed minutes and gigabytes for a 30 MB program. A hostile program
 * gains nothing by touching the countdown: it is not in its memory, and a
 * vCPU that is never paused is only a thread the host's scheduler shares.
 *
 * Format: the WebAssembly core specification, binary format (5.4, 5.5),
 * with the opcodes of the proposals Node 20 runs (bulk memory, reference
 * types, SIMD, threads, tail calls, exceptions). A module using an opcode
 * this pass does not know is left as it is, without checks.
 */
import { Reader, leb } from "./binary.js";

/** Names of the appended exports. */
export const CHECK_TABLE_EXPORT = "__tsxen_check";
export const CHECK_BUDGET_EXPORT = "__tsxen_budget";
/** Loop iterations between checks. */
export const CHECK_BUDGET = 1 << 20;

const SEC = { custom: 0, type: 1, import: 2, func: 3, table: 4, global: 6, export: 7, code: 10 };

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

class Skip extends Reader {
  leb(): void {
    while (this.byte() & 0x80);
  }
  memarg(): void {
    const align = this.u32();
    if (align & 0x40) this.u32(); // multi-memory: the memory index
    this.leb();
  }
  blocktype(): void {
    const b = this.b[this.pos]!;
    if (b === 0x40 || (b >= 0x6f && b <= 0x7f)) {
      this.pos++;
      return;
    }
    if (b === 0x63 || b === 0x64) throw new Error("typed function references");
    this.leb();
  }
}

/** Rewrites one function body; returns it with a check after every loop head, or throws on an unknown opcode. */
function rewriteBody(body: Uint8Array, check: number[]): { out: Uint8Array; loops: number } {
  const r = new Skip(body);
  const nLocals = r.u32();
  for (let i = 0; i < nLocals; i++) {
    r.u32();
    const t = r.byte();
    if (t === 0x63 || t === 0x64) throw new Error("typed references in locals");
  }
  const pieces: Uint8Array[] = [];
  let from = 0;
  let loops = 0;
  const checkBytes = Uint8Array.from(check);
  while (r.pos < body.length) {
    const op = r.byte();
    switch (op) {
      case 0x03: // loop bt
        r.blocktype();
        pieces.push(body.subarray(from, r.pos), checkBytes);
        from = r.pos;
        loops++;
        break;
      case 0x02:
      case 0x04:
      case 0x06:
        r.blocktype();
        break;
      case 0x07:
      case 0x08:
      case 0x09:
      case 0x0c:
      case 0x0d:
      case 0x10:
      case 0x12:
      case 0x18:
      case 0x20:
      case 0x21:
      case 0x22:
      case 0x23:
      case 0x24:
      case 0x25:
      case 0x26:
      case 0xd2:
        r.leb();
        break;
      case 0x0e: {
        const n = r.u32();
        for (let i = 0; i <= n; i++) r.leb();
        break;
      }
      case 0x11:
      case 0x13:
        r.leb();
        r.leb();
        break;
      case 0x1c: {
        const n = r.u32();
        for (let i = 0; i < n; i++) r.byte();
        break;
      }
      case 0x3f:
      case 0x40:
        r.leb();
        break;
      case 0x41:
      case 0x42:
        r.leb();
        break;
      case 0x43:
        r.pos += 4;
        break;
      case 0x44:
        r.pos += 8;
        break;
      case 0xd0:
        r.leb();
        break;
      case 0xfc: {
        const sub = r.u32();
        if (sub <= 7) break;
        if (sub === 8 || sub === 10 || sub === 12 || sub === 14) {
          r.leb();
          r.leb();
        } else if (sub === 9 || sub === 11 || sub === 13 || (sub >= 15 && sub <= 17)) {
          r.leb();
        } else throw new Error(`opcode 0xfc ${sub}`);
        break;
      }
      case 0xfd: {
        const sub = r.u32();
        if (sub <= 11 || sub === 92 || sub === 93) r.memarg();
        else if (sub === 12 || sub === 13) r.pos += 16;
        else if (sub >= 21 && sub <= 34) r.pos += 1;
        else if (sub >= 84 && sub <= 91) {
          r.memarg();
          r.pos += 1;
        }
        break;
      }
      case 0xfe: {
        const sub = r.u32();
        if (sub === 0x03) r.pos += 1;
        else r.memarg();
        break;
      }
      default:
        if (op >= 0x28 && op <= 0x3e) r.memarg();
        else if (
          op <= 0x01 ||
          op === 0x05 ||
          op === 0x0b ||
          op === 0x0f ||
          op === 0x19 ||
          op === 0x1a ||
          op === 0x1b ||
          (op >= 0x45 && op <= 0xc4) ||
          op === 0xd1
        ) {
          // No immediates.
        } else throw new Error(`opcode 0x${op.toString(16)}`);
    }
  }
  if (loops === 0) return { out: body, loops };
  pieces.push(body.subarray(from));
  const out = new Uint8Array(pieces.reduce((t, p) => t + p.length, 0));
  let o = 0;
  for (const p of pieces) {
    out.set(p, o);
    o += p.length;
  }
  return { out, loops };
}

function vecCount(body: Uint8Array): { count: number; rest: Uint8Array } {
  const r = new Reader(body);
  const count = r.u32();
  return { count, rest: body.subarray(r.pos) };
}

function section(id: number, body: Uint8Array | number[]): Uint8Array {
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  const head = Uint8Array.from([id, ...leb(b.length)]);
  const out = new Uint8Array(head.length + b.length);
  out.set(head);
  out.set(b, head.length);
  return out;
}

/** Appends `entry` to a vector section's body (or makes one). */
function appendEntry(body: Uint8Array | undefined, entry: number[]): Uint8Array {
  const { count, rest } = body ? vecCount(body) : { count: 0, rest: new Uint8Array(0) };
  const head = leb(count + 1);
  const out = new Uint8Array(head.length + rest.length + entry.length);
  out.set(head);
  out.set(rest, head.length);
  out.set(entry, head.length + rest.length);
  return out;
}

const encName = (s: string): number[] => {
  const b = Buffer.from(s);
  return [...leb(b.length), ...b];
};

/**
 * Adds loop checks to `module` (a prepared HVM program, hvm_image.ts); the
 * new bytes and the number of loops checked, or undefined (with the reason)
 * when the module uses what this pass does not know.
 */
export function addLoopChecks(
  module: Uint8Array,
): { bytes: Uint8Array; loops: number } | { skipped: string } {
  const r = new Reader(module, 8);
  const sections = new Map<number, { start: number; body: Uint8Array }>();
  const order: Array<{ id: number; start: number; end: number }> = [];
  let importedTables = 0;
  let importedGlobals = 0;
  while (r.pos < module.length) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const body = r.bytes(size);
    order.push({ id, start, end: r.pos });
    if (id !== SEC.custom) sections.set(id, { start, body });
    if (id === SEC.import) {
      const m = new Reader(body);
      const n = m.u32();
      for (let i = 0; i < n; i++) {
        m.name();
        m.name();
        const kind = m.byte();
        if (kind === 0) {
          m.u32();
        } else if (kind === 1) {
          m.byte();
          if (m.byte() & 1) m.u32();
          m.u32();
          importedTables++;
        } else if (kind === 2) {
          if (m.byte() & 1) m.u32();
          m.u32();
        } else if (kind === 3) {
          m.byte();
          m.byte();
          importedGlobals++;
        } else {
          m.byte();
          m.u32();
        }
      }
    }
  }
  const types = sections.get(SEC.type)?.body;
  const typeIdx = types ? vecCount(types).count : 0;
  const tables = sections.get(SEC.table)?.body;
  const tableIdx = importedTables + (tables ? vecCount(tables).count : 0);
  const globals = sections.get(SEC.global)?.body;
  const globalIdx = importedGlobals + (globals ? vecCount(globals).count : 0);
  // global.get g; i32.const 1; i32.sub; global.set g; global.get g; i32.eqz;
  // if; i32.const 0; call_indirect (type t) (table tbl); end
  const check = [
    0x23,
    ...leb(globalIdx),
    0x41,
    0x01,
    0x6b,
    0x24,
    ...leb(globalIdx),
    0x23,
    ...leb(globalIdx),
    0x45,
    0x04,
    0x40,
    0x41,
    0x00,
    0x11,
    ...leb(typeIdx),
    ...leb(tableIdx),
    0x0b,
  ];
  const code = sections.get(SEC.code);
  if (!code) return { skipped: "no code" };
  const c = new Reader(code.body);
  const nFuncs = c.u32();
  const bodies: Uint8Array[] = [];
  let loops = 0;
  try {
    for (let i = 0; i < nFuncs; i++) {
      const size = c.u32();
      const b = c.bytes(size);
      const rw = rewriteBody(b, check);
      loops += rw.loops;
      bodies.push(Uint8Array.from(leb(rw.out.length)), rw.out);
    }
  } catch (e) {
    return { skipped: (e as Error).message };
  }
  const codeBody = new Uint8Array(leb(nFuncs).length + bodies.reduce((t, b) => t + b.length, 0));
  codeBody.set(leb(nFuncs));
  let o = leb(nFuncs).length;
  for (const b of bodies) {
    codeBody.set(b, o);
    o += b.length;
  }
  const replaced = new Map<number, Uint8Array>([
    [SEC.type, section(SEC.type, appendEntry(types, [0x60, 0x00, 0x00]))],
    [SEC.table, section(SEC.table, appendEntry(tables, [0x70, 0x01, 0x01, 0x01]))],
    [
      SEC.global,
      section(SEC.global, appendEntry(globals, [0x7f, 0x01, 0x41, ...sleb(CHECK_BUDGET), 0x0b])),
    ],
    [
      SEC.export,
      section(
        SEC.export,
        appendEntry(
          appendEntry(sections.get(SEC.export)?.body, [
            ...encName(CHECK_TABLE_EXPORT),
            0x01,
            ...leb(tableIdx),
          ]),
          [...encName(CHECK_BUDGET_EXPORT), 0x03, ...leb(globalIdx)],
        ),
      ),
    ],
    [SEC.code, section(SEC.code, codeBody)],
  ]);
  // Section order: type 1, import 2, func 3, table 4, memory 5, tag 13, global 6, export 7, start 8, elem 9, datacount 12, code 10, data 11.
  const rank = (id: number): number => [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 11, 6][id] ?? 99;
  const out: Uint8Array[] = [module.subarray(0, 8)];
  const present = new Set(order.map((s) => s.id));
  const pending = [...replaced.keys()]
    .filter((id) => !present.has(id))
    .sort((a, b) => rank(a) - rank(b));
  for (const s of order) {
    // Sections this pass adds go before the first section that comes after them.
    while (pending.length && s.id !== SEC.custom && rank(pending[0]!) < rank(s.id))
      out.push(replaced.get(pending.shift()!)!);
    if (s.id === SEC.custom) {
      const cr = new Reader(module, s.start + 1);
      cr.u32();
      // Code offsets in these would point at the wrong instructions now.
      if (/^(metadata\.code\.|\.debug_)/.test(cr.name())) continue;
      out.push(module.subarray(s.start, s.end));
      continue;
    }
    out.push(replaced.get(s.id) ?? module.subarray(s.start, s.end));
  }
  for (const id of pending) out.push(replaced.get(id)!);
  const bytes = new Uint8Array(out.reduce((t, p) => t + p.length, 0));
  let at = 0;
  for (const p of out) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, loops };
}
