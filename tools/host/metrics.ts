/**
 * The host's figures for Prometheus (`tsxen start --metrics [ADDR:]PORT`):
 * what `xl info` and `xl top` show, per host and per domain, in the text
 * exposition format (version 0.0.4), named as Prometheus's conventions say
 * (a `tsxen_` prefix, base units in the name, `_total` on counters) and
 * labelled by `domid` and `name` (and `devid` for devices).
 *
 * Served on loopback unless an address is given; only GET /metrics answers.
 * There is no token (Prometheus scrapes without one): any local user who can
 * reach the address reads the figures, domain names included, and nothing
 * else; nothing can be changed through it.
 * The figures are read from the host when a scrape comes: nothing is kept
 * between scrapes, and a scrape of a host with a thousand domains is one
 * pass over them.
 */
import { createServer, type Server } from "node:http";
import type { Host } from "./host.js";
import type { Libxl } from "../libxl/domain.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import { hostCpu } from "../../xen/arch/wasm32/host_cpu.js";
import { NR_CPUS } from "../../xen/common/domctl.js";

type Labels = Record<string, string | number>;

/** Builds the exposition text: each metric family's HELP and TYPE, then all its samples together. */
class Exposition {
  private readonly families = new Map<string, string[]>();

  add(name: string, type: "gauge" | "counter", help: string, labels: Labels, value: number): void {
    let f = this.families.get(name);
    if (!f) {
      f = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
      this.families.set(name, f);
    }
    const l = Object.entries(labels)
      .map(
        ([k, v]) =>
          `${k}="${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`,
      )
      .join(",");
    f.push(`${name}${l ? `{${l}}` : ""} ${Number.isFinite(value) ? value : 0}`);
  }

  text(): string {
    return `${[...this.families.values()].map((f) => f.join("\n")).join("\n")}\n`;
  }
}

/** xl list's State flags (r b p s c d) as one state name, the most telling first. */
function stateOf(flags: string): string {
  for (const [letter, name] of [
    ["d", "dying"],
    ["c", "crashed"],
    ["s", "shutdown"],
    ["p", "paused"],
    ["r", "running"],
    ["b", "blocked"],
  ] as const) {
    if (flags.includes(letter)) return name;
  }
  return "blocked";
}

