/**
 * The xenstore tree (xenstore.txt; Xen's `xenstored_core.c`): nodes with a
 * value, permissions, an ordered list of children and a generation count.
 *
 * Every modification of a node (value, permissions or its list of children)
 * gives it the next value of one store-wide generation counter. Transactions
 * (transaction.ts) compare generations at commit; DIRECTORY_PART returns the
 * node's generation so a reader can tell that a list changed between parts.
 *
 * The store also counts the nodes each domain owns (the owner is the first
 * permission entry), for the "nodes" quota.
 */
import type { Perm } from "./perms.js";
import { baseName, parentOf } from "./path.js";

export interface XsNode {
  readonly value: Uint8Array;
  readonly perms: readonly Perm[];
  /** Leaf names of the children, in creation order. */
  readonly children: readonly string[];
  readonly generation: number;
}

/** A place nodes are read from and written to: the store itself or a transaction. */
export interface NodeView {
  get(path: string): XsNode | undefined;
  /** Sets `path` (which must have a parent, except "/"). */
  put(path: string, node: Omit<XsNode, "generation">): void;
  /** Removes `path` alone (the caller removes children first). */
  del(path: string): void;
}

export class Store implements NodeView {
  private readonly nodes = new Map<string, XsNode>();
  private readonly owned = new Map<number, number>();
  private gen = 0;

  constructor() {
    const root: Omit<XsNode, "generation"> = {
      value: new Uint8Array(0),
      perms: [{ domid: 0, access: 0 }],
      children: [],
    };
    this.nodes.set("/", { ...root, generation: 0 });
    this.owned.set(0, 1);
  }

  /** The current generation counter (the last one handed out). */
  get generation(): number {
    return this.gen;
  }

  get size(): number {
    return this.nodes.size;
  }

  get(path: string): XsNode | undefined {
    return this.nodes.get(path);
  }

  /** Nodes owned by `domid`. */
  ownedBy(domid: number): number {
    return this.owned.get(domid) ?? 0;
  }

  put(path: string, node: Omit<XsNode, "generation">): void {
    const old = this.nodes.get(path);
    const now: XsNode = {
      value: node.value,
      perms: node.perms,
      children: node.children,
      generation: ++this.gen,
    };
    this.nodes.set(path, now);
    // Owner counts change only when the owner does.
    if (old?.perms[0]!.domid !== now.perms[0]!.domid) {
      if (old) this.count(old.perms[0]!.domid, -1);
      this.count(now.perms[0]!.domid, 1);
    }
  }

  del(path: string): void {
    const old = this.nodes.get(path);
    if (!old) return;
    this.nodes.delete(path);
    this.count(old.perms[0]!.domid, -1);
  }

  private count(domid: number, by: number): void {
    const n = (this.owned.get(domid) ?? 0) + by;
    if (n === 0) this.owned.delete(domid);
    else this.owned.set(domid, n);
  }

  /** Every path, parents before children (for saving and checking). */
  *paths(): Iterable<string> {
    const walk = function* (this: Store, p: string): Iterable<string> {
      yield p;
      const n = this.nodes.get(p)!;
      for (const c of n.children) yield* walk.call(this, p === "/" ? `/${c}` : `${p}/${c}`);
    };
    yield* walk.call(this, "/");
  }

  /**
   * Checks the tree's invariants (CONTROL check): every child listed exists,
   * every node but the root is listed by its parent, the owner counts add up.
   * Returns the problems found.
   */
  check(): string[] {
    const problems: string[] = [];
    const counts = new Map<number, number>();
    for (const [p, n] of this.nodes) {
      counts.set(n.perms[0]!.domid, (counts.get(n.perms[0]!.domid) ?? 0) + 1);
      for (const c of n.children) {
        const cp = p === "/" ? `/${c}` : `${p}/${c}`;
        if (!this.nodes.has(cp)) problems.push(`${p} lists missing child ${c}`);
      }
      if (p !== "/") {
        const parent = this.nodes.get(parentOf(p));
        if (!parent?.children.includes(baseName(p)))
          problems.push(`${p} is not listed by its parent`);
      }
    }
    for (const [d, n] of counts) {
      if (this.ownedBy(d) !== n)
        problems.push(`domain ${d} owns ${n} nodes, counted ${this.ownedBy(d)}`);
    }
    return problems;
  }

  /** @internal For restore: sets a node with its saved generation. */
  restoreNode(path: string, node: XsNode): void {
    const old = this.nodes.get(path);
    if (old) this.count(old.perms[0]!.domid, -1);
    this.nodes.set(path, node);
    this.count(node.perms[0]!.domid, 1);
    if (node.generation > this.gen) this.gen = node.generation;
  }
}

/** The path of child `name` of `parent`. */
export function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}
