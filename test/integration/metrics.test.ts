/**
 * `tsxen start --metrics`: the host's figures as Prometheus text, scraped
 * over HTTP from a running daemon and checked against what `xl list`,
 * `xl info` and `xl top` say; the exposition's format (each family's HELP
 * and TYPE once, its samples together, base units and _total counters);
 * loopback by default; bad specs refused.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cli, EXAMPLES, TSXEN, XL } from "../cli.js";
import { until } from "../helpers.js";

const { dir, run, ok } = cli("tsxen-metrics-");

/** Samples by name and labels ("name{a="1",b="x"}" → value), and the families' HELP and TYPE. */
function parse(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  let family = "";
  const closed = new Set<string>();
  for (const line of text.trimEnd().split("\n")) {
    const t = /^# TYPE (\S+) (gauge|counter)$/.exec(line);
    if (t) {
      assert.ok(!types.has(t[1]!), `a second TYPE for ${t[1]}`);
      if (family) closed.add(family);
      family = t[1]!;
      types.set(family, t[2]!);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample: ${line}`);
    assert.equal(m[1], family, `${m[1]} outside its family's group`);
    assert.ok(!closed.has(m[1]!));
    samples.set(`${m[1]}${m[2] ?? ""}`, Number(m[3]));
  }
  return { samples, types };
}

let url = "";

before(() => {
  ok(TSXEN, "start", "--metrics", "0");
  url = readFileSync(join(dir, "run", "metrics-url"), "utf8").trim();
});

after(() => {
  run(TSXEN, ["stop", "--timeout", "5"]);
  rmSync(dir, { recursive: true, force: true });
});

test("the metrics answer what xl says, per host and per domain, with devices' counters", async () => {
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, "loopback unless told otherwise");
  assert.match(ok(TSXEN, "status"), new RegExp(`metrics at ${url.replace(/[.]/g, "\\.")}`));
  const img = join(dir, "m.img");
  writeFileSync(img, "");
  truncateSync(img, 8 * 2 ** 20);
  ok(
    XL,
    "create",
    join(EXAMPLES, "blkbench.cfg"),
    'name="mdisk"',
    `disk=["format=raw, vdev=xvda, access=rw, target=${img}"]`,
    'extra="write seed=5 mib=2"',
    'on_poweroff="preserve"',
  );
  const domid = Number(ok(XL, "domid", "mdisk").trim());
  const log = (): string => {
    try {
      return readFileSync(join(dir, "log", "console", "guest-mdisk.log"), "utf8");
    } catch {
      return "";
    }
  };
  await until(() => /sequential write 2 MiB/.test(log()), 20_000, "the disk writes");
  await until(() => /---s--/.test(ok(XL, "list", "mdisk")), 20_000, "blkbench to finish");

  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const { samples, types } = parse(await res.text());
  const id = `domid="${domid}",name="mdisk"`;
  // xl list: memory in MiB, vCPUs; xl info: total and free memory.
  const row = ok(XL, "list", "mdisk").split("\n")[1]!.trim().split(/\s+/);
  assert.equal(samples.get(`tsxen_domain_memory_bytes{${id}}`), Number(row[2]) * 2 ** 20);
  assert.equal(samples.get(`tsxen_domain_vcpus{${id}}`), Number(row[3]));
  assert.equal(samples.get(`tsxen_domain_state{${id},state="shutdown"}`), 1);
  const info = ok(XL, "info");
  const total = Number(/\ntotal_memory +: (\d+)/.exec(info)![1]);
  assert.equal(samples.get("tsxen_host_memory_bytes"), total * 2 ** 20);
  assert.ok(samples.get("tsxen_host_memory_free_bytes")! < total * 2 ** 20);
  assert.equal(samples.get("tsxen_host_domains"), 2);
  // xl top's VBD columns.
  const top = ok(XL, "top", "-b", "-i", "1")
    .split("\n")
    .find((l) => / mdisk /.test(l))!
    .trim()
    .split(/ +/);
  const vbd = `${id},devid="51712"`;
  assert.equal(samples.get(`tsxen_vbd_write_requests_total{${vbd}}`), Number(top[15]));
  assert.equal(samples.get(`tsxen_vbd_write_sectors_total{${vbd}}`), Number(top[17]));
  assert.ok(Number(top[17]) >= 4096);
  assert.ok(samples.get(`tsxen_domain_event_channels{${id}}`)! >= 3, "store, console, vbd");
  assert.ok(samples.get(`tsxen_xenstore_nodes{${id}}`)! > 0);
  assert.ok(samples.get("tsxen_xenstore_connections")! >= 1);
  // Prometheus's conventions: counters end in _total, units in the name.
  for (const [name, type] of types) {
    assert.match(name, /^tsxen_/);
    assert.equal(type === "counter", name.endsWith("_total"), name);
  }
  ok(XL, "destroy", "mdisk");
  // Only /metrics, only GET.
  assert.equal((await fetch(url.replace("/metrics", "/"))).status, 404);
  assert.equal((await fetch(url, { method: "POST" })).status, 405);
});

test("a bad --metrics spec is refused before anything starts", () => {
  const r = run(TSXEN, ["start", "--metrics", "nowhere:port"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /--metrics nowhere:port: expected \[ADDR:\]PORT/);
});
