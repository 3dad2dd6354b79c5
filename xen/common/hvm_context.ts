/**
 * An HVM domain's context on wasm32 (what XEN_DOMCTL_gethvmcontext and
 * sethvmcontext carry for an x86 HVM guest: its vCPUs' registers and the
 * platform's state): the domain's clock, its program's memory size and the
 * vCPU as the program's thread unwound it, its mutable globals and its
 * Asyncify stack (docs/hvm.md, "Saving an HVM guest"). The save stream's
 * WASM32_HVM_CONTEXT record carries these bytes (docs/save-format.md).
 *
 * Layout, little-endian: magic "W32H", version 1, the domain's system time
 * (i64 ns), the memory's size in 64 KiB pages, the global count and the
 * stack's length (u32 each), a u32 kept 0; then each global: its index
 * (u32), its kind (u32: 0 a number, as f64; 1 an i64) and its value (8
 * bytes); then the stack's bytes.
 */
import type { HvmVcpuSaved } from "../arch/wasm32/hvm_vcpu_worker.js";
import { HVM_STACK_AREA } from "../arch/wasm32/hvm_ctl.js";
import { WASM_PAGE_SIZE, WASM32_MAX_WASM_PAGES } from "../arch/wasm32/config.js";

/** A context that cannot be read: the message names what and where. */
export class HvmContextError extends Error {}

export const HVM_CONTEXT_MAGIC = 0x48323357; // "W32H"
export const HVM_CONTEXT_VERSION = 1;
const HEAD = 32;
/** Most mutable globals a saved program may have (wasm's own limit is larger; no real program nears it). */
export const MAX_HVM_GLOBALS = 65536;
export interface HvmContext {
  stimeNs: number;
  wasmPages: number;
  vcpu: HvmVcpuSaved;
}

export function encodeHvmContext(c: HvmContext): Uint8Array {
  const { globals, stack } = c.vcpu;
  const out = Buffer.alloc(HEAD + 16 * globals.length + stack.length);
  out.writeUInt32LE(HVM_CONTEXT_MAGIC, 0);
  out.writeUInt32LE(HVM_CONTEXT_VERSION, 4);
  out.writeBigInt64LE(BigInt(Math.round(c.stimeNs)), 8);
  out.writeUInt32LE(c.wasmPages, 16);
  out.writeUInt32LE(globals.length, 20);
  out.writeUInt32LE(stack.length, 24);
  globals.forEach(([i, v], k) => {
    const o = HEAD + 16 * k;
    out.writeUInt32LE(i, o);
    out.writeUInt32LE(typeof v === "bigint" ? 1 : 0, o + 4);
    if (typeof v === "bigint") out.writeBigInt64LE(BigInt.asIntN(64, v), o + 8);
    else out.writeDoubleLE(v, o + 8);
  });
  out.set(stack, HEAD + 16 * globals.length);
  return out;
}

/** Reads a context (at `at` in its stream or file); throws HvmContextError naming what is wrong. */
export function decodeHvmContext(b: Buffer, at: number): HvmContext {
  const fail = (what: string, off: number): never => {
    throw new HvmContextError(`WASM32_HVM_CONTEXT: ${what} at offset ${at + off}`);
  };
  if (b.length < HEAD) fail(`${b.length} bytes`, 0);
  if (b.readUInt32LE(0) !== HVM_CONTEXT_MAGIC) fail("bad magic", 0);
  const version = b.readUInt32LE(4);
  if (version !== HVM_CONTEXT_VERSION) fail(`version ${version}`, 4);
  const stime = b.readBigInt64LE(8);
  if (stime < 0n || stime > BigInt(Number.MAX_SAFE_INTEGER)) fail(`system time ${stime}`, 8);
  const wasmPages = b.readUInt32LE(16);
  if (wasmPages < 1 || wasmPages > WASM32_MAX_WASM_PAGES) fail(`${wasmPages} wasm pages`, 16);
  const n = b.readUInt32LE(20);
  if (n > MAX_HVM_GLOBALS) fail(`${n} globals`, 20);
  const stackLen = b.readUInt32LE(24);
  if (stackLen > HVM_STACK_AREA - 8 || stackLen > wasmPages * WASM_PAGE_SIZE - 8)
    fail(`a stack of ${stackLen} bytes`, 24);
  if (b.readUInt32LE(28) !== 0) fail("reserved word not 0", 28);
  if (b.length !== HEAD + 16 * n + stackLen)
    fail(`${b.length} bytes for ${n} globals and ${stackLen} of stack`, 0);
  const seen = new Set<number>();
  const globals: Array<[number, number | bigint]> = [];
  for (let k = 0; k < n; k++) {
    const o = HEAD + 16 * k;
    const i = b.readUInt32LE(o);
    if (seen.has(i)) fail(`global ${i} twice`, o);
    seen.add(i);
    const kind = b.readUInt32LE(o + 4);
    if (kind > 1) fail(`global ${i} of kind ${kind}`, o + 4);
    globals.push([i, kind === 1 ? b.readBigInt64LE(o + 8) : b.readDoubleLE(o + 8)]);
  }
  const stack = Uint8Array.from(b.subarray(HEAD + 16 * n));
  return { stimeNs: Number(stime), wasmPages, vcpu: { globals, stack } };
}
