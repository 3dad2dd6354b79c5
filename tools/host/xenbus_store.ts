/**
 * Dom0's kernel's xenbus (Linux's xenbus_xs.c in Dom0): the backends'
 * xenstore access, as a privileged in-process connection to the host's
 * xenstored, with real watches (registered with XS_WATCH and fired by
 * xenstored as for any client; their callbacks run later, never inside
 * the change that fired them).
 */
import type { XenbusStore } from "../../dom0/backends/xenbus.js";
import { XS_UNWATCH, XS_WATCH } from "../../xen/include/public/io/xs_wire.js";
import type { Xenstored } from "../xenstored/xenstored.js";
import type { XsConnection } from "../xenstored/connection.js";
import { DOM0 } from "../xenstored/perms.js";

const enc = new TextEncoder();

export class LocalXenbusStore implements XenbusStore {
  private readonly conn: XsConnection;
  private readonly watchers = new Map<string, (path: string) => void>();
  private nextToken = 1;
  private reqId = 1;

  constructor(private readonly xs: Xenstored) {
    this.conn = xs.connect(
      0,
      true,
      // Replies to its WATCH and UNWATCH: nothing to do with them.
      () => {},
      "dom0-xenbus",
      (path, token) => {
        const fn = this.watchers.get(token);
        if (fn) setImmediate(() => this.watchers.get(token) === fn && fn(path));
      },
    );
  }

  read(path: string): string | undefined {
    return this.xs.readText(path);
  }

  write(path: string, value: string): void {
    this.xs.writeText(path, value);
  }

  rm(path: string): void {
    if (this.xs.store.get(path)) this.xs.rm(this.xs.store, DOM0, path);
  }

  directory(path: string): string[] {
    return [...(this.xs.store.get(path)?.children ?? [])];
  }

  private send(type: number, parts: string[]): void {
    const payload = enc.encode(parts.map((p) => `${p}\0`).join(""));
    this.xs.handle(this.conn, { type, reqId: this.reqId++, txId: 0, payload });
  }

  watch(path: string, fn: (path: string) => void): () => void {
    const token = `xenbus-${this.nextToken++}`;
    this.watchers.set(token, fn);
    this.send(XS_WATCH, [path, token]);
    return () => {
      if (!this.watchers.delete(token)) return;
      this.send(XS_UNWATCH, [path, token]);
    };
  }

  dispose(): void {
    this.watchers.clear();
    this.xs.dropConnection(this.conn);
  }
}
