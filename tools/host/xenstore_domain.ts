/**
 * What the domain builder and toolstack do to give a new guest its xenstore
 * connection (Xen's xc_dom_gnttab_seed, libxl's domain creation), until
 * libxl exists (issue #5): grant Dom0 the ring page through the reserved
 * grant entry GNTTAB_RESERVED_XENSTORE, allocate the guest's store port
 * unbound for Dom0 and put it in start_info, write the domain's nodes where
 * Xen's xenstore-paths doc puts them, and INTRODUCE the domain to xenstored.
 */
import type { Domain } from "../../xen/common/domain.js";
import { start_info } from "../../xen/include/public/arch-wasm32.js";
import {
  GNTTAB_RESERVED_XENSTORE,
  GTF_permit_access,
  grant_entry_v1,
} from "../../xen/include/public/grant_table.js";
import { PFN_GRANT_TABLE, PFN_XENSTORE } from "../../xen/arch/wasm32/config.js";
import { PAGE_SIZE } from "../../xen/include/xen/mm.js";
import type { XenEvtchn } from "../../dom0/drivers/evtchn.js";
import type { Xenstored } from "../xenstored/xenstored.js";
import { domainPath } from "../xenstored/path.js";
import { DOM0 } from "../xenstored/perms.js";

/** Connects guest `d` to `xs`; its port is allocated through Dom0's `evtchn`. */
export function introduceToXenstore(d: Domain, xs: Xenstored, evtchn: XenEvtchn): void {
  // The builder writes the guest's grant entry the way the guest itself would.
  const e = PFN_GRANT_TABLE * PAGE_SIZE + GNTTAB_RESERVED_XENSTORE * grant_entry_v1.size;
  d.mem.setU32(e + grant_entry_v1.fields.frame.offset, PFN_XENSTORE);
  d.mem.setU16(e + grant_entry_v1.fields.domid.offset, 0);
  d.mem.setU16(e + grant_entry_v1.fields.flags.offset, GTF_permit_access);
  const port = evtchn.allocUnboundIn(d.domid, 0);
  d.mem.setU32(d.startInfoAddr() + start_info.fields.store_evtchn.offset, port);
  const home = domainPath(d.domid);
  const s = xs.store;
  // xenstore-paths: the home is Dom0's, readable by the guest; what the guest
  // writes (data, control's answers, its devices' front ends) is the guest's.
  xs.mkdir(s, DOM0, home);
  xs.setPerms(s, DOM0, home, [
    { domid: 0, access: 0 },
    { domid: d.domid, access: 1 },
  ]);
  xs.writeText(`${home}/name`, d.name);
  xs.writeText(`${home}/domid`, String(d.domid));
  xs.writeText(`${home}/store/port`, String(port));
  xs.writeText(`${home}/store/ring-ref`, String(PFN_XENSTORE));
  xs.introduce(d.domid, PFN_XENSTORE, port);
  for (const dir of ["control", "data", "device"]) {
    xs.mkdir(s, DOM0, `${home}/${dir}`);
    xs.setPerms(s, DOM0, `${home}/${dir}`, [{ domid: d.domid, access: 0 }]);
  }
  for (const feature of ["platform-feature-multiprocessor-suspend"]) {
    xs.writeText(`${home}/control/${feature}`, "1");
  }
}

/** The toolstack's side of a domain going away: release it and remove its home. */
export function releaseFromXenstore(domid: number, xs: Xenstored): void {
  if (xs.domains.get(domid)?.introduced) xs.release(domid);
  if (xs.store.get(domainPath(domid))) xs.rm(xs.store, DOM0, domainPath(domid));
}