/** The host's metrics now, as Prometheus text. */
export function renderMetrics(host: Host, libxl: Libxl): string {
  const e = new Exposition();
  const hv = host.hv;
  const all = [hv.dom0, ...[...hv.domains.values()].sort((a, b) => a.domid - b.domid)];
  e.add(
    "tsxen_host_memory_bytes",
    "gauge",
    "Machine memory the hypervisor manages.",
    {},
    hv.frames.totalFrames * PAGE_SIZE,
  );
  e.add(
    "tsxen_host_memory_free_bytes",
    "gauge",
    "Machine memory not given to any domain.",
    {},
    hv.frames.freeFrames * PAGE_SIZE,
  );
  e.add(
    "tsxen_host_cpus",
    "gauge",
    "Physical CPUs that run guests (xl info nr_cpus).",
    {},
    NR_CPUS,
  );
  e.add(
    "tsxen_host_cpu_hertz",
    "gauge",
    "The host CPU's clock (xl info cpu_mhz).",
    {},
    hostCpu().khz * 1000,
  );
  e.add("tsxen_host_domains", "gauge", "Domains, Dom0 included.", {}, all.length);
  const rows = new Map(host.list().map((r) => [r.domid, r]));
  for (const d of all) {
    const id = { domid: d.domid, name: d.name };
    const row = rows.get(d.domid);
    e.add(
      "tsxen_domain_info",
      "gauge",
      "One per domain: its type.",
      { ...id, type: d.hvm ? "hvm" : "pv" },
      1,
    );
    e.add(
      "tsxen_domain_cpu_seconds_total",
      "counter",
      "CPU time the domain's vCPUs ran (xl list Time).",
      id,
      row?.cpuTime ?? 0,
    );
    e.add(
      "tsxen_domain_memory_bytes",
      "gauge",
      "Memory the domain holds (tot_pages, xl list Mem).",
      id,
      d.totPages * PAGE_SIZE,
    );
    e.add(
      "tsxen_domain_memory_max_bytes",
      "gauge",
      "Most memory the domain may hold (max_pages).",
      id,
      d.maxPages * PAGE_SIZE,
    );
    e.add(
      "tsxen_domain_vcpus",
      "gauge",
      "vCPUs the domain has up (xl list VCPUs).",
      id,
      row?.vcpus ?? 0,
    );
    e.add(
      "tsxen_domain_state",
      "gauge",
      "1 for the domain's state, as xl list's State column shows it first.",
      { ...id, state: stateOf(row?.stateFlags ?? "") },
      1,
    );
    e.add(
      "tsxen_domain_event_channels",
      "gauge",
      "Event channel ports the domain has bound.",
      id,
      [...d.evtchn.bound()].length,
    );
    e.add(
      "tsxen_domain_grant_mappings",
      "gauge",
      "Other domains' grants the domain has mapped.",
      id,
      d.gnttab.mappings,
    );
    e.add(
      "tsxen_domain_grants_pinned",
      "gauge",
      "The domain's grants others hold mapped.",
      id,
      d.gnttab.pinned,
    );
    e.add(
      "tsxen_xenstore_nodes",
      "gauge",
      "xenstore nodes the domain owns (its nodes quota's use).",
      id,
      host.xenstored.store.ownedBy(d.domid),
    );
    e.add(
      "tsxen_xenstore_nodes_limit",
      "gauge",
      "The domain's nodes quota.",
      id,
      host.xenstored.quotas.limit(d.domid, "nodes"),
    );
  }
  for (const s of libxl.backendStats()) {
    const id = { domid: s.domid, name: hv.domainById(s.domid)?.name ?? "", devid: s.devid };
    if (s.kind === "vbd") {
      e.add(
        "tsxen_vbd_read_requests_total",
        "counter",
        "Read requests blkback served (xl top VBD_RD).",
        id,
        s.rd,
      );
      e.add(
        "tsxen_vbd_write_requests_total",
        "counter",
        "Write requests blkback served (VBD_WR).",
        id,
        s.wr,
      );
      e.add(
        "tsxen_vbd_read_sectors_total",
        "counter",
        "512-byte sectors read (VBD_RSECT).",
        id,
        s.rsect,
      );
      e.add(
        "tsxen_vbd_write_sectors_total",
        "counter",
        "512-byte sectors written (VBD_WSECT).",
        id,
        s.wsect,
      );
      e.add(
        "tsxen_vbd_out_of_requests_total",
        "counter",
        "Requests that waited for a slot (VBD_OO).",
        id,
        s.oo,
      );
    } else {
      e.add(
        "tsxen_vif_transmit_bytes_total",
        "counter",
        "Bytes the domain sent on the vif (NETTX).",
        id,
        s.txBytes,
      );
      e.add(
        "tsxen_vif_receive_bytes_total",
        "counter",
        "Bytes the vif delivered to the domain (NETRX).",
        id,
        s.rxBytes,
      );
      e.add(
        "tsxen_vif_transmit_packets_total",
        "counter",
        "Packets the domain sent.",
        id,
        s.txPackets,
      );
      e.add(
        "tsxen_vif_receive_packets_total",
        "counter",
        "Packets delivered to the domain.",
        id,
        s.rxPackets,
      );
      e.add(
        "tsxen_vif_transmit_errors_total",
        "counter",
        "Packets the domain sent that netback refused.",
        id,
        s.txErrors,
      );
      e.add(
        "tsxen_vif_receive_drops_total",
        "counter",
        "Packets for the domain dropped (no room posted).",
        id,
        s.rxDropped,
      );
    }
  }
  e.add(
    "tsxen_xenstore_connections",
    "gauge",
    "Connections to xenstored (domains' rings and sockets).",
    {},
    host.xenstored.connections.size,
  );
  return e.text();
}

/** Parses `[ADDR:]PORT` (loopback when no address); throws naming what is wrong. */
export function parseListen(spec: string, option = "--metrics"): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(spec);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535)
    throw new Error(`${option} ${spec}: expected [ADDR:]PORT`);
  return { host: m[1]?.replace(/^\[|\]$/g, "") ?? "127.0.0.1", port };
}

/**
 * Scrapes closer together than this share one rendering: a client that
 * asks in a loop costs the host one pass over its domains a second, not one
 * per request (Prometheus scrapes every 15 s by default).
 */
export const METRICS_MIN_INTERVAL_MS = 1000;

/** The HTTP server for /metrics. */
export class MetricsServer {
  private server: Server | undefined;
  private last: { at: number; body: string } | undefined;

  constructor(private readonly render: () => string) {}

  /** Listens; resolves with the URL it serves (the port chosen when 0 was asked). */
  listen(at: { host: string; port: number }): Promise<string> {
    const server = createServer((req, res) => {
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if ((req.url ?? "").split("?")[0] !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics\n");
        return;
      }
      let body: string;
      try {
        const now = performance.now();
        if (!this.last || now - this.last.at >= METRICS_MIN_INTERVAL_MS)
          this.last = { at: now, body: this.render() };
        body = this.last.body;
      } catch (e) {
        res.writeHead(500, { "content-type": "text/plain" }).end(`${(e as Error).message}\n`);
        return;
      }
      res
        .writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
        .end(req.method === "HEAD" ? undefined : body);
    });
    // A scraper that stalls cannot hold sockets open for long.
    server.headersTimeout = 5000;
    server.requestTimeout = 10_000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(at.port, at.host, () => {
        const a = server.address();
        const port = typeof a === "object" && a ? a.port : at.port;
        const host = at.host.includes(":") ? `[${at.host}]` : at.host;
        resolve(`http://${host}:${port}/metrics`);
      });
    });
  }

  close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    return new Promise((resolve) => (s ? s.close(() => resolve()) : resolve()));
  }
}
