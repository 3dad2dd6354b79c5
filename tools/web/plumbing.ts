/**
 * The plumbing between domains, for the web console's drawing of a domain
 * or a pair: what Xen's debug keys 'e' (event channels) and 'g' (grant
 * tables) dump, the split devices' two ends (their xenbus states in
 * xenstore, the backend's ring indices, requests in flight and counters)
 * and the vchans (libxenvchan's rendezvous nodes: ring-ref and
 * event-channel under the server's data/vchan), read from the hypervisor,
 * Dom0's backends and xenstored as they are now.
 */
import type { Host } from "../host/host.js";
import type { Domain } from "../../xen/common/domain.js";
import { STATE_NAMES, VIRQ_NAMES } from "../../xen/common/keyhandler.js";
import {
  EVTCHNSTAT_interdomain,
  EVTCHNSTAT_unbound,
  EVTCHNSTAT_virq,
} from "../../xen/include/public/event_channel.js";
import {
  GTF_readonly,
  GTF_reading,
  GTF_type_mask,
  GTF_writing,
} from "../../xen/include/public/grant_table.js";
import { XENBUS_STATE_NAMES } from "../../xen/include/public/io/xenbus.js";
import type { DeviceView, DomainPlumbing, Plumbing, PortView, VchanView } from "./protocol.js";

const GTF_TYPES = ["invalid", "permit_access", "accept_transfer", "transitive"];

function grantFlags(f: number): string {
  const parts = [GTF_TYPES[f & GTF_type_mask]!];
  if (f & GTF_readonly) parts.push("readonly");
  if (f & GTF_reading) parts.push("reading");
  if (f & GTF_writing) parts.push("writing");
  return parts.join("|");
}

function ports(d: Domain): PortView[] {
  const out: PortView[] = [];
  for (const [port, st] of d.evtchn.bound()) {
    const v: PortView = {
      port,
      state: STATE_NAMES[st.state] ?? String(st.state),
      vcpu: st.vcpu,
      pending: d.evtchn.isPending(port),
      masked: d.evtchn.ops.isMasked(port),
    };
    if (st.state === EVTCHNSTAT_interdomain) v.remote = { domid: st.u, port: st.uPort };
    else if (st.state === EVTCHNSTAT_unbound) v.remote = { domid: st.u };
    else if (st.state === EVTCHNSTAT_virq) v.virq = VIRQ_NAMES.get(st.u) ?? `VIRQ ${st.u}`;
    out.push(v);
  }
  return out;
}

/** At most this many grant entries per domain are listed (a table has up to 32,768). */
export const MAX_GRANTS_SHOWN = 512;

/** Devices listed for Dom0 alone at most. */
export const MAX_DEVICES_SHOWN = 256;

/** The plumbing of `domids` (one or two domains; Dom0 may be one). Unknown domids are left out. */
export function plumbing(host: Host, domids: number[]): Plumbing {
  const hv = host.hv;
  const want = new Set(domids);
  const domains: DomainPlumbing[] = [];
  for (const id of want) {
    const d = hv.domainById(id);
    if (!d) continue;
    const entries = d.gnttab.entries(MAX_GRANTS_SHOWN);
    domains.push({
      domid: d.domid,
      name: id === 0 ? "Domain-0" : d.name,
      abi: d.evtchn.ops.name,
      ports: ports(d),
      grants: entries.list.map((e) => ({ ...e, flags: grantFlags(e.flags) })),
      grantCount: entries.total,
      maps: d.gnttab.mapped(),
    });
  }
  const xs = host.xenstored;
  const stateName = (p: string): string => {
    const v = xs.readText(`${p}/state`);
    return v === undefined ? "(none)" : (XENBUS_STATE_NAMES[Number(v)] ?? v);
  };
  const devices: DeviceView[] = [];
  const guests = new Set([...want].filter((id) => id !== 0));
  for (const [kind, bus] of [
    ["vbd", host.vbd],
    ["vif", host.vif],
  ] as const) {
    for (const dev of bus.list()) {
      // Dom0 backs every device: alone, it shows them all; in a pair, the other's.
      if (guests.size > 0 ? !guests.has(dev.frontendId) : devices.length >= MAX_DEVICES_SHOWN)
        continue;
      const frontend = xs.readText(`${dev.backend}/frontend`) ?? "";
      devices.push({
        kind,
        devid: dev.devid,
        frontendId: dev.frontendId,
        backendId: 0,
        backend: dev.backend,
        frontend,
        backendState: stateName(dev.backend),
        frontendState: frontend ? stateName(frontend) : "(none)",
        connected: dev.connected,
        rings: dev.impl.rings?.() ?? [],
        inFlight: dev.impl.inFlight?.() ?? 0,
        stats: dev.stats as Record<string, number> | undefined,
      });
    }
  }
  const vchans: VchanView[] = [];
  for (const id of want) {
    const base = `/local/domain/${id}/data/vchan`;
    const walk = (p: string, depth: number): void => {
      const n = xs.store.get(p);
      if (!n || depth > 4) return;
      if (n.children.includes("ring-ref") && n.children.includes("event-channel")) {
        const ringRef = Number(xs.readText(`${p}/ring-ref`));
        const port = Number(xs.readText(`${p}/event-channel`));
        const s = hv.domainById(id)?.evtchn.status(port);
        const st = typeof s === "object" ? s : undefined;
        const client =
          st && (st.state === EVTCHNSTAT_interdomain || st.state === EVTCHNSTAT_unbound)
            ? st.u
            : undefined;
        vchans.push({
          path: p,
          server: id,
          client,
          ringRef,
          port,
          connected: st?.state === EVTCHNSTAT_interdomain,
        });
        return;
      }
      for (const c of n.children) walk(`${p}/${c}`, depth + 1);
    };
    walk(base, 0);
  }
  return { domains, devices, vchans };
}
