/**
 * The xenstore message types (xs_wire.h XS_*), one handler each, in one table
 * the compiler checks (Xen's `wire_funcs`). A handler parses its payload as
 * xenstore.txt specifies, calls the daemon, and returns the reply payload (and
 * anything to send after the reply); it throws XsError with xs_wire.h's error
 * name when the request fails.
 */
import * as W from "../../xen/include/public/io/xs_wire.js";
import { DOMID_FIRST_RESERVED } from "../../xen/include/public/xen.js";
import { domainPath } from "./path.js";
import { formatPerm, parsePerm } from "./perms.js";
import { isQuotaName, QUOTAS } from "./quota.js";
import type { XsConnection } from "./connection.js";
import { XsError } from "./errors.js";
import type { Xenstored } from "./xenstored.js";

/** xenstore-ring.txt feature bit 2: WATCH takes a depth (newer than 4.17's xs_wire.h). */
export const XENSTORE_SERVER_FEATURE_WATCHDEPTH = 4;

/** Features this xenstored offers on rings (xenstore-ring.txt). */
export const SUPPORTED_FEATURES =
  W.XENSTORE_SERVER_FEATURE_RECONNECTION |
  W.XENSTORE_SERVER_FEATURE_ERROR |
  XENSTORE_SERVER_FEATURE_WATCHDEPTH;

export interface OpResult {
  payload: Uint8Array;
  after?: () => void;
}

export type Op = (d: Xenstored, c: XsConnection, msg: W.XsMsg) => OpResult;

const dec = new TextDecoder();
const OK: OpResult = { payload: W.joinNul(["OK"]) };
const str = (s: string): OpResult => ({ payload: W.joinNul([s]) });

/** The NUL-terminated strings of a payload; EINVAL if the last is not terminated. */
function args(msg: W.XsMsg, min: number, max = min): string[] {
  const p = msg.payload;
  if (p.length === 0 || p[p.length - 1] !== 0) {
    if (min === 0 && p.length === 0) return [];
    throw new XsError("EINVAL", "arguments not NUL-terminated");
  }
  const a = W.splitNul(p).map((x) => dec.decode(x));
  if (a.length < min || a.length > max) throw new XsError("EINVAL", `${a.length} arguments`);
  return a;
}

/** Exactly one argument (xenstored's onearg). */
const one = (msg: W.XsMsg): string => args(msg, 1)[0]!;

function domid(s: string | undefined, realOnly = true): number {
  if (s === undefined || !/^[0-9]+$/.test(s)) throw new XsError("EINVAL", `domid '${s ?? ""}'`);
  const n = Number(s);
  if (n >= 65536 || (realOnly && n >= DOMID_FIRST_RESERVED))
    throw new XsError("EINVAL", `domid ${n}`);
  return n;
}

function privileged(c: XsConnection): void {
  if (!c.privileged) throw new XsError("EACCES", "for Dom0 only");
}

function number(s: string | undefined): number {
  if (s === undefined || !/^[0-9]+$/.test(s)) throw new XsError("EINVAL", `number '${s ?? ""}'`);
  return Number(s);
}

const read: Op = (d, c, msg) => {
  const p = d.path(c, one(msg));
  return { payload: d.node(d.view(c, msg.txId), c, p, 1).value };
};

const write: Op = (d, c, msg) => {
  const nul = msg.payload.indexOf(0);
  if (nul < 0) throw new XsError("EINVAL", "WRITE without a NUL after its path");
  const p = d.path(c, dec.decode(msg.payload.subarray(0, nul)));
  d.write(d.view(c, msg.txId), c, p, msg.payload.slice(nul + 1));
  return OK;
};

const mkdir: Op = (d, c, msg) => {
  d.mkdir(d.view(c, msg.txId), c, d.path(c, one(msg)));
  return OK;
};

const rm: Op = (d, c, msg) => {
  d.rm(d.view(c, msg.txId), c, d.path(c, one(msg)));
  return OK;
};

/**
 * A node's children as a DIRECTORY payload. Nodes are immutable (a change
 * makes a new node object), so the encoding is cached per node: a domain
 * list of 10,000 entries is encoded once per change, not once per request.
 */
const childList = new WeakMap<object, Uint8Array>();
function children(n: { readonly children: readonly string[] }): Uint8Array {
  let b = childList.get(n);
  if (!b) childList.set(n, (b = W.joinNul([...n.children])));
  return b;
}

const directory: Op = (d, c, msg) => {
  const p = d.path(c, one(msg));
  return { payload: children(d.node(d.view(c, msg.txId), c, p, 1)) };
};

