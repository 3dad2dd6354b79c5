/**
 * The hypervisor console (Xen's `drivers/char/console.c`): a ring of recent
 * lines that `xl dmesg` reads, Xen's own messages prefixed "(XEN) " and guest
 * console_io output prefixed "(dN) ", and the console_io hypercall.
 */
import { CONSOLEIO_read, CONSOLEIO_write } from "../include/public/xen.js";
import { XenErrno } from "../include/public/errno.js";
import type { Vcpu } from "../arch/wasm32/vcpu.js";
import type { Hypervisor } from "./hypervisor.js";

/** Bytes the console ring keeps (Xen's conring_size; its default is 16 KiB). */
export const CONRING_SIZE = 64 * 1024;

export class HypervisorConsole {
  private lines: string[] = [];
  private bytes = 0;
  readonly listeners = new Set<(line: string) => void>();

  /** Appends one line (without its newline). */
  put(line: string): void {
    this.lines.push(line);
    this.bytes += line.length + 1;
    while (this.bytes > CONRING_SIZE && this.lines.length > 1)
      this.bytes -= this.lines.shift()!.length + 1;
    for (const l of this.listeners) l(line);
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
 * console_io(cmd, count, buffer). Writes from any domain are accepted, as a
 * debug build of Xen accepts them, and appear as "(dN) " lines; reads of the
 * ring are for privileged domains only.
 */
export function do_console_io(
  hv: Hypervisor,
  v: Vcpu,
  cmd: number,
  count: number,
  buffer: number,
): number {
  const d = v.domain;
  switch (cmd) {
    case CONSOLEIO_write: {
      if (count === 0) return 0;
      const bytes = d.mem.read(buffer >>> 0, count >>> 0);
      d.consoleWrite(bytes, (line) => hv.console.put(`(d${d.domid}) ${line}`));
      return 0;
    }
    case CONSOLEIO_read: {
      if (!d.privileged) return -XenErrno.EPERM;
      const text = new TextEncoder().encode(hv.console.read());
      const n = Math.min(text.length, count >>> 0);
      d.mem.write(buffer >>> 0, text.subarray(0, n));
      return n;
    }
    default:
      return -XenErrno.ENOSYS;
  }
}
