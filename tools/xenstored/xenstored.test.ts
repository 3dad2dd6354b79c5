/**
 * xenstored in memory, no sockets: scenario tables for permissions, watches,
 * transactions and quotas (each row a story: who, request, expected reply),
 * every message type, and fuzzed packets that must leave the store intact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as W from "../../xen/include/public/io/xs_wire.js";
import { Xenstored } from "./xenstored.js";
import type { XsConnection } from "./connection.js";

const dec = new TextDecoder();

interface Client {
  c: XsConnection;
  events: string[];
  /** Sends a request; returns the reply's strings, or "ERR:<name>". */
  q(type: number, args: Array<string | Uint8Array>, tx?: number): string[] | string;
  /** The same with a raw payload. */
  raw(type: number, payload: Uint8Array, tx?: number): string[] | string;
}

function setup(): {
  d: Xenstored;
  log: string[];
  client(domid: number, privileged?: boolean): Client;
} {
  const log: string[] = [];
  const d = new Xenstored(undefined, (l) => log.push(l));
  const client = (domid: number, privileged = domid === 0): Client => {
    const replies: W.XsMsg[] = [];
    const events: string[] = [];
    const c = d.connect(
      domid,
      privileged,
      (m) => {
        if (m.type === W.XS_WATCH_EVENT)
          events.push(
            W.splitNul(m.payload)
              .map((x) => dec.decode(x))
              .join(" "),
          );
        else replies.push(m);
      },
      `test ${domid}`,
    );
    const raw = (type: number, payload: Uint8Array, tx = 0): string[] | string => {
      d.handle(c, { type, reqId: 42, txId: tx, payload });
      const r = replies.shift()!;
      assert.equal(r.reqId, 42);
      const parts = W.splitNul(r.payload).map((x) => dec.decode(x));
      return r.type === W.XS_ERROR ? `ERR:${parts[0]}` : parts;
    };
    const q = (type: number, args: Array<string | Uint8Array>, tx = 0): string[] | string =>
      raw(type, W.joinNul(args), tx);
    return { c, events, q, raw };
  };
  return { d, log, client };
}

/** WRITE exactly as libxenstore sends it: "path\0value" with no NUL after the value. */
function w(_d: Xenstored, cl: Client, path: string, value: string, tx = 0): string {
  const r = cl.raw(W.XS_WRITE, new TextEncoder().encode(`${path}\0${value}`), tx);
  return typeof r === "string" ? r : r[0]!;
}

test("reads, writes, mkdir, rm and directories follow xenstore.txt", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  assert.equal(w(d, dom0, "/a/b/c", "hello"), "OK");
  const rows: Array<[string, number, string[], string[] | string]> = [
    ["read a value", W.XS_READ, ["/a/b/c"], ["hello"]],
    ["write created the parents, empty", W.XS_READ, ["/a/b"], []],
    ["a missing node", W.XS_READ, ["/a/x"], "ERR:ENOENT"],
    ["directory", W.XS_DIRECTORY, ["/a"], ["b"]],
    ["root lists tool and a", W.XS_DIRECTORY, ["/"], ["tool", "a"]],
    ["mkdir an existing node", W.XS_MKDIR, ["/a/b"], ["OK"]],
    ["mkdir a new one", W.XS_MKDIR, ["/a/m/n"], ["OK"]],
    ["rm a missing node with a parent", W.XS_RM, ["/a/zz"], ["OK"]],
    ["rm a missing node without parent", W.XS_RM, ["/q/r"], "ERR:ENOENT"],
    ["rm the root", W.XS_RM, ["/"], "ERR:EINVAL"],
    ["a trailing slash", W.XS_READ, ["/a/"], "ERR:EINVAL"],
    ["a double slash", W.XS_READ, ["/a//b"], "ERR:EINVAL"],
    ["a bad character", W.XS_READ, ["/a b"], "ERR:EINVAL"],
    ["a path too long", W.XS_READ, [`/${"x".repeat(3100)}`], "ERR:EINVAL"],
    ["a relative path from the socket", W.XS_READ, ["b/c"], "ERR:ENOENT"],
    ["domain path", W.XS_GET_DOMAIN_PATH, ["7"], ["/local/domain/7"]],
    ["dom0 is introduced", W.XS_IS_DOMAIN_INTRODUCED, ["0"], ["T"]],
    ["dom5 is not", W.XS_IS_DOMAIN_INTRODUCED, ["5"], ["F"]],
    ["rm a subtree", W.XS_RM, ["/a/b"], ["OK"]],
    ["it is gone", W.XS_READ, ["/a/b/c"], "ERR:ENOENT"],
    ["get perms", W.XS_GET_PERMS, ["/a"], ["n0"]],
  ];
  for (const [what, type, args, want] of rows) assert.deepEqual(dom0.q(type, args), want, what);
  // Missing NUL, unknown type.
  assert.deepEqual(dom0.raw(W.XS_READ, new TextEncoder().encode("/a")), "ERR:EINVAL");
  assert.deepEqual(dom0.q(99, ["/a"]), "ERR:ENOSYS");
  assert.deepEqual(d.store.check(), []);
});

