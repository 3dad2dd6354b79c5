/**
 * xenstored: the store, its watches, quotas, transactions and the domains it
 * talks to, behind one entry point, `handle(connection, message)`, that
 * every transport (unix socket, guest rings) feeds. The message types are in
 * ops.ts; this file holds the tree operations they share, with xenstore.txt's
 * semantics and Xen's C xenstored's permission and error choices.
 */
import {
  XS_ERROR,
  XS_RESET_WATCHES,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  joinNul,
  type XsMsg,
} from "../../xen/include/public/io/xs_wire.js";
import { XsConnection, type ConnectionHost } from "./connection.js";
import { canonicalize, parentOf, baseName, SPECIAL_INTRODUCE, SPECIAL_RELEASE } from "./path.js";
import { DOM0, PERM_READ, PERM_WRITE, accessFor, type Caller, type Perm } from "./perms.js";
import { Quotas, QuotaError } from "./quota.js";
import { Store, childPath, type NodeView, type XsNode } from "./store.js";
import { Transaction } from "./transaction.js";
import { Watches } from "./watch.js";
import { SUPPORTED_FEATURES, opTable } from "./ops.js";
import { XsError } from "./errors.js";

export { XsError };

/** What xenstored needs to talk to domains over their rings (ring.ts), if it can. */
export interface DomainTransport {
  /** Connects to domain `domid`'s ring page `gfn` and unbound port `port`; throws XsError. */
  introduce(d: Xenstored, domid: number, gfn: number, port: number): XsConnection;
  /** Disconnects from domain `domid`. */
  release(domid: number): void;
  /** Whether domain `domid` exists (for permissions naming it). */
  exists(domid: number): boolean;
}

/** One domain xenstored knows: introduced, or given features before introduction. */
export interface XsDomain {
  domid: number;
  gfn: number;
  port: number;
  features: number;
  introduced: boolean;
  connection: XsConnection | undefined;
  /** Set when @releaseDomain was sent for its shutdown (RESUME clears it). */
  shutdownReported: boolean;
}

const TEXT_ENCODER = new TextEncoder();
const TEXT_DECODER = new TextDecoder();

/** Requests that change the watches or transactions in flight. */
const IN_FLIGHT_OPS = new Set([
  XS_WATCH,
  XS_UNWATCH,
  XS_RESET_WATCHES,
  XS_TRANSACTION_START,
  XS_TRANSACTION_END,
]);

export class Xenstored implements ConnectionHost {
  readonly store = new Store();
  readonly watches = new Watches();
  readonly quotas: Quotas;
  readonly domains = new Map<number, XsDomain>();
  readonly connections = new Set<XsConnection>();
  /**
   * Called after a change to what is in flight: a connection came or went,
   * a watch was set or removed, a transaction started or ended (the web
   * console's view of them).
   */
  readonly inFlightListeners = new Set<() => void>();
  private readonly special = new Map<string, Perm[]>([
    [SPECIAL_INTRODUCE, [{ domid: 0, access: 0 }]],
    [SPECIAL_RELEASE, [{ domid: 0, access: 0 }]],
  ]);
  private nextTx = 0;
  logging = true;
  readonly logLines: string[] = [];

  constructor(
    readonly transport: DomainTransport | undefined = undefined,
    private readonly logSink: (line: string) => void = () => {},
  ) {
    this.quotas = new Quotas((m) => this.log(m));
    const empty = new Uint8Array(0);
    this.store.put("/", { value: empty, perms: [{ domid: 0, access: 0 }], children: ["tool"] });
    this.store.put("/tool", {
      value: empty,
      perms: [{ domid: 0, access: 0 }],
      children: ["xenstored"],
    });
    this.store.put("/tool/xenstored", {
      value: empty,
      perms: [{ domid: 0, access: 0 }],
      children: [],
    });
  }

  /** Writes a line to the daemon's log (kept in memory, the last 1,000 lines). */
  log(line: string): void {
    if (!this.logging) return;
    this.logLines.push(line);
    if (this.logLines.length > 1000) this.logLines.shift();
    this.logSink(line);
  }

  /** A new client connection; `out` sends it messages. */
  connect(
    domid: number,
    privileged: boolean,
    out: (msg: XsMsg) => void,
    name: string,
    /** An in-process client's watch events as strings (XsConnection's onEvent). */
    onEvent?: (path: string, token: string) => void,
  ): XsConnection {
    const c = new XsConnection(this, domid, privileged, out, name, onEvent);
    this.connections.add(c);
    this.inFlightChanged();
    return c;
  }

  dropConnection(c: XsConnection): void {
    this.watches.removeAll(c);
    this.connections.delete(c);
    this.inFlightChanged();
  }

