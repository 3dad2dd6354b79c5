/**
 * xenstored's state, saved and restored across a daemon restart, as Xen's
 * live update carries it (xen-doc `designs/xenstore-migration.html`): every
 * node with its value, permissions and generation count; the special
 * watches' permissions; quotas; the domains and, for each domain connection,
 * its watches. The guest's ring page and port are the guest's and stay as
 * they are; the restored daemon maps and binds them again and carries on
 * from the ring's current indices.
 *
 * Not carried (documented in docs/xenstored.md): unix socket connections
 * (their clients reconnect) and open transactions (their TRANSACTION_END gets
 * ENOENT, which libxenstore's callers treat as a failed transaction).
 *
 * The format is versioned: `version` 1 is XenstoreStateV1 below; restore
 * refuses any other.
 */
import { formatPerm, parsePerm, type Perm } from "./perms.js";
import { QUOTAS, type QuotaName } from "./quota.js";
import { Xenstored, type DomainTransport } from "./xenstored.js";

/** One node: path, value (base64), permissions as xenstore writes them, generation. */
export interface NodeStateV1 {
  path: string;
  value: string;
  perms: string[];
  children: string[];
  generation: number;
}

/** One watch of a domain connection. */
export interface WatchStateV1 {
  path: string;
  token: string;
  relative: boolean;
  depth: number | null;
}

export interface DomainStateV1 {
  domid: number;
  gfn: number;
  port: number;
  features: number;
  introduced: boolean;
  shutdownReported: boolean;
  /** The domain this one controls (SET_TARGET), if any. */
  target: number | null;
  watches: WatchStateV1[];
}

export interface XenstoreStateV1 {
  version: 1;
  generation: number;
  nodes: NodeStateV1[];
  special: Record<string, string[]>;
  quotas: { global: Record<string, number>; domains: Record<string, Record<string, number>> };
  domains: DomainStateV1[];
}

/** Everything a restarted xenstored needs, as a JSON-safe value. */
export function saveState(d: Xenstored): XenstoreStateV1 {
  const nodes: NodeStateV1[] = [];
  for (const p of d.store.paths()) {
    const n = d.store.get(p)!;
    nodes.push({
      path: p,
      value: Buffer.from(n.value).toString("base64"),
      perms: n.perms.map(formatPerm),
      children: [...n.children],
      generation: n.generation,
    });
  }
  const domains: DomainStateV1[] = [];
  for (const dom of d.domains.values()) {
    const c = dom.connection;
    domains.push({
      domid: dom.domid,
      gfn: dom.gfn,
      port: dom.port,
      features: dom.features,
      introduced: dom.introduced,
      shutdownReported: dom.shutdownReported,
      target: c?.target ?? null,
      watches: c
        ? d.watches.of(c).map((w) => ({
            path: w.path,
            token: w.token,
            relative: w.relative,
            depth: w.depth ?? null,
          }))
        : [],
    });
  }
  return {
    version: 1,
    generation: d.store.generation,
    nodes,
    special: Object.fromEntries(d.specialEntries().map(([k, v]) => [k, v.map(formatPerm)])),
    quotas: d.quotas.save(),
    domains,
  };
}

function perms(list: string[], where: string): Perm[] {
  return list.map((s) => {
    const p = parsePerm(s);
    if (!p) throw new Error(`xenstored state: bad permission '${s}' on ${where}`);
    return p;
  });
}

/**
 * A xenstored rebuilt from `state`, reconnected to its domains through
 * `transport`. Throws, naming what is wrong, on a state it cannot use.
 */
export function restoreState(
  state: unknown,
  transport: DomainTransport | undefined,
  log?: (line: string) => void,
): Xenstored {
  const s = state as XenstoreStateV1;
  if (!s || typeof s !== "object" || s.version !== 1) {
    throw new Error(
      `xenstored state: version ${String((s as { version?: unknown })?.version)} is not 1`,
    );
  }
  const d = new Xenstored(transport, log);
  for (const n of s.nodes) {
    d.store.restoreNode(n.path, {
      value: Uint8Array.from(Buffer.from(n.value, "base64")),
      perms: perms(n.perms, n.path),
      children: [...n.children],
      generation: n.generation,
    });
  }
  const problems = d.store.check();
  if (problems.length > 0) throw new Error(`xenstored state: ${problems.join("; ")}`);
  for (const [k, v] of Object.entries(s.special)) d.setSpecialPerms(k, perms(v, k));
  d.quotas.restore(s.quotas, (k): k is QuotaName =>
    Object.prototype.hasOwnProperty.call(QUOTAS, k),
  );
  for (const dom of s.domains) {
    if (!dom.introduced) {
      d.domains.set(dom.domid, {
        domid: dom.domid,
        gfn: dom.gfn,
        port: dom.port,
        features: dom.features,
        introduced: false,
        connection: undefined,
        shutdownReported: dom.shutdownReported,
      });
      continue;
    }
    d.reintroduce(dom.domid, dom.gfn, dom.port, dom.features, dom.shutdownReported);
    const c = d.domains.get(dom.domid)!.connection;
    if (!c) continue;
    c.target = dom.target ?? undefined;
    for (const w of dom.watches) {
      d.watches.add({
        owner: c,
        path: w.path,
        token: w.token,
        relative: w.relative,
        depth: w.depth ?? undefined,
      });
    }
  }
  return d;
}