test("DIRECTORY_PART splits a long list of children and says when it is complete", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  const names = Array.from({ length: 400 }, (_, i) => `child-with-a-long-name-${i}`);
  for (const n of names) assert.equal(w(d, dom0, `/big/${n}`, ""), "OK");
  const got: string[] = [];
  let off = 0;
  let gen = "";
  for (;;) {
    const r = dom0.q(W.XS_DIRECTORY_PART, ["/big", String(off)]) as string[];
    gen ||= r[0]!;
    assert.equal(r[0], gen, "the generation is stable between parts");
    const part = r.slice(1);
    const done = part.length > 0 && part[part.length - 1] === "";
    const real = done ? part.slice(0, -1) : part;
    got.push(...real);
    off += real.reduce((s, x) => s + x.length + 1, 0);
    if (done) break;
  }
  assert.deepEqual(got, names);
  assert.equal(dom0.q(W.XS_DIRECTORY_PART, ["/big", "999999"]), "ERR:EINVAL");
});

test("permissions: owner, listed domains, the default entry, targets, Dom0", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  for (const id of [1, 2, 3])
    assert.deepEqual(dom0.q(W.XS_INTRODUCE, [String(id), "4", "5"]), ["OK"]);
  const d1 = client(1);
  const d2 = client(2);
  const d3 = client(3);
  w(d, dom0, "/n", "v");
  const perms = (...p: string[]): void =>
    assert.deepEqual(dom0.q(W.XS_SET_PERMS, ["/n", ...p]), ["OK"]);
  type Row = [string, () => void, Client, number, string[], string[] | string];
  const rows: Row[] = [
    ["n0: nobody else reads", () => perms("n0"), d1, W.XS_READ, ["/n"], "ERR:EACCES"],
    ["n0 r1: domain 1 reads", () => perms("n0", "r1"), d1, W.XS_READ, ["/n"], ["v"]],
    ["n0 r1: but cannot write", () => {}, d1, W.XS_WRITE, ["/n", "x"], "ERR:EACCES"],
    ["n0 r1: domain 2 cannot read", () => {}, d2, W.XS_READ, ["/n"], "ERR:EACCES"],
    ["r0: the default lets everybody read", () => perms("r0"), d2, W.XS_READ, ["/n"], ["v"]],
    [
      "r0 n2: a listed domain is refused",
      () => perms("r0", "n2"),
      d2,
      W.XS_READ,
      ["/n"],
      "ERR:EACCES",
    ],
    ["n1: the owner reads", () => perms("n1"), d1, W.XS_READ, ["/n"], ["v"]],
    ["n1: the owner lists", () => {}, d1, W.XS_GET_PERMS, ["/n"], ["n1"]],
    ["n1: another domain does not", () => {}, d2, W.XS_GET_PERMS, ["/n"], "ERR:EACCES"],
    ["the owner may change the entries", () => {}, d1, W.XS_SET_PERMS, ["/n", "n1", "b2"], ["OK"]],
    ["b2: domain 2 may now read", () => {}, d2, W.XS_READ, ["/n"], ["v"]],
    ["but not change the permissions", () => {}, d2, W.XS_SET_PERMS, ["/n", "b2"], "ERR:EACCES"],
    ["only Dom0 changes the owner", () => {}, d1, W.XS_SET_PERMS, ["/n", "n2"], "ERR:EPERM"],
    ["an owner that does not exist", () => {}, dom0, W.XS_SET_PERMS, ["/n", "n9"], "ERR:ENOENT"],
    [
      "other entries may name any domain",
      () => {},
      dom0,
      W.XS_SET_PERMS,
      ["/n", "n0", "r9"],
      ["OK"],
    ],
    ["a malformed entry", () => {}, dom0, W.XS_SET_PERMS, ["/n", "x0"], "ERR:EINVAL"],
    [
      "domain 3 cannot read domain 1's node",
      () => perms("n1"),
      d3,
      W.XS_READ,
      ["/n"],
      "ERR:EACCES",
    ],
    [
      "until SET_TARGET makes it domain 1's controller",
      () => assert.deepEqual(dom0.q(W.XS_SET_TARGET, ["3", "1"]), ["OK"]),
      d3,
      W.XS_READ,
      ["/n"],
      ["v"],
    ],
    ["SET_TARGET is for Dom0", () => {}, d1, W.XS_SET_TARGET, ["1", "2"], "ERR:EACCES"],
    ["INTRODUCE is for Dom0", () => {}, d1, W.XS_INTRODUCE, ["5", "1", "1"], "ERR:EACCES"],
  ];
  for (const [what, before, who, type, args, want] of rows) {
    before();
    const got =
      type === W.XS_WRITE
        ? who.raw(type, new TextEncoder().encode(`${args[0]}\0${args[1]}`))
        : who.q(type, args);
    assert.deepEqual(got, want, what);
  }
  // A domain creates under its home: it owns what it creates.
  dom0.q(W.XS_MKDIR, ["/local/domain/1"]);
  dom0.q(W.XS_SET_PERMS, ["/local/domain/1", "n1"]);
  assert.equal(w(d, d1, "data/x", "1"), "OK");
  assert.deepEqual(d1.q(W.XS_GET_PERMS, ["data/x"]), ["n1"]);
  assert.equal(w(d, d2, "/local/domain/1/y", "1"), "ERR:EACCES");
  assert.deepEqual(d.store.check(), []);
});

