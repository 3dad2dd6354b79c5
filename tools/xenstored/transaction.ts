/**
 * xenstore transactions (TRANSACTION_START / _END; Xen's
 * `xenstored_transaction.c` design with generation counts).
 *
 * A transaction reads and writes through its own overlay: a write lands in
 * the overlay, a read sees the overlay first, then what the transaction saw
 * of the store when it first touched that path (as Xen's xenstored keeps a
 * copy of each node a transaction accessed, a later write outside does not
 * show through). The first time the transaction touches a path (read or
 * write, a node or its absence) it notes that path's generation in the store
 * (-1 for "absent").
 *
 * The commit rule: a commit fails with EAGAIN if, and only if, some path the
 * transaction touched has a different generation in the store now (it was
 * written, created or removed by someone else meanwhile). Otherwise every
 * overlay change is applied to the store, and watches fire then. Touching a
 * path includes the parent whose list of children a create or remove
 * changes, so two transactions that create children of one node conflict;
 * transactions working in disjoint subtrees never do.
 */
import type { NodeView, Store, XsNode } from "./store.js";

export class Transaction implements NodeView {
  /** Path → node written (or null: removed) in this transaction. */
  private readonly overlay = new Map<string, Omit<XsNode, "generation"> | null>();
  /** Path → generation in the store when first touched (-1: absent). */
  private readonly seen = new Map<string, number>();
  /** Path → the store's node when first touched (undefined: absent). */
  private readonly snapshot = new Map<string, XsNode | undefined>();
  /** Nodes created minus nodes removed, per owner, for the nodes quota. */
  readonly ownedDelta = new Map<number, number>();
  /** Watch events to fire if and when the transaction commits. */
  readonly events: Array<() => void> = [];

  constructor(
    readonly id: number,
    private readonly store: Store,
  ) {}

  private touch(path: string): void {
    if (this.seen.has(path)) return;
    const n = this.store.get(path);
    this.seen.set(path, n?.generation ?? -1);
    this.snapshot.set(path, n);
  }

  /** Paths this transaction has touched. */
  get touched(): number {
    return this.seen.size;
  }

  get(path: string): XsNode | undefined {
    this.touch(path);
    if (this.overlay.has(path)) {
      const n = this.overlay.get(path);
      return n ? { ...n, generation: this.seen.get(path)! } : undefined;
    }
    return this.snapshot.get(path);
  }

  put(path: string, node: Omit<XsNode, "generation">): void {
    const old = this.get(path);
    if (old) this.own(old.perms[0]!.domid, -1);
    this.own(node.perms[0]!.domid, 1);
    this.overlay.set(path, node);
  }

  del(path: string): void {
    const old = this.get(path);
    if (old) this.own(old.perms[0]!.domid, -1);
    this.overlay.set(path, null);
  }

  private own(domid: number, by: number): void {
    this.ownedDelta.set(domid, (this.ownedDelta.get(domid) ?? 0) + by);
  }

  /** True if committing now would conflict (the commit rule above). */
  conflicts(): boolean {
    for (const [path, gen] of this.seen) {
      if ((this.store.get(path)?.generation ?? -1) !== gen) return true;
    }
    return false;
  }

  /**
   * Applies the overlay to the store, parents before children for writes and
   * children before parents for removals. The caller checked conflicts().
   */
  commit(): void {
    const writes = [...this.overlay].filter(([, n]) => n !== null);
    const removes = [...this.overlay].filter(([, n]) => n === null).map(([p]) => p);
    writes.sort(([a], [b]) => a.length - b.length);
    removes.sort((a, b) => b.length - a.length);
    for (const p of removes) this.store.del(p);
    for (const [p, n] of writes) this.store.put(p, n!);
  }
}
