// The console (mini-os console.c and xencons_ring.c), with a static line
// buffer: the SDK never allocates, so a guest that prints forever uses no
// more memory. Output goes to the PV console ring that xenconsoled reads
// (io/console.h; when the toolstack gave one: start_info.console_evtchn is
// set) and, as mini-os does, through console_io, which Xen accepts only from
// a console domain (one without a ring).
// Input is read from the ring's input side.
import {
  CONSOLEIO_write,
  CONSOLE_ADDR,
  START_INFO_ADDR,
  START_INFO_CONSOLE_EVTCHN_OFF,
  XENCONS_IN_OFF,
  XENCONS_OUT_OFF,
  XENCONS_IN_CONS_OFF,
  XENCONS_IN_PROD_OFF,
  XENCONS_OUT_CONS_OFF,
  XENCONS_OUT_PROD_OFF,
  XENCONS_IN_SIZE,
  XENCONS_OUT_SIZE,
  XEN_EPERM,
} from "./xen_abi";
import { HYPERVISOR_console_io } from "./hypervisor";
import { notify_remote_via_evtchn, unmask_evtchn } from "./events";

const BUF_SIZE: i32 = 512;
const buf = memory.data(BUF_SIZE);
/** Whether console_io writes are accepted (a console domain's are). */
let console_io_ok = true;
/** 0 until first use; then 1 + the console port, or 1 with no console ring. */
let cons_state: u32 = 0;

/** The console ring's port (start_info.console_evtchn), or 0 without a ring. */
export function console_port(): u32 {
  if (cons_state == 0) {
    const port = load<u32>(START_INFO_ADDR + START_INFO_CONSOLE_EVTCHN_OFF);
    cons_state = port + 1;
    if (port != 0) unmask_evtchn(port);
  }
  return cons_state - 1;
}

/** After a resume in a new domain: the console's port is read again from start_info. */
export function console_resume(): void {
  cons_state = 0;
}

/**
 * Writes `len` raw bytes at `ptr` to the console. What does not fit the
 * ring's free space is dropped from the ring (as mini-os's xencons_ring_send
 * does), never from console_io. '\n' reaches the ring as "\r\n".
 */
export function console_write(ptr: usize, len: i32): void {
  // Xen refuses console_io to a domain with a PV console (its default XSM
  // policy): after the first -EPERM the ring alone carries the output.
  if (console_io_ok && HYPERVISOR_console_io(CONSOLEIO_write, len, ptr) == -XEN_EPERM)
    console_io_ok = false;
  const port = console_port();
  if (port == 0) return;
  const cons = atomic.load<u32>(CONSOLE_ADDR + XENCONS_OUT_CONS_OFF);
  let prod = load<u32>(CONSOLE_ADDR + XENCONS_OUT_PROD_OFF);
  let sent = 0;
  // As mini-os's console_print: '\n' goes to the ring as "\r\n" for terminals.
  while (sent < len) {
    const c = load<u8>(ptr + sent);
    const need: u32 = c == 10 ? 2 : 1;
    if (prod - cons + need > <u32>XENCONS_OUT_SIZE) break;
    if (c == 10) {
      store<u8>(CONSOLE_ADDR + XENCONS_OUT_OFF + (prod & (<u32>XENCONS_OUT_SIZE - 1)), 13);
      prod++;
    }
    store<u8>(CONSOLE_ADDR + XENCONS_OUT_OFF + (prod & (<u32>XENCONS_OUT_SIZE - 1)), c);
    prod++;
    sent++;
  }
  atomic.store<u32>(CONSOLE_ADDR + XENCONS_OUT_PROD_OFF, prod);
  notify_remote_via_evtchn(port);
}

/**
 * Takes up to `max` bytes of a xencons_interface ring's input (`ring` is the
 * page's address) into `ptr`, telling the backend on `port` when it made
 * room; how many there were. The PV console and channels read this way.
 */
export function xencons_ring_read(ring: usize, port: u32, ptr: usize, max: u32): u32 {
  let cons = load<u32>(ring + XENCONS_IN_CONS_OFF);
  const prod = atomic.load<u32>(ring + XENCONS_IN_PROD_OFF);
  let n: u32 = 0;
  while (n < max && cons != prod) {
    store<u8>(ptr + n, load<u8>(ring + XENCONS_IN_OFF + (cons & (<u32>XENCONS_IN_SIZE - 1))));
    cons++;
    n++;
  }
  if (n > 0) {
    atomic.store<u32>(ring + XENCONS_IN_CONS_OFF, cons);
    notify_remote_via_evtchn(port);
  }
  return n;
}

/**
 * Reads up to `max` bytes of console input into `ptr` without waiting;
 * returns how many (0 when none has arrived, or there is no console ring).
 */
export function console_read(ptr: usize, max: i32): i32 {
  const port = console_port();
  if (port == 0) return 0;
  return <i32>xencons_ring_read(CONSOLE_ADDR, port, ptr, <u32>max);
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
