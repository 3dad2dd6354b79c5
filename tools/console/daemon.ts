/**
 * xenconsoled (Xen's `tools/console/daemon/io.c`), as a Dom0 service: for
 * each guest it maps the console ring page (grant GNTTAB_RESERVED_CONSOLE)
 * and binds the console port, drains the output ring (xen-doc
 * `misc/console.txt`, `io/console.h`) into a replay buffer, a per-domain log
 * (`<logDir>/guest-<name>.log`, as xenconsoled's `--log=guest`) and every
 * attached `xl console`, and feeds typed input into the input ring.
 *
 * A guest's console stays readable after it shuts down or crashes, until the
 * domain is destroyed; then its attached clients are told and let go.
 */
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { join } from "node:path";
import type { Dom0Drivers } from "../../dom0/drivers/index.js";
import type { XenEvtchn } from "../../dom0/drivers/evtchn.js";
import type { GrantMap, XenGnttab } from "../../dom0/drivers/gntdev.js";
import { GNTTAB_RESERVED_CONSOLE } from "../../xen/include/public/grant_table.js";
import {
  MASK_XENCONS_IDX,
  XENCONS_IN_SIZE,
  XENCONS_OUT_SIZE,
  xencons_interface,
} from "../../xen/include/public/io/console.js";

/** Bytes of output kept per domain for a console that attaches later. */
export const REPLAY_BYTES = 64 * 1024;

/** An attached console client (`xl console`). */
export interface ConsoleClient {
  /** Output from the guest. */
  output(bytes: Uint8Array): void;
  /** The console is gone (the domain was destroyed, or xenconsoled stops). */
  closed(reason: string): void;
}

const F = xencons_interface.fields;

/** Which console of a domain: its PV console ring, or the serial port of its device model. */
export type ConsoleType = "pv" | "serial";

/** What every console keeps: its replay buffer, its log and its attached clients. */
class ConsoleOutput {
  readonly clients = new Set<ConsoleClient>();
  /** Output not yet replayed away: newest last, at most REPLAY_BYTES in all. */
  private history: Uint8Array[] = [];
  private historyBytes = 0;
  log: WriteStream | undefined;

  constructor(
    readonly domid: number,
    public name: string,
  ) {}

  /** Output from the guest: kept, logged, and passed to every client. */
  output(out: Uint8Array): void {
    this.keep(out);
    this.log?.write(out);
    for (const c of this.clients) c.output(out);
  }

  private keep(b: Uint8Array): void {
    this.history.push(b);
    this.historyBytes += b.length;
    while (this.historyBytes - this.history[0]!.length >= REPLAY_BYTES) {
      this.historyBytes -= this.history.shift()!.length;
    }
  }

  /** What was printed so far (up to REPLAY_BYTES). */
  replay(): Uint8Array {
    const all = Buffer.concat(this.history);
    return all.subarray(Math.max(0, all.length - REPLAY_BYTES));
  }
}

/**
 * An HVM domain's serial port, emulated by its device model (QEMU's serial
 * console, which `xl console -t serial` reaches): output arrives from the
 * device model, typed input goes to it.
 */
class SerialConsole extends ConsoleOutput {
  constructor(
    domid: number,
    name: string,
    readonly input: (bytes: Uint8Array) => void,
  ) {
    super(domid, name);
  }
}

class GuestConsole extends ConsoleOutput {
  /** Input that did not fit the ring yet. */
  private pendingInput: Uint8Array[] = [];
  private readonly dv: DataView;

  constructor(
    domid: number,
    name: string,
    readonly map: GrantMap,
    readonly port: number,
    private readonly evtchn: XenEvtchn,
  ) {
    super(domid, name);
    const p = map.page;
    this.dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  }

  private idx(field: "in_cons" | "in_prod" | "out_cons" | "out_prod"): number {
    return this.dv.getUint32(F[field].offset, true);
  }

