/**
 * xenstored's unix socket transport (Xen's `$XENSTORED_RUNDIR/socket`, what
 * libxenstore connects to, and Xen's C tools with XENSTORED_PATH). Every
 * socket client is Dom0, privileged, as in Xen. A client that sends a header
 * announcing more than XENSTORE_PAYLOAD_MAX bytes is disconnected (xenstore.txt);
 * nobody else notices.
 *
 * What a client that does not read its replies can make the daemon hold is
 * bounded: past XS_OUTPUT_HIGH bytes of unsent replies its requests are not
 * read (the rest of what it already sent waits, parsed, in its queue), and a
 * client whose unsent output still passes XS_OUTPUT_MAX (watch events keep
 * coming) is disconnected with a line in the log.
 */
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname } from "node:path";
import { XsParser, encodeXsMsg } from "../../xen/include/public/io/xs_wire.js";
import type { Xenstored } from "./xenstored.js";
import { heldForBacklog } from "../jsonl.js";

/** Unsent reply bytes past which a socket client's requests wait. */
export const XS_OUTPUT_HIGH = 1024 * 1024;
/** Unsent bytes past which a socket client is disconnected. */
export const XS_OUTPUT_MAX = 16 * 1024 * 1024;

export class XsSocketServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Each client's requests read but not yet handled (waiting for it to read replies). */
  private readonly queues = new Map<Socket, Array<{ payload: Uint8Array }>>();
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
    const c = d.connect(
      0,
      true,
      (m) => {
        if (s.destroyed) return;
        if (s.writableLength > XS_OUTPUT_MAX) {
          d.log(
            `${c.name}: does not read its replies (${s.writableLength} bytes unsent): disconnected`,
          );
          s.destroy();
          return;
        }
        s.write(encodeXsMsg(m));
      },
      `socket ${++this.serial}`,
    );
    const parser = new XsParser();
    const queue: Parameters<Xenstored["handle"]>[1][] = [];
    this.queues.set(s, queue);
    const pump = (): void => {
      while (queue.length > 0 && !s.destroyed) {
        if (heldForBacklog(s, XS_OUTPUT_HIGH, pump)) return;
        d.handle(c, queue.shift()!);
      }
    };
    s.on("data", (chunk: Buffer) => {
      for (const r of parser.push(chunk)) {
        if ("error" in r) {
          d.log(`${c.name}: ${r.error}: disconnected`);
          s.destroy();
          return;
        }
        queue.push(r.msg);
      }
      pump();
    });
    const gone = (): void => {
      this.sockets.delete(s);
      this.queues.delete(s);
      c.close();
    };
    s.on("close", gone);
    s.on("error", gone);
  }

  /** Bytes held for clients now: replies not yet sent and requests not yet handled. */
  unsentBytes(): number {
    let n = 0;
    for (const s of this.sockets) n += s.writableLength;
    for (const q of this.queues.values()) for (const m of q) n += m.payload.length + 16;
    return n;
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
