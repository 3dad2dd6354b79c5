/**
 * The plumbing between one or two domains, drawn: each domain's event
 * channels, the grants it offers and the grants it maps, side by side,
 * with a line for each channel that joins them and each grant one maps
 * of the other's; then their split devices (both ends' xenbus states, the
 * ring's indices, requests in flight, counters) and their vchans.
 */
import { el, svg } from "./dom.js";
import type { DomainPlumbing, Plumbing, PortView, RingView } from "../protocol.js";

function portText(p: PortView): string {
  const flags = `${p.pending ? " pending" : ""}${p.masked ? " masked" : ""}`;
  if (p.state === "interdomain")
    return `port ${p.port}: ⇄ d${p.remote!.domid}:${p.remote!.port}${flags}`;
  if (p.state === "unbound") return `port ${p.port}: unbound, for d${p.remote!.domid}${flags}`;
  if (p.state === "virq") return `port ${p.port}: ${p.virq}${flags}`;
  return `port ${p.port}: ${p.state} (vcpu ${p.vcpu})${flags}`;
}

/** Entries listed per section: past that, a count (a disk's persistent grants run to hundreds). */
const SHOWN = 48;

function more(n: number): HTMLElement[] {
  return n > SHOWN ? [el("li", { class: "muted" }, `… and ${n - SHOWN} more`)] : [];
}

function column(d: DomainPlumbing, peer: number | undefined): HTMLElement {
  // In a pair, Dom0's mappings of every other guest are left out.
  const mapped = peer === undefined ? d.maps : d.maps.filter((m) => m.domid === peer);
  const ports = d.ports.map((p) =>
    el(
      "li",
      { "data-key": `p${d.domid}:${p.port}`, class: p.state + (p.pending ? " pending" : "") },
      portText(p),
    ),
  );
  const grants = d.grants
    .slice(0, SHOWN)
    .map((g) =>
      el(
        "li",
        { "data-key": `g${d.domid}:${g.ref}`, class: g.pin ? "mapped" : "" },
        `ref ${g.ref} → d${g.domid} ${g.flags}${g.pin ? `, mapped by d${g.pin.domid} (r${g.pin.readers} w${g.pin.writers})` : ""}`,
      ),
    );
  const maps = mapped
    .slice(0, SHOWN)
    .map((m) =>
      el(
        "li",
        { "data-key": `m${d.domid}:${m.domid}:${m.ref}` },
        `handle ${m.handle}: d${m.domid} ref ${m.ref}${m.readonly ? " (ro)" : ""}`,
      ),
    );
  return el(
    "div",
    { class: "pcol", "data-domid": String(d.domid) },
    el("h3", {}, `${d.name} (domain ${d.domid})`),
    el("h4", {}, `Event channels (${d.abi} ABI): ${d.ports.length}`),
    el("ul", {}, ...ports),
    el("h4", {}, `Grants it offers: ${d.grantCount}`),
    el("ul", {}, ...grants, ...more(d.grantCount)),
    el("h4", {}, `Grants it maps${peer === undefined ? "" : ` of d${peer}`}: ${mapped.length}`),
    el("ul", {}, ...maps, ...more(mapped.length)),
  );
}

function ringText(r: RingView): string {
  return `${r.name}: ${r.size} slots; req_prod ${r.reqProd} req_cons ${r.reqCons} req_event ${r.reqEvent}; rsp_prod ${r.rspProd} (pvt ${r.rspProdPvt}) rsp_event ${r.rspEvent}`;
}

export function drawPlumbing(root: HTMLElement, p: Plumbing): void {
  const cols = p.domains.map((d, i) => column(d, p.domains[1 - i]?.domid));
  const wires = svg("svg", { class: "wires" }) as SVGSVGElement;
  const pair = el("div", { class: "pair" }, ...cols);
  const stage = el("div", { class: "stage" }, pair, wires);
  const devices = p.devices.map((d) =>
    el(
      "tr",
      {},
      el("td", {}, `${d.kind} ${d.devid}`),
      el("td", {}, `d${d.frontendId} ${d.frontendState}`),
      el("td", {}, `d${d.backendId} ${d.backendState}${d.connected ? "" : " (rings not mapped)"}`),
      el("td", {}, ...d.rings.map((r) => el("div", {}, ringText(r)))),
      el("td", { class: "n" }, String(d.inFlight)),
      el(
        "td",
        {},
        d.stats
          ? Object.entries(d.stats)
              .map(([k, v]) => `${k} ${v}`)
              .join(", ")
          : "",
      ),
    ),
  );
  const vchans = p.vchans.map((v) =>
    el(
      "tr",
      {},
      el("td", {}, v.path),
      el("td", {}, `d${v.server}`),
      el("td", {}, v.client === undefined ? "-" : `d${v.client}`),
      el("td", {}, `ring-ref ${v.ringRef}`),
      el("td", {}, `event-channel ${v.port}`),
      el("td", {}, v.connected ? "connected" : "waiting for the client"),
    ),
  );
  root.replaceChildren(
    stage,
    el("h3", {}, `Split devices: ${p.devices.length}`),
    el(
      "table",
      { class: "devices" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["device", "frontend", "backend", "rings", "in flight", "counters"].map((h) =>
            el("th", {}, h),
          ),
        ),
      ),
      el("tbody", {}, ...devices),
    ),
    el("h3", {}, `vchans: ${p.vchans.length}`),
    el(
      "table",
      { class: "vchans" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["rendezvous", "server", "client", "grant", "port", "state"].map((h) =>
            el("th", {}, h),
          ),
        ),
      ),
      el("tbody", {}, ...vchans),
    ),
  );
  // The wires, once the columns are laid out.
  requestAnimationFrame(() => {
    const box = stage.getBoundingClientRect();
    wires.setAttribute("width", String(box.width));
    wires.setAttribute("height", String(box.height));
    const at = (key: string, side: "left" | "right"): { x: number; y: number } | undefined => {
      const e = stage.querySelector(`[data-key="${key}"]`);
      if (!e) return undefined;
      const r = e.getBoundingClientRect();
      return {
        x: (side === "right" ? r.right : r.left) - box.left,
        y: r.top + r.height / 2 - box.top,
      };
    };
    const [a, b] = p.domains;
    if (!a || !b) return;
    const line = (ka: string, kb: string, cls: string): void => {
      const pa = at(ka, "right");
      const pb = at(kb, "left");
      if (!pa || !pb) return;
      const mid = (pa.x + pb.x) / 2;
      wires.append(
        svg("path", {
          d: `M${pa.x},${pa.y} C${mid},${pa.y} ${mid},${pb.y} ${pb.x},${pb.y}`,
          class: cls,
        }),
      );
    };
    for (const port of a.ports)
      if (port.state === "interdomain" && port.remote!.domid === b.domid)
        line(`p${a.domid}:${port.port}`, `p${b.domid}:${port.remote!.port}`, "wire evtchn");
    for (const g of a.grants)
      if (g.pin?.domid === b.domid)
        line(`g${a.domid}:${g.ref}`, `m${b.domid}:${a.domid}:${g.ref}`, "wire grant");
    for (const g of b.grants)
      if (g.pin?.domid === a.domid)
        line(`m${a.domid}:${b.domid}:${g.ref}`, `g${b.domid}:${g.ref}`, "wire grant");
  });
}