  /** Drains the output ring; returns whether it consumed anything. */
  drain(): boolean {
    const cons = this.idx("out_cons");
    const prod = this.idx("out_prod");
    // A guest that moves out_prod wildly gets at most one ring's worth read.
    const n = Math.min((prod - cons) >>> 0, XENCONS_OUT_SIZE);
    if (n === 0) return false;
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = this.map.page[F.out.offset + MASK_XENCONS_IDX(cons + i, XENCONS_OUT_SIZE)]!;
    }
    this.dv.setUint32(F.out_cons.offset, (cons + n) >>> 0, true);
    this.output(out);
    return true;
  }

  input(bytes: Uint8Array): void {
    if (bytes.length > 0) this.pendingInput.push(bytes);
    this.feed();
  }

  /** Moves queued input into the input ring, as much as fits; returns whether it moved any. */
  feed(): boolean {
    let moved = false;
    while (this.pendingInput.length > 0) {
      const cons = this.idx("in_cons");
      let prod = this.idx("in_prod");
      const space = XENCONS_IN_SIZE - ((prod - cons) >>> 0);
      if (space <= 0 || space > XENCONS_IN_SIZE) break;
      const b = this.pendingInput[0]!;
      const n = Math.min(space, b.length);
      for (let i = 0; i < n; i++) {
        this.map.page[F.in.offset + MASK_XENCONS_IDX(prod, XENCONS_IN_SIZE)] = b[i]!;
        prod = (prod + 1) >>> 0;
      }
      this.dv.setUint32(F.in_prod.offset, prod, true);
      moved = true;
      if (n === b.length) this.pendingInput.shift();
      else this.pendingInput[0] = b.subarray(n);
    }
    return moved;
  }
}

export class Xenconsoled {
  private readonly consoles = new Map<number, GuestConsole>();
  private readonly byPort = new Map<number, GuestConsole>();
  private readonly serials = new Map<number, SerialConsole>();
  private readonly evtchn: XenEvtchn;
  private readonly gnttab: XenGnttab;

  /** @param logDir where guest-<name>.log files go; none are written without it */
  constructor(
    drivers: Dom0Drivers,
    readonly logDir?: string,
  ) {
    this.evtchn = drivers.openEvtchn();
    this.gnttab = drivers.openGnttab();
    this.evtchn.on((port) => {
      this.evtchn.unmask(port);
      const c = this.byPort.get(port);
      if (!c) return;
      const drained = c.drain();
      const fed = c.feed();
      if (drained || fed) this.evtchn.notify(port);
    });
    if (logDir) mkdirSync(logDir, { recursive: true });
  }

  /** Connects domain `domid`'s console: its ring (reserved grant) and its `port`. */
  add(domid: number, port: number, name: string): void {
    if (this.consoles.has(domid)) throw new Error(`xenconsoled: domain ${domid} has a console`);
    const map = this.gnttab.map(domid, GNTTAB_RESERVED_CONSOLE);
    let local: number;
    try {
      local = this.evtchn.bindInterdomain(domid, port);
    } catch (e) {
      this.gnttab.unmap(map);
      throw e;
    }
    const c = new GuestConsole(domid, name, map, local, this.evtchn);
    c.log = this.openLog(name);
    this.consoles.set(domid, c);
    this.byPort.set(local, c);
    c.drain();
  }

  /**
   * Connects an HVM domain's serial port, emulated by its device model:
   * output comes through serialOutput, typed input goes to `input`. It logs
   * to the same guest-<name>.log as the PV console.
   */
  addSerial(domid: number, name: string, input: (bytes: Uint8Array) => void): void {
    if (this.serials.has(domid))
      throw new Error(`xenconsoled: domain ${domid} has a serial console`);
    const c = new SerialConsole(domid, name, input);
    c.log = this.openLog(name);
    this.serials.set(domid, c);
  }