test("watches: on registration, below the path, depth, relative paths, removal, permissions", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  dom0.q(W.XS_INTRODUCE, ["1", "4", "5"]);
  const d1 = client(1);
  dom0.q(W.XS_MKDIR, ["/local/domain/1"]);
  dom0.q(W.XS_SET_PERMS, ["/local/domain/1", "n1"]);
  assert.deepEqual(dom0.q(W.XS_WATCH, ["/a", "t"]), ["OK"]);
  assert.deepEqual(dom0.events.splice(0), ["/a t"], "fires once at registration");
  assert.deepEqual(dom0.q(W.XS_WATCH, ["/a", "t"]), "ERR:EEXIST");
  assert.deepEqual(dom0.q(W.XS_WATCH, ["/a", "d1", "1"]), ["OK"]);
  dom0.events.length = 0;
  w(d, dom0, "/a/b", "1");
  w(d, dom0, "/a/b/c", "2");
  w(d, dom0, "/elsewhere", "3");
  assert.deepEqual(dom0.events.splice(0), ["/a/b t", "/a/b d1", "/a/b/c t"]);
  // Removing /a fires watches set below it with their own path.
  dom0.q(W.XS_WATCH, ["/a/b/c", "deep"]);
  dom0.events.length = 0;
  dom0.q(W.XS_RM, ["/a"]);
  assert.deepEqual(dom0.events.splice(0).sort(), ["/a d1", "/a t", "/a/b/c deep"]);
  // Relative watches report relative paths.
  assert.deepEqual(d1.q(W.XS_WATCH, ["data", "rel"]), ["OK"]);
  assert.deepEqual(d1.events.splice(0), ["data rel"]);
  w(d, d1, "data/x", "1");
  assert.deepEqual(d1.events.splice(0), ["data/x rel"]);
  // No events for what a watcher cannot read.
  d1.q(W.XS_WATCH, ["/secret", "s"]);
  d1.events.length = 0;
  w(d, dom0, "/secret/k", "v");
  assert.deepEqual(d1.events, []);
  // Unwatch.
  assert.deepEqual(dom0.q(W.XS_UNWATCH, ["/a", "t"]), ["OK"]);
  assert.deepEqual(dom0.q(W.XS_UNWATCH, ["/a", "t"]), "ERR:ENOENT");
  assert.deepEqual(dom0.q(W.XS_RESET_WATCHES, []), ["OK"]);
  dom0.events.length = 0;
  w(d, dom0, "/a/q", "1");
  assert.deepEqual(dom0.events, []);
});

