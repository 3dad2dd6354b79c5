/**
 * PV channels (xen-doc `misc/console.txt`, xl.cfg's `channel=`,
 * xen-pv-channel(7)): a named PV console device (device/console/N, N ≥ 1)
 * whose other end is a Unix socket in Dom0, as QEMU's console backend
 * serves `connection=socket`: the backend binds `path`, listens, accepts one
 * connection at a time and proxies bytes between it and the console ring.
 *
 * The frontend (the guest) sets the device up as console.txt says for
 * consoles past the first: it grants a page holding a `xencons_interface`,
 * allocates an event channel for the backend, writes `ring-ref` and `port`
 * in its directory and goes to Initialised; the backend maps the page,
 * binds the port and goes to Connected. The guest's output (`out`) goes to
 * the socket; what the socket sends is fed into `in`, as much as fits, and
 * the rest waits. Both ways, a slow side holds the other back through the
 * ring and the socket's own flow control, never through the host's memory:
 * a client that sends faster than the guest reads stops being read, and one
 * that does not read leaves the guest's output in its ring.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { lstatSync, unlinkSync } from "node:fs";
import type { Dom0Drivers } from "../drivers/index.js";
import type { XenEvtchn } from "../drivers/evtchn.js";
import type { GrantMap, XenGnttab } from "../drivers/gntdev.js";
import {
  MASK_XENCONS_IDX,
  XENCONS_IN_SIZE,
  XENCONS_OUT_SIZE,
  xencons_interface,
} from "../../xen/include/public/io/console.js";
import { frontendUint, type BackendDevice, type DeviceInfo } from "./xenbus.js";

const F = xencons_interface.fields;

/** Bytes from the socket held while the guest's input ring is full, before reading pauses. */
const MAX_PENDING_INPUT = 64 * 1024;
/** Connections that may wait for the one being served. */
const MAX_WAITING = 8;

export interface ChannelStats {
  /** Bytes from the guest to the socket, and from the socket to the guest. */
  toSocket: number;
  toGuest: number;
  connections: number;
}

export class ChannelDevice implements BackendDevice {
  readonly stats: ChannelStats = { toSocket: 0, toGuest: 0, connections: 0 };
  private map: GrantMap | undefined;
  private dv: DataView | undefined;
  private port = -1;
  private server: Server | undefined;
  private client: Socket | undefined;
  /** The client's socket holds more than its buffer wants: the ring waits until it drains. */
  private clientFull = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private settleListen: () => void = () => {};
  /** Called once the device is destroyed (its backend forgets it). */
  gone: () => void = () => {};
  /**
   * Settles once the socket listens, or cannot (the device's error node then
   * says why): listening on a path where a socket file is already takes a
   * probe, which answers later than the connect.
   */
  readonly listening: Promise<void> = new Promise((r) => (this.settleListen = r));
  /** Connections waiting for the client to go, and how each leaves the line if it closes first. */
  private waiting: Socket[] = [];
  private readonly leaving = new WeakMap<Socket, () => void>();
  private readonly gnt: XenGnttab;
  /** The channel's name and socket path, as the toolstack wrote them. */
  readonly name: string;
  readonly path: string;

  constructor(
    readonly info: DeviceInfo,
    drivers: Dom0Drivers,
    private readonly evtchn: XenEvtchn,
    private readonly ports: Map<number, ChannelDevice>,
    private readonly log: (msg: string) => void = () => {},
  ) {
    const read = (k: string): string | undefined => info.store.read(`${info.backend}/${k}`);
    const connection = read("connection");
    if (connection !== "socket")
      throw new Error(`channel connection '${connection ?? ""}' is not served: only 'socket' is`);
    const path = read("path");
    if (!path) throw new Error("channel connection=socket needs a path");
    this.name = read("name") ?? "";
    this.path = path;
    this.gnt = drivers.openGnttab();
  }

  features(): Record<string, string> {
    return {};
  }