  /** The special paths' permissions, for saving. */
  specialEntries(): Array<[string, readonly Perm[]]> {
    return [...this.special];
  }

  /** Sets a special path's permissions (restoring state). */
  setSpecialPerms(special: string, perms: Perm[]): void {
    this.special.set(special, perms);
  }

  specialPerms(special: string): readonly Perm[] {
    return (
      this.special.get(special.startsWith(SPECIAL_RELEASE) ? SPECIAL_RELEASE : special) ?? [
        { domid: 0, access: 0 },
      ]
    );
  }

  /** Handles one request from `c` and sends its reply (or error). Never throws. */
  handle(c: XsConnection, msg: XsMsg): void {
    const reply = (type: number, payload: Uint8Array): void =>
      c.send({ type, reqId: msg.reqId, txId: msg.txId, payload });
    const op = opTable[msg.type];
    let after: (() => void) | undefined;
    try {
      if (!op) throw new XsError("ENOSYS", `unknown message type ${msg.type}`);
      const r = op(this, c, msg);
      after = r.after;
      reply(msg.type, r.payload);
    } catch (e) {
      const name = e instanceof XsError ? e.xsName : e instanceof QuotaError ? e.xsError : "EINVAL";
      if (!(e instanceof XsError) && !(e instanceof QuotaError)) {
        this.log(`BUG: ${c.name} request type ${msg.type} failed: ${String(e)}`);
      }
      reply(XS_ERROR, joinNul([name]));
    }
    // Events a request causes follow its reply (a watch's first event, say).
    after?.();
    if (IN_FLIGHT_OPS.has(msg.type)) this.inFlightChanged();
  }

  private inFlightChanged(): void {
    for (const l of this.inFlightListeners) l();
  }

  // --- the tree -------------------------------------------------------------

  /** The absolute path of `raw` for `c`; EINVAL naming the problem. */
  path(c: Caller, raw: string, allowSpecial = false): string {
    const r = canonicalize(raw, c.domid);
    if ("error" in r) throw new XsError("EINVAL", r.error);
    if (r.path.startsWith("@") && !allowSpecial) throw new XsError("EINVAL", `special path ${raw}`);
    if (!raw.startsWith("/") && !raw.startsWith("@")) {
      this.quotas.check(c.domid, c.privileged, "path-max", raw.length);
    }
    return r.path;
  }

  /** Where `c`'s request with tx id `txId` reads and writes. */
  view(c: XsConnection, txId: number): NodeView {
    if (txId === 0) return this.store;
    const tx = c.transactions.get(txId);
    if (!tx) throw new XsError("ENOENT", `no transaction ${txId}`);
    return tx;
  }

  /** Fires the watches for a change at `p` now, or at commit for a transaction. */
  private event(view: NodeView, p: string, perms: readonly Perm[], recursive: boolean): void {
    if (view instanceof Transaction) view.events.push(() => this.watches.fire(p, perms, recursive));
    else if (this.watches.count > 0) this.watches.fire(p, perms, recursive);
  }

  /** The node at `p` if `c` has `want` access to it; ENOENT / EACCES otherwise. */
  node(view: NodeView, c: Caller, p: string, want: number): XsNode {
    const n = view.get(p);
    if (!n) throw new XsError("ENOENT", p);
    if ((accessFor(n.perms, c) & want) !== want) throw new XsError("EACCES", p);
    return n;
  }

  private checkTxQuota(view: NodeView, c: Caller): void {
    if (view instanceof Transaction) {
      this.quotas.check(c.domid, c.privileged, "transaction-nodes", view.touched);
    }
  }

  private nodeSize(n: Omit<XsNode, "generation">): number {
    return n.value.length + n.children.reduce((s, x) => s + x.length + 1, 0) + 8 * n.perms.length;
  }

  private ownedNow(view: NodeView, domid: number): number {
    const delta = view instanceof Transaction ? (view.ownedDelta.get(domid) ?? 0) : 0;
    return this.store.ownedBy(domid) + delta;
  }

  /**
   * Creates `p` and any missing parents (WRITE, MKDIR). New nodes inherit
   * their parent's permissions; an unprivileged creator becomes their owner.
   * `c` needs write access to the nearest existing ancestor. Returns the node.
   */
  private create(view: NodeView, c: Caller, p: string, value: Uint8Array): XsNode {
    const missing: string[] = [];
    let at = p;
    while (!view.get(at)) {
      missing.push(at);
      at = parentOf(at);
    }
    const anc = this.node(view, c, at, PERM_WRITE);
    let perms = anc.perms.map((x) => ({ ...x }));
    if (!c.privileged && perms[0]!.domid !== c.domid)
      perms = [{ domid: c.domid, access: perms[0]!.access }, ...perms.slice(1)];
    const owner = perms[0]!.domid;
    this.quotas.check(owner, c.privileged, "nodes", this.ownedNow(view, owner) + missing.length);
    for (let i = missing.length - 1; i >= 0; i--) {
      const np = missing[i]!;
      const parent = view.get(parentOf(np))!;
      view.put(parentOf(np), { ...parent, children: [...parent.children, baseName(np)] });
      view.put(np, { value: i === 0 ? value : new Uint8Array(0), perms, children: [] });
    }
    this.checkTxQuota(view, c);
    return view.get(p)!;
  }