test("special watches: @introduceDomain, @releaseDomain, depth 1 and per domain; unprivileged need permission", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  dom0.q(W.XS_INTRODUCE, ["1", "4", "5"]);
  const d1 = client(1);
  dom0.q(W.XS_WATCH, ["@introduceDomain", "i"]);
  dom0.q(W.XS_WATCH, ["@releaseDomain", "r", "1"]);
  dom0.q(W.XS_WATCH, ["@releaseDomain/7", "r7"]);
  assert.deepEqual(dom0.q(W.XS_WATCH, ["@releaseDomain", "bad", "2"]), "ERR:EINVAL");
  d1.q(W.XS_WATCH, ["@introduceDomain", "d1i"]);
  dom0.events.length = 0;
  d1.events.length = 0;
  dom0.q(W.XS_INTRODUCE, ["7", "4", "5"]);
  assert.deepEqual(d1.events.splice(0), [], "no permission on @introduceDomain");
  dom0.q(W.XS_SET_PERMS, ["@introduceDomain", "n0", "r1"]);
  assert.deepEqual(dom0.q(W.XS_GET_PERMS, ["@introduceDomain"]), ["n0", "r1"]);
  dom0.q(W.XS_INTRODUCE, ["8", "4", "5"]);
  assert.deepEqual(d1.events.splice(0), ["@introduceDomain d1i"]);
  dom0.q(W.XS_RELEASE, ["7"]);
  dom0.q(W.XS_RELEASE, ["8"]);
  assert.deepEqual(dom0.events.splice(0), [
    "@introduceDomain i",
    "@introduceDomain i",
    "@releaseDomain/7 r",
    "@releaseDomain/7 r7",
    "@releaseDomain/8 r",
  ]);
  assert.deepEqual(dom0.q(W.XS_RELEASE, ["8"]), "ERR:ENOENT");
  // A shutdown reports @releaseDomain once, until RESUME.
  dom0.q(W.XS_INTRODUCE, ["9", "4", "5"]);
  dom0.events.length = 0;
  d.domainShutdown(9);
  d.domainShutdown(9);
  assert.deepEqual(dom0.q(W.XS_RESUME, ["9"]), ["OK"]);
  d.domainShutdown(9);
  assert.deepEqual(dom0.events, ["@releaseDomain/9 r", "@releaseDomain/9 r"]);
});

test("RELEASE removes the nodes the domain owns, with what is below them", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  dom0.q(W.XS_INTRODUCE, ["4", "1", "1"]);
  const d4 = client(4);
  dom0.q(W.XS_MKDIR, ["/local/domain/4"]);
  w(d, dom0, "/local/domain/4/keep", "dom0's");
  dom0.q(W.XS_MKDIR, ["/local/domain/4/device"]);
  dom0.q(W.XS_SET_PERMS, ["/local/domain/4/device", "n4"]);
  w(d, d4, "device/vif/0/state", "1");
  assert.equal(d.store.ownedBy(4), 4);
  dom0.q(W.XS_RELEASE, ["4"]);
  assert.deepEqual(dom0.q(W.XS_DIRECTORY, ["/local/domain/4"]), ["keep"]);
  assert.equal(d.store.ownedBy(4), 0);
  assert.deepEqual(d.store.check(), []);
});

