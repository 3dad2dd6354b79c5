/**
 * Bounds-checked access to a guest's memory, the counterpart of Xen's
 * `copy_from_guest` / `copy_to_guest`. Every pointer and length a guest hands
 * the hypervisor goes through here; an access outside the guest's memory
 * throws GuestFault, which the hypercall layer turns into -EFAULT.
 *
 * Guest memory is a shared WebAssembly.Memory that only grows (as the domain
 * populates pages above its top, memory.ts), and a shared memory grows in
 * place: a view made here stays valid for the range it covers, and `refresh`
 * widens this object's views after a growth. The memory of an HVM program
 * with PV drivers grows in its vCPU's thread, unseen by the hypervisor: an
 * access past the views looks at that memory's size again before it faults.
 */

/** A guest pointer or length that does not lie inside the guest's memory. */
export class GuestFault extends Error {
  constructor(addr: number, len: number) {
    super(`guest access of ${len} bytes at 0x${(addr >>> 0).toString(16)} is out of bounds`);
  }
}

const TWO32 = 2 ** 32;

/** Typed views of one guest's memory with bounds-checked accessors. */
export class GuestMemory {
  u8!: Uint8Array;
  i32!: Int32Array;
  dv!: DataView;
  size!: number;
  buffer!: ArrayBufferLike;

  /**
   * @param source the memory `buffer` belongs to, when another thread may
   *   grow it: views are then widened on the first access past them.
   */
  constructor(
    buffer: ArrayBufferLike,
    private source?: WebAssembly.Memory,
  ) {
    this.refresh(buffer);
  }

  /** Points the views at another memory, which replaced the one they were on. */
  retarget(memory: WebAssembly.Memory): void {
    this.source = memory;
    this.refresh(memory.buffer);
  }

  /** Points the views at `buffer`, the same memory after it grew. */
  refresh(buffer: ArrayBufferLike): void {
    this.buffer = buffer;
    this.u8 = new Uint8Array(buffer);
    this.i32 = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    this.dv = new DataView(buffer);
    this.size = buffer.byteLength;
  }

  /** Throws GuestFault unless [addr, addr+len) lies inside guest memory. */
  check(addr: number, len: number): void {
    if (!(addr >= 0 && len >= 0 && addr + len <= this.size && Number.isInteger(addr))) {
      this.checkGrown(addr, len);
    }
  }

  /** Whether the memory grew elsewhere since the views were made (then widens them). */
  grown(): boolean {
    if (!this.source || this.source.buffer.byteLength <= this.size) return false;
    this.refresh(this.source.buffer);
    return true;
  }

  /** The rare path of check(): fault, unless the memory grew to cover the access. */
  private checkGrown(addr: number, len: number): void {
    if (this.grown() && addr >= 0 && len >= 0 && addr + len <= this.size && Number.isInteger(addr))
      return;
    throw new GuestFault(addr, len);
  }

  u16(addr: number): number {
    this.check(addr, 2);
    return this.dv.getUint16(addr, true);
  }
  u32(addr: number): number {
    this.check(addr, 4);
    return this.dv.getUint32(addr, true);
  }
  /** A uint64 field as a number (exact up to 2^53, which covers every use here). */
  u64(addr: number): number {
    this.check(addr, 8);
    return this.dv.getUint32(addr, true) + this.dv.getUint32(addr + 4, true) * TWO32;
  }
  setU8(addr: number, v: number): void {
    this.check(addr, 1);
    this.u8[addr] = v;
  }
  setU16(addr: number, v: number): void {
    this.check(addr, 2);
    this.dv.setUint16(addr, v, true);
  }
  setU32(addr: number, v: number): void {
    this.check(addr, 4);
    this.dv.setUint32(addr, v >>> 0, true);
  }
  setI64(addr: number, v: number): void {
    this.check(addr, 8);
    const lo = v >>> 0;
    const hi = Math.floor(v / TWO32) | 0;
    this.dv.setUint32(addr, lo, true);
    this.dv.setInt32(addr + 4, hi, true);
  }
  setU64(addr: number, v: number): void {
    this.check(addr, 8);
    this.dv.setUint32(addr, v >>> 0, true);
    this.dv.setUint32(addr + 4, Math.floor(v / TWO32) >>> 0, true);
  }

  /** A copy of guest bytes [addr, addr+len). */
  read(addr: number, len: number): Uint8Array {
    this.check(addr, len);
    return this.u8.slice(addr, addr + len);
  }
  /** Copies `bytes` into guest memory at `addr`. */
  write(addr: number, bytes: Uint8Array): void {
    this.check(addr, bytes.length);
    this.u8.set(bytes, addr);
  }
  /** Writes `s` as UTF-8 into a `cap`-byte buffer, NUL-terminated and truncated to fit. */
  writeCString(addr: number, cap: number, s: string): void {
    this.check(addr, cap);
    const enc = new TextEncoder().encode(s).subarray(0, cap - 1);
    this.u8.fill(0, addr, addr + cap);
    this.u8.set(enc, addr);
  }
  /** Zeroes [addr, addr+len). */
  clear(addr: number, len: number): void {
    this.check(addr, len);
    this.u8.fill(0, addr, addr + len);
  }
}