  /** WRITE: sets `p`'s value, creating it and its parents as needed. */
  /** `p`'s value in the committed tree as text (Dom0's read), or undefined if there is no node. */
  readText(p: string): string | undefined {
    const n = this.store.get(p);
    return n ? TEXT_DECODER.decode(n.value) : undefined;
  }

  /** Writes `value` at `p` in the committed tree as Dom0, firing watches as any write does. */
  writeText(p: string, value: string): void {
    this.write(this.store, DOM0, p, TEXT_ENCODER.encode(value));
  }

  write(view: NodeView, c: Caller, p: string, value: Uint8Array): void {
    const old = view.get(p);
    let perms: readonly Perm[];
    if (old) {
      if ((accessFor(old.perms, c) & PERM_WRITE) === 0) throw new XsError("EACCES", p);
      const next = { value, perms: old.perms, children: old.children };
      if (!c.privileged) this.quotas.check(c.domid, false, "node-size", this.nodeSize(next));
      view.put(p, next);
      perms = old.perms;
    } else {
      this.quotas.check(c.domid, c.privileged, "node-size", value.length + 8);
      perms = this.create(view, c, p, value).perms;
    }
    this.checkTxQuota(view, c);
    this.event(view, p, perms, false);
  }

  /** MKDIR: makes sure `p` exists; an existing node is left as it is. */
  mkdir(view: NodeView, c: Caller, p: string): void {
    if (view.get(p)) {
      this.checkTxQuota(view, c);
      return;
    }
    const n = this.create(view, c, p, new Uint8Array(0));
    this.event(view, p, n.perms, false);
  }

  /** RM: removes `p` and everything below it; a missing node with a present parent is fine. */
  rm(view: NodeView, c: Caller, p: string): void {
    if (p === "/") throw new XsError("EINVAL", "the root cannot be removed");
    const n = view.get(p);
    if (!n) {
      if (!view.get(parentOf(p))) throw new XsError("ENOENT", parentOf(p));
      this.checkTxQuota(view, c);
      return;
    }
    this.node(view, c, p, PERM_WRITE);
    this.removeTree(view, p);
    const parent = view.get(parentOf(p))!;
    view.put(parentOf(p), {
      ...parent,
      children: parent.children.filter((x) => x !== baseName(p)),
    });
    this.checkTxQuota(view, c);
    this.event(view, p, n.perms, true);
  }

  private removeTree(view: NodeView, p: string): void {
    const n = view.get(p);
    if (!n) return;
    for (const ch of n.children) this.removeTree(view, childPath(p, ch));
    view.del(p);
  }

  /** SET_PERMS on a node or a special path. */
  setPerms(view: NodeView, c: Caller, p: string, perms: Perm[]): void {
    if (perms.length === 0) throw new XsError("EINVAL", "no permissions given");
    this.quotas.check(c.domid, c.privileged, "permissions", perms.length);
    // As Xen's: the owner must exist; other entries may name any domain.
    if (!this.domainExists(perms[0]!.domid)) {
      throw new XsError("ENOENT", `owner domain ${perms[0]!.domid}`);
    }
    if (p.startsWith("@")) {
      if (!c.privileged) throw new XsError("EACCES", p);
      this.special.set(p.startsWith(SPECIAL_RELEASE) ? SPECIAL_RELEASE : p, perms);
      return;
    }
    const n = view.get(p);
    if (!n) throw new XsError("ENOENT", p);
    const owner = n.perms[0]!.domid;
    if (!c.privileged && owner !== c.domid && owner !== c.target) throw new XsError("EACCES", p);
    if (!c.privileged && perms[0]!.domid !== owner)
      throw new XsError("EPERM", "only Dom0 changes owners");
    if (!c.privileged && perms[0]!.domid !== n.perms[0]!.domid) {
      this.quotas.check(perms[0]!.domid, false, "nodes", this.ownedNow(view, perms[0]!.domid) + 1);
    }
    view.put(p, { ...n, perms });
    this.checkTxQuota(view, c);
    this.event(view, p, perms, false);
  }

  /** GET_PERMS of a node or a special path. */
  getPerms(view: NodeView, c: Caller, p: string): readonly Perm[] {
    if (p.startsWith("@")) return this.specialPerms(p);
    return this.node(view, c, p, PERM_READ).perms;
  }

