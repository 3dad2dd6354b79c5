/**
 * A xenstore client, after libxenstore's `xs_open` API: read, write, mkdir,
 * rm, directory, get/set permissions, watches delivered as events, and
 * transactions (with a retry helper for EAGAIN). It speaks xs_wire.h over
 * the unix socket named by `XENSTORED_PATH` (as libxenstore does) or the
 * host's, and keeps several requests in flight, matched by req_id.
 */
import { connect, type Socket } from "node:net";
import * as W from "../../xen/include/public/io/xs_wire.js";
import { clientSocket, unsafeSocketDir } from "../rundir.js";

/** A request xenstored refused: the error name (ENOENT, EACCES, ...) and the request. */
export class XsClientError extends Error {
  constructor(
    readonly code: string,
    readonly op: string,
    readonly path: string,
  ) {
    super(`xenstore ${op} ${path}: ${code}`);
  }
}

/** A transaction id (0 is "no transaction", libxenstore's XBT_NULL). */
export type Tx = number;
export const XBT_NULL: Tx = 0;

const OPS: Record<number, string> = {
  [W.XS_READ]: "read",
  [W.XS_WRITE]: "write",
  [W.XS_MKDIR]: "mkdir",
  [W.XS_RM]: "rm",
  [W.XS_DIRECTORY]: "directory",
  [W.XS_GET_PERMS]: "get_permissions",
  [W.XS_SET_PERMS]: "set_permissions",
  [W.XS_WATCH]: "watch",
  [W.XS_UNWATCH]: "unwatch",
  [W.XS_TRANSACTION_START]: "transaction_start",
  [W.XS_TRANSACTION_END]: "transaction_end",
};

const enc = new TextEncoder();
const dec = new TextDecoder();

export class XsClient {
  private readonly parser = new W.XsParser();
  private readonly pending = new Map<
    number,
    { resolve: (p: Uint8Array) => void; reject: (e: Error) => void; op: string; path: string }
  >();
  private nextReq = 1;
  private readonly watchers = new Map<string, (path: string, token: string) => void>();
  private closedError: Error | undefined;

  private constructor(private readonly sock: Socket) {
    sock.on("data", (b: Buffer) => this.receive(b));
    const fail = (e?: Error): void => {
      this.closedError = e ?? new Error("xenstore: the connection closed");
      for (const p of this.pending.values()) p.reject(this.closedError);
      this.pending.clear();
    };
    sock.on("close", () => fail());
    sock.on("error", (e) => fail(e));
  }

  /** xs_open: connects to `path` (default: XENSTORED_PATH, else the host's socket). */
  static open(path = clientSocket()): Promise<XsClient> {
    return new Promise((resolve, reject) => {
      // A socket in a directory someone else controls could be anyone's xenstored.
      const unsafe = unsafeSocketDir(path);
      if (unsafe) {
        reject(new Error(`xenstore: refusing ${path}: ${unsafe}`));
        return;
      }
      const s = connect(path);
      s.once("connect", () => resolve(new XsClient(s)));
      s.once("error", (e) =>
        reject(new Error(`xenstore: cannot connect to ${path}: ${(e as Error).message}`)),
      );
    });
  }

  private receive(b: Buffer): void {
    for (const r of this.parser.push(b)) {
      if ("error" in r) {
        this.sock.destroy(new Error(`xenstore: ${r.error}`));
        return;
      }
      const m = r.msg;
      if (m.type === W.XS_WATCH_EVENT) {
        const [path, token] = W.splitNul(m.payload).map((x) => dec.decode(x));
        this.watchers.get(token ?? "")?.(path ?? "", token ?? "");
        continue;
      }
      const p = this.pending.get(m.reqId);
      if (!p) continue;
      this.pending.delete(m.reqId);
      if (m.type === W.XS_ERROR) {
        p.reject(
          new XsClientError(dec.decode(W.splitNul(m.payload)[0] ?? new Uint8Array()), p.op, p.path),
        );
      } else p.resolve(m.payload);
    }
  }