test("transactions: isolated reads and writes; EAGAIN only when a touched node changed", () => {
  const { d, client } = setup();
  const a = client(0);
  const b = client(0);
  w(d, a, "/x", "1");
  w(d, a, "/y", "1");
  w(d, a, "/d1/n", "0");
  w(d, a, "/d2/n", "0");
  w(d, a, "/p/q", "0");
  const start = (cl: Client): number => Number((cl.q(W.XS_TRANSACTION_START, [""]) as string[])[0]);
  const end = (cl: Client, tx: number, commit = true): string[] | string =>
    cl.q(W.XS_TRANSACTION_END, [commit ? "T" : "F"], tx);
  // Reads see the transaction's own writes and not later outside ones.
  let t = start(a);
  assert.deepEqual(a.q(W.XS_READ, ["/x"], t), ["1"]);
  w(d, b, "/x", "2");
  assert.deepEqual(a.q(W.XS_READ, ["/x"], t), ["1"], "isolated from the outside write");
  assert.equal(w(d, a, "/x", "3", t), "OK");
  assert.deepEqual(a.q(W.XS_READ, ["/x"], t), ["3"]);
  assert.deepEqual(end(a, t), "ERR:EAGAIN", "/x changed meanwhile");
  assert.deepEqual(a.q(W.XS_READ, ["/x"]), ["2"], "nothing of the failed commit applied");
  const rows: Array<[string, (tx: number) => void, () => void, string[] | string]> = [
    [
      "an untouched node changed",
      (tx) => a.q(W.XS_READ, ["/x"], tx),
      () => w(d, b, "/y", "5"),
      ["OK"],
    ],
    [
      "a read node changed",
      (tx) => a.q(W.XS_READ, ["/y"], tx),
      () => w(d, b, "/y", "6"),
      "ERR:EAGAIN",
    ],
    [
      "a node read as absent appeared",
      (tx) => a.q(W.XS_READ, ["/new"], tx),
      () => w(d, b, "/new", "1"),
      "ERR:EAGAIN",
    ],
    ["disjoint subtrees", (tx) => w(d, a, "/d1/n", "1", tx), () => w(d, b, "/d2/n", "1"), ["OK"]],
    [
      "a sibling created under a parent it also grew",
      (tx) => w(d, a, "/p/r", "1", tx),
      () => w(d, b, "/p/s", "1"),
      "ERR:EAGAIN",
    ],
    [
      "a removed node it wrote",
      (tx) => w(d, a, "/d2/n", "2", tx),
      () => b.q(W.XS_RM, ["/d2/n"]),
      "ERR:EAGAIN",
    ],
  ];
  for (const [what, inside, outside, want] of rows) {
    t = start(a);
    inside(t);
    outside();
    assert.deepEqual(end(a, t), want, what);
  }
  // Watches fire for transactional changes only at commit, and never on abort.
  b.q(W.XS_WATCH, ["/w", "tok"]);
  b.events.length = 0;
  t = start(a);
  w(d, a, "/w/1", "x", t);
  assert.deepEqual(b.events, []);
  assert.deepEqual(end(a, t), ["OK"]);
  assert.deepEqual(b.events.splice(0), ["/w/1 tok"]);
  t = start(a);
  w(d, a, "/w/2", "x", t);
  assert.deepEqual(end(a, t, false), ["OK"]);
  assert.deepEqual(b.events, []);
  assert.deepEqual(a.q(W.XS_READ, ["/w/2"]), "ERR:ENOENT");
  // Bad transaction use.
  assert.deepEqual(a.q(W.XS_READ, ["/x"], 12345), "ERR:ENOENT");
  t = start(a);
  assert.deepEqual(a.q(W.XS_TRANSACTION_START, [""], t), "ERR:EBUSY");
  assert.deepEqual(a.q(W.XS_TRANSACTION_END, ["X"], t), "ERR:EINVAL");
  assert.deepEqual(end(b, t), "ERR:ENOENT", "another connection's transaction");
  assert.deepEqual(d.store.check(), []);
});

