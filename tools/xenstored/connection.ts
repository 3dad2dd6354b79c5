/**
 * A xenstored connection: one client, over the unix socket (always Dom0,
 * privileged) or over a domain's ring (that domain). It owns its watches and
 * transactions; closing it drops both.
 */
import { XS_WATCH_EVENT, joinNul, type XsMsg } from "../../xen/include/public/io/xs_wire.js";
import { PERM_READ, accessFor, type Caller, type Perm } from "./perms.js";
import type { Transaction } from "./transaction.js";
import type { Watcher } from "./watch.js";

/** What a connection needs of its daemon. */
export interface ConnectionHost {
  specialPerms(special: string): readonly Perm[];
  dropConnection(c: XsConnection): void;
}

export class XsConnection implements Watcher, Caller {
  /** Open transactions by id. */
  readonly transactions = new Map<number, Transaction>();
  /** The domain this one controls (SET_TARGET), if any. */
  target: number | undefined;
  closed = false;

  constructor(
    private readonly host: ConnectionHost,
    readonly domid: number,
    readonly privileged: boolean,
    private readonly out: (msg: XsMsg) => void,
    /** How the connection reads in logs: "socket 3", "domain 5". */
    readonly name: string,
    /**
     * An in-process client's watch events, as strings rather than
     * XS_WATCH_EVENT messages it would decode again (Dom0's own xenbus).
     */
    private readonly onEvent?: (path: string, token: string) => void,
  ) {}

  /** Sends one message to the client. */
  send(msg: XsMsg): void {
    if (!this.closed) this.out(msg);
  }

  canRead(perms: readonly Perm[]): boolean {
    return (accessFor(perms, this) & PERM_READ) !== 0;
  }

  canSeeSpecial(special: string): boolean {
    return this.canRead(this.host.specialPerms(special));
  }

  event(path: string, token: string): void {
    if (this.onEvent) {
      if (!this.closed) this.onEvent(path, token);
      return;
    }
    this.send({ type: XS_WATCH_EVENT, reqId: 0, txId: 0, payload: joinNul([path, token]) });
  }

  /** Ends the connection: its watches and transactions go. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.transactions.clear();
    this.host.dropConnection(this);
  }
}