  connect(): void {
    const { frontendId } = this.info;
    const ref = frontendUint(this.info, "ring-ref");
    const port = frontendUint(this.info, "port");
    const map = this.gnt.map(frontendId, ref, true);
    try {
      this.port = this.evtchn.bindInterdomain(frontendId, port);
    } catch (e) {
      this.gnt.unmap(map);
      throw e;
    }
    this.map = map;
    this.dv = new DataView(map.page.buffer, map.page.byteOffset, map.page.byteLength);
    this.ports.set(this.port, this);
    this.listen();
    this.kick();
  }

  /**
   * Binds the socket. A socket file already at the path is replaced only if
   * nothing listens on it (a stale one from an earlier run): a live socket
   * (another host's, another service's) is never unlinked, and anything
   * that is not a socket is refused by listen itself.
   */
  private listen(): void {
    let stale = false;
    try {
      stale = lstatSync(this.path).isSocket();
    } catch {
      // Nothing there.
    }
    const fail = (why: string): void => {
      this.log(
        `${this.info.backend}: channel '${this.name}' cannot listen on ${this.path}: ${why}`,
      );
      this.info.fatal(`cannot listen on ${this.path}: ${why}`);
      this.settleListen();
    };
    const bind = (): void => {
      if (!this.map) return this.settleListen(); // disconnected meanwhile
      const server = createServer({ pauseOnConnect: false }, (s) => this.accept(s));
      server.on("error", (e) => fail(e.message));
      server.on("listening", () => this.settleListen());
      server.listen(this.path);
      server.unref();
      this.server = server;
    };
    if (!stale) return bind();
    const probe = connect(this.path);
    probe.once("connect", () => {
      probe.destroy();
      fail("another program listens on that socket");
    });
    probe.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "ECONNREFUSED") return fail(e.message);
      try {
        unlinkSync(this.path);
      } catch {
        // Gone already.
      }
      bind();
    });
  }

  /**
   * One connection at a time, as QEMU's socket chardev: a second waits,
   * unread, until the first goes (at most MAX_WAITING wait; more are
   * turned away).
   */
  private accept(s: Socket): void {
    if (this.client) {
      if (this.waiting.length >= MAX_WAITING) {
        s.end();
        return;
      }
      s.pause();
      this.waiting.push(s);
      const leave = (): void => {
        const i = this.waiting.indexOf(s);
        if (i >= 0) this.waiting.splice(i, 1);
      };
      this.leaving.set(s, leave);
      s.once("close", leave);
      s.once("error", leave);
      return;
    }
    this.client = s;
    this.stats.connections++;
    s.on("data", (b: Buffer) => {
      this.pending.push(b);
      this.pendingBytes += b.length;
      this.feed();
      if (this.pendingBytes > MAX_PENDING_INPUT) s.pause();
    });
    const gone = (): void => {
      if (this.client !== s) return;
      this.client = undefined;
      this.clientFull = false;
      this.pending = [];
      this.pendingBytes = 0;
      // The next in line, if it is still there.
      const next = this.waiting.shift();
      const leave = next && this.leaving.get(next);
      if (next && leave) {
        next.off("close", leave);
        next.off("error", leave);
        this.leaving.delete(next);
      }
      if (next && !next.destroyed) {
        this.accept(next);
        next.resume();
      }
    };
    s.on("close", gone);
    s.on("error", gone);
    // What the guest wrote before anyone connected goes to the first client.
    this.drain();
  }

  private idx(field: "in_cons" | "in_prod" | "out_cons" | "out_prod"): number {
    return this.dv!.getUint32(F[field].offset, true);
  }

  /** The guest's output to the socket; whether it moved any. */
  private drain(): boolean {
    if (!this.dv || !this.client || this.clientFull) return false;
    const cons = this.idx("out_cons");
    const prod = this.idx("out_prod");
    // A guest that moves out_prod wildly gets at most one ring's worth read.
    const n = Math.min((prod - cons) >>> 0, XENCONS_OUT_SIZE);
    if (n === 0) return false;
    const out = Buffer.alloc(n);
    const page = this.map!.page;
    for (let i = 0; i < n; i++)
      out[i] = page[F.out.offset + MASK_XENCONS_IDX(cons + i, XENCONS_OUT_SIZE)]!;
    this.dv.setUint32(F.out_cons.offset, (cons + n) >>> 0, true);
    this.stats.toSocket += n;
    // A client that does not read holds the guest back (its ring fills),
    // never the host's memory: draining stops until the socket drains.
    if (!this.client.write(out)) {
      this.clientFull = true;
      this.client.once("drain", () => {
        this.clientFull = false;
        this.kick();
      });
    }
    return true;
  }

  /** The socket's bytes into the guest's input ring, as much as fits; whether it moved any. */
  private feed(): boolean {
    if (!this.dv) return false;
    const page = this.map!.page;
    let moved = false;
    while (this.pending.length > 0) {
      const cons = this.idx("in_cons");
      let prod = this.idx("in_prod");
      const space = XENCONS_IN_SIZE - ((prod - cons) >>> 0);
      if (space <= 0 || space > XENCONS_IN_SIZE) break;
      const b = this.pending[0]!;
      const n = Math.min(space, b.length);
      for (let i = 0; i < n; i++) {
        page[F.in.offset + MASK_XENCONS_IDX(prod, XENCONS_IN_SIZE)] = b[i]!;
        prod = (prod + 1) >>> 0;
      }
      this.dv.setUint32(F.in_prod.offset, prod, true);
      this.pendingBytes -= n;
      this.stats.toGuest += n;
      moved = true;
      if (n === b.length) this.pending.shift();
      else this.pending[0] = b.subarray(n);
    }
    if (moved && this.port >= 0) this.evtchn.notify(this.port);
    if (this.pendingBytes <= MAX_PENDING_INPUT) this.client?.resume();
    return moved;
  }

  /** An event from the guest: it wrote output, or read input and made room. */
  kick(): void {
    const drained = this.drain();
    this.feed();
    if (drained && this.port >= 0) this.evtchn.notify(this.port);
  }

  disconnect(): void {
    for (const w of this.waiting.splice(0)) w.destroy();
    this.client?.destroy();
    this.client = undefined;
    if (this.server) {
      this.server.close();
      this.server = undefined;
      // Ours: Node's server does not remove its socket file.
      try {
        if (lstatSync(this.path).isSocket()) unlinkSync(this.path);
      } catch {
        // Already gone.
      }
    }
    if (this.port >= 0) {
      this.ports.delete(this.port);
      try {
        this.evtchn.unbind(this.port);
      } catch {
        // Closed with the frontend's domain.
      }
      this.port = -1;
    }
    if (this.map) this.gnt.unmap(this.map);
    this.map = undefined;
    this.dv = undefined;
  }

  destroy(): void {
    this.disconnect();
    this.settleListen();
    this.gone();
    this.gnt.dispose();
  }
}