test("quotas: each refusal names the quota, its limit and the domain", () => {
  const { d, log, client } = setup();
  const dom0 = client(0);
  dom0.q(W.XS_INTRODUCE, ["1", "4", "5"]);
  const d1 = client(1);
  dom0.q(W.XS_MKDIR, ["/local/domain/1"]);
  dom0.q(W.XS_SET_PERMS, ["/local/domain/1", "n1"]);
  for (let i = 0; i < 128; i++) assert.deepEqual(d1.q(W.XS_WATCH, ["data", `t${i}`]), ["OK"]);
  assert.deepEqual(d1.q(W.XS_WATCH, ["data", "one-more"]), "ERR:E2BIG");
  assert.ok(log.includes("xenstore quota 'watches' (128) reached by domain 1"));
  assert.deepEqual(dom0.q(W.XS_SET_QUOTA, ["1", "nodes", "4"]), ["OK"]);
  assert.deepEqual(dom0.q(W.XS_GET_QUOTA, ["1", "nodes"]), ["4"]);
  assert.equal(w(d, d1, "a", "1"), "OK");
  assert.equal(w(d, d1, "b/c", "1"), "OK");
  assert.equal(w(d, d1, "d", "1"), "ERR:ENOSPC");
  assert.ok(log.includes("xenstore quota 'nodes' (4) reached by domain 1"));
  assert.equal(w(d, d1, "a", "x".repeat(3000)), "ERR:ENOSPC");
  assert.deepEqual(d1.q(W.XS_SET_PERMS, ["a", "n1", "r0", "r0", "r0", "r0", "r0"]), "ERR:ENOSPC");
  for (let i = 0; i < 10; i++) assert.ok(Array.isArray(d1.q(W.XS_TRANSACTION_START, [""])));
  assert.deepEqual(d1.q(W.XS_TRANSACTION_START, [""]), "ERR:ENOSPC");
  const report = (dom0.q(W.XS_CONTROL, ["quota", "1"]) as string[])[0]!;
  assert.match(report, /watches\s+128 \(refused 1 time\(s\)\)/);
  assert.match(report, /nodes\s+4 \(refused 1 time\(s\)\)/);
  assert.deepEqual(dom0.q(W.XS_GET_QUOTA, []), [
    "nodes watches transactions outstanding transaction-nodes node-size path-max permissions",
  ]);
  assert.deepEqual(dom0.q(W.XS_GET_QUOTA, ["watches"]), ["128"]);
  assert.deepEqual(dom0.q(W.XS_GET_QUOTA, ["bogus"]), "ERR:EINVAL");
  assert.deepEqual(d1.q(W.XS_GET_QUOTA, ["nodes"]), "ERR:EACCES");
  // Dom0 is never limited.
  for (let i = 0; i < 200; i++) dom0.q(W.XS_WATCH, ["/x", `t${i}`]);
  assert.equal(w(d, dom0, "/big", "x".repeat(4000)), "OK");
});

test("features, CONTROL and domain management", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  assert.deepEqual(dom0.q(W.XS_GET_FEATURE, []), ["7"]);
  assert.deepEqual(dom0.q(W.XS_SET_FEATURE, ["6", "1"]), ["OK"]);
  assert.deepEqual(dom0.q(W.XS_GET_FEATURE, ["6"]), ["1"]);
  assert.deepEqual(dom0.q(W.XS_SET_FEATURE, ["6", "16"]), "ERR:EINVAL");
  dom0.q(W.XS_INTRODUCE, ["6", "1", "1"]);
  assert.deepEqual(dom0.q(W.XS_SET_FEATURE, ["6", "1"]), "ERR:EBUSY");
  assert.deepEqual(dom0.q(W.XS_INTRODUCE, ["6", "1", "1"]), ["OK"], "the same introduction again");
  assert.deepEqual(dom0.q(W.XS_INTRODUCE, ["6", "2", "1"]), "ERR:EEXIST");
  assert.deepEqual(dom0.q(W.XS_INTRODUCE, ["0", "2", "1"]), "ERR:EINVAL");
  assert.deepEqual(dom0.q(W.XS_INTRODUCE, ["x", "2", "1"]), "ERR:EINVAL");
  assert.deepEqual(dom0.q(W.XS_CONTROL, ["check"]), ["OK"]);
  assert.match(
    (dom0.q(W.XS_CONTROL, ["help"]) as string[])[0]!,
    /check\nhelp\nlog\nmemreport\nprint\nquota/,
  );
  assert.match((dom0.q(W.XS_CONTROL, ["memreport"]) as string[])[0]!, /nodes: 3\nconnections: 1/);
  assert.deepEqual(dom0.q(W.XS_CONTROL, ["log", "off"]), ["OK"]);
  assert.deepEqual(dom0.q(W.XS_CONTROL, ["log", "maybe"]), "ERR:EINVAL");
  assert.deepEqual(dom0.q(W.XS_CONTROL, ["frobnicate"]), "ERR:EINVAL");
  assert.deepEqual(dom0.q(W.XS_CONTROL, ["quota", "set", "watches", "64"]), ["OK"]);
  assert.deepEqual(dom0.q(W.XS_GET_QUOTA, ["watches"]), ["64"]);
  assert.equal(d.domains.get(6)?.introduced, true);
});