  // --- transactions -----------------------------------------------------------

  /** TRANSACTION_START: a new transaction of `c`. */
  startTransaction(c: XsConnection): Transaction {
    this.quotas.check(c.domid, c.privileged, "transactions", c.transactions.size + 1);
    do this.nextTx = (this.nextTx + 1) >>> 0;
    while (this.nextTx === 0 || c.transactions.has(this.nextTx));
    const tx = new Transaction(this.nextTx, this.store);
    c.transactions.set(tx.id, tx);
    return tx;
  }

  /** TRANSACTION_END: commits (EAGAIN on conflict) or aborts. */
  endTransaction(c: XsConnection, txId: number, commit: boolean): void {
    const tx = c.transactions.get(txId);
    if (!tx) throw new XsError("ENOENT", `no transaction ${txId}`);
    c.transactions.delete(txId);
    if (!commit) return;
    if (tx.conflicts()) throw new XsError("EAGAIN", `transaction ${txId} conflicts`);
    for (const [domid, delta] of tx.ownedDelta) {
      if (delta > 0)
        this.quotas.check(domid, c.privileged, "nodes", this.store.ownedBy(domid) + delta);
    }
    tx.commit();
    for (const fire of tx.events) fire();
  }

  // --- domains ------------------------------------------------------------------

  /** Whether xenstored considers `domid` to exist (Dom0, introduced, or per the transport). */
  domainExists(domid: number): boolean {
    return (
      domid === 0 ||
      this.domains.get(domid)?.introduced === true ||
      (this.transport?.exists(domid) ?? false)
    );
  }

  /** INTRODUCE: start talking to `domid` over its ring; fires @introduceDomain. */
  introduce(domid: number, gfn: number, port: number): void {
    const known = this.domains.get(domid);
    if (known?.introduced) {
      if (known.gfn === gfn && known.port === port) return;
      throw new XsError("EEXIST", `domain ${domid} is already introduced`);
    }
    const d: XsDomain = known ?? {
      domid,
      gfn,
      port,
      features: SUPPORTED_FEATURES,
      introduced: false,
      connection: undefined,
      shutdownReported: false,
    };
    d.gfn = gfn;
    d.port = port;
    d.connection = this.transport?.introduce(this, domid, gfn, port);
    d.introduced = true;
    this.domains.set(domid, d);
    this.log(`domain ${domid} introduced (gfn ${gfn}, port ${port})`);
    this.watches.fireSpecial(SPECIAL_INTRODUCE, domid);
  }

  /**
   * Reconnects to an introduced domain after a restart (persist.ts): as
   * INTRODUCE, keeping its features, without a new @introduceDomain.
   */
  reintroduce(
    domid: number,
    gfn: number,
    port: number,
    features: number,
    shutdownReported: boolean,
  ): void {
    const d: XsDomain = {
      domid,
      gfn,
      port,
      features,
      introduced: true,
      connection: undefined,
      shutdownReported,
    };
    this.domains.set(domid, d);
    d.connection = this.transport?.introduce(this, domid, gfn, port);
    this.log(`domain ${domid} reconnected after a restart`);
  }

  /**
   * RELEASE (or the domain's death): disconnects, removes the nodes the
   * domain owns with everything below them, and fires @releaseDomain.
   */
  release(domid: number): void {
    const d = this.domains.get(domid);
    if (!d?.introduced) throw new XsError("ENOENT", `domain ${domid} is not introduced`);
    d.connection?.close();
    this.transport?.release(domid);
    this.domains.delete(domid);
    for (const c of this.connections) if (c.target === domid) c.target = undefined;
    const owned: string[] = [];
    for (const p of this.store.paths())
      if (this.store.get(p)!.perms[0]!.domid === domid) owned.push(p);
    // Outermost first; a removed subtree takes its inner owned nodes along.
    for (const p of owned) {
      if (!this.store.get(p) || p === "/") continue;
      this.removeTree(this.store, p);
      const parent = this.store.get(parentOf(p))!;
      this.store.put(parentOf(p), {
        ...parent,
        children: parent.children.filter((x) => x !== baseName(p)),
      });
    }
    this.quotas.forget(domid);
    this.log(`domain ${domid} released`);
    this.watches.fireSpecial(SPECIAL_RELEASE, domid);
  }

  /** A domain shut down: @releaseDomain once, until RESUME. */
  domainShutdown(domid: number): void {
    const d = this.domains.get(domid);
    if (!d?.introduced || d.shutdownReported) return;
    d.shutdownReported = true;
    this.watches.fireSpecial(SPECIAL_RELEASE, domid);
  }
}