const directoryPart: Op = (d, c, msg) => {
  const [raw, offs] = args(msg, 2);
  const p = d.path(c, raw!);
  const n = d.node(d.view(c, msg.txId), c, p, 1);
  const all = children(n);
  const off = number(offs);
  if (off > all.length) throw new XsError("EINVAL", `offset ${off} past ${all.length}`);
  const gen = new TextEncoder().encode(`${n.generation}\0`);
  const max = W.XENSTORE_PAYLOAD_MAX - gen.length - 1;
  // Whole names only, as many as fit; an extra NUL says the list is complete.
  let end = off;
  while (end < all.length) {
    const next = all.indexOf(0, end) + 1;
    if (next - off > max) break;
    end = next;
  }
  const done = end === all.length;
  const out = new Uint8Array(gen.length + (end - off) + (done ? 1 : 0));
  out.set(gen);
  out.set(all.subarray(off, end), gen.length);
  return { payload: out };
};

const getPerms: Op = (d, c, msg) => {
  const p = d.path(c, one(msg), true);
  return { payload: W.joinNul(d.getPerms(d.view(c, msg.txId), c, p).map(formatPerm)) };
};

const setPerms: Op = (d, c, msg) => {
  const a = args(msg, 2, 1 + 64);
  const p = d.path(c, a[0]!, true);
  const perms = a.slice(1).map((s) => {
    const x = parsePerm(s);
    if (!x) throw new XsError("EINVAL", `permission '${s}'`);
    return x;
  });
  d.setPerms(d.view(c, msg.txId), c, p, perms);
  return OK;
};

const watch: Op = (d, c, msg) => {
  const a = args(msg, 2, 3);
  const raw = a[0]!;
  const p = d.path(c, raw, true);
  let depth: number | undefined;
  if (a[2] !== undefined && a[2] !== "") {
    depth = number(a[2]);
    if (p.startsWith("@") && depth !== 1)
      throw new XsError("EINVAL", "special watches take depth 1 only");
  }
  d.quotas.check(c.domid, c.privileged, "watches", d.watches.of(c).length + 1);
  const added = d.watches.add({
    owner: c,
    path: p,
    token: a[1]!,
    relative: !raw.startsWith("/") && !raw.startsWith("@"),
    depth,
  });
  if (!added) throw new XsError("EEXIST", `watch ${raw} ${a[1]}`);
  // A new watch fires once, with the path as the client gave it.
  return { payload: OK.payload, after: () => c.event(raw, a[1]!) };
};

const unwatch: Op = (d, c, msg) => {
  const a = args(msg, 2);
  const p = d.path(c, a[0]!, true);
  if (!d.watches.remove(c, p, a[1]!)) throw new XsError("ENOENT", `watch ${a[0]} ${a[1]}`);
  return OK;
};

const resetWatches: Op = (d, c) => {
  d.watches.removeAll(c);
  c.transactions.clear();
  return OK;
};

const transactionStart: Op = (d, c, msg) => {
  if (msg.txId !== 0) throw new XsError("EBUSY", "TRANSACTION_START inside a transaction");
  return str(String(d.startTransaction(c).id));
};

const transactionEnd: Op = (d, c, msg) => {
  const a = one(msg);
  if (a !== "T" && a !== "F") throw new XsError("EINVAL", `TRANSACTION_END '${a}'`);
  d.endTransaction(c, msg.txId, a === "T");
  return OK;
};

const introduce: Op = (d, c, msg) => {
  privileged(c);
  const a = args(msg, 3, 4);
  const id = domid(a[0]);
  if (id === 0) throw new XsError("EINVAL", "domain 0 cannot be introduced");
  // The gfn is signed decimal (xenstore.txt); the port unsigned.
  if (!/^-?[0-9]+$/.test(a[1]!)) throw new XsError("EINVAL", `gfn '${a[1]}'`);
  d.introduce(id, Number(a[1]), number(a[2]));
  return OK;
};

const release: Op = (d, c, msg) => {
  privileged(c);
  const id = domid(one(msg));
  if (id === 0) throw new XsError("EINVAL", "domain 0 cannot be released");
  d.release(id);
  return OK;
};

const getDomainPath: Op = (_d, _c, msg) => str(domainPath(domid(one(msg), false)));

const isDomainIntroduced: Op = (d, _c, msg) => {
  const id = domid(one(msg), false);
  return str(id === 0 || d.domains.get(id)?.introduced ? "T" : "F");
};

const resume: Op = (d, c, msg) => {
  privileged(c);
  const id = domid(one(msg));
  const dom = d.domains.get(id);
  if (!dom?.introduced) throw new XsError("ENOENT", `domain ${id} is not introduced`);
  dom.shutdownReported = false;
  return OK;
};

const setTarget: Op = (d, c, msg) => {
  privileged(c);
  const a = args(msg, 2);
  const id = domid(a[0]);
  const target = domid(a[1]);
  for (const x of [id, target]) {
    if (!d.domainExists(x)) throw new XsError("ENOENT", `no domain ${x}`);
  }
  for (const x of d.connections) if (x.domid === id && !x.privileged) x.target = target;
  return OK;
};

const getFeature: Op = (d, c, msg) => {
  privileged(c);
  const a = args(msg, 0, 1);
  if (a.length === 0) return str(String(SUPPORTED_FEATURES));
  const dom = d.domains.get(domid(a[0]));
  return str(String(dom?.features ?? SUPPORTED_FEATURES));
};

