/**
 * Watches (xenstore.txt WATCH, UNWATCH, WATCH_EVENT, RESET_WATCHES).
 *
 * A change at path P fires every watch whose path W is P or a parent of P,
 * within the watch's depth if it has one, with P as the event path. A
 * recursive removal of P also fires watches set below P, with W as the event
 * path. Special watches (@introduceDomain, @releaseDomain, and
 * @releaseDomain/<domid>) fire on xenstored's own events. A watch registered
 * with a relative path reports relative event paths. A connection is sent an
 * event only for nodes it may read (the node's permissions before a removal,
 * after a write).
 */
import { SPECIAL_RELEASE, depthBelow, isChild, relativeTo } from "./path.js";

/** What a watch sends events to. */
export interface Watcher {
  readonly domid: number;
  /** Whether the watcher may see a node with these permissions. */
  canRead(perms: readonly import("./perms.js").Perm[]): boolean;
  /** Whether the watcher may see events on special path `special`. */
  canSeeSpecial(special: string): boolean;
  event(path: string, token: string): void;
}

export interface Watch {
  readonly owner: Watcher;
  /** Absolute path, or a special path starting with "@". */
  readonly path: string;
  readonly token: string;
  readonly relative: boolean;
  /** Levels below `path` that match; undefined: any. */
  readonly depth: number | undefined;
}

export class Watches {
  private readonly all: Watch[] = [];

  /** Watches of one watcher. */
  of(w: Watcher): Watch[] {
    return this.all.filter((x) => x.owner === w);
  }

  /** Every watch, in the order they were set. */
  list(): readonly Watch[] {
    return this.all;
  }

  get count(): number {
    return this.all.length;
  }

  /** Adds a watch; false if the watcher has one with this path and token already. */
  add(w: Watch): boolean {
    if (this.all.some((x) => x.owner === w.owner && x.path === w.path && x.token === w.token)) {
      return false;
    }
    this.all.push(w);
    return true;
  }

  /** Removes the watcher's watch with this path and token; false if there is none. */
  remove(owner: Watcher, path: string, token: string): boolean {
    const i = this.all.findIndex((x) => x.owner === owner && x.path === path && x.token === token);
    if (i < 0) return false;
    this.all.splice(i, 1);
    return true;
  }

  /** Removes every watch of `owner` (RESET_WATCHES, a connection closing). */
  removeAll(owner: Watcher): number {
    let n = 0;
    for (let i = this.all.length - 1; i >= 0; i--) {
      if (this.all[i]!.owner === owner) {
        this.all.splice(i, 1);
        n++;
      }
    }
    return n;
  }

  private send(w: Watch, path: string): void {
    w.owner.event(w.relative ? relativeTo(path, w.owner.domid) : path, w.token);
  }

  /**
   * Fires the watches matching a change at `path`, a node with permissions
   * `perms`; `recursive` for a removal of the subtree at `path`.
   */
  fire(path: string, perms: readonly import("./perms.js").Perm[], recursive: boolean): void {
    for (const w of [...this.all]) {
      if (w.path.startsWith("@")) continue;
      if (isChild(path, w.path)) {
        if (w.depth !== undefined && depthBelow(path, w.path) > w.depth) continue;
        if (w.owner.canRead(perms)) this.send(w, path);
      } else if (recursive && isChild(w.path, path)) {
        if (w.owner.canRead(perms)) this.send(w, w.path);
      }
    }
  }

  /**
   * Fires special watch `special` (@introduceDomain or @releaseDomain) for
   * domain `domid`: watchers with depth 1 get "@special/<domid>", watchers of
   * "@releaseDomain/<domid>" only that domain's releases.
   */
  fireSpecial(special: string, domid: number): void {
    for (const w of [...this.all]) {
      let path: string | undefined;
      if (w.path === special) path = w.depth === 1 ? `${special}/${domid}` : special;
      else if (special === SPECIAL_RELEASE && w.path === `${special}/${domid}`) path = w.path;
      if (path === undefined || !w.owner.canSeeSpecial(special)) continue;
      w.owner.event(path, w.token);
    }
  }
}
