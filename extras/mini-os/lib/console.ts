// The hypervisor console through console_io, with a static line buffer: the
// SDK never allocates, so a guest that prints forever uses no more memory.
import { CONSOLEIO_write } from "./xen_abi";
import { HYPERVISOR_console_io } from "./hypervisor";

const BUF_SIZE: i32 = 512;
const buf = memory.data(BUF_SIZE);

/** Writes `len` raw bytes at `ptr` to the console. */
export function console_write(ptr: usize, len: i32): void {
  HYPERVISOR_console_io(CONSOLEIO_write, len, ptr);
}

/**
 * A line builder over the static buffer: cons.s("tick ").u(n).nl() prints
 * "tick N\n". Output is flushed on nl() and whenever the buffer fills.
 */
@unmanaged
export class Cons {
  len: i32;
  /** Appends a string (UTF-16 code units encoded as UTF-8). */
  s(str: string): Cons {
    for (let i = 0; i < str.length; i++) {
      const c = <u32>str.charCodeAt(i);
      if (c < 0x80) this.b(c);
      else if (c < 0x800) {
        this.b(0xc0 | (c >> 6));
        this.b(0x80 | (c & 63));
      } else {
        this.b(0xe0 | (c >> 12));
        this.b(0x80 | ((c >> 6) & 63));
        this.b(0x80 | (c & 63));
      }
    }
    return this;
  }
  /** Appends raw bytes from memory. */
  raw(ptr: usize, n: i32): Cons {
    for (let i = 0; i < n; i++) this.b(load<u8>(ptr + i));
    return this;
  }
  /** Appends an unsigned decimal number. */
  u(n: u64): Cons {
    if (n >= 10) this.u(n / 10);
    this.b(<u32>(48 + (n % 10)));
    return this;
  }
  /** Appends a signed decimal number. */
  i(n: i64): Cons {
    if (n < 0) {
      this.b(45);
      return this.u(<u64>-n);
    }
    return this.u(<u64>n);
  }
  /** Appends a newline and flushes. */
  nl(): void {
    this.b(10);
    this.flush();
  }
  flush(): void {
    if (this.len > 0) console_write(buf, this.len);
    this.len = 0;
  }
  private b(c: u32): void {
    store<u8>(buf + this.len, <u8>c);
    this.len++;
    if (this.len == BUF_SIZE) this.flush();
  }
}

/** The console line builder (static: its one field lives in the data segment). */
export const cons = changetype<Cons>(memory.data(8));

/** Prints a string (printk). */
export function printk(str: string): void {
  cons.s(str).flush();
}
