/**
 * xenstored's unix socket transport (Xen's `$XENSTORED_RUNDIR/socket`, what
 * libxenstore connects to, and Xen's C tools with XENSTORED_PATH). Every
 * socket client is Dom0, privileged, as in Xen. A client that sends a header
 * announcing more than XENSTORE_PAYLOAD_MAX bytes is disconnected (xenstore.txt);
 * nobody else notices.
 */
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { XsParser, encodeXsMsg } from "../../xen/include/public/io/xs_wire.js";
import type { Xenstored } from "./xenstored.js";

export class XsSocketServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private serial = 0;

  private readonly daemon: () => Xenstored;

  /**
   * @param d the daemon, or a function returning the current one (a host
   *   that restarts xenstored keeps its socket: new clients reach the new one)
   */
  constructor(
    d: Xenstored | (() => Xenstored),
    readonly path: string,
  ) {
    this.daemon = typeof d === "function" ? d : () => d;
    this.server = createServer((s) => this.accept(s));
  }

  /** Listens at `path` (mode 0600), replacing a stale socket file. */
  listen(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    rmSync(this.path, { force: true });
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.path, () => {
        chmodSync(this.path, 0o600);
        resolve();
      });
    });
  }

  private accept(s: Socket): void {
    const d = this.daemon();
    this.sockets.add(s);
    s.setNoDelay?.(true);
    const c = d.connect(0, true, (m) => s.write(encodeXsMsg(m)), `socket ${++this.serial}`);
    const parser = new XsParser();
    s.on("data", (chunk: Buffer) => {
      for (const r of parser.push(chunk)) {
        if ("error" in r) {
          d.log(`${c.name}: ${r.error}: disconnected`);
          s.destroy();
          return;
        }
        d.handle(c, r.msg);
      }
    });
    const gone = (): void => {
      this.sockets.delete(s);
      c.close();
    };
    s.on("close", gone);
    s.on("error", gone);
  }

  /** Connections open now. */
  get clients(): number {
    return this.sockets.size;
  }

  /** Stops listening, drops every client and removes the socket file. Idempotent. */
  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) =>
      this.server.close(() => {
        rmSync(this.path, { force: true });
        resolve();
      }),
    );
  }
}
