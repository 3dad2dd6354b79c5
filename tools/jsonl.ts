/**
 * The framing of the host daemon's control sockets (privcmd, libxl,
 * xenconsoled's handshake): one JSON object per line. A line longer than
 * `maxLine` bytes, or one that is not a JSON object, is a protocol error
 * that the receiver reports and answers by closing the connection.
 */
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { unsafeSocketDir } from "./rundir.js";
import { dirname } from "node:path";

/** Longest request line a daemon socket accepts (privcmd's 256 KiB bounce buffer is ~350 KiB of base64). */
export const MAX_LINE = 1024 * 1024;
/** Longest line a client accepts from the host (`xl list -l` of many domains). */
export const MAX_REPLY_LINE = 64 * 1024 * 1024;
/**
 * Bytes of unsent replies a connection may have before the daemon stops
 * reading its requests (until the client reads): a client that sends
 * without reading cannot make the daemon queue without limit.
 */
export const MAX_OUTPUT_BACKLOG = 1024 * 1024;
/**
 * Unfinished request bytes all of the daemon's connections together may
 * hold: past it, the connection that would add more is closed, so that many
 * connections with long unfinished lines cannot take the host's memory.
 */
export const MAX_TOTAL_INPUT = 32 * 1024 * 1024;
/** Connections one daemon socket serves at once; more are closed at accept. */
export const MAX_CONNECTIONS = 128;

/** Unfinished input held by every readLines of this process. */
let totalInput = 0;

/** Sockets not being read until their unsent output drains (heldForBacklog). */
const held = new WeakSet<Socket>();

/**
 * True when `s` has more than `limit` bytes of output unsent: it is then
 * not read until that output drains, when `resume` is called. A daemon
 * calls this before handling each request, so that a client that sends
 * without reading its replies makes it hold no more than `limit` for it.
 */
export function heldForBacklog(s: Socket, limit: number, resume: () => void): boolean {
  if (s.writableLength <= limit) return false;
  if (!held.has(s)) {
    held.add(s);
    s.pause();
    s.once("drain", () => {
      held.delete(s);
      s.resume();
      resume();
    });
  }
  return true;
}

/** How readLines bounds what it holds. */
export interface LineLimits {
  /** Longest line (default MAX_LINE). */
  readonly maxLine?: number;
  /** Count unfinished input against MAX_TOTAL_INPUT (a daemon's side; default true). */
  readonly shared?: boolean;
}

/**
 * Calls `onMessage` with each JSON object read from `s`; `onError` on a bad
 * line (then closes). While `s` has more than MAX_OUTPUT_BACKLOG bytes of
 * replies unsent, it is not read.
 */
export function readLines(
  s: Socket,
  onMessage: (m: Record<string, unknown>) => void,
  onError: (why: string) => void,
  limits: LineLimits = {},
): () => Buffer {
  const maxLine = limits.maxLine ?? MAX_LINE;
  const shared = limits.shared ?? true;
  let buf: Buffer = Buffer.alloc(0);
  let stopped = false;
  const setBuf = (b: Buffer): void => {
    if (shared) totalInput += b.length - buf.length;
    buf = b;
  };
  const fail = (why: string): void => {
    stopped = true;
    setBuf(Buffer.alloc(0));
    onError(why);
    s.destroy();
  };
  const pump = (): void => {
    while (!stopped) {
      if (heldForBacklog(s, MAX_OUTPUT_BACKLOG, pump)) return;
      const nl = buf.indexOf(10);
      if (nl < 0) break;
      const line = buf.subarray(0, nl).toString("utf8");
      setBuf(buf.subarray(nl + 1));
      let m: unknown;
      try {
        m = JSON.parse(line);
      } catch {
        m = undefined;
      }
      if (typeof m !== "object" || m === null || Array.isArray(m)) {
        fail(`not a JSON object: ${JSON.stringify(line.slice(0, 80))}`);
        return;
      }
      onMessage(m as Record<string, unknown>);
    }
    if (stopped) return;
    if (buf.length > maxLine) fail(`a line longer than ${maxLine} bytes`);
    else if (shared && totalInput > MAX_TOTAL_INPUT)
      fail(
        `more unfinished input than the daemon holds for all clients (${MAX_TOTAL_INPUT} bytes)`,
      );
  };
  const onData = (chunk: Buffer): void => {
    if (stopped) return;
    setBuf(buf.length === 0 ? chunk : Buffer.concat([buf, chunk]));
    pump();
  };
  s.on("data", onData);
  s.once("close", () => {
    if (!stopped) setBuf(Buffer.alloc(0));
    stopped = true;
  });
  /** Stops reading lines and hands back what was read past the last one. */
  return () => {
    stopped = true;
    s.off("data", onData);
    const rest = buf;
    setBuf(Buffer.alloc(0));
    return rest;
  };
}

export function sendLine(s: Socket, m: unknown): void {
  if (!s.destroyed) s.write(`${JSON.stringify(m)}\n`);
}

/** A unix socket server at `path` (dir 0700, socket 0600), replacing a stale socket file. */
export async function listenUnix(path: string, onConnection: (s: Socket) => void): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  rmSync(path, { force: true });
  const server = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      chmodSync(path, 0o600);
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

/**
 * A service on a unix socket (the daemon's privcmd, libxl and xenconsoled
 * sockets): `accept` gets each new connection; `close` ends them all.
 */
export abstract class UnixService {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(readonly path: string) {}

  protected abstract accept(s: Socket): void;

  async listen(): Promise<void> {
    this.server = await listenUnix(this.path, (s) => {
      if (this.sockets.size >= MAX_CONNECTIONS) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => {});
      this.accept(s);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/** Connects to unix socket `path`; rejects with an error naming `what` and the path. */
export function connectUnix(path: string, what: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // A socket in a directory someone else controls could be anyone's.
    const unsafe = unsafeSocketDir(path);
    if (unsafe) {
      reject(new Error(`${what}: refusing ${path}: ${unsafe}`));
      return;
    }
    const s = createConnection(path);
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      const why =
        e.code === "ENOENT" || e.code === "ECONNREFUSED"
          ? "is the host running? (tsxen start)"
          : e.code === "EACCES"
            ? "permission denied: only the host's owner may use it"
            : e.message;
      reject(new Error(`cannot connect to ${what} at ${path}: ${why}`));
    });
  });
}

/**
 * A client for a request/response socket: each request gets an `id`; the
 * answer with the same id resolves it. The connection closing rejects
 * everything still waiting.
 */
export class LineClient {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();

  constructor(
    readonly socket: Socket,
    readonly what: string,
  ) {
    readLines(
      socket,
      (m) => {
        const w = this.waiting.get(Number(m.id));
        if (!w) return;
        this.waiting.delete(Number(m.id));
        w.resolve(m);
      },
      (why) => this.failAll(`${what} sent ${why}`),
      { maxLine: MAX_REPLY_LINE, shared: false },
    );
    socket.on("close", () => this.failAll(`${what} closed the connection`));
    socket.on("error", () => {});
  }

  private failAll(why: string): void {
    for (const w of this.waiting.values()) w.reject(new Error(why));
    this.waiting.clear();
  }

  request(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // A closed connection would never answer (nor keep the process waiting).
      if (this.socket.destroyed || this.socket.writableEnded) {
        reject(new Error(`${this.what} closed the connection`));
        return;
      }
      this.waiting.set(id, { resolve, reject });
      sendLine(this.socket, { ...m, id });
    });
  }

  close(): void {
    this.socket.end();
    this.socket.unref();
  }
}
