/**
 * vchan-socket-proxy (Xen's tools/vchan/vchan-socket-proxy.c, as a Dom0
 * service): joins a vchan to a unix socket, so that any program can talk to a
 * guest by connecting to a socket.
 *
 * - mode "client" (Xen's default): listens on `socket`; for each connection,
 *   one at a time, connects as a vchan client to domain `domid`'s channel at
 *   xenstore `path` and copies bytes both ways until either side closes.
 * - mode "server": offers a vchan to domain `domid` at `path`, and when the
 *   guest has connected, connects to `socket` and copies bytes both ways.
 *
 * It runs in the host process, which is Dom0's kernel: it maps and binds
 * through Dom0's drivers, which the privcmd socket does not offer to other
 * processes.
 */
import { rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Vchan, type VchanContext } from "./vchan.js";

export interface ProxyOptions {
  mode: "client" | "server";
  domid: number;
  path: string;
  socket: string;
  /** Ring sizes in server mode (default 64 KiB each way). */
  ringSize?: number;
  /** Where failures are reported (default: stderr, as Xen's proxy does). */
  log?: (line: string) => void;
}

/** Copies bytes between `s` and `v` until either closes; resolves when both are done. */
export async function pump(s: Socket, v: Vchan): Promise<void> {
  let socketOpen = true;
  const toVchan = new Promise<void>((resolve) => {
    let queue = Promise.resolve();
    s.on("data", (b: Buffer) => {
      s.pause();
      queue = queue
        .then(() => v.writeAll(b))
        .then(
          () => void s.resume(),
          () => void s.destroy(),
        );
    });
    const done = (): void => {
      socketOpen = false;
      void queue.finally(resolve);
    };
    s.on("end", done);
    s.on("close", done);
    s.on("error", done);
  });
  const fromVchan = (async () => {
    while (socketOpen) {
      const b = v.read(65536);
      if (b.length > 0) {
        if (!s.write(b)) await new Promise((r) => s.once("drain", r));
        continue;
      }
      if (!v.isOpen()) break;
      await v.wait();
    }
    s.end();
  })();
  await Promise.race([toVchan, fromVchan]);
  v.close();
  s.destroy();
  await Promise.allSettled([toVchan, fromVchan]);
}

/** A running proxy; `close` stops it and drops its connection. */
export class VchanSocketProxy {
  private server: Server | undefined;
  private active: Socket | undefined;

  private constructor(private readonly opts: ProxyOptions) {}

  /** Starts a proxy; resolves once it listens (client mode) or has offered the vchan (server mode). */
  static async start(ctx: VchanContext, opts: ProxyOptions): Promise<VchanSocketProxy> {
    const p = new VchanSocketProxy(opts);
    const log =
      opts.log ??
      ((line: string): void => void process.stderr.write(`vchan-socket-proxy: ${line}\n`));
    if (opts.mode === "client") {
      rmSync(opts.socket, { force: true });
      p.server = createServer((s) => {
        if (p.active) {
          // One connection at a time, as Xen's proxy serves them.
          s.destroy();
          return;
        }
        p.active = s;
        let v: Vchan;
        try {
          v = Vchan.client(ctx, opts.domid, opts.path);
        } catch (e) {
          // The socket's client only sees the close; the reason goes to the log.
          log(`cannot connect to d${opts.domid}'s vchan: ${(e as Error).message}`);
          s.destroy();
          p.active = undefined;
          return;
        }
        void pump(s, v).finally(() => (p.active = undefined));
      });
      await new Promise<void>((resolve, reject) => {
        p.server!.once("error", reject);
        p.server!.listen(opts.socket, resolve);
      });
    } else {
      const size = opts.ringSize ?? 65536;
      const v = Vchan.server(ctx, opts.domid, opts.path, size, size);
      void (async () => {
        // Wait for the guest to connect, then for the socket.
        while (v.isOpen() && !v.peerConnected()) await v.wait();
        if (!v.isOpen()) return;
        const s = connect(opts.socket);
        p.active = s;
        s.once("connect", () => void pump(s, v));
        s.once("error", (e) => {
          log(`cannot connect to ${opts.socket}: ${e.message}`);
          v.close();
        });
      })();
    }
    return p;
  }

  /** Stops listening and ends the current connection. Idempotent. */
  close(): Promise<void> {
    this.active?.destroy();
    const srv = this.server;
    this.server = undefined;
    if (!srv) return Promise.resolve();
    return new Promise((r) =>
      srv.close(() => {
        rmSync(this.opts.socket, { force: true });
        r();
      }),
    );
  }
}