test("fuzzed requests from a guest and from Dom0 leave the store intact", () => {
  const { d, client } = setup();
  const dom0 = client(0);
  dom0.q(W.XS_INTRODUCE, ["3", "1", "1"]);
  w(d, dom0, "/canary/value", "precious");
  const d3 = client(3);
  const fz0 = client(0);
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const pieces = [
    "/",
    "/canary",
    "/canary/value",
    "a",
    "@releaseDomain",
    "//",
    "/x/y",
    "\0",
    "T",
    "F",
    "1",
    "n0",
    "b3",
    "-",
    "é",
    "",
  ];
  for (let i = 0; i < 20_000; i++) {
    const len = rand(6);
    const parts: string[] = [];
    for (let k = 0; k < len; k++)
      parts.push(pieces[rand(pieces.length)]! + (rand(4) === 0 ? String(rand(100)) : ""));
    let payload = new TextEncoder().encode(parts.join(rand(2) ? "\0" : ""));
    if (rand(10) === 0) payload = payload.subarray(0, rand(payload.length + 1));
    const who = rand(4) === 0 ? fz0 : d3;
    const type = rand(30);
    // Dom0's own removals of the canary are its right; keep those out.
    if (
      who === fz0 &&
      (type === W.XS_RM || type === W.XS_WRITE || type === W.XS_SET_PERMS || type === W.XS_RELEASE)
    )
      continue;
    d.handle(who.c, { type, reqId: i, txId: rand(3) === 0 ? rand(5) : 0, payload });
  }
  assert.deepEqual(d.store.check(), []);
  assert.deepEqual(dom0.q(W.XS_READ, ["/canary/value"]), ["precious"]);
  assert.deepEqual(dom0.q(W.XS_GET_PERMS, ["/canary/value"]), ["n0"]);
});

test("state saves and restores whole (nodes, generations, permissions, quotas, watches), versioned", async () => {
  const { saveState, restoreState } = await import("./persist.js");
  const { d, client } = setup();
  const dom0 = client(0);
  dom0.q(W.XS_INTRODUCE, ["2", "4", "5"]);
  w(d, dom0, "/s/a", "1");
  w(d, dom0, "/s/b/c", "binary\u0001");
  dom0.q(W.XS_SET_PERMS, ["/s/a", "n2", "r0"]);
  dom0.q(W.XS_SET_PERMS, ["@releaseDomain", "n0", "r2"]);
  dom0.q(W.XS_SET_QUOTA, ["2", "nodes", "7"]);
  dom0.q(W.XS_SET_QUOTA, ["watches", "99"]);
  const s1 = saveState(d);
  const d2 = restoreState(JSON.parse(JSON.stringify(s1)), undefined);
  assert.deepEqual(saveState(d2), s1);
  assert.equal(d2.store.get("/s/a")!.generation, d.store.get("/s/a")!.generation);
  assert.equal(d2.quotas.limit(2, "nodes"), 7);
  assert.throws(() => restoreState({ ...s1, version: 2 }, undefined), /version 2 is not 1/);
  assert.throws(
    () =>
      restoreState(
        { ...s1, nodes: [...s1.nodes, { ...s1.nodes[1]!, path: "/orphan/x" }] },
        undefined,
      ),
    /xenstored state: .*orphan/,
  );
});