  /** Output of domain `domid`'s serial port. */
  serialOutput(domid: number, bytes: Uint8Array): void {
    this.serials.get(domid)?.output(bytes);
  }

  private openLog(name: string): WriteStream | undefined {
    return this.logDir
      ? createWriteStream(join(this.logDir, `guest-${name}.log`), { flags: "a" })
      : undefined;
  }

  private console(domid: number, type: ConsoleType): ConsoleOutput | undefined {
    return type === "serial" ? this.serials.get(domid) : this.consoles.get(domid);
  }

  /** The console `xl console` attaches to by default: the serial port of an HVM domain, else the PV console. */
  defaultType(domid: number): ConsoleType {
    return this.serials.has(domid) ? "serial" : "pv";
  }

  has(domid: number, type: ConsoleType = "pv"): boolean {
    return this.console(domid, type) !== undefined;
  }

  /** The log file of a domain's console (when logging). */
  logPath(domid: number): string | undefined {
    const c = this.consoles.get(domid) ?? this.serials.get(domid);
    return c?.log ? String(c.log.path) : undefined;
  }

  /** The domain was renamed: later output goes to the new name's log. */
  rename(domid: number, name: string): void {
    for (const c of [this.consoles.get(domid), this.serials.get(domid)]) {
      if (!c || c.name === name) continue;
      c.name = name;
      if (this.logDir) {
        c.log?.end();
        c.log = this.openLog(name);
      }
    }
  }

  private need(domid: number, type: ConsoleType): ConsoleOutput {
    const c = this.console(domid, type);
    if (!c) {
      throw new Error(
        type === "serial"
          ? `xenconsoled: domain ${domid} has no serial console`
          : `xenconsoled: domain ${domid} has no console`,
      );
    }
    if (c instanceof GuestConsole) c.drain();
    return c;
  }

  /**
   * Attaches `client`: it gets everything kept so far, then output as it
   * comes. Returns the detach function. Throws when the domain has no such console.
   */
  attach(
    domid: number,
    client: ConsoleClient,
    replay = true,
    type: ConsoleType = "pv",
  ): () => void {
    const c = this.need(domid, type);
    if (replay) {
      const r = c.replay();
      if (r.length > 0) client.output(r);
    }
    c.clients.add(client);
    return () => c.clients.delete(client);
  }

  /** Input typed at an attached console. */
  input(domid: number, bytes: Uint8Array, type: ConsoleType = "pv"): void {
    const c = this.need(domid, type);
    if (c instanceof GuestConsole) {
      c.input(bytes);
      this.evtchn.notify(c.port);
    } else if (c instanceof SerialConsole) {
      c.input(bytes);
    }
  }

  /** Output kept for domain `domid`'s console. */
  read(domid: number, type: ConsoleType = "pv"): string {
    return Buffer.from(this.need(domid, type).replay()).toString("utf8");
  }

  /** The domain is gone: its clients are told, its ring and port let go. */
  remove(domid: number, reason = `domain ${domid} was destroyed`): void {
    const serial = this.serials.get(domid);
    if (serial) {
      this.serials.delete(domid);
      for (const cl of serial.clients) cl.closed(reason);
      serial.clients.clear();
      serial.log?.end();
    }
    const c = this.consoles.get(domid);
    if (!c) return;
    c.drain();
    this.consoles.delete(domid);
    this.byPort.delete(c.port);
    for (const cl of c.clients) cl.closed(reason);
    c.clients.clear();
    c.log?.end();
    try {
      this.evtchn.unbind(c.port);
    } catch {
      // Closed with its domain.
    }
    try {
      this.gnttab.unmap(c.map);
    } catch {
      // Unmapped with its domain.
    }
  }

  dispose(): void {
    const ids = new Set([...this.consoles.keys(), ...this.serials.keys()]);
    for (const domid of ids) this.remove(domid, "xenconsoled is stopping");
    this.evtchn.dispose();
    this.gnttab.dispose();
  }
}