const setFeature: Op = (d, c, msg) => {
  privileged(c);
  const a = args(msg, 2);
  const id = domid(a[0]);
  const v = number(a[1]);
  if (v & ~SUPPORTED_FEATURES) throw new XsError("EINVAL", `unsupported features ${v}`);
  const dom = d.domains.get(id);
  if (dom?.introduced) throw new XsError("EBUSY", `domain ${id} is already introduced`);
  d.domains.set(id, {
    domid: id,
    gfn: 0,
    port: 0,
    features: v,
    introduced: false,
    connection: undefined,
    shutdownReported: false,
  });
  return OK;
};

const getQuota: Op = (d, c, msg) => {
  privileged(c);
  const a = args(msg, 0, 2);
  if (a.length === 0) return str(Object.keys(QUOTAS).join(" "));
  const q = a[a.length - 1]!;
  if (!isQuotaName(q)) throw new XsError("EINVAL", `quota '${q}'`);
  return str(String(a.length === 2 ? d.quotas.limit(domid(a[0]), q) : d.quotas.globalLimit(q)));
};

const setQuota: Op = (d, c, msg) => {
  privileged(c);
  const a = args(msg, 2, 3);
  const q = a[a.length - 2]!;
  if (!isQuotaName(q)) throw new XsError("EINVAL", `quota '${q}'`);
  d.quotas.set(a.length === 3 ? domid(a[0]) : undefined, q, number(a[a.length - 1]));
  return OK;
};

/** CONTROL commands and what each does (CONTROL help lists them). */
const CONTROL_COMMANDS: Record<string, string> = {
  check: "check xenstored's tree for consistency",
  help: "list the commands",
  log: "log on|off: turn the log on or off",
  memreport: "nodes, connections, watches and transactions in use",
  print: "print <string> to the log",
  quota: "quota [set <name> <value>|<domid>]: show or set quotas",
};

const control: Op = (d, c, msg) => {
  privileged(c);
  const a = args(msg, 1, 8);
  const [cmd, ...rest] = a as [string, ...string[]];
  switch (cmd) {
    case "check": {
      const problems = d.store.check();
      for (const p of problems) d.log(`check: ${p}`);
      return str(problems.length === 0 ? "OK" : problems.join("\n"));
    }
    case "help":
      return str(`${Object.keys(CONTROL_COMMANDS).join("\n")}\n`);
    case "log":
      if (rest[0] !== "on" && rest[0] !== "off")
        throw new XsError("EINVAL", `log takes on or off, not '${rest[0] ?? ""}'`);
      d.logging = rest[0] === "on";
      return OK;
    case "print":
      d.log(rest.join(" "));
      return OK;
    case "memreport": {
      let watches = 0;
      let txs = 0;
      for (const x of d.connections) {
        watches += d.watches.of(x).length;
        txs += x.transactions.size;
      }
      return str(
        `nodes: ${d.store.size}\nconnections: ${d.connections.size}\nwatches: ${watches}\ntransactions: ${txs}\ndomains: ${d.domains.size}\n`,
      );
    }
    case "quota": {
      if (rest.length === 0) return str(d.quotas.report());
      if (rest[0] === "set") {
        const q = rest[1] ?? "";
        if (!isQuotaName(q)) throw new XsError("EINVAL", `quota '${q}'`);
        d.quotas.set(undefined, q, number(rest[2]));
        return OK;
      }
      return str(d.quotas.report(domid(rest[0])));
    }
    default:
      throw new XsError("EINVAL", `unknown CONTROL command '${cmd}'`);
  }
};

/** Every request type xenstored answers. WATCH_EVENT and ERROR are replies only. */
export const opTable: Partial<Record<number, Op>> = {
  [W.XS_CONTROL]: control,
  [W.XS_DIRECTORY]: directory,
  [W.XS_READ]: read,
  [W.XS_GET_PERMS]: getPerms,
  [W.XS_WATCH]: watch,
  [W.XS_UNWATCH]: unwatch,
  [W.XS_TRANSACTION_START]: transactionStart,
  [W.XS_TRANSACTION_END]: transactionEnd,
  [W.XS_INTRODUCE]: introduce,
  [W.XS_RELEASE]: release,
  [W.XS_GET_DOMAIN_PATH]: getDomainPath,
  [W.XS_WRITE]: write,
  [W.XS_MKDIR]: mkdir,
  [W.XS_RM]: rm,
  [W.XS_SET_PERMS]: setPerms,
  [W.XS_IS_DOMAIN_INTRODUCED]: isDomainIntroduced,
  [W.XS_RESUME]: resume,
  [W.XS_SET_TARGET]: setTarget,
  [W.XS_RESET_WATCHES]: resetWatches,
  [W.XS_DIRECTORY_PART]: directoryPart,
  [W.XS_GET_FEATURE]: getFeature,
  [W.XS_SET_FEATURE]: setFeature,
  [W.XS_GET_QUOTA]: getQuota,
  [W.XS_SET_QUOTA]: setQuota,
};
