/**
 * What the domain builder does to give a new guest its xenstore connection
 * and its PV console (Xen's xc_dom_gnttab_seed and libxl's domain
 * creation): grant Dom0 the ring page through the reserved
 * grant entry GNTTAB_RESERVED_XENSTORE, allocate the guest's store port
 * unbound for Dom0 and put it in start_info, write the domain's nodes where
 * Xen's xenstore-paths doc puts them, and INTRODUCE the domain to xenstored.
 */
import type { Domain } from "../../xen/common/domain.js";
import { start_info } from "../../xen/include/public/arch-wasm32.js";
import {
  GNTTAB_RESERVED_CONSOLE,
  GNTTAB_RESERVED_XENSTORE,
  GTF_permit_access,
  grant_entry_v1,
} from "../../xen/include/public/grant_table.js";
import { PFN_CONSOLE, PFN_GRANT_TABLE, PFN_XENSTORE } from "../../xen/arch/wasm32/config.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import type { XenEvtchn } from "../../dom0/drivers/evtchn.js";
import type { Xenstored } from "../xenstored/xenstored.js";
import { domainPath } from "../xenstored/path.js";
import { DOM0 } from "../xenstored/perms.js";

/** Writes grant entry `ref` of `d` giving Dom0 page `pfn`, as the guest itself would. */
function seedGrant(d: Domain, ref: number, pfn: number): void {
  const e = PFN_GRANT_TABLE * PAGE_SIZE + ref * grant_entry_v1.size;
  d.mem.setU32(e + grant_entry_v1.fields.frame.offset, pfn);
  d.mem.setU16(e + grant_entry_v1.fields.domid.offset, 0);
  d.mem.setU16(e + grant_entry_v1.fields.flags.offset, GTF_permit_access);
}

/** Connects guest `d` to `xs`; its port is allocated through Dom0's `evtchn`. */
export function introduceToXenstore(d: Domain, xs: Xenstored, evtchn: XenEvtchn): void {
  seedGrant(d, GNTTAB_RESERVED_XENSTORE, PFN_XENSTORE);
  const port = evtchn.allocUnboundIn(d.domid, 0);
  d.mem.setU32(d.startInfoAddr() + start_info.fields.store_evtchn.offset, port);
  introduceDomain(d.domid, d.name, port, xs);
}

/**
 * libxl's part of connecting a built domain to xenstore, once its ring is
 * granted and its port allocated (by the builder, or introduceToXenstore):
 * the domain's nodes, then XS_INTRODUCE.
 */
export function introduceDomain(domid: number, name: string, port: number, xs: Xenstored): void {
  writeDomainHome(domid, name, xs);
  introduceStore(domid, port, xs);
}

/**
 * The domain's home as libxl makes it when it makes the domain
 * (libxl__domain_make), before anything is built or restored into it.
 */
export function writeDomainHome(domid: number, name: string, xs: Xenstored): void {
  const home = domainPath(domid);
  const s = xs.store;
  // xenstore-paths: the home is Dom0's, readable by the guest; what the guest
  // writes (data, control's answers, its devices' front ends) is the guest's.
  xs.mkdir(s, DOM0, home);
  xs.setPerms(s, DOM0, home, [
    { domid: 0, access: 0 },
    { domid, access: 1 },
  ]);
  xs.writeText(`${home}/name`, name);
  xs.writeText(`${home}/domid`, String(domid));
  for (const dir of ["control", "data", "device"]) {
    xs.mkdir(s, DOM0, `${home}/${dir}`);
    xs.setPerms(s, DOM0, `${home}/${dir}`, [{ domid, access: 0 }]);
  }
  for (const feature of [
    "platform-feature-multiprocessor-suspend",
    "platform-feature-xs_reset_watches",
  ]) {
    xs.writeText(`${home}/control/${feature}`, "1");
  }
}

/** The store's ring and port under the home, then XS_INTRODUCE (libxl's build_post). */
export function introduceStore(domid: number, port: number, xs: Xenstored): void {
  const home = domainPath(domid);
  xs.writeText(`${home}/store/port`, String(port));
  xs.writeText(`${home}/store/ring-ref`, String(PFN_XENSTORE));
  xs.introduce(domid, PFN_XENSTORE, port);
}

/** The toolstack's side of a domain going away: release it and remove its home. */
export function releaseFromXenstore(domid: number, xs: Xenstored): void {
  if (xs.domains.get(domid)?.introduced) xs.release(domid);
  if (xs.store.get(domainPath(domid))) xs.rm(xs.store, DOM0, domainPath(domid));
  const consoleBackend = `/local/domain/0/backend/console/${domid}`;
  if (xs.store.get(consoleBackend)) xs.rm(xs.store, DOM0, consoleBackend);
}

/**
 * The builder's part of a guest's PV console (xc_dom_gnttab_seed and
 * libxl's console nodes): Dom0 is granted the ring page through
 * GNTTAB_RESERVED_CONSOLE, the console port is allocated unbound for Dom0
 * and put in start_info, and console/{ring-ref,port,type,limit} are written
 * under the domain's home (after `introduceToXenstore`). Returns the port.
 */
export function seedConsole(d: Domain, xs: Xenstored, evtchn: XenEvtchn): number {
  seedGrant(d, GNTTAB_RESERVED_CONSOLE, PFN_CONSOLE);
  const port = evtchn.allocUnboundIn(d.domid, 0);
  d.mem.setU32(d.startInfoAddr() + start_info.fields.console_evtchn.offset, port);
  writeConsoleNodes(d.domid, port, xs);
  return port;
}

/** libxl's nodes of console 0 of `domid`, whose ring is granted and port is `port`. */
export function writeConsoleNodes(domid: number, port: number, xs: Xenstored): void {
  writeConsoleDevice(domid, xs);
  xs.writeText(`${domainPath(domid)}/console/port`, String(port));
}

/** The console's nodes but its port: what libxl knows before the domain is built or restored. */
export function writeConsoleDevice(domid: number, xs: Xenstored): void {
  const home = domainPath(domid);
  xs.writeText(`${home}/console/ring-ref`, String(PFN_CONSOLE));
  xs.writeText(`${home}/console/type`, "xenconsoled");
  xs.writeText(`${home}/console/limit`, String(1024 * 1024));
  xs.writeText(`${home}/console/output`, "pty");
  // The console's backend directory, as libxl writes it for console 0
  // (xenconsoled serves it), and the frontend's pointers to it.
  const backend = `/local/domain/0/backend/console/${domid}/0`;
  xs.mkdir(xs.store, DOM0, backend);
  xs.setPerms(xs.store, DOM0, backend, [
    { domid: 0, access: 0 },
    { domid, access: 1 },
  ]);
  for (const [k, v] of Object.entries({
    frontend: `${home}/console`,
    "frontend-id": String(domid),
    online: "1",
    state: "1",
    protocol: "vt100",
  }))
    xs.writeText(`${backend}/${k}`, v);
  xs.writeText(`${home}/console/backend`, backend);
  xs.writeText(`${home}/console/backend-id`, "0");
}