/** The channel backend: one event channel handle for all its devices. */
export class ChannelBackend {
  readonly evtchn: XenEvtchn;
  private readonly ports = new Map<number, ChannelDevice>();
  private readonly byBackend = new Map<string, ChannelDevice>();

  constructor(readonly drivers: Dom0Drivers) {
    this.evtchn = drivers.openEvtchn();
    this.evtchn.on((port) => {
      this.evtchn.unmask(port);
      this.ports.get(port)?.kick();
    });
  }

  device(info: DeviceInfo, log?: (msg: string) => void): ChannelDevice {
    const d = new ChannelDevice(info, this.drivers, this.evtchn, this.ports, log);
    this.byBackend.set(info.backend, d);
    d.gone = (): void => {
      if (this.byBackend.get(info.backend) === d) this.byBackend.delete(info.backend);
    };
    return d;
  }

  /**
   * Resolves once the device at backend path `backend` listens on its
   * socket or has failed to (its error node says why), at once for a
   * device not (or no longer) there: what the toolstack waits for before it
   * calls a channel's device made, as a device model binds its chardevs
   * before libxl goes on.
   */
  async listening(backend: string): Promise<void> {
    await this.byBackend.get(backend)?.listening;
  }

  dispose(): void {
    this.evtchn.dispose();
  }
}