  /** Sends one raw request; resolves with the reply payload, rejects with XsClientError. */
  request(type: number, tx: Tx, payload: Uint8Array, path = ""): Promise<Uint8Array> {
    if (this.closedError) return Promise.reject(this.closedError);
    const reqId = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.pending.set(reqId, { resolve, reject, op: OPS[type] ?? `type ${type}`, path });
      this.sock.write(W.encodeXsMsg({ type, reqId, txId: tx, payload }));
    });
  }

  private str(type: number, tx: Tx, args: string[]): Promise<Uint8Array> {
    return this.request(type, tx, W.joinNul(args), args[0] ?? "");
  }

  /** xs_read: the value at `path`. */
  async read(path: string, tx: Tx = XBT_NULL): Promise<Uint8Array> {
    return this.str(W.XS_READ, tx, [path]);
  }

  /** xs_read as text. */
  async readString(path: string, tx: Tx = XBT_NULL): Promise<string> {
    return dec.decode(await this.read(path, tx));
  }

  /** xs_write: sets `path` to `value`, creating it and its parents. */
  async write(path: string, value: string | Uint8Array, tx: Tx = XBT_NULL): Promise<void> {
    const p = enc.encode(path);
    const v = typeof value === "string" ? enc.encode(value) : value;
    const payload = new Uint8Array(p.length + 1 + v.length);
    payload.set(p);
    payload.set(v, p.length + 1);
    await this.request(W.XS_WRITE, tx, payload, path);
  }

  /** xs_mkdir */
  async mkdir(path: string, tx: Tx = XBT_NULL): Promise<void> {
    await this.str(W.XS_MKDIR, tx, [path]);
  }

  /** xs_rm: removes `path` and everything below it. */
  async rm(path: string, tx: Tx = XBT_NULL): Promise<void> {
    await this.str(W.XS_RM, tx, [path]);
  }

  /** xs_directory: the names of `path`'s children. */
  async directory(path: string, tx: Tx = XBT_NULL): Promise<string[]> {
    return W.splitNul(await this.str(W.XS_DIRECTORY, tx, [path])).map((x) => dec.decode(x));
  }

  /** xs_get_permissions, as strings ("n0", "r5", ...). */
  async getPerms(path: string, tx: Tx = XBT_NULL): Promise<string[]> {
    return W.splitNul(await this.str(W.XS_GET_PERMS, tx, [path])).map((x) => dec.decode(x));
  }

  /** xs_set_permissions, from strings ("n0", "r5", ...). */
  async setPerms(path: string, perms: string[], tx: Tx = XBT_NULL): Promise<void> {
    await this.str(W.XS_SET_PERMS, tx, [path, ...perms]);
  }

  /**
   * xs_watch: calls `fn(path, token)` for each event of the watch on `path`
   * (once at once, then on every change). Tokens must be unique per client.
   */
  async watch(
    path: string,
    token: string,
    fn: (path: string, token: string) => void,
  ): Promise<void> {
    this.watchers.set(token, fn);
    try {
      await this.str(W.XS_WATCH, XBT_NULL, [path, token]);
    } catch (e) {
      this.watchers.delete(token);
      throw e;
    }
  }

  /** xs_unwatch */
  async unwatch(path: string, token: string): Promise<void> {
    await this.str(W.XS_UNWATCH, XBT_NULL, [path, token]);
    this.watchers.delete(token);
  }

  /** xs_transaction_start */
  async transactionStart(): Promise<Tx> {
    return Number(
      dec.decode(W.splitNul(await this.str(W.XS_TRANSACTION_START, XBT_NULL, [""]))[0]),
    );
  }

  /** xs_transaction_end: commits (or aborts); false when the commit conflicted (EAGAIN). */
  async transactionEnd(tx: Tx, abort = false): Promise<boolean> {
    try {
      await this.str(W.XS_TRANSACTION_END, tx, [abort ? "F" : "T"]);
      return true;
    } catch (e) {
      if (e instanceof XsClientError && e.code === "EAGAIN") return false;
      throw e;
    }
  }

  /**
   * Runs `body` in a transaction and commits, running it again from the start
   * when the commit conflicts (up to `tries` times). Resolves with its result.
   */
  async transaction<T>(body: (tx: Tx) => Promise<T>, tries = 100): Promise<T> {
    for (let i = 0; i < tries; i++) {
      const tx = await this.transactionStart();
      let out: T;
      try {
        out = await body(tx);
      } catch (e) {
        await this.transactionEnd(tx, true).catch(() => false);
        throw e;
      }
      if (await this.transactionEnd(tx)) return out;
    }
    throw new XsClientError("EAGAIN", "transaction", `(${tries} tries)`);
  }

  /** xs_close */
  close(): void {
    this.sock.destroy();
  }
}
