/**
 * xenstore quotas, with the defaults of Xen's C xenstored (4.17), settable
 * globally (the defaults of new domains) and per domain (SET_QUOTA, CONTROL
 * quota set). A value of 0 disables that check. Privileged connections are
 * never limited. Every refusal names the quota, its limit and the domain,
 * in the daemon's log and in `CONTROL quota <domid>`.
 */

/** Quota names (GET_QUOTA / SET_QUOTA), their defaults and the error a refusal gives. */
export const QUOTAS = {
  nodes: { default: 1000, error: "ENOSPC", what: "nodes owned by the domain" },
  watches: { default: 128, error: "E2BIG", what: "watches of the domain" },
  transactions: { default: 10, error: "ENOSPC", what: "open transactions of a connection" },
  outstanding: {
    default: 20,
    error: "EBUSY",
    what: "replies and events queued unread; past it the domain's ring is not read",
  },
  "transaction-nodes": { default: 1024, error: "ENOSPC", what: "nodes one transaction touches" },
  "node-size": { default: 2048, error: "ENOSPC", what: "bytes of one node" },
  "path-max": { default: 2048, error: "EINVAL", what: "bytes of a relative path" },
  permissions: { default: 5, error: "ENOSPC", what: "permission entries of one node" },
} as const satisfies Record<string, { default: number; error: string; what: string }>;

export type QuotaName = keyof typeof QUOTAS;

export function isQuotaName(s: string): s is QuotaName {
  return Object.prototype.hasOwnProperty.call(QUOTAS, s);
}

/** A refusal: which quota, its limit, and who hit it. */
export class QuotaError extends Error {
  constructor(
    readonly quota: QuotaName,
    readonly limit: number,
    readonly domid: number,
  ) {
    super(`xenstore quota '${quota}' (${limit}) reached by domain ${domid}`);
  }

  /** The xenstore error name the request gets. */
  get xsError(): string {
    return QUOTAS[this.quota].error;
  }
}

export class Quotas {
  private readonly global = new Map<QuotaName, number>(
    Object.entries(QUOTAS).map(([k, v]) => [k as QuotaName, v.default]),
  );
  private readonly perDomain = new Map<number, Map<QuotaName, number>>();
  /** Refusals so far, per domain and quota (for CONTROL quota <domid>). */
  private readonly refused = new Map<number, Map<QuotaName, number>>();

  constructor(private readonly log: (msg: string) => void = () => {}) {}

  /** The limit of `q` for `domid` (its own if set, else the global one); 0 = off. */
  limit(domid: number, q: QuotaName): number {
    return this.perDomain.get(domid)?.get(q) ?? this.global.get(q)!;
  }

  /** The global limit of `q`: the default for domains without their own. */
  globalLimit(q: QuotaName): number {
    return this.global.get(q)!;
  }

  /** Sets `q` globally (domid undefined) or for one domain. */
  set(domid: number | undefined, q: QuotaName, value: number): void {
    if (domid === undefined) {
      this.global.set(q, value);
      return;
    }
    let m = this.perDomain.get(domid);
    if (!m) this.perDomain.set(domid, (m = new Map()));
    m.set(q, value);
  }

  /**
   * Throws QuotaError if `used` (what the domain would have after the request)
   * exceeds its limit of `q`. Privileged callers pass `exempt`.
   */
  check(domid: number, exempt: boolean, q: QuotaName, used: number): void {
    if (exempt) return;
    const lim = this.limit(domid, q);
    if (lim === 0 || used <= lim) return;
    const e = new QuotaError(q, lim, domid);
    let m = this.refused.get(domid);
    if (!m) this.refused.set(domid, (m = new Map()));
    m.set(q, (m.get(q) ?? 0) + 1);
    this.log(e.message);
    throw e;
  }

  /** The settings, for saving (refusal counts are not kept). */
  save(): { global: Record<string, number>; domains: Record<string, Record<string, number>> } {
    return {
      global: Object.fromEntries(this.global),
      domains: Object.fromEntries(
        [...this.perDomain].map(([d, m]) => [String(d), Object.fromEntries(m)]),
      ),
    };
  }

  /** Restores saved settings; unknown quota names are ignored. */
  restore(
    saved: { global: Record<string, number>; domains: Record<string, Record<string, number>> },
    known: (k: string) => k is QuotaName,
  ): void {
    for (const [k, v] of Object.entries(saved.global)) if (known(k)) this.global.set(k, v);
    for (const [d, m] of Object.entries(saved.domains)) {
      for (const [k, v] of Object.entries(m)) if (known(k)) this.set(Number(d), k, v);
    }
  }

  /** Forgets a released domain's own settings and refusals. */
  forget(domid: number): void {
    this.perDomain.delete(domid);
    this.refused.delete(domid);
  }

  /** `CONTROL quota` text: the global settings, or one domain's limits and refusals. */
  report(domid?: number): string {
    const names = Object.keys(QUOTAS) as QuotaName[];
    if (domid === undefined) {
      return `Quota settings:\n${names.map((q) => `${q.padEnd(18)} ${this.global.get(q)}`).join("\n")}\n`;
    }
    const r = this.refused.get(domid);
    return `Domain ${domid}:\n${names
      .map(
        (q) =>
          `${q.padEnd(18)} ${this.limit(domid, q)}${r?.get(q) ? ` (refused ${r.get(q)} time(s))` : ""}`,
      )
      .join("\n")}\n`;
  }
}
