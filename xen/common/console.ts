/**
 * The hypervisor console (Xen's `drivers/char/console.c`): a ring of recent
 * lines that `xl dmesg` reads, Xen's own messages prefixed "(XEN) " and
 * Dom0's console_io output prefixed "(d0) ", the serial input ring that Dom0 reads
 * with CONSOLEIO_read, and the console_io hypercall. New output raises
 * VIRQ_CON_RING and new input VIRQ_CONSOLE on Dom0 (through `onOutput` and
 * `onInput`, set by the hypervisor).
 */
import { trackedHypercall } from "./watchdog.js";
import { CONSOLEIO_read, CONSOLEIO_write, HYPERVISOR } from "../include/public/xen.js";
import { XenErrno } from "../include/public/errno.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";

/** Bytes the console ring keeps (Xen's conring_size; its default is 16 KiB). */
export const CONRING_SIZE = 64 * 1024;
/** Bytes console_io writes between two preemption checks. */
export const CONSOLE_WRITE_CHUNK = 4096;
/**
 * console_io lines Dom0 (the only domain whose writes reach the hypervisor
 * console) may put there in a burst, and per second after it (Xen
 * rate-limits guest printk the same way); the rest are counted and
 * reported, not stored.
 */
export const GUEST_LINES_BURST = 200;
export const GUEST_LINES_PER_SEC = 100;
/** Bytes of serial input held for Dom0 (Xen's SERIAL_RX_SIZE); more is dropped. */
export const SERIAL_RX_SIZE = 128;

export class HypervisorConsole {
  private lines: string[] = [];
  private bytes = 0;
  private rx: number[] = [];
  readonly listeners = new Set<(line: string) => void>();
  /** Called after output is added (VIRQ_CON_RING) and after input arrives (VIRQ_CONSOLE). */
  onOutput: (() => void) | undefined;
  onInput: (() => void) | undefined;

  /** Serial input for Dom0 (what is typed on Xen's console); returns the bytes kept. */
  input(bytes: Uint8Array): number {
    const room = Math.max(0, SERIAL_RX_SIZE - this.rx.length);
    const kept = Math.min(room, bytes.length);
    for (let i = 0; i < kept; i++) this.rx.push(bytes[i]!);
    if (kept > 0) this.onInput?.();
    return kept;
  }

  /** Takes up to `max` bytes of serial input (CONSOLEIO_read). */
  takeInput(max: number): Uint8Array {
    return Uint8Array.from(this.rx.splice(0, max));
  }

  /** Appends one line (without its newline). */
  put(line: string): void {
    this.lines.push(line);
    this.bytes += line.length + 1;
    while (this.bytes > CONRING_SIZE && this.lines.length > 1)
      this.bytes -= this.lines.shift()!.length + 1;
    for (const l of this.listeners) l(line);
    this.onOutput?.();
  }

  /** Per domain: rate-limit tokens, when they were last topped up, lines dropped since. */
  private readonly guestRate = new Map<number, { tokens: number; at: number; dropped: number }>();

  /**
   * A line of guest `d`'s console_io output, as "(dN) line", within the
   * domain's rate (GUEST_LINES_BURST, GUEST_LINES_PER_SEC): a guest printing
   * without pause cannot flood the ring, the log or the host's stdout.
   */
  guestLine(d: { domid: number }, line: string): void {
    let r = this.guestRate.get(d.domid);
    const now = performance.now();
    if (!r) {
      r = { tokens: GUEST_LINES_BURST, at: now, dropped: 0 };
      this.guestRate.set(d.domid, r);
    }
    r.tokens = Math.min(GUEST_LINES_BURST, r.tokens + ((now - r.at) / 1000) * GUEST_LINES_PER_SEC);
    r.at = now;
    if (r.tokens < 1) {
      r.dropped++;
      return;
    }
    if (r.dropped > 0) {
      this.printk(`d${d.domid}: ${r.dropped} console lines suppressed (rate limit)`);
      r.dropped = 0;
    }
    r.tokens--;
    this.put(`(d${d.domid}) ${line}`);
  }

  /** Forgets a destroyed domain's rate (its id may be reused). */
  forgetGuest(domid: number): void {
    this.guestRate.delete(domid);
  }

  /** A hypervisor message, as Xen prints it. */
  printk(msg: string): void {
    this.put(`(XEN) ${msg}`);
  }

  /** The ring's contents; `clear` empties it afterwards (xl dmesg -c). */
  read(clear = false): string {
    const out = this.lines.map((l) => `${l}\n`).join("");
    if (clear) {
      this.lines = [];
      this.bytes = 0;
    }
    return out;
  }
}

/**
 * console_io(cmd, count, buffer), as a release build of Xen answers it.
 * Xen's default XSM policy lets a domain write only if it is privileged or
 * a console domain (`is_console`); others get -EPERM, and their console is
 * their PV console ring (xenconsoled, `xl console`, the guest's log). tsxen
 * makes a domain a console domain when it has no PV console to write to (a
 * domain built without xenstore, as a dom0less guest is): its writes are
 * kept as its console (Host.readConsole), and, as Xen prints guest writes
 * at XENLOG_G_DEBUG, below a release build's guest_loglvl, they do not
 * reach the hypervisor console (`xl dmesg`). Dom0's writes do, as "(d0) "
 * lines. Reads take serial input and are Dom0's only; the ring of output is
 * read with sysctl readconsole (`xl dmesg`), not here. Marked for the
 * watchdog while it runs (trackedHypercall).
 */
export const do_console_io = trackedHypercall(
  HYPERVISOR.__HYPERVISOR_console_io,
  do_console_io_body,
);

const noLine = (): void => {};

function do_console_io_body(
  hv: Hypervisor,
  v: Vcpu,
  cmd: number,
  count: number,
  buffer: number,
): number {
  const d = v.domain;
  switch (cmd) {
    case CONSOLEIO_write: {
      if (!d.privileged && !d.isConsole) return -XenErrno.EPERM;
      // In pieces, and what is left when the slice ends is written in the
      // vCPU's next slice (Xen's guest_console_write and its continuation).
      buffer >>>= 0;
      count >>>= 0;
      d.mem.check(buffer, count);
      const emit = d.privileged ? (line: string) => hv.console.guestLine(d, line) : noLine;
      for (let done = 0; done < count;) {
        const n = Math.min(CONSOLE_WRITE_CHUNK, count - done);
        d.consoleWrite(d.mem.read(buffer + done, n), emit);
        done += n;
        if (done < count && hv.preemptCheck(v)) {
          return hv.createContinuation(
            v,
            HYPERVISOR.__HYPERVISOR_console_io,
            cmd,
            count - done,
            buffer + done,
          );
        }
      }
      return 0;
    }
    case CONSOLEIO_read: {
      if (!d.privileged) return -XenErrno.EPERM;
      d.mem.check(buffer >>> 0, count >>> 0);
      const input = hv.console.takeInput(count >>> 0);
      d.mem.write(buffer >>> 0, input);
      return input.length;
    }
    default:
      return -XenErrno.ENOSYS;
  }
}
