/**
 * xenstore permissions (xenstore.txt; Xen's `tools/xenstore/xenstored_core.c`
 * perm_for_conn): a node's first entry names its owner and the access of
 * every domain not listed; later entries give listed domains r, w, b (both)
 * or n (none). The owner may always read and write; so may a privileged
 * connection (Dom0, the socket) and a domain that SET_TARGET made the
 * owner's controller, which also inherits the target's access elsewhere:
 * the first later entry naming the caller or its target decides.
 */

export const PERM_READ = 1;
export const PERM_WRITE = 2;

/** One permission entry. */
export interface Perm {
  domid: number;
  access: number;
}

const LETTER: Record<string, number> = { n: 0, r: PERM_READ, w: PERM_WRITE, b: 3 };

/** Parses "r5"; undefined for anything else ("x5", "r", "r-1", "r70000"). */
export function parsePerm(s: string): Perm | undefined {
  const access = LETTER[s[0] ?? ""];
  if (access === undefined || !/^[0-9]+$/.test(s.slice(1))) return undefined;
  const domid = Number(s.slice(1));
  return domid <= 0xffff ? { domid, access } : undefined;
}

/** Formats a permission entry as xenstore sends it ("b3"). */
export function formatPerm(p: Perm): string {
  return `${"nrwb"[p.access]}${p.domid}`;
}

/** Who is asking: a domain, whether privileged, and the domain it controls (SET_TARGET). */
export interface Caller {
  domid: number;
  privileged: boolean;
  target: number | undefined;
}

/** Dom0's services acting in process, as their own socket connection would. */
export const DOM0: Caller = { domid: 0, privileged: true, target: undefined };

/** The access `caller` has to a node with permissions `perms`. */
export function accessFor(perms: readonly Perm[], caller: Caller): number {
  if (caller.privileged) return PERM_READ | PERM_WRITE;
  const owner = perms[0]!;
  if (owner.domid === caller.domid || owner.domid === caller.target) return PERM_READ | PERM_WRITE;
  // The first listed entry for the caller or its target decides; else the owner's default.
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i]!;
    if (p.domid === caller.domid || p.domid === caller.target) return p.access;
  }
  return owner.access;
}
